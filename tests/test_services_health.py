"""Health: each dependency checked for real, and the workers announcing themselves. With no
consumer running, /health, a synchronous request and the OpenAI routes tell the truth; a
dependency that is down gives 503 naming it. Over real HTTP against web processes started here."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO, deployment_env, post_file
from tests.processes import free_port, wait_up

pytestmark = pytest.mark.integration


@pytest.fixture
def web_only(tmp_path):
    """`manage.py runserver` with its own DATA_DIR and no worker; yields (base URL, env). Heartbeats
    every second, so a worker is counted gone 3 s after its last one."""
    # live sessions turned off: the job worker alone decides health here (tests/test_live.py has the rest)
    env = deployment_env(tmp_path, JOB_HEARTBEAT_SECONDS="1", LIVE_MAX_SESSIONS="0")
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, check=True)
    port = free_port()
    with open(tmp_path / "web.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "runserver", f"127.0.0.1:{port}",
                                 "--noreload"], env=env, cwd=REPO, start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/health", healthy=False)
        yield base, env
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _start_worker(env, log_path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, str(REPO / "manage.py"), "run_huey"], env=env, cwd=REPO,
                                start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def _health_until(base: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(f"{base}/health", timeout=30)
        body = answer.json()
        if body["status"] == status:
            return answer
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_without_a_worker_health_is_degraded_and_requests_do_not_hang(web_only, clips, tmp_path):
    base, env = web_only
    health = requests.get(f"{base}/health", timeout=30)
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    workers = health.json()["checks"]["workers"]
    assert workers["ok"] is False and workers["alive"] == 0 and "no worker is running" in workers["error"]
    assert all(check["ok"] for name, check in health.json()["checks"].items() if name != "workers")

    # The synchronous answer (wait=true is the default) comes at once, as 202 with the job's URL.
    with open(clips["flac"], "rb") as fh:
        answer = requests.post(f"{base}/transcribe", files={"file": fh}, data={"language": "en"}, timeout=60)
    assert answer.status_code == 202, answer.text
    assert "no worker is running" in answer.json()["detail"]
    job_url = answer.json()["url"]
    assert requests.get(job_url, timeout=30).json()["status"] == "queued"

    # OpenAI's protocol has no "accepted": refused before any job is made.
    with open(clips["flac"], "rb") as fh:
        openai = requests.post(f"{base}/v1/audio/transcriptions", files={"file": fh}, data={"model": "whisper-1"},
                               timeout=60)
    assert openai.status_code == 503 and "No worker is running" in openai.json()["error"]["message"]

    # A worker starts: health turns ok, names it, and the waiting job runs.
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        health = _health_until(base, "ok")
        names = [w["name"] for w in health.json()["checks"]["workers"]["workers"]]
        assert names == [f"{os.uname().nodename}:{worker.pid}"]
        deadline = time.monotonic() + 300
        while (job := requests.get(job_url, timeout=30).json())["status"] != "done":
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.3)
    finally:
        os.killpg(worker.pid, signal.SIGINT)
        assert worker.wait(timeout=120) == 0
    # A stopped worker takes its row with it: no minute of false "ok".
    assert requests.get(f"{base}/health", timeout=30).json()["status"] == "degraded"


def test_a_killed_worker_stops_counting_after_three_missed_heartbeats(web_only, tmp_path):
    base, env = web_only
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        _health_until(base, "ok")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # no chance to say goodbye
        worker.wait()
    body = _health_until(base, "degraded", timeout=60).json()
    assert body["checks"]["workers"]["alive"] == 0


def _web(env: dict, port: int) -> subprocess.Popen:
    from transcription.management.commands.serve import web_command

    proc = subprocess.Popen(web_command("127.0.0.1", str(port)), env=env, cwd=REPO,  # uvicorn, as deployed
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{port}/health", timeout=30, healthy=False)  # its 503 is the test
    except AssertionError:
        proc.kill()
        raise
    return proc


@pytest.mark.parametrize("broken,check", [
    ({"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}, "database"),
    ({"HUEY_REDIS_URL": "redis://127.0.0.1:1/0"}, "queue"),
])
def test_a_dependency_that_is_down_gives_503_with_a_clear_message(tmp_path, clips, broken, check):
    env = deployment_env(tmp_path, LIVE_MAX_SESSIONS="0")
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, check=True)
    port = free_port()
    proc = _web({**env, **broken}, port)
    try:
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=30)
        assert health.status_code == 503
        failed = [name for name, c in health.json()["checks"].items() if not c["ok"]]
        # No worker runs here (and with the database down none could be seen): that check fails too.
        assert failed in ([check], [check, "workers"]) and health.json()["status"] == "error"
        resp = post_file(f"http://127.0.0.1:{port}", clips["wav"], language="en", model="base")
        assert resp.status_code == 503, resp.text
        assert ("database is unavailable" if check == "database" else "queue is unavailable") in resp.json()["detail"]
        assert "Traceback" not in resp.text
        if check == "queue":  # a model install is refused alike, and its task left failed, not queued
            def manage(*args: str) -> str:
                return subprocess.run([sys.executable, str(REPO / "manage.py"), *args], check=True, text=True,
                                      capture_output=True, env={**env, "DJANGO_SUPERUSER_PASSWORD": "ops-pw-1"}).stdout
            manage("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com")
            key = manage("create_token", "ops", "--name", "ops").strip()
            install = requests.post(f"http://127.0.0.1:{port}/models/tiny.en/install", json={"source": "package"},
                                    headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert install.status_code == 503 and "queue is unavailable" in install.json()["detail"], install.text
            statuses = manage("shell", "-v", "0", "-c", "from transcription.models import ModelTask;"
                              "print(list(ModelTask.objects.values_list('status', flat=True)))")
            assert statuses.strip() == "['failed']", statuses
    finally:
        proc.terminate()
        proc.wait(timeout=10)
