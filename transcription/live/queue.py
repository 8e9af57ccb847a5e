"""The live sessions' queue: a Huey of its own (the jobs' queue name + "-live", in Redis when Redis
is configured, else in a SQLite file beside the jobs' one), consumed by `manage.py run_live`, one
session per consumer thread."""
from __future__ import annotations

from django.conf import settings
from django.db import close_old_connections
from huey import RedisHuey

from ..queue import SqliteHuey


def _make():
    conf = settings.LIVE_QUEUE
    if conf.get("url"):
        return RedisHuey(conf["name"], url=conf["url"])
    return SqliteHuey(conf["name"], filename=conf["filename"])


LIVE_HUEY = _make()


@LIVE_HUEY.task()
def run_session(session_id: str) -> None:
    from .session import run

    close_old_connections()
    try:
        run(session_id)
    finally:
        close_old_connections()
