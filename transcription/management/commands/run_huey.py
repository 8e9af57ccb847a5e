"""manage.py run_huey: Huey's consumer, announced in the Worker table while it runs, and stopped
so that no job is left `running`: Ctrl-C (SIGINT) lets running jobs finish for up to
HUEY_SHUTDOWN_TIMEOUT, SIGTERM (or a second Ctrl-C) does not wait; either way a job still running
gives itself back to the queue at its next checkpoint, its attempt refunded, before the process
exits with status 0."""
import signal

from django.conf import settings
from huey.contrib.djhuey import HUEY
from huey.contrib.djhuey.management.commands.run_huey import Command as HueyCommand

from transcription import services

# A job reaches its next checkpoint within one window of audio (seconds on CPU with base, more with
# large models); past this the process exits anyway and the reaper requeues what is left.
HAND_BACK_SECONDS = 120


class Command(HueyCommand):
    help = "Run the queue consumer (Huey), announced to /health and the admin; Ctrl-C stops it cleanly."

    def handle(self, *args, **options):
        threads = options.get("workers") or settings.HUEY.get("consumer", {}).get("workers", 1)
        queue = f"{type(HUEY).__name__}:{HUEY.name}"
        with services.WorkerPresence(threads=int(threads), queue=queue,
                                     every_beat=services.release_idle_models) as presence:
            try:
                super().handle(*args, **options)
            finally:
                # Huey is done; another Ctrl-C must not cut the hand-back short.
                for signum in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_IGN)
                handed_back = services.stop_running_jobs(HAND_BACK_SECONDS)
        jobs = "no job was running" if not handed_back else (
            f"{handed_back} running job{'s' if handed_back > 1 else ''} handed back to the queue")
        self.stdout.write(f"worker {presence.name} stopped; {jobs}")
