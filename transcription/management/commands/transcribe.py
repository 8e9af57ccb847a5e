"""manage.py transcribe FILE... : the same services as the API, from a terminal, with progress bars."""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import pydantic
from django.conf import settings
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from transcription import formats, services
from transcription.models import Job
from webui.templatetags.webui import clock
from transcription.schemas import TranscribeOptions
from transcription.uploads import UploadRejected


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


class Command(BaseCommand):
    help = "Transcribe files through the service's pipeline and write the results next to them."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--model", default=None, help="default: the service's default model")
        parser.add_argument("--engine", default=None, choices=["auto", "mlx", "ctranslate2"])
        parser.add_argument("--language", default=settings.WHISPER_DEFAULT_LANGUAGE,
                            help="code, name or auto (default: WHISPER_DEFAULT_LANGUAGE,"
                                 f" here {settings.WHISPER_DEFAULT_LANGUAGE})")
        parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
        parser.add_argument("--format", default="txt",
                            help=f"comma-separated: {', '.join(formats.NAMES)} (default: txt)")
        lines = parser.add_argument_group("srt/vtt cues (need word timestamps)")
        lines.add_argument("--max-line-width", type=_positive, default=None, help="characters per line")
        lines.add_argument("--max-line-count", type=_positive, default=None, help="lines per cue")
        lines.add_argument("--max-words-per-line", type=_positive, default=None, help="words per cue")
        lines.add_argument("--highlight-words", action="store_true",
                           help="underline each word as it is spoken")
        parser.add_argument("--output-dir", type=Path, default=None,
                            help="default: beside each input file")
        parser.add_argument("--no-word-timestamps", action="store_true")
        decoding = parser.add_argument_group("decoding")
        decoding.add_argument("--batch-size", type=_positive, default=None,
                              help="windows decoded together; 1: sequential (default: the service's)")
        decoding.add_argument("--vad-filter", action="store_true",
                              help="decode only the speech Silero VAD finds (ctranslate2)")
        decoding.add_argument("--hotwords", default=None, help="words or phrases to favour (ctranslate2)")
        who = parser.add_argument_group("speakers")
        who.add_argument("--diarize", action="store_true", help="who spoke when: each turn says whose it is")
        who.add_argument("--num-speakers", type=_positive, default=None, help="exactly this many (default: estimated)")
        who.add_argument("--min-speakers", type=_positive, default=None, help="at least this many")
        who.add_argument("--max-speakers", type=_positive, default=None, help="at most this many")
        parser.add_argument("--queue", action="store_true",
                            help="hand the jobs to the Huey queue (a running consumer does the work)")
        parser.add_argument("--owner", default=None, metavar="USERNAME",
                            help="the user the jobs belong to (their pages and API show them; their quota"
                                 " applies); default: none, as the service's own")

    def handle(self, files, model, engine, language, task, format, output_dir, no_word_timestamps,
               queue, max_line_width, max_line_count, max_words_per_line, highlight_words, batch_size,
               vad_filter, hotwords, diarize, num_speakers, min_speakers, max_speakers, owner=None, **_):
        subtitles = formats.SubtitleOptions(max_line_width, max_line_count, highlight_words,
                                            max_words_per_line)
        wanted = [f.strip().lower() for f in format.split(",") if f.strip()]
        unknown = [f for f in wanted if formats.get(f) is None]
        if unknown or not wanted:
            raise CommandError(f"unknown format {', '.join(unknown) or format!r}; choose from "
                               f"{', '.join(formats.NAMES)}")
        try:
            options = TranscribeOptions(model=model, engine=engine, language=language, task=task,
                                        word_timestamps=not no_word_timestamps, batch_size=batch_size,
                                        vad_filter=vad_filter, hotwords=hotwords, diarize=diarize,
                                        num_speakers=num_speakers, min_speakers=min_speakers,
                                        max_speakers=max_speakers)
        except pydantic.ValidationError as exc:
            raise CommandError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
        self.owner = self._user(owner) if owner else None
        failures = 0
        for path in files:
            try:
                job = self._transcribe(path, options, queue)
            except (services.ServiceError, UploadRejected, OSError) as exc:
                failures += 1
                self.stderr.write(f"{path}: {getattr(exc, 'message', exc)}")
                continue
            if job.status != Job.Status.DONE:
                failures += 1
                self.stderr.write(f"{path}: {job.status}: {job.error}")
                continue
            target_dir = output_dir or path.parent
            target_dir.mkdir(parents=True, exist_ok=True)
            for fmt in wanted:
                body, _, name = services.result_file(job, fmt, subtitles)
                out = target_dir / f"{path.stem}.{fmt}"
                formats.write_atomic(out, body)
                self.stdout.write(f"{path} -> {out}")
        if failures:
            raise CommandError(f"{failures} of {len(files)} file(s) failed")

    @staticmethod
    def _user(username: str):
        from django.contrib.auth import get_user_model

        try:
            return get_user_model().objects.get(username=username, is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no active user {username!r} (create one with: python manage.py createsuperuser,"
                               " or in the admin)") from None

    def _transcribe(self, path: Path, options: TranscribeOptions, queue: bool) -> Job:
        if not path.is_file():
            raise OSError(f"no such file: {path}")
        with open(path, "rb") as fh:
            job = services.create_job(File(fh, name=path.name), options, enqueue=queue, owner=self.owner)
        worker = None
        if not queue:
            worker = threading.Thread(target=services.run_job, args=(str(job.id),), daemon=True)
            worker.start()
        elif not services.workers_available():
            self.stderr.write(f"{path}: {services.NO_WORKER}")
        try:
            self._follow(job, path)
        except KeyboardInterrupt:
            self._interrupted(job, worker)
        if worker is not None:
            worker.join()
        return job

    def _follow(self, job: Job, path: Path) -> None:
        """A bar per file, fed from the job's row; log lines go above it, not through it."""
        with logging_redirect_tqdm(), tqdm(total=100, desc=path.name, file=self.stderr._out,
                                           bar_format="{l_bar}{bar}| {n:.0f} %{postfix}") as bar:
            while True:
                job.refresh_from_db()
                bar.n = job.progress
                bar.set_postfix_str(self._state(job), refresh=False)
                bar.refresh()
                if job.is_final:
                    return
                time.sleep(0.2)

    @staticmethod
    def _state(job: Job) -> str:
        """Elapsed time, then the job's own estimate of what is left (from its measured speed)."""
        if job.status == Job.Status.QUEUED:
            return "queued"
        if job.started_at is None:
            return str(job.status)
        finished = job.finished_at or timezone.now()
        parts = [f"{clock((finished - job.started_at).total_seconds())} elapsed"]
        if job.eta_seconds is not None:
            parts.append(f"about {clock(job.eta_seconds)} left")
        return ", ".join(parts)

    def _interrupted(self, job: Job, worker: threading.Thread | None) -> None:
        """Ctrl-C: a job this command runs itself is cancelled and stopped at its next window (never
        cut off mid-inference); a queued one is left to the worker(s)."""
        if worker is None:
            self.stderr.write(f"interrupted; job {job.id} stays in the queue for the worker")
            raise SystemExit(130)
        try:
            services.cancel(job)
        except services.ServiceError:
            pass  # it ended meanwhile
        self.stderr.write(f"interrupted; stopping job {job.id} at the end of its current window…")
        worker.join()
        self.stderr.write("stopped")
        raise SystemExit(130)
