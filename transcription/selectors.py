"""Read queries shared by the API, the pages and the admin: nothing here changes a row (actions
go through services). Each takes the actor asking (transcription.access) and sees what it may: a job
of someone else's is as unknown as one that never existed."""
from __future__ import annotations

from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from .access import Actor
from .models import Batch, Job, ModelTask, ShareLink, Worker

HISTORY_PAGE_SIZE = 25


def _uuid(value: str | UUID, kind: str) -> UUID:
    """An id from a URL; anything that is not one names nothing (404, like an unknown id)."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise Http404(f"no {kind} with id {str(value)[:100]!r} (ids look like"
                      " 3f0c9a52-6c1e-4d7e-9a0b-2f1d5c7e8a90)") from None


def job_or_404(job_id: str | UUID, actor: Actor) -> Job:
    pk = _uuid(job_id, "job")
    try:
        return get_object_or_404(actor.visible(Job.objects.select_related("upload", "batch", "owner")), pk=pk)
    except Http404:
        raise Http404(f"no job with id {pk}") from None


def batch_or_404(batch_id: str | UUID, actor: Actor) -> Batch:
    pk = _uuid(batch_id, "batch")
    try:
        return get_object_or_404(actor.visible(Batch.objects.all()), pk=pk)
    except Http404:
        raise Http404(f"no batch with id {pk}") from None


def shared_job_or_404(key: str) -> tuple[ShareLink, Job]:
    """The job an active share link opens; any other key (unknown, expired, revoked) opens nothing."""
    link = ShareLink.find(key)
    if link is None or not link.is_active:
        raise Http404("this link does not exist, has expired or was revoked")
    return link, Job.objects.select_related("upload").get(pk=link.job_id)


def share_links(job: Job) -> QuerySet[ShareLink]:
    return job.share_links.order_by("-created_at")


def jobs(actor: Actor, status: str | None = None, several_speakers: bool = False) -> QuerySet[Job]:
    """The actor's jobs newest first (without their results, which lists never show), optionally of
    one status, optionally only those whose diarization found more than one speaker."""
    rows = actor.visible(Job.objects.select_related("upload", "owner")).defer("result").order_by("-created_at", "-id")
    if status in Job.Status.values:
        rows = rows.filter(status=status)
    if several_speakers:
        rows = rows.filter(speaker_count__gt=1)
    return rows


def history_page(actor: Actor, number: int | str | None, status: str | None = None,
                 several_speakers: bool = False) -> Page:
    return Paginator(jobs(actor, status, several_speakers), HISTORY_PAGE_SIZE).get_page(number)


def batch_jobs(batch: Batch) -> QuerySet[Job]:
    return batch.jobs.select_related("upload").order_by("created_at", "id")


def running_jobs(worker: Worker) -> QuerySet[Job]:
    return Job.objects.filter(status=Job.Status.RUNNING, worker=worker.name).select_related("upload")


def live_session_of(job: Job):
    """The live session whose recording the job is, if it is one."""
    from .models import LiveSession

    return LiveSession.objects.filter(job=job).first()


def live_session_or_404(session_id: str | UUID, actor: Actor):
    from .models import LiveSession

    try:
        return actor.visible(LiveSession.objects.all()).get(pk=_uuid(session_id, "live session"))
    except LiveSession.DoesNotExist:
        raise Http404(f"no live session with id {session_id}") from None


def model_task_or_404(task_id: str | UUID) -> ModelTask:
    """A model task by id (who may read them is checked by the caller: access.Actor.manages_models)."""
    pk = _uuid(task_id, "model task")
    try:
        return ModelTask.objects.get(pk=pk)
    except ModelTask.DoesNotExist:
        raise Http404(f"no model task with id {pk}") from None
