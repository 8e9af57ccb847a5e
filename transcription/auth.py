"""Who may call the API and how often.

Optional bearer tokens: with API_TOKENS set, API calls need `Authorization: Bearer <token>` (or a
logged-in Django session, for the web UI); unset, the API stays open for local use.
Optional per-client limit on creating jobs: JOB_RATE_LIMIT (e.g. "30/min"), counted per token,
user or address in Django's cache (Redis when configured, so all web processes share it)."""
from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth
from ninja.throttling import BaseThrottle, SimpleRateThrottle


def tokens_required() -> bool:
    return bool(settings.API_TOKENS)


class OptionalBearer(HttpBearer):
    def __call__(self, request: HttpRequest):
        if not tokens_required():
            return "open"
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str):
        for known in settings.API_TOKENS:
            if hmac.compare_digest(token.encode(), known.encode()):
                return token
        return None


class LoggedInSession(SessionAuth):
    """A logged-in Django user (the web UI), CSRF-checked; anonymous requests fall through to 401."""

    def __call__(self, request: HttpRequest):
        if not getattr(request, "user", None) or not request.user.is_authenticated:
            return None
        return super().__call__(request)


API_AUTH = [OptionalBearer(), LoggedInSession()]


class _ClientRate(SimpleRateThrottle):
    scope = "jobs"

    def get_cache_key(self, request: HttpRequest) -> str:
        auth = getattr(request, "auth", None)
        if isinstance(auth, str) and auth != "open":
            ident = "token:" + hashlib.sha256(auth.encode()).hexdigest()
        elif getattr(request, "user", None) is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
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
