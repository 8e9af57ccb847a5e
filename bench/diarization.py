"""Speakers benchmark: word speaker error, speaker count, and the time diarization adds to a job.

    .venv/bin/python bench/diarization.py --rounds 2 --minutes 11

Recordings of real voices taking turns, built from the shared clips with known turn times
(tests/conversations.py): two and four English voices with turns of 5 s or more, one English voice
alone, two Russian voices with turns of 2-5 s, and a long rotation of five English voices (turns
of 3-30 s) for `--minutes`. Each goes through a service this script starts (its own web server and
worker, POST /transcribe with diarize=true, the given model on ctranslate2). The word speaker error
is the share of words whose speaker, after the best one-to-one mapping of found labels onto true
ones, is wrong; a word's true speaker is the turn holding its middle.

Each recording is also run as if all its voices shared one channel (tests/conversations.py:
one_channel: the same telephone band, level and noise at 30 or 20 dB under the speech), since
clips from different sources differ in microphone and room, which helps.

The added time: the long rotation transcribed with and without diarize, rounds interleaved (the
order alternates), wall time of the request each; the median of each, and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.speed_accuracy import Paths  # noqa: E402
from tests import conversations  # noqa: E402


def post(base: str, path: Path, language: str, model: str, diarize: bool) -> tuple[float, dict]:
    data = {"language": language, "model": model, "engine": "ctranslate2", "diarize": str(diarize).lower()}
    began = time.monotonic()
    with open(path, "rb") as fh:
        resp = requests.post(f"{base}/transcribe", files={"file": fh}, data=data, timeout=7200)
    resp.raise_for_status()
    return time.monotonic() - began, resp.json()


def scored(result: dict, truth) -> dict:
    words = [w for s in result["segments"] for w in s.get("words") or []]
    return conversations.word_speaker_error(words, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=11.0)
    args = parser.parse_args()
    args.workers, args.language, args.batch_size, args.beam_size = 1, "en", None, None

    import django

    sys.argv = sys.argv[:1]
    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()

    with tempfile.TemporaryDirectory(prefix="bench-speakers-") as tmp:
        work = Path(tmp)
        recordings = conversations.recordings()
        rotation = conversations.rotation(args.minutes)
        recordings[f"en-5 ({args.minutes:g} min)"] = (*rotation, "en")
        conditions = [("as recorded", None), ("one channel, 30 dB", 30.0), ("one channel, 20 dB", 20.0)]
        cases = []  # (recording, condition, file, truth, language)
        for i, (name, (samples, truth, language)) in enumerate(recordings.items()):
            for j, (condition, snr) in enumerate(conditions):
                if snr is not None and name.startswith("en-5") and snr < 30:
                    continue  # the long one: as recorded and at 30 dB only
                mixed = samples if snr is None else conversations.one_channel(samples, truth, snr)
                cases.append((name, condition, conversations.write(mixed, work / f"{i}-{j}.wav"), truth, language))
        paths = Paths(args, work)
        paths.start_service()
        try:
            print(f"model {args.model}, ctranslate2, {os.cpu_count()} cores\n")
            print("| recording | condition | turns | speakers (found) | words | word speaker error |")
            print("|---|---|---|---|---|---|")
            for name, condition, path, truth, language in cases:
                _, result = post(paths.base, path, language, args.model, True)
                score = scored(result, truth)
                lengths = [t.end - t.start for t in truth]
                print(f"| {name} | {condition} | {len(truth)} of {min(lengths):.1f}-{max(lengths):.1f} s | "
                      f"{score['speakers_true']} ({score['speakers_found']}) | {score['words']} | "
                      f"{100 * score['error']:.1f} % |", flush=True)

            long_file = next(c[2] for c in cases if c[0].startswith("en-5") and c[1] == "as recorded")
            plain, diarized, inside = [], [], []
            for r in range(args.rounds):
                for diarize in ((False, True) if r % 2 == 0 else (True, False)):
                    seconds, result = post(paths.base, long_file, "en", args.model, diarize)
                    (diarized if diarize else plain).append(seconds)
                    if diarize:
                        inside.append(result["timings"]["diarization_seconds"])
                    print(f"round {r + 1}: diarize={diarize}: {seconds:.2f} s", file=sys.stderr, flush=True)
            a, b = statistics.median(plain), statistics.median(diarized)
            print(f"\n{len(rotation[0]) / 16000 / 60:.1f}-minute rotation, {args.rounds} rounds interleaved:"
                  f" transcription alone {a:.2f} s (median of {', '.join(f'{x:.2f}' for x in plain)}),"
                  f" with diarize {b:.2f} s (median of {', '.join(f'{x:.2f}' for x in diarized)}):"
                  f" +{100 * (b / a - 1):.1f} %; the diarization step itself"
                  f" {statistics.median(inside):.2f} s")
        finally:
            paths.stop_service()


if __name__ == "__main__":
    main()
