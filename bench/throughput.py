"""Throughput: jobs per hour on 10-minute files with HUEY_WORKERS=1 and then 2, and the worker's
peak memory (two workers are two threads of one process sharing one loaded model).

    .venv/bin/python bench/throughput.py --jobs 4 --workers 1,2

For each worker count it starts the service (its own web server and Huey consumer, a throw-away
DATA_DIR), warms the model with a short clip, queues `--jobs` copies of the benchmark's reading at
once (wait=false), and times until the last is done, sampling the consumer's RSS meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.getenv("SHARED_DIR", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
from bench.speed_accuracy import make_recording  # noqa: E402
from tests.processes import child_pid, free_port, rss_kib, wait_up  # noqa: E402


def run(workers: int, jobs: int, recording: Path, work: Path, model: str) -> dict:
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(work / f"data-{workers}"), "WHISPER_ENGINE": "ctranslate2",
           "DJANGO_SETTINGS_MODULE": "project.settings", "HUEY_WORKERS": str(workers)}
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    server = subprocess.Popen([*manage, "serve", f"127.0.0.1:{port}"], env=env,
                              stdout=open(work / f"service-{workers}.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    form = {"language": "en", "model": model, "engine": "ctranslate2"}
    peak, stop = [0], threading.Event()
    try:
        wait_up(f"{base}/health")
        consumer = child_pid(server.pid, "run_huey")
        with open(SHARED / "eval" / "jfk.flac", "rb") as fh:
            requests.post(f"{base}/transcribe", files={"file": fh}, data=form, timeout=600).raise_for_status()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(consumer) or 0)
                stop.wait(0.5)

        threading.Thread(target=sample, daemon=True).start()
        began = time.monotonic()
        ids = []
        for _ in range(jobs):
            with open(recording, "rb") as fh:
                resp = requests.post(f"{base}/transcribe", files={"file": fh}, data={**form, "wait": "false"},
                                     timeout=600)
            resp.raise_for_status()
            ids.append(resp.json()["job_id"])
        pending = set(ids)
        while pending:
            for job_id in list(pending):
                status = requests.get(f"{base}/job/{job_id}", timeout=30).json()["status"]
                if status in ("done", "failed", "cancelled"):
                    if status != "done":
                        raise SystemExit(f"job {job_id} ended {status}")
                    pending.discard(job_id)
            time.sleep(1)
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
    return {"workers": workers, "jobs": jobs, "seconds": round(elapsed, 1),
            "jobs_per_hour": round(jobs * 3600 / elapsed, 1), "worker_peak_rss_mib": round(peak[0] / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stt-throughput-"))
    recording = work / "reading.mp3"
    seconds, _ = make_recording(recording, args.minutes)
    print(f"file: {seconds / 60:.1f} min, {args.jobs} jobs per run, model={args.model}, {os.cpu_count()} CPUs",
          flush=True)
    results = []
    for workers in (int(w) for w in args.workers.split(",")):
        results.append(run(workers, args.jobs, recording, work, args.model))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"audio_minutes": round(seconds / 60, 2), "cpus": os.cpu_count(), "runs": results}, indent=2))


if __name__ == "__main__":
    main()
