"""Which words of a growing recording are settled: LocalAgreement-2, as in Macháček, Dabre and
Bojar, "Turning Whisper into Real-Time Transcription System" (2023), and their whisper_streaming.

The audio not yet settled (the buffer) is decoded again each time enough new audio has come. A
word is confirmed ("final", never changed) once two decodings in a row agree on it and on every
word before it; what the latest decoding says after that is "partial" (it may change). The buffer
is cut where a confirmed segment ends once it grows long, so each decoding stays well inside
Whisper's 30-s window, and the confirmed text before the cut is given as the prompt.

Engine-neutral: `decode(samples, prompt)` is any function returning segments with timed words."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str  # as Whisper writes it, with its leading space
    probability: float = 1.0

    @property
    def key(self) -> str:
        """What two decodings must share for the word to agree: letters and digits, any case."""
        return re.sub(r"[^\w]", "", self.text.lower())


@dataclass(frozen=True)
class Decoded:
    """One decoding of the buffer: its segments' ends and its words (buffer-relative times)."""

    words: list[Word]
    segment_ends: list[float]
    language: str = ""


Decode = Callable[[np.ndarray, str], Decoded]


def text_of(words: list[Word]) -> str:
    return "".join(w.text for w in words).strip()


class LocalAgreement:
    """Feed audio with `insert`, call `step` when enough has come; each step returns the words it
    confirmed and the tentative tail after them. `finish` confirms what the last decoding said."""

    def __init__(self, decode: Decode, trim_seconds: float = 15.0, prompt_chars: int = 200) -> None:
        self.decode = decode
        self.trim_seconds = trim_seconds
        self.prompt_chars = prompt_chars
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset = 0.0  # where the buffer starts on the session's timeline (seconds)
        self.received = 0  # samples inserted in all
        self.decoded_to = 0  # samples of the session decoded at the last step
        self.confirmed: list[Word] = []  # on the session's timeline
        self.previous: list[Word] = []  # the last decoding's unconfirmed words
        self.language = ""

    @property
    def confirmed_end(self) -> float:
        return self.confirmed[-1].end if self.confirmed else 0.0

    @property
    def waiting_seconds(self) -> float:
        """Audio received since the last step."""
        return (self.received - self.decoded_to) / SAMPLE_RATE

    def insert(self, samples: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
        self.received += len(samples)

    def _prompt(self) -> str:
        """The confirmed words before the buffer: Whisper reads on from them."""
        before = [w for w in self.confirmed if w.end <= self.offset + 0.01]
        return text_of(before)[-self.prompt_chars:]

    def step(self) -> tuple[list[Word], list[Word]]:
        """Decode the buffer once: (newly confirmed words, tentative words after them)."""
        self.decoded_to = self.received
        if len(self.buffer) == 0:
            return [], []
        decoded = self.decode(self.buffer, self._prompt())
        self.language = self.language or decoded.language
        current = self._after_confirmed(decoded.words)
        agreed = []
        for new, old in zip(current, self.previous):
            if new.key != old.key:
                break
            agreed.append(new)
        self.confirmed.extend(agreed)
        self.previous = current[len(agreed):]
        self._trim([self.offset + end for end in decoded.segment_ends])
        return agreed, list(self.previous)

    def finish(self) -> list[Word]:
        """The session is over: one last decoding of what is left, all of it confirmed."""
        if self.received > self.decoded_to and len(self.buffer):
            decoded = self.decode(self.buffer, self._prompt())
            rest = self._after_confirmed(decoded.words)
        else:
            rest = self.previous
        self.confirmed.extend(rest)
        self.previous = []
        return rest

    def _after_confirmed(self, words: list[Word]) -> list[Word]:
        """The decoding's words on the session's timeline, from the first that is not already
        confirmed: later in time, and not a repeat of the last confirmed words (a word on the edge
        of the cut is sometimes heard twice)."""
        moved = [Word(w.start + self.offset, w.end + self.offset, w.text, w.probability) for w in words]
        edge = self.confirmed_end
        moved = [w for w in moved if w.end > edge + 0.05 and w.start > edge - 0.1] if self.confirmed else moved
        if self.confirmed and moved and abs(moved[0].start - edge) < 1.0:
            tail = [w.key for w in self.confirmed[-5:]]
            for n in range(min(5, len(moved), len(tail)), 0, -1):
                if tail[-n:] == [w.key for w in moved[:n]]:
                    moved = moved[n:]
                    break
        return moved

    def _trim(self, segment_ends: list[float]) -> None:
        """Once the buffer is long, drop its audio up to the end of the last segment whose words are
        all confirmed (never the last segment, as whisper_streaming does); near Whisper's window,
        up to the last confirmed word."""
        length = len(self.buffer) / SAMPLE_RATE
        if length <= self.trim_seconds:
            return
        # a segment is settled when every word in it is confirmed: it ends before the first
        # tentative word starts
        limit = self.previous[0].start if self.previous else self.offset + length
        settled = [end for end in segment_ends[:-1] if self.offset < end <= limit + 0.01]
        cut = settled[-1] if settled else None
        if cut is None and length > 25.0 and self.confirmed and self.confirmed_end > self.offset:
            cut = self.confirmed_end
        if cut is None or cut <= self.offset:
            return
        drop = int(round((cut - self.offset) * SAMPLE_RATE))
        self.buffer = self.buffer[drop:]
        self.offset += drop / SAMPLE_RATE
