"""Whisper's log-Mel spectrogram computed a stretch at a time, for both engines.

faster-whisper and mlx-whisper compute the spectrogram of all the audio they are given in one go,
and its Fourier transform briefly takes far more than the result: for 30 minutes, 1.5 GB with
faster-whisper and 560 MB with mlx-whisper, for a 55 MB spectrogram (bench/spectrogram_memory.py).
Here the same frames are computed in stretches of CHUNK_FRAMES, so one call over a long file needs
the result (about 110 MB an hour) plus one stretch's transform.

The frames are those of the libraries' own code: centre-padded by reflection at the ends of the
signal (never at a stretch's edge), periodic Hann window, `n_fft`=400, hop 160, the power
spectrum's last frame dropped, log10 clamped to 8 below the maximum of the *whole* spectrogram.
"""
from __future__ import annotations

import numpy as np

N_FFT = 400
HOP = 160
CHUNK_FRAMES = 12_000  # 2 minutes a stretch: about 150 MB beside the result, measured
_MARGIN = 3  # frames computed beyond each edge of a stretch and dropped (3 * HOP > N_FFT // 2)


def n_frames(n_samples: int, padding: int) -> int:
    """How many frames both libraries return for n_samples followed by `padding` zeros."""
    return (n_samples + padding) // HOP


def signal_slice(audio: np.ndarray, padding: int, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of the audio followed by `padding` zeros, extended past both ends by
    reflection as np.pad(mode="reflect") does (once: the signal is longer than a stretch);
    float32, a copy only of that stretch."""
    length = len(audio) + padding
    idx = np.arange(start, stop)
    idx = np.abs(idx)  # reflection at the start: x[-k] = x[k]
    idx = np.where(idx > length - 1, 2 * (length - 1) - idx, idx)  # and at the end
    out = np.zeros(len(idx), dtype=np.float32)
    inside = idx < len(audio)
    out[inside] = audio[idx[inside]]
    return out


def stretches(total_frames: int, chunk_frames: int):
    """(first, stop, samples_from, samples_to) per stretch: the frames [first, stop) are those
    centred on samples first*HOP .. (stop-1)*HOP; the signal slice carries _MARGIN frames more on
    each side so that the stretch's own edge padding falls only on frames that are dropped."""
    for first in range(0, total_frames, chunk_frames):
        stop = min(total_frames, first + chunk_frames)
        yield first, stop, (first - _MARGIN) * HOP, (stop - 1 + _MARGIN) * HOP + 1


def _clamp_and_scale(log_spec: np.ndarray) -> np.ndarray:
    """Both libraries' last steps, in place and in float32 as both do them (one copy of the
    result, not one per step): clamp to 8 below the whole spectrogram's maximum, then scale."""
    np.maximum(log_spec, log_spec.max() - 8.0, out=log_spec)
    log_spec += 4.0
    log_spec /= 4.0
    return log_spec


def numpy_log_mel(audio: np.ndarray, mel_filters: np.ndarray, padding: int,
                  chunk_frames: int | None = None) -> np.ndarray:
    """faster-whisper's FeatureExtractor.__call__, stretch by stretch: (n_mels, frames) float32."""
    chunk_frames = chunk_frames or CHUNK_FRAMES
    from faster_whisper.feature_extractor import FeatureExtractor

    total = n_frames(len(audio), padding)
    window = np.hanning(N_FFT + 1)[:-1].astype("float32")
    out = np.empty((mel_filters.shape[0], total), dtype=np.float32)
    for first, stop, lo, hi in stretches(total, chunk_frames):
        piece = signal_slice(audio, padding, lo, hi)
        spec = FeatureExtractor.stft(piece, N_FFT, HOP, window=window, return_complex=True)
        spec = spec.astype("complex64")[..., _MARGIN:_MARGIN + stop - first]
        mel = mel_filters @ (np.abs(spec) ** 2)
        out[:, first:stop] = np.log10(np.clip(mel, a_min=1e-10, a_max=None))
    return _clamp_and_scale(out)


def mlx_log_mel(audio, n_mels: int = 80, padding: int = 0, chunk_frames: int | None = None):
    """mlx_whisper.audio.log_mel_spectrogram, stretch by stretch: an mx.array (frames, n_mels)."""
    chunk_frames = chunk_frames or CHUNK_FRAMES
    import mlx.core as mx
    from mlx_whisper import audio as mlx_audio

    if isinstance(audio, str):
        audio = mlx_audio.load_audio(audio)
    total = n_frames(len(audio), padding)
    if total <= chunk_frames or isinstance(audio, mx.array):  # one stretch: the library's own code
        return mlx_audio.log_mel_spectrogram(audio, n_mels=n_mels, padding=padding)
    audio = np.asarray(audio, dtype=np.float32)
    window = mlx_audio.hanning(N_FFT)
    filters = mlx_audio.mel_filters(n_mels)
    out = np.empty((total, filters.shape[0]), dtype=np.float32)
    for first, stop, lo, hi in stretches(total, chunk_frames):
        piece = mx.array(signal_slice(audio, padding, lo, hi))
        freqs = mlx_audio.stft(piece, window, nperseg=N_FFT, noverlap=HOP)[_MARGIN:_MARGIN + stop - first]
        mel = freqs.abs().square() @ filters.T
        out[first:stop] = np.array(mx.maximum(mel, 1e-10).log10())
    return mx.array(_clamp_and_scale(out))
