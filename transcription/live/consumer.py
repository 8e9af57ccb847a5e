"""The live WebSocket (`/v1/live`; the /live page speaks it too), in the web process. It never
decodes: it checks the caller and the limits, appends the audio to the session's file, passes the
live worker's messages on, and closes with a reason code.

Client → server: binary messages of 16-kHz mono PCM, signed 16-bit little-endian; text messages
of JSON: {"type": "stop"} ends the session. Server → client, JSON: session.started, session.ready
(the worker is decoding), partial (the tentative tail, replaced by the next one), final (confirmed,
never changes), error, and ended (the reason, the close code and the job the recording became),
then the close."""
from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qsl, urlsplit

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from . import opening
from . import session as codes
from .files import BYTES_PER_SAMPLE, SAMPLE_RATE, SessionFiles

TICK = 0.05  # seconds between looks at the worker's messages
START_SECONDS = 10.0  # for a live worker to take the session (a free thread takes it within a second)
END_SECONDS = 120.0  # for the worker to confirm the rest and keep the recording, once asked to end


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def short_reason(reason: str, limit: int = 120) -> str:
    """A close frame's reason holds 123 bytes: the reason cut at a word, the whole is in `ended`."""
    data = reason.encode()
    if len(data) <= limit:
        return reason
    cut = data[:limit - 3].decode("utf-8", "ignore").rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def base_url(scope) -> str:
    """This server as the client reached it (for the links in `ended`)."""
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return f"{scheme}://{_header(scope, b'host') or 'localhost'}"


def same_site(scope) -> bool:
    """A browser's Origin must be this server (or one of ALLOWED_HOSTS): another site's page must
    not open sessions with its visitors' cookies. Clients that send no Origin are not browsers."""
    origin = _header(scope, b"origin")
    if not origin:
        return True
    host = urlsplit(origin).netloc
    own = _header(scope, b"host")
    return bool(host) and (host == own or validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS))


class LiveConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.files = None
        self.ending: tuple[str, int] | None = None
        self.ended = False
        self.received = 0
        self.last_audio = time.monotonic()
        if not same_site(self.scope):
            await self.close()  # refused at the handshake (403)
            return
        await self.accept()
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        token = _header(self.scope, b"authorization").removeprefix("Bearer ").strip() or query.get("token")
        user = self.scope.get("user")
        address = (self.scope.get("client") or ("?", 0))[0]
        try:
            actor = await database_sync_to_async(opening.authorize, thread_sensitive=False)(token, user)
            self.session = await database_sync_to_async(opening.open_session, thread_sensitive=False)(
                query, actor, address)
        except opening.Refused as refused:
            await self._refuse(refused.code, refused.reason)
            return
        self.files = SessionFiles(self.session.id)
        self.max_bytes = int(settings.LIVE_MAX_SECONDS * SAMPLE_RATE) * BYTES_PER_SAMPLE
        await self._send({
            "type": "session.started", "session_id": str(self.session.id), "model": self.session.model,
            "engine": self.session.engine, "sample_rate": SAMPLE_RATE, "format": "pcm_s16le",
            "limits": {"max_seconds": settings.LIVE_MAX_SECONDS, "idle_seconds": settings.LIVE_IDLE_SECONDS,
                       "max_message_bytes": settings.LIVE_MAX_FRAME_BYTES},
        })
        self.tail = asyncio.create_task(self._tail())

    async def _send(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message, ensure_ascii=False, allow_nan=False))

    async def _refuse(self, code: int, reason: str) -> None:
        await self._send({"type": "error", "message": reason})
        await self._send({"type": "ended", "reason": reason, "code": code, "job_id": None})
        await self.close(code=code, reason=short_reason(reason))

    async def receive(self, text_data=None, bytes_data=None):
        if self.files is None or self.ending:
            return  # refused, or ending: the rest is not recorded
        if bytes_data is not None:
            await self._audio(bytes_data)
            return
        try:
            message = json.loads(text_data)
            kind = message.get("type") if isinstance(message, dict) else None
        except ValueError:
            kind = None
        if kind == "stop":
            await self._end("stopped by the client", codes.NORMAL)
        else:
            await self._end('text messages must be JSON {"type": "stop"}; audio goes in binary messages',
                            codes.UNSUPPORTED, error=True)

    async def _audio(self, data: bytes) -> None:
        if len(data) > settings.LIVE_MAX_FRAME_BYTES:
            await self._end(f"a message of {len(data)} bytes is over the {settings.LIVE_MAX_FRAME_BYTES}-byte limit;"
                            " send audio in smaller pieces", codes.TOO_BIG, error=True)
            return
        if len(data) % BYTES_PER_SAMPLE:
            await self._end("audio must be 16-bit samples (pcm_s16le): a message had an odd number of bytes",
                            codes.UNSUPPORTED, error=True)
            return
        room = self.max_bytes - self.received
        if data:
            self.files.append_audio(data[:room])  # a local append: the event loop is not held up
            self.received += min(len(data), room)
            self.last_audio = time.monotonic()
        if len(data) >= room:
            minutes = settings.LIVE_MAX_SECONDS / 60
            await self._end(f"the session reached its limit of {minutes:g} minutes of audio", codes.TOO_LONG)

    async def _end(self, reason: str, code: int, error: bool = False) -> None:
        """Stop taking audio and ask the worker to end; `_tail` closes when it has."""
        if self.ending:
            return
        self.ending = (reason, code)
        self.ending_at = time.monotonic()
        if error:
            await self._send({"type": "error", "message": reason})
        self.files.request_end(reason, code)

    async def _tail(self):
        """Pass the worker's messages on; watch the start, the idle limit and the end."""
        offset, started, opened = 0, False, time.monotonic()
        heard = asked = opened  # the worker's last message; the last look at its heartbeat
        while True:
            messages, offset = self.files.read_messages(offset)
            if messages:
                heard = time.monotonic()
            for message in messages:
                if message["type"] == "session.ready":
                    started = True
                if message["type"] == "ended":
                    job, base = message.get("job_id"), base_url(self.scope)
                    message["job_url"] = f"{base}/job/{job}" if job else None
                    message["page_url"] = f"{base}/jobs/{job}/" if job else None
                await self._send(message)
                if message["type"] == "ended":
                    self.ended = True
                    await self.close(code=int(message["code"]), reason=short_reason(message["reason"]))
                    await sync_to_async(self.files.remove, thread_sensitive=False)()
                    return
            now = time.monotonic()
            # No live worker took the session in time, or its worker stopped beating (killed,
            # its machine lost; before it is ready it may be loading a model): the session is
            # ended from here, its recording kept as a job. `ended` then comes as any other.
            silent = settings.LIVE_WORKER_SILENT_SECONDS * (1 if started else 4)
            late = (not started and now - opened > START_SECONDS) or now - heard > silent
            if late and now - asked > 5:
                asked = now
                await database_sync_to_async(codes.rescue, thread_sensitive=False)(
                    self.session.id, START_SECONDS, silent)
            if not self.ending and now - self.last_audio > settings.LIVE_IDLE_SECONDS:
                await self._end(f"no audio for {settings.LIVE_IDLE_SECONDS:g} s", codes.IDLE)
            if self.ending and now - self.ending_at > END_SECONDS:
                await self._refuse(codes.ERROR, "the live worker did not end the session in time")
                return
            await asyncio.sleep(TICK)

    async def disconnect(self, code):
        if self.files is None or self.ended:
            return
        if not self.ending:
            # The recording so far is still kept as a job; nobody is left to tell.
            if code == codes.RESTART:  # the web server is stopping (it closed the socket so)
                self.ending = ("the web server is stopping", codes.RESTART)
            else:
                self.ending = ("the client disconnected", codes.GOING_AWAY if code == codes.GOING_AWAY else codes.LOST)
            self.files.request_end(*self.ending, gone=True)
        tail = getattr(self, "tail", None)
        if tail is not None:
            tail.cancel()
