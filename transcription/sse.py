"""Server-sent events of a job: its progress, each segment as the worker decodes it (events.py),
and its final state. Two renderings: the service's own (`GET /job/{id}/events`) and OpenAI's
transcript events (`stream=true` on /v1/audio/transcriptions).

The web process watches the job's row and its event log a few times a second; it never waits on
the worker any other way. Under WSGI (runserver, the test server) the stream is a plain iterator
and holds a thread, like a synchronous POST /transcribe; under ASGI it is an async iterator and
holds none."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Callable, Iterator

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

from . import events, formats
from .models import Job
from .schemas import JobOut

FINAL = (Job.Status.DONE, Job.Status.FAILED, Job.Status.CANCELLED)
KEEPALIVE_SECONDS = 15.0  # a comment line this often: proxies keep the connection, dead clients show


def job_state(job: Job) -> dict:
    """The job as GET /job/{id} shows it."""
    return formats.jsonable(JobOut.from_orm(job).model_dump(mode="json", by_alias=False))


class JobWatch:
    """What a job has to tell since the last look."""

    def __init__(self, job_id) -> None:
        self.job_id = job_id
        self.offset = 0
        self.told = 0  # segments passed on
        self.last: tuple | None = None
        self.quiet_since = time.monotonic()

    def look(self) -> tuple[list[tuple[str, dict]], bool]:
        """(event name, data) pairs, and whether the stream is over."""
        job = Job.objects.select_related("upload").filter(pk=self.job_id).first()
        if job is None:
            return [("deleted", {"job_id": str(self.job_id), "detail": "the job was deleted"})], True
        out: list[tuple[str, dict]] = []
        found, self.offset = events.read(self.job_id, self.offset)
        for event in found:
            if event.get("type") == "segment" and event.get("n", 0) >= self.told:
                self.told = event["n"] + 1
                out.append(("segment", {k: event[k] for k in ("n", "start", "end", "text")}))
            elif event.get("type") == "decoded_to":
                out.append(("decoded_to", {"seconds": event["seconds"]}))
        if job.status in FINAL:
            return out + [(job.status, job_state(job))], True
        now = (job.status, round(job.progress, 1))
        if now != self.last:
            self.last = now
            out.insert(0, ("progress", job_state(job)))
        return out, False


def _step(watch: JobWatch, render: Callable[[str, dict], list[str]]) -> tuple[list[bytes], bool]:
    """One look at the job, rendered; a comment line when nothing was said for a while."""
    found, over = watch.look()
    pieces = [piece.encode() for name, data in found for piece in render(name, data)]
    now = time.monotonic()
    if pieces:
        watch.quiet_since = now
    elif now - watch.quiet_since > KEEPALIVE_SECONDS:
        watch.quiet_since = now
        pieces = [b": keep-alive\n\n"]
    return pieces, over


def _sync_stream(watch: JobWatch, render) -> Iterator[bytes]:
    while True:
        pieces, over = _step(watch, render)
        yield from pieces
        if over:
            return
        time.sleep(settings.SSE_POLL_SECONDS)


async def _async_stream(watch: JobWatch, render):
    step = database_sync_to_async(_step, thread_sensitive=False)  # a pool thread, its connection kept healthy
    while True:
        pieces, over = await step(watch, render)
        for piece in pieces:
            yield piece
        if over:
            return
        await asyncio.sleep(settings.SSE_POLL_SECONDS)


def response(request: HttpRequest, job: Job, render: Callable[[str, dict], list[str]]) -> StreamingHttpResponse:
    """A text/event-stream of the job, rendered by `render(name, data) -> frames`."""
    watch = JobWatch(job.id)
    stream = _async_stream(watch, render) if isinstance(request, ASGIRequest) else _sync_stream(watch, render)
    answer = StreamingHttpResponse(stream, content_type="text/event-stream; charset=utf-8")
    answer["Cache-Control"] = "no-cache"
    answer["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes
    return answer


def _data(payload: dict) -> str:
    return "data: " + json.dumps(payload, ensure_ascii=False, allow_nan=False) + "\n\n"


def service_events(name: str, data: dict) -> list[str]:
    """`event: progress|segment|done|failed|cancelled|deleted` with the data as JSON."""
    if name == "decoded_to":
        return []  # the worker's bookkeeping: segments carry their own times
    return [f"event: {name}\n" + _data(data)]


class OpenAIEvents:
    """OpenAI's transcript stream: `transcript.text.delta` for each segment, in time order, as
    soon as it and everything before it are decoded, then `transcript.text.done` with the final
    text, or an error object if the job failed."""

    def __init__(self) -> None:
        self.sent = 0
        self.pending: list[dict] = []  # decoded, but audio before them is not yet

    def _deltas(self, decoded_to: float | None) -> list[str]:
        ready, self.pending = events.in_order(self.pending, decoded_to)
        out = []
        for segment in ready:
            delta = ("" if self.sent == 0 else " ") + segment["text"]
            self.sent += 1
            out.append(_data({"type": "transcript.text.delta", "delta": delta, "logprobs": None}))
        return out

    def __call__(self, name: str, data: dict) -> list[str]:
        if name == "segment":
            self.pending.append(data)
            return []
        if name == "decoded_to":
            return self._deltas(data["seconds"])
        if name == Job.Status.DONE:
            result = data.get("result") or {}
            return self._deltas(None) + [_data({
                "type": "transcript.text.done", "text": result.get("text", ""), "logprobs": None,
                "usage": {"type": "duration", "seconds": result.get("duration") or 0}})]
        if name in (Job.Status.FAILED, Job.Status.CANCELLED, "deleted"):
            message = data.get("error") or data.get("detail") or f"the job was {name}"
            return [_data({"error": {"message": message, "type": "server_error" if name == Job.Status.FAILED
                                     else "invalid_request_error", "param": None, "code": name}})]
        return []
