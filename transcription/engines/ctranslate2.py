"""CTranslate2 engine: faster-whisper, int8 on CPU (float16 on CUDA)."""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
from django.conf import settings

from . import melspec
from .cache import ModelCache
from .base import DecodeOptions, EngineUnavailable, ProgressCallback, Segment, Transcript, Word

# The progress callback of the job this thread decodes (worker threads share loaded models).
_local = threading.local()


class _WindowProgress:
    """Stands in for tqdm inside faster_whisper.transcribe, whose loop advances it once per
    window decoded, silent windows included: each step reports the fraction of the audio done to
    the job running in this thread. Segments alone would say nothing across a long silence."""

    def __init__(self, total=0, **_ignored) -> None:
        self.total = float(total or 0)
        self.done = 0.0

    def update(self, n=1) -> None:
        self.done += n
        callback = getattr(_local, "progress", None)
        if callback is not None and self.total > 0:
            callback(min(1.0, self.done / self.total))

    def close(self) -> None:
        pass


def available() -> bool:
    # Looked up, not imported: the web process asks this and must not load the libraries.
    return all(importlib.util.find_spec(name) is not None for name in ("ctranslate2", "faster_whisper"))


def _device() -> tuple[str, str]:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "float16"
    return "cpu", "int8"


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

    def _key(self, model_dir: Path) -> tuple[str, str, str, str]:
        device, compute_type = _device()
        return (self.name, str(model_dir), device, compute_type)

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
        faster_whisper.transcribe.tqdm = _WindowProgress
        return model

    def transcribe(
        self, model_dir: Path, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback
    ) -> Transcript:
        key = self._key(model_dir)
        with self.cache.use(key, lambda: self._load(model_dir, key[2], key[3])) as model:
            return self._transcribe(model, audio, options, progress)

    def _transcribe(self, model, audio: np.ndarray, options: DecodeOptions,
                    progress: ProgressCallback) -> Transcript:
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
            vad_filter=False,
        )
        for name in ("beam_size", "best_of", "patience", "length_penalty"):
            if getattr(options, name) is not None:
                kwargs[name] = getattr(options, name)
        # faster-whisper decodes lazily, a window at a time, as segments are pulled from it.
        progress(0.0)
        _local.progress = progress
        try:
            pieces, info = model.transcribe(np.ascontiguousarray(audio, dtype=np.float32), **kwargs)
            segments = self._collect(pieces)
        finally:
            _local.progress = None
        progress(1.0)
        return Transcript(
            language=info.language,
            language_probability=info.language_probability,
            segments=segments,
        )

    @staticmethod
    def _collect(pieces) -> list[Segment]:
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
        return segments
