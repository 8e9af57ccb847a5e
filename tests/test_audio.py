"""audio.py with the real FFmpeg: resolution order, probing, decoding, silence arithmetic.

The tests marked `ffmpeg` depend on the FFmpeg build; `make test-ffmpeg-wheel` runs them again
with the wheel's binary (make test uses the one on PATH when there is one)."""
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from transcription import audio
from tests.conftest import REPO
from transcription.audio import SAMPLE_RATE, AudioError, FFmpegMissing, find_speech_bounds


@pytest.fixture(autouse=True)
def fresh_ffmpeg_lookup():
    audio.ffmpeg_binary.cache_clear()
    yield
    audio.ffmpeg_binary.cache_clear()


def test_ffmpeg_falls_back_to_imageio_binary_when_not_on_path(monkeypatch, settings):
    import imageio_ffmpeg

    settings.FFMPEG_BINARY = ""
    monkeypatch.delenv("FFMPEG_BINARY", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert audio.ffmpeg_binary() == imageio_ffmpeg.get_ffmpeg_exe()
    assert audio.ffmpeg_version().startswith("ffmpeg version")


def test_ffmpeg_on_path_wins_over_imageio(monkeypatch, settings, tmp_path):
    import imageio_ffmpeg

    settings.FFMPEG_BINARY = ""
    monkeypatch.delenv("FFMPEG_BINARY", raising=False)
    link = tmp_path / "ffmpeg"
    link.symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("PATH", str(tmp_path))
    assert audio.ffmpeg_binary() == str(link)


def test_ffmpeg_binary_setting_wins_and_a_missing_one_is_reported(monkeypatch, settings, tmp_path):
    fake = tmp_path / "my-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'ffmpeg version custom'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings.FFMPEG_BINARY = str(fake)
    assert audio.ffmpeg_binary() == str(fake)
    audio.ffmpeg_binary.cache_clear()
    settings.FFMPEG_BINARY = str(tmp_path / "absent")
    with pytest.raises(FFmpegMissing, match="does not exist"):
        audio.ffmpeg_binary()


@pytest.mark.ffmpeg
@pytest.mark.parametrize("kind", ["flac", "wav", "mp3", "ogg", "m4a", "mp4"])
def test_probe_reads_duration_of_every_container(clips, kind):
    probed = audio.probe(clips[kind])
    assert probed.duration == pytest.approx(11.0, abs=0.1)
    assert probed.has_video == (kind == "mp4")


@pytest.mark.ffmpeg
@pytest.mark.parametrize("kind,message", [("text_as_mp3", "not a recognised audio"),
                                          ("corrupt", "audio"), ("empty", "audio")])
def test_probe_rejects_files_that_are_not_audio(clips, kind, message):
    with pytest.raises(AudioError, match=message):
        audio.probe(clips[kind])


@pytest.mark.ffmpeg
def test_probe_rejects_video_without_audio(tmp_path):
    from tests.conftest import ffmpeg

    silent_video = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=1", "-c:v", "libx264", str(silent_video))
    with pytest.raises(AudioError, match="no audio stream"):
        audio.probe(silent_video)


@pytest.mark.ffmpeg
def test_convert_gives_16khz_mono_float32(clips, tmp_path):
    samples = audio.convert(clips["mp3"], tmp_path / "out.f32")
    assert samples.dtype == np.float32
    assert len(samples) / SAMPLE_RATE == pytest.approx(11.0, abs=0.1)
    assert 0.05 < float(np.max(np.abs(samples))) < 1.5  # lossy codecs may overshoot 1.0 a little


@pytest.mark.ffmpeg
def test_convert_of_a_440hz_tone_keeps_its_pitch(clips, tmp_path):
    samples = np.asarray(audio.convert(clips["tone"], tmp_path / "tone.f32"))
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(samples)
    assert peak_hz == pytest.approx(440, abs=2)


@pytest.mark.ffmpeg
def test_convert_failure_is_an_audio_error(clips, tmp_path):
    with pytest.raises(AudioError, match="could not decode"):
        audio.convert(clips["text_as_mp3"], tmp_path / "x.f32")


def _reworded_ffmpeg(tmp_path: Path, sed: str) -> Path:
    """An FFmpeg that behaves as the real one but words its messages as `sed` says: messages
    change between builds (5.1 says "Invalid argument" where 7.0 says "Invalid data found")."""
    script = tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/bash\n"{audio.ffmpeg_binary()}" "$@" 2> >(sed -e \'{sed}\' >&2)\n')
    script.chmod(0o755)
    return script


@pytest.mark.ffmpeg
@pytest.mark.parametrize("kind,message", [("text_as_mp3", "not a recognised audio or video format"),
                                          ("corrupt", "not a recognised audio or video format"),
                                          ("mp3", None)])
def test_probe_decides_by_exit_status_and_streams_not_by_the_words_of_messages(
        clips, tmp_path, settings, kind, message):
    reword = "s/Invalid data found when processing input/Ungültige Daten/; s/Invalid argument/Ungültig/"
    settings.FFMPEG_BINARY = str(_reworded_ffmpeg(tmp_path, reword))
    audio.ffmpeg_binary.cache_clear()
    if message is None:
        assert audio.probe(clips[kind]).duration == pytest.approx(11.0, abs=0.1)
    else:
        with pytest.raises(AudioError, match=message):
            audio.probe(clips[kind])


@pytest.mark.ffmpeg
@pytest.mark.parametrize("kind", ["text_as_mp3", "corrupt", "empty", "silent_video", "missing_folder"])
def test_no_ffmpeg_message_carries_the_servers_path(clips, tmp_path, kind):
    """FFmpeg names the files it failed on, by their full path; a job's error and an HTTP answer
    must not show a client where the server keeps its files."""
    from tests.conftest import ffmpeg

    out = tmp_path / "converted" / "audio.f32"
    if kind == "missing_folder":  # FFmpeg names the output it cannot open, in every version
        source = clips["flac"]
    else:
        out.parent.mkdir()
        source = clips.get(kind, tmp_path / "silent.mp4")
    if kind == "silent_video":
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=1", "-c:v", "libx264", str(source))
    messages = []
    for step in (lambda: audio.probe(source), lambda: audio.convert(source, out)):
        try:
            step()
        except AudioError as exc:
            messages.append(str(exc))
    assert messages, "a bad file or a folder that is not there must be an AudioError"
    for message in messages:
        for place in (source.parent, out.parent, source.name, out.name):
            assert str(place) not in message, message


@pytest.mark.ffmpeg
def test_a_file_gone_before_conversion_is_reported_as_gone(tmp_path):
    with pytest.raises(AudioError, match="^the uploaded file is no longer on the server$"):
        audio.convert(tmp_path / "deleted.flac", tmp_path / "x.f32")
    with pytest.raises(AudioError, match="^the uploaded file is no longer on the server$"):
        audio.probe(tmp_path / "deleted.flac")


HARNESS = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from django.conf import settings

    settings.configure(FFMPEG_BINARY=sys.argv[1], MAX_AUDIO_SECONDS=0)
    from transcription import audio

    # Like the worker: SIGINT is handled (a handler, not SIG_IGN, which children would inherit).
    signal.signal(signal.SIGINT, lambda *_: Path(sys.argv[4]).touch())
    try:
        print("samples", len(audio.convert(Path(sys.argv[2]), Path(sys.argv[3]))))
    except audio.AudioError as exc:
        print("AudioError:", exc)
""")


@pytest.mark.ffmpeg
def test_a_conversion_outlives_a_ctrl_c_sent_to_the_workers_process_group(clips, tmp_path):
    """A terminal's Ctrl-C sends SIGINT to its whole foreground process group. The worker handles
    it (it lets its running job finish); FFmpeg, in the same group, would die of it and the job
    would fail as bad audio. A harness in a process group of its own stands for the worker; the
    FFmpeg it runs waits (a wrapper) until the SIGINT has been sent to the harness's group."""
    started, go, interrupted = tmp_path / "started", tmp_path / "go", tmp_path / "interrupted"
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        touch "{started}"
        while [ ! -e "{go}" ]; do sleep 0.02; done
        exec "{audio.ffmpeg_binary()}" "$@"
        """))
    wrapper.chmod(0o755)
    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS, str(wrapper), str(clips["flac"]), str(tmp_path / "out.f32"),
         str(interrupted)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for(started, harness)
        os.killpg(harness.pid, signal.SIGINT)  # what the terminal does, to the harness's group only
        _wait_for(interrupted, harness)
        go.touch()
        output, _ = harness.communicate(timeout=120)
    finally:
        if harness.poll() is None:
            os.killpg(harness.pid, signal.SIGKILL)
            harness.wait()
    assert output.startswith("samples "), output
    assert int(output.split()[1]) == pytest.approx(11 * SAMPLE_RATE, abs=100)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the harness ended early: {proc.stdout.read()}"
        assert time.monotonic() < deadline, f"{path.name} did not appear in {timeout:.0f} s"
        time.sleep(0.02)


def _tone(seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_silence_bounds_trim_both_ends_and_keep_a_margin():
    audio_ = np.concatenate([_silence(3.0), _tone(2.0), _silence(1.5)])
    trim = find_speech_bounds(audio_, threshold_db=-60, min_silence=0.5, margin=0.2)
    assert trim.offset == pytest.approx(2.8, abs=0.021)
    assert trim.end / SAMPLE_RATE == pytest.approx(5.2, abs=0.021)


def test_silence_shorter_than_min_duration_is_kept():
    audio_ = np.concatenate([_silence(0.3), _tone(1.0), _silence(0.3)])
    trim = find_speech_bounds(audio_, threshold_db=-60, min_silence=0.5)
    assert (trim.start, trim.end) == (0, len(audio_))


def test_threshold_decides_what_counts_as_silence():
    quiet = _tone(1.0, amplitude=0.001)  # about -63 dBFS RMS
    audio_ = np.concatenate([quiet, _tone(1.0)])
    assert find_speech_bounds(audio_, threshold_db=-70, min_silence=0.5, margin=0).start == 0
    assert find_speech_bounds(audio_, threshold_db=-50, min_silence=0.5, margin=0).offset == pytest.approx(1.0, abs=0.021)


def test_all_silent_audio_has_nothing_to_transcribe():
    trim = find_speech_bounds(_silence(5.0), -60, 0.5)
    assert trim.start == trim.end == 0


def test_levels_are_the_same_whatever_the_reading_slice():
    audio_ = np.concatenate([_tone(1.0), _silence(1.0), _tone(0.5, amplitude=0.01)])
    whole = audio.block_levels(audio_, 320)
    sliced = audio.block_levels(audio_, 320, chunk_blocks=7)
    assert np.allclose(whole, sliced) and len(whole) == len(audio_) // 320
    assert whole[0] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    assert whole[60] < -150


def test_long_audio_is_split_in_the_quiet_gaps_not_in_words():
    # 30 "sentences" of 10 s separated by 1 s gaps of silence: 330 s in all
    parts = []
    for _ in range(30):
        parts += [_tone(10.0), _silence(1.0)]
    audio_ = np.concatenate(parts)
    pieces = audio.split_points(audio_, 0, len(audio_), window_seconds=120, search_seconds=15)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(audio_)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # contiguous, nothing lost
    assert all(b - a <= 120 * SAMPLE_RATE for a, b in pieces)
    for _, cut in pieces[:-1]:
        assert np.max(np.abs(audio_[cut:cut + 1600])) == 0.0  # the cut falls in a silent gap


def test_short_audio_is_one_piece():
    assert audio.split_points(_tone(30.0), 100, 16000 * 20, window_seconds=120) == [(100, 16000 * 20)]


def test_empty_audio_has_empty_bounds():
    assert find_speech_bounds(np.zeros(0, dtype=np.float32), -60, 0.5) == audio.Trim(0, 0)


@pytest.mark.ffmpeg
def test_duration_limit_is_checked_by_decoding_when_the_header_says_too_long(clips, settings):
    settings.MAX_AUDIO_SECONDS = 20
    probed = audio.probe(clips["flac"])
    assert audio.check_duration(clips["flac"], probed) == pytest.approx(11.0, abs=0.1)
    lying = audio.Probe(duration=99_999.0, audio_codec="flac", has_video=False)
    assert audio.check_duration(clips["flac"], lying) == pytest.approx(11.0, abs=0.1)
    settings.MAX_AUDIO_SECONDS = 5
    with pytest.raises(AudioError, match="MAX_AUDIO_SECONDS=5"):
        audio.check_duration(clips["flac"], probed)


@pytest.mark.ffmpeg
def test_conversion_stops_past_the_duration_limit(clips, settings, tmp_path):
    settings.MAX_AUDIO_SECONDS = 5
    with pytest.raises(AudioError, match="over the"):
        audio.convert(clips["flac"], tmp_path / "x.f32")
    assert not (tmp_path / "x.f32").exists()
    settings.MAX_AUDIO_SECONDS = 0  # no limit
    assert len(audio.convert(clips["flac"], tmp_path / "y.f32")) == pytest.approx(11 * SAMPLE_RATE, abs=100)
