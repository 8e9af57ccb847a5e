"""A live session's files under MEDIA_ROOT/live/<id>/: the web process appends the audio as it
arrives and, to end the session, writes the end request; the live worker appends the messages
the web process passes on. A shared MEDIA_ROOT is what the scaled-out mode already rests on, so a
session needs no broker between the web process that holds its socket and the worker decoding it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from django.conf import settings

from .. import events

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2  # PCM s16le, mono


class SessionFiles:
    def __init__(self, session_id) -> None:
        self.dir = Path(settings.MEDIA_ROOT) / "live" / str(session_id)
        self.audio = self.dir / "audio.pcm"
        self.messages = self.dir / "messages.jsonl"
        self.end = self.dir / "end.json"

    def create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.audio.touch()
        self.messages.touch()

    def append_audio(self, data: bytes) -> None:
        with open(self.audio, "ab") as fh:
            fh.write(data)

    def read_audio(self, offset: int) -> bytes:
        """The whole samples written after `offset` (bytes)."""
        try:
            with open(self.audio, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return b""
        return data[:len(data) - len(data) % BYTES_PER_SAMPLE]

    def audio_seconds(self) -> float:
        try:
            return self.audio.stat().st_size / (SAMPLE_RATE * BYTES_PER_SAMPLE)
        except FileNotFoundError:
            return 0.0

    def request_end(self, reason: str, code: int, gone: bool = False) -> None:
        """Ask the worker to end the session (the first request wins); `gone`: no client is left
        to read the end, so the worker removes these files itself."""
        if self.end.exists():
            return
        tmp = self.end.with_suffix(".tmp")
        tmp.write_text(json.dumps({"reason": reason, "code": code, "gone": gone}))
        os.replace(tmp, self.end)

    def end_request(self) -> dict | None:
        try:
            return json.loads(self.end.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def tell(self, messages: list[dict]) -> None:
        events.append_lines(self.messages, messages)

    def read_messages(self, offset: int) -> tuple[list[dict], int]:
        return events.read_lines(self.messages, offset)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
