"""manage.py run_live: the live sessions' consumer (its own Huey queue), one session per thread,
announced in the Worker table. Ctrl-C or SIGTERM ends every running session at once: each
confirms what it heard, keeps its recording as a job and tells its client (close code 1012)
before the process exits."""
from django.conf import settings
from django.core.management.base import BaseCommand
from huey.consumer import Consumer

from transcription import services
from transcription.live import session
from transcription.live.queue import LIVE_HUEY


class LiveConsumer(Consumer):
    def _handle_signal(self, signum, frame):
        session.STOPPING.set()  # sessions end within a poll; the graceful join then waits for them
        super()._handle_signal(signum, frame)


class Command(BaseCommand):
    help = "Run the live transcription consumer (sessions of /live and /v1/live); Ctrl-C stops it cleanly."

    def add_arguments(self, parser):
        parser.add_argument("--sessions", type=int, default=None,
                            help="sessions decoded at once by this worker (default LIVE_MAX_SESSIONS)")

    def handle(self, sessions=None, **_):
        places = max(1, sessions or settings.LIVE_MAX_SESSIONS or 1)
        consumer = LiveConsumer(LIVE_HUEY, workers=places, worker_type="thread", initial_delay=0.05,
                                backoff=1.15, max_delay=0.25, check_worker_health=True)
        queue = f"{type(LIVE_HUEY).__name__}:{LIVE_HUEY.name}"
        with services.WorkerPresence(threads=places, queue=queue, every_beat=services.release_idle_models) as me:
            self.stdout.write(f"live worker {me.name}: {places} session{'s' if places > 1 else ''} at once")
            self.stdout.flush()
            consumer.run()
        self.stdout.write(f"live worker {me.name} stopped")
