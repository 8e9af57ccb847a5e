"""Result writers (txt, srt, vtt, json) and the JSON sanitiser every result passes through."""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
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


def to_txt(result: Mapping) -> str:
    return (result.get("text") or "").strip() + "\n"


def to_srt(result: Mapping) -> str:
    blocks = []
    for i, seg in enumerate(result.get("segments") or [], start=1):
        start = timestamp(seg["start"], ",")
        end = timestamp(seg["end"], ",")
        blocks.append(f"{i}\n{start} --> {end}\n{seg['text'].strip()}\n")
    return "\n".join(blocks)


def to_vtt(result: Mapping) -> str:
    lines = ["WEBVTT", ""]
    for seg in result.get("segments") or []:
        lines.append(f"{timestamp(seg['start'])} --> {timestamp(seg['end'])}")
        lines.append(seg["text"].strip())
        lines.append("")
    return "\n".join(lines)


def to_json(result: Mapping) -> str:
    return dumps(result) + "\n"


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text so that the file either has all of it or does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
