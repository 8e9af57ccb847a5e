"""Loaded models of one worker process, shared by its threads, released when idle or too many.

A model stays loaded while jobs use it (no reload per job). Once unused for WHISPER_MODEL_TTL
seconds, or when more than WHISPER_MAX_LOADED_MODELS are loaded, the least recently used idle one
is dropped and its memory handed back; one that a job is using is never dropped.
(After speaches' model manager: a TTL and a count of users per model.)"""
from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings

from .. import metrics

log = logging.getLogger("transcription")


@dataclass
class _Entry:
    model: object
    release: Callable[[object], None]
    last_used: float
    users: int = 0


class ModelCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def is_loaded(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def loaded(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def last_used(self) -> dict[Hashable, float]:
        """Each loaded model's last use as a wall-clock time (time.time()), for people to read."""
        with self._lock:
            now, wall = self._clock(), time.time()
            return {key: wall - (now - entry.last_used) for key, entry in self._entries.items()}

    def release_where(self, gone: Callable[[Hashable], bool]) -> int:
        """Drop the idle models for which `gone(key)` is true (their files were removed); one in
        use stays until its job ends. Returns how many went."""
        with self._lock:
            dropped = [(k, e) for k, e in self._entries.items() if e.users == 0 and gone(k)]
            for key, _ in dropped:
                del self._entries[key]
        count = len(dropped)
        self._release(dropped)
        return count

    @contextmanager
    def use(self, key: Hashable, load: Callable[[], object],
            release: Callable[[object], None] = lambda model: None) -> Iterator[object]:
        """The model for `key`, loaded on first use (once, even when threads ask together) and
        kept loaded while the block runs."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                began = time.monotonic()
                entry = self._entries[key] = _Entry(load(), release, last_used=self._clock())
                log.info("event=model_loaded key=%s seconds=%.2f", key, time.monotonic() - began)
                metrics.model_loaded(key)
            entry.users += 1
            dropped = self._evict(keep=key)
        self._release(dropped)
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.users -= 1
                entry.last_used = self._clock()

    def release_idle(self) -> int:
        """Drop models unused for longer than WHISPER_MODEL_TTL; returns how many went."""
        with self._lock:
            dropped = self._evict()
        count = len(dropped)
        self._release(dropped)
        return count

    def _evict(self, keep: Hashable | None = None) -> list[tuple[Hashable, _Entry]]:
        """Under the lock: take out the entries to drop (idle too long, then least recently used
        idle ones past the limit)."""
        now, ttl, limit = self._clock(), settings.WHISPER_MODEL_TTL, settings.WHISPER_MAX_LOADED_MODELS
        idle = sorted(((k, e) for k, e in self._entries.items() if e.users == 0 and k != keep),
                      key=lambda item: item[1].last_used)  # oldest first: the expired ones lead
        expired = sum(1 for _, e in idle if ttl and now - e.last_used > ttl)
        excess = len(self._entries) - limit if limit else 0
        dropped = idle[:max(expired, excess, 0)]
        for key, _ in dropped:
            del self._entries[key]
        return dropped

    @staticmethod
    def _release(dropped: list[tuple[Hashable, _Entry]]) -> None:
        for key, entry in dropped:
            entry.release(entry.model)
            entry.model = None  # the cache's reference was the last one: the memory goes with it
            log.info("event=model_released key=%s", key)
            metrics.model_evicted(key)
        if dropped:
            dropped.clear()
            gc.collect()
            _return_free_memory()


def _return_free_memory() -> None:
    """glibc keeps freed blocks in its arenas, so a released model would still count against the
    worker's memory (measured: 25 of ~80 MB came back for base); malloc_trim hands them back."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # another C library (musl): nothing to trim
        pass
