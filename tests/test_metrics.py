"""GET /metrics: scraped over live HTTP while a real worker runs real jobs, the counters move as
they should; two web processes add up to one machine's figures; only loopback or the token may
scrape; the Grafana dashboard asks only for metrics that exist."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, post_file, start_process, stop_process
from transcription.models import Job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def scrape(base: str, **headers) -> dict[tuple[str, tuple], float]:
    answer = requests.get(f"{base}/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_counters_move_as_real_jobs_run(service, clips, eval_dir):
    before = scrape(service)
    jfk = clips["wav"]
    answer = post_file(service, jfk, model="tiny.en", language="en")
    assert answer.status_code == 200, answer.text
    refused = post_file(service, clips["txt"])  # not an accepted type
    assert refused.status_code == 415
    empty = post_file(service, clips["empty"])
    assert empty.status_code == 400
    queued = post_file(service, clips["wav"], model="tiny.en", language="en", wait=False)
    requests.post(f"{service}/job/{queued.json()['job_id']}/cancel", timeout=30)
    after = scrape(service)

    job = Job.objects.filter(status="done").latest("finished_at")
    model = {"model": "tiny.en", "engine": job.engine}
    assert moved(before, after, "stt_jobs_finished_total", status="done", error_code="") == 1
    assert moved(before, after, "stt_jobs_finished_total", status="cancelled", error_code="") >= 1
    assert moved(before, after, "stt_audio_seconds_total", **model) == pytest.approx(job.audio_duration, abs=0.01)
    assert moved(before, after, "stt_inference_seconds_count", **model) == 1
    assert moved(before, after, "stt_inference_seconds_sum", **model) == pytest.approx(job.inference_seconds, rel=1e-3)
    assert moved(before, after, "stt_conversion_seconds_count", engine=job.engine) == 1
    assert moved(before, after, "stt_real_time_factor_count", **model) == 1
    accepted = jfk.stat().st_size * 2  # the done job and the cancelled one were both accepted
    assert moved(before, after, "stt_upload_bytes_total", via="upload") == accepted
    assert moved(before, after, "stt_uploads_refused_total", reason="unsupported_type") == 1
    assert moved(before, after, "stt_uploads_refused_total", reason="empty_or_malformed") == 1
    http = dict(method="POST", route="/transcribe")
    assert moved(before, after, "stt_http_request_duration_seconds_count", status="2xx", **http) == 2
    assert moved(before, after, "stt_http_request_duration_seconds_count", status="4xx", **http) == 2
    # and the state, read at the scrape
    assert value(after, "stt_jobs", status="done", error_code="") == Job.objects.filter(status="done").count()
    assert value(after, "stt_workers_alive", kind="jobs") >= 1
    assert value(after, "stt_queue_depth") >= 0
    assert ("stt_live_sessions_active", ()) in after


def test_model_loads_and_evictions_are_counted(settings, tmp_path):
    from transcription import metrics
    from transcription.engines.cache import ModelCache

    def counts():
        text = metrics.exposition()[0].decode()
        found = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.labels.get("model") == "whisper-test-fake" or s.labels.get("model") == "test-fake":
                    found[s.name] = s.value
        return found

    before = counts()
    settings.WHISPER_MODEL_TTL = 0.001
    cache = ModelCache()
    key = ("ctranslate2", str(tmp_path / "whisper-test-fake" / "ctranslate2"), "cpu", "int8")
    with cache.use(key, object):
        pass
    import time

    deadline = time.monotonic() + 5
    while not cache.release_idle() and time.monotonic() < deadline:
        pass  # the TTL is a millisecond: the next call releases it
    after = counts()
    assert after.get("stt_model_loads_total", 0) - before.get("stt_model_loads_total", 0) == 1
    assert after.get("stt_model_evictions_total", 0) - before.get("stt_model_evictions_total", 0) == 1


def test_two_web_processes_add_up_to_one_machines_figures(django_db_setup, tmp_path):
    """uvicorn with two workers: whichever process answers a scrape, it counts both's requests."""
    from tests.processes import free_port, wait_up
    from transcription.management.commands.serve import web_command

    port = free_port()
    metrics_dir = tmp_path / "metrics"
    proc = start_process([*web_command("127.0.0.1", str(port)), "--workers", "2"], f"metrics-web-{port}.log",
                         PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), METRICS_DIR=str(metrics_dir))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/health", healthy=False)
        for _ in range(60):  # new connections: the kernel shares them between the two processes
            with requests.Session() as fresh:
                fresh.get(f"{base}/models", timeout=30)
        served = _served_by_process(metrics_dir, "/models")
        assert len(served) == 2 and sum(served.values()) == 60, served  # both answered some
        for _ in range(6):  # whichever process answers the scrape, it counts all 60
            with requests.Session() as fresh:
                samples = scrape(base)
            assert value(samples, "stt_http_request_duration_seconds_count", method="GET", route="/models",
                         status="2xx") == 60
    finally:
        stop_process(proc)


def _served_by_process(folder: Path, route: str) -> dict[str, float]:
    """Requests each process answered on `route`, from its own file."""
    from prometheus_client.mmap_dict import MmapedDict

    served = {}
    for path in folder.glob("histogram_*.db"):
        # a process keeps each bucket's own count (made cumulative at the scrape): their sum is its total
        count = sum(v for key, v, *_ in MmapedDict.read_all_values_from_file(str(path))
                    if '"stt_http_request_duration_seconds_bucket"' in key and f'"{route}"' in key)
        if count:
            served[path.stem.rsplit("_", 1)[1]] = count
    return served


def test_only_loopback_or_the_token_may_scrape(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403 and "METRICS_TOKEN" in refused.content.decode()
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    from ipaddress import ip_network

    settings.METRICS_ALLOWED_NETWORKS = [ip_network("203.0.113.0/24")]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    settings.METRICS_ALLOWED_NETWORKS = []  # behind a proxy on the same machine: the token only
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_a_bad_allow_list_stops_the_start_with_a_message():
    import subprocess

    done = subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], cwd=REPO, capture_output=True,
                          text=True, env={**__import__("os").environ, "METRICS_ALLOWED_ADDRESSES": "10.0.0.0/33"})
    assert done.returncode != 0 and "METRICS_ALLOWED_ADDRESSES" in done.stderr


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist():
    from transcription import metrics

    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exposed = {name + suffix for name in metrics.NAMES for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    asked = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            asked |= set(re.findall(r"\b(stt_[a-z_]+)", target["expr"]))
    assert asked and asked <= exposed, asked - exposed
    # and every family the module defines is on the dashboard
    assert {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in asked} >= {
        n.removesuffix("_total") for n in metrics.NAMES}


def test_a_process_that_records_nothing_leaves_no_file(tmp_path):
    import os
    import subprocess

    folder = tmp_path / "metrics"
    done = subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder),
                                          "METRICS_DIR": str(folder)})
    assert done.returncode == 0, done.stderr
    assert folder.is_dir() and not any(folder.iterdir())
