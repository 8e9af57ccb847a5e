"""Huey tasks: thin, carrying only ids, calling services."""
import logging
import os
from pathlib import Path

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task, on_startup

log = logging.getLogger("transcription")


@db_task(retries=0)
def transcribe_job(job_id: str) -> None:
    from . import services  # services enqueue these tasks: imported here, no import cycle

    services.run_job(job_id)


@db_task(retries=0)
def detect_language(rel: str, model: str, engine: str) -> dict:
    """Which language a stored file is in; the web process waits for the answer (Huey's result)."""
    from .services import detection

    return detection.run_detection(rel, model, engine)


@db_task(retries=0)
def run_model_task(task_id: str) -> None:
    """Install, remove or preload a Whisper model (a ModelTask row, asked for on the admin's Models
    page or through the API)."""
    from .services import modeltasks

    modeltasks.run_task(task_id)


@db_periodic_task(crontab(minute="*"))
def reap_stale_jobs() -> None:
    """Every minute, on whichever consumer gets it: requeue jobs whose worker died, and send the
    callbacks whose first attempt was lost (webhooks.sweep)."""
    from . import services

    services.reap_stale_jobs()
    try:
        from . import webhooks

        webhooks.sweep()
    except Exception:  # the reaping above is done; a callback sweep that failed is tried next minute
        log.exception("event=webhook_sweep_failed")


@db_task(retries=0)
def deliver_callback(kind: str, object_id: str, event: str, attempt: int) -> None:
    """A callback attempt after the first (which runs where the job ended): webhooks.deliver, which
    schedules the next one if this one fails."""
    from . import webhooks

    webhooks.deliver(kind, object_id, event, attempt)


_started = False


@on_startup()
def _consumer_started() -> None:
    # Runs in each worker thread of a starting consumer, before it takes a task.
    if HUEY.immediate:
        return
    _lower_priority(settings.WORKER_NICE)
    global _started  # the rest: once per process
    if _started:
        return
    _started = True
    from . import services

    counts = services.reap_stale_jobs()
    log.info("event=consumer_started worker=%s requeued=%d failed=%d reenqueued=%d", services.worker_id(),
             counts["requeued"], counts["failed"], counts["reenqueued"])
    # Stopping (Ctrl-C, SIGTERM) hands running jobs back: see management/commands/run_huey.py.


def _lower_priority(nice: int) -> None:
    """Run the consumer at `nice`: on a machine shared with the web process, a busy worker must not
    slow every page and status request (bench/load.py measures it). On Linux niceness is per
    thread, so every thread there is now (the worker threads, the BLAS pool numpy started at
    import) is set, and threads started later (inference) inherit it; on macOS it is per process."""
    if nice <= 0:
        return
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError as exc:  # a thread that just ended; or not allowed: not fatal either way
            log.debug("event=priority_unchanged thread=%d reason=%r", tid, str(exc))
