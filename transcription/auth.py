"""Optional bearer tokens: with API_TOKENS set, API calls need `Authorization: Bearer <token>`
(or a logged-in Django session, for the web UI); unset, the API stays open for local use."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth


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
