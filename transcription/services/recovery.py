"""Recovery: workers announce themselves and their jobs' heartbeats; a stopping worker hands its
running jobs back; the reaper requeues jobs whose worker went silent and enqueues again the queued
jobs whose task was lost."""
from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import Job, TransitionError, Worker
from .base import ServiceError, enqueue_job, enqueue_lost, log, worker_id
from .modeltasks import fail_orphan_model_tasks, reenqueue_lost_model_tasks


class Heartbeat:
    """Calls `beat` every JOB_HEARTBEAT_SECONDS from a side thread until stopped, or until `beat`
    returns False (nothing left to keep alive). A failed beat is logged, not fatal: the next may
    succeed, and being counted gone takes several missed ones. The database connection is closed
    after each beat, so a restarted database does not leave the thread on a dead connection."""

    def __init__(self, beat: Callable[[], bool | None], name: str) -> None:
        self._beat = beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(settings.JOB_HEARTBEAT_SECONDS):
            try:
                if self._beat() is False:
                    return
            except Exception:
                log.warning("event=heartbeat_failed thread=%s", self._thread.name, exc_info=True)
            finally:
                connection.close()


class JobHeartbeat(Heartbeat):
    """A running job's heartbeat, until the job is no longer this worker's to run."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.beat, f"heartbeat-{job.id}")
        self.start()


class WorkerPresence:
    """This consumer's row in the Worker table, refreshed by a side thread while it runs, so that
    /health, the admin and a synchronous request know whether any worker will take a job."""

    def __init__(self, threads: int, queue: str, every_beat: Callable[[], object] = lambda: None) -> None:
        self.name = worker_id()
        self.every_beat = every_beat  # the worker's own periodic chores (releasing idle models)
        self.threads = threads
        self.queue = queue
        self._heartbeat = Heartbeat(self._tick, "worker-heartbeat")

    def __enter__(self) -> "WorkerPresence":
        self.beat()
        self._heartbeat.start()
        log.info("event=worker_started worker=%s threads=%d queue=%s", self.name, self.threads, self.queue)
        return self

    def __exit__(self, *exc) -> None:
        self._heartbeat.stop()
        try:
            Worker.objects.filter(name=self.name).delete()
        except Exception:  # the database is gone: the row goes stale, which says the same
            log.warning("event=worker_row_not_removed worker=%s", self.name, exc_info=True)
        finally:
            connection.close()

    def beat(self) -> None:
        from .pipeline import loaded_models  # pipeline imports this module

        host, _, pid = self.name.rpartition(":")
        Worker.objects.update_or_create(name=self.name, defaults={
            "host": host[:100], "pid": int(pid), "threads": self.threads, "queue": self.queue[:100],
            "seen_at": timezone.now(), "loaded_models": loaded_models()})

    def _tick(self) -> None:
        self.beat()  # three missed in a row make the worker look gone
        self.every_beat()


def workers_available() -> bool:
    """Whether a job put in the queue now will be taken: a live consumer, or tasks run in-process."""
    from huey.contrib.djhuey import HUEY

    return HUEY.immediate or Worker.objects.alive().for_jobs().exists()


def live_unavailable() -> str | None:
    """Why a live session could not open now (None: it could)."""
    from django.conf import settings

    if settings.LIVE_MAX_SESSIONS == 0:
        return "live transcription is turned off on this server (LIVE_MAX_SESSIONS=0)"
    if not Worker.objects.alive().for_live().exists():
        return NO_LIVE_WORKER
    return None


NO_WORKER = ("no worker is running, so the job waits in the queue until one starts"
             " (python manage.py run_huey, or make run)")
NO_LIVE_WORKER = ("no live worker is running, so live transcription is unavailable"
                  " (python manage.py run_live, or make run)")


def reap_stale_jobs() -> dict[str, int]:
    """Requeue running jobs whose worker stopped beating (killed, machine lost); after
    JOB_MAX_ATTEMPTS starts, fail them with the reason. Safe to run anywhere, any number of times."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0}
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    for job in stale:
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            reason = (f"the worker stopped responding during each of {job.attempts} attempts"
                      f" (last: {job.worker or 'unknown'}); giving up")
            try:
                job.fail(reason, Job.ErrorCode.WORKER_LOST, expected_heartbeat=job.heartbeat_at)
            except TransitionError:
                continue  # it beat again, or ended, since we looked
            counts["failed"] += 1
            log.warning("job=%s event=failed code=worker_lost attempts=%d", job.id, job.attempts)
            continue
        with transaction.atomic():
            if job.requeue(expected_heartbeat=job.heartbeat_at):
                transaction.on_commit(lambda job=job: enqueue_job(job))
                counts["requeued"] += 1
                log.warning("job=%s event=requeued reason=stale_heartbeat worker=%s attempts=%d",
                            job.id, job.worker, job.attempts)
    counts["reenqueued"] = _reenqueue_lost_tasks()
    fail_orphan_model_tasks()  # installs, removals and preloads whose worker died; logged there
    reenqueue_lost_model_tasks()
    _remove_orphan_workdirs()
    return counts


def _reenqueue_lost_tasks() -> int:
    """Queued jobs whose task is no longer in the queue get it again: a Redis restarted without
    persistence, a deleted queue file or a queue shared by mistake with another deployment (whose
    consumer takes the task and finds no such job) would otherwise leave them queued for ever.
    Only jobs queued for JOB_STALE_SECONDS count, so an enqueue about to happen is not doubled;
    a doubled task would be harmless anyway (only one run can start a job)."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    waiting = list(Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=cutoff))
    return enqueue_lost(waiting, enqueue_job, "job")


def _remove_orphan_workdirs() -> None:
    """Temporary audio of jobs that no worker on this machine runs any more (after a crash)."""
    running = {str(pk) for pk in Job.objects.filter(status=Job.Status.RUNNING).values_list("pk", flat=True)}
    for path in Path(settings.FILE_UPLOAD_TEMP_DIR).glob("job-*"):
        job_id = path.name[len("job-"):len("job-") + 36]
        if job_id not in running:
            shutil.rmtree(path, ignore_errors=True)
            log.info("job=%s event=workdir_removed path=%s", job_id, path)


class HandBack(Exception):
    """Raised at a checkpoint of a running job when its worker is shutting down."""


# Set when this process stops taking work (stop_running_jobs): each running job gives itself
# back to the queue at its next checkpoint instead of being cut off mid-inference.
_stopping = threading.Event()
_running: set[str] = set()
_running_changed = threading.Condition()
_handed_back = 0  # jobs this process gave back to the queue while stopping


def stopping() -> bool:
    return _stopping.is_set()


@contextmanager
def running(job_id: str) -> Iterator[None]:
    """While the block runs, stop_running_jobs waits for this job to give itself back."""
    with _running_changed:
        _running.add(job_id)
    try:
        yield
    finally:
        with _running_changed:
            _running.discard(job_id)
            _running_changed.notify_all()


def hand_back(job: Job) -> bool:
    """Give a job this process runs back to the queue, the interrupted attempt refunded."""
    me = worker_id()
    with transaction.atomic():
        if not job.requeue(worker=me, refund=True):
            return False
        transaction.on_commit(lambda: enqueue_job(job))
    global _handed_back
    with _running_changed:
        _handed_back += 1
    log.warning("job=%s event=requeued reason=worker_shutdown worker=%s", job.id, me)
    return True


def enqueue_quietly(job_id: str) -> None:
    try:
        job = Job.objects.get(pk=job_id, status=Job.Status.QUEUED)
        enqueue_job(job)
    except (Job.DoesNotExist, ServiceError):
        pass  # gone, started elsewhere, or the queue is down (the reaper enqueues it later)


def stop_running_jobs(timeout: float) -> int:
    """At worker shutdown: every job this process runs gives itself back to the queue at its next
    checkpoint (each window of audio decoded); wait up to `timeout` seconds for them, so that no
    inference is cut off mid-call when the process exits. A job still running at the deadline is
    handed back here. Returns how many jobs went back to the queue."""
    before = _handed_back
    _stopping.set()
    deadline = time.monotonic() + timeout
    with _running_changed:
        while _running and time.monotonic() < deadline:
            _running_changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    for job in Job.objects.filter(status=Job.Status.RUNNING, worker=worker_id()):
        hand_back(job)
    return _handed_back - before
