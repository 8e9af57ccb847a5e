"""Serving a stored upload to the browser's player with HTTP Range support (206 Partial Content),
which Chromium needs to seek; Django's FileResponse always sends the whole file."""
from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from pathlib import Path

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import http_date, quote_etag

CHUNK = 256 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)

# What browsers expect for the containers the service accepts (mimetypes lacks some of them).
AUDIO_TYPES = {
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".flac": "audio/flac",
    ".aac": "audio/aac", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".wma": "audio/x-ms-wma",
    ".webm": "audio/webm", ".mp4": "video/mp4",
}


def content_type(path: Path) -> str:
    return AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Unsatisfiable(Exception):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range asked for, as (first, last) inclusive; None means "send it all".

    Several ranges, or a header we cannot read, are answered with the whole file, as RFC 9110
    allows; a range wholly past the end raises Unsatisfiable (416)."""
    match = _RANGE.match(header or "")
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # "-500": the last 500 bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise Unsatisfiable()
    if end < start:
        return None
    return start, end


def _read(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        while length > 0:
            block = fh.read(min(CHUNK, length))
            if not block:
                return
            length -= len(block)
            yield block


async def _aread(path: Path, start: int, length: int):
    """_read for ASGI: each block read in a thread. (Django's ASGI handler turns a plain iterator
    into a list first: a whole upload in memory.)"""
    from asgiref.sync import sync_to_async

    blocks = _read(path, start, length)
    take = sync_to_async(lambda: next(blocks, None), thread_sensitive=False)
    while (block := await take()) is not None:
        yield block


def ranged_file_response(request: HttpRequest, path: Path, etag: str, download_name: str | None = None
                         ) -> HttpResponse:
    stat = path.stat()
    size = stat.st_size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": quote_etag(etag),
        "Last-Modified": http_date(stat.st_mtime),
        "Cache-Control": "private, max-age=3600",
    }
    if download_name:
        from urllib.parse import quote

        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(download_name)}"
    if_range = request.headers.get("If-Range")
    wanted = request.headers.get("Range") if not if_range or if_range.strip() == headers["ETag"] else None
    try:
        span = parse_range(wanted, size) if wanted else None
    except Unsatisfiable:
        response = HttpResponse(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        return response
    start, end = span or (0, size - 1)
    length = max(0, end - start + 1)
    from django.core.handlers.asgi import ASGIRequest

    read = _aread if isinstance(request, ASGIRequest) else _read
    body = read(path, start, length) if request.method != "HEAD" else iter(())
    response = StreamingHttpResponse(body, status=206 if span else 200, content_type=content_type(path),
                                     headers=headers)
    response["Content-Length"] = str(length)
    if span:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response
