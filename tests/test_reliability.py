"""Crash recovery, shutdown hand-back, purge, rate limits and unavailable dependencies."""
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.conftest import REPO, deployment_env, post_file
from tests.processes import free_port, wait_up
from transcription import services
from transcription.services import recovery
from transcription.models import Job, Upload
from transcription.schemas import TranscribeOptions


def _job(clips, **options) -> Job:
    upload = SimpleUploadedFile("jfk.mp3", clips["mp3"].read_bytes())
    return services.create_job(upload, TranscribeOptions(language="en", model="base",
                                                         engine="ctranslate2", **options))


def _started_long_ago(job: Job, worker: str = "lost-host:1", seconds: float = 3600) -> Job:
    job.start(worker=worker)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_reaper_requeues_a_job_whose_worker_went_silent(clips, django_capture_on_commit_callbacks):
    job = _started_long_ago(_job(clips))
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.reap_stale_jobs() == {"requeued": 1, "failed": 0, "reenqueued": 0}
    job.refresh_from_db()
    assert job.status == "queued" and job.worker == "" and job.heartbeat_at is None
    assert job.attempts == 1 and len(callbacks) == 1  # handed to the queue once committed


@pytest.mark.django_db
def test_reaper_enqueues_again_only_old_queued_jobs_whose_task_is_gone(clips, monkeypatch):
    """The decision alone (tests/test_scale_out.py empties a real Redis queue): a job queued for
    longer than JOB_STALE_SECONDS gets a new task only if none is pending for it."""
    from huey.contrib.djhuey import HUEY

    old, young = _job(clips), _job(clips)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    pending: list = []
    monkeypatch.setattr(HUEY, "pending", lambda: pending)
    enqueued = []
    monkeypatch.setattr(recovery, "enqueue_job", enqueued.append)
    assert services.reap_stale_jobs()["reenqueued"] == 1 and [j.pk for j in enqueued] == [old.pk]
    pending.append(type("Task", (), {"args": (str(old.pk),)})())  # its task is in the queue now
    assert services.reap_stale_jobs()["reenqueued"] == 0 and len(enqueued) == 1
    assert young.pk not in [j.pk for j in enqueued]


@pytest.mark.django_db
def test_reaper_gives_up_after_the_attempt_limit(clips, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    job = _job(clips)
    Job.objects.filter(pk=job.pk).update(attempts=1)
    job.refresh_from_db()
    _started_long_ago(job)
    assert services.reap_stale_jobs() == {"requeued": 0, "failed": 1, "reenqueued": 0}
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "worker_lost"
    assert "2 attempts" in job.error and "lost-host:1" in job.error


@pytest.mark.django_db
def test_reaper_leaves_jobs_with_a_fresh_heartbeat_alone(clips):
    job = _started_long_ago(_job(clips), seconds=1)
    assert services.reap_stale_jobs() == {"requeued": 0, "failed": 0, "reenqueued": 0}
    job.refresh_from_db()
    assert job.status == "running"


@pytest.mark.django_db
def test_a_stopping_worker_hands_back_only_its_own_jobs_with_the_attempt_refunded(clips):
    mine = _job(clips)
    mine.start(worker=services.worker_id())
    theirs = _job(clips)
    theirs.start(worker="other-host:42")
    try:
        assert services.stop_running_jobs(timeout=0) == 1
    finally:
        recovery._stopping.clear()  # this test process goes on running jobs
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == "queued" and mine.attempts == 0
    assert theirs.status == "running"


@pytest.mark.django_db
def test_orphaned_temporary_audio_is_removed_by_the_reaper(clips):
    running = _job(clips)
    running.start(worker=services.worker_id())
    tmp = Path(settings.FILE_UPLOAD_TEMP_DIR)
    keep = tmp / f"job-{running.pk}-abc"
    orphan = tmp / "job-00000000-0000-0000-0000-000000000000-xyz"
    for d in (keep, orphan):
        d.mkdir()
        (d / "audio.f32").write_bytes(b"\0" * 16)
    services.reap_stale_jobs()
    assert keep.exists() and not orphan.exists()


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_keeps_the_job_alive_and_stops_when_the_job_is_taken_away(clips, settings):
    settings.JOB_HEARTBEAT_SECONDS = 0.1
    job = _started_long_ago(_job(clips), worker=services.worker_id())
    old = job.heartbeat_at
    beat = recovery.JobHeartbeat(job)
    try:
        until(lambda: Job.objects.get(pk=job.pk).heartbeat_at > old + timedelta(minutes=59))
        job.cancel()
        beat._thread.join(timeout=30)  # it ends by itself: nothing left to keep alive
        assert not beat._thread.is_alive()
    finally:
        beat.stop()


def until(condition, timeout: float = 30) -> None:
    """Wait for a condition, polling; fail if it does not come within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


@pytest.mark.django_db
def test_purge_is_a_dry_run_until_told_and_spares_recent_and_running_work(
        clips, capsys, django_capture_on_commit_callbacks):
    old = _job(clips)
    old.start()
    old.finish({"text": "x"}, "results/old.txt")
    for rel in ("results/old.json", "results/old.txt"):
        path = Path(settings.MEDIA_ROOT, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    long_ago = timezone.now() - timedelta(days=40)
    Upload.objects.filter(pk=old.upload_id).update(created_at=long_ago)
    Job.objects.filter(pk=old.pk).update(created_at=long_ago)
    busy = _job(clips)
    Upload.objects.filter(pk=busy.upload_id).update(created_at=long_ago)
    Job.objects.filter(pk=busy.pk).update(created_at=long_ago)  # old but still queued
    fresh = _job(clips)
    upload_file = Path(settings.MEDIA_ROOT, old.upload.stored_path)

    call_command("purge", "--older-than", "30d")
    assert "would remove 1 upload(s), 1 job(s), 3 file(s)" in capsys.readouterr().out
    assert upload_file.exists() and Job.objects.count() == 3

    with django_capture_on_commit_callbacks(execute=True):  # files go once the rows are gone
        call_command("purge", "--older-than", "30d", "--yes")
    assert "removed 1 upload(s)" in capsys.readouterr().out
    assert not upload_file.exists() and not Path(settings.MEDIA_ROOT, "results/old.txt").exists()
    assert set(Job.objects.values_list("pk", flat=True)) == {busy.pk, fresh.pk}
    with pytest.raises(CommandError, match="30d"):
        call_command("purge", "--older-than", "a month")


@pytest.mark.django_db
def test_job_creation_is_rate_limited_per_client(client, clips, settings):
    settings.JOB_RATE_LIMIT = "2/min"
    statuses = []
    for _ in range(3):
        upload = SimpleUploadedFile("jfk.wav", clips["wav"].read_bytes())
        statuses.append(client.post("/transcribe", data={"file": upload, "model": "nope"}).status_code)
    assert statuses == [422, 422, 429]
    assert client.get("/models").status_code == 200  # reading is not limited
    settings.JOB_RATE_LIMIT = None
    upload = SimpleUploadedFile("jfk.wav", clips["wav"].read_bytes())
    assert client.post("/transcribe", data={"file": upload, "model": "nope"}).status_code == 422


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_job_stops_it_within_seconds(service, eval_dir):
    resp = post_file(service, eval_dir / "multilingual.mp3", language="de", model="base",
                     engine="ctranslate2", wait=False, remove_silence=False)
    url = resp.json()["url"]
    deadline = time.monotonic() + 60
    while (job := requests.get(url, timeout=10).json())["progress"] <= 0 and time.monotonic() < deadline:
        assert job["status"] in ("queued", "running"), job  # until it is inside inference
        time.sleep(0.05)
    cancelled_at = time.monotonic()
    assert requests.post(f"{url}/cancel", timeout=10).json()["status"] == "cancelled"
    log = Path(settings.DATA_DIR) / "worker.log"
    job_id = resp.json()["job_id"]
    while f"job={job_id} event=cancelled" not in log.read_text() and time.monotonic() - cancelled_at < 15:
        time.sleep(0.1)
    stopped_after = time.monotonic() - cancelled_at
    assert f"job={job_id} event=cancelled" in log.read_text()
    assert stopped_after < 8, stopped_after
    job = requests.get(url, timeout=10).json()
    assert job["status"] == "cancelled" and job["result"] is None
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"job-{job_id}-*"))
    assert requests.post(f"{url}/cancel", timeout=10).status_code == 409


def _web(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "project.wsgi",
                             "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{port}/health", timeout=30, healthy=False)  # its 503 is the test
    except AssertionError:
        proc.kill()
        raise
    return proc


@pytest.mark.integration
@pytest.mark.parametrize("broken,check", [
    ({"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}, "database"),
    ({"HUEY_REDIS_URL": "redis://127.0.0.1:1/0"}, "queue"),
])
def test_a_dependency_that_is_down_gives_503_with_a_clear_message(tmp_path, clips, broken, check):
    env = deployment_env(tmp_path)
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
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_job_deleted_while_it_runs_stops_and_leaves_no_files(eval_dir):
    import threading

    with open(eval_dir / "multilingual.mp3", "rb") as fh:
        upload = SimpleUploadedFile("multilingual.mp3", fh.read())
    job = services.create_job(upload, TranscribeOptions(language="de", model="base", engine="ctranslate2"),
                              enqueue=False)
    errors = []

    def run():
        try:
            services.run_job(str(job.id))
        except Exception as exc:  # the worker must not crash on a vanished row
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not Job.objects.filter(pk=job.pk, status="running").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.delete_jobs(Job.objects.filter(pk=job.pk))
    worker.join(timeout=120)
    assert not worker.is_alive() and errors == []
    assert not Job.objects.filter(pk=job.pk).exists()
    results = Path(settings.MEDIA_ROOT) / "results"
    assert not list(results.glob(f"{job.id}_*")) if results.exists() else True
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"job-{job.id}-*"))


def _thread_cpu_and_nice(pid: int) -> dict[int, tuple[int, int]]:
    """{thread id: (CPU ticks used, niceness)} from /proc/PID/task/*/stat."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[int(task.name)] = (int(fields[11]) + int(fields[12]), int(fields[16]))  # utime+stime, nice
    return out


@pytest.mark.integration
def test_the_worker_decodes_at_worker_nice_so_the_web_process_goes_first(service, worker, clips):
    """The threads that did the work of a job (inference, numpy's BLAS pool) run at WORKER_NICE."""
    assert settings.WORKER_NICE > 0
    before = _thread_cpu_and_nice(worker.pid)
    resp = post_file(service, clips["flac"], language="en", model="base", engine="ctranslate2")
    assert resp.status_code == 200, resp.text
    after = _thread_cpu_and_nice(worker.pid)
    used = sorted(((cpu - before.get(tid, (0, 0))[0], nice, tid) for tid, (cpu, nice) in after.items()),
                  reverse=True)
    busy = [(ticks, nice) for ticks, nice, _ in used if ticks >= 10]  # 0.1 s of CPU or more
    assert busy and all(nice == settings.WORKER_NICE for _, nice in busy), used[:6]
    assert after[worker.pid][1] == settings.WORKER_NICE  # the main thread too
