"""The REST API (django-ninja): the specification's endpoints. Handlers parse, call services, shape."""
from __future__ import annotations

import logging
from uuid import UUID

from django.conf import settings
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse
from ninja import File, Form, NinjaAPI, Status
from ninja.errors import HttpError, ValidationError
from ninja.files import UploadedFile

from . import services
from .models import Job
from .schemas import Error, JobAccepted, JobOut, ModelsOut, TranscribeOptions, TranscribeResult
from .uploads import UploadRejected

log = logging.getLogger("transcription")

api = NinjaAPI(
    title="Whisper transcription service",
    version="1.0.0",
    description="Speech to text with Whisper (MLX on Apple Silicon, CTranslate2 elsewhere).",
    urls_namespace="api",
)


@api.exception_handler(services.ServiceError)
def _service_error(request: HttpRequest, exc: services.ServiceError):
    body = {"detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    return api.create_response(request, body, status=exc.status)


@api.exception_handler(UploadRejected)
def _upload_rejected(request: HttpRequest, exc: UploadRejected):
    return api.create_response(request, {"detail": exc.message, "field": "file"}, status=exc.status)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    rejection = getattr(request, "upload_rejection", None)
    if rejection is not None:  # the upload handler stopped reading; that is the real problem
        return _upload_rejected(request, rejection)
    problems = []
    for err in exc.errors:
        field = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
        problems.append({"field": field, "message": err.get("msg", "invalid")})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return api.create_response(request, {"detail": summary, "errors": problems}, status=422)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception):
    if isinstance(exc, HttpError):
        return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)
    log.exception("event=api_error path=%s", request.path)
    return api.create_response(
        request, {"detail": f"internal error ({type(exc).__name__}); see the server log"}, status=500
    )


def _job_url(request: HttpRequest, job: Job) -> str:
    return request.build_absolute_uri(f"/job/{job.id}")


@api.post(
    "/transcribe",
    response={200: TranscribeResult, 202: JobAccepted, 400: Error, 409: Error, 413: Error,
              415: Error, 422: Error, 500: Error, 503: Error},
    summary="Transcribe or translate an audio/video file",
)
def transcribe(request: HttpRequest, file: UploadedFile = File(...),
               options: Form[TranscribeOptions] = None):
    rejection = getattr(request, "upload_rejection", None)
    if rejection is not None:
        raise rejection
    options = options or TranscribeOptions()
    job = services.create_job(file, options)
    if not options.wait:
        return Status(202, {"job_id": job.id, "status": job.status, "url": _job_url(request, job)})
    job = services.wait_for(job, settings.TRANSCRIBE_WAIT_SECONDS)
    if job.status == Job.Status.DONE:
        return Status(200, job.result)
    if job.status == Job.Status.FAILED:
        return Status((422 if job.error_code == "bad_audio" else 500), {"detail": job.error})
    if job.status == Job.Status.CANCELLED:
        return Status(409, {"detail": f"job {job.id} was cancelled"})
    return Status(202, {"job_id": job.id, "status": job.status, "url": _job_url(request, job)})


@api.get("/job/{job_id}", response={200: JobOut, 404: Error}, summary="A job's status and result")
def job_status(request: HttpRequest, job_id: UUID):
    job = Job.objects.select_related("upload").filter(pk=job_id).first()
    if job is None:
        return Status(404, {"detail": f"no job with id {job_id}"})
    return Status(200, {
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "file": job.upload.original_name,
        "model": job.model or job.requested_model,
        "engine": job.engine or job.requested_engine,
        "language": job.language,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "conversion_seconds": job.conversion_seconds,
        "inference_seconds": job.inference_seconds,
        "duration": job.audio_duration or job.upload.duration,
        "error": job.error or None,
        "options": job.options,
        "result": job.result if job.status == Job.Status.DONE else None,
    })


@api.get(
    "/job/{job_id}/result",
    response={200: None, 404: Error, 409: Error, 422: Error},
    summary="A finished job's result as a file: txt, srt, vtt or json",
)
def job_result(request: HttpRequest, job_id: UUID, format: str = "txt"):
    job = Job.objects.select_related("upload").filter(pk=job_id).first()
    if job is None:
        return Status(404, {"detail": f"no job with id {job_id}"})
    body, content_type, filename = services.result_file(job, format)
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return response


@api.get("/models", response=ModelsOut, summary="Every model size, installed or not")
def models(request: HttpRequest):
    return services.models_listing()


@api.get("/health", summary="Database, queue, FFmpeg, engine and models, each checked")
def health(request: HttpRequest):
    report = services.health()
    return api.create_response(request, report, status=200 if report["status"] == "ok" else 503)
