"""A finished job's result as a download in each format."""
from __future__ import annotations

from pathlib import Path

from .. import formats
from ..models import Job
from .base import ServiceError

CONTENT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "json": "application/json; charset=utf-8",
}


def result_file(job: Job, fmt: str, subtitles: formats.SubtitleOptions | None = None
                ) -> tuple[str, str, str]:
    """(body, content type, download name) of a finished job's result in format `fmt`."""
    fmt = (fmt or "txt").lower()
    if fmt not in formats.WRITERS:
        raise ServiceError(422, f"unknown format {fmt!r}; choose one of {', '.join(formats.WRITERS)}",
                           "format")
    if job.status != Job.Status.DONE or not job.result:
        raise ServiceError(409, f"job {job.id} has no result (status: {job.status})")
    stem = Path(job.upload.original_name).stem or "transcript"
    return formats.WRITERS[fmt](job.result, subtitles), CONTENT_TYPES[fmt], f"{stem}.{fmt}"
