"""manage.py serve: the web server (uvicorn, ASGI: pages, API, live WebSockets), one Huey consumer
for jobs and one for live sessions, together; Ctrl-C stops them all cleanly.

Each child runs in its own process group, so a terminal's Ctrl-C reaches this command alone and
each child is told once. The worker is given
its whole shutdown time (HUEY_SHUTDOWN_TIMEOUT, then the hand-back of running jobs) instead of
being killed while it hands jobs back. A second Ctrl-C tells the worker not to wait for running
jobs; a third kills what is left."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from transcription.management.commands.run_huey import HAND_BACK_SECONDS


def _child_setup() -> None:
    """In each child before it runs: default SIGINT (a shell's background job starts with it
    ignored), and on Linux a SIGTERM when this command dies, so no child outlives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def web_command(host: str, port: str) -> list[str]:
    """uvicorn serving project.asgi, with WebSocket messages capped a little over the live limit
    (the session itself refuses anything over LIVE_MAX_FRAME_BYTES, with a reason)."""
    return [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", host, "--port", port,
            "--lifespan", "off", "--ws-max-size", str(4 * settings.LIVE_MAX_FRAME_BYTES),
            "--timeout-graceful-shutdown", "5", "--no-server-header"]


def _fresh_metrics() -> None:
    """Counters start from zero with the service: the files of processes gone since its last start
    (prometheus_client keeps one set per process) would otherwise pile up and slow every scrape."""
    folder = Path(settings.METRICS_DIR)
    for old in folder.glob("*.db") if folder.is_dir() else ():
        old.unlink(missing_ok=True)


class Command(BaseCommand):
    help = ("Run the whole service in one terminal: the web server (uvicorn: pages, API, live WebSocket), a"
            " job worker (run_huey) and a live worker (run_live). Ctrl-C stops all three.")

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000",
                            help="address and port to serve on (default 127.0.0.1:8000; 0.0.0.0:8000 for the network)")
        parser.add_argument("--workers", type=int, default=1, help="the job worker's threads (default 1)")

    def handle(self, addrport, workers, **_):
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        start = dict(preexec_fn=_child_setup, process_group=0)
        host, _, port = addrport.rpartition(":")
        _fresh_metrics()
        worker = subprocess.Popen([*manage, "run_huey", "--workers", str(workers)], **start)
        live = subprocess.Popen([*manage, "run_live"], **start)
        web = subprocess.Popen(web_command(host or "127.0.0.1", port), **start)
        self.stdout.write(f"web on http://{addrport}/ (API docs at /docs, live at /live), workers started;"
                          " Ctrl-C stops them all")
        self.stdout.flush()

        signals = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda n, _frame: signals.append(n))
        while not signals and all(p.poll() is None for p in (worker, live, web)):
            time.sleep(0.2)
        names = {"web server": web, "worker": worker, "live worker": live}
        gone = [name for name, p in names.items() if p.poll() is not None] if not signals else []
        for name in gone:  # one part stopped by itself: the service is not whole; say so, stop the rest
            self.stderr.write(f"the {name} stopped on its own (exit status {names[name].returncode});"
                              " stopping the rest")
        if live.poll() is None:
            live.send_signal(signal.SIGINT if not signals or signals[0] == signal.SIGINT else signal.SIGTERM)
        self._stop(web, worker, signals)
        try:  # its sessions end at once: each keeps its recording as a job, then it exits
            live.wait(timeout=60)
        except subprocess.TimeoutExpired:
            live.kill()
            live.wait()
        codes = {"web server": web.returncode, "worker": worker.returncode, "live worker": live.returncode}
        failed = {name: code for name, code in codes.items() if code not in (0, None)}
        if failed:
            self.stderr.write("stopped with errors: " + ", ".join(f"{n} exit status {c}" for n, c in failed.items()))
        if failed or gone:
            sys.exit(1)
        self.stdout.write("stopped")

    def _stop(self, web: subprocess.Popen, worker: subprocess.Popen, signals: list) -> None:
        if web.poll() is None:
            web.send_signal(signal.SIGINT)
        if worker.poll() is None:
            # SIGINT: the worker lets running jobs finish for HUEY_SHUTDOWN_TIMEOUT; SIGTERM (from a
            # service manager, or a closed terminal) hands them back without waiting.
            polite = not signals or signals[0] == signal.SIGINT
            worker.send_signal(signal.SIGINT if polite else signal.SIGTERM)
            if polite:
                wait = settings.HUEY["consumer"].get("shutdown_timeout") or 0
                self.stdout.write(f"stopping: a running job may finish for up to {wait:.0f} s, then it goes"
                                  " back to the queue (Ctrl-C again: hand it back now)")
                self.stdout.flush()
        try:
            web.wait(timeout=10)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
        self.stdout.write("web server stopped")
        self.stdout.flush()
        shutdown = float(settings.HUEY["consumer"].get("shutdown_timeout") or 0)
        deadline = time.monotonic() + shutdown + HAND_BACK_SECONDS + 15
        seen = len(signals)
        while worker.poll() is None:
            if len(signals) > seen:  # asked again: stop waiting for running jobs
                seen = len(signals)
                if seen >= 3:
                    break
                worker.send_signal(signal.SIGINT)
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if worker.poll() is None:
            self.stderr.write("the worker did not stop in time; killed it (the reaper requeues its job)")
            worker.kill()
            worker.wait()
