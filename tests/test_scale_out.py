"""Scaled-out mode for real: PostgreSQL + RedisHuey, uvicorn with two web processes and several
consumer processes sharing MEDIA_ROOT. One consumer is SIGKILLed mid-inference, another is stopped
with SIGTERM mid-inference; every job must still finish exactly once with a correct transcript. A
live session opened on the web processes is decoded by a live worker elsewhere."""
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.conftest import REPO, deployment_env, post_file
from tests.processes import free_port, wait_up

pytestmark = pytest.mark.integration

PG = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
REDIS_URL = "redis://127.0.0.1:6379/0"


def _postgres():
    try:
        import psycopg

        return psycopg.connect(**PG, autocommit=True, connect_timeout=3)
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({exc}); scaled-out test skipped")


def _redis():
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        return client
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL} ({exc}); scaled-out test skipped")


@pytest.fixture
def cluster(tmp_path):
    """A fresh database and queue name, migrated; yields a helper that starts processes."""
    pg = _postgres()
    rds = _redis()
    name = f"stt_scale_{uuid.uuid4().hex[:8]}"
    pg.execute(f'CREATE DATABASE "{name}"')
    env = deployment_env(tmp_path, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}",
                         HUEY_REDIS_URL=REDIS_URL, HUEY_NAME=name, JOB_HEARTBEAT_SECONDS="1",
                         JOB_STALE_SECONDS="5")
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, cwd=REPO, check=True)
    procs: list[subprocess.Popen] = []

    class Cluster:
        data_dir = tmp_path
        queue_name = name

        def consumer(self, label: str) -> subprocess.Popen:
            log = open(tmp_path / f"consumer-{label}.log", "wb")
            proc = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "run_huey", "--workers", "1"],
                                    env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            return proc

        def live_worker(self) -> subprocess.Popen:
            log = open(tmp_path / "consumer-live.log", "wb")
            proc = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "run_live", "--sessions", "2"],
                                    env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            return proc

        def web(self) -> str:
            from transcription.management.commands.serve import web_command

            port = free_port()
            procs.append(subprocess.Popen(  # as the README deploys it: uvicorn, two processes
                [*web_command("127.0.0.1", str(port)), "--workers", "2"], env=env, cwd=REPO,
                stdout=open(tmp_path / "web.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
            url = f"http://127.0.0.1:{port}"
            wait_up(f"{url}/health", healthy=False)
            return url

        def rows(self, sql: str):
            import psycopg

            with psycopg.connect(**{**PG, "dbname": name}) as conn:
                return conn.execute(sql).fetchall()

        def logs(self) -> str:
            return "".join(p.read_text(errors="replace") for p in tmp_path.glob("consumer-*.log"))

    try:
        yield Cluster()
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # uvicorn's supervisor and its workers
                except (PermissionError, ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        for key in rds.scan_iter(f"*{name}*"):
            rds.delete(key)
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.close()


def _running_on(cluster, proc: subprocess.Popen, timeout: float = 90) -> str:
    """Wait until `proc` runs a job and has decoded part of it; return the job id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id, worker, progress in cluster.rows(
                "SELECT id, worker, progress FROM transcription_job WHERE status = 'running'"):
            if worker.endswith(f":{proc.pid}"):
                time.sleep(1.0)  # inside inference, not at its edge
                return str(job_id)
        time.sleep(0.1)
    pytest.fail(f"no job ran on consumer {proc.pid}\n{cluster.logs()[-3000:]}")


def test_killed_and_stopped_workers_lose_no_job_and_run_none_twice(cluster, eval_dir):
    a, b = cluster.consumer("a"), cluster.consumer("b")
    url = cluster.web()
    assert requests.get(f"{url}/health", timeout=30).json()["checks"]["queue"]["backend"] == "RedisHuey"
    job_ids = []
    for _ in range(4):
        resp = post_file(url, eval_dir / "multilingual.mp3", language="en", model="base",
                         engine="ctranslate2", word_timestamps=False, wait=False)
        assert resp.status_code == 202, resp.text
        job_ids.append(resp.json()["job_id"])

    killed_job = _running_on(cluster, a)
    os.kill(a.pid, signal.SIGKILL)
    a.wait(timeout=10)

    c = cluster.consumer("c")
    stopped_job = _running_on(cluster, b)
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=30) is not None
    assert f"job={stopped_job} event=requeued reason=worker_shutdown" in cluster.logs()

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        statuses = {job_id: requests.get(f"{url}/job/{job_id}", timeout=10).json()["status"] for job_id in job_ids}
        if all(s in ("done", "failed", "cancelled") for s in statuses.values()):
            break
        time.sleep(1)
    logs = cluster.logs()
    assert set(statuses.values()) == {"done"}, (statuses, logs[-4000:])
    for job_id in job_ids:
        assert len(re.findall(f"job={job_id} event=done", logs)) == 1, job_id  # exactly once
        text = requests.get(f"{url}/job/{job_id}", timeout=10).json()["result"]["text"].lower()
        assert "permission is hereby granted" in text and "software" in text
    assert f"job={killed_job} event=requeued reason=stale_heartbeat" in logs
    attempts = dict(cluster.rows("SELECT id::text, attempts FROM transcription_job"))
    assert attempts[killed_job] == 2
    if stopped_job != killed_job:
        assert attempts[stopped_job] == 1  # the interrupted attempt was refunded at shutdown
    assert not cluster.rows("SELECT id FROM transcription_job WHERE status IN ('queued', 'running')")
    assert not list((cluster.data_dir / "tmp").glob("job-*")), "temporary audio left behind"
    assert c.poll() is None


def test_jobs_whose_tasks_a_redis_restart_lost_are_enqueued_again(cluster, clips):
    """Redis here keeps nothing on disk: a restart empties the queue while the jobs stay 'queued'
    in the database. The reaper (at a consumer's start, then every minute) must enqueue them again."""
    from huey import RedisHuey

    url = cluster.web()
    resp = post_file(url, clips["flac"], language="en", model="base", engine="ctranslate2",
                     word_timestamps=False, wait=False)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    queue = RedisHuey(cluster.queue_name, url=REDIS_URL)
    assert queue.pending_count() == 1
    queue.flush()  # what a restart of a Redis without persistence leaves
    assert queue.pending_count() == 0
    # Only jobs queued for longer than JOB_STALE_SECONDS are enqueued again: make this one old.
    import psycopg

    with psycopg.connect(**{**PG, "dbname": cluster.queue_name}, autocommit=True) as db:
        db.execute("UPDATE transcription_job SET created_at = created_at - interval '1 hour' WHERE id = %s",
                   (job_id,))
    cluster.consumer("a")
    deadline = time.monotonic() + 180
    while (job := requests.get(f"{url}/job/{job_id}", timeout=10).json())["status"] != "done":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, \
            f"{job}\n{cluster.logs()[-3000:]}"
        time.sleep(0.5)
    assert "ask not what your country" in job["result"]["text"].lower()
    logs = cluster.logs()
    assert f"job={job_id} event=reenqueued reason=task_lost" in logs
    assert logs.count(f"job={job_id} event=done") == 1


def test_a_live_session_is_decoded_by_a_live_worker_and_its_job_by_a_consumer(cluster):
    """Live sessions are tasks of their own Redis queue (the jobs' name + "-live"), taken by any
    `run_live` process; the web process holding the socket and that worker share only PostgreSQL,
    Redis and MEDIA_ROOT."""
    from tests import conversations
    from tests.conftest import normalise_words
    from tests.test_live import LiveClient, wait_job, ws_url
    from huey import RedisHuey

    cluster.consumer("a")
    cluster.live_worker()
    url = cluster.web()
    deadline = time.monotonic() + 120
    while not requests.get(f"{url}/health", timeout=30).json()["checks"]["live"]["ok"]:
        assert time.monotonic() < deadline, cluster.logs()[-3000:]
        time.sleep(0.3)
    client = LiveClient(ws_url(url, language="en"))
    client.send_audio(conversations.clip("jfk.flac"), speed=2)
    client.stop()
    end = client.ended()
    assert end["code"] == 1000 and "ask not what your country" in normalise_words(end["text"])
    assert RedisHuey(cluster.queue_name + "-live", url=REDIS_URL).pending_count() == 0
    job = wait_job(url, end["job_id"])
    assert job["status"] == "done" and "ask not what your country" in normalise_words(job["result"]["text"])
    rows = cluster.rows("SELECT status, end_code, job_id::text FROM transcription_livesession")
    assert rows == [("ended", 1000, end["job_id"])]
