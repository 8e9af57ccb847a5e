"""Recovery: the reaper, a stopping worker's hand-back, heartbeats, temporary audio of crashed jobs."""
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tests.conftest import post_file
from transcription import services
from transcription.services import recovery
from transcription.models import Job
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


def test_a_failed_beat_is_not_the_last_one(settings):
    """One database error used to end a job's heartbeat thread for good: the reaper then took a job
    whose worker was alive."""
    settings.JOB_HEARTBEAT_SECONDS = 0.05
    calls = []

    def beat():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    heartbeat = recovery.Heartbeat(beat, "test-heartbeat").start()
    try:
        until(lambda: len(calls) >= 3)
    finally:
        heartbeat.stop()


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
