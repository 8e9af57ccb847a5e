"""manage.py serve: the web server and one Huey consumer together; Ctrl-C stops both."""
import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server and a Huey consumer in one terminal (for local use)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1, help="Huey worker threads")

    def handle(self, addrport, workers, **_):
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        # A shell's background job starts with SIGINT ignored; children must still obey Ctrl-C.
        default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        children = [
            subprocess.Popen([*manage, "run_huey", "--workers", str(workers)], preexec_fn=default_sigint),
            subprocess.Popen([*manage, "runserver", addrport, "--noreload"], preexec_fn=default_sigint),
        ]
        self.stdout.write(f"web on http://{addrport}/ (API docs at /docs), worker started; Ctrl-C stops both")

        def stop(*_args):
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)

        def interrupt(*_args):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, interrupt)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for child in children:
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
        codes = [child.returncode for child in children]
        if any(code not in (0, -signal.SIGINT, None) for code in codes):
            sys.exit(1)
