"""Progress people can trust: estimates from measured speed, a command-line bar that log lines do
not break, and result files kept with the configured permissions."""
import os
import re
import stat
import subprocess
import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tests.conftest import REPO, deployment_env
from transcription import services
from transcription.services import pipeline
from transcription.models import Job
from transcription.schemas import TranscribeOptions


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


def test_the_command_line_keeps_log_lines_off_the_bar_and_results_get_the_configured_mode(
        tmp_path, eval_dir):
    env = deployment_env(tmp_path / "data", LOG_LEVEL="INFO")
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, check=True, cwd=REPO)
    out = subprocess.run([sys.executable, str(REPO / "manage.py"), "transcribe", str(eval_dir / "jfk.flac"),
                          "--language", "en", "--model", "base", "--output-dir", str(tmp_path / "out")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    # The bar redraws with carriage returns; every log record must start a line of its own.
    pieces = re.split(r"[\r\n]", out.stderr)
    logs = [p for p in pieces if "event=" in p]
    assert logs and all(re.match(r"\d{4}-\d\d-\d\d ", p) for p in logs), logs
    assert any("jfk.flac" in p and "100 %" in p for p in pieces)
    # The job's own result files take FILE_UPLOAD_PERMISSIONS (0640), not the temp file's 0600.
    results = list((tmp_path / "data" / "media" / "results").iterdir())
    assert len(results) == 1 and all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in results)
    # What the command writes for the user is an ordinary new file: 0666 less the umask.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out" / "jfk.txt").stat().st_mode) == 0o666 & ~umask
