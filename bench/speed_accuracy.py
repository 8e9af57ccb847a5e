"""Speed and accuracy benchmark: the service against sequential faster-whisper and faster-whisper's
own BatchedInferencePipeline, on the same long recording of real read speech, in one run.

    make bench                      # or: .venv/bin/python bench/speed_accuracy.py --minutes 10

The recording is built from the shared eval clips that have exact references (../shared/eval/
MANIFEST.tsv), one after another in a rotating order until `--minutes`; its reference is theirs,
in the same order. Each path is timed on the same file (FFmpeg decoding included; models loaded
before the clock starts), rounds interleaved, and scored against the reference: WER after
lower-casing and dropping punctuation, and the sentences dropped, found by aligning the output to
the reference (a sentence with more than half its words deleted counts as dropped).

Paths (--paths, comma-separated):
  service      POST /transcribe to a service this script starts (its own web server and worker),
               with the service's defaults but language and model
  engine       the service's ctranslate2 engine in this process (the same code without HTTP/queue)
  sequential   WhisperModel.transcribe: beam 5, word timestamps, vad_filter off (whisper-asr-
               webservice's call)
  fw-batched   BatchedInferencePipeline.transcribe, batch 8, its Silero VAD chunks, word timestamps
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.getenv("SHARED_DIR", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
from bench.service_overhead import decode, ffmpeg_exe  # noqa: E402
from tests.processes import free_port, wait_up  # noqa: E402
from tests.scoring import score  # noqa: E402

# The English clips with exact references. multilingual.mp3 turns to German at 31 s: its first
# 30 s are the English paragraph its reference holds.
CLIPS = [
    ("jfk.flac", None),
    ("multilingual.mp3", 30.0),
    ("en_librispeech_1995-1837-0001.wav", None),
    ("en_librivox_sense_and_sensibility_0870.wav", None),
    ("en_timit_LDC93S1.wav", None),
]


def references() -> dict[str, str]:
    with open(SHARED / "eval" / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        rows = {row["file"]: row["reference"] for row in csv.DictReader(fh, delimiter="\t")}
    text = rows["multilingual.mp3"]
    rows["multilingual.mp3"] = text[text.index("Permission"):text.index(" The rest is")]
    return rows


def make_recording(out: Path, minutes: float) -> tuple[float, list[str]]:
    """The clips one after another, the order rotated each round, until `minutes`. Returns the
    length in seconds and the reference sentences in order."""
    import numpy as np

    refs = references()
    order, pieces, sentences, seconds = 0, [], [], 0.0
    while seconds < minutes * 60:
        for k in range(len(CLIPS)):
            name, keep = CLIPS[(order + k) % len(CLIPS)]
            samples = decode(SHARED / "eval" / name)
            if keep is not None:
                samples = samples[:int(keep * 16000)]
            pieces.append(samples)
            sentences.append(refs[name])
            seconds += len(samples) / 16000
        order += 1
    raw = np.concatenate(pieces).astype("<f4").tobytes()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-f", "f32le", "-ar", "16000", "-ac", "1",
                    "-i", "-", "-c:a", "libmp3lame", "-b:a", "96k", str(out)], input=raw, check=True)
    return seconds, sentences


class Paths:
    def __init__(self, args, work: Path) -> None:
        self.args, self.work = args, work
        self.model_dir = REPO / "models" / f"whisper-{args.model}" / "ctranslate2"
        self.server = None
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8")
        return self._model

    def start_service(self) -> None:
        port = free_port()
        self.env = {**os.environ, "DATA_DIR": str(self.work / "data"), "WHISPER_ENGINE": "ctranslate2",
                    "DJANGO_SETTINGS_MODULE": "project.settings",
                    "HUEY_WORKERS": str(self.args.workers)}
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=self.env, check=True)
        log = open(self.work / "service.log", "wb")
        self.server = subprocess.Popen([*manage, "serve", f"127.0.0.1:{port}"], env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        wait_up(f"{self.base}/health")
        self.service(SHARED / "eval" / "jfk.flac")  # the worker loads the model

    def stop_service(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGINT)
            self.server.wait(timeout=120)

    def form(self) -> dict:
        form = {"language": self.args.language, "model": self.args.model, "engine": "ctranslate2"}
        for name in ("batch_size", "beam_size"):
            if getattr(self.args, name) is not None:
                form[name] = str(getattr(self.args, name))
        return form

    def service(self, path: Path) -> str:
        with open(path, "rb") as fh:
            resp = requests.post(f"{self.base}/transcribe", files={"file": fh}, data=self.form(), timeout=7200)
        resp.raise_for_status()
        return resp.json()["text"]

    def engine(self, path: Path) -> str:
        """The service's engine with the service's default options (its own model cache)."""
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        django.setup()
        from transcription.engines.base import DecodeOptions
        from transcription.engines.ctranslate2 import CTranslate2Engine

        options = DecodeOptions(language=self.args.language, batch_size=self.args.batch_size,
                                beam_size=self.args.beam_size)
        return CTranslate2Engine().transcribe(self.model_dir, decode(path), options, lambda _f: None).text

    def sequential(self, path: Path) -> str:
        segments, _ = self.model.transcribe(decode(path), language=self.args.language, beam_size=5,
                                            word_timestamps=True, condition_on_previous_text=True,
                                            vad_filter=False)
        return "".join(s.text for s in segments)

    def fw_batched(self, path: Path) -> str:
        from faster_whisper import BatchedInferencePipeline

        segments, _ = BatchedInferencePipeline(self.model).transcribe(
            decode(path), language=self.args.language, batch_size=8, word_timestamps=True)
        return "".join(s.text for s in segments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--model", default="base")
    parser.add_argument("--language", default="en")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all paths, interleaved")
    parser.add_argument("--paths", default="service,sequential,fw-batched")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch_size sent to the service / used by the engine path (default: theirs)")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="beam_size sent to the service / used by the engine path (default: theirs)")
    parser.add_argument("--workers", type=int, default=1, help="the service's HUEY_WORKERS")
    args = parser.parse_args()
    names = [name.strip() for name in args.paths.split(",") if name.strip()]

    work = Path(tempfile.mkdtemp(prefix="stt-bench-"))
    recording = work / "reading.mp3"
    seconds, sentences = make_recording(recording, args.minutes)
    print(f"file: {seconds / 60:.1f} min of read English ({len(sentences)} sentences), model={args.model}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    paths = Paths(args, work)
    runs: dict[str, list[float]] = {name: [] for name in names}
    scores: dict[str, dict] = {}
    try:
        if "service" in names:
            paths.start_service()
        if any(name != "service" for name in names):
            paths.model  # loaded before any clock starts
        for round_no in range(1, args.rounds + 1):
            for name in names:
                began = time.monotonic()
                text = getattr(paths, name.replace("-", "_"))(recording)
                runs[name].append(time.monotonic() - began)
                scores[name] = score(text, sentences)
                print(f"round {round_no}: {name:<11} {runs[name][-1]:7.2f} s  WER {scores[name]['wer']:.4f}  "
                      f"dropped {scores[name]['dropped']}", flush=True)
    finally:
        paths.stop_service()
    base = statistics.median(runs["sequential"]) if "sequential" in runs else None
    report = {"audio_minutes": round(seconds / 60, 2), "model": args.model, "cpus": os.cpu_count(),
              "rounds": args.rounds, "paths": {}}
    for name in names:
        wall = statistics.median(runs[name])
        report["paths"][name] = {"wall_seconds": round(wall, 2),
                                 "ratio_to_sequential": round(wall / base, 3) if base else None, **scores[name]}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if "service" in names and base:
        s, q = report["paths"]["service"], report["paths"]["sequential"]
        fast = s["ratio_to_sequential"] <= 0.5
        close = s["wer"] <= q["wer"] + 0.005 and s["dropped"] <= q["dropped"]
        print(f"service: {s['ratio_to_sequential']:.3f} x sequential ({'met' if fast else 'MISSED'} <= 0.5), "
              f"WER {s['wer']:.4f} vs {q['wer']:.4f} ({'met' if close else 'MISSED'} <= +0.005, "
              f"dropped {s['dropped']} vs {q['dropped']})")


if __name__ == "__main__":
    main()
