"""Result writers (txt, srt, vtt, json) and the JSON sanitiser every result passes through."""
from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .result import speaker_names


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


def _cue_time(seconds: float, srt: bool) -> str:
    """Whisper's cue times: srt always has hours and a comma; vtt has hours only when needed."""
    return timestamp(seconds, "," if srt else ".", always_hours=srt)


def _cue_words(segments: list[Mapping], options: SubtitleOptions) -> Iterator[list[dict]]:
    """Words grouped into cues, each word's text carrying its line breaks, as OpenAI Whisper's
    SubtitlesWriter groups them (whisper/utils.py, MIT): without both a width and a line count,
    each segment is its own cue; with them, lines fill up to the width, cues up to the count, and
    a pause over 3 s starts a new cue. Kept here so that the web process imports no inference
    library to write subtitles (tests compare it with mlx-whisper's copy)."""
    preserve_segments = options.max_line_count is None or options.max_line_width is None
    max_width = options.max_line_width or 1000
    per_line = options.max_words_per_line or 1000
    line_len, line_count = 0, 1
    cue: list[dict] = []
    last = next((w["start"] for s in segments for w in s["words"]), segments[0]["start"])
    for segment in segments:
        words = segment["words"]
        for chunk in range(0, len(words), per_line):
            for i, original in enumerate(words[chunk:chunk + per_line]):
                word = dict(original)
                if cue and word.get("speaker") != cue[-1].get("speaker"):  # a new voice: a new cue
                    yield cue
                    cue, line_len, line_count = [], 0, 1
                long_pause = not preserve_segments and word["start"] - last > 3.0
                has_room = line_len + len(word["word"]) <= max_width
                segment_break = i == 0 and cue and preserve_segments
                if line_len > 0 and has_room and not long_pause and not segment_break:
                    line_len += len(word["word"])  # the line goes on
                else:
                    word["word"] = word["word"].strip()
                    cue_full = options.max_line_count is not None and (
                        long_pause or line_count >= options.max_line_count)
                    if cue and cue_full or segment_break:
                        yield cue
                        cue, line_count = [], 1
                    elif line_len > 0:
                        line_count += 1
                        word["word"] = "\n" + word["word"]
                    line_len = len(word["word"].strip())
                cue.append(word)
                last = word["start"]
    if cue:
        yield cue


def _voice(names: dict[str, str], speaker: str | None, srt: bool) -> str:
    """The cue's speaker: `Name: ` in SubRip, a WebVTT voice span `<v Name>` in WebVTT."""
    if not speaker:
        return ""
    name = " ".join(names.get(speaker, speaker).split())
    if srt:  # players read SubRip's text as HTML-like tags: a name must not be one
        return f"{name.replace('-->', '->').replace('<', '‹').replace('>', '›')}: "
    return f"<v {name.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}>"


def _cues(result: Mapping, options: SubtitleOptions, srt: bool) -> Iterator[tuple[str, str, str]]:
    """(start, end, text) of each cue: from words when the segments carry them, else one cue
    per segment; with speakers, each cue is one speaker's and says whose."""
    segments = list(result.get("segments") or [])
    names = speaker_names(result)
    if not any(seg.get("words") for seg in segments):
        for seg in segments:
            yield (_cue_time(seg["start"], srt), _cue_time(seg["end"], srt),
                   _voice(names, seg.get("speaker"), srt) + seg["text"].strip().replace("-->", "->"))
        return
    segments = [{**seg, "words": seg.get("words") or []} for seg in segments]
    for cue in _cue_words(segments, options):
        start, end = _cue_time(cue[0]["start"], srt), _cue_time(cue[-1]["end"], srt)
        voice = _voice(names, cue[0].get("speaker"), srt)
        texts = [word["word"] for word in cue]
        if not options.highlight_words:
            yield start, end, voice + "".join(texts)
            continue
        last = start
        for i, word in enumerate(cue):
            word_start, word_end = _cue_time(word["start"], srt), _cue_time(word["end"], srt)
            if last != word_start:
                yield last, word_start, voice + "".join(texts)
            yield word_start, word_end, voice + "".join(
                re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", text) if j == i else text
                for j, text in enumerate(texts))
            last = word_end


def to_txt(result: Mapping, options: SubtitleOptions | None = None) -> str:
    """The text; with speakers, one paragraph per turn: `Name: what they said`."""
    segments = result.get("segments") or []
    if not any(seg.get("speaker") for seg in segments):
        return (result.get("text") or "").strip() + "\n"
    names, turns = speaker_names(result), []
    for seg in segments:
        text = seg["text"].strip()
        if turns and turns[-1][0] == seg.get("speaker"):
            turns[-1][1].append(text)
        elif text:
            turns.append((seg.get("speaker"), [text]))
    return "\n\n".join(f"{names.get(who, who)}: {' '.join(t for t in texts if t)}" for who, texts in turns) + "\n"


def to_srt(result: Mapping, options: SubtitleOptions | None = None) -> str:
    cues = _cues(result, options or SubtitleOptions(), srt=True)
    return "".join(f"{i}\n{start} --> {end}\n{text}\n\n" for i, (start, end, text) in enumerate(cues, 1))


def to_vtt(result: Mapping, options: SubtitleOptions | None = None) -> str:
    cues = _cues(result, options or SubtitleOptions(), srt=False)
    return "WEBVTT\n\n" + "".join(f"{start} --> {end}\n{text}\n\n" for start, end, text in cues)


def to_tsv(result: Mapping, options: SubtitleOptions | None = None) -> str:
    """start and end in whole milliseconds, then the text: Whisper's TSV (with speakers, a fourth
    column names them)."""
    segments = result.get("segments") or []
    names = speaker_names(result) if result.get("speakers") is not None else None
    rows = []
    for seg in segments:
        row = f"{round(1000 * seg['start'])}\t{round(1000 * seg['end'])}\t{seg['text'].strip().replace(chr(9), ' ')}"
        if names is not None:
            row += "\t" + " ".join(names.get(seg.get("speaker"), seg.get("speaker") or "").split())
        rows.append(row)
    return ("start\tend\ttext" + ("\tspeaker" if names is not None else "") + "\n") + "".join(r + "\n" for r in rows)


def to_json(result: Mapping, options: SubtitleOptions | None = None) -> str:
    return dumps(result) + "\n"


@dataclass(frozen=True)
class Format:
    """One way to download a result: what it is called, how it is written, how it is served."""

    name: str
    write: Callable[[Mapping, SubtitleOptions | None], str]
    content_type: str
    label: str  # for people: the pages and the admin show it
    subtitles: bool = False  # takes the cue options (max_line_width, …)

    @property
    def extension(self) -> str:
        return self.name


REGISTRY: dict[str, Format] = {f.name: f for f in (
    Format("txt", to_txt, "text/plain; charset=utf-8", "Text"),
    Format("srt", to_srt, "application/x-subrip; charset=utf-8", "SubRip subtitles", subtitles=True),
    Format("vtt", to_vtt, "text/vtt; charset=utf-8", "WebVTT subtitles", subtitles=True),
    Format("tsv", to_tsv, "text/tab-separated-values; charset=utf-8", "Tab-separated segments"),
    Format("json", to_json, "application/json; charset=utf-8", "JSON (everything)"),
)}
NAMES = tuple(REGISTRY)


def get(name: str) -> Format | None:
    return REGISTRY.get((name or "").strip().lower())


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
