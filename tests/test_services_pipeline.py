"""The pipeline: estimates from measured speed, and a running job stopped within seconds by a
cancel or a delete, leaving no files."""
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tests.conftest import ffmpeg, post_file
from transcription import services
from transcription.models import Job
from transcription.schemas import TranscribeOptions
from transcription.services import pipeline


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def running(clips, monkeypatch):
    """A running job whose progress reports are timed by a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(pipeline.time, "monotonic", clock)
    job = services.create_job(SimpleUploadedFile("jfk.mp3", clips["mp3"].read_bytes()),
                              TranscribeOptions(language="en", model="base", engine="ctranslate2"))
    job.start(worker=services.worker_id())
    return job, clock


def _done(seconds: float, inference: float, model: str = "base") -> None:
    Job.objects.create(upload=Job.objects.first().upload, status="done", model=model, engine="ctranslate2",
                       audio_duration=seconds, inference_seconds=inference, finished_at=timezone.now())


@pytest.mark.django_db
def test_the_estimate_is_this_jobs_own_speed_since_decoding_began(running):
    job, clock = running
    report = pipeline._Progress(job, audio_seconds=600)
    clock.now += 25  # loading the model and converting: not decoding speed
    report(0.0)
    job.refresh_from_db()
    assert job.eta_seconds is None  # nothing measured yet, no history: no guess
    clock.now += 10
    report(0.25)  # a quarter in 10 s of decoding: 30 s left, not (25 + 10) * 3 = 105 s
    job.refresh_from_db()
    assert job.progress == pytest.approx(24.8) and job.eta_seconds == pytest.approx(30, abs=1)


@pytest.mark.django_db
def test_before_the_first_window_the_estimate_comes_from_recent_jobs_of_the_model(running):
    job, clock = running
    for rtf in (0.10, 0.12, 0.50):  # median 0.12
        _done(100, 100 * rtf)
    _done(100, 90, model="large")  # another model's speed says nothing about this one
    report = pipeline._Progress(job, audio_seconds=600)
    report(0.0)
    job.refresh_from_db()
    assert job.eta_seconds == pytest.approx(72, abs=1)


@pytest.mark.django_db
def test_the_estimate_is_gone_once_the_job_is_not_running(running):
    job, clock = running
    report = pipeline._Progress(job, audio_seconds=60)
    report(0.0)
    clock.now += 5
    report(0.5)
    job.refresh_from_db()
    assert job.eta_seconds == pytest.approx(5, abs=1)
    job.cancel()
    job.refresh_from_db()
    assert job.eta_seconds is None


def _job(clips, **options) -> Job:
    upload = SimpleUploadedFile("jfk.mp3", clips["mp3"].read_bytes())
    return services.create_job(upload, TranscribeOptions(language="en", model="base",
                                                         engine="ctranslate2", **options))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_job_stops_it_within_seconds(service, eval_dir, tmp_path):
    # 4 minutes (the mixed recording four times): decoding it takes long enough, on any engine build,
    # that the job is still inside inference when the cancel comes
    long = tmp_path / "multilingual-x4.mp3"
    ffmpeg("-stream_loop", "3", "-i", str(eval_dir / "multilingual.mp3"), "-c", "copy", str(long))
    resp = post_file(service, long, language="de", model="base",
                     engine="ctranslate2", wait=False, remove_silence=False)
    url = resp.json()["url"]
    deadline = time.monotonic() + 60
    while (job := requests.get(url, timeout=10).json())["progress"] <= 0 and time.monotonic() < deadline:
        assert job["status"] in ("queued", "running"), job  # until it is inside inference
        time.sleep(0.05)
    cancelled_at = time.monotonic()
    assert requests.post(f"{url}/cancel", timeout=10).json()["status"] == "cancelled"
    log = Path(settings.DATA_DIR) / "worker.log"
    job_id = resp.json()["job_id"]
    while f"job={job_id} event=cancelled" not in log.read_text() and time.monotonic() - cancelled_at < 40:
        time.sleep(0.1)
    stopped_after = time.monotonic() - cancelled_at
    assert f"job={job_id} event=cancelled" in log.read_text()
    # It stops at the checkpoint before its next model call (a batch of eight windows took up to
    # 10 s on 2 idle cores); without checkpoints inside a window's fallbacks, decoding one German
    # window of this recording alone took 52 s, and the whole file over 2 minutes.
    assert stopped_after < 20, stopped_after
    job = requests.get(url, timeout=10).json()
    assert job["status"] == "cancelled" and job["result"] is None
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"job-{job_id}-*"))
    assert requests.post(f"{url}/cancel", timeout=10).status_code == 409


@pytest.mark.django_db(transaction=True)
def test_a_job_deleted_while_it_runs_stops_and_leaves_no_files(eval_dir):
    import threading

    with open(eval_dir / "multilingual.mp3", "rb") as fh:
        upload = SimpleUploadedFile("multilingual.mp3", fh.read())
    job = services.create_job(upload, TranscribeOptions(language="de", model="base", engine="ctranslate2"),
                              enqueue=False)
    errors = []

    def run():
        try:
            services.run_job(str(job.id))
        except Exception as exc:  # the worker must not crash on a vanished row
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not Job.objects.filter(pk=job.pk, status="running").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.delete_jobs(Job.objects.filter(pk=job.pk))
    worker.join(timeout=120)
    assert not worker.is_alive() and errors == []
    assert not Job.objects.filter(pk=job.pk).exists()
    results = Path(settings.MEDIA_ROOT) / "results"
    assert not list(results.glob(f"{job.id}_*")) if results.exists() else True
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"job-{job.id}-*"))
