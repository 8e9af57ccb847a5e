"""Opening a live session (web process): the options checked as a job's are, the caller allowed,
the limits kept, the session recorded and handed to the live queue."""
from __future__ import annotations

import hashlib
import hmac

import pydantic
from django.conf import settings
from django.db import transaction

from ..models import LiveSession
from ..schemas import TranscribeOptions
from ..services.base import ServiceError
from ..services.recovery import live_unavailable
from . import session as codes
from .files import SessionFiles

# What a session takes from the query string; the job it becomes gets the same.
PARAMETERS = ("language", "model", "task", "engine", "initial_prompt", "hotwords", "diarize")


class Refused(Exception):
    """A session that cannot open: the close code and a reason for a person."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def client_key(token: str | None, user, address: str) -> str:
    """Who the per-client limit counts by: the token, else the logged-in user, else the address."""
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return f"addr:{address}"


def authorize(token: str | None, user) -> None:
    """With API_TOKENS set, a session needs one of them or a logged-in user (the page)."""
    if not settings.API_TOKENS:
        return
    if user is not None and getattr(user, "is_authenticated", False):
        return
    if token and any(hmac.compare_digest(token.encode(), known.encode()) for known in settings.API_TOKENS):
        return
    raise Refused(codes.UNAUTHORIZED, "an API token is needed: send Authorization: Bearer <token> (or ?token=)")


def options_from(query: dict[str, str]) -> TranscribeOptions:
    unknown = sorted(set(query) - set(PARAMETERS) - {"token"})
    if unknown:
        raise Refused(codes.BAD_REQUEST,
                      f"unknown parameter {unknown[0]!r}; a live session takes: {', '.join(PARAMETERS)}")
    try:
        return TranscribeOptions(**{k: v for k, v in query.items() if k in PARAMETERS})
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error.get("loc", ())) or "options"
        message = error.get("msg", "invalid").removeprefix("Value error, ")
        raise Refused(codes.BAD_REQUEST, f"{field}: {message}") from None


def open_session(query: dict[str, str], client: str) -> LiveSession:
    from ..services import intake
    from .queue import run_session

    options = options_from(query)
    try:
        chosen = intake.plan(options)
    except ServiceError as exc:
        raise Refused(codes.BAD_REQUEST, f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
    unavailable = live_unavailable()
    if unavailable:
        raise Refused(codes.TRY_LATER, unavailable)
    with transaction.atomic():
        active = LiveSession.objects.active()
        if active.count() >= settings.LIVE_MAX_SESSIONS:
            raise Refused(codes.TRY_LATER, f"the server is running its limit of {settings.LIVE_MAX_SESSIONS} live"
                                           " sessions; try again when one ends")
        if active.filter(client=client).count() >= settings.LIVE_MAX_SESSIONS_PER_CLIENT:
            n = settings.LIVE_MAX_SESSIONS_PER_CLIENT
            raise Refused(codes.POLICY, f"you already have {n} live session{'s' if n > 1 else ''} open, the limit"
                                        " per client; end it first")
        session = LiveSession.objects.create(client=client[:200], model=chosen.model, engine=chosen.engine,
                                             options=options.model_dump(mode="json", exclude_defaults=True))
        SessionFiles(session.id).create()
        transaction.on_commit(lambda: run_session(str(session.id)))
    return session
