"""Housekeeping: purge (deleting with files is in test_admin.py, through the admin's actions)."""
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from transcription import services
from transcription.models import Job, LiveSession, Upload
from transcription.schemas import TranscribeOptions


def _job(clips, **options) -> Job:
    upload = SimpleUploadedFile("jfk.mp3", clips["mp3"].read_bytes())
    return services.create_job(upload, TranscribeOptions(language="en", model="base",
                                                         engine="ctranslate2", **options))


@pytest.mark.django_db
def test_purge_is_a_dry_run_until_told_and_spares_recent_and_running_work(
        clips, capsys, django_capture_on_commit_callbacks):
    old = _job(clips)
    old.start()
    old.finish({"text": "x"}, "results/old.txt")
    for rel in ("results/old.json", "results/old.txt"):
        path = Path(settings.MEDIA_ROOT, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    long_ago = timezone.now() - timedelta(days=40)
    Upload.objects.filter(pk=old.upload_id).update(created_at=long_ago)
    Job.objects.filter(pk=old.pk).update(created_at=long_ago)
    busy = _job(clips)
    Upload.objects.filter(pk=busy.upload_id).update(created_at=long_ago)
    Job.objects.filter(pk=busy.pk).update(created_at=long_ago)  # old but still queued
    fresh = _job(clips)
    upload_file = Path(settings.MEDIA_ROOT, old.upload.stored_path)
    # a live session that ended long ago, one still live, and what a vanished client left behind
    ended = LiveSession.objects.create(model="base", engine="ctranslate2", status="ended", created_at=long_ago)
    live = LiveSession.objects.create(model="base", engine="ctranslate2", status="live", created_at=long_ago)
    leftover = Path(settings.MEDIA_ROOT, "live", str(ended.pk))
    leftover.mkdir(parents=True)
    (leftover / "messages.jsonl").write_text("{}\n")
    os.utime(leftover, (long_ago.timestamp(), long_ago.timestamp()))

    call_command("purge", "--older-than", "30d")
    assert "would remove 1 upload(s), 1 job(s), 1 live session(s), 4 file(s)" in capsys.readouterr().out
    assert upload_file.exists() and Job.objects.count() == 3 and leftover.exists()

    with django_capture_on_commit_callbacks(execute=True):  # files go once the rows are gone
        call_command("purge", "--older-than", "30d", "--yes")
    assert "removed 1 upload(s)" in capsys.readouterr().out
    assert not upload_file.exists() and not Path(settings.MEDIA_ROOT, "results/old.txt").exists()
    assert set(Job.objects.values_list("pk", flat=True)) == {busy.pk, fresh.pk}
    assert list(LiveSession.objects.values_list("pk", flat=True)) == [live.pk] and not leftover.exists()
    with pytest.raises(CommandError, match="30d"):
        call_command("purge", "--older-than", "a month")
