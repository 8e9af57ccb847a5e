"""Make a personal API token for a user and print it (the only time it is shown)."""
from __future__ import annotations

from datetime import datetime, time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from transcription import services
from transcription.models import ApiToken


def _date(value: str) -> datetime:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise CommandError(f"--expires {value!r}: give a date as YYYY-MM-DD, or 'never'") from None
    return timezone.make_aware(datetime.combine(day, time(23, 59, 59)))


class Command(BaseCommand):
    help = "Create a personal API token for USER (acting as that user: their jobs only) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("user", help="the username")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. 'laptop script'")
        parser.add_argument("--expires", default="never",
                            help="the last day it works, YYYY-MM-DD, or 'never' (default)")
        parser.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.WRITE,
                            help="read: status, results and downloads; write (default): also send files and cancel")

    def handle(self, user, name, expires, scope, **_):
        try:
            owner = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {user!r}: create one first (python manage.py createsuperuser,"
                               " or in the admin)") from None
        if not owner.is_active:
            raise CommandError(f"user {user!r} is deactivated")
        expires_at = None if expires.strip().lower() == "never" else _date(expires)
        try:
            token, key = services.create_token(owner, name, scope, expires_at=expires_at)
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        until = f"until {token.expires_at:%Y-%m-%d}" if token.expires_at else "with no expiry"
        self.stderr.write(f"Token {token.name!r} for {owner.get_username()}, scope {scope}, {until}."
                          " It is shown only now; store it somewhere safe:")
        self.stdout.write(key)
