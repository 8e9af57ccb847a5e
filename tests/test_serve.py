"""`manage.py serve` (what `make run` starts): web server, job worker and live worker together;
Ctrl-C stops them all."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import JFK_REFERENCE, REPO, deployment_env, ffmpeg, normalise_words
from tests.processes import free_port, wait_up

pytestmark = pytest.mark.integration


def start_serve(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    """`manage.py serve` in a process group of its own, as a shell starts a foreground command:
    a terminal's Ctrl-C is SIGINT to that whole group (see interrupt())."""
    env = deployment_env(data_dir, **env)
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, check=True)
    log_path = data_dir / f"serve-{port}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "serve", f"127.0.0.1:{port}"],
                                env=env, cwd=REPO, start_new_session=True, stdout=log,
                                stderr=subprocess.STDOUT)
    proc.output = lambda: log_path.read_text(errors="replace")
    proc.log_tail = lambda: proc.output()[-3000:]
    try:
        wait_up(f"http://127.0.0.1:{port}/health")  # 200 only once the worker has announced itself
    except AssertionError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"serve did not come up:\n{proc.log_tail()}") from None
    return proc


def interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C in a terminal: SIGINT to every process of the foreground group."""
    os.killpg(proc.pid, signal.SIGINT)


@pytest.fixture
def serve(tmp_path):
    """`manage.py serve` on a free port with its own DATA_DIR; yields (process, base URL)."""
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_serve_runs_web_and_workers_and_sigint_stops_them_all(serve, clips):
    proc, base = serve
    with open(clips["flac"], "rb") as fh:
        resp = requests.post(f"{base}/transcribe", files={"file": fh},
                             data={"language": "en", "model": "base", "word_timestamps": "false"},
                             timeout=300)
    assert resp.status_code == 200 and "ask not" in resp.json()["text"].lower(), proc.log_tail()
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 3  # uvicorn, run_huey, run_live
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=45) == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def test_ctrl_c_during_a_live_session_closes_it_with_1012_and_keeps_the_recording(serve, tmp_path):
    import sqlite3

    from tests import conversations
    from tests.test_live import LiveClient, ws_url

    proc, base = serve
    client = LiveClient(ws_url(base, language="en"))
    client.send_audio(conversations.clip("jfk.flac", 0, 6.0), speed=3)
    client.wait_for("session.ready")
    session_id = client.of_type("session.started")[0]["session_id"]
    interrupt(proc)  # Ctrl-C in the terminal
    assert proc.wait(timeout=90) == 0, proc.log_tail()
    assert client.closed.wait(10) and client.ws.close_code == 1012
    assert "live worker" in proc.output() and "stopped" in proc.output()
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    status, code, job_id, seconds = db.execute(
        "SELECT status, end_code, job_id, audio_seconds FROM transcription_livesession WHERE id = ?",
        (session_id.replace("-", ""),)).fetchone()
    assert status == "ended" and code == 1012 and job_id and seconds == pytest.approx(6.0, abs=0.11)
    # the recording waits in the queue as a job: the next start transcribes it
    assert db.execute("SELECT status FROM transcription_job WHERE id = ?", (job_id,)).fetchone() == ("queued",)


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


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory, eval_dir) -> Path:
    """Three minutes of real speech (the JFK clip 16 times): long enough to be mid-inference."""
    out = tmp_path_factory.mktemp("long") / "three_minutes.flac"
    ffmpeg("-stream_loop", "15", "-i", str(eval_dir / "jfk.flac"), "-ac", "1", "-ar", "16000", str(out))
    return out


def _row(data_dir: Path, job_id: str) -> tuple[str, int, float]:
    import sqlite3

    with sqlite3.connect(data_dir / "db.sqlite3", timeout=30) as db:
        return db.execute("SELECT status, attempts, progress FROM transcription_job WHERE id = ?",
                          (job_id.replace("-", ""),)).fetchone()


def _wait_decoding(data_dir: Path, job_id: str, log_tail, timeout: float = 180) -> None:
    """Until the job is running and the engine has reported decoded audio."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, progress = _row(data_dir, job_id)
        if status == "running" and progress > 0:
            return
        assert status in ("queued", "running") and time.monotonic() < deadline, (status, log_tail())
        time.sleep(0.2)


def test_ctrl_c_mid_job_hands_it_back_exits_0_and_the_next_start_runs_it(tmp_path, three_minutes):
    port = free_port()
    proc = start_serve(tmp_path, port, HUEY_SHUTDOWN_TIMEOUT="1")
    with open(three_minutes, "rb") as fh:
        job = requests.post(f"http://127.0.0.1:{port}/transcribe", files={"file": fh}, timeout=60,
                            data={"language": "en", "model": "base", "wait": "false"}).json()
    _wait_decoding(tmp_path, job["job_id"], proc.log_tail)

    interrupt(proc)
    assert proc.wait(timeout=240) == 0, proc.log_tail()
    out = proc.output()
    assert "Traceback" not in out and "terminate called" not in out, out[-3000:]
    assert "1 running job handed back to the queue" in out and "web server stopped" in out, out[-3000:]
    status, attempts, _ = _row(tmp_path, job["job_id"])
    assert (status, attempts) == ("queued", 0)  # back in the queue, the interrupted attempt refunded

    again = start_serve(tmp_path, port)
    try:
        deadline = time.monotonic() + 600
        while (status := _row(tmp_path, job["job_id"])[0]) != "done":  # one read: it may end in between
            assert time.monotonic() < deadline and status in ("queued", "running"), (status, again.log_tail())
            time.sleep(0.5)
        assert _row(tmp_path, job["job_id"])[1] == 1
    finally:
        interrupt(again)
        assert again.wait(timeout=240) == 0, again.log_tail()
    assert "no job was running" in again.output()


def test_run_huey_alone_stopped_by_ctrl_c_mid_job_hands_it_back_and_exits_0(tmp_path, three_minutes):
    env = deployment_env(tmp_path, HUEY_SHUTDOWN_TIMEOUT="1")
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=REPO)
    create = ("from django.core.files import File; from transcription import services;"
              " from transcription.schemas import TranscribeOptions;"
              f" fh = open({str(three_minutes)!r}, 'rb');"
              " print(services.create_job(File(fh, name='long.flac'),"
              " TranscribeOptions(language='en', model='base')).id)")
    job_id = subprocess.run([*manage, "shell", "-c", create], env=env, cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*manage, "run_huey"], env=env, cwd=REPO, start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
    tail = lambda: log_path.read_text(errors="replace")[-3000:]  # noqa: E731
    try:
        _wait_decoding(tmp_path, job_id, tail)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=240) == 0, tail()  # it died with 134 (abort) mid-inference before
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "terminate called" not in tail() and "Traceback" not in tail(), tail()
    assert "1 running job handed back to the queue" in tail()
    assert _row(tmp_path, job_id)[:2] == ("queued", 0)


def test_a_live_worker_killed_mid_session_leaves_a_closed_session_and_a_job(tmp_path):
    """SIGKILL gives the live worker no chance to end its session: the web process sees its
    heartbeat stop, ends the session (1011) and keeps the recording and the confirmed words.
    (Under `serve` a dead child stops the rest: here the three run on their own, as deployed.)"""
    from tests import conversations
    from tests.test_live import LiveClient, wait_job, ws_url
    from transcription.management.commands.serve import web_command

    # workers beat every 5 s: the dead one still counts as alive for 15 s after it died
    env = deployment_env(tmp_path, LIVE_WORKER_SILENT_SECONDS="3", JOB_HEARTBEAT_SECONDS="5")
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start = dict(env=env, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen(web_command("127.0.0.1", str(port)), **start),
             subprocess.Popen([*manage, "run_huey"], **start), subprocess.Popen([*manage, "run_live"], **start)]
    try:
        wait_up(f"{base}/health")  # 200 once both workers have announced themselves
        client = LiveClient(ws_url(base, language="en"))
        client.send_audio(conversations.clip("jfk.flac", 0, 5.0), speed=2)
        client.wait_for("final")
        os.killpg(procs[2].pid, signal.SIGKILL)
        client.send_audio(conversations.clip("jfk.flac", 5.0, 8.0), speed=2)  # the client goes on talking
        end = client.ended(timeout=60)
        assert end["code"] == 1011 and "the live worker stopped" in end["reason"] and client.ws.close_code == 1011
        assert end["text"] and normalise_words(end["text"]) in normalise_words(JFK_REFERENCE)
        assert 5.0 <= end["audio_seconds"] <= 8.01  # what came before the session was ended
        job = wait_job(base, end["job_id"])  # the job worker is alive: the recording is transcribed
        assert job["duration"] == pytest.approx(end["audio_seconds"], abs=0.01)
        assert "ask not what your country" in normalise_words(job["result"]["text"])

        # A session opened while the dead worker still counts as alive: nobody takes it. It ends
        # (1013) after START_SECONDS, and what it received is still kept.
        late = LiveClient(ws_url(base, language="en"))
        late.send_audio(conversations.clip("jfk.flac", 0, 2.0), speed=4)
        end = late.ended(timeout=60)
        assert end["code"] == 1013 and "no live worker took the session" in end["reason"] and end["job_id"]
        assert wait_job(base, end["job_id"])["duration"] == pytest.approx(2.0, abs=0.01)
        session = requests.get(f"{base}/live/{late.of_type('session.started')[0]['session_id']}", timeout=30).json()
        assert session["status"] == "failed" and session["end_code"] == 1013 and session["job_id"] == end["job_id"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_a_part_that_stops_on_its_own_is_named_and_serve_exits_with_an_error(serve):
    from tests.processes import child_pid

    proc, base = serve
    os.kill(child_pid(proc.pid, "run_live"), signal.SIGTERM)  # it stops cleanly, but nobody asked it to
    assert proc.wait(timeout=60) == 1
    assert "the live worker stopped on its own (exit status 0); stopping the rest" in proc.output()
