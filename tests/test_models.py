"""The job's state machine and the values derived on the models, read as their specification."""
from datetime import timedelta

import pytest
from django.utils import timezone

from transcription.models import Batch, Job, TransitionError, Upload
from transcription.spec import JobSpec

pytestmark = pytest.mark.django_db


@pytest.fixture
def upload(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "a.wav").write_bytes(b"RIFF")
    return Upload.objects.create(original_name="a.wav", stored_path="uploads/a.wav", size=4, sha256="x",
                                 duration=10.0)


def _job(upload, **fields) -> Job:
    return Job.objects.create(upload=upload, **fields)


def test_a_job_starts_once_even_when_two_workers_try(upload):
    job = _job(upload)
    job.start(worker="a:1")
    other = Job.objects.get(pk=job.pk)
    with pytest.raises(TransitionError):
        other.start(worker="b:2")
    assert Job.objects.get(pk=job.pk).worker == "a:1" and job.attempts == 1


def test_nothing_leaves_done(upload):
    job = _job(upload)
    job.start()
    job.finish({"text": ""}, "")
    for move in (job.cancel, lambda: job.fail("late"), lambda: job.start()):
        with pytest.raises(TransitionError):
            move()
    assert Job.objects.get(pk=job.pk).status == "done"


def test_a_requeue_or_give_up_loses_to_a_heartbeat_that_came_since(upload):
    job = _job(upload)
    job.start(worker="a:1")
    seen = job.heartbeat_at - timedelta(seconds=1)  # what a reaper read before the last beat
    assert job.requeue(expected_heartbeat=seen) is False
    with pytest.raises(TransitionError):
        job.fail("gone", Job.ErrorCode.WORKER_LOST, expected_heartbeat=seen)
    job.fail("gone", Job.ErrorCode.WORKER_LOST, expected_heartbeat=job.heartbeat_at)
    assert Job.objects.get(pk=job.pk).error_code == "worker_lost"


def test_a_handed_back_job_has_its_attempt_refunded_and_no_estimate(upload):
    job = _job(upload)
    job.start(worker="a:1")
    job.set_progress(40, timezone.now() + timedelta(seconds=30))
    assert job.requeue(worker="b:2", refund=True) is False  # only its own worker hands it back
    assert job.requeue(worker="a:1", refund=True) is True
    job.refresh_from_db()
    assert (job.status, job.attempts, job.progress, job.eta_seconds) == ("queued", 0, 0.0, None)


def test_the_failure_status_is_the_inputs_fault_or_ours(upload):
    assert _job(upload, status="failed", error_code="bad_audio").failure_status == 422
    for code in ("engine_error", "worker_lost", "queue_unavailable"):
        assert _job(upload, status="failed", error_code=code).failure_status == 500


def test_duration_and_real_time_factor(upload):
    job = _job(upload)
    assert job.duration == 10.0 and job.rtf is None  # the probe's figure until the worker decodes
    job.audio_duration, job.inference_seconds = 8.0, 2.0
    assert job.duration == 8.0 and job.rtf == 0.25


def test_a_stored_path_outside_media_root_is_never_followed(upload):
    assert upload.path.name == "a.wav" and upload.is_stored
    upload.stored_path = "../../etc/passwd"
    assert upload.path is None and not upload.is_stored


@pytest.mark.parametrize("statuses,expected", [
    (["queued", "queued"], "queued"), (["queued", "running"], "running"), (["done", "queued"], "running"),
    (["done", "done"], "done"), (["done", "failed"], "partial"), (["done", "cancelled"], "partial"),
    (["failed", "cancelled"], "failed"),
])
def test_a_batchs_status_follows_its_jobs(upload, statuses, expected):
    batch = Batch.objects.create()
    for status in statuses:
        _job(upload, batch=batch, status=status)
    assert batch.status == expected
    assert sum(batch.counts().values()) == len(statuses)


@pytest.mark.django_db(transaction=True)
def test_existing_jobs_migrate_to_the_typed_spec_and_back():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("transcription", "0007_error_codes")], [("transcription", "0008_job_spec")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Upload, Job = apps.get_model("transcription", "Upload"), apps.get_model("transcription", "Job")
    upload = Upload.objects.create(original_name="a.wav", stored_path="uploads/a.wav", size=1, sha256="x")
    old = Job.objects.create(upload=upload, requested_model="small", requested_engine="mlx", options={
        "language": "auto", "task": "translate", "temperature": "0.0,0.5", "suppress_tokens": "-1,50363",
        "hallucination_silence_threshold": 0, "beam_size": 3, "remove_silence": False})  # older rows lack keys
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        job = executor.loader.project_state(after).apps.get_model("transcription", "Job").objects.get(pk=old.pk)
        spec = JobSpec.model_validate(job.spec_data)
        assert (job.model, job.engine) == ("small", "mlx")
        assert spec.decode.language is None and spec.decode.task == "translate" and spec.decode.beam_size == 3
        assert spec.decode.temperature == (0.0, 0.5) and spec.decode.suppress_tokens == (-1, 50363)
        assert spec.decode.hallucination_silence_threshold is None and spec.silence.remove is False
        assert spec.decode.no_speech_threshold == 0.4  # a key the old row lacked: the default of then
        MigrationExecutor(connection).migrate(before)  # and back: the request options again
        back = apps.get_model("transcription", "Job").objects.get(pk=old.pk)
        assert back.options["temperature"] == "0.0,0.5" and back.requested_model == "small"
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("transcription"))
