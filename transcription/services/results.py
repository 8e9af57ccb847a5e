"""A finished job's result as a download, in any format of the registry (formats.REGISTRY)."""
from __future__ import annotations

from pathlib import Path

from .. import formats
from ..models import Job
from .base import ServiceError


def result_file(job: Job, fmt: str, subtitles: formats.SubtitleOptions | None = None
                ) -> tuple[str, str, str]:
    """(body, content type, download name) of a finished job's result in format `fmt`."""
    chosen = formats.get(fmt or "txt")
    if chosen is None:
        raise ServiceError(422, f"unknown format {fmt!r}; choose one of {', '.join(formats.NAMES)}", "format")
    if job.status != Job.Status.DONE or not job.result:
        raise ServiceError(409, f"job {job.id} has no result (status: {job.status})")
    stem = Path(job.upload.original_name).stem or "transcript"
    return chosen.write(job.result, subtitles), chosen.content_type, f"{stem}.{chosen.extension}"
