"""A running job's segments as they are decoded, for the server-sent events of
`GET /job/{id}/events` and `POST /v1/audio/transcriptions` with `stream=true`.

The worker appends one JSON line per segment to MEDIA_ROOT/events/<job id>.jsonl as soon as it is
decoded (batched decoding works on several stretches of a file at once, so they come in any time
order), and a `decoded_to` line saying up to where the audio is decoded without a gap, so a reader
that must print text in order (OpenAI's deltas) knows which segments nothing can come before. Any
web process reads the lines after the offset it has reached. A shared MEDIA_ROOT is what the
scaled-out mode already rests on, so this needs no broker. The file is emptied when an attempt
starts and removed with the job."""
from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings

from .engines import Segment


def log_path(job_id) -> Path:
    return Path(settings.MEDIA_ROOT) / "events" / f"{job_id}.jsonl"


def start(job_id) -> None:
    """An attempt begins: no segment is told yet."""
    path = log_path(job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def append(job_id, events: list[dict]) -> None:
    append_lines(log_path(job_id), events)


def read(job_id, offset: int) -> tuple[list[dict], int]:
    return read_lines(log_path(job_id), offset)


def append_lines(path: Path, events: list[dict]) -> None:
    """Events as JSON lines at the end of `path` (a job's log, a live session's messages)."""
    if not events:
        return
    data = "".join(json.dumps(e, ensure_ascii=False, allow_nan=False) + "\n" for e in events).encode()
    # One write on an O_APPEND descriptor: a reader never sees half of another write's lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines(path: Path, offset: int) -> tuple[list[dict], int]:
    """The whole lines after `offset` and the offset after them; a log emptied since (a job's new
    attempt) reads from its start again."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                offset = 0
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, offset + end


class Teller:
    """The pipeline's side: takes segments as the engine decodes them (in any order, with how far
    the audio is decoded without a gap) and appends them to the log at once. Times are on the
    uploaded file's timeline."""

    def __init__(self, job_id) -> None:
        self.job_id = job_id
        self.told = 0

    def take(self, segments: list[Segment], frontier: float | None) -> None:
        """Segments on the file's timeline; frontier None: everything is decoded."""
        events = []
        for seg in segments:
            if seg.text.strip():
                events.append({"type": "segment", "n": self.told, "start": round(seg.start, 3),
                               "end": round(seg.end, 3), "text": seg.text.strip()})
                self.told += 1
        events.append({"type": "decoded_to", "seconds": None if frontier is None else round(frontier, 3)})
        try:
            append(self.job_id, events)
        except OSError:  # telling is a courtesy: the result is what counts
            pass


def in_order(pending: list[dict], decoded_to: float | None) -> tuple[list[dict], list[dict]]:
    """(segments that can be told now, in time order; those that must wait): a segment can be told
    once the audio before it is all decoded (decoded_to None: everything is)."""
    pending = sorted(pending, key=lambda e: (e["start"], e["end"]))
    ready = [e for e in pending if decoded_to is None or e["start"] < decoded_to]
    return ready, pending[len(ready):]
