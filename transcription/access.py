"""Who is asking, and which jobs they may see and touch.

A request acts as an `Actor`: a user (logged in, or through a personal API token), a shared
service token (API_TOKENS: the service itself, for trusted automation), or, on an open service
(AUTH_REQUIRED unset and no API_TOKENS), anyone. Every read of jobs, batches and live sessions goes
through `Actor.visible`: users see their own; staff with the `view_all_jobs` permission and service
tokens see all; anonymous callers see the anonymous jobs. Another's job is not found, never
forbidden, so nobody learns that it exists. Installing, removing and preloading models is for staff
with the `manage_models` permission and service tokens (`Actor.manages_models`)."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiToken

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SEE_ALL = "transcription.view_all_jobs"
MANAGE_MODELS = "transcription.manage_models"


class Refused(Exception):
    """A credential that does not let the request in: 401 (who are you?) or 403 (not with this token)."""

    def __init__(self, message: str, status: int = 401, unknown: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.unknown = message, status, unknown


@dataclass(frozen=True)
class Actor:
    user: Any = None  # an active user, when one is behind the request
    token: ApiToken | None = None  # the personal token it came with
    service_key: str = ""  # a hash of the service token it came with (API_TOKENS)

    @property
    def service(self) -> bool:
        return bool(self.service_key)

    @property
    def owner(self):
        """Who owns what this request creates (None: anonymous, or the service itself)."""
        return self.user

    @property
    def sees_all(self) -> bool:
        return self.service or (self.user is not None and self.user.has_perm(SEE_ALL))

    @property
    def can_write(self) -> bool:
        return self.token is None or self.token.can_write

    @property
    def key(self) -> str:
        """Who per-client limits count by (rate, live sessions); None-safe for the anonymous."""
        if self.token is not None:
            return f"token:{self.token.pk}"
        if self.user is not None:
            return f"user:{self.user.pk}"
        if self.service:
            return f"service:{self.service_key}"
        return ""

    def visible(self, rows: QuerySet, field: str = "owner") -> QuerySet:
        if self.sees_all:
            return rows
        if self.user is not None:
            return rows.filter(**{field: self.user})
        return rows.filter(**{f"{field}__isnull": True})

    @property
    def manages_models(self) -> bool:
        """Installing, removing and preloading models changes the server for everyone: staff with
        the manage_models permission (superusers have it) and service tokens only."""
        return self.service or (self.user is not None and self.user.is_staff and self.user.has_perm(MANAGE_MODELS))

    def check_manage_models(self) -> None:
        if not self.manages_models:
            raise Refused("managing models needs a staff account with the permission \"Can install, remove and"
                          " preload Whisper models\" (transcription.manage_models), or a service token", 403)

    def check_write(self) -> None:
        if not self.can_write:
            raise Refused("this token may only read (scope 'read'): use a read + write token to create,"
                          " cancel or change jobs", 403)


ANONYMOUS = Actor()


def auth_required() -> bool:
    return settings.AUTH_REQUIRED or bool(settings.API_TOKENS)


def from_bearer(key: str) -> Actor:
    """The actor a bearer token stands for, or Refused saying why. An unknown token and a malformed
    one get the same answer; only the holder of a real token learns it expired or was revoked."""
    key = key.strip()
    for known in settings.API_TOKENS:
        if hmac.compare_digest(key.encode(), known.encode()):
            return Actor(service_key=hashlib.sha256(known.encode()).hexdigest()[:16])
    token = ApiToken.find(key)
    if token is None:
        raise Refused("invalid API token: send 'Authorization: Bearer <token>' with a token from your"
                      " account page (/account/tokens) or the administrator", unknown=True)
    if token.state == "revoked":
        raise Refused(f"this API token ({token.prefix}…) was revoked; create a new one")
    if token.state == "expired":
        raise Refused(f"this API token ({token.prefix}…) expired on {token.expires_at:%Y-%m-%d %H:%M} UTC;"
                      " create a new one")
    if not token.user.is_active:
        raise Refused(f"this API token ({token.prefix}…) belongs to a deactivated user")
    token.touch()
    return Actor(user=token.user, token=token)


def bearer_actor(key: str, method: str) -> Actor | None:
    """The actor of a request with this bearer token, refused if it may not do `method`. On an open
    service an unknown token counts as none (OpenAI's clients always send one): None."""
    try:
        actor = from_bearer(key)
    except Refused as exc:
        if exc.unknown and not auth_required():
            return None
        raise
    if method not in SAFE_METHODS:
        actor.check_write()
    return actor


def from_user(user) -> Actor | None:
    if user is not None and getattr(user, "is_authenticated", False) and user.is_active:
        return Actor(user=user)
    return None


def bearer_key(request: HttpRequest) -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def of_page(request: HttpRequest) -> Actor | None:
    """The actor of a page request: a bearer token (scripts fetching audio or a page), the logged-in
    user, or anyone on an open service; None: a login is needed."""
    key = bearer_key(request)
    if key is not None:
        actor = bearer_actor(key, request.method)
        if actor is not None:
            return actor
    return from_user(getattr(request, "user", None)) or (None if auth_required() else ANONYMOUS)


def of_request(request: HttpRequest) -> Actor:
    """The actor the API's or the page's authentication found (set on the request by it)."""
    return getattr(request, "actor", None) or ANONYMOUS
