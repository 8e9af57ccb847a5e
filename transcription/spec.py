"""A job's spec: what the worker will do, typed and frozen, built once at intake from the request.

Stored on the Job as JSON and read back through `Job.spec`; the worker runs it as it is, without
re-validating a request or repeating a default. Later features (speakers, batched decoding) add
their fields here."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .engines.base import DecodeOptions
from .languages import AUTO


class Silence(BaseModel):
    """Leading and trailing silence: trimmed before inference (timestamps keep the file's timeline)."""

    model_config = ConfigDict(frozen=True)

    remove: bool = True
    threshold_db: float = -60.0
    min_duration: float = 0.5


class KnownVoice(BaseModel):
    """A named sample of one voice (OpenAI's known_speaker_references), stored under MEDIA_ROOT."""

    model_config = ConfigDict(frozen=True)

    name: str
    file: str  # relative to MEDIA_ROOT


class Speakers(BaseModel):
    """Who spoke when: off unless asked; the backend is chosen at intake (speakers.default_backend)."""

    model_config = ConfigDict(frozen=True)

    diarize: bool = False
    backend: str | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    known: tuple[KnownVoice, ...] = ()


class JobSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    decode: DecodeOptions
    silence: Silence
    speakers: Speakers = Speakers()  # jobs stored before diarization existed have none

    @classmethod
    def from_request(cls, options) -> "JobSpec":
        """The spec of a validated request (schemas.TranscribeOptions); `request()` turns it back."""
        return cls(
            decode=DecodeOptions(
                language=None if options.language == AUTO else options.language,
                task=options.task,
                word_timestamps=options.word_timestamps,
                condition_on_previous_text=options.condition_on_previous_text,
                no_speech_threshold=options.no_speech_threshold,
                hallucination_silence_threshold=options.hallucination_silence_threshold or None,
                beam_size=options.beam_size,
                best_of=options.best_of,
                patience=options.patience,
                length_penalty=options.length_penalty,
                temperature=_numbers(options.temperature, float),
                initial_prompt=options.initial_prompt or None,
                suppress_tokens=_numbers(options.suppress_tokens, int),
                without_timestamps=options.no_timestamps,
                compression_ratio_threshold=options.compression_ratio_threshold,
                logprob_threshold=options.logprob_threshold,
                batch_size=options.batch_size,
                vad_filter=options.vad_filter,
                hotwords=(options.hotwords or "").strip() or None,
            ),
            silence=Silence(remove=options.remove_silence, threshold_db=options.silence_threshold,
                            min_duration=options.silence_duration),
            speakers=Speakers(diarize=options.diarize, num_speakers=options.num_speakers,
                              min_speakers=options.min_speakers, max_speakers=options.max_speakers),
        )

    def request(self) -> dict:
        """The spec in the request's own terms (POST /transcribe's fields): shown as "options" in
        answers and on the pages, and the starting point of "run again"."""
        d, s = self.decode, self.silence
        return {
            "language": d.language or AUTO,
            "task": d.task,
            "word_timestamps": d.word_timestamps,
            "condition_on_previous_text": d.condition_on_previous_text,
            "no_speech_threshold": d.no_speech_threshold,
            "hallucination_silence_threshold": d.hallucination_silence_threshold or 0.0,
            "remove_silence": s.remove,
            "silence_threshold": s.threshold_db,
            "silence_duration": s.min_duration,
            "beam_size": d.beam_size,
            "best_of": d.best_of,
            "patience": d.patience,
            "length_penalty": d.length_penalty,
            "temperature": ",".join(str(t) for t in d.temperature),
            "initial_prompt": d.initial_prompt,
            "suppress_tokens": ",".join(str(t) for t in d.suppress_tokens),
            "no_timestamps": d.without_timestamps,
            "compression_ratio_threshold": d.compression_ratio_threshold,
            "logprob_threshold": d.logprob_threshold,
            "batch_size": d.batch_size,
            "vad_filter": d.vad_filter,
            "hotwords": d.hotwords,
            "diarize": self.speakers.diarize,
            "num_speakers": self.speakers.num_speakers,
            "min_speakers": self.speakers.min_speakers,
            "max_speakers": self.speakers.max_speakers,
        }


def _numbers(text: str, kind: type) -> tuple:
    """'0.0,0.2' → (0.0, 0.2): the request's lists (validated by the schema on the way in)."""
    return tuple(kind(part) for part in str(text).split(",") if part.strip())
