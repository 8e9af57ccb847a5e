"""The diarization interface every backend implements, and what it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16_000


class DiarizationUnavailable(RuntimeError):
    """A backend that is not installed or cannot run here; the message says how to install it."""


def unit(vector: np.ndarray) -> np.ndarray:
    """The vector (any shape holding one embedding) flattened, float32, with length 1."""
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    return vector / max(float(np.linalg.norm(vector)), 1e-8)


@dataclass(frozen=True)
class Count:
    """How many speakers to find: exactly `num`, or an estimate within [low, high]."""

    num: int | None = None
    low: int | None = None
    high: int | None = None

    def bounds(self, most: int) -> tuple[int, int]:
        """(fewest, most) clusters for `most` embeddings."""
        if self.num is not None:
            return min(self.num, most), min(self.num, most)
        low = max(1, self.low or 1)
        high = min(most, self.high or most)
        return min(low, high), high


@dataclass(frozen=True)
class Turn:
    start: float  # seconds, on the timeline of the samples the backend was given
    end: float
    speaker: int  # a cluster, numbered from 0 in the order of first speech


@dataclass
class Diarization:
    turns: list[Turn]
    voices: dict[int, np.ndarray] = field(default_factory=dict)  # cluster → its mean embedding

    @property
    def speakers(self) -> list[int]:
        return sorted({t.speaker for t in self.turns})


class Backend(Protocol):
    name: str
    label: str

    def missing(self) -> str | None:
        """Why it cannot run here, saying what to install; None when it can."""

    def installed(self) -> bool: ...

    def diarize(self, samples: np.ndarray, count: Count) -> Diarization:
        """Who speaks when in 16-kHz mono float32 samples."""

    def embed_voice(self, samples: np.ndarray) -> np.ndarray:
        """One embedding of a short sample of one voice, comparable with Diarization.voices."""
