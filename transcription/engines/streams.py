"""Batched decoding, engine-neutral: sequential Whisper's seeking, run on `batch_size` stretches of
the file at once, the next window of each stretch decoded in one encoder and decoder call.

The file is cut at its longest pauses into up to `batch_size` streams of about equal length
(windows.streams). Each step takes the next 30-s window of every stream that has audio left,
decodes them as one batch (the engine's part: `decode`), and moves each stream on as sequential
Whisper moves: to the end of the last complete segment, so a sentence cut by the window's edge is
decoded whole in the next window. What it adds to Whisper's rules:
- speech passed over: the output jumps a gap of over a second, or ends with "no more speech" over
  a second before the window does, where Silero VAD hears speech: the stream goes on from the gap, where sequential Whisper skips the sentence (measured on the benchmark's reading: a
  3-s sentence after a long one, 9 times in 11, and once a 13-s stretch holding two sentences);
- silent windows (no-speech probability high, log-probability low) are dropped, and failed ones
  (repetitive or improbable text) are decoded again alone, with temperature fallback;
- with vad_filter, the streams jump over what Silero VAD finds is not speech.
The language is detected once, on the first window; each window gets the user's prompt and
hotwords, not the previous window's text (the windows of a batch are decoded together)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from . import windows
from .base import DecodeOptions, ProgressCallback, Segment, SegmentsCallback, Transcript, Word

# A gap in a window's output this long, where Silero VAD hears speech, is speech the output passed
# over: its stream goes on from there.
CUT_SHORT_SECONDS = 1.0
TIME_PRECISION = 0.02  # seconds per timestamp token


@dataclass
class Output:
    """One window decoded: its segments (dicts on the file's timeline: start, end, text, tokens,
    seek in frames, and words once timed), how far its stream may move on (samples), and the
    window's scores."""

    segments: list[dict]
    advance: int
    single_ending: bool
    avg_logprob: float
    no_speech_prob: float


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def split_by_timestamps(tokens: list[int], timestamp_begin: int, eot: int, window: windows.Window,
                        decode_text) -> tuple[list[dict], int, bool]:
    """Whisper's own reading of a window's tokens: segments between pairs of timestamp tokens,
    and how far the window was read (samples): to its end when the output ends with a single
    timestamp, else to the last complete segment's end."""
    tokens = [t for t in tokens if t != eot]
    offset, whole = window.start / windows.SAMPLE_RATE, window.end - window.start
    stamp = windows.SAMPLE_RATE * TIME_PRECISION  # samples per timestamp step
    single_ending = len(tokens) >= 2 and tokens[-2] < timestamp_begin <= tokens[-1]
    pairs = [i for i in range(1, len(tokens)) if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin]
    segments = []
    if pairs:
        slices = pairs + ([len(tokens)] if single_ending else [])
        last = 0
        for current in slices:
            piece = tokens[last:current]
            segments.append({"start": offset + (piece[0] - timestamp_begin) * TIME_PRECISION,
                             "end": offset + (piece[-1] - timestamp_begin) * TIME_PRECISION, "tokens": piece})
            last = current
        advance = whole if single_ending else int((tokens[last - 1] - timestamp_begin) * stamp)
    else:
        stamps = [t for t in tokens if t >= timestamp_begin]
        duration = whole / windows.SAMPLE_RATE
        if stamps and stamps[-1] != timestamp_begin:
            duration = (stamps[-1] - timestamp_begin) * TIME_PRECISION
        segments.append({"start": offset, "end": offset + duration, "tokens": tokens})
        advance = whole
    for seg in segments:
        text_tokens = [t for t in seg["tokens"] if t < timestamp_begin]
        seg.update(text=decode_text(text_tokens), seek=window.start // windows.HOP)
    return segments, min(advance, whole), single_ending


class StreamDecoder:
    """The streams and the judging of each window's output; an engine supplies `detect`,
    `begin`, `decode` and `alone`."""

    def __init__(self, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback,
                 on_segments: SegmentsCallback | None = None) -> None:
        self.audio, self.options = audio, options
        self.on_segments = on_segments
        self.fraction = 0.0  # last reported: a checkpoint inside a model call reports it again

        def report(fraction: float) -> None:
            self.fraction = fraction
            progress(fraction)

        self.progress = report
        self.windows = 0  # decoded, for the log and the benchmark
        self.cut_short = 0
        self.language = options.language

    # --- the engine's part ---

    def detect(self, window: windows.Window) -> tuple[str, float | None]:
        """The language spoken in `window`, and its probability."""
        raise NotImplementedError

    def begin(self, language: str) -> None:
        """Get ready to decode in `language` (tokenizer, decoding options)."""
        raise NotImplementedError

    def decode(self, batch: list[windows.Window]) -> list[Output]:
        """Decode the windows together (word timestamps included when asked for)."""
        raise NotImplementedError

    def alone(self, window: windows.Window) -> list[Segment]:
        """Decode one window on its own, with temperature fallback (segments on the file's timeline)."""
        raise NotImplementedError

    @property
    def multilingual(self) -> bool:
        return True

    def checkpoint(self, _fraction: float | None = None) -> None:
        """Where the job may be cancelled or handed back between two model calls: the engine
        calls it inside `decode` and `alone`, so a stop waits for one call, not for a whole
        window's fallbacks. Takes (and ignores) a fraction, to stand in for a progress callback."""
        self.progress(self.fraction)

    # --- the streams ---

    def run(self) -> Transcript:
        options, n = self.options, len(self.audio)
        self.progress(0.0)
        speech = windows.silero_spans(self.audio) if options.vad_filter else None
        if n == 0 or speech == []:
            return Transcript(language=options.language or "", language_probability=None, segments=[])
        streams = windows.streams(self.audio, options.batch_size)
        position = [stream.start for stream in streams]
        language, probability = options.language, None
        if not self.multilingual:
            language = "en"
        elif language is None:
            first = windows.next_speech(0, speech) if speech else 0
            language, probability = self.detect(windows.Window(first, min(n, first + windows.LIMIT)))
        self.language = language
        self.begin(language)
        segments: list[Segment] = []
        total = sum(s.end - s.start for s in streams)

        def decoded() -> float:
            return sum(p - s.start for p, s in zip(position, streams)) / total

        def told() -> float:
            """Seconds from the start decoded without a gap: the finished streams, then how far
            the first unfinished one has come."""
            for number, stream in enumerate(streams):
                if stream.end - position[number] >= windows.MIN_SAMPLES:
                    return position[number] / windows.SAMPLE_RATE
            return n / windows.SAMPLE_RATE

        while True:
            batch = []
            for number, stream in enumerate(streams):
                start = position[number]
                if speech is not None:
                    start = position[number] = min(stream.end, windows.next_speech(start, speech))
                if stream.end - start >= windows.MIN_SAMPLES:
                    batch.append((number, windows.Window(start, min(stream.end, start + windows.LIMIT))))
            if not batch:
                break
            self.windows += len(batch)
            for (number, window), output in zip(batch, self.decode([w for _, w in batch])):
                # a checkpoint per window: judging one may decode it again alone, with fallbacks
                self.progress(decoded())
                kept, advance = self.judge(window, output)
                segments.extend(kept)
                position[number] = min(streams[number].end, window.start + advance)
                if self.on_segments is not None:
                    self.on_segments(kept, told())
            self.progress(decoded())
        if self.on_segments is not None:
            self.on_segments([], n / windows.SAMPLE_RATE)
        segments.sort(key=lambda seg: (seg.start, seg.end))
        for number, seg in enumerate(segments):
            seg.id = number
        self.progress(1.0)
        return Transcript(language=language, language_probability=probability, segments=segments)

    def judge(self, window: windows.Window, output: Output) -> tuple[list[Segment], int]:
        """The segments kept from a window and how far its stream moves on (samples)."""
        o, whole = self.options, window.end - window.start
        if (o.no_speech_threshold is not None and output.no_speech_prob > o.no_speech_threshold
                and (o.logprob_threshold is None or output.avg_logprob < o.logprob_threshold)):
            return [], whole  # silence, skipped as sequential Whisper skips it
        kept = [seg for seg in output.segments if seg["text"].strip()]
        if not kept:
            return [], whole
        text = "".join(seg["text"] for seg in kept)
        if ((o.compression_ratio_threshold is not None and compression_ratio(text) > o.compression_ratio_threshold)
                or (o.logprob_threshold is not None and output.avg_logprob < o.logprob_threshold)):
            return self.alone(window), whole
        advance = output.advance
        if not o.without_timestamps:
            kept, advance = self._skipped(window, kept, advance, output.single_ending)
        if advance <= 0:
            advance = whole
        return [self._segment(seg, output) for seg in kept], advance

    def _skipped(self, window, kept: list[dict], advance: int, single_ending: bool):
        """Where the output passed over speech: the segments before it, and the gap's start.
        (Judged by VAD, not by level: on the reading, a quiet sentence after a loud one is 30 dB
        under it and 8 dB over its background.)"""
        ends = [int(round(seg["end"] * windows.SAMPLE_RATE)) for seg in kept]
        starts = [int(round(seg["start"] * windows.SAMPLE_RATE)) for seg in kept[1:]]
        gaps = list(zip(ends, starts))
        if single_ending:
            gaps.append((ends[-1], window.end))
        for number, (start, end) in enumerate(gaps):
            if end - start < CUT_SHORT_SECONDS * windows.SAMPLE_RATE or start <= window.start:
                continue
            if windows.has_speech(self.audio[start:end]):
                self.cut_short += 1
                return kept[:number + 1], start - window.start
        return kept, advance

    @staticmethod
    def _segment(raw: dict, output: Output) -> Segment:
        words = None
        if raw.get("words") is not None:
            words = [Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                     for w in raw["words"]]
        return Segment(
            id=0, start=float(raw["start"]), end=float(raw["end"]), text=raw["text"], words=words,
            seek=int(raw["seek"]), tokens=[int(t) for t in raw["tokens"]], temperature=0.0,
            avg_logprob=float(output.avg_logprob), compression_ratio=compression_ratio(raw["text"]),
            no_speech_prob=float(output.no_speech_prob),
        )
