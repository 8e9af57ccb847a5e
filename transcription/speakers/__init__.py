"""Who spoke when: diarization backends behind one interface (base.Backend), the choice among
them, their installation (store.py), and the step that gives a result's words and segments their
speakers (assign.py, worker side)."""
from __future__ import annotations

from django.conf import settings

from .base import Backend, Count, Diarization, DiarizationUnavailable, Turn
from .pyannote import Pyannote
from .resemblyzer import Resemblyzer

BACKENDS: dict[str, Backend] = {b.name: b for b in (Resemblyzer(), Pyannote())}
NAMES = tuple(BACKENDS)

__all__ = ["BACKENDS", "NAMES", "Backend", "Count", "Diarization", "DiarizationUnavailable", "Turn",
           "default_backend", "describe", "get"]


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise DiarizationUnavailable(f"unknown diarization backend {name!r}; known: {', '.join(NAMES)}") from None


def default_backend() -> Backend:
    """DIARIZATION_BACKEND: a backend's name, or auto (pyannote when it can run, else Resemblyzer).
    Raises DiarizationUnavailable, saying how to install it, when the chosen one cannot run."""
    choice = settings.DIARIZATION_BACKEND
    if choice == "auto":
        choice = "pyannote" if BACKENDS["pyannote"].installed() else "resemblyzer"
    backend = get(choice)
    reason = backend.missing()
    if reason:
        raise DiarizationUnavailable(reason)
    return backend


def describe() -> list[dict]:
    """For GET /models and the admin: each backend, whether it can run here, and which is used."""
    try:
        chosen = default_backend().name
    except DiarizationUnavailable:
        chosen = None
    out = []
    for backend in BACKENDS.values():
        reason = backend.missing()
        out.append({"name": backend.name, "label": backend.label, "installed": reason is None,
                    "default": backend.name == chosen, "missing": reason})
    return out
