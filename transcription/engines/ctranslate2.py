"""CTranslate2 engine: faster-whisper, int8 on CPU (float16 on CUDA)."""
from __future__ import annotations

import importlib.util
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from django.conf import settings

from . import melspec, streams, windows
from .cache import ModelCache
from .base import (DecodeOptions, EngineUnavailable, ProgressCallback, Segment, SegmentsCallback, Transcript,
                   Word)

# The progress callback of the job this thread decodes (worker threads share loaded models), and
# the fraction last reported to it.
_local = threading.local()


@contextmanager
def _reporting(progress: ProgressCallback):
    """Route this thread's window progress and model-call checkpoints to `progress` (nested
    calls, a window decoded alone inside batched decoding, get back the outer one after)."""
    saved = getattr(_local, "progress", None), getattr(_local, "fraction", 0.0)
    _local.progress, _local.fraction = progress, 0.0
    try:
        yield
    finally:
        _local.progress, _local.fraction = saved


def _checkpoint() -> None:
    callback = getattr(_local, "progress", None)
    if callback is not None:
        callback(getattr(_local, "fraction", 0.0))


class _WindowProgress:
    """Stands in for tqdm inside faster_whisper.transcribe, whose loop advances it once per
    window decoded, silent windows included: each step reports the fraction of the audio done to
    the job running in this thread. Segments alone would say nothing across a long silence."""

    def __init__(self, total=0, **_ignored) -> None:
        self.total = float(total or 0)
        self.done = 0.0

    def update(self, n=1) -> None:
        self.done += n
        if self.total > 0:
            _local.fraction = min(1.0, self.done / self.total)
            _checkpoint()

    def close(self) -> None:
        pass


class _Checkpointed:
    """CTranslate2's Whisper model as faster-whisper sees it, with a checkpoint before each
    encode and generate call: one per temperature tried in the sequential loop, one per batch in
    batched decoding. A cancel or a worker's shutdown then waits for one call to end, not for
    every fallback of a window (measured: a German window of a mixed recording took 52 s to
    decode alone, all six temperatures, with no checkpoint inside)."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, *args, **kwargs):
        _checkpoint()
        return self._model.encode(*args, **kwargs)

    def generate(self, *args, **kwargs):
        _checkpoint()
        return self._model.generate(*args, **kwargs)


def available() -> bool:
    # Looked up, not imported: the web process asks this and must not load the libraries.
    return all(importlib.util.find_spec(name) is not None for name in ("ctranslate2", "faster_whisper"))


@dataclass(frozen=True)
class DevicePlan:
    device: str
    compute_type: str
    batch_size: int  # windows per model call when the request leaves it to the engine
    beam_size: int  # beam width when the request leaves it to the engine, batched decoding


def device_plan(cuda_devices: int, batch_setting: int = 0) -> DevicePlan:
    """Where and how to run: float16 and 16 windows a call on a GPU; int8 and 8 on the CPU
    (measured on 2 cores: 16 was slower than 8, the encoder's cost growing past linear).
    Batched decoding searches greedily on the CPU, where a 5-wide beam measured 1.4x slower for
    the same WER on the benchmark's reading; a GPU keeps the beam. A WHISPER_BATCH_SIZE setting
    overrides the batch size on both."""
    if cuda_devices > 0:
        return DevicePlan("cuda", "float16", batch_setting or 16, 5)
    return DevicePlan("cpu", "int8", batch_setting or 8, 1)


def _plan() -> DevicePlan:
    import ctranslate2

    return device_plan(ctranslate2.get_cuda_device_count(), settings.WHISPER_BATCH_SIZE)


def _chunked_extractor(model):
    """A FeatureExtractor for the model (its own settings) that computes the same spectrogram a
    stretch at a time."""
    from faster_whisper.feature_extractor import FeatureExtractor

    class ChunkedFeatureExtractor(FeatureExtractor):
        def __call__(self, waveform, padding=160, chunk_length=None):
            if chunk_length is not None:  # as the library does: it sets the window length
                self.n_samples = chunk_length * self.sampling_rate
                self.nb_max_frames = self.n_samples // self.hop_length
            if melspec.n_frames(len(waveform), padding) <= melspec.CHUNK_FRAMES:
                return super().__call__(waveform, padding)  # one stretch: the library's own code
            return melspec.numpy_log_mel(waveform, self.mel_filters, padding)

    return ChunkedFeatureExtractor(**model.feat_kwargs)


class CTranslate2Engine:
    name = "ctranslate2"

    def unsupported(self, options: DecodeOptions) -> list[str]:
        return []  # faster-whisper takes every option the service exposes

    def _key(self, model_dir: Path, plan: DevicePlan | None = None) -> tuple[str, str, str, str]:
        plan = plan or _plan()
        return (self.name, str(model_dir), plan.device, plan.compute_type)

    def __init__(self, cache: ModelCache | None = None) -> None:
        self.cache = cache or ModelCache()

    def is_loaded(self, model_dir: Path) -> bool:
        return self.cache.is_loaded(self._key(model_dir))

    def _load(self, model_dir: Path, device: str, compute_type: str):
        from faster_whisper import WhisperModel
        import faster_whisper.transcribe

        if not (model_dir / "model.bin").is_file():
            raise EngineUnavailable(f"no CTranslate2 weights in {model_dir}")
        model = WhisperModel(str(model_dir), device=device, compute_type=compute_type,
                             cpu_threads=settings.WHISPER_CPU_THREADS)
        model.feature_extractor = _chunked_extractor(model)
        model.model = _Checkpointed(model.model)
        faster_whisper.transcribe.tqdm = _WindowProgress
        return model

    def preload(self, model_dir: Path) -> None:
        plan = _plan()
        key = self._key(model_dir, plan)
        with self.cache.use(key, lambda: self._load(model_dir, key[2], key[3])):
            pass

    def transcribe(
        self, model_dir: Path, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback,
        on_segments: SegmentsCallback | None = None,
    ) -> Transcript:
        plan = _plan()
        key = self._key(model_dir, plan)
        with self.cache.use(key, lambda: self._load(model_dir, key[2], key[3])) as model:
            audio = np.ascontiguousarray(audio, dtype=np.float32)
            batch_size = options.batch_size or plan.batch_size
            if batch_size > 1:
                options = replace(options, batch_size=batch_size, beam_size=options.beam_size or plan.beam_size)
                return Batched(model, audio, options, progress, on_segments).run()
            return self.sequential(model, audio, options, progress, on_segments)

    def detect_language(self, model_dir: Path, audio: np.ndarray) -> list[tuple[str, float]]:
        plan = _plan()
        key = self._key(model_dir, plan)
        with self.cache.use(key, lambda: self._load(model_dir, key[2], key[3])) as model:
            if not model.model.is_multilingual:
                raise ValueError("an English-only model cannot tell languages apart")
            window = np.ascontiguousarray(audio[: windows.SAMPLE_RATE * 30], dtype=np.float32)
            _, _, probabilities = model.detect_language(window)
        return sorted(((code, float(p)) for code, p in probabilities), key=lambda cp: -cp[1])

    @staticmethod
    def sequential(model, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback,
                   on_segments: SegmentsCallback | None = None) -> Transcript:
        """Sequential: faster-whisper's own loop, each window starting where the last one's
        output ended, the previous text as the prompt when condition_on_previous_text is set."""
        kwargs = dict(
            language=options.language,
            task=options.task,
            temperature=list(options.temperature),
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.logprob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            condition_on_previous_text=options.condition_on_previous_text,
            initial_prompt=options.initial_prompt,
            suppress_tokens=list(options.suppress_tokens),
            without_timestamps=options.without_timestamps,
            word_timestamps=options.word_timestamps,
            hallucination_silence_threshold=options.hallucination_silence_threshold,
            vad_filter=options.vad_filter,
            vad_parameters=dict(min_silence_duration_ms=160, speech_pad_ms=200) if options.vad_filter else None,
            hotwords=options.hotwords,
        )
        for name in ("beam_size", "best_of", "patience", "length_penalty"):
            if getattr(options, name) is not None:
                kwargs[name] = getattr(options, name)
        # faster-whisper decodes lazily, a window at a time, as segments are pulled from it.
        progress(0.0)
        with _reporting(progress):
            pieces, info = model.transcribe(audio, **kwargs)
            segments = CTranslate2Engine._collect(pieces, on_segments)
        progress(1.0)
        return Transcript(
            language=info.language,
            language_probability=info.language_probability,
            segments=segments,
        )

    @staticmethod
    def _collect(pieces, on_segments: SegmentsCallback | None = None) -> list[Segment]:
        segments = []
        for piece in pieces:
            words = None
            if piece.words is not None:
                words = [Word(w.start, w.end, w.word, w.probability) for w in piece.words]
            segments.append(
                Segment(
                    id=len(segments), start=piece.start, end=piece.end, text=piece.text,
                    words=words, seek=piece.seek, tokens=list(piece.tokens),
                    temperature=piece.temperature or 0.0, avg_logprob=piece.avg_logprob,
                    compression_ratio=piece.compression_ratio, no_speech_prob=piece.no_speech_prob,
                )
            )
            if on_segments is not None:  # in order: everything up to this segment is told
                on_segments([segments[-1]], piece.end)
        return segments


class Batched(streams.StreamDecoder):
    """CTranslate2's part of batched decoding (engines/streams.py): the windows' spectrograms
    through one encoder call and CTranslate2's batched `generate` (faster-whisper's batched
    pipeline step), then its word alignment for the whole batch."""

    def __init__(self, model, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback,
                 on_segments: SegmentsCallback | None = None) -> None:
        super().__init__(audio, options, progress, on_segments)
        self.model = model

    @property
    def multilingual(self) -> bool:
        return self.model.model.is_multilingual

    def _features(self, window: windows.Window) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        return pad_or_trim(self.model.feature_extractor(self.audio[window.start:window.end])[..., :-1])

    def detect(self, window: windows.Window) -> tuple[str, float | None]:
        language, probability, _ = self.model.detect_language(features=self._features(window))
        return language, probability

    def begin(self, language: str) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import BatchedInferencePipeline

        self.tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task=self.options.task,
                                   language=language)
        self.decoding = self._decoding_options()
        self.pipeline = BatchedInferencePipeline(self.model)

    def decode(self, batch: list[windows.Window]) -> list[streams.Output]:
        tokenizer = self.tokenizer
        with _reporting(self.checkpoint):
            encoded, outputs = self.pipeline.generate_segment_batched(
                np.stack([self._features(w) for w in batch]), tokenizer, self.decoding)
        results = []
        for window, output in zip(batch, outputs):
            segments, advance, single_ending = streams.split_by_timestamps(
                output["tokens"], tokenizer.timestamp_begin, tokenizer.eot, window, tokenizer.decode)
            results.append(streams.Output(segments, advance, single_ending, output["avg_logprob"],
                                          output["no_speech_prob"]))
        if self.options.word_timestamps:
            frames = [min(windows.FRAMES, -(-(w.end - w.start) // windows.HOP)) for w in batch]
            self.model.add_word_timestamps([r.segments for r in results], tokenizer, encoded, frames,
                                           self.decoding.prepend_punctuations,
                                           self.decoding.append_punctuations, 0.0)
        return results

    def alone(self, window: windows.Window) -> list[Segment]:
        options = replace(self.options, language=self.language, batch_size=1, vad_filter=False)
        part = CTranslate2Engine.sequential(self.model, self.audio[window.start:window.end], options,
                                            self.checkpoint)
        return [seg.shifted(window.start / windows.SAMPLE_RATE) for seg in part.segments]

    def _decoding_options(self):
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        o = self.options
        prompt = o.initial_prompt.strip() if o.initial_prompt else None
        return TranscriptionOptions(
            beam_size=o.beam_size or 5, best_of=o.best_of or 5, patience=o.patience or 1,
            length_penalty=o.length_penalty or 1, repetition_penalty=1, no_repeat_ngram_size=0,
            log_prob_threshold=o.logprob_threshold, no_speech_threshold=o.no_speech_threshold,
            compression_ratio_threshold=o.compression_ratio_threshold, condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5, temperatures=[o.temperature[0] if o.temperature else 0.0],
            initial_prompt=f" {prompt}" if prompt else None, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(self.tokenizer, list(o.suppress_tokens)),
            without_timestamps=o.without_timestamps, max_initial_timestamp=1.0,
            word_timestamps=o.word_timestamps, prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、", multilingual=False, max_new_tokens=None,
            clip_timestamps="0", hallucination_silence_threshold=None, hotwords=o.hotwords,
        )
