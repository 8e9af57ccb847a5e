"""Live benchmark: how far behind speech words appear on the /live page, how accurate the final
text is, and whether the web process stays responsive while sessions run.

    .venv/bin/python bench/live.py --rounds 2

A service this script starts (`manage.py serve`: uvicorn, the job worker, the live worker) is
spoken to through the real page: Playwright drives Debian's Chromium whose fake microphone plays a
recording built from the shared clips (the English ones with exact references, each once, five
voices, about a minute, then silence; a new browser for each round, so each session hears it from
its start). Each round is one session alone; then two sessions run at once (two pages on the same
microphone).

- Latency of a word: from its time in the recording to its first appearance on the page as
  partial, and as final. A word's time is its end as the offline job (the session's recording
  decoded again after the session) times it, on the session's timeline; the page notes when it
  sent the first 100 ms of audio, which fixes that timeline on its clock. Live words are matched
  to the offline job's words by aligning the two texts.
- Accuracy: WER of the session's final text and of the offline job against the exact reference.
- Responsiveness: GET /job/{id} (the status endpoint) every 50 ms, idle and while two sessions run:
  median and p95 of its answer time.
"""
from __future__ import annotations

import argparse
import difflib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.speed_accuracy import CLIPS, Paths, references  # noqa: E402
from tests import conversations  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.conftest import normalise_words, wer  # noqa: E402

SILENCE_AFTER = 15.0  # seconds of silence after the speech in the fake microphone's file (it loops)


def recording() -> tuple[np.ndarray, str]:
    """The English clips with exact references, each once, 1 s apart, and their text."""
    refs = references()
    turns = [(name, conversations.clip(name, 0, keep)) for name, keep in CLIPS]
    samples, _ = conversations.conversation(turns, gap=1.0)
    return samples, " ".join(refs[name] for name, _ in CLIPS)


def key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class StatusProbe:
    """GET /job/{id} every 50 ms in a thread; the answer times (seconds)."""

    def __init__(self, base: str, job_id: str) -> None:
        self.url, self.times, self.stop = f"{base}/job/{job_id}", [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                began = time.perf_counter()
                http.get(self.url, timeout=30).raise_for_status()
                self.times.append(time.perf_counter() - began)
                self.stop.wait(0.05)

    def __enter__(self) -> "StatusProbe":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def run_sessions(pw, wav: Path, base: str, count: int, speech_seconds: float) -> list[dict]:
    """`count` pages speaking at once; each page's message log and first-audio time."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}"])
    contexts = [browser.new_context(permissions=["microphone"]) for _ in range(count)]
    pages = []
    for context in contexts:
        page = context.new_page()
        page.goto(f"{base}/live")
        page.select_option("#id_language", "en")
        pages.append(page)
    for page in pages:
        page.click("#live-start")
    deadline_ms = (speech_seconds + 4.0) * 1000  # the speech, then a little of the silence after it
    for page in pages:
        page.wait_for_function(f"window.liveFirstAudio !== null && window.liveClock() > window.liveFirstAudio"
                               f" + {deadline_ms}", timeout=int(deadline_ms + 120_000), polling=100)
        page.click("#live-stop")
    out = []
    for page, context in zip(pages, contexts):
        page.wait_for_function("window.liveLog.some(e => e.message.type === 'ended')", timeout=180_000)
        out.append({"log": page.evaluate("window.liveLog"), "first_audio": page.evaluate("window.liveFirstAudio")})
        context.close()
    browser.close()
    return out


def score(session: dict, base: str, reference: str) -> dict:
    """Latencies and WERs of one session, once its job is done."""
    log, first = session["log"], session["first_audio"] / 1000.0
    ended = next(e["message"] for e in log if e["message"]["type"] == "ended")
    job_id = ended["job_id"]
    while True:
        job = requests.get(f"{base}/job/{job_id}", timeout=30).json()
        if job["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    offline = [w for s in job["result"]["segments"] for w in (s.get("words") or [])]
    finals = [(e["at"] / 1000.0, w) for e in log if e["message"]["type"] == "final" for w in e["message"]["words"]]
    partials = [(e["at"] / 1000.0, w) for e in log if e["message"]["type"] == "partial"
                for w in e["message"].get("words") or []]
    zero = first - 0.1  # the page's clock at the session's time 0
    match = difflib.SequenceMatcher(a=[key(w["word"]) for _, w in finals], b=[key(w["word"]) for w in offline],
                                    autojunk=False)
    to_partial, to_final = [], []
    for block in match.get_matching_blocks():
        for i in range(block.size):
            arrived, live_word = finals[block.a + i]
            spoken = zero + offline[block.b + i]["end"]
            seen = [at for at, w in partials if key(w["word"]) == key(live_word["word"])
                    and abs(w["end"] - live_word["end"]) < 1.0]
            to_final.append(arrived - spoken)
            to_partial.append(min(seen + [arrived]) - spoken)
    final_text = " ".join(e["message"]["text"] for e in log if e["message"]["type"] == "final")
    return {"words": len(to_final), "partial": to_partial, "final": to_final,
            "wer_live": wer(reference, final_text), "wer_offline": wer(reference, job["result"]["text"]),
            "audio": ended["audio_seconds"], "job": job_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base")
    parser.add_argument("--rounds", type=int, default=2, help="sessions alone (then one pair at once)")
    args = parser.parse_args()
    args.workers, args.language, args.batch_size, args.beam_size = 1, "en", None, None

    import django

    sys.argv = sys.argv[:1]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        speech, reference = recording()
        speech_seconds = len(speech) / 16000
        wav = conversations.write(np.concatenate([speech, np.zeros(int(SILENCE_AFTER * 16000), np.float32)]),
                                  work / "microphone.wav")
        paths = Paths(args, work)
        os.environ["LIVE_MAX_SESSIONS_PER_CLIENT"] = "2"  # the two pages at once come from one address
        paths.start_service()
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        try:
            with open(conversations.EVAL / "jfk.flac", "rb") as fh:
                probe_job = requests.post(f"{paths.base}/transcribe", files={"file": ("jfk.flac", fh)},
                                          data={"language": "en"}, timeout=300).json()["job_id"]
            with StatusProbe(paths.base, probe_job) as idle:
                time.sleep(20)
            with sync_playwright() as pw:
                alone = []
                for r in range(args.rounds):
                    session = run_sessions(pw, wav, paths.base, 1, speech_seconds)[0]
                    alone.append(score(session, paths.base, reference))
                    print(f"round {r + 1} alone: {alone[-1]['words']} words, partial median"
                          f" {statistics.median(alone[-1]['partial']):.2f} s, final median"
                          f" {statistics.median(alone[-1]['final']):.2f} s", file=sys.stderr, flush=True)
                with StatusProbe(paths.base, probe_job) as busy:
                    pair = run_sessions(pw, wav, paths.base, 2, speech_seconds)
                together = [score(s, paths.base, reference) for s in pair]
        finally:
            paths.stop_service()

    print(f"model {args.model}, ctranslate2, {os.cpu_count()} cores; a {speech_seconds:.1f}-s reading"
          f" ({len(normalise_words(reference).split())} words, five voices) into the page's fake microphone\n")
    print("| sessions | words timed | to partial: median, p95 | to final: median, p95 | WER live |"
          " WER offline job | live − offline |")
    print("|---|---|---|---|---|---|---|")
    for label, scores in ((f"one at a time ({args.rounds} rounds)", alone), ("two at once", together)):
        partial = [x for s in scores for x in s["partial"]]
        final = [x for s in scores for x in s["final"]]
        live_wer = statistics.mean(s["wer_live"] for s in scores)
        offline_wer = statistics.mean(s["wer_offline"] for s in scores)
        print(f"| {label} | {sum(s['words'] for s in scores)} | {statistics.median(partial):.2f} s,"
              f" {percentile(partial, 95):.2f} s | {statistics.median(final):.2f} s, {percentile(final, 95):.2f} s |"
              f" {live_wer:.3f} | {offline_wer:.3f} | {live_wer - offline_wer:+.3f} |")
    print(f"\nGET /job/{{id}} answer time: idle median {1000 * statistics.median(idle.times):.1f} ms,"
          f" p95 {1000 * percentile(idle.times, 95):.1f} ms ({len(idle.times)} requests); with two live"
          f" sessions running median {1000 * statistics.median(busy.times):.1f} ms,"
          f" p95 {1000 * percentile(busy.times, 95):.1f} ms ({len(busy.times)} requests)")


if __name__ == "__main__":
    main()
