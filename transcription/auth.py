"""The API's authentication and per-client rate limit.

A personal token or a shared service token (`Authorization: Bearer …`), else the logged-in
session (the web pages' calls, CSRF-checked), else, on an open service, anyone: each sets
`request.actor` (transcription.access), through which every read and write is scoped.
Optional per-client limit on creating jobs: JOB_RATE_LIMIT (e.g. "30/min"), counted per token,
user or address in Django's cache (Redis when configured, so all web processes share it)."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth
from ninja.throttling import BaseThrottle, SimpleRateThrottle

from . import access


class BearerToken(HttpBearer):
    """A personal API token (stt_…) or a service token; a read-only one only reads."""

    def authenticate(self, request: HttpRequest, token: str):
        actor = access.bearer_actor(token, request.method)  # access.Refused: 401/403 with the reason
        if actor is not None:
            request.actor = actor
        return actor


class LoggedInSession(SessionAuth):
    """A logged-in Django user (the web UI), CSRF-checked; anonymous requests fall through."""

    def __call__(self, request: HttpRequest):
        actor = access.from_user(getattr(request, "user", None))
        if actor is None or not super().__call__(request):
            return None
        request.actor = actor
        return actor


class OpenService:
    """Anyone, when the service is open (AUTH_REQUIRED unset and no API_TOKENS)."""

    def __call__(self, request: HttpRequest):
        if access.auth_required():
            return None
        request.actor = access.ANONYMOUS
        return access.ANONYMOUS


API_AUTH = [BearerToken(), LoggedInSession(), OpenService()]


class _ClientRate(SimpleRateThrottle):
    scope = "jobs"

    def get_cache_key(self, request: HttpRequest) -> str:
        ident = access.of_request(request).key or f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class JobCreationThrottle(BaseThrottle):
    """JOB_RATE_LIMIT requests per period per client on the endpoints that create jobs."""

    def allow_request(self, request: HttpRequest) -> bool:
        rate = settings.JOB_RATE_LIMIT
        if not rate:
            return True
        self._last = _ClientRate(rate)  # one per request: the counter objects keep per-call state
        return self._last.allow_request(request)

    def wait(self):
        last = getattr(self, "_last", None)
        return last.wait() if last is not None else None


JOB_THROTTLE = [JobCreationThrottle()]
