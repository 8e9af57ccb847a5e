"""Health: each dependency checked for real, and the model listing."""
from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .. import audio, engines, modelstore, speakers
from ..models import Job, Worker
from .recovery import NO_LIVE_WORKER, NO_WORKER

# --- health ----------------------------------------------------------------------------------------


def health() -> dict:
    """Check each dependency for real; `ok` is true only when all of them are usable."""
    checks: dict[str, dict] = {}

    def check(name: str, fn) -> None:
        try:
            checks[name] = {"ok": True, **(fn() or {})}
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
        alive = list(Worker.objects.alive().for_jobs())
        if not alive:  # not an error of this process: say so plainly, not as an exception
            return {"ok": False, "error": NO_WORKER, "alive": 0, "workers": []}
        running = {}
        for job_id, name in Job.objects.filter(status=Job.Status.RUNNING).values_list("pk", "worker"):
            running.setdefault(name, []).append(str(job_id))
        now = timezone.now()
        return {"alive": len(alive), "workers": [
            {"name": w.name, "threads": w.threads, "queue": w.queue, "started_at": w.started_at.isoformat(),
             "seen_seconds_ago": round((now - w.seen_at).total_seconds(), 1),
             "running_jobs": running.get(w.name, [])} for w in alive]}

    def live():
        from ..models import LiveSession

        if settings.LIVE_MAX_SESSIONS == 0:
            return {"enabled": False}  # turned off: nothing to be missing
        alive = list(Worker.objects.alive().for_live())
        report = {"enabled": True, "workers": len(alive), "places": sum(w.threads for w in alive),
                  "sessions": LiveSession.objects.active().count(), "max_sessions": settings.LIVE_MAX_SESSIONS}
        if not alive:
            return {"ok": False, "error": NO_LIVE_WORKER, **report}
        return report

    for name, fn in (("database", database), ("queue", queue), ("workers", workers), ("live", live),
                     ("ffmpeg", ffmpeg), ("engine", engine), ("models", models)):
        check(name, fn)
    failed = [name for name, c in checks.items() if not c["ok"]]
    # Without a worker the service still takes jobs (they wait), and without a live worker it
    # still does all but live sessions: degraded, not down.
    status = "ok" if not failed else "degraded" if set(failed) <= {"workers", "live"} else "error"
    return {"status": status, "checks": checks}


def models_listing() -> dict:
    return {
        "default": modelstore.default_model(),
        "engine": engines.resolve_engine_name(),
        "engines_available": engines.available_engines(),
        "models": modelstore.describe(),
        "diarization": speakers.describe(),
    }
