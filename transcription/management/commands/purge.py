"""manage.py purge --older-than 30d [--yes]: remove old uploads, results and their rows."""
import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from transcription import services

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match:
        raise CommandError(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h, 90m, 2w")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = ("Remove uploads whose jobs all ended before the given age, with their result files. "
            "Shows what it would remove unless --yes is given.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, help="e.g. 30d, 12h, 90m, 2w")
        parser.add_argument("--yes", action="store_true", help="really delete (default: dry run)")

    def handle(self, older_than, yes, **_):
        report = services.purge(parse_age(older_than), apply=yes)
        verb = "removed" if yes else "would remove"
        self.stdout.write(
            f"{verb} {report['uploads']} upload(s), {report['jobs']} job(s), {report['live_sessions']} live session(s),"
            f" {report['files']} file(s),"
            f" {report['bytes'] / 1e6:.1f} MB" + ("" if yes else " (dry run; add --yes to delete)")
        )
