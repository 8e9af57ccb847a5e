"""What every service module shares: the refusal a caller turns into an HTTP answer, who this
worker process is, and handing a committed job to the queue."""
from __future__ import annotations

import logging
import os
import socket

from ..models import Job, TransitionError

log = logging.getLogger("transcription")


class ServiceError(Exception):
    """A request the service refuses; `status` is the HTTP status, `message` says why."""

    def __init__(self, status: int, message: str, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.retry_after = retry_after  # seconds, for a 429 that knows when there will be room



def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue_or_fail(row, task, label: str, fail) -> None:
    """Hand a committed row (a job or a model task) to its Huey `task`; if the queue is down,
    `fail(reason)` ends the row as failed and the caller gets 503."""
    try:
        task(str(row.id))
    except Exception as exc:  # Redis/SQLite errors of many classes: all mean "queue unavailable"
        reason = f"the job queue is unavailable ({type(exc).__name__}: {str(exc)[:200]})"
        try:
            fail(reason)
        except TransitionError:
            pass
        log.error("%s=%s event=enqueue_failed reason=%r", label, row.id, reason)
        raise ServiceError(503, f"{reason}; try again later") from None


def enqueue_job(job: Job) -> None:
    from ..tasks import transcribe_job

    enqueue_or_fail(job, transcribe_job, "job", lambda reason: job.fail(reason, Job.ErrorCode.QUEUE_UNAVAILABLE))


def enqueue_lost(waiting: list, enqueue, label: str) -> int:
    """Hand each row of `waiting` (queued rows, of jobs or model tasks, old enough that an enqueue
    about to happen is not doubled) to the queue again unless the queue still holds its task;
    `enqueue` fails the row and raises ServiceError when the queue is down. Returns how many."""
    from huey.contrib.djhuey import HUEY

    if not waiting:
        return 0
    try:
        pending = {str(entry.args[0]) for entry in HUEY.pending() if entry.args}
    except Exception as exc:  # the queue is down: nothing can be enqueued now; next round
        skipped = "reenqueue_skipped" if label == "job" else f"{label}_reenqueue_skipped"
        log.warning("event=%s reason=%r", skipped, f"{type(exc).__name__}: {exc}"[:200])
        return 0
    count = 0
    for row in waiting:
        if str(row.pk) in pending:
            continue
        try:
            enqueue(row)
        except ServiceError:
            continue  # enqueue failed the row with the reason and logged it
        count += 1
        log.warning("%s=%s event=reenqueued reason=task_lost", label, row.pk)
    return count
