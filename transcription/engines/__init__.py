"""Inference engines behind one interface; WHISPER_ENGINE=auto picks mlx on Apple Silicon."""
from __future__ import annotations

import platform

from django.conf import settings

from . import ctranslate2 as _ct2
from . import mlx as _mlx
from .base import Cancelled, DecodeOptions, Engine, EngineUnavailable, Segment, Transcript, Word
from .cache import ModelCache

ENGINE_NAMES = ("mlx", "ctranslate2")
# One cache for the process: WHISPER_MAX_LOADED_MODELS counts the models of both engines.
models = ModelCache()
_instances: dict[str, Engine] = {"mlx": _mlx.MLXEngine(models), "ctranslate2": _ct2.CTranslate2Engine(models)}
_available = {"mlx": _mlx.available, "ctranslate2": _ct2.available}

__all__ = [
    "Cancelled", "DecodeOptions", "Engine", "EngineUnavailable", "Segment", "Transcript", "Word",
    "ENGINE_NAMES", "available_engines", "get_engine", "models", "resolve_engine_name",
]


def is_apple_silicon(system: str | None = None, machine: str | None = None) -> bool:
    system = system or platform.system()
    machine = machine or platform.machine()
    return system == "Darwin" and machine == "arm64"


def available_engines() -> list[str]:
    return [name for name in ENGINE_NAMES if _available[name]()]


def resolve_engine_name(requested: str | None = None) -> str:
    """The engine a job gets: the request's choice, else WHISPER_ENGINE; `auto` by platform."""
    name = (requested or settings.WHISPER_ENGINE or "auto").strip().lower()
    if name == "auto":
        return "mlx" if is_apple_silicon() and _available["mlx"]() else "ctranslate2"
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINE_NAMES)}")
    return name


def get_engine(name: str) -> Engine:
    if not _available[name]():
        raise EngineUnavailable(f"the {name} engine's library is not installed")
    return _instances[name]
