"""`manage.py serve` (what `make run` starts): web server and worker together, Ctrl-C stops both."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO, deployment_env
from tests.processes import free_port, wait_up

pytestmark = pytest.mark.integration


@pytest.fixture
def serve(tmp_path):
    """`manage.py serve` on a free port with its own DATA_DIR; yields (process, base URL)."""
    port = free_port()
    env = deployment_env(tmp_path)
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, check=True)
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "serve", f"127.0.0.1:{port}"],
                            env=env, cwd=REPO, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    proc.log_tail = lambda: (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_up(f"{base}/health", healthy=False)
        assert health.status_code == 200, health.text
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_serve_runs_web_and_worker_and_sigint_stops_both(serve, clips):
    proc, base = serve
    with open(clips["flac"], "rb") as fh:
        resp = requests.post(f"{base}/transcribe", files={"file": fh},
                             data={"language": "en", "model": "base", "word_timestamps": "false"},
                             timeout=300)
    assert resp.status_code == 200 and "ask not" in resp.json()["text"].lower(), proc.log_tail()
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=45) == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def test_sigint_lets_the_running_job_finish_before_the_worker_exits(serve, tmp_path, eval_dir):
    import sqlite3

    proc, base = serve
    with open(eval_dir / "multilingual.mp3", "rb") as fh:
        job = requests.post(f"{base}/transcribe", files={"file": fh}, timeout=60,
                            data={"language": "en", "model": "base", "wait": "false",
                                  "word_timestamps": "false"}).json()
    deadline = time.monotonic() + 60
    while requests.get(job["url"], timeout=10).json()["status"] != "running":
        assert time.monotonic() < deadline, f"the job did not start:\n{proc.log_tail()}"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, proc.log_tail()
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    status, text = db.execute("SELECT status, result FROM transcription_job WHERE id = ?",
                              (job["job_id"].replace("-", ""),)).fetchone()
    assert status == "done" and "permission is hereby granted" in text.lower(), proc.log_tail()
