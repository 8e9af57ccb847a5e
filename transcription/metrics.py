"""Prometheus metrics: what happened (counters and histograms, recorded by the process where it
happened: web, job worker or live worker) and how things stand (gauges, read from the database and
the queue when /metrics is scraped).

Every process of one machine writes its counters to files in METRICS_DIR (prometheus_client's
multi-process mode: gunicorn or uvicorn workers, run_huey, run_live), and /metrics adds them up, so
a scrape sees the whole machine whichever web process answers it. The folder must be set before
prometheus_client is first imported, which is why this module sets it and is the only one that
imports the library."""
from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

from django.conf import settings

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.METRICS_DIR))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,  # noqa: E402
                               generate_latest, multiprocess)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RATIOS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)

JOBS_FINISHED = Counter("stt_jobs_finished_total", "Jobs that reached a final state, by status and error code",
                        ["status", "error_code"])
AUDIO_SECONDS = Counter("stt_audio_seconds_total", "Seconds of audio transcribed (finished jobs)",
                        ["model", "engine"])
INFERENCE = Histogram("stt_inference_seconds", "Inference time of a finished job", ["model", "engine"],
                      buckets=SECONDS)
CONVERSION = Histogram("stt_conversion_seconds", "FFmpeg conversion time of a finished job", ["engine"],
                       buckets=SECONDS)
RTF = Histogram("stt_real_time_factor", "Inference seconds per second of audio, per finished job",
                ["model", "engine"], buckets=RATIOS)
MODEL_LOADS = Counter("stt_model_loads_total", "Models loaded into a worker", ["engine", "model"])
MODEL_EVICTIONS = Counter("stt_model_evictions_total", "Models a worker let go (idle too long, or over the limit)",
                          ["engine", "model"])
UPLOAD_BYTES = Counter("stt_upload_bytes_total", "Bytes of files accepted (that became jobs)", ["via"])
# Every metric has labels: a labelled metric writes its file only once something is recorded, so a
# process that records nothing (manage.py migrate, a shell) leaves nothing behind in METRICS_DIR.
UPLOADS_REFUSED = Counter("stt_uploads_refused_total", "Uploads refused, by reason", ["reason"])
HTTP_SECONDS_HIST = Histogram("stt_http_request_duration_seconds", "Time to answer an HTTP request, by route",
                              ["method", "route", "status"], buckets=HTTP_SECONDS)


# --- recording (each process, as things happen) ---------------------------------------------------


def job_ended(sender, job, **kwargs) -> None:
    """models.job_ended: count the job, and for a finished one, its audio and times."""
    JOBS_FINISHED.labels(job.status, job.error_code or "").inc()
    if job.status != "done":
        return
    if job.audio_duration:
        AUDIO_SECONDS.labels(job.model, job.engine).inc(job.audio_duration)
    if job.inference_seconds is not None:
        INFERENCE.labels(job.model, job.engine).observe(job.inference_seconds)
    if job.conversion_seconds is not None:
        CONVERSION.labels(job.engine).observe(job.conversion_seconds)
    if job.rtf is not None:
        RTF.labels(job.model, job.engine).observe(job.rtf)


def model_key(key) -> tuple[str, str]:
    """(engine, model) from a model cache key: (engine, model folder, ...)."""
    if not isinstance(key, tuple) or len(key) < 2:
        return "", str(key)[:50]
    engine, folder = str(key[0]), Path(str(key[1]))
    name = folder.parent.name if folder.name == "ctranslate2" else folder.name
    return engine, name.removeprefix("whisper-")


def model_loaded(key) -> None:
    MODEL_LOADS.labels(*model_key(key)).inc()


def model_evicted(key) -> None:
    MODEL_EVICTIONS.labels(*model_key(key)).inc()


def upload_accepted(size: int, via: str = "upload") -> None:
    UPLOAD_BYTES.labels(via).inc(size)


REFUSAL_REASONS = {400: "empty_or_malformed", 413: "too_large", 415: "unsupported_type", 422: "invalid",
                   429: "quota"}


def upload_refused(status: int) -> None:
    UPLOADS_REFUSED.labels(REFUSAL_REASONS.get(status, str(status))).inc()


class RequestTimer:
    """Middleware: the time each request took, by method, route pattern (not the path: ids would
    make a series each) and status class."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        began = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = ("/" + match.route) if match is not None and match.route else "unmatched"
        HTTP_SECONDS_HIST.labels(request.method, route[:100], f"{response.status_code // 100}xx").observe(
            time.perf_counter() - began)
        return response


# --- the scrape -----------------------------------------------------------------------------------


class StateCollector:
    """Gauges read when scraped: jobs by status and error code, the queue, workers, live sessions."""

    def collect(self):
        from django.db.models import Count

        from .models import Job, LiveSession, Worker

        jobs = GaugeMetricFamily("stt_jobs", "Jobs kept, by status and error code", labels=["status", "error_code"])
        for row in Job.objects.values("status", "error_code").annotate(n=Count("id")).order_by():
            jobs.add_metric([row["status"], row["error_code"] or ""], row["n"])
        yield jobs
        depth = GaugeMetricFamily("stt_queue_depth", "Tasks waiting in the jobs' queue")
        depth.add_metric([], _pending())
        yield depth
        workers = GaugeMetricFamily("stt_workers_alive", "Workers with a recent heartbeat", labels=["kind"])
        alive = Worker.objects.alive()
        workers.add_metric(["jobs"], alive.for_jobs().count())
        workers.add_metric(["live"], alive.for_live().count())
        yield workers
        live = GaugeMetricFamily("stt_live_sessions_active", "Live sessions waiting or running")
        live.add_metric([], LiveSession.objects.active().count())
        yield live


def _pending() -> float:
    from huey.contrib.djhuey import HUEY

    try:
        return float(HUEY.pending_count())
    except Exception:  # the queue down: /health says so; the scrape still answers
        return float("nan")


NAMES = ("stt_jobs", "stt_queue_depth", "stt_workers_alive", "stt_live_sessions_active", *(
    m._name for m in (JOBS_FINISHED, AUDIO_SECONDS, INFERENCE, CONVERSION, RTF, MODEL_LOADS, MODEL_EVICTIONS,
                      UPLOAD_BYTES, UPLOADS_REFUSED, HTTP_SECONDS_HIST)))  # every family /metrics can show


def exposition() -> tuple[bytes, str]:
    """The machine's metrics in Prometheus' text format, and its content type."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(StateCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def allowed(request) -> bool:
    """Loopback (METRICS_ALLOWED_ADDRESSES) or the metrics token (METRICS_TOKEN) may scrape."""
    import hmac

    token = settings.METRICS_TOKEN
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


def view(request):
    """GET /metrics: for Prometheus (text format); 403 to anyone not allowed to scrape."""
    from django.http import HttpResponse

    if not allowed(request):
        return HttpResponse("metrics are open to the addresses in METRICS_ALLOWED_ADDRESSES (default: loopback)"
                            " and to 'Authorization: Bearer <METRICS_TOKEN>'\n", status=403,
                            content_type="text/plain; charset=utf-8")
    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)
