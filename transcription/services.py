"""Business rules: creating, running, waiting for and cancelling jobs; health and model listing.

Views, API handlers, admin actions, commands and tasks call these functions and nothing else.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import audio, engines, formats, modelstore
from .engines import Cancelled, DecodeOptions, EngineUnavailable, Transcript
from .languages import AUTO
from .models import Batch, Job, TransitionError, Upload, Worker
from .schemas import TranscribeOptions, parse_suppress_tokens, parse_temperature
from .uploads import check_extension, safe_name, shown_name

log = logging.getLogger("transcription")


class ServiceError(Exception):
    """A request the service refuses; `status` is the HTTP status, `message` says why."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


# --- choosing model, engine and decoding options ---------------------------------------------


@dataclass(frozen=True)
class Plan:
    model: str
    engine: str
    decode: DecodeOptions


def plan(options: TranscribeOptions) -> Plan:
    """Check the options against what is installed and what the engine can do."""
    installed = modelstore.installed_names()
    name = options.model or modelstore.default_model()
    if name is None:
        raise ServiceError(
            503, "no Whisper model is installed; run: python manage.py install_model base", "model"
        )
    if name not in modelstore.SPECS:
        raise ServiceError(
            422,
            f"unknown model {name!r}; installed models: {', '.join(installed) or 'none'}"
            f" (known: {', '.join(modelstore.NAMES)})",
            "model",
        )
    if name not in installed:
        raise ServiceError(
            422,
            f"model {name!r} is not installed; installed models: {', '.join(installed) or 'none'}."
            f" Install it with: python manage.py install_model {name}",
            "model",
        )
    try:
        engine_name = engines.resolve_engine_name(options.engine)
        engine = engines.get_engine(engine_name)
    except (ValueError, EngineUnavailable) as exc:
        raise ServiceError(422, str(exc), "engine") from None
    if engine_name not in modelstore.installed_engines(name):
        raise ServiceError(
            422,
            f"model {name!r} is installed for {', '.join(modelstore.installed_engines(name))} only,"
            f" not for the {engine_name} engine",
            "engine",
        )
    spec = modelstore.spec(name)
    language = None if options.language == AUTO else options.language
    if not spec.multilingual:
        if language not in (None, "en"):
            raise ServiceError(
                422, f"model {name!r} is English-only; use language=en or auto, or a multilingual model",
                "language",
            )
        if options.task == "translate":
            raise ServiceError(422, f"model {name!r} is English-only and cannot translate", "task")
    hst = options.hallucination_silence_threshold
    decode = DecodeOptions(
        language=language,
        task=options.task,
        word_timestamps=options.word_timestamps,
        condition_on_previous_text=options.condition_on_previous_text,
        no_speech_threshold=options.no_speech_threshold,
        hallucination_silence_threshold=hst if hst else None,
        beam_size=options.beam_size,
        best_of=options.best_of,
        patience=options.patience,
        length_penalty=options.length_penalty,
        temperature=parse_temperature(options.temperature),
        initial_prompt=options.initial_prompt or None,
        suppress_tokens=parse_suppress_tokens(options.suppress_tokens),
        without_timestamps=options.no_timestamps,
        compression_ratio_threshold=options.compression_ratio_threshold,
        logprob_threshold=options.logprob_threshold,
    )
    problems = engine.unsupported(decode)
    if problems:
        raise ServiceError(422, "; ".join(problems), "engine")
    return Plan(model=name, engine=engine_name, decode=decode)


def decode_options(job: Job) -> DecodeOptions:
    """Rebuild a job's decoding options from its stored request (validated on the way in)."""
    return plan(TranscribeOptions(**{**job.options, "model": job.requested_model,
                                     "engine": job.requested_engine})).decode


# --- creating a job ----------------------------------------------------------------------------


def _media(rel: str) -> Path:
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

    def record(self) -> Upload:
        return Upload.objects.create(
            original_name=self.name[:255], stored_path=self.rel, size=self.path.stat().st_size,
            content_type=self.content_type[:100], sha256=self.sha256, duration=self.probe.duration,
        )


def _store(uploaded: UploadedFile, field: str = "file") -> _Stored:
    """Move the streamed upload under MEDIA_ROOT and check that FFmpeg finds audio in it."""
    name = uploaded.name or ""
    job_id = uuid.uuid4()
    rel = f"uploads/{job_id}_{safe_name(name)}"
    target = _media(rel)
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


def create_job(uploaded: UploadedFile, options: TranscribeOptions, enqueue: bool = True) -> Job:
    """Validate the file and the options, store the upload, and queue a job for it.

    With enqueue=False the job is only recorded: the caller runs it itself (run_job)."""
    _check_file(uploaded)
    chosen = plan(options)
    stored = _store(uploaded)
    try:
        with transaction.atomic():
            return _queue(stored.record(), options, chosen, stored.job_id, enqueue=enqueue)
    except BaseException:
        stored.path.unlink(missing_ok=True)
        raise


MAX_BATCH_FILES = 100


def create_batch(files: list[UploadedFile], options: TranscribeOptions) -> Batch:
    """All files or none: each is checked and stored before any job is queued."""
    if not files:
        raise ServiceError(422, "send at least one file (field 'files')", "files")
    if len(files) > MAX_BATCH_FILES:
        raise ServiceError(422, f"at most {MAX_BATCH_FILES} files per batch", "files")
    for uploaded in files:
        _check_file(uploaded, "files")
    chosen = plan(options)
    stored: list[_Stored] = []
    try:
        for uploaded in files:
            stored.append(_store(uploaded, "files"))
        with transaction.atomic():
            batch = Batch.objects.create(options=options.model_dump(exclude={"wait"}))
            for item in stored:
                _queue(item.record(), options, chosen, item.job_id, batch)
    except BaseException:
        for item in stored:
            item.path.unlink(missing_ok=True)
        raise
    log.info("batch=%s event=queued files=%d", batch.id, len(stored))
    return batch


def batch_summary(batch: Batch) -> dict:
    """Aggregate status and progress of a batch's jobs."""
    jobs = list(batch.jobs.select_related("upload").order_by("created_at", "id"))
    counts = {status: 0 for status in Job.Status.values}
    for job in jobs:
        counts[job.status] += 1
    total = len(jobs)
    if counts["done"] == total:
        status = "done"
    elif counts["queued"] == total:
        status = "queued"
    elif counts["queued"] or counts["running"]:
        status = "running"
    elif counts["done"]:
        status = "partial"
    else:
        status = "failed"
    return {
        "batch_id": batch.id,
        "status": status,
        "progress": round(sum(j.progress for j in jobs) / total, 1) if total else 0.0,
        "counts": counts,
        "created_at": batch.created_at,
        "jobs": [{"job_id": j.id, "file": j.upload.original_name, "status": j.status,
                  "progress": j.progress, "error": j.error or None} for j in jobs],
    }


def retry(job: Job, options: TranscribeOptions | None = None) -> Job:
    """A new job on the same upload, with the old job's options or new ones."""
    if options is None:
        options = TranscribeOptions(**{**job.options, "model": job.requested_model,
                                       "engine": job.requested_engine})
    if not Path(settings.MEDIA_ROOT, job.upload.stored_path).is_file():
        raise ServiceError(410, f"the uploaded file of job {job.id} is no longer stored")
    chosen = plan(options)
    with transaction.atomic():
        return _queue(job.upload, options, chosen, uuid.uuid4())


def _queue(upload: Upload, options: TranscribeOptions, chosen: Plan, job_id: uuid.UUID,
           batch: Batch | None = None, enqueue: bool = True) -> Job:
    """Create the job row; it is handed to the queue once the transaction commits."""
    job = Job.objects.create(
        id=job_id,
        upload=upload,
        batch=batch,
        options=options.model_dump(exclude={"model", "engine", "wait"}),
        requested_model=chosen.model,
        requested_engine=chosen.engine,
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(job))
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


def _enqueue(job: Job) -> None:
    """Hand a committed job to Huey; if the queue is down, the job fails and the caller gets 503."""
    from .tasks import transcribe_job

    try:
        transcribe_job(str(job.id))
    except Exception as exc:  # Redis/SQLite errors of many classes: all mean "queue unavailable"
        reason = f"the job queue is unavailable ({type(exc).__name__}: {str(exc)[:200]})"
        try:
            job.fail(reason, "queue_unavailable")
        except TransitionError:
            pass
        log.error("job=%s event=enqueue_failed reason=%r", job.id, reason)
        raise ServiceError(503, f"{reason}; try again later") from None


# --- running a job (in the worker) ---------------------------------------------------------------


class _Progress:
    """Turns the engine's fraction decoded into throttled row updates with an estimate of the
    finish, and into the checkpoints where a job is cancelled or handed back."""

    def __init__(self, job: Job, audio_seconds: float, min_interval: float = 0.5) -> None:
        self.job = job
        self.min_interval = min_interval
        self.last_write = 0.0
        self.last_percent = -1.0
        self.began: float | None = None  # when decoding started (the first report)
        # Before this job has decoded anything: the speed recent jobs of this model measured.
        rtf = typical_rtf(job.model, job.engine)
        self.prior = audio_seconds * rtf if rtf is not None else None

    def __call__(self, fraction: float) -> None:
        if _stopping.is_set():  # the worker is shutting down: hand the job back at this boundary
            raise HandBack()
        now = time.monotonic()
        self.began = now if self.began is None else self.began
        fraction = max(0.0, min(1.0, fraction))
        percent = round(99.0 * fraction, 1)  # 100 only when the result exists
        if now - self.last_write < self.min_interval and percent - self.last_percent < 5:
            return
        self.last_write = now
        self.last_percent = percent
        if self.job.should_stop():
            raise Cancelled()
        self.job.set_progress(percent, self._finish(now, fraction))

    def _finish(self, now: float, fraction: float):
        """When decoding should end: from this job's own speed once it has one, else the prior."""
        elapsed = now - self.began
        if fraction >= 0.01 and elapsed > 0:
            remaining = elapsed * (1.0 - fraction) / fraction
        elif self.prior is not None:
            remaining = max(0.0, self.prior - elapsed)
        else:
            return None
        return timezone.now() + timedelta(seconds=remaining)


def typical_rtf(model: str, engine: str, recent: int = 20) -> float | None:
    """Median inference seconds per audio second of the last finished jobs of this model and
    engine on any worker (None before the first)."""
    rows = (Job.objects.filter(status=Job.Status.DONE, model=model, engine=engine, audio_duration__gt=5,
                               inference_seconds__isnull=False)
            .order_by("-finished_at").values_list("inference_seconds", "audio_duration")[:recent])
    ratios = sorted(inference / duration for inference, duration in rows)
    return ratios[len(ratios) // 2] if ratios else None


class HandBack(Exception):
    """Raised at a checkpoint of a running job when its worker is shutting down."""


# Set when this process stops taking work (stop_running_jobs): each running job gives itself
# back to the queue at its next checkpoint instead of being cut off mid-inference.
_stopping = threading.Event()
_running: set[str] = set()
_running_changed = threading.Condition()
_handed_back = 0  # jobs this process gave back to the queue while stopping


def run_job(job_id: str) -> None:
    """Convert, transcribe and store one queued job. Safe to call twice: only one run wins."""
    if _stopping.is_set():  # taken from the queue as the worker stops: leave it there
        _enqueue_quietly(job_id)
        return
    try:
        job = Job.objects.select_related("upload").get(pk=job_id)
    except Job.DoesNotExist:
        log.warning("job=%s event=missing", job_id)
        return
    try:
        job.start(engine=job.requested_engine, model=job.requested_model, worker=worker_id())
    except TransitionError as exc:
        log.info("job=%s event=skipped reason=%r", job_id, str(exc))
        return
    with _running_changed:
        _running.add(job_id)
    try:
        _run_started(job)
    finally:
        with _running_changed:
            _running.discard(job_id)
            _running_changed.notify_all()


def _run_started(job: Job) -> None:
    log.info("job=%s event=started model=%s engine=%s worker=%s attempt=%d", job.id, job.model,
             job.engine, job.worker, job.attempts)
    work = Path(tempfile.mkdtemp(prefix=f"job-{job.id}-", dir=settings.FILE_UPLOAD_TEMP_DIR))
    began = time.monotonic()
    heartbeat = _Heartbeat(job)
    try:
        _transcribe(job, work)
    except HandBack:
        _hand_back(job)
    except Cancelled:
        log.info("job=%s event=cancelled seconds=%.2f", job.id, time.monotonic() - began)
    except audio.AudioError as exc:
        _fail(job, str(exc), "bad_audio")
    except Exception as exc:  # the worker must outlive any one job; the row says what happened
        log.exception("job=%s event=error", job.id)
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        _fail(job, f"transcription failed: {type(exc).__name__}: {first_line}", "engine_error")
    finally:
        heartbeat.stop()
        shutil.rmtree(work, ignore_errors=True)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerPresence:
    """This consumer's row in the Worker table, refreshed by a side thread while it runs, so that
    /health, the admin and a synchronous request know whether any worker will take a job."""

    def __init__(self, threads: int, queue: str) -> None:
        self.name = worker_id()
        self.threads = threads
        self.queue = queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def __enter__(self) -> "WorkerPresence":
        self.beat()
        self._thread.start()
        log.info("event=worker_started worker=%s threads=%d queue=%s", self.name, self.threads, self.queue)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            Worker.objects.filter(name=self.name).delete()
        except Exception:  # the database is gone: the row goes stale, which says the same
            log.warning("event=worker_row_not_removed worker=%s", self.name, exc_info=True)
        finally:
            connection.close()

    def beat(self) -> None:
        host, _, pid = self.name.rpartition(":")
        Worker.objects.update_or_create(name=self.name, defaults={
            "host": host[:100], "pid": int(pid), "threads": self.threads, "queue": self.queue[:100],
            "seen_at": timezone.now()})

    def _run(self) -> None:
        while not self._stop.wait(settings.JOB_HEARTBEAT_SECONDS):
            try:
                engines.models.release_idle()  # models unused for WHISPER_MODEL_TTL
                self.beat()
            except Exception:  # a missed beat is not fatal; three in a row make the worker look gone
                log.warning("event=worker_heartbeat_failed worker=%s", self.name, exc_info=True)
            finally:
                connection.close()


def workers_available() -> bool:
    """Whether a job put in the queue now will be taken: a live consumer, or tasks run in-process."""
    from huey.contrib.djhuey import HUEY

    return HUEY.immediate or Worker.objects.alive().exists()


NO_WORKER = ("no worker is running, so the job waits in the queue until one starts"
             " (python manage.py run_huey, or make run)")


class _Heartbeat:
    """Refreshes the job's heartbeat from a side thread while the engine works."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(settings.JOB_HEARTBEAT_SECONDS):
                if not self.job.beat():
                    return
        except Exception:  # a missed beat is not fatal; the reaper's margin covers several
            log.warning("job=%s event=heartbeat_failed", self.job.id, exc_info=True)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def reap_stale_jobs() -> dict[str, int]:
    """Requeue running jobs whose worker stopped beating (killed, machine lost); after
    JOB_MAX_ATTEMPTS starts, fail them with the reason. Safe to run anywhere, any number of times."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0}
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    for job in stale:
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            reason = (f"the worker stopped responding during each of {job.attempts} attempts"
                      f" (last: {job.worker or 'unknown'}); giving up")
            if Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at
                                  ).update(status=Job.Status.FAILED, error=reason, error_code="worker_lost",
                                           finished_at=timezone.now()):
                counts["failed"] += 1
                log.warning("job=%s event=failed code=worker_lost attempts=%d", job.id, job.attempts)
            continue
        with transaction.atomic():
            if job.requeue(expected_heartbeat=job.heartbeat_at):
                transaction.on_commit(lambda job=job: _enqueue(job))
                counts["requeued"] += 1
                log.warning("job=%s event=requeued reason=stale_heartbeat worker=%s attempts=%d",
                            job.id, job.worker, job.attempts)
    counts["reenqueued"] = _reenqueue_lost_tasks()
    _remove_orphan_workdirs()
    return counts


def _reenqueue_lost_tasks() -> int:
    """Queued jobs whose task is no longer in the queue get it again: a Redis restarted without
    persistence, a deleted queue file or a queue shared by mistake with another deployment (whose
    consumer takes the task and finds no such job) would otherwise leave them queued for ever.
    Only jobs queued for JOB_STALE_SECONDS count, so an enqueue about to happen is not doubled;
    a doubled task would be harmless anyway (only one run can start a job)."""
    from huey.contrib.djhuey import HUEY

    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    waiting = list(Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=cutoff))
    if not waiting:
        return 0
    try:
        pending = {str(task.args[0]) for task in HUEY.pending() if task.args}
    except Exception as exc:  # the queue is down: nothing can be enqueued now; next round
        log.warning("event=reenqueue_skipped reason=%r", f"{type(exc).__name__}: {exc}"[:200])
        return 0
    count = 0
    for job in waiting:
        if str(job.pk) in pending:
            continue
        try:
            _enqueue(job)
        except ServiceError:
            continue  # _enqueue failed the job with the reason and logged it
        count += 1
        log.warning("job=%s event=reenqueued reason=task_lost", job.id)
    return count


def _remove_orphan_workdirs() -> None:
    """Temporary audio of jobs that no worker on this machine runs any more (after a crash)."""
    running = {str(pk) for pk in Job.objects.filter(status=Job.Status.RUNNING).values_list("pk", flat=True)}
    for path in Path(settings.FILE_UPLOAD_TEMP_DIR).glob("job-*"):
        job_id = path.name[len("job-"):len("job-") + 36]
        if job_id not in running:
            shutil.rmtree(path, ignore_errors=True)
            log.info("job=%s event=workdir_removed path=%s", job_id, path)


def _hand_back(job: Job) -> bool:
    """Give a job this process runs back to the queue, the interrupted attempt refunded."""
    me = worker_id()
    with transaction.atomic():
        if not job.requeue(worker=me, refund=True):
            return False
        transaction.on_commit(lambda: _enqueue(job))
    global _handed_back
    with _running_changed:
        _handed_back += 1
    log.warning("job=%s event=requeued reason=worker_shutdown worker=%s", job.id, me)
    return True


def _enqueue_quietly(job_id: str) -> None:
    try:
        job = Job.objects.get(pk=job_id, status=Job.Status.QUEUED)
        _enqueue(job)
    except (Job.DoesNotExist, ServiceError):
        pass  # gone, started elsewhere, or the queue is down (the reaper enqueues it later)


def stop_running_jobs(timeout: float) -> int:
    """At worker shutdown: every job this process runs gives itself back to the queue at its next
    checkpoint (each window of audio decoded); wait up to `timeout` seconds for them, so that no
    inference is cut off mid-call when the process exits. A job still running at the deadline is
    handed back here. Returns how many jobs went back to the queue."""
    before = _handed_back
    _stopping.set()
    deadline = time.monotonic() + timeout
    with _running_changed:
        while _running and time.monotonic() < deadline:
            _running_changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    for job in Job.objects.filter(status=Job.Status.RUNNING, worker=worker_id()):
        _hand_back(job)
    return _handed_back - before




def _fail(job: Job, reason: str, code: str) -> None:
    try:
        job.fail(reason, code)
        log.info("job=%s event=failed code=%s reason=%r", job.id, code, reason)
    except (TransitionError, Job.DoesNotExist):
        pass


def _transcribe(job: Job, work: Path) -> None:
    options = job.options
    source = _media(job.upload.stored_path)
    t0 = time.monotonic()
    samples = audio.convert(source, work / "audio.f32")
    conversion = time.monotonic() - t0
    duration = len(samples) / audio.SAMPLE_RATE
    trim = audio.Trim(0, len(samples))
    if options.get("remove_silence", True):
        trim = audio.find_speech_bounds(
            samples, options.get("silence_threshold", -60.0), options.get("silence_duration", 0.5)
        )
    job.record(conversion_seconds=conversion, audio_duration=duration, silence_offset=trim.offset)
    log.info("job=%s event=converted seconds=%.2f audio_seconds=%.2f trimmed_start=%.2f trimmed_end=%.2f",
             job.id, conversion, duration, trim.offset, (len(samples) - trim.end) / audio.SAMPLE_RATE)

    t1 = time.monotonic()
    transcript = _transcribe_pieces(job, samples, trim)
    inference = time.monotonic() - t1
    del samples

    result = build_result(job, transcript, trim.offset, duration,
                          {"conversion_seconds": conversion, "inference_seconds": inference})
    json_rel, text_rel = _write_results(job, result)
    try:
        job.finish(result, json_rel, text_rel, inference_seconds=inference,
                   language=transcript.language[:16],
                   language_probability=transcript.language_probability)
    except (TransitionError, Job.DoesNotExist):  # cancelled or deleted meanwhile: keep nothing
        for rel in (json_rel, text_rel):
            _media(rel).unlink(missing_ok=True)
        raise Cancelled() from None
    log.info("job=%s event=done model=%s engine=%s audio_seconds=%.2f conversion_seconds=%.2f"
             " inference_seconds=%.2f rtf=%.3f", job.id, job.model, job.engine, duration,
             conversion, inference, inference / duration if duration else 0.0)


def _transcribe_pieces(job: Job, samples, trim: audio.Trim) -> Transcript:
    """Run the engine over the kept audio, piece by piece for long files (bounded memory), with
    segments moved onto the uploaded file's timeline."""
    decode = decode_options(job)
    if trim.end <= trim.start:  # nothing above the silence threshold: nothing to say
        return Transcript(language=decode.language or "", language_probability=None, segments=[])
    engine = engines.get_engine(job.engine)
    model_path = modelstore.engine_dir(job.model, job.engine)
    pieces = audio.split_points(samples, trim.start, trim.end, settings.WHISPER_WINDOW_SECONDS)
    total = trim.end - trim.start
    progress = _Progress(job, total / audio.SAMPLE_RATE)
    segments: list = []
    language, probability = decode.language, None
    for first, last in pieces:
        # Each piece starts fresh but for the user's prompt, as batched Whisper pipelines do:
        # measured on the shared reading, feeding one piece's text to the next as its prompt made
        # the model skip the next piece's last sentence.
        options = replace(decode, language=language)
        done = first - trim.start
        piece = engine.transcribe(model_path, samples[first:last], options,
                                  lambda f, done=done, size=last - first: progress((done + f * size) / total))
        if decode.language is None and language is None:  # detected, in the first piece
            probability = piece.language_probability
        language = language or piece.language
        for seg in piece.segments:
            moved = seg.shifted(first / audio.SAMPLE_RATE)
            moved.id = len(segments)
            segments.append(moved)

    if len(pieces) > 1:
        log.info("job=%s event=transcribed pieces=%d", job.id, len(pieces))
    return Transcript(language=language or "", language_probability=probability, segments=segments)


def result_names(job: Job) -> tuple[str, str, str]:
    """(uploaded_file, result .txt, result .json) names, as the specification shapes them."""
    uploaded = Path(job.upload.stored_path).name
    stem = Path(uploaded).stem
    return uploaded, f"{stem}.txt", f"{stem}.json"


def build_result(job: Job, transcript, offset: float, duration: float, timings: dict) -> dict:
    uploaded, txt_name, _ = result_names(job)
    opts = job.options
    segments = []
    for seg in transcript.segments:  # already on the uploaded file's timeline
        row = {
            "id": seg.id,
            "start": round(seg.start, 3),
            "end": round(seg.end, 3),
            "text": seg.text.strip(),
            "seek": seg.seek,
            "tokens": seg.tokens,
            "avg_logprob": seg.avg_logprob,
            "no_speech_prob": seg.no_speech_prob,
            "compression_ratio": seg.compression_ratio,
            "temperature": seg.temperature,
        }
        if opts.get("word_timestamps") and seg.words is not None:
            row["words"] = [
                {"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word,
                 "probability": w.probability}
                for w in seg.words
            ]
        segments.append(row)
    result = {
        "text": transcript.text,
        "language": transcript.language,
        "language_probability": transcript.language_probability,
        "model": job.model,
        "engine": job.engine,
        "task": opts.get("task", "transcribe"),
        "word_timestamps": opts.get("word_timestamps", True),
        "condition_on_previous_text": opts.get("condition_on_previous_text", True),
        "no_speech_threshold": opts.get("no_speech_threshold"),
        "hallucination_silence_threshold": opts.get("hallucination_silence_threshold"),
        "segments": segments,
        "uploaded_file": uploaded,
        "result_file": txt_name,
        "job_id": str(job.id),
        "duration": round(duration, 3),
        "silence_offset": round(offset, 3),
        "options": {**opts, "model": job.model, "engine": job.engine},
        "timings": timings,
    }
    return formats.jsonable(result)


def _write_results(job: Job, result: dict) -> tuple[str, str]:
    _, txt_name, json_name = result_names(job)
    text_rel, json_rel = f"results/{txt_name}", f"results/{json_name}"
    mode = settings.FILE_UPLOAD_PERMISSIONS  # results are kept like uploads
    formats.write_atomic(_media(text_rel), formats.to_txt(result), mode)
    formats.write_atomic(_media(json_rel), formats.to_json(result), mode)
    return json_rel, text_rel


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
        poll = min(poll * 1.5, 1.0)


CONTENT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "json": "application/json; charset=utf-8",
}


def result_file(job: Job, fmt: str, subtitles: formats.SubtitleOptions | None = None
                ) -> tuple[str, str, str]:
    """(body, content type, download name) of a finished job's result in format `fmt`."""
    fmt = (fmt or "txt").lower()
    if fmt not in formats.WRITERS:
        raise ServiceError(422, f"unknown format {fmt!r}; choose one of {', '.join(formats.WRITERS)}",
                           "format")
    if job.status != Job.Status.DONE or not job.result:
        raise ServiceError(409, f"job {job.id} has no result (status: {job.status})")
    stem = Path(job.upload.original_name).stem or "transcript"
    return formats.WRITERS[fmt](job.result, subtitles), CONTENT_TYPES[fmt], f"{stem}.{fmt}"


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


# --- deleting -----------------------------------------------------------------------------------------


def media_path(rel: str) -> Path | None:
    """The file a stored relative path names, if it lies inside MEDIA_ROOT."""
    if not rel:
        return None
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / rel).resolve()
    return path if root in path.parents else None


def _job_files(job: Job) -> list[Path]:
    return [p for p in (media_path(job.result_json_path), media_path(job.result_text_path)) if p]


def _unlink_after_commit(paths: list[Path]) -> None:
    """Remove files once the rows are gone for good; a rolled-back delete keeps them."""
    def unlink() -> None:
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("event=file_delete_failed path=%s error=%r", path, str(exc))
        log.info("event=files_deleted count=%d", len(paths))

    transaction.on_commit(unlink)


def _stop(jobs) -> None:
    """Cancel jobs still queued or running, so no worker writes files for a deleted row."""
    for job in jobs:
        if job.status in (Job.Status.QUEUED, Job.Status.RUNNING):
            try:
                cancel(job)
            except ServiceError:
                pass  # it finished meanwhile


def delete_jobs(jobs) -> None:
    """Delete jobs and their result files, and each upload (with its audio) no other job uses."""
    jobs = list(jobs.select_related("upload")) if hasattr(jobs, "select_related") else list(jobs)
    _stop(jobs)
    files = [path for job in jobs for path in _job_files(job)]
    upload_ids = {job.upload_id for job in jobs}
    with transaction.atomic():
        Job.objects.filter(pk__in=[job.pk for job in jobs]).delete()
        orphans = list(Upload.objects.filter(pk__in=upload_ids, jobs__isnull=True))
        files += [p for p in (media_path(u.stored_path) for u in orphans) if p]
        Upload.objects.filter(pk__in=[u.pk for u in orphans]).delete()
        _unlink_after_commit(files)


def delete_uploads(uploads) -> None:
    """Delete uploads, their audio files, their jobs and the jobs' result files."""
    uploads = list(uploads)
    jobs = list(Job.objects.filter(upload__in=uploads))
    _stop(jobs)
    files = [p for p in (media_path(u.stored_path) for u in uploads) if p]
    files += [path for job in jobs for path in _job_files(job)]
    with transaction.atomic():
        Upload.objects.filter(pk__in=[u.pk for u in uploads]).delete()
        _unlink_after_commit(files)



# --- housekeeping ----------------------------------------------------------------------------------


def purge(older_than: timedelta, apply: bool = False) -> dict:
    """Uploads whose jobs all ended before now - older_than: their files and rows.

    Dry run unless `apply`; queued or running work is never touched."""
    cutoff = timezone.now() - older_than
    busy = Job.objects.filter(status__in=(Job.Status.QUEUED, Job.Status.RUNNING)).values("upload_id")
    recent = Job.objects.filter(created_at__gte=cutoff).values("upload_id")
    uploads = list(Upload.objects.filter(created_at__lt=cutoff).exclude(pk__in=busy).exclude(pk__in=recent)
                   .prefetch_related("jobs"))
    files = [p for u in uploads for p in [media_path(u.stored_path)] + [f for j in u.jobs.all() for f in _job_files(j)]
             if p is not None and p.is_file()]
    report = {"uploads": len(uploads), "jobs": sum(len(u.jobs.all()) for u in uploads),
              "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    if apply:
        delete_uploads(uploads)
        Batch.objects.filter(jobs__isnull=True, created_at__lt=cutoff).delete()
        log.info("event=purged uploads=%d files=%d", report["uploads"], report["files"])
    return report


# --- health ----------------------------------------------------------------------------------------


def health() -> dict:
    """Check each dependency for real; `ok` is true only when all of them are usable."""
    checks: dict[str, dict] = {}

    def check(name: str, fn) -> None:
        try:
            checks[name] = {"ok": True, **(fn() or {})}
        except NoWorker as exc:
            checks[name] = {"ok": False, "error": str(exc), "alive": 0, "workers": []}
        except Exception as exc:  # report, never raise: this is the page that says what is broken
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}

    def database():
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        return {"vendor": connection.vendor}

    def queue():
        from huey.contrib.djhuey import HUEY

        return {"backend": type(HUEY).__name__, "pending": HUEY.pending_count(),
                "immediate": HUEY.immediate}

    def ffmpeg():
        version = audio.ffmpeg_version()
        if not version:
            raise RuntimeError(f"{audio.ffmpeg_binary()} -version failed")
        return {"binary": audio.ffmpeg_binary(), "version": version}

    def engine():
        chosen = engines.resolve_engine_name()
        engines.get_engine(chosen)
        return {"default": chosen, "available": engines.available_engines()}

    def models():
        installed = modelstore.installed_names()
        if not installed:
            raise RuntimeError("no model installed; run: python manage.py install_model base")
        return {"installed": installed, "default": modelstore.default_model()}

    def workers():
        from huey.contrib.djhuey import HUEY

        if HUEY.immediate:
            return {"alive": 0, "immediate": True, "workers": []}
        alive = list(Worker.objects.alive())
        if not alive:
            raise NoWorker(NO_WORKER)
        running = {}
        for job_id, name in Job.objects.filter(status=Job.Status.RUNNING).values_list("pk", "worker"):
            running.setdefault(name, []).append(str(job_id))
        now = timezone.now()
        return {"alive": len(alive), "workers": [
            {"name": w.name, "threads": w.threads, "queue": w.queue, "started_at": w.started_at.isoformat(),
             "seen_seconds_ago": round((now - w.seen_at).total_seconds(), 1),
             "running_jobs": running.get(w.name, [])} for w in alive]}

    for name, fn in (("database", database), ("queue", queue), ("workers", workers), ("ffmpeg", ffmpeg),
                     ("engine", engine), ("models", models)):
        check(name, fn)
    failed = [name for name, c in checks.items() if not c["ok"]]
    # Without a worker the service still takes jobs (they wait): degraded, not down.
    status = "ok" if not failed else "degraded" if failed == ["workers"] else "error"
    return {"status": status, "checks": checks}


class NoWorker(RuntimeError):
    """No queue consumer has announced itself recently."""


def models_listing() -> dict:
    return {
        "default": modelstore.default_model(),
        "engine": engines.resolve_engine_name(),
        "engines_available": engines.available_engines(),
        "models": modelstore.describe(),
    }

