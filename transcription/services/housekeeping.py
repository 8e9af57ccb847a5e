"""Housekeeping: delete jobs and uploads with their files; purge old ones."""
from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import events
from ..models import Batch, Job, LiveSession, Upload, media_file
from ..models import media_file as media_path  # noqa: F401  (services.media_path)
from .base import ServiceError, log
from .intake import cancel

# --- deleting -----------------------------------------------------------------------------------------


def _job_files(job: Job) -> list[Path]:
    text = media_file(job.result_text_path)
    voices = [p for p in (media_file(v.file) for v in job.spec.speakers.known) if p]
    # Before the result was stored once (in the row), a .json copy was written beside the text.
    return ([text, text.with_suffix(".json")] if text else []) + voices + [events.log_path(job.id)]


def _unlink_after_commit(paths: list[Path]) -> None:
    """Remove files once the rows are gone for good; a rolled-back delete keeps them."""
    def unlink() -> None:
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("event=file_delete_failed path=%s error=%r", path, str(exc))
        log.info("event=files_deleted count=%d", len(paths))

    transaction.on_commit(unlink)


def _stop(jobs) -> None:
    """Cancel jobs still queued or running, so no worker writes files for a deleted row."""
    for job in jobs:
        if job.status in (Job.Status.QUEUED, Job.Status.RUNNING):
            try:
                cancel(job)
            except ServiceError:
                pass  # it finished meanwhile


def delete_jobs(jobs) -> None:
    """Delete jobs and their result files, and each upload (with its audio) no other job uses."""
    jobs = list(jobs.select_related("upload")) if hasattr(jobs, "select_related") else list(jobs)
    _stop(jobs)
    files = [path for job in jobs for path in _job_files(job)]
    upload_ids = {job.upload_id for job in jobs}
    with transaction.atomic():
        Job.objects.filter(pk__in=[job.pk for job in jobs]).delete()
        orphans = list(Upload.objects.filter(pk__in=upload_ids, jobs__isnull=True))
        files += [p for p in (media_file(u.stored_path) for u in orphans) if p]
        Upload.objects.filter(pk__in=[u.pk for u in orphans]).delete()
        _unlink_after_commit(files)


def delete_uploads(uploads) -> None:
    """Delete uploads, their audio files, their jobs and the jobs' result files."""
    uploads = list(uploads)
    jobs = list(Job.objects.filter(upload__in=uploads))
    _stop(jobs)
    files = [p for p in (media_file(u.stored_path) for u in uploads) if p]
    files += [path for job in jobs for path in _job_files(job)]
    with transaction.atomic():
        Upload.objects.filter(pk__in=[u.pk for u in uploads]).delete()
        _unlink_after_commit(files)



# --- housekeeping ----------------------------------------------------------------------------------


def purge(older_than: timedelta, apply: bool = False) -> dict:
    """Uploads whose jobs all ended before now - older_than: their files and rows.

    Dry run unless `apply`; queued or running work is never touched."""
    cutoff = timezone.now() - older_than
    busy = Job.objects.filter(status__in=(Job.Status.QUEUED, Job.Status.RUNNING)).values("upload_id")
    recent = Job.objects.filter(created_at__gte=cutoff).values("upload_id")
    uploads = list(Upload.objects.filter(created_at__lt=cutoff).exclude(pk__in=busy).exclude(pk__in=recent)
                   .prefetch_related("jobs"))
    files = [p for u in uploads for p in [media_file(u.stored_path)] + [f for j in u.jobs.all() for f in _job_files(j)]
             if p is not None and p.is_file()]
    # live sessions that ended before the cutoff: their rows, and what a vanished client left
    sessions = LiveSession.objects.filter(created_at__lt=cutoff).exclude(
        status__in=(LiveSession.Status.WAITING, LiveSession.Status.LIVE))
    leftovers = [d for d in (Path(settings.MEDIA_ROOT) / "live").glob("*") if d.is_dir()
                 and d.stat().st_mtime < cutoff.timestamp()]
    files += [f for d in leftovers for f in d.iterdir() if f.is_file()]
    report = {"uploads": len(uploads), "jobs": sum(len(u.jobs.all()) for u in uploads),
              "live_sessions": sessions.count(), "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    if apply:
        delete_uploads(uploads)
        Batch.objects.filter(jobs__isnull=True, created_at__lt=cutoff).delete()
        sessions.delete()
        for folder in leftovers:
            shutil.rmtree(folder, ignore_errors=True)
        log.info("event=purged uploads=%d files=%d", report["uploads"], report["files"])
    return report
