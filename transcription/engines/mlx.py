"""MLX engine: mlx-whisper on Apple Silicon (Metal), or MLX's CPU backend elsewhere (slow)."""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from django.conf import settings

from . import melspec, streams, windows
from .cache import ModelCache
from .base import (DecodeOptions, EngineUnavailable, ProgressCallback, Segment, SegmentsCallback, Transcript,
                   Word)

# mlx-whisper keeps its model in a class attribute and reports progress through a module-level
# tqdm, so one transcription at a time per process: the lock makes that explicit.
_lock = threading.RLock()
_progress: dict[str, object] = {}


def available() -> bool:
    # Looked up, not imported: the web process asks this and must not load the libraries
    # (find_spec("mlx.core") would import the mlx package, so look for core's file instead).
    mlx, whisper = importlib.util.find_spec("mlx"), importlib.util.find_spec("mlx_whisper")
    if mlx is None or whisper is None:
        return False
    return any(Path(place, entry).name.startswith("core.")
               for place in (mlx.submodule_search_locations or []) for entry in os.listdir(place))


def on_metal() -> bool:
    """Apple Silicon with Metal: float16 there; float32 on the CPU backend, where it is faster."""
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return False
    import mlx.core as mx

    return mx.metal.is_available()


class _ProgressBar:
    """Stands in for tqdm inside mlx_whisper.transcribe and forwards frames decoded."""

    def __init__(self, total: int = 0, **_ignored) -> None:
        self.total = max(1, int(total or 1))
        self.done = 0

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.done += n
        _progress["fraction"] = min(1.0, self.done / self.total)
        _checkpoint()


def _checkpoint() -> None:
    callback = _progress.get("callback")
    if callback is not None:
        callback(_progress.get("fraction", 0.0))


def _checkpointed(decode):
    """mlx-whisper's `Whisper.decode` with a checkpoint before it: its loop calls it once per
    temperature tried, so a cancel waits for one decode, not for a window's every fallback."""
    def decode_after_checkpoint(*args, **kwargs):
        _checkpoint()
        return decode(*args, **kwargs)

    decode_after_checkpoint.checkpointed = True
    return decode_after_checkpoint


class MLXEngine:
    name = "mlx"

    def unsupported(self, options: DecodeOptions) -> list[str]:
        problems = []
        if options.beam_size is not None and options.beam_size > 1:
            problems.append(
                "beam_size > 1 is not supported by the mlx engine (mlx-whisper has no beam search);"
                " leave it unset or use engine=ctranslate2"
            )
        if options.patience is not None:
            problems.append("patience needs beam search, which the mlx engine does not have")
        if options.vad_filter:
            problems.append("vad_filter is not supported by the mlx engine; use engine=ctranslate2")
        if options.hotwords:
            problems.append("hotwords are not supported by the mlx engine (use initial_prompt, or"
                            " engine=ctranslate2)")
        return problems

    def _dtype_name(self) -> str:
        return "float16" if on_metal() else "float32"

    def __init__(self, cache: ModelCache | None = None) -> None:
        self.cache = cache or ModelCache()

    def is_loaded(self, model_dir: Path) -> bool:
        return self.cache.is_loaded((self.name, str(model_dir), self._dtype_name()))

    @staticmethod
    def _load(model_dir: Path, dtype: str):
        import mlx.core as mx
        from mlx_whisper.load_models import load_model

        if not (model_dir / "config.json").is_file() or not any(
            (model_dir / f).is_file() for f in ("weights.safetensors", "weights.npz")
        ):
            raise EngineUnavailable(f"no MLX weights in {model_dir}")
        return load_model(str(model_dir), dtype=getattr(mx, dtype))

    @staticmethod
    def _release(model) -> None:
        """mlx-whisper's holder keeps the last model too; MLX keeps freed buffers for reuse."""
        import mlx.core as mx

        module = importlib.import_module("mlx_whisper.transcribe")
        if module.ModelHolder.model is model:
            module.ModelHolder.model = module.ModelHolder.model_path = None
        mx.clear_cache()

    def preload(self, model_dir: Path) -> None:
        key = (self.name, str(model_dir), self._dtype_name())
        with _lock, self.cache.use(key, lambda: self._load(model_dir, key[2]), self._release):
            pass

    def transcribe(
        self, model_dir: Path, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback,
        on_segments: SegmentsCallback | None = None,
    ) -> Transcript:
        module = importlib.import_module("mlx_whisper.transcribe")
        key = (self.name, str(model_dir), self._dtype_name())
        with _lock, self.cache.use(key, lambda: self._load(model_dir, key[2]), self._release) as model:
            # Hand our cached model to mlx-whisper's holder so it never reloads from disk.
            module.ModelHolder.model = model
            module.ModelHolder.model_path = str(model_dir)
            audio = np.ascontiguousarray(audio, dtype=np.float32)
            batch_size = options.batch_size or settings.WHISPER_BATCH_SIZE or 8
            if settings.WHISPER_MLX_BATCHED and batch_size > 1:
                decoder = MLXBatched(model, audio, replace(options, batch_size=batch_size), progress,
                                     lambda part, opts, report: self._sequential(module, model_dir, part, opts, report),
                                     on_segments)
                return decoder.run()
            transcript = self._sequential(module, model_dir, audio, options, progress)
            if on_segments is not None:  # mlx-whisper's loop hands its segments back only at the end
                on_segments(transcript.segments, len(audio) / windows.SAMPLE_RATE)
            return transcript

    def detect_language(self, model_dir: Path, audio: np.ndarray) -> list[tuple[str, float]]:
        from mlx_whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram
        import mlx.core as mx

        key = (self.name, str(model_dir), self._dtype_name())
        with _lock, self.cache.use(key, lambda: self._load(model_dir, key[2]), self._release) as model:
            if not model.is_multilingual:
                raise ValueError("an English-only model cannot tell languages apart")
            window = np.ascontiguousarray(audio[:N_SAMPLES], dtype=np.float32)
            mel = log_mel_spectrogram(window, n_mels=model.dims.n_mels, padding=N_SAMPLES)[:N_FRAMES]
            _, probabilities = model.detect_language(mel.astype(mx.float16 if on_metal() else mx.float32))
        return sorted(((code, float(p)) for code, p in probabilities.items()), key=lambda cp: -cp[1])

    def _sequential(self, module, model_dir: Path, audio: np.ndarray, options: DecodeOptions,
                    progress: ProgressCallback) -> Transcript:
        """mlx-whisper's own loop, each window where the last one's text ended."""
        module.tqdm = SimpleNamespace(tqdm=_ProgressBar)
        whisper = importlib.import_module("mlx_whisper.whisper").Whisper
        if not getattr(whisper.decode, "checkpointed", False):
            whisper.decode = _checkpointed(whisper.decode)
        # The same spectrogram, computed a stretch at a time (bounded memory on long files).
        module.log_mel_spectrogram = melspec.mlx_log_mel
        saved = dict(_progress)  # a window decoded alone inside batched decoding: restore the outer
        _progress.update(callback=progress, fraction=0.0)
        try:
            progress(0.0)
            decode = {}
            if options.beam_size is not None:
                decode["beam_size"] = None if options.beam_size <= 1 else options.beam_size
            if options.best_of is not None:
                decode["best_of"] = options.best_of
            if options.length_penalty is not None:
                decode["length_penalty"] = options.length_penalty
            result = module.transcribe(
                audio,
                path_or_hf_repo=str(model_dir),
                verbose=None,
                temperature=tuple(options.temperature),
                compression_ratio_threshold=options.compression_ratio_threshold,
                logprob_threshold=options.logprob_threshold,
                no_speech_threshold=options.no_speech_threshold,
                condition_on_previous_text=options.condition_on_previous_text,
                initial_prompt=options.initial_prompt,
                word_timestamps=options.word_timestamps,
                hallucination_silence_threshold=options.hallucination_silence_threshold,
                language=options.language,
                task=options.task,
                suppress_tokens=",".join(str(t) for t in options.suppress_tokens),
                without_timestamps=options.without_timestamps,
                fp16=self._dtype_name() == "float16",
                **decode,
            )
        finally:
            _progress.clear()
            _progress.update(saved)
        progress(1.0)
        segments = []
        for raw in result.get("segments", []):
            words = None
            if options.word_timestamps:
                words = [
                    Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                    for w in raw.get("words", [])
                ]
            segments.append(
                Segment(
                    id=len(segments), start=float(raw["start"]), end=float(raw["end"]),
                    text=raw["text"], words=words, seek=int(raw.get("seek", 0)),
                    tokens=[int(t) for t in raw.get("tokens", [])],
                    temperature=float(raw.get("temperature", 0.0)),
                    avg_logprob=float(raw.get("avg_logprob", 0.0)),
                    compression_ratio=float(raw.get("compression_ratio", 0.0)),
                    no_speech_prob=float(raw.get("no_speech_prob", 0.0)),
                )
            )
        return Transcript(language=result.get("language") or "", language_probability=None, segments=segments)


class MLXBatched(streams.StreamDecoder):
    """mlx-whisper's part of batched decoding (engines/streams.py): the windows' spectrograms
    stacked into one `decode` call (mlx-whisper decodes a batch greedily, with timestamps), then
    word timing window by window. Used when WHISPER_MLX_BATCHED is set: its speed on Metal is
    measured on a Mac, not here."""

    def __init__(self, model, audio: np.ndarray, options: DecodeOptions, progress: ProgressCallback,
                 sequential, on_segments: SegmentsCallback | None = None) -> None:
        super().__init__(audio, options, progress, on_segments)
        self.model, self.sequential = model, sequential

    @property
    def multilingual(self) -> bool:
        return self.model.is_multilingual

    def _mel(self, window: windows.Window):
        from mlx_whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram

        mel = log_mel_spectrogram(self.audio[window.start:window.end], n_mels=self.model.dims.n_mels,
                                  padding=N_SAMPLES)
        import mlx.core as mx

        return mel[:N_FRAMES].astype(mx.float16 if on_metal() else mx.float32)

    def detect(self, window: windows.Window) -> tuple[str, float | None]:
        _, probs = self.model.detect_language(self._mel(window))
        language = max(probs, key=probs.get)
        return language, float(probs[language])

    def begin(self, language: str) -> None:
        from mlx_whisper.decoding import DecodingOptions
        from mlx_whisper.tokenizer import get_tokenizer

        o = self.options
        self.tokenizer = get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages,
                                       language=language, task=o.task)
        self.decoding = DecodingOptions(
            task=o.task, language=language, temperature=o.temperature[0] if o.temperature else 0.0,
            prompt=o.initial_prompt or None, suppress_tokens=",".join(str(t) for t in o.suppress_tokens),
            without_timestamps=o.without_timestamps, fp16=on_metal())

    def decode(self, batch: list[windows.Window]) -> list[streams.Output]:
        import mlx.core as mx
        from mlx_whisper.decoding import decode
        from mlx_whisper.timing import add_word_timestamps

        tokenizer = self.tokenizer
        mels = [self._mel(w) for w in batch]
        results = []
        for window, mel, result in zip(batch, mels, decode(self.model, mx.stack(mels), self.decoding)):
            segments, advance, single_ending = streams.split_by_timestamps(
                list(result.tokens), tokenizer.timestamp_begin, tokenizer.eot, window, tokenizer.decode)
            if self.options.word_timestamps and any(t < tokenizer.eot for seg in segments for t in seg["tokens"]):
                frames = min(windows.FRAMES, -(-(window.end - window.start) // windows.HOP))
                add_word_timestamps(segments=segments, model=self.model, tokenizer=tokenizer, mel=mel,
                                    num_frames=frames, last_speech_timestamp=0.0)
            results.append(streams.Output(segments, advance, single_ending, float(result.avg_logprob),
                                          float(result.no_speech_prob)))
        return results

    def alone(self, window: windows.Window) -> list[Segment]:
        options = replace(self.options, language=self.language, batch_size=1)
        part = self.sequential(self.audio[window.start:window.end], options, self.checkpoint)
        return [seg.shifted(window.start / windows.SAMPLE_RATE) for seg in part.segments]
