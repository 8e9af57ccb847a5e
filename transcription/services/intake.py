"""Intake (web side): plan a request against what is installed, store the upload, create and
queue jobs and batches, run one again, cancel one, wait for one."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.translation import gettext as _

from .. import audio, engines, metrics, modelstore
from ..engines import DecodeOptions, EngineUnavailable
from ..fetch import downloaded
from ..models import Account, Batch, Job, ModelTask, TransitionError, Upload
from ..schemas import TranscribeOptions
from ..spec import JobSpec
from ..uploads import UploadRejected, check_extension, safe_name, shown_name
from .base import ServiceError, enqueue_job, log
from .recovery import workers_available

# --- choosing model, engine and decoding options ---------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a request asks, checked against what is installed: a job is created from this."""

    model: str
    engine: str
    spec: JobSpec
    owner: object = None  # the user the job belongs to (None: anonymous, or the service itself)
    callback_url: str = ""


def plan(options: TranscribeOptions, owner=None) -> Plan:
    """Check the options against what is installed and what the engine can do, and the callback
    address against the network rules."""
    name = _model(options.model)
    engine_name = _engine(options.engine, name)
    spec = JobSpec.from_request(options)
    _check_language(name, spec.decode)
    problems = engines.get_engine(engine_name).unsupported(spec.decode)
    if problems:
        raise ServiceError(422, "; ".join(problems), "engine")
    if spec.speakers.diarize or _speaker_counts(options):
        spec = spec.model_copy(update={"speakers": _speakers(options, spec)})
    return Plan(model=name, engine=engine_name, spec=spec, owner=owner,
                callback_url=_callback_url(getattr(options, "callback_url", None), owner))


NO_CALLBACK = "none"  # callback_url=none: no callback for this job, whatever the account's default


def _callback_url(requested: str | None, owner) -> str:
    """The address told when the job ends: the request's (checked now, so a wrong one is a 422 and
    not a silent failure an hour later), else the owner's default (checked when it was saved and
    at every attempt: an address that has since become refused is recorded as such in the
    deliveries, and never stops the job), or none with callback_url=none."""
    requested = (requested or "").strip()
    if requested.lower() == NO_CALLBACK:
        return ""
    if not requested:
        return Account.of(owner).callback_url if owner is not None else ""
    return check_callback_url(requested)


def check_callback_url(url: str) -> str:
    from ..netguard import AddressRefused, check_url

    try:
        check_url(url)
    except AddressRefused as exc:
        raise ServiceError(422, f"callback_url: {exc}", "callback_url") from None
    return url


def check_quota(owner, jobs: int, seconds: float = 0.0) -> None:
    """Refuse (429) what would take the owner past their quota: jobs waiting or running at once
    (checked before the file is stored, with seconds=0), and audio in any 24 hours (after FFmpeg
    has measured it). Anonymous use of an open service has no quota."""
    if owner is None:
        return
    account = Account.of(owner)
    limit = account.queued_limit
    if limit is not None and not seconds:
        waiting = account.queued_now()
        if waiting + jobs > limit:
            raise ServiceError(429, f"quota: you may have {limit} job{'s' * (limit != 1)} waiting or running at"
                                    f" once and have {waiting}; send {'this' if jobs == 1 else 'these'} when"
                                    f" {'one has' if waiting else 'there is room'} finished", "file",
                               retry_after=60)
    limit_seconds = account.audio_limit_seconds
    if limit_seconds is not None and seconds:
        used = account.audio_seconds_today()
        if used + seconds > limit_seconds:
            if seconds > limit_seconds:
                raise ServiceError(429, f"quota: this audio ({_span(seconds)}) is longer than your quota of"
                                        f" {_span(limit_seconds)} of audio in 24 hours; ask the administrator for"
                                        " more, or send a shorter file", "file")
            wait = _room_in(account, used + seconds - limit_seconds)
            raise ServiceError(429, f"quota: this audio ({_span(seconds)}) would take you past your quota of"
                                    f" {_span(limit_seconds)} of audio in 24 hours ({_span(used)} used); there is"
                                    f" room for it in {_span(wait)}", "file", retry_after=max(1, round(wait)))


def _span(seconds: float) -> str:
    """A length of time as people say it: 45 s, 12 min, 3 h 05 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _room_in(account: Account, excess: float) -> float:
    """Seconds until enough of the last 24 hours' audio has left the window to free `excess` seconds."""
    from datetime import timedelta

    from django.utils import timezone

    freed, now = 0.0, timezone.now()
    for created_at, seconds in account.counted_jobs().order_by("created_at").values_list("created_at", "counted"):
        freed += seconds or 0.0
        if freed >= excess:
            return max(0.0, (created_at + timedelta(days=1) - now).total_seconds())
    return 24 * 3600.0


def _speaker_counts(options: TranscribeOptions) -> dict:
    return {k: v for k in ("num_speakers", "min_speakers", "max_speakers")
            if (v := getattr(options, k)) is not None}


def _speakers(options: TranscribeOptions, spec: JobSpec):
    """Check a request for speakers and choose the backend that will find them."""
    from .. import speakers

    # Messages in the request's language (the pages send the browser's; API clients get English).
    counts = _speaker_counts(options)
    if not options.diarize:
        field = next(iter(counts))
        raise ServiceError(422, _("%(field)s counts speakers: it needs diarize=true") % {"field": field}, field)
    if not spec.decode.word_timestamps:
        raise ServiceError(422, _("diarize gives every word a speaker, so it needs word_timestamps=true"),
                           "word_timestamps")
    if spec.decode.without_timestamps:
        raise ServiceError(422, _("diarize needs timestamps: it cannot be used with no_timestamps=true"),
                           "no_timestamps")
    low, high, num = options.min_speakers, options.max_speakers, options.num_speakers
    if low is not None and high is not None and low > high:
        raise ServiceError(422, _("min_speakers (%(low)d) is more than max_speakers (%(high)d)")
                           % {"low": low, "high": high}, "min_speakers")
    if num is not None and low is not None and num < low:
        raise ServiceError(422, _("num_speakers (%(num)d) is less than min_speakers (%(low)d)")
                           % {"num": num, "low": low}, "num_speakers")
    if num is not None and high is not None and num > high:
        raise ServiceError(422, _("num_speakers (%(num)d) is more than max_speakers (%(high)d)")
                           % {"num": num, "high": high}, "num_speakers")
    try:
        backend = speakers.default_backend()
    except speakers.DiarizationUnavailable as exc:
        raise ServiceError(422, str(exc), "diarize") from None
    return spec.speakers.model_copy(update={"backend": backend.name})


def _model(requested: str | None) -> str:
    installed = modelstore.installed_names()
    name = requested or modelstore.default_model()
    if name is None:
        raise ServiceError(503, "no Whisper model is installed; run: python manage.py install_model base", "model")
    if name not in modelstore.SPECS:
        raise ServiceError(422, f"unknown model {name!r}; installed models: {', '.join(installed) or 'none'}"
                                f" (known: {', '.join(modelstore.NAMES)})", "model")
    if name not in installed:
        raise ServiceError(422, f"model {name!r} is not installed; installed models: {', '.join(installed) or 'none'}."
                                f" Install it on the admin's Models page, with POST /models/{name}/install, or with:"
                                f" python manage.py install_model {name}", "model")
    removal = ModelTask.objects.pending().filter(model_name=name, action=ModelTask.Action.REMOVE).first()
    if removal is not None:  # a job queued now would find its model gone
        raise ServiceError(409, f"model {name!r} is being removed (task {removal.id}); choose another model", "model")
    return name


def _engine(requested: str | None, model: str) -> str:
    try:
        name = engines.resolve_engine_name(requested)
        engines.get_engine(name)
    except (ValueError, EngineUnavailable) as exc:
        raise ServiceError(422, str(exc), "engine") from None
    if name not in modelstore.installed_engines(model):
        raise ServiceError(422, f"model {model!r} is installed for {', '.join(modelstore.installed_engines(model))}"
                                f" only, not for the {name} engine", "engine")
    return name


def _check_language(model: str, decode: DecodeOptions) -> None:
    if modelstore.spec(model).multilingual:
        return
    if decode.language not in (None, "en"):
        raise ServiceError(422, f"model {model!r} is English-only; use language=en or auto, or a multilingual"
                                " model", "language")
    if decode.task == "translate":
        raise ServiceError(422, f"model {model!r} is English-only and cannot translate", "task")


# --- creating a job ----------------------------------------------------------------------------


def media(rel: str) -> Path:
    return Path(settings.MEDIA_ROOT) / rel


def _check_file(uploaded: UploadedFile, field: str = "file") -> None:
    check_extension(uploaded.name or "", field)  # UploadRejected(415) reaches the caller as is
    if not uploaded.size:
        raise ServiceError(400, f"{shown_name(uploaded.name)}: the uploaded file is empty (0 bytes)", field)


@dataclass
class _Stored:
    """An upload moved into MEDIA_ROOT and probed, not yet recorded."""

    job_id: uuid.UUID
    name: str
    rel: str
    path: Path
    probe: audio.Probe
    sha256: str
    content_type: str

    def record(self, owner=None, source_url: str = "") -> Upload:
        return Upload.objects.create(
            original_name=self.name[:255], stored_path=self.rel, size=self.path.stat().st_size,
            content_type=self.content_type[:100], sha256=self.sha256, duration=self.probe.duration, owner=owner,
            source_url=source_url,
        )


def _store(uploaded: UploadedFile, field: str = "file") -> _Stored:
    """Move the streamed upload under MEDIA_ROOT and check that FFmpeg finds audio in it."""
    name = uploaded.name or ""
    job_id = uuid.uuid4()
    rel = f"uploads/{job_id}_{safe_name(name)}"
    target = media(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(uploaded, "temporary_file_path"):
        shutil.move(uploaded.temporary_file_path(), target)
    else:
        with open(target, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
    if settings.FILE_UPLOAD_PERMISSIONS is not None:
        # As Django's file storage does: the temp file's 0600 would otherwise travel with the move.
        os.chmod(target, settings.FILE_UPLOAD_PERMISSIONS)
    try:
        probed = audio.probe(target)
        probed = replace(probed, duration=audio.check_duration(target, probed))
        sha = getattr(uploaded, "sha256", "") or _sha256(target)
    except audio.AudioError as exc:
        target.unlink(missing_ok=True)
        raise ServiceError(422, f"{shown_name(name)}: {exc}", field) from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return _Stored(job_id, name, rel, target, probed, sha, getattr(uploaded, "content_type", "") or "")


def create_job(uploaded: UploadedFile, options: TranscribeOptions, enqueue: bool = True,
               known_voices: list[tuple[str, bytes]] = (), owner=None, within_quota: bool = True,
               source_url: str = "") -> Job:
    """Validate the file and the options, store the upload, and queue a job for it.

    With enqueue=False the job is only recorded: the caller runs it itself (run_job).
    `known_voices`: (name, audio bytes) samples that name the speakers they match (diarize).
    `owner`: the user it belongs to (None: anonymous, or the service itself); `within_quota=False`
    for a live session's recording, whose quota was checked when it opened (it is not lost).
    `source_url`: the address the file was fetched from (create_job_from_url); refusals of the
    file then name the url field."""
    field = "url" if source_url else "file"
    _check_file(uploaded, field)
    chosen = plan(options, owner)
    quota_owner = owner if within_quota else None
    check_quota(quota_owner, jobs=1)
    voices = _store_voices(known_voices) if known_voices else []
    try:
        if voices:
            speakers = chosen.spec.speakers.model_copy(update={"known": tuple(voices)})
            chosen = replace(chosen, spec=chosen.spec.model_copy(update={"speakers": speakers}))
        stored = _store(uploaded, field)
        try:
            check_quota(quota_owner, jobs=1, seconds=stored.probe.duration or 0.0)
            with transaction.atomic():
                job = _queue(stored.record(owner, source_url), chosen, stored.job_id, enqueue=enqueue)
            metrics.upload_accepted(job.upload.size, via="url" if source_url else "upload")
            return job
        except BaseException:
            stored.path.unlink(missing_ok=True)
            raise
    except BaseException:
        for voice in voices:
            media(voice.file).unlink(missing_ok=True)
        raise


def create_job_from_url(url: str, options: TranscribeOptions, owner=None) -> Job:
    """Fetch the file at `url` (fetch.downloaded: public addresses only, capped, timed) and make it
    a job as create_job makes an uploaded one, keeping the address on its upload."""
    # What can be refused without the file is refused before a download that may take an hour.
    plan(options, owner)
    check_quota(owner, jobs=1)
    try:
        with downloaded(url) as uploaded:
            return create_job(uploaded, options, owner=owner, source_url=url.strip())
    except UploadRejected as exc:
        raise ServiceError(exc.status, exc.message, exc.field) from None


VOICE_SECONDS = (1.0, 30.0)  # a known voice's sample: long enough to embed, short enough to be one voice


def _store_voices(samples: list[tuple[str, bytes]]) -> list:
    """Each (name, audio) sample stored under MEDIA_ROOT/voices/ and checked to be audio of a
    usable length; all or none are kept."""
    from ..spec import KnownVoice

    folder = media("voices")
    folder.mkdir(parents=True, exist_ok=True)
    kept: list[KnownVoice] = []
    try:
        for name, data in samples:
            rel = f"voices/{uuid.uuid4().hex}.audio"
            media(rel).write_bytes(data)
            kept.append(KnownVoice(name=name, file=rel))
            field = "known_speaker_references[]"
            try:
                probed = audio.probe(media(rel))
            except audio.AudioError as exc:
                raise ServiceError(400, f"known speaker {name!r}: {exc}", field) from None
            low, high = VOICE_SECONDS
            if probed.duration is not None and not low <= probed.duration <= high:
                raise ServiceError(400, f"known speaker {name!r}: the sample lasts {probed.duration:.1f} s;"
                                        f" give {low:.0f} to {high:.0f} s of that voice alone", field)
    except BaseException:
        for voice in kept:
            media(voice.file).unlink(missing_ok=True)
        raise
    return kept


MAX_BATCH_FILES = 100


def create_batch(files: list[UploadedFile], options: TranscribeOptions, owner=None) -> Batch:
    """All files or none: each is checked and stored before any job is queued."""
    if not files:
        raise ServiceError(422, "send at least one file (field 'files')", "files")
    if len(files) > MAX_BATCH_FILES:
        raise ServiceError(422, f"at most {MAX_BATCH_FILES} files per batch", "files")
    for uploaded in files:
        _check_file(uploaded, "files")
    chosen = plan(options, owner)
    check_quota(owner, jobs=len(files))
    stored: list[_Stored] = []
    try:
        for uploaded in files:
            stored.append(_store(uploaded, "files"))
        check_quota(owner, jobs=len(files), seconds=sum(item.probe.duration or 0.0 for item in stored))
        with transaction.atomic():
            batch = Batch.objects.create(options=options.model_dump(exclude={"wait", "callback_url"}),
                                         owner=owner, callback_url=chosen.callback_url)
            for item in stored:
                _queue(item.record(owner), chosen, item.job_id, batch)
    except BaseException:
        for item in stored:
            item.path.unlink(missing_ok=True)
        raise
    metrics.upload_accepted(sum(item.path.stat().st_size for item in stored))
    log.info("batch=%s event=queued files=%d", batch.id, len(stored))
    return batch


def retry(job: Job, options: TranscribeOptions | None = None) -> Job:
    """A new job on the same upload, with the old job's options or new ones; it belongs to the
    same owner and counts against their quota."""
    if options is None:
        options = TranscribeOptions(**job.options, model=job.model, engine=job.engine,
                                    callback_url=job.callback_url or None)
    if not job.upload.is_stored:
        raise ServiceError(410, f"the uploaded file of job {job.id} is no longer stored")
    chosen = plan(options, job.owner)
    check_quota(job.owner, jobs=1)
    check_quota(job.owner, jobs=1, seconds=job.upload.duration or 0.0)
    with transaction.atomic():
        return _queue(job.upload, chosen, uuid.uuid4())


def _queue(upload: Upload, chosen: Plan, job_id: uuid.UUID,
           batch: Batch | None = None, enqueue: bool = True) -> Job:
    """Create the job row; it is handed to the queue once the transaction commits."""
    job = Job.objects.create(
        id=job_id,
        upload=upload,
        batch=batch,
        model=chosen.model,
        engine=chosen.engine,
        spec_data=chosen.spec.model_dump(mode="json"),
        owner=chosen.owner,
        callback_url=chosen.callback_url,
    )
    if enqueue:
        transaction.on_commit(lambda: enqueue_job(job))
    log.info("job=%s event=queued file=%r size=%d model=%s engine=%s", job.id, upload.original_name,
             upload.size, chosen.model, chosen.engine)
    return job


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# --- waiting, cancelling, reading ----------------------------------------------------------------


def wait_for(job: Job, timeout: float, poll: float = 0.2) -> Job:
    """Block until the job reaches a final state or `timeout` seconds pass; returns it fresh.

    Returns early while the job is queued and no worker is alive to take it: a thread held for
    an hour for a job nobody runs helps no one."""
    deadline = time.monotonic() + timeout
    next_worker_check = 0.0
    while True:
        job.refresh_from_db()
        now = time.monotonic()
        if job.is_final or now >= deadline:
            return job
        if job.status == Job.Status.QUEUED and now >= next_worker_check:
            if not workers_available():
                return job
            next_worker_check = now + settings.JOB_HEARTBEAT_SECONDS
        time.sleep(min(poll, max(0.0, deadline - now)))
        poll = min(poll * 1.5, 0.3)  # a row read a third of a second: the answer is not held back


ALREADY = {
    Job.Status.CANCELLED: "job {id} was already cancelled",
    Job.Status.DONE: "job {id} is already done; there is nothing to cancel",
    Job.Status.FAILED: "job {id} already failed; there is nothing to cancel",
}


def cancel(job: Job) -> Job:
    try:
        job.cancel()
        log.info("job=%s event=cancel_requested", job.id)
    except TransitionError as exc:
        message = ALREADY.get(job.status, "{error}").format(id=job.id, error=exc)
        raise ServiceError(409, message) from None
    return job
