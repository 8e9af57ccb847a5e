"""Resemblyzer's GE2E speaker encoder (Apache-2.0, 17 MB of weights in the `resemblyzer` wheel),
run with NumPy: a 3-layer LSTM over 40-band power Mel frames, its last hidden state through a
linear layer, ReLU and L2 norm, as resemblyzer/voice_encoder.py computes it with PyTorch.

The package itself imports PyTorch (a CPU build is hundreds of MB, a CUDA one several GB), so the
service installs it without its dependencies, reads its `pretrained.pt` once with the reader below
(PyTorch's legacy pickle format, parsed without PyTorch) and keeps the tensors as `ge2e.npz`."""
from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

from .base import unit

SAMPLE_RATE = 16_000
N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms windows every 10 ms, as resemblyzer/hparams.py
PARTIAL_FRAMES = 160  # one embedding per 1.6 s of audio
TARGET_DBFS = -30.0  # volumes are raised to this before embedding (never lowered)

_STORAGE_TYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class WeightsError(Exception):
    pass


class _Storage:
    def __init__(self, dtype, count: int) -> None:
        self.dtype, self.count, self.data = dtype, count, None


class _Unpickler(pickle.Unpickler):
    """Only what a state dict of float tensors needs; anything else is refused, not run."""

    def __init__(self, fh, storages: dict) -> None:
        super().__init__(fh)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_TYPES:
            return name
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *_: (storage, offset, tuple(size), tuple(stride))
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a weights file")

    def persistent_load(self, pid):
        _, kind, key, _, count = pid[:5]
        return self.storages.setdefault(key, _Storage(_STORAGE_TYPES[kind], count))


def read_torch_legacy(path: Path) -> dict[str, np.ndarray]:
    """The `model_state` tensors of a checkpoint saved by PyTorch < 1.6 (its legacy format)."""
    with open(path, "rb") as fh:
        try:
            if pickle.load(fh) != _LEGACY_MAGIC:
                raise WeightsError(f"{Path(path).name} is not a legacy PyTorch checkpoint")
            pickle.load(fh), pickle.load(fh)  # protocol version, system info
            storages: dict = {}
            checkpoint = _Unpickler(fh, storages).load()
            for key in pickle.load(fh):
                storage = storages[key]
                (count,) = struct.unpack("<q", fh.read(8))
                size = count * np.dtype(storage.dtype).itemsize
                storage.data = np.frombuffer(fh.read(size), storage.dtype, count)
        except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError) as exc:
            raise WeightsError(f"{Path(path).name} cannot be read: {exc}") from None
    tensors = {}
    for name, (storage, offset, size, stride) in checkpoint["model_state"].items():
        itemsize = storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(storage.data[offset:], size, [s * itemsize for s in stride])
        tensors[name] = np.array(view, dtype=np.float32)
    return tensors


def mel_filters() -> np.ndarray:
    """librosa's Slaney Mel filter bank (40 bands), as faster-whisper computes it without librosa."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, N_MELS).astype(np.float32)


def power_mel(samples: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """(frames, 40) power Mel spectrogram (not a log one: the encoder was trained on power),
    centred frames every 10 ms as librosa.feature.melspectrogram gives them."""
    from faster_whisper.feature_extractor import FeatureExtractor

    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) <= N_FFT // 2:  # too short to reflect at the ends
        samples = np.pad(samples, (0, N_FFT // 2 + 1 - len(samples)))
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    spec = FeatureExtractor.stft(samples, N_FFT, HOP, window=window, return_complex=True)
    return (filters @ (np.abs(spec) ** 2)).T.astype(np.float32)


def raise_volume(samples: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Resemblyzer's normalize_volume(increase_only=True), measured over the speech only."""
    speech = np.concatenate([samples[a:b] for a, b in spans]) if spans else samples
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if len(speech) else 0.0
    if rms <= 1e-8:
        return samples
    gain = 10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20)
    return samples * np.float32(gain) if gain > 1 else samples


class Encoder:
    """Embeddings of 1.6-s stretches of Mel frames, all stretches in one batch per time step."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        try:
            self.layers = [(weights[f"lstm.weight_ih_l{i}"].T.copy(), weights[f"lstm.weight_hh_l{i}"].T.copy(),
                            weights[f"lstm.bias_ih_l{i}"] + weights[f"lstm.bias_hh_l{i}"]) for i in range(3)]
            self.linear = (weights["linear.weight"].T.copy(), weights["linear.bias"])
        except KeyError as exc:
            raise WeightsError(f"the speaker encoder's weights lack {exc}") from None
        self.filters = mel_filters()

    @classmethod
    def load(cls, path: Path) -> "Encoder":
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files})

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(n, 160, 40) Mel stretches → (n, 256) L2-normed embeddings."""
        n, steps, _ = frames.shape
        sequence = np.ascontiguousarray(frames.transpose(1, 0, 2))  # time-major: (steps, n, features)
        for w_ih, w_hh, bias in self.layers:
            hidden = w_hh.shape[0]
            inputs = (sequence.reshape(steps * n, -1) @ w_ih + bias).reshape(steps, n, 4 * hidden)
            h = np.zeros((n, hidden), np.float32)
            c = np.zeros((n, hidden), np.float32)
            outputs = np.empty((steps, n, hidden), np.float32)
            for t in range(steps):
                gates = inputs[t] + h @ w_hh  # PyTorch's order: input, forget, cell, output
                ifo = _sigmoid(gates[:, :2 * hidden]), _sigmoid(gates[:, 3 * hidden:])
                c = ifo[0][:, hidden:] * c + ifo[0][:, :hidden] * np.tanh(gates[:, 2 * hidden:3 * hidden])
                h = ifo[1] * np.tanh(c)
                outputs[t] = h
            sequence = outputs
        w, b = self.linear
        raw = np.maximum(h @ w + b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, 1e-8)

    def embed_stretches(self, mel: np.ndarray, starts: list[int]) -> np.ndarray:
        """Embeddings of the 1.6-s stretches of `mel` (frames, 40) beginning at the frames `starts`
        (zero-padded past the end)."""
        if not starts:
            return np.zeros((0, 256), np.float32)
        return self.embed(stretches(mel, starts))

    def embed_voice(self, samples: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
        """One embedding for a sample of one voice (a known speaker's reference): the normed mean
        of its stretches every 0.8 s, over its speech only."""
        speech = np.concatenate([samples[a:b] for a, b in spans]) if spans else samples
        speech = raise_volume(speech, [])
        mel = power_mel(speech, self.filters)
        starts = list(range(0, max(1, len(mel) - PARTIAL_FRAMES + 1), PARTIAL_FRAMES // 2))
        return unit(self.embed_stretches(mel, starts).mean(axis=0))


def stretches(mel: np.ndarray, starts: list[int]) -> np.ndarray:
    """(len(starts), 160, 40): the stretches of `mel` beginning at `starts`, zero-padded past its end."""
    need = max(starts) + PARTIAL_FRAMES
    if need > len(mel):
        mel = np.concatenate([mel, np.zeros((need - len(mel), mel.shape[1]), np.float32)])
    return np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # no overflow warnings, unlike 1 / (1 + exp(-x))
