"""Files by URL: download one (netguard's checked GET, redirects checked too) into a temporary
upload, capped at MAX_UPLOAD_BYTES and named as its server names it, for intake to take as it
takes any upload."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile

from . import netguard
from .uploads import ALLOWED_EXTENSIONS, UploadRejected, extension, shown_name, too_large

FIELD = "url"
MAX_URL_LENGTH = 2000  # as Upload.source_url keeps it
CHUNK_BYTES = 1024 * 1024

# The extension a Content-Type stands for, when the name has no accepted one; only the service's
# accepted extensions count (.mov and .mkv are listed for the day they are accepted).
_TYPES = {
    "audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/ogg": ".ogg", "audio/opus": ".ogg",
    "audio/mp4": ".m4a", "audio/x-m4a": ".m4a", "audio/aac": ".aac", "audio/webm": ".webm",
    "video/webm": ".webm", "video/mp4": ".mp4", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
}
TYPE_EXTENSIONS = {kind: ext for kind, ext in _TYPES.items() if ext in ALLOWED_EXTENSIONS}


@contextmanager
def downloaded(url: str) -> Iterator[TemporaryUploadedFile]:
    """The file at `url` as an upload in FILE_UPLOAD_TEMP_DIR, removed when the block ends (unless
    intake has moved it into storage by then). UploadRejected, field "url": 422 for an address not
    allowed, a server that does not answer, answers an error or is too slow; 413 for a file over
    MAX_UPLOAD_BYTES; 415 for one neither named nor typed as audio or video."""
    upload = download(url)
    try:
        yield upload
    finally:
        upload.close()  # a TemporaryUploadedFile deletes its file on close; a moved one is left be


def download(url: str) -> TemporaryUploadedFile:
    """Fetch `url` into a temporary upload (see downloaded(), which also removes it); nothing is
    left on disk when it is refused."""
    url = url.strip()
    _check_address(url)
    try:
        with netguard.open_stream(url, settings.URL_FETCH_TIMEOUT_SECONDS, settings.URL_FETCH_MAX_SECONDS) as remote:
            if remote.length is not None and remote.length > settings.MAX_UPLOAD_BYTES:
                raise too_large(FIELD)  # announced: refused before a byte is read
            name, content_type = name_of(remote, url)
            upload = TemporaryUploadedFile(name, content_type, 0, None)
            try:
                _copy(remote, upload)
            except BaseException:
                upload.close()
                raise
            return upload
    except (netguard.AddressRefused, netguard.SendFailed) as exc:
        raise UploadRejected(422, f"url: {exc}", FIELD) from None


def _check_address(url: str) -> None:
    if not url:
        raise UploadRejected(422, "url: give the http:// or https:// address of an audio or video file", FIELD)
    if len(url) > MAX_URL_LENGTH:
        raise UploadRejected(422, f"url: the address is longer than {MAX_URL_LENGTH} characters", FIELD)
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # netguard says what is wrong with it
    if parts.username is not None or parts.password is not None:
        # They would not be sent, and the address is kept and shown with the job.
        raise UploadRejected(422, "url: addresses with a user name or password are not supported", FIELD)


def _copy(remote: netguard.Download, upload: TemporaryUploadedFile) -> None:
    """The body into the upload's file, hashed as it goes, stopped as soon as it passes the cap."""
    digest, size = hashlib.sha256(), 0
    while chunk := remote.read(CHUNK_BYTES):
        size += len(chunk)
        if size > settings.MAX_UPLOAD_BYTES:
            raise too_large(FIELD)
        digest.update(chunk)
        upload.file.write(chunk)
    upload.file.flush()
    upload.file.seek(0)
    upload.size = size
    upload.sha256 = digest.hexdigest()  # as CappedHashingUploadHandler's uploads carry it


def name_of(remote: netguard.Download, url: str) -> tuple[str, str]:
    """The file's name and content type: the name its server gives (Content-Disposition), else the
    last part of the address (where it was found, then the one asked for), with an extension from
    the Content-Type when none of them has an accepted one. UploadRejected(415) when neither the
    names nor the type say audio or video."""
    content_type = (remote.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    found = (disposition_name(remote.headers.get("Content-Disposition") or ""), path_name(remote.url), path_name(url))
    # no control characters (a %00 in an address): databases refuse them, people cannot see them
    names = [clean for name in found if (clean := "".join(ch for ch in name if ch.isprintable()).strip())]
    for name in names:
        if extension(name) in ALLOWED_EXTENSIONS:
            return name, content_type
    ext = TYPE_EXTENSIONS.get(content_type)
    if ext is None:
        named = shown_name(names[0]) if names else "the file"
        raise UploadRejected(
            415, f"url: {remote.host} sent {content_type or 'no Content-Type'} ({named}): neither the name nor"
            f" the type is an accepted audio or video format; accepted: {', '.join(ALLOWED_EXTENSIONS)}", FIELD)
    return (names[0] if names else remote.host) + ext, content_type


def disposition_name(header: str) -> str:
    """The file name a Content-Disposition header gives (RFC 6266): filename* (RFC 5987, any charset
    Python knows) before filename; "" when it gives none."""
    if not header.strip():
        return ""
    message = Message()
    message["Content-Disposition"] = header
    params = message.get_params(header="content-disposition", failobj=[])[1:]  # [0] is the type
    values = [value for key, value in params if key.lower() == "filename"]
    # get_params gives filename* as filename, its value a (charset, language, text) tuple
    for value in sorted(values, key=lambda v: not isinstance(v, tuple)):
        name = collapse_rfc2231_value(value).strip()
        if name:
            return name
    return ""


def path_name(url: str) -> str:
    """The last part of the address's path, percent-decoded ("" for none)."""
    try:
        return unquote(PurePosixPath(urlsplit(url).path).name).strip()
    except ValueError:
        return ""
