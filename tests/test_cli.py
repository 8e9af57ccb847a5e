"""manage.py transcribe: the services from a terminal, directly or through the queue."""
import io
import os
import re
import stat
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import JFK_REFERENCE, REPO, deployment_env, wer
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
