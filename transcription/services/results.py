"""A finished job's result as a download, in any format of the registry (formats.REGISTRY)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

from .. import formats
from ..models import Job, media_file
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
    return chosen.write(job.named_result, subtitles), chosen.content_type, f"{stem}.{chosen.extension}"


MAX_SPEAKER_NAME = 100


def rename_speakers(job: Job, names: dict[str, str]) -> Job:
    """Give a finished job's speakers names (an empty name gives the label back); the downloads and
    the result file use them from then on."""
    if job.status != Job.Status.DONE or not job.result:
        raise ServiceError(409, f"job {job.id} has no result (status: {job.status})")
    labels = [s["id"] for s in job.result.get("speakers") or []]
    if not labels:
        raise ServiceError(409, f"job {job.id} has no speakers: run it again with diarize=true", "names")
    unknown = [k for k in names if k not in labels]
    if unknown:
        raise ServiceError(422, f"no speaker {unknown[0]!r} in this job; its speakers: {', '.join(labels)}", "names")
    renamed = dict(job.speaker_names or {})
    for label, name in names.items():
        name = " ".join(str(name).split())
        if len(name) > MAX_SPEAKER_NAME:
            raise ServiceError(422, f"a speaker's name has at most {MAX_SPEAKER_NAME} characters", "names")
        if name and name != label:
            renamed[label] = name
        else:
            renamed.pop(label, None)
    job.speaker_names = renamed
    job.save(update_fields=["speaker_names"])
    if job.result_text_path:  # the specification's result file follows the names
        formats.write_atomic(media_file(job.result_text_path), formats.to_txt(job.named_result),
                             settings.FILE_UPLOAD_PERMISSIONS)
    return job
