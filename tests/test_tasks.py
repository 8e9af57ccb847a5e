"""The Huey task in immediate mode and the job state machine it drives (logic, no consumer)."""
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from huey.contrib.djhuey import HUEY

from transcription import services
from transcription.models import Job, TransitionError
from transcription.schemas import TranscribeOptions
from transcription.tasks import transcribe_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def immediate():
    HUEY.immediate = True
    yield HUEY
    HUEY.immediate = False


def _job(clips, **options) -> Job:
    upload = SimpleUploadedFile("jfk.mp3", clips["mp3"].read_bytes())
    return services.create_job(upload, TranscribeOptions(language="en", model="base",
                                                         engine="ctranslate2", **options))


def test_task_runs_a_job_to_done_in_immediate_mode(immediate, clips):
    job = _job(clips)
    transcribe_job(str(job.id))
    job.refresh_from_db()
    assert job.status == "done" and job.progress == 100
    assert "ask not what your country" in job.result["text"].lower()
    assert job.conversion_seconds > 0 and job.inference_seconds > 0 and job.audio_duration == pytest.approx(11, abs=0.1)


def test_a_job_runs_only_once(immediate, clips):
    job = _job(clips)
    services.run_job(str(job.id))
    finished = Job.objects.get(pk=job.pk).finished_at
    services.run_job(str(job.id))  # a duplicate delivery is skipped
    assert Job.objects.get(pk=job.pk).finished_at == finished


def test_cancelled_job_is_not_run(clips):
    job = _job(clips)
    services.cancel(job)
    services.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == "cancelled" and job.result is None and job.started_at is None
    with pytest.raises(services.ServiceError) as exc:
        services.cancel(job)
    assert exc.value.status == 409


def test_audio_that_fails_to_decode_marks_the_job_failed_and_cleans_up(clips):
    job = _job(clips)
    # Replace the stored upload (probed fine) with bytes FFmpeg cannot decode.
    Path(settings.MEDIA_ROOT, job.upload.stored_path).write_bytes(b"\x00" * 1000)
    services.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "bad_audio"
    assert "could not" in job.error or "audio" in job.error
    assert not job.result_text_path
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob(f"job-{job.id}-*"))


def test_state_machine_refuses_illegal_moves(clips):
    job = _job(clips)
    job.start()
    with pytest.raises(TransitionError):
        job.start()  # two workers cannot both take it
    job.finish({"text": ""}, "b")
    for move in (lambda: job.start(), job.cancel, lambda: job.fail("x")):
        with pytest.raises(TransitionError):
            move()
    job.refresh_from_db()
    assert job.status == "done"


def test_retry_queues_a_new_job_on_the_same_upload_with_new_options(clips):
    job = _job(clips)
    again = services.retry(job, TranscribeOptions(language="auto", model="tiny.en", engine="ctranslate2"))
    assert again.pk != job.pk and again.upload_id == job.upload_id
    assert again.model == "tiny.en" and again.options["language"] == "auto"
    same = services.retry(job)
    assert same.model == "base" and same.options == job.options
    with pytest.raises(services.ServiceError, match="English-only"):
        services.retry(job, TranscribeOptions(language="de", model="tiny.en"))


def test_long_audio_is_transcribed_in_pieces_on_one_timeline(eval_dir, settings):
    from tests.conftest import manifest, normalise_words, wer

    settings.WHISPER_WINDOW_SECONDS = 25  # the 60 s reading becomes three pieces
    with open(eval_dir / "multilingual.mp3", "rb") as fh:
        upload = SimpleUploadedFile("multilingual.mp3", fh.read())
    job = services.create_job(upload, TranscribeOptions(language="en", model="base", engine="ctranslate2"))
    services.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == "done", job.error
    segments = job.result["segments"]
    assert [s["id"] for s in segments] == list(range(len(segments)))
    words = [w for s in segments for w in s["words"]]
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    assert words[-1]["end"] > 40  # the later pieces were moved onto the file's timeline
    english = manifest()["multilingual.mp3"]["reference"].split(":", 1)[1].split("The rest is a German")[0]
    n = len(normalise_words(english).split())
    assert wer(english, " ".join(normalise_words(job.result["text"]).split()[:n])) <= 0.15
