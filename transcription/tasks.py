"""Huey tasks: thin, carrying only ids, calling services."""
import atexit
import logging

from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task, on_startup

from . import services

log = logging.getLogger("transcription")


@db_task(retries=0)
def transcribe_job(job_id: str) -> None:
    services.run_job(job_id)


@db_periodic_task(crontab(minute="*"))
def reap_stale_jobs() -> None:
    """Every minute, on whichever consumer gets it: requeue jobs whose worker died."""
    services.reap_stale_jobs()


_started = False


@on_startup()
def _consumer_started() -> None:
    # Runs in each worker thread of a starting consumer; once per process is enough.
    global _started
    if _started or HUEY.immediate:
        return
    _started = True
    counts = services.reap_stale_jobs()
    log.info("event=consumer_started worker=%s requeued=%d failed=%d reenqueued=%d", services.worker_id(),
             counts["requeued"], counts["failed"], counts["reenqueued"])
    # A consumer that stops (SIGTERM, or a graceful stop past its timeout) hands its running jobs
    # back instead of leaving them 'running' until the reaper notices. SIGKILL is the reaper's.
    atexit.register(_hand_back_jobs)


def _hand_back_jobs() -> None:
    try:
        count = services.requeue_own_jobs()
        if count:
            log.warning("event=consumer_stopped requeued=%d", count)
    except Exception:
        log.exception("event=consumer_stopped requeue_failed")
