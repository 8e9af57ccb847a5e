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


class JobSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    decode: DecodeOptions
    silence: Silence

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
        }
