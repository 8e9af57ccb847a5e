"""Load test: N clients upload short clips at once for a fixed time against a fresh service (web +
real Huey workers, its own DATA_DIR), polling their jobs until every accepted one has finished.

    .venv/bin/python bench/load.py --clients 4 --seconds 60 --workers 1

Each client loops until the time is up: POST /transcribe (wait=false) of the clip, then GET
/job/{id} every --poll seconds until the job is final. A prober thread also asks GET /job/{id} of a
job in flight every 50 ms, so the status endpoint is measured while the workers are busy. When the
time is up, no new uploads are sent and the accepted jobs are waited for (nothing may be lost).

Prints (and writes as JSON with --json): jobs completed per minute, job latency p50/p95 (upload
sent to final status seen, and the server's created_at to finished_at), status-endpoint latency
p50/p95/p99 while workers were busy, upload (POST) latency, errors, accepted vs finished.
Exit status 1 on any error or lost job. Plain `requests` and threads: no extra dependency.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.processes import free_port, wait_up  # noqa: E402
SHARED = Path(os.getenv("SHARED_DIR", REPO.parent / "shared"))
FINAL = ("done", "failed", "cancelled")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(values: list[float]) -> dict:
    return {"n": len(values), **{f"p{p}_ms": round(1000 * percentile(values, p), 1) if values else None
                                 for p in (50, 95, 99)},
            "max_ms": round(1000 * max(values), 1) if values else None}


def seconds(values: list[float]) -> dict:
    return {"n": len(values), **{f"p{p}_s": round(percentile(values, p), 2) if values else None
                                 for p in (50, 95)},
            "max_s": round(max(values), 2) if values else None}


class Service:
    """`manage.py serve --workers N` in a throw-away DATA_DIR, stopped with SIGINT (its Ctrl-C)."""

    def __init__(self, workers: int, env_extra: dict[str, str]) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="stt-bench-load-"))
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DATA_DIR": str(self.data), "DJANGO_SETTINGS_MODULE": "project.settings",
               "LOG_LEVEL": "WARNING", "HUEY_LOG_LEVEL": "WARNING", **env_extra}
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=REPO)
        self.log = open(self.data / "service.log", "wb")
        self.proc = subprocess.Popen([*manage, "serve", f"127.0.0.1:{port}", "--workers", str(workers)],
                                     env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_up(f"{self.base}/models", healthy=False)
        except AssertionError:
            raise SystemExit(f"service did not come up; see {self.data / 'service.log'}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: dict[str, float] = {}      # job id -> monotonic time the upload was sent
        self.final: dict[str, dict] = {}          # job id -> final job JSON
        self.seen_final_at: dict[str, float] = {}
        self.post_latency: list[float] = []
        self.status_busy: list[float] = []        # GET /job/{id} while some job was queued/running
        self.status_idle: list[float] = []
        self.errors: list[str] = []

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def in_flight(self) -> list[str]:
        with self.lock:
            return [j for j in self.accepted if j not in self.final]


def get_status(session: requests.Session, base: str, job_id: str, stats: Stats) -> dict | None:
    began = time.monotonic()
    try:
        resp = session.get(f"{base}/job/{job_id}", timeout=30)
    except requests.RequestException as exc:
        stats.error(f"GET /job: {type(exc).__name__}: {exc}")
        return None
    took = time.monotonic() - began
    if resp.status_code != 200:
        stats.error(f"GET /job -> {resp.status_code}: {resp.text[:200]}")
        return None
    job = resp.json()
    with stats.lock:
        (stats.status_busy if job["status"] in ("queued", "running") else stats.status_idle).append(took)
    return job


def client(base: str, clip: bytes, clip_name: str, form: dict, until: float, poll: float,
           stats: Stats, drain_until: list[float]) -> None:
    session = requests.Session()
    while time.monotonic() < until:
        sent = time.monotonic()
        try:
            resp = session.post(f"{base}/transcribe", files={"file": (clip_name, clip)},
                                data={**form, "wait": "false"}, timeout=120)
        except requests.RequestException as exc:
            stats.error(f"POST: {type(exc).__name__}: {exc}")
            time.sleep(1)
            continue
        with stats.lock:
            stats.post_latency.append(time.monotonic() - sent)
        if resp.status_code != 202:
            stats.error(f"POST -> {resp.status_code}: {resp.text[:200]}")
            time.sleep(1)
            continue
        job_id = resp.json()["job_id"]
        with stats.lock:
            stats.accepted[job_id] = sent
        while time.monotonic() < drain_until[0]:
            time.sleep(poll)
            job = get_status(session, base, job_id, stats)
            if job and job["status"] in FINAL:
                with stats.lock:
                    stats.final[job_id] = job
                    stats.seen_final_at[job_id] = time.monotonic()
                break


def prober(base: str, stats: Stats, stop: threading.Event, interval: float) -> None:
    session = requests.Session()
    while not stop.is_set():
        flying = stats.in_flight()
        if flying:
            get_status(session, base, random.choice(flying), stats)
        stop.wait(interval)


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60, help="how long clients keep uploading")
    parser.add_argument("--workers", type=int, default=1, help="Huey worker threads (serve --workers)")
    parser.add_argument("--clip", type=Path, default=SHARED / "eval" / "jfk.flac")
    parser.add_argument("--model", default="base")
    parser.add_argument("--engine", default="ctranslate2")
    parser.add_argument("--language", default="en")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between a client's status polls")
    parser.add_argument("--drain-timeout", type=float, default=900,
                        help="after the run, how long to wait for accepted jobs to finish")
    parser.add_argument("--cpu-threads", type=int, default=None, help="WHISPER_CPU_THREADS for the worker")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()

    env_extra = {}
    if args.cpu_threads is not None:
        env_extra["WHISPER_CPU_THREADS"] = str(args.cpu_threads)
    form = {"language": args.language, "model": args.model, "engine": args.engine}
    clip = args.clip.read_bytes()
    load_before = round(os.getloadavg()[0], 2)
    service = Service(args.workers, env_extra)
    stats = Stats()
    try:
        warm = requests.post(f"{service.base}/transcribe", files={"file": (args.clip.name, clip)}, data=form,
                             timeout=600)  # loads the model into the worker; not counted
        warm.raise_for_status()
        print(f"service {service.base} (DATA_DIR {service.data}), warm-up job "
              f"{warm.json()['timings']['inference_seconds']:.2f} s inference; {args.clients} clients for "
              f"{args.seconds:.0f} s, {args.workers} worker(s), clip {args.clip.name}", flush=True)
        began = time.monotonic()
        until = began + args.seconds
        drain_until = [until + args.drain_timeout]
        stop_probe = threading.Event()
        probe = threading.Thread(target=prober, args=(service.base, stats, stop_probe, 0.05), daemon=True)
        probe.start()
        threads = [threading.Thread(target=client, args=(service.base, clip, args.clip.name, form, until,
                                                         args.poll, stats, drain_until), daemon=True)
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + args.drain_timeout + 120)
        ended = time.monotonic()
        stop_probe.set()
        probe.join()
        health_began = time.monotonic()
        requests.get(f"{service.base}/health", timeout=60)
        health_seconds = time.monotonic() - health_began
    finally:
        service.stop()

    done = {j: v for j, v in stats.final.items() if v["status"] == "done"}
    failed = {j: v for j, v in stats.final.items() if v["status"] != "done"}
    lost = [j for j in stats.accepted if j not in stats.final]
    client_latency = [stats.seen_final_at[j] - stats.accepted[j] for j in done]
    server_latency = [(iso(v["finished_at"]) - iso(v["created_at"])).total_seconds() for v in done.values()]
    queue_wait = [(iso(v["started_at"]) - iso(v["created_at"])).total_seconds() for v in done.values()]
    last_done = max((stats.seen_final_at[j] for j in done), default=ended)
    span_minutes = (last_done - began) / 60
    report = {
        "clients": args.clients, "seconds": args.seconds, "workers": args.workers,
        "clip": args.clip.name, "model": args.model, "engine": args.engine,
        "cpus": os.cpu_count(), "load_average_before": load_before,
        "accepted": len(stats.accepted), "done": len(done), "failed_or_cancelled": len(failed),
        "lost": len(lost), "errors": len(stats.errors), "error_samples": stats.errors[:5],
        "jobs_per_minute": round(len(done) / span_minutes, 2) if span_minutes > 0 else None,
        "wall_seconds_until_last_job": round(last_done - began, 1),
        "job_latency_client": seconds(client_latency),
        "job_latency_server": seconds(server_latency),
        "queue_wait": seconds(queue_wait),
        "inference_seconds_mean": round(statistics.mean(v["inference_seconds"] for v in done.values()), 2)
        if done else None,
        "status_latency_while_busy": ms(stats.status_busy),
        "status_latency_idle": ms(stats.status_idle),
        "upload_post_latency": ms(stats.post_latency),
        "health_seconds_after": round(health_seconds, 3),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    busy = report["status_latency_while_busy"]
    print(f"\n{report['done']} jobs done of {report['accepted']} accepted ({report['lost']} lost, "
          f"{report['failed_or_cancelled']} failed, {report['errors']} errors): "
          f"{report['jobs_per_minute']} jobs/min; job latency p50 {report['job_latency_client']['p50_s']} s, "
          f"p95 {report['job_latency_client']['p95_s']} s; GET /job while busy p50 {busy['p50_ms']} ms, "
          f"p95 {busy['p95_ms']} ms ({'within' if busy['p95_ms'] is not None and busy['p95_ms'] < 20 else 'OVER'}"
          f" the 20 ms goal)")
    sys.exit(1 if report["errors"] or report["lost"] or report["failed_or_cancelled"] else 0)


if __name__ == "__main__":
    main()
