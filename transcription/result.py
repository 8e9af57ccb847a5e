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
    speaker: str | None = None  # with diarize: "SPEAKER_1", …


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
    speaker: str | None = None  # with diarize: the speaker of all its words


class Speaker(BaseModel):
    """One voice the diarization found: its label, the known speaker it matched (if any), and how
    much it speaks. The name people give it later is kept on the job (Job.speaker_names)."""

    id: str
    name: str | None = None
    seconds: float
    words: int


class StoredSegment(Segment):
    """What Whisper says of a segment beyond the API's answer (OpenAI's verbose_json shows it)."""

    seek: int = 0
    tokens: list[int] = []


class LiveOrigin(BaseModel):
    """Where a job from a live session came from: its result is the recording decoded again
    offline after the session (whole sentences, both sides of every word: better than live), and
    `text` is what the session confirmed while it ran."""

    session_id: str
    text: str
    redecoded: bool = True


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
    speakers: list[Speaker] | None = None  # with diarize, in order of first speech
    live: LiveOrigin | None = None  # a live session's recording


def speaker_names(result: dict, renamed: dict | None = None) -> dict[str, str]:
    """Each speaker's label → the name shown to people: the job's renaming, else the known speaker
    it matched, else the label itself."""
    renamed = renamed or {}
    return {s["id"]: renamed.get(s["id"]) or s.get("name") or s["id"] for s in result.get("speakers") or []}


def with_names(result: dict, renamed: dict | None) -> dict:
    """The stored result with the job's speaker names applied to its speakers list (what the
    downloads and the API show); the stored result itself is never changed."""
    if not result.get("speakers"):
        return result
    names = speaker_names(result, renamed)
    return {**result, "speakers": [{**s, "name": names[s["id"]]} for s in result["speakers"]]}
