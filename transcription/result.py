"""A job's result, typed: built once by the pipeline, stored once (Job.result), read back as it is,
and rendered into every download format on demand (formats.REGISTRY)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Word(BaseModel):
    start: float
    end: float
    word: str
    probability: float | None = None


class Segment(BaseModel):
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    temperature: float | None = None


class StoredSegment(Segment):
    """What Whisper says of a segment beyond the API's answer (OpenAI's verbose_json shows it)."""

    seek: int = 0
    tokens: list[int] = []


class Result(BaseModel):
    """The specification's response, plus what a client needs to know about how it was made."""

    text: str
    language: str
    language_probability: float | None = None
    model: str
    engine: str
    task: str
    word_timestamps: bool
    condition_on_previous_text: bool
    no_speech_threshold: float
    hallucination_silence_threshold: float | None
    segments: list[StoredSegment]
    uploaded_file: str
    result_file: str
    job_id: str
    duration: float | None
    silence_offset: float = 0.0
    options: dict[str, Any]
    timings: dict[str, float | None]
