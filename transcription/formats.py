"""Result writers (txt, srt, vtt, json) and the JSON sanitiser every result passes through."""
from __future__ import annotations

import io
import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """A copy of `value` that strict JSON accepts: NumPy scalars/arrays become Python values,
    NaN and ±Infinity become None, tuples become lists, keys become strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__"):
        return jsonable({f: getattr(value, f) for f in value.__dataclass_fields__})
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False, indent=2)


def timestamp(seconds: float, separator: str = ".", always_hours: bool = True) -> str:
    """HH:MM:SS.mmm (hours grow past 99 as needed); srt wants ',' as the separator."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{separator}{millis:03d}"


@dataclass(frozen=True)
class SubtitleOptions:
    """Line shaping for srt/vtt, as Whisper's writers take it (word timestamps needed)."""

    max_line_width: int | None = None
    max_line_count: int | None = None
    highlight_words: bool = False
    max_words_per_line: int | None = None

    def as_writer_options(self) -> dict:
        return {"max_line_width": self.max_line_width, "max_line_count": self.max_line_count,
                "highlight_words": self.highlight_words, "max_words_per_line": self.max_words_per_line}


def _for_writer(result: Mapping) -> dict:
    """Whisper's writers shape cues from words when the segments carry them, else one cue per
    segment; our segments have no words when word_timestamps was off."""
    segments = list(result.get("segments") or [])
    if any(seg.get("words") for seg in segments):
        return {**result, "segments": [{**seg, "words": seg.get("words") or []} for seg in segments]}
    return {**result, "segments": [{k: v for k, v in seg.items() if k != "words"} for seg in segments]}


def _write_with(writer_cls, result: Mapping, options: SubtitleOptions | None = None) -> str:
    # mlx-whisper ships OpenAI Whisper's writers (line splitting, word highlighting, timestamps):
    # reuse them rather than keep a second copy of that logic.
    buffer = io.StringIO()
    writer_cls(".").write_result(_for_writer(result), file=buffer,
                                 options=(options or SubtitleOptions()).as_writer_options())
    return buffer.getvalue()


def to_txt(result: Mapping, options: SubtitleOptions | None = None) -> str:
    return (result.get("text") or "").strip() + "\n"


def to_srt(result: Mapping, options: SubtitleOptions | None = None) -> str:
    from mlx_whisper.writers import WriteSRT

    return _write_with(WriteSRT, result, options)


def to_vtt(result: Mapping, options: SubtitleOptions | None = None) -> str:
    from mlx_whisper.writers import WriteVTT

    return _write_with(WriteVTT, result, options)


def to_tsv(result: Mapping, options: SubtitleOptions | None = None) -> str:
    from mlx_whisper.writers import WriteTSV

    return _write_with(WriteTSV, result)


def to_json(result: Mapping, options: SubtitleOptions | None = None) -> str:
    return dumps(result) + "\n"


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv, "json": to_json}


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write UTF-8 text so that the file either has all of it or does not exist.

    `mode`: the file's permissions; None gives what an ordinary new file gets (0666 less the
    umask), not the private 0600 of the temporary file it is written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL as mkstemp does, but created 0666 so that the kernel applies the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
