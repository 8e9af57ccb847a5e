"""Windows for batched decoding: the audio cut at its longest pauses into streams decoded side by
side, and the checks that decide whether a window's output was cut short.

Engine-neutral numpy, with the pipeline's level meter (Silero VAD, when asked for, comes from faster-whisper's package:
its ONNX model ships inside the wheel, nothing is downloaded)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import block_levels

SAMPLE_RATE = 16_000
MAX_SECONDS = 30.0  # what Whisper's encoder reads at once
LIMIT = int(MAX_SECONDS * SAMPLE_RATE)
HOP = 160  # samples per spectrogram frame
FRAMES = LIMIT // HOP
MIN_SAMPLES = SAMPLE_RATE // 10  # a stream's rest shorter than this is not decoded
_BLOCK = 0.02  # seconds per level block


@dataclass(frozen=True)
class Window:
    start: int  # samples, on the timeline of the audio the engine was given
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def streams(audio: np.ndarray, count: int, search_seconds: float = 5.0, quiet_below: float = 25.0) -> list[Window]:
    """Cut the audio into up to `count` stretches of about equal length (none much shorter than a
    window), each cut in the middle of the longest pause within `search_seconds` of the equal
    split: between sentences, where a new stream of windows loses nothing."""
    n = len(audio)
    count = max(1, min(count, -(-n // LIMIT)))
    hop = int(_BLOCK * SAMPLE_RATE)
    search = min(int(search_seconds * SAMPLE_RATE), n // (4 * count))
    cuts = [0]
    for k in range(1, count):
        target = k * n // count
        level = block_levels(audio[target - search:target + search], hop)
        cut = target - search + _longest_pause(level, quiet_below) * hop if level.size else target
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(n)
    return [Window(a, b) for a, b in zip(cuts, cuts[1:])]


def _longest_pause(level: np.ndarray, quiet_below: float) -> int:
    """The middle block of the longest run `quiet_below` dB under the level the loud tenth of the
    stretch reaches (the later run on a tie); with no such run, the quietest block."""
    quiet = level < float(np.percentile(level, 90)) - quiet_below
    best_len, best_mid, run = 0, int(np.argmin(level)), 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run and run >= best_len:
            best_len, best_mid = run, i - run // 2
    return best_mid


def next_speech(position: int, spans: list[tuple[int, int]]) -> int:
    """`position`, or the start of the next speech span when it falls outside speech."""
    for start, end in spans:
        if end > position:
            return max(start, position)
    return 1 << 62  # no speech after it


def silero_spans(audio: np.ndarray, max_seconds: float = MAX_SECONDS) -> list[tuple[int, int]]:
    """Speech spans from the Silero VAD model faster-whisper ships (no download)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=max_seconds, min_silence_duration_ms=160, speech_pad_ms=200)
    return [(s["start"], s["end"]) for s in get_speech_timestamps(np.asarray(audio, dtype=np.float32), options)]


def has_speech(audio: np.ndarray, min_seconds: float = 0.25) -> bool:
    """Whether Silero VAD hears at least `min_seconds` of speech in `audio`: what tells a dropped
    sentence from a pause, breath or background noise, whatever its level (a quiet sentence after
    a loud one sits barely above the loud one's background)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(audio) < min_seconds * SAMPLE_RATE:
        return False
    options = VadOptions(min_speech_duration_ms=int(min_seconds * 1000), speech_pad_ms=0)
    spans = get_speech_timestamps(np.ascontiguousarray(audio, dtype=np.float32), options)
    return sum(span["end"] - span["start"] for span in spans) >= min_seconds * SAMPLE_RATE
