"""Read queries shared by the API, the pages and the admin: nothing here changes a row (actions
go through services)."""
from __future__ import annotations

from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from .models import Batch, Job, Worker

HISTORY_PAGE_SIZE = 25


def _uuid(value: str | UUID, kind: str) -> UUID:
    """An id from a URL; anything that is not one names nothing (404, like an unknown id)."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise Http404(f"no {kind} with id {str(value)[:100]!r} (ids look like"
                      " 3f0c9a52-6c1e-4d7e-9a0b-2f1d5c7e8a90)") from None


def job_or_404(job_id: str | UUID) -> Job:
    pk = _uuid(job_id, "job")
    try:
        return get_object_or_404(Job.objects.select_related("upload", "batch"), pk=pk)
    except Http404:
        raise Http404(f"no job with id {pk}") from None


def batch_or_404(batch_id: str | UUID) -> Batch:
    pk = _uuid(batch_id, "batch")
    try:
        return get_object_or_404(Batch, pk=pk)
    except Http404:
        raise Http404(f"no batch with id {pk}") from None


def jobs(status: str | None = None, several_speakers: bool = False) -> QuerySet[Job]:
    """Jobs newest first (without their results, which lists never show), optionally of one status,
    optionally only those whose diarization found more than one speaker."""
    rows = Job.objects.select_related("upload").defer("result").order_by("-created_at", "-id")
    if status in Job.Status.values:
        rows = rows.filter(status=status)
    if several_speakers:
        rows = rows.filter(speaker_count__gt=1)
    return rows


def history_page(number: int | str | None, status: str | None = None, several_speakers: bool = False) -> Page:
    return Paginator(jobs(status, several_speakers), HISTORY_PAGE_SIZE).get_page(number)


def batch_jobs(batch: Batch) -> QuerySet[Job]:
    return batch.jobs.select_related("upload").order_by("created_at", "id")


def running_jobs(worker: Worker) -> QuerySet[Job]:
    return Job.objects.filter(status=Job.Status.RUNNING, worker=worker.name).select_related("upload")


def live_session_of(job: Job):
    """The live session whose recording the job is, if it is one."""
    from .models import LiveSession

    return LiveSession.objects.filter(job=job).first()


def live_session_or_404(session_id: str | UUID):
    from .models import LiveSession

    try:
        return LiveSession.objects.get(pk=_uuid(session_id, "live session"))
    except LiveSession.DoesNotExist:
        raise Http404(f"live session {session_id} not found") from None
