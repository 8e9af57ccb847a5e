"""Callbacks: a signed POST to a job's callback_url when the job ends, and to a batch's when its
last job has; a failed attempt is tried again through the queue with growing pauses, and every
attempt is recorded (WebhookDelivery).

The first attempt runs at once in a thread of the process where the job ended, so neither the
worker's next job nor a web request waits for a slow receiver; `sweep` (every minute) sends the
events whose first attempt died with its process."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import Max
from django.utils import timezone

from . import formats, netguard, selectors
from .models import Account, Batch, Job, JobStatus, WebhookDelivery

log = logging.getLogger("transcription")

JOB_EVENTS = {JobStatus.DONE: "job.done", JobStatus.FAILED: "job.failed", JobStatus.CANCELLED: "job.cancelled"}
BATCH_FINISHED = "batch.finished"
KINDS = {"job": Job, "batch": Batch}
USER_AGENT = "whisper-service-webhooks"
# The sweep leaves alone what ended less than this ago: its first attempt may still be under way.
SWEEP_AFTER = timedelta(minutes=2)
SWEEP_WITHIN = timedelta(days=1)  # and gives up on what ended before this


# --- when a job ends ---------------------------------------------------------------------------


def on_job_ended(sender, job: Job, **kwargs) -> None:
    """models.job_ended: send the job's event, and the batch's if this job was its last to end."""
    try:
        if job.callback_url:
            start("job", job.pk, JOB_EVENTS[job.status])
        if job.batch_id is not None and claim_batch(job.batch_id):
            start("batch", job.batch_id, BATCH_FINISHED)
    except Exception:  # the job has ended whatever happens here; the sweep sends what was missed
        log.exception("event=webhook_not_started job=%s", job.pk)


def claim_batch(batch_id) -> bool:
    """Whether this caller is the one to send the batch's event: every job of the batch is final
    and no one claimed it before (one conditional UPDATE: of two jobs ending together, one wins)."""
    if Job.objects.filter(batch_id=batch_id).exclude(status__in=Job.FINAL).exists():
        return False
    return bool(Batch.objects.filter(pk=batch_id, notified_at__isnull=True).exclude(callback_url="")
                .update(notified_at=timezone.now()))


def start(kind: str, object_id, event: str) -> None:
    """The first attempt at an event, in a thread of its own."""
    threading.Thread(target=_first_attempt, args=(kind, str(object_id), event), daemon=True,
                     name=f"webhook-{kind}-{str(object_id)[:8]}").start()


def _first_attempt(kind: str, object_id: str, event: str) -> None:
    try:
        deliver(kind, object_id, event, 1)
    except Exception:
        log.exception("event=webhook_failed %s=%s webhook_event=%s attempt=1", kind, object_id, event)
    finally:
        connections.close_all()  # this thread's own connections


# --- one attempt -------------------------------------------------------------------------------


def deliver(kind: str, object_id: str, event: str, attempt: int = 1) -> WebhookDelivery | None:
    """One attempt at an event: POST it, record what came of it, and schedule the next attempt if
    it failed and attempts are left. None when the job or batch is gone or has no callback."""
    subject = KINDS[kind].objects.filter(pk=object_id).first()
    if subject is None or not subject.callback_url:
        log.info("event=webhook %s=%s webhook_event=%s attempt=%d outcome=dropped reason=%s", kind, object_id,
                 event, attempt, "gone" if subject is None else "no_callback_url")
        return None
    event_id = f"{object_id}:{event}"
    body = payload(subject, event, event_id)
    row = WebhookDelivery(event_id=event_id, event=event, owner_id=subject.owner_id, attempt=attempt,
                          url=subject.callback_url[:1000], **{kind: subject})
    started = time.monotonic()
    try:
        row.status_code, answer = netguard.post(row.url, body, headers(subject, event_id, body),
                                                settings.WEBHOOK_TIMEOUT_SECONDS)
        row.answer = answer.replace("\x00", "")
    except netguard.AddressRefused as exc:
        row.outcome, row.error = WebhookDelivery.Outcome.REFUSED, str(exc)
    except netguard.SendFailed as exc:
        row.error = str(exc)
    row.duration_ms = round((time.monotonic() - started) * 1000)
    if not row.outcome:
        row.outcome = _outcome(row.status_code, attempt)
    delay = retry_delay(attempt)
    if row.outcome == WebhookDelivery.Outcome.RETRYING:
        row.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    row.save()
    log.info("event=webhook %s=%s webhook_event=%s attempt=%d status=%s outcome=%s ms=%d error=%r", kind, object_id,
             event, attempt, row.status_code or "-", row.outcome, row.duration_ms, row.error[:200])
    if row.outcome == WebhookDelivery.Outcome.RETRYING:
        schedule(kind, object_id, event, attempt + 1, delay)
    return row


def _outcome(status: int | None, attempt: int) -> str:
    if status is not None and 200 <= status < 300:
        return WebhookDelivery.Outcome.DELIVERED
    if attempt >= settings.WEBHOOK_MAX_ATTEMPTS:
        return WebhookDelivery.Outcome.GAVE_UP
    return WebhookDelivery.Outcome.RETRYING


def retry_delay(attempt: int) -> float:
    """Seconds between attempt `attempt` failing and the next: WEBHOOK_RETRY_SECONDS, doubling."""
    return settings.WEBHOOK_RETRY_SECONDS * 2 ** (attempt - 1)


def schedule(kind: str, object_id: str, event: str, attempt: int, delay: float) -> None:
    """Hand an attempt to the queue (tasks.deliver_callback), to run in `delay` seconds."""
    from .tasks import deliver_callback  # when needed: this module is imported at start (apps.py)

    try:
        deliver_callback.schedule(args=(kind, str(object_id), event, attempt), delay=delay)
    except Exception as exc:  # queue errors of many classes; the event is lost, say so
        log.error("event=webhook_not_scheduled %s=%s webhook_event=%s attempt=%d reason=%r", kind, object_id,
                  event, attempt, str(exc)[:200])


# --- what is sent ------------------------------------------------------------------------------


def payload(subject: Job | Batch, event: str, event_id: str) -> bytes:
    """The event's body: compact UTF-8 JSON, the same bytes at every attempt."""
    if isinstance(subject, Job):
        body = {"event": event, "event_id": event_id, "created_at": _iso(subject.finished_at),
                "job": job_summary(subject)}
    else:
        body = {"event": event, "event_id": event_id, "created_at": _iso(subject.notified_at),
                "batch": batch_summary(subject)}
    return json.dumps(formats.jsonable(body), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


def job_summary(job: Job) -> dict:
    summary = {
        "id": str(job.pk), "status": job.status, "error": job.error, "error_code": job.error_code,
        "file": job.upload.original_name, "duration": job.duration, "language": job.language,
        "model": job.model, "engine": job.engine, "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at), "path": job.api_path, "result_path": f"{job.api_path}/result",
    }
    if job.status == JobStatus.DONE and job.result:
        summary["text"] = job.result["text"]
    return summary


def batch_summary(batch: Batch) -> dict:
    jobs = selectors.batch_jobs(batch)
    return {"id": str(batch.pk), "status": batch.status, "counts": batch.counts(), "path": f"/batch/{batch.pk}",
            "jobs": [{"id": str(job.pk), "status": job.status, "file": job.upload.original_name} for job in jobs]}


def _iso(moment: datetime | None) -> str:
    return (moment or timezone.now()).isoformat()


def headers(subject: Job | Batch, event_id: str, body: bytes) -> dict[str, str]:
    """Content type, the event's id, and (with a secret) the signature of this attempt."""
    timestamp = str(int(time.time()))
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Webhook-Id": event_id,
            "Webhook-Timestamp": timestamp}
    secret = secret_of(subject)
    if secret:
        sent["Webhook-Signature"] = signature(secret, timestamp, body)
    return sent


def secret_of(subject: Job | Batch) -> str:
    """The owner's webhook secret; for what has no owner, WEBHOOK_SECRET ("" : sent unsigned)."""
    if subject.owner_id is not None:
        return Account.of(subject.owner).webhook_secret
    return settings.WEBHOOK_SECRET


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """v1=<hex HMAC-SHA256 of "<timestamp>." + body>: what Webhook-Signature carries."""
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


# --- what was missed ---------------------------------------------------------------------------


def sweep() -> int:
    """Queue the events whose first attempt was lost (its process died before recording it): jobs
    and batches with a callback address that ended 2 minutes to a day ago and have no delivery
    recorded, and batches whose last job ended without anyone claiming the batch. How many."""
    now = timezone.now()
    # Past any first attempt still running (it waits up to twice the timeout: connect, answer).
    before = now - max(SWEEP_AFTER, timedelta(seconds=3 * settings.WEBHOOK_TIMEOUT_SECONDS))
    since = now - SWEEP_WITHIN
    queued = 0
    jobs = (Job.objects.filter(status__in=Job.FINAL, finished_at__lt=before, finished_at__gte=since,
                               deliveries__isnull=True).exclude(callback_url="").values_list("pk", "status"))
    for pk, status in jobs:
        queued += _resend("job", pk, JOB_EVENTS[status])
    unclaimed = (Batch.objects.filter(notified_at__isnull=True, created_at__gte=since).exclude(callback_url="")
                 .exclude(jobs__status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
                 .annotate(last_end=Max("jobs__finished_at")).filter(last_end__lt=before))
    for pk in unclaimed.values_list("pk", flat=True):
        if claim_batch(pk):
            queued += _resend("batch", pk, BATCH_FINISHED)
    batches = (Batch.objects.filter(notified_at__lt=before, notified_at__gte=since, deliveries__isnull=True)
               .exclude(callback_url="").values_list("pk", flat=True))
    for pk in batches:
        queued += _resend("batch", pk, BATCH_FINISHED)
    return queued


def _resend(kind: str, object_id, event: str) -> bool:
    event_id = f"{object_id}:{event}"
    # Once per event: a later sweep may run before the queued attempt has (a busy worker).
    if not cache.add(f"webhook-swept:{event_id}", True, timeout=SWEEP_WITHIN.total_seconds()):
        return False
    log.warning("event=webhook_swept %s=%s webhook_event=%s", kind, object_id, event)
    schedule(kind, str(object_id), event, 1, 0)
    return True
