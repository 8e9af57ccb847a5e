"""manage.py transcribe: the services from a terminal, directly or through the queue."""
import io

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import JFK_REFERENCE, wer
from transcription.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_transcribes_files_directly_into_every_asked_format(clips, eval_dir, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    call_command("transcribe", str(clips["flac"]), str(eval_dir / "hotwords.mp3"), "--model", "base",
                 "--engine", "ctranslate2", "--language", "en", "--format", "txt,srt,json",
                 "--output-dir", str(tmp_path), stdout=out, stderr=err)
    assert wer(JFK_REFERENCE, (tmp_path / "jfk.txt").read_text(encoding="utf-8")) <= 0.1
    assert (tmp_path / "jfk.srt").read_text(encoding="utf-8").startswith("1\n00:00:00,000 --> ")
    assert (tmp_path / "hotwords.json").is_file() and (tmp_path / "hotwords.txt").read_text().strip()
    assert out.getvalue().count(" -> ") == 6
    assert "100 %" in err.getvalue()  # the progress bar reached the end
    assert Job.objects.filter(status="done").count() == 2


@pytest.mark.ffmpeg
def test_a_bad_file_is_reported_and_the_others_still_run(clips, tmp_path):
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 of 3 file"):
        call_command("transcribe", str(tmp_path / "missing.wav"), str(clips["text_as_mp3"]),
                     str(clips["wav"]), "--model", "base", "--language", "en",
                     "--output-dir", str(tmp_path), stderr=err, stdout=io.StringIO())
    assert "no such file" in err.getvalue() and "not a recognised audio" in err.getvalue()
    assert (tmp_path / "jfk.txt").is_file()


def test_subtitle_cues_are_shaped_from_the_command_line(clips, tmp_path):
    call_command("transcribe", str(clips["flac"]), "--model", "base", "--engine", "ctranslate2",
                 "--language", "en", "--format", "srt,vtt", "--max-words-per-line", "3",
                 "--highlight-words", "--output-dir", str(tmp_path), stdout=io.StringIO(),
                 stderr=io.StringIO())
    srt = (tmp_path / "jfk.srt").read_text(encoding="utf-8")
    cues = [ln for ln in srt.splitlines() if ln and "-->" not in ln and not ln.isdigit()]
    assert len(cues) >= 7 and all(len(ln.split()) <= 3 for ln in cues), cues
    assert "<u>" in (tmp_path / "jfk.vtt").read_text(encoding="utf-8")


def test_bad_options_are_refused_before_any_work(clips):
    with pytest.raises(CommandError, match="unknown format 'docx'"):
        call_command("transcribe", str(clips["wav"]), "--format", "docx")
    with pytest.raises(CommandError, match="language"):
        call_command("transcribe", str(clips["wav"]), "--language", "klingon")
    with pytest.raises(CommandError, match="'0' is not a whole number of at least 1"):
        call_command("transcribe", str(clips["wav"]), "--max-words-per-line", "0")
    assert Job.objects.count() == 0


@pytest.mark.integration
def test_queue_mode_hands_the_job_to_a_real_consumer(worker, clips, tmp_path):
    call_command("transcribe", str(clips["mp3"]), "--queue", "--model", "base", "--language", "en",
                 "--output-dir", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())
    assert "ask not what your country" in (tmp_path / "jfk.txt").read_text().lower()
