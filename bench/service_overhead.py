"""Service overhead benchmark: the same long file through the running service and through the
engine library directly, in one run. Prints wall times, their ratio and real-time factors.

    make bench                      # or: .venv/bin/python bench/service_overhead.py --minutes 10

It starts its own web server and Huey consumer (a throw-away DATA_DIR; the repo's models/), warms
the worker's model cache with a short clip, then times one synchronous POST /transcribe of a
~10-minute file made by concatenating the shared eval clips, and one direct call of the engine
library (faster-whisper or mlx-whisper) on the same file with the same options.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.getenv("SHARED_DIR", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))


def ffmpeg_exe() -> str:
    import shutil

    import imageio_ffmpeg

    return os.getenv("FFMPEG_BINARY") or shutil.which("ffmpeg") or imageio_ffmpeg.get_ffmpeg_exe()


def make_long_file(out: Path, minutes: float) -> float:
    clips = [SHARED / "eval" / n for n in ("jfk.flac", "multilingual.mp3", "hotwords.mp3")]
    inputs, filters = [], []
    block = 11.0 + 59.95 + 4.05
    repeats = max(1, round(minutes * 60 / block))
    for _ in range(repeats):
        for clip in clips:
            inputs += ["-i", str(clip)]
    n = len(inputs) // 2
    filters = "".join(f"[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}];" for i in range(n))
    filters += "".join(f"[a{i}]" for i in range(n)) + f"concat=n={n}:v=0:a=1[out]"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *inputs, "-filter_complex",
                    filters, "-map", "[out]", "-c:a", "libmp3lame", "-b:a", "64k", str(out)], check=True)
    return repeats * block


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"service at {url} did not come up")


def decode(path: Path) -> "np.ndarray":
    """FFmpeg to 16 kHz mono float32, as the service's worker does, so both sides see the same samples."""
    import numpy as np

    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar",
                          "16000", "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4")


def direct(engine: str, model: str, path: Path, language: str) -> tuple[float, str]:
    """The engine library alone on the same file, with the service's default options.

    Timed: FFmpeg decoding plus inference (the model is loaded before the clock starts, as the
    service's worker had it cached)."""
    options = dict(language=language, word_timestamps=True, condition_on_previous_text=True,
                   no_speech_threshold=0.4, hallucination_silence_threshold=0.8)
    if engine == "ctranslate2":
        from faster_whisper import WhisperModel

        lib = WhisperModel(str(REPO / "models" / f"whisper-{model}" / "ctranslate2"),
                           device="cpu", compute_type="int8")
        began = time.monotonic()
        segments, _ = lib.transcribe(decode(path), vad_filter=False, **options)
        text = "".join(s.text for s in segments)
        return time.monotonic() - began, text
    import mlx_whisper

    mlx_dir = str(REPO / "models" / f"whisper-{model}")
    mlx_whisper.transcribe(decode(SHARED / "eval" / "jfk.flac"), path_or_hf_repo=mlx_dir, fp16=False)  # load
    began = time.monotonic()
    result = mlx_whisper.transcribe(decode(path), path_or_hf_repo=mlx_dir, fp16=False, **options)
    return time.monotonic() - began, result["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--model", default="base")
    parser.add_argument("--engine", default="ctranslate2", choices=["ctranslate2", "mlx"])
    parser.add_argument("--language", default="en")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stt-bench-"))
    long_file = work / "long.mp3"
    audio_seconds = make_long_file(long_file, args.minutes)
    print(f"file: {long_file.name}, {audio_seconds / 60:.1f} min, model={args.model} engine={args.engine}")

    port = free_port()
    env = {**os.environ, "DATA_DIR": str(work / "data"), "WHISPER_ENGINE": args.engine,
           "DJANGO_SETTINGS_MODULE": "project.settings"}
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    log = open(work / "service.log", "wb")
    server = subprocess.Popen([*manage, "serve", f"127.0.0.1:{port}"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/health")
        form = {"language": args.language, "model": args.model, "engine": args.engine}
        with open(SHARED / "eval" / "jfk.flac", "rb") as fh:  # warm the worker's model cache
            requests.post(f"{base}/transcribe", files={"file": fh}, data=form, timeout=600).raise_for_status()
        began = time.monotonic()
        with open(long_file, "rb") as fh:
            resp = requests.post(f"{base}/transcribe", files={"file": fh}, data=form, timeout=7200)
        service_seconds = time.monotonic() - began
        resp.raise_for_status()
        body = resp.json()
    finally:
        server.send_signal(2)
        server.wait(timeout=60)

    direct_seconds, direct_text = direct(args.engine, args.model, long_file, args.language)
    import jiwer

    agreement = jiwer.wer(direct_text.lower().strip(), body["text"].lower().strip())
    report = {
        "audio_minutes": round(audio_seconds / 60, 2),
        "model": args.model,
        "engine": args.engine,
        "service_wall_seconds": round(service_seconds, 2),
        "service_inference_seconds": round(body["timings"]["inference_seconds"], 2),
        "service_conversion_seconds": round(body["timings"]["conversion_seconds"], 2),
        "direct_wall_seconds": round(direct_seconds, 2),
        "ratio_service_over_direct": round(service_seconds / direct_seconds, 3),
        "rtf_service": round(service_seconds / audio_seconds, 4),
        "rtf_direct": round(direct_seconds / audio_seconds, 4),
        "wer_service_vs_direct_text": round(agreement, 4),
    }
    print(json.dumps(report, indent=2))
    verdict = "within" if report["ratio_service_over_direct"] <= 1.05 else "OVER"
    print(f"service overhead {100 * (report['ratio_service_over_direct'] - 1):+.1f} % ({verdict} the 5 % goal)")


if __name__ == "__main__":
    main()
