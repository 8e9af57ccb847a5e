"""OpenAI-compatible audio API (/v1): point an OpenAI client's base_url at this service.

Requests become ordinary jobs through services; answers take OpenAI's shapes and content types.
"""
from __future__ import annotations

import base64
import binascii
from typing import Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import File, Form, Router, Schema
from ninja.files import UploadedFile
from pydantic import Field

from . import access, formats, modelstore, services, sse
from .auth import JOB_THROTTLE
from .languages import LANGUAGES
from .models import Job
from .schemas import DEFAULT_TEMPERATURE, TranscribeOptions

router = Router(tags=["OpenAI-compatible"])

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
OPENAI_ALIAS = "whisper-1"
MAX_KNOWN = 4  # OpenAI's limit on known speakers
MAX_VOICE_BYTES = 3 * 1024 * 1024


class Extras(Schema):
    """The service's own decoding fields, accepted beside OpenAI's (its clients pass them as extra
    form fields, e.g. the Python SDK's `extra_body`)."""

    batch_size: int | None = TranscribeOptions.model_fields["batch_size"]
    vad_filter: bool = TranscribeOptions.model_fields["vad_filter"]
    hotwords: str | None = TranscribeOptions.model_fields["hotwords"]
    num_speakers: int | None = TranscribeOptions.model_fields["num_speakers"]
    min_speakers: int | None = TranscribeOptions.model_fields["min_speakers"]
    max_speakers: int | None = TranscribeOptions.model_fields["max_speakers"]


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
    known_speaker_names: list[str] | None = Field(
        None, alias="known_speaker_names[]", max_length=MAX_KNOWN,
        description="diarized_json: names of up to 4 known speakers, each matching a sample in"
        " known_speaker_references[].")
    known_speaker_references: list[str] | None = Field(
        None, alias="known_speaker_references[]", max_length=MAX_KNOWN,
        description="diarized_json: a short sample (1-30 s) of each known speaker's voice, as a data URL"
        " (data:audio/wav;base64,...).")
    chunking_strategy: str | None = Field(None, description="Accepted for compatibility ('auto'); the"
                                          " service always cuts at pauses.")
    stream: bool = Field(False, description="Answer text/event-stream: a transcript.text.delta event per"
                         " segment as it is decoded, then transcript.text.done (response_format json or text).")


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
    for key in ("known_speaker_names", "known_speaker_references"):  # without [] they would be dropped
        if key in request.POST:
            raise services.ServiceError(400, f"send {key} as {key}[], one field per speaker, as OpenAI's API"
                                             " names it", f"{key}[]")
    diarize = form.response_format == "diarized_json"
    if diarize and task == "translate":
        raise services.ServiceError(400, "diarized_json is for transcriptions, not translations", "response_format")
    voices = _known_voices(form) if task == "transcribe" else []
    if voices and not diarize:
        raise services.ServiceError(400, "known speakers need response_format=diarized_json", "response_format")
    stream = getattr(form, "stream", False)
    if stream and form.response_format not in ("json", "text"):
        raise services.ServiceError(400, "stream=true sends text events: use response_format json or text",
                                    "stream")
    if not services.workers_available():  # OpenAI's API has no "accepted, ask later": refuse first
        raise services.ServiceError(503, "No worker is running to transcribe the file; start one"
                                         " (python manage.py run_huey, or make run) and try again")
    options = TranscribeOptions(
        language=language or "auto",
        task=task,
        model=_model_name(form.model),
        temperature=DEFAULT_TEMPERATURE if form.temperature == 0 else str(form.temperature),
        initial_prompt=form.prompt or None,
        word_timestamps="word" in granularities or diarize,
        batch_size=form.batch_size,
        vad_filter=form.vad_filter,
        hotwords=form.hotwords,
        diarize=diarize,
        num_speakers=form.num_speakers,
        min_speakers=form.min_speakers,
        max_speakers=form.max_speakers,
    )
    job = services.create_job(file, options, known_voices=voices, owner=access.of_request(request).owner)
    if stream:
        return sse.response(request, job, sse.OpenAIEvents())
    job = services.wait_for(job, settings.TRANSCRIBE_WAIT_SECONDS)
    if job.status != Job.Status.DONE:
        message = job.error or f"job {job.id} did not finish (status {job.status})"
        raise services.ServiceError(job.failure_status if job.status == Job.Status.FAILED else 500, message)
    return _answer(job.result, form.response_format, task, granularities or ["segment"])


def _known_voices(form) -> list[tuple[str, bytes]]:
    """(name, audio bytes) of each known speaker, from the names and data URLs given."""
    names = [n.strip() for n in form.known_speaker_names or []]
    refs = form.known_speaker_references or []
    if len(names) != len(refs):
        raise services.ServiceError(400, f"give one known_speaker_references[] per known_speaker_names[]"
                                         f" ({len(names)} names, {len(refs)} references)", "known_speaker_references[]")
    if any(not n or len(n) > 100 for n in names) or len(set(names)) != len(names):
        raise services.ServiceError(400, "known speaker names must be distinct, 1 to 100 characters",
                                    "known_speaker_names[]")
    voices = []
    for name, ref in zip(names, refs):
        head, _, data = ref.partition(",")
        if not head.startswith("data:") or not head.endswith(";base64"):
            raise services.ServiceError(400, f"known speaker {name!r}: the reference must be a data URL"
                                             " (data:audio/wav;base64,...)", "known_speaker_references[]")
        if len(data) > MAX_VOICE_BYTES * 4 // 3 + 4:
            raise services.ServiceError(413, f"known speaker {name!r}: the sample is over"
                                             f" {MAX_VOICE_BYTES // (1024 * 1024)} MB", "known_speaker_references[]")
        try:
            voices.append((name, base64.b64decode(data, validate=True)))
        except (binascii.Error, ValueError):
            raise services.ServiceError(400, f"known speaker {name!r}: the data URL is not valid base64",
                                        "known_speaker_references[]") from None
    return voices


def _diarized(result: dict) -> dict:
    """OpenAI's diarized_json: segments with speakers named by the known speakers they matched,
    the others A, B, … in order of first speech."""
    letters, labels = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), {}
    for s in result.get("speakers") or []:
        labels[s["id"]] = s.get("name") if s.get("name") and s["name"] != s["id"] else next(letters, s["id"])
    return {
        "task": "transcribe",
        "duration": result["duration"],
        "text": result["text"],
        "segments": [{"type": "transcript.text.segment", "id": f"seg_{s['id']}", "start": s["start"],
                      "end": s["end"], "text": s["text"], "speaker": labels.get(s.get("speaker"), "A")}
                     for s in result["segments"]],
        "usage": {"type": "duration", "seconds": result["duration"]},
    }


def _answer(result: dict, response_format: str, task: str, granularities: list[str]) -> HttpResponse:
    text_type = "text/plain; charset=utf-8"
    if response_format == "diarized_json":
        return JsonResponse(formats.jsonable(_diarized(result)))
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
