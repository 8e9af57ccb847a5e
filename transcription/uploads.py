"""Receiving files: allowed extensions, safe stored names, and an upload handler that streams to
disk, hashes as it goes and stops reading past MAX_UPLOAD_BYTES."""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.core.handlers.wsgi import LimitedStream
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

# The specification's list, plus .opus (Ogg Opus voice notes are usually named so).
ALLOWED_EXTENSIONS = (".wav", ".mp3", ".m4a", ".flac", ".aac", ".ogg", ".opus", ".wma", ".webm", ".mp4")


class UploadRejected(Exception):
    """An upload refused while streaming; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def extension(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def check_extension(name: str, field: str = "file") -> None:
    """Refuse a file name whose extension is not an allowed audio/video one, naming the file."""
    if extension(name) not in ALLOWED_EXTENSIONS:
        shown = extension(name) or "none"
        raise UploadRejected(
            415, f"{shown_name(name)}: file extension {shown!r} is not allowed; allowed:"
            f" {', '.join(ALLOWED_EXTENSIONS)}", field)


def shown_name(name: str, limit: int = 80) -> str:
    """A client's file name as a message quotes it: its last path part, shortened in the middle."""
    name = PureWindowsPath(PurePosixPath(name or "").name).name or "(no name)"
    return name if len(name) <= limit else f"{name[:limit // 2 - 1]}…{name[-(limit // 2):]}"


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def too_large(field: str = "file") -> UploadRejected:
    return UploadRejected(413, f"file is larger than the {human_size(settings.MAX_UPLOAD_BYTES)} limit", field)


def safe_name(name: str, max_length: int = 100) -> str:
    """A file name safe to store: no directories, no control or shell-special characters."""
    name = PureWindowsPath(PurePosixPath(name or "").name).name  # drop / and \ paths alike
    name = unicodedata.normalize("NFKC", name)
    name = re.sub(r"[^\w.\-]+", "_", name, flags=re.UNICODE).strip("._")
    if not name:
        return "upload"
    stem, dot, ext = name.rpartition(".")
    if dot and len(ext) <= 10:
        return stem[: max_length - len(ext) - 1].rstrip("._") + "." + ext.lower() if stem else "upload." + ext.lower()
    return name[:max_length]


# After refusing an upload, read at most this much more of the body, so that a client which only
# reads the answer once it has sent everything still gets it; past that the server stops reading.
LINGER_BYTES = 8 * 1024 * 1024


def stop_reading(request) -> None:
    """Keep the server from reading the rest of a refused request body.

    Django's runserver (and the test server) drain an unread body when the response is done with
    one read() of everything left: a refused 6 GB upload would be read whole, into RAM. Shortening
    its stream's limit makes it read at most LINGER_BYTES more; the rest is never read (the
    connection is not reused for another request: the answer says Connection: close)."""
    stream = request.META.get("wsgi.input")
    if isinstance(stream, LimitedStream):  # other servers (gunicorn) read in bounded chunks
        stream.limit = min(stream.limit, getattr(stream, "_pos", 0) + LINGER_BYTES)


def discard_partial_uploads(request) -> None:
    """Delete the temp file of an upload that a parse error interrupted mid-file.

    Django closes completed files when parsing fails, not the one a handler is still writing
    (e.g. a base64 part that stops decoding): it would stay in FILE_UPLOAD_TEMP_DIR until the
    garbage collector happens to reach it. Call this where MultiPartParserError is answered."""
    for handler in getattr(request, "_upload_handlers", None) or ():
        partial = getattr(handler, "file", None)
        if partial is not None and not partial.closed:
            partial.close()  # a TemporaryUploadedFile deletes itself on close


# Form fields that take files; a file sent in any other field (e.g. `language`) is refused rather
# than silently dropped (django-ninja would then use the option's default). `audio_file`: POST
# /detect-language's, under whisper-asr-webservice's name.
FILE_FIELDS = frozenset({"file", "files", "audio_file"})


class CappedHashingUploadHandler(TemporaryFileUploadHandler):
    """Streams each file to a temp file, computing its SHA-256 and refusing it past the cap."""

    def __init__(self, request=None) -> None:
        super().__init__(request)
        meta = getattr(request, "META", {})
        if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and not meta.get("CONTENT_LENGTH"):
            # Django reads no body without a Content-Length: every field would look missing.
            request.upload_rejection = UploadRejected(
                411, "send the file with a Content-Length header; chunked uploads are not supported")

    def _refuse(self, rejection: UploadRejected) -> None:
        self.request.upload_rejection = rejection
        stop_reading(self.request)

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # A declared length far over the cap is refused before a byte of the body is read.
        if content_length and content_length > settings.MAX_UPLOAD_BYTES + 1024 * 1024:
            self._refuse(too_large())
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def new_file(self, field_name, file_name, *args, **kwargs):
        try:
            if field_name not in FILE_FIELDS:
                raise UploadRejected(422, f"{field_name}: expected a value, not a file ({file_name!r});"
                                          f" files go in {' or '.join(sorted(FILE_FIELDS))}")
            check_extension(file_name, field_name)
        except UploadRejected as exc:
            self._refuse(exc)
            raise StopUpload(connection_reset=True) from None
        super().new_file(field_name, file_name, *args, **kwargs)
        self._sha = hashlib.sha256()
        self._size = 0

    def receive_data_chunk(self, raw_data, start):
        self._size += len(raw_data)
        if self._size > settings.MAX_UPLOAD_BYTES:
            self.file.close()  # a TemporaryUploadedFile deletes itself on close
            self._refuse(too_large())
            raise StopUpload(connection_reset=True)
        self._sha.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self._sha.hexdigest()
        return uploaded


class UploadCap:
    """ASGI: refuse a request body over MAX_UPLOAD_BYTES (and some room for the form) before Django
    reads it. Django's ASGI handler spools the whole body to disk before any view or upload handler
    runs, so without this an oversized upload would be written out in full first. A declared
    Content-Length is refused at once; a chunked body once it passes the cap."""

    FORM_ROOM = 1024 * 1024  # the other fields of a multipart form

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = settings.MAX_UPLOAD_BYTES + self.FORM_ROOM
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return await self._refuse(scope, send)
        seen = 0
        over = False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    over = True
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        started = False

        async def watched_send(message):
            nonlocal started
            if over and not started:
                return  # the refusal below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched_send)
        if over and not started:
            await self._refuse(scope, send)

    @staticmethod
    async def _refuse(scope, send) -> None:
        from . import metrics

        metrics.upload_refused(413)
        message = str(too_large())
        if scope.get("path", "").startswith("/v1/"):
            body = {"error": {"message": message, "type": "invalid_request_error", "param": "file",
                              "code": "file_too_large"}}
        else:
            body = {"detail": message, "field": "file"}
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
