"""OpenAI-compatible audio API (/v1): point an OpenAI client's base_url at this service.

Requests become ordinary jobs through services; answers take OpenAI's shapes and content types.
"""
from __future__ import annotations

from typing import Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import File, Form, Router, Schema
from ninja.files import UploadedFile
from pydantic import Field

from . import formats, modelstore, services
from .auth import JOB_THROTTLE
from .languages import LANGUAGES
from .models import Job
from .schemas import DEFAULT_TEMPERATURE, TranscribeOptions

router = Router(tags=["OpenAI-compatible"])

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
OPENAI_ALIAS = "whisper-1"


class Extras(Schema):
    """The service's own decoding fields, accepted beside OpenAI's (its clients pass them as extra
    form fields, e.g. the Python SDK's `extra_body`)."""

    batch_size: int | None = TranscribeOptions.model_fields["batch_size"]
    vad_filter: bool = TranscribeOptions.model_fields["vad_filter"]
    hotwords: str | None = TranscribeOptions.model_fields["hotwords"]


class TranscriptionForm(Extras):
    model: str = Field(OPENAI_ALIAS, description="A service model name, or whisper-1 for the default.")
    language: str | None = Field(None, description="ISO-639-1 code; omitted: detected.")
    prompt: str | None = Field(None, max_length=2000)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False,
                               description="0 (default): Whisper's fallback from 0.0 up to 1.0.")
    timestamp_granularities: list[Literal["segment", "word"]] | None = Field(
        None, alias="timestamp_granularities[]",
        description="verbose_json only: segment and/or word.",
    )


class TranslationForm(Extras):
    model: str = Field(OPENAI_ALIAS)
    prompt: str | None = Field(None, max_length=2000)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)


def _model_name(requested: str) -> str | None:
    name = (requested or "").strip().lower()
    if name in ("", OPENAI_ALIAS):
        return None  # the service's default model
    return name.removeprefix("whisper-") if name.removeprefix("whisper-") in modelstore.SPECS else name


def _run(request: HttpRequest, file: UploadedFile, task: str, form, language: str | None,
         granularities: list[str]) -> HttpResponse:
    if getattr(request, "upload_rejection", None) is not None:
        raise request.upload_rejection
    if granularities and form.response_format != "verbose_json":
        raise services.ServiceError(
            400, "timestamp_granularities[] needs response_format=verbose_json", "timestamp_granularities[]")
    if not services.workers_available():  # OpenAI's API has no "accepted, ask later": refuse first
        raise services.ServiceError(503, "No worker is running to transcribe the file; start one"
                                         " (python manage.py run_huey, or make run) and try again")
    options = TranscribeOptions(
        language=language or "auto",
        task=task,
        model=_model_name(form.model),
        temperature=DEFAULT_TEMPERATURE if form.temperature == 0 else str(form.temperature),
        initial_prompt=form.prompt or None,
        word_timestamps="word" in granularities,
        batch_size=form.batch_size,
        vad_filter=form.vad_filter,
        hotwords=form.hotwords,
    )
    job = services.wait_for(services.create_job(file, options), settings.TRANSCRIBE_WAIT_SECONDS)
    if job.status != Job.Status.DONE:
        message = job.error or f"job {job.id} did not finish (status {job.status})"
        raise services.ServiceError(job.failure_status if job.status == Job.Status.FAILED else 500, message)
    return _answer(job.result, form.response_format, task, granularities or ["segment"])


def _answer(result: dict, response_format: str, task: str, granularities: list[str]) -> HttpResponse:
    text_type = "text/plain; charset=utf-8"
    if response_format == "json":
        return JsonResponse({"text": result["text"]})
    if response_format == "text":
        return HttpResponse(result["text"] + "\n", content_type=text_type)
    if response_format == "srt":
        return HttpResponse(formats.to_srt(result), content_type=text_type)
    if response_format == "vtt":
        return HttpResponse(formats.to_vtt(result), content_type=text_type)
    body = {
        "task": task,
        "language": LANGUAGES.get(result["language"], result["language"]),
        "duration": result["duration"],
        "text": result["text"],
    }
    if "segment" in granularities:
        body["segments"] = [
            {"id": s["id"], "seek": s.get("seek", 0), "start": s["start"], "end": s["end"],
             "text": " " + s["text"] if s["text"] else "", "tokens": s.get("tokens", []),
             "temperature": s.get("temperature", 0.0), "avg_logprob": s.get("avg_logprob"),
             "compression_ratio": s.get("compression_ratio"), "no_speech_prob": s.get("no_speech_prob")}
            for s in result["segments"]
        ]
    if "word" in granularities:
        body["words"] = [{"word": w["word"].strip(), "start": w["start"], "end": w["end"]}
                         for s in result["segments"] for w in (s.get("words") or [])]
    return JsonResponse(formats.jsonable(body))


@router.post("/audio/transcriptions", response={200: None}, throttle=JOB_THROTTLE,
             summary="OpenAI: create transcription")
def transcriptions(request: HttpRequest, file: UploadedFile = File(...),
                   form: Form[TranscriptionForm] = None):
    form = form or TranscriptionForm()
    granularities = list(dict.fromkeys(form.timestamp_granularities or []))
    return _run(request, file, "transcribe", form, form.language, granularities)


@router.post("/audio/translations", response={200: None}, throttle=JOB_THROTTLE,
             summary="OpenAI: create translation (to English)")
def translations(request: HttpRequest, file: UploadedFile = File(...),
                 form: Form[TranslationForm] = None):
    return _run(request, file, "translate", form or TranslationForm(), None, [])


@router.get("/models", summary="OpenAI: list installed models")
def list_models(request: HttpRequest):
    rows = [m for m in modelstore.describe() if m["installed"]]
    created = 0
    data = []
    for row in rows:
        mtime = int(modelstore.model_dir(row["name"]).stat().st_mtime)
        created = max(created, mtime)
        data.append({"id": row["name"], "object": "model", "created": mtime, "owned_by": "local"})
    if rows:
        data.insert(0, {"id": OPENAI_ALIAS, "object": "model", "created": created, "owned_by": "local"})
    return {"object": "list", "data": data}
