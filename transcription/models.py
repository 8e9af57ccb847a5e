"""Upload and Job: what was sent, what was asked, and the job's state machine; workers, model tasks, people."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pydantic
from django.conf import settings
from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from .spec import JobSpec

job_ended = Signal()  # sent with job=<Job> once a job is done, failed or cancelled (after commit)


class Upload(models.Model):
    """One file as received: its original name, where it is stored, and what it is."""

    original_name = models.CharField(_("original name"), max_length=255)
    stored_path = models.CharField(_("stored path"), max_length=500, help_text=_("Relative to MEDIA_ROOT."))
    size = models.BigIntegerField(_("size"))
    content_type = models.CharField(_("content type"), max_length=100, blank=True)
    sha256 = models.CharField(_("sha256"), max_length=64, db_index=True)
    duration = models.FloatField(
        _("duration"), null=True, blank=True, help_text=_("Seconds, from FFmpeg's probe.")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+",
                              help_text=_("Who sent it; empty: sent anonymously (an open service)."))
    source_url = models.URLField(_("source URL"), max_length=2000, blank=True,
                                 help_text=_("The address it was fetched from (url=); empty: uploaded."))

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("upload")
        verbose_name_plural = _("uploads")

    def __str__(self) -> str:
        return self.original_name

    @property
    def path(self) -> Path | None:
        """The stored file, if its recorded path lies inside MEDIA_ROOT (else None: never follow a
        path out of it, whatever the row says)."""
        return media_file(self.stored_path)

    @property
    def is_stored(self) -> bool:
        return self.path is not None and self.path.is_file()


def media_file(rel: str) -> Path | None:
    """The file a path relative to MEDIA_ROOT names, if it lies inside MEDIA_ROOT."""
    if not rel:
        return None
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / rel).resolve()
    return path if root in path.parents else None


class Batch(models.Model):
    """Several uploads sent together with one set of options; each file is its own job."""

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    options = models.JSONField(_("options"), default=dict)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    callback_url = models.CharField(_("callback URL"), max_length=1000, blank=True,
                                    help_text=_("Told when every job of the batch has finished."))
    notified_at = models.DateTimeField(_("batch callback queued at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("batch")
        verbose_name_plural = _("batches")

    def __str__(self) -> str:
        return str(self.id)

    def counts(self) -> dict[str, int]:
        """How many of its jobs are in each status (every status present, zeros included)."""
        counts = dict.fromkeys(JobStatus.values, 0)
        for row in self.jobs.values("status").annotate(n=models.Count("id")):
            counts[row["status"]] = row["n"]
        return counts

    @property
    def status(self) -> str:
        """queued (nothing started), running, done (all done), partial (some failed or were
        cancelled) or failed (none done)."""
        counts = self.counts()
        total = sum(counts.values())
        if counts[JobStatus.DONE] == total:
            return "done"
        if counts[JobStatus.QUEUED] == total:
            return "queued"
        if counts[JobStatus.QUEUED] or counts[JobStatus.RUNNING]:
            return "running"
        return "partial" if counts[JobStatus.DONE] else "failed"


class ErrorCode(models.TextChoices):
    """Why a job failed: the input's fault, or the service's."""

    BAD_AUDIO = "bad_audio", _("The file's audio cannot be used")
    ENGINE_ERROR = "engine_error", _("The engine failed")
    QUEUE_UNAVAILABLE = "queue_unavailable", _("The job queue was unavailable")
    WORKER_LOST = "worker_lost", _("The worker stopped responding")


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class TransitionError(Exception):
    """A state change the job's current status does not allow."""


class Job(models.Model):
    """One transcription of one upload with one set of options, and everything it produced."""

    Status = JobStatus
    ErrorCode = ErrorCode
    FINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    upload = models.ForeignKey(
        Upload, on_delete=models.CASCADE, related_name="jobs", verbose_name=_("upload")
    )
    batch = models.ForeignKey(
        Batch, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs", verbose_name=_("batch")
    )
    spec_data = models.JSONField(_("spec"), default=dict,
                                 help_text=_("What the worker does, fixed when the job was created (spec.JobSpec)."))

    status = models.CharField(
        _("status"), max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(_("progress"), default=0.0, help_text=_("0-100, fraction of audio decoded."))
    engine = models.CharField(_("engine"), max_length=20, blank=True, help_text=_("Engine it runs on."))
    model = models.CharField(_("model"), max_length=40, blank=True, help_text=_("Model it runs with."))
    language = models.CharField(_("language"), max_length=16, blank=True)
    language_probability = models.FloatField(_("language probability"), null=True, blank=True)

    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    conversion_seconds = models.FloatField(_("conversion seconds"), null=True, blank=True)
    inference_seconds = models.FloatField(_("inference seconds"), null=True, blank=True)
    audio_duration = models.FloatField(_("audio duration"), null=True, blank=True)
    silence_offset = models.FloatField(_("silence offset"), null=True, blank=True)
    estimated_finish_at = models.DateTimeField(
        _("estimated finish"), null=True, blank=True,
        help_text=_("While running: when decoding should end, from the speed measured so far."))

    result = models.JSONField(_("result"), null=True, blank=True)
    result_text_path = models.CharField(_("result text path"), max_length=500, blank=True)
    speaker_count = models.PositiveSmallIntegerField(
        _("speakers"), null=True, blank=True, db_index=True,
        help_text=_("With diarization: how many speakers the result has."))
    speaker_names = models.JSONField(
        _("speaker names"), default=dict, blank=True,
        help_text=_("Names people gave the speakers, by label (SPEAKER_1: Anna); downloads use them."))
    error = models.TextField(_("error"), blank=True)
    worker = models.CharField(_("worker"), max_length=100, blank=True, help_text=_("host:pid running it."))
    heartbeat_at = models.DateTimeField(_("heartbeat at"), null=True, blank=True, db_index=True)
    error_code = models.CharField(_("error code"), max_length=20, blank=True, choices=ErrorCode.choices)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="transcription_jobs",
                              help_text=_("Who created it; empty: anonymous (an open service) or from before"
                                          " owners were kept. Only its owner, and staff allowed to see every"
                                          " job, can see it."))
    callback_url = models.CharField(_("callback URL"), max_length=1000, blank=True,
                                    help_text=_("Sent a signed POST when the job is done, failed or cancelled."))

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        permissions = [("view_all_jobs", _("Can see and act on every owner's jobs"))]

    def __str__(self) -> str:
        return f"{self.id} ({self.get_status_display()})"  # the status in the reader's language

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def named_result(self) -> dict | None:
        """The result with the names people gave its speakers (what answers and downloads show)."""
        from .result import with_names

        return with_names(self.result, self.speaker_names) if self.result else self.result

    @cached_property
    def spec(self) -> JobSpec:
        """What the worker does: decoding and silence settings, typed (fixed at creation)."""
        return JobSpec.model_validate(self.spec_data)

    @property
    def options(self) -> dict:
        """The spec in the request's own terms: what answers and pages show as "options"."""
        return self.spec.request()

    @property
    def language_chosen(self) -> bool:
        """Whether the request named the language (else it was detected)."""
        return self.spec.decode.language is not None

    @property
    def duration(self) -> float | None:
        """Seconds of audio: as decoded once the worker has it, else as FFmpeg's probe said."""
        return self.audio_duration or self.upload.duration

    @property
    def rtf(self) -> float | None:
        """Real-time factor: inference seconds per second of audio."""
        duration = self.audio_duration
        return self.inference_seconds / duration if self.inference_seconds and duration else None

    @property
    def failure_status(self) -> int:
        """The HTTP status that reports this failed job: the input's fault is 422, ours 500."""
        return 422 if self.error_code == ErrorCode.BAD_AUDIO else 500

    @property
    def api_path(self) -> str:
        return f"/job/{self.pk}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("webui:job", args=[self.pk])

    # State changes: each is one conditional UPDATE, so two processes can never both win.
    def _move(self, allowed: tuple[str, ...], **fields) -> None:
        updated = Job.objects.filter(pk=self.pk, status__in=allowed).update(**fields)
        if not updated:
            self.refresh_from_db(fields=["status"])
            raise TransitionError(f"job {self.pk} is {self.status}, cannot become {fields['status']}")
        for name, value in fields.items():
            setattr(self, name, value)
        if fields["status"] in self.FINAL:
            self._ended()

    def _ended(self) -> None:
        """Tell whoever listens (webhooks) that the job reached a final state, once it is committed."""
        transaction.on_commit(lambda: job_ended.send(sender=Job, job=self))

    def start(self, worker: str = "") -> None:
        now = timezone.now()
        self._move(
            (JobStatus.QUEUED,),
            status=JobStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=worker[:100],
            progress=0.0,
            estimated_finish_at=None,
            attempts=models.F("attempts") + 1,
        )
        self.refresh_from_db(fields=["attempts"])

    def beat(self) -> bool:
        """Say the worker is alive; False once the job is no longer this worker's to run."""
        return bool(
            Job.objects.filter(pk=self.pk, status=JobStatus.RUNNING, worker=self.worker).update(
                heartbeat_at=timezone.now()
            )
        )

    def requeue(self, *, expected_heartbeat=None, worker: str | None = None, refund: bool = False) -> bool:
        """Put a running job back in the queue, if it is still in the state the caller saw.

        `expected_heartbeat`: only if no heartbeat came since (the reaper's check);
        `worker`: only if that worker runs it (a worker handing back its own job at shutdown);
        `refund`: the interrupted attempt does not count against the retry limit.
        """
        rows = Job.objects.filter(pk=self.pk, status=JobStatus.RUNNING)
        if expected_heartbeat is not None:
            rows = rows.filter(heartbeat_at=expected_heartbeat)
        if worker is not None:
            rows = rows.filter(worker=worker)
        fields = dict(status=JobStatus.QUEUED, worker="", heartbeat_at=None, progress=0.0, started_at=None,
                      estimated_finish_at=None)
        if refund:
            fields["attempts"] = models.F("attempts") - 1
        return bool(rows.update(**fields))

    def finish(self, result: dict, text_path: str, **timings) -> None:
        with transaction.atomic():
            self._move(
                (JobStatus.RUNNING,),
                status=JobStatus.DONE,
                finished_at=timezone.now(),
                progress=100.0,
                result=result,
                result_text_path=text_path,
                speaker_count=len(result["speakers"]) if result.get("speakers") is not None else None,
                **timings,
            )

    def fail(self, reason: str, code: str = ErrorCode.ENGINE_ERROR, *, expected_heartbeat=None) -> None:
        """Fail the job with the reason; with `expected_heartbeat`, only if no heartbeat came since
        (the reaper giving up on a worker that went silent, racing a worker that came back)."""
        if expected_heartbeat is not None:
            if not Job.objects.filter(pk=self.pk, status=JobStatus.RUNNING, heartbeat_at=expected_heartbeat
                                      ).update(status=JobStatus.FAILED, finished_at=timezone.now(),
                                               error=reason[:5000], error_code=code):
                raise TransitionError(f"job {self.pk} moved on since its heartbeat at {expected_heartbeat}")
            self.status, self.error, self.error_code = JobStatus.FAILED, reason[:5000], code
            self._ended()
            return
        self._move(
            (JobStatus.QUEUED, JobStatus.RUNNING),
            status=JobStatus.FAILED,
            finished_at=timezone.now(),
            error=reason[:5000],
            error_code=code,
        )

    def cancel(self) -> None:
        self._move(
            (JobStatus.QUEUED, JobStatus.RUNNING),
            status=JobStatus.CANCELLED,
            finished_at=timezone.now(),
        )

    def set_progress(self, percent: float, estimated_finish_at=None) -> None:
        """Record decoding progress; a no-op once the job has left 'running' (e.g. cancelled)."""
        percent = max(0.0, min(100.0, float(percent)))
        Job.objects.filter(pk=self.pk, status=JobStatus.RUNNING).update(
            progress=percent, estimated_finish_at=estimated_finish_at)
        self.progress = percent
        self.estimated_finish_at = estimated_finish_at

    @property
    def eta_seconds(self) -> float | None:
        """Seconds of decoding left, while running and once an estimate exists."""
        if self.status != JobStatus.RUNNING or self.estimated_finish_at is None:
            return None
        return max(0.0, round((self.estimated_finish_at - timezone.now()).total_seconds(), 1))

    def record(self, **fields) -> None:
        """Store measurements (durations, language) without touching the status."""
        Job.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)

    def should_stop(self) -> bool:
        """Whether the worker should drop this job: cancelled, deleted, or handed to another."""
        return not Job.objects.filter(pk=self.pk, status=JobStatus.RUNNING, worker=self.worker).exists()


LIVE_QUEUE_SUFFIX = "-live"  # the queue of live sessions is the jobs' queue name with this


class WorkerQuerySet(models.QuerySet):
    def alive(self) -> "WorkerQuerySet":
        """Workers whose last heartbeat is recent enough that they are taking work."""
        return self.filter(seen_at__gte=timezone.now() - Worker.stale_after())

    def for_jobs(self) -> "WorkerQuerySet":
        """Consumers of the jobs' queue (`run_huey`)."""
        return self.exclude(queue__endswith=LIVE_QUEUE_SUFFIX)

    def for_live(self) -> "WorkerQuerySet":
        """Consumers of the live sessions' queue (`run_live`)."""
        return self.filter(queue__endswith=LIVE_QUEUE_SUFFIX)


class Worker(models.Model):
    """One running queue consumer (`manage.py run_huey`), as it last announced itself.

    A consumer writes its row when it starts, refreshes `seen_at` every JOB_HEARTBEAT_SECONDS and
    removes the row when it stops; a row that stopped beating belongs to a consumer that died."""

    name = models.CharField(_("name"), max_length=100, unique=True, help_text=_("host:pid"))
    host = models.CharField(_("host"), max_length=100)
    pid = models.PositiveIntegerField(_("process id"))
    threads = models.PositiveSmallIntegerField(_("worker threads"), default=1)
    queue = models.CharField(_("queue"), max_length=100, blank=True)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    seen_at = models.DateTimeField(_("last seen at"), default=timezone.now, db_index=True)
    loaded_models = models.JSONField(
        _("loaded models"), default=list, blank=True,
        help_text=_("What its model cache holds, as of its last heartbeat: name, engine, last used."))

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["host", "pid"]
        verbose_name = _("worker")
        verbose_name_plural = _("workers")

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def stale_after() -> timedelta:
        """Three missed heartbeats: the consumer is gone (killed, machine lost, or hung)."""
        return timedelta(seconds=3 * settings.JOB_HEARTBEAT_SECONDS)

    @property
    def is_alive(self) -> bool:
        return self.seen_at >= timezone.now() - self.stale_after()

    @property
    def loaded(self) -> list["LoadedModel"]:
        """The models its cache held at its last heartbeat, typed."""
        return [LoadedModel.model_validate(item) for item in self.loaded_models or []]


class LoadedModel(pydantic.BaseModel):
    """One entry of Worker.loaded_models: a model a worker holds in memory."""

    name: str
    engine: str
    last_used: datetime


class ModelTaskStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class ModelTaskQuerySet(models.QuerySet):
    def pending(self) -> "ModelTaskQuerySet":
        """Queued or running: at most one per model (a database constraint)."""
        return self.filter(status__in=(ModelTaskStatus.QUEUED, ModelTaskStatus.RUNNING))


class ModelTask(models.Model):
    """One install, removal or preload of a Whisper model, asked for on the admin's Models page or
    through the API and done by a worker: what was asked, how far it has got, how it ended."""

    class Action(models.TextChoices):
        INSTALL = "install", _("Install")
        REMOVE = "remove", _("Remove")
        PRELOAD = "preload", _("Preload")

    class Source(models.TextChoices):
        PACKAGE = "package", _("Bundled package")
        FOLDER = "folder", _("Server folder")
        HUB = "hub", _("Hugging Face hub")

    Status = ModelTaskStatus
    FINAL = (ModelTaskStatus.DONE, ModelTaskStatus.FAILED)

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    model_name = models.CharField(_("model"), max_length=40, db_index=True)
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices, blank=True,
                              help_text=_("Where an install takes the model from."))
    folder = models.CharField(_("folder"), max_length=1000, blank=True,
                              help_text=_("For an install from a server folder: the folder, as typed."))
    engine = models.CharField(_("engine"), max_length=20, blank=True, help_text=_("For a preload: the engine."))
    status = models.CharField(_("status"), max_length=10, choices=ModelTaskStatus.choices,
                              default=ModelTaskStatus.QUEUED, db_index=True)
    progress = models.FloatField(_("progress"), default=0.0, help_text=_("0-100."))
    step = models.CharField(_("step"), max_length=100, blank=True, help_text=_("What it is doing now."))
    error = models.TextField(_("error"), blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("requested by"), null=True,
                                     blank=True, on_delete=models.SET_NULL, related_name="+",
                                     help_text=_("Empty: a service token."))
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    worker = models.CharField(_("worker"), max_length=100, blank=True, help_text=_("host:pid doing it."))

    objects = ModelTaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("model task")
        verbose_name_plural = _("model tasks")
        permissions = [("manage_models", _("Can install, remove and preload Whisper models"))]
        constraints = [
            # Two installs of one model at once would race for its folder; an install beside a
            # removal makes no sense. The database refuses the second, whoever asks.
            models.UniqueConstraint(fields=["model_name"], name="one_pending_task_per_model",
                                    condition=models.Q(status__in=("queued", "running"))),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.model_name} ({self.get_status_display()})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def api_path(self) -> str:
        return f"/models/tasks/{self.pk}"

    # State changes: each is one conditional UPDATE, as for Job.
    def _move(self, allowed: tuple[str, ...], **fields) -> None:
        if not ModelTask.objects.filter(pk=self.pk, status__in=allowed).update(**fields):
            self.refresh_from_db(fields=["status"])
            raise TransitionError(f"model task {self.pk} is {self.status}, cannot become {fields['status']}")
        for name, value in fields.items():
            setattr(self, name, value)

    def start(self, worker: str) -> None:
        self._move((ModelTaskStatus.QUEUED,), status=ModelTaskStatus.RUNNING, started_at=timezone.now(),
                   worker=worker[:100], progress=0.0)

    def report(self, progress: float, step: str) -> None:
        """Record how far it has got; a no-op once it has ended."""
        progress = max(0.0, min(100.0, float(progress)))
        ModelTask.objects.filter(pk=self.pk, status=ModelTaskStatus.RUNNING).update(progress=progress,
                                                                                   step=step[:100])
        self.progress, self.step = progress, step[:100]

    def finish(self) -> None:
        self._move((ModelTaskStatus.RUNNING,), status=ModelTaskStatus.DONE, progress=100.0, step="",
                   finished_at=timezone.now())

    def fail(self, reason: str) -> None:
        self._move((ModelTaskStatus.QUEUED, ModelTaskStatus.RUNNING), status=ModelTaskStatus.FAILED,
                   error=reason[:5000], finished_at=timezone.now())


class WhisperModel(ModelTask):
    """The admin's Models page. The catalogue is not a table: this proxy gives the page its entry
    under the app in the admin's index; the page itself lists modelstore's catalogue."""

    class Meta:
        proxy = True
        default_permissions = ()  # the page asks for ModelTask's manage_models
        verbose_name = _("Whisper model")
        verbose_name_plural = _("Whisper models")


class LiveStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting for a live worker")
    LIVE = "live", _("Live")
    ENDED = "ended", _("Ended")
    FAILED = "failed", _("Failed")


class LiveSessionQuerySet(models.QuerySet):
    def active(self) -> "LiveSessionQuerySet":
        """Sessions holding a place: waiting for a live worker (briefly), or decoding with a
        recent heartbeat. One whose processes died stops counting on its own."""
        now = timezone.now()
        stale = now - timedelta(seconds=max(30.0, 3 * settings.JOB_HEARTBEAT_SECONDS))
        return self.filter(models.Q(status=LiveStatus.WAITING, created_at__gte=stale)
                           | models.Q(status=LiveStatus.LIVE, heartbeat_at__gte=stale))


class LiveSession(models.Model):
    """One live transcription (the /live page or the /v1/live WebSocket): who opened it, with what
    settings, how it ended, and the job it became (its recording, decoded again offline)."""

    Status = LiveStatus

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(_("status"), max_length=10, choices=LiveStatus.choices, default=LiveStatus.WAITING,
                              db_index=True)
    client = models.CharField(_("client"), max_length=200, blank=True,
                              help_text=_("token, user or address the session limits count by"))
    model = models.CharField(_("model"), max_length=50)
    engine = models.CharField(_("engine"), max_length=20)
    options = models.JSONField(_("options"), default=dict, help_text=_("as for a job: model, language, task"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("heartbeat at"), null=True, blank=True)
    worker = models.CharField(_("worker"), max_length=100, blank=True)
    audio_seconds = models.FloatField(_("audio (s)"), default=0.0)
    text = models.TextField(_("live transcript"), blank=True,
                            help_text=_("the words confirmed while the session ran"))
    end_reason = models.CharField(_("how it ended"), max_length=200, blank=True)
    end_code = models.PositiveIntegerField(_("close code"), null=True, blank=True)
    job = models.OneToOneField(Job, verbose_name=_("job"), null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="live_session")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")

    objects = LiveSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("live session")
        verbose_name_plural = _("live sessions")

    def __str__(self) -> str:
        return f"live {self.id}"

    @property
    def request(self):
        """The options as a job request (TranscribeOptions)."""
        from .schemas import TranscribeOptions

        return TranscribeOptions.model_validate(self.options)


# --- people: accounts, personal API tokens, share links, webhook deliveries ------------------------


def _secret(nbytes: int = 32) -> str:
    import secrets

    return secrets.token_urlsafe(nbytes)


def digest(key: str) -> str:
    """How a token or share key is stored: its SHA-256 (the keys are random, 256 bits: no salt or
    slow hash is needed to make them unguessable)."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


class Account(models.Model):
    """What the service keeps per user beside Django's user: the webhook secret and default callback
    address, and the user's quotas (empty: the service-wide QUOTA_* settings)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                                related_name="transcription_account")
    webhook_secret = models.CharField(_("webhook secret"), max_length=100, default=_secret,
                                      help_text=_("Signs the callbacks of this user's jobs (HMAC-SHA256)."))
    callback_url = models.CharField(_("default callback URL"), max_length=1000, blank=True,
                                    help_text=_("Used for jobs that name none."))
    audio_hours_per_day = models.FloatField(
        _("audio hours per day"), null=True, blank=True,
        help_text=_("Most audio this user may send in any 24 hours; empty: QUOTA_AUDIO_HOURS_PER_DAY."))
    max_queued_jobs = models.PositiveIntegerField(
        _("queued jobs at most"), null=True, blank=True,
        help_text=_("Most jobs waiting or running at once; empty: QUOTA_QUEUED_JOBS."))

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")

    def __str__(self) -> str:
        return str(self.user)

    @classmethod
    def of(cls, user) -> "Account":
        account, _created = cls.objects.get_or_create(user=user)
        return account

    @property
    def audio_limit_seconds(self) -> float | None:
        hours = self.audio_hours_per_day if self.audio_hours_per_day is not None else settings.QUOTA_AUDIO_HOURS_PER_DAY
        return hours * 3600 if hours is not None else None

    @property
    def queued_limit(self) -> int | None:
        return self.max_queued_jobs if self.max_queued_jobs is not None else settings.QUOTA_QUEUED_JOBS

    def counted_jobs(self) -> models.QuerySet:
        """This user's jobs of the last 24 hours that count against the audio quota (done or still to
        do: failed and cancelled jobs do not), each with its seconds of audio as `counted`."""
        since = timezone.now() - timedelta(days=1)
        return Job.objects.filter(owner=self.user_id, created_at__gte=since).exclude(
            status__in=(JobStatus.FAILED, JobStatus.CANCELLED)).annotate(
            counted=models.functions.Coalesce("audio_duration", "upload__duration"))

    def audio_seconds_today(self) -> float:
        return float(self.counted_jobs().aggregate(s=models.Sum("counted"))["s"] or 0.0)

    def queued_now(self) -> int:
        return Job.objects.filter(owner=self.user_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).count()

    def new_webhook_secret(self) -> str:
        self.webhook_secret = _secret()
        self.save(update_fields=["webhook_secret"])
        return self.webhook_secret


class TokenScope(models.TextChoices):
    READ = "read", _("Read")
    WRITE = "write", _("Read and write")


class KeyQuerySet(models.QuerySet):
    def active(self):
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(models.Q(expires_at__isnull=True)
                                                           | models.Q(expires_at__gt=now))


class SecretKey(models.Model):
    """A random key handed out once and stored as its SHA-256, with the first characters kept to
    recognise it by; it can expire and be revoked."""

    PREFIX = ""  # what every key of the kind starts with, so people (and secret scanners) know it

    prefix = models.CharField(_("starts with"), max_length=20, db_index=True, editable=False)
    key_digest = models.CharField(_("SHA-256"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True,
                                      help_text=_("Empty: never."))
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    objects = KeyQuerySet.as_manager()

    class Meta:
        abstract = True

    def new_key(self) -> str:
        """Give this row a fresh key (before its first save) and return it: the only time it is seen."""
        key = self.PREFIX + _secret()
        self.prefix, self.key_digest = key[: len(self.PREFIX) + 6], digest(key)
        return key

    @classmethod
    def find(cls, key: str):
        """The row holding this key, whatever its state (None: no such key)."""
        if not key.startswith(cls.PREFIX) or len(key) > 200:
            return None
        return cls.objects.filter(key_digest=digest(key)).first()

    @property
    def state(self) -> str:
        """active, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    @property
    def is_active(self) -> bool:
        return self.state == "active"

    def revoke(self) -> None:
        type(self).objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.refresh_from_db(fields=["revoked_at"])

    def touch(self) -> None:
        """Note a use; at most once a minute, so reading a job does not write a row each time."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at > timedelta(minutes=1):
            type(self).objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now


class ApiToken(SecretKey):
    """A personal API token: it acts as its user, with read or read + write scope."""

    PREFIX = "stt_"
    Scope = TokenScope

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100, help_text=_("What it is for, e.g. the laptop's script."))
    scope = models.CharField(_("scope"), max_length=10, choices=TokenScope.choices, default=TokenScope.WRITE)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def can_write(self) -> bool:
        return self.scope == TokenScope.WRITE


class ShareLink(SecretKey):
    """A read-only link to one finished job: its transcript, player and downloads, for anyone holding it."""

    PREFIX = "sh_"

    job = models.ForeignKey(Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="share_links")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    views = models.PositiveIntegerField(_("views"), default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("share link")
        verbose_name_plural = _("share links")

    def __str__(self) -> str:
        return f"{self.prefix}… → {self.job_id}"

    def touch(self) -> None:
        ShareLink.objects.filter(pk=self.pk).update(views=models.F("views") + 1, last_used_at=timezone.now())


class DeliveryOutcome(models.TextChoices):
    DELIVERED = "delivered", _("Delivered")
    RETRYING = "retrying", _("Failed; will retry")
    GAVE_UP = "gave_up", _("Failed; no more tries")
    REFUSED = "refused", _("Refused (address not allowed)")


class WebhookDelivery(models.Model):
    """One attempt to POST a callback (a job or batch that finished) and what the receiver answered."""

    Outcome = DeliveryOutcome

    event_id = models.CharField(_("event id"), max_length=100, db_index=True,
                                help_text=_("The same for every attempt at one event: receivers drop repeats by it."))
    event = models.CharField(_("event"), max_length=40)
    job = models.ForeignKey(Job, verbose_name=_("job"), null=True, blank=True, on_delete=models.CASCADE,
                            related_name="deliveries")
    batch = models.ForeignKey(Batch, verbose_name=_("batch"), null=True, blank=True, on_delete=models.CASCADE,
                              related_name="deliveries")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    url = models.CharField(_("URL"), max_length=1000)
    attempt = models.PositiveSmallIntegerField(_("attempt"))
    outcome = models.CharField(_("outcome"), max_length=10, choices=DeliveryOutcome.choices)
    status_code = models.PositiveSmallIntegerField(_("answer status"), null=True, blank=True)
    answer = models.TextField(_("answer"), blank=True, help_text=_("The start of the receiver's answer."))
    error = models.TextField(_("error"), blank=True)
    sent_at = models.DateTimeField(_("sent at"), default=timezone.now, db_index=True)
    duration_ms = models.PositiveIntegerField(_("took (ms)"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)

    class Meta:
        ordering = ["-sent_at", "-attempt"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")

    def __str__(self) -> str:
        return f"{self.event} #{self.attempt} → {self.url}"
