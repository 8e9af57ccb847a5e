"""manage.py ensure_admin: say where the admin is and, when nobody can log in yet, how to create
the first admin user — or, in an interactive terminal, offer to create it now."""
import sys

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print how to reach the admin; offer to create the first superuser when there is none."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="the admin's address")
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help="never ask, only print")

    def handle(self, url: str, interactive: bool, **_):
        users = get_user_model().objects.filter(is_superuser=True, is_active=True)
        if users.exists():
            names = ", ".join(users.values_list("username", flat=True)[:3])
            self.stdout.write(f"Admin: {url} (superuser: {names})")
            return
        command = f"{sys.executable} manage.py createsuperuser"
        if not (interactive and sys.stdin.isatty()):
            self.stdout.write(f"No admin user yet. Create one with: {command}\n"
                              f"  (or non-interactively: DJANGO_SUPERUSER_USERNAME=… DJANGO_SUPERUSER_PASSWORD=…"
                              f" DJANGO_SUPERUSER_EMAIL=… {command} --noinput), then open {url}")
            return
        answer = input("No admin user yet. Create one now for the admin site? [y/N] ").strip().lower()
        if answer in {"y", "yes", "д", "да"}:
            call_command("createsuperuser")
            self.stdout.write(f"Admin: {url}")
        else:
            self.stdout.write(f"Later: {command}, then open {url}")
