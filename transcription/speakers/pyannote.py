"""The stronger optional backend: pyannote.audio's speaker-diarization pipeline, from a folder
installed with `manage.py install_diarization pyannote --from-dir DIR` (or `--token` from the
Hugging Face hub, where it is reachable). Needs `pip install pyannote.audio` (PyTorch) in the
worker's environment; the service does not install it. Until both are there, a request for it is
refused with a 422 that says which is missing."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from django.conf import settings

from .base import SAMPLE_RATE, Count, Diarization, DiarizationUnavailable, Turn

HUB_REPO = "pyannote/speaker-diarization-3.1"


def folder() -> Path:
    return Path(settings.MODELS_DIR) / "speakers-pyannote"


def package_installed() -> bool:
    try:
        return importlib.util.find_spec("pyannote.audio") is not None
    except (ImportError, ValueError):  # no `pyannote` namespace at all
        return False


@functools.lru_cache(maxsize=1)
def _pipeline(config: str, mtime: float):
    from pyannote.audio import Pipeline

    return Pipeline.from_pretrained(config)


class Pyannote:
    name = "pyannote"
    label = "pyannote.audio speaker-diarization pipeline (optional; PyTorch)"

    def missing(self) -> str | None:
        """Why it cannot run here, for a person; None when it can."""
        if not (folder() / "config.yaml").is_file():
            return ("the pyannote pipeline is not installed; run: python manage.py install_diarization pyannote"
                    " --from-dir DIR (a downloaded pipeline folder) or --token HF_TOKEN")
        if not package_installed():
            return "the pyannote pipeline needs the pyannote.audio package in the worker: pip install pyannote.audio"
        return None

    def installed(self) -> bool:
        return self.missing() is None

    def pipeline(self):
        reason = self.missing()
        if reason:
            raise DiarizationUnavailable(reason)
        config = folder() / "config.yaml"
        return _pipeline(str(config), config.stat().st_mtime)

    def diarize(self, samples: np.ndarray, count: Count) -> Diarization:
        import torch

        pipeline = self.pipeline()
        kwargs = {k: v for k, v in (("num_speakers", count.num), ("min_speakers", count.low),
                                    ("max_speakers", count.high)) if v is not None}
        audio = {"waveform": torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None],
                 "sample_rate": SAMPLE_RATE}
        annotation, centroids = pipeline(audio, return_embeddings=True, **kwargs)
        labels = annotation.labels()
        order: dict[str, int] = {}
        turns = []
        for segment, _, label in annotation.itertracks(yield_label=True):
            speaker = order.setdefault(label, len(order))
            turns.append(Turn(float(segment.start), float(segment.end), speaker))
        voices = {order[label]: np.asarray(centroids[i], dtype=np.float32)
                  for i, label in enumerate(labels) if label in order}
        return Diarization(turns=turns, voices=voices)

    def embed_voice(self, samples: np.ndarray) -> np.ndarray:
        import torch
        from pyannote.audio import Inference

        pipeline = self.pipeline()
        inference = Inference(pipeline._embedding.model_, window="whole")  # the pipeline's own embedder
        audio = {"waveform": torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None],
                 "sample_rate": SAMPLE_RATE}
        return np.asarray(inference(audio), dtype=np.float32).reshape(-1)
