"""Opening a live session (web process): the options checked as a job's are, the caller allowed,
the limits kept, the session recorded and handed to the live queue."""
from __future__ import annotations

import pydantic
from django.conf import settings
from django.db import transaction

from .. import access
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


def authorize(token: str | None, user) -> "access.Actor":
    """The actor (transcription.access) opening a session: a token's, the logged-in user's (the
    page), or anyone's on an open service; Refused (4401) saying why otherwise."""
    try:
        actor = access.bearer_actor(token, "POST") if token else None
    except access.Refused as exc:
        raise Refused(codes.UNAUTHORIZED, exc.message) from None
    actor = actor or access.from_user(user) or (None if access.auth_required() else access.ANONYMOUS)
    if actor is None:
        raise Refused(codes.UNAUTHORIZED, "this server needs a login or an API token: send Authorization: Bearer"
                                          " <token> (or ?token=)")
    return actor


def client_key(actor, address: str) -> str:
    """Who the per-client limit counts by: the token or user, else the address."""
    return actor.key or f"addr:{address}"


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


def open_session(query: dict[str, str], actor, address: str) -> LiveSession:
    from ..services import intake
    from .queue import run_session

    options = options_from(query)
    client = client_key(actor, address)
    try:
        chosen = intake.plan(options, actor.owner)
        intake.check_quota(actor.owner, jobs=1)
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
                                             owner=actor.owner,
                                             options=options.model_dump(mode="json", exclude_defaults=True))
        SessionFiles(session.id).create()
        transaction.on_commit(lambda: run_session(str(session.id)))
    return session
