"""The one interface every inference engine implements, and the plain values it speaks in."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

ProgressCallback = Callable[[float], None]  # fraction of the audio decoded, 0.0-1.0
# Segments as they are decoded (on the given audio's timeline, in any order), and how far from its
# start the audio is decoded without a gap (seconds): what lies before that is all told.
SegmentsCallback = Callable[[list["Segment"], float], None]


class Cancelled(Exception):
    """Raised inside an engine's loop when the job was cancelled."""


class EngineUnavailable(RuntimeError):
    """The engine's library or the model's files for it are missing on this machine."""


@dataclass(frozen=True)
class DecodeOptions:
    """Whisper decoding options, engine-neutral; None means "the engine's own default"."""

    language: str | None = None  # None: detect
    task: str = "transcribe"
    word_timestamps: bool = True
    condition_on_previous_text: bool = True
    no_speech_threshold: float | None = 0.4
    hallucination_silence_threshold: float | None = 0.8
    beam_size: int | None = None
    best_of: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    initial_prompt: str | None = None
    suppress_tokens: tuple[int, ...] = (-1,)
    without_timestamps: bool = False
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    batch_size: int | None = None  # windows per model call (None: the engine's choice for its device);
    # 1: sequential, each window where the last one's text ended
    vad_filter: bool = False  # Silero VAD: decode only the speech it finds
    hotwords: str | None = None  # words to favour, given to every window


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0

    def shifted(self, offset: float) -> "Segment":
        """The same segment moved `offset` seconds later (back onto the uploaded file's timeline)."""
        words = None
        if self.words is not None:
            words = [Word(w.start + offset, w.end + offset, w.word, w.probability) for w in self.words]
        return Segment(
            id=self.id, start=self.start + offset, end=self.end + offset, text=self.text,
            words=words, seek=self.seek, tokens=self.tokens, temperature=self.temperature,
            avg_logprob=self.avg_logprob, compression_ratio=self.compression_ratio,
            no_speech_prob=self.no_speech_prob,
        )


@dataclass
class Transcript:
    language: str
    language_probability: float | None
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


class Engine(Protocol):
    name: str

    def unsupported(self, options: DecodeOptions) -> list[str]:
        """Messages for each option this engine cannot honour (empty: all fine)."""

    def is_loaded(self, model_dir: Path) -> bool:
        """Whether this worker process already holds the model in memory."""

    def preload(self, model_dir: Path) -> None:
        """Load the model into this process's cache now, so the next job does not wait for it."""

    def transcribe(
        self,
        model_dir: Path,
        audio: np.ndarray,
        options: DecodeOptions,
        progress: ProgressCallback,
        on_segments: SegmentsCallback | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; call `progress` as audio is decoded and
        `on_segments` with segments as they are decoded (at the end if the engine cannot sooner).

        `progress` may raise Cancelled, which the engine lets through.
        """

    def detect_language(self, model_dir: Path, audio: np.ndarray) -> list[tuple[str, float]]:
        """Every language the multilingual model knows with its probability for the first 30 s of
        `audio` (16 kHz mono float32), most probable first."""
