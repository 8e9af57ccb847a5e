"""audio.py with the real FFmpeg: resolution order, probing, decoding, silence arithmetic."""
import os
import stat

import numpy as np
import pytest

from transcription import audio
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


@pytest.mark.parametrize("kind", ["flac", "wav", "mp3", "ogg", "m4a", "mp4"])
def test_probe_reads_duration_of_every_container(clips, kind):
    probed = audio.probe(clips[kind])
    assert probed.duration == pytest.approx(11.0, abs=0.1)
    assert probed.has_video == (kind == "mp4")


@pytest.mark.parametrize("kind,message", [("text_as_mp3", "not a recognised audio"),
                                          ("corrupt", "audio"), ("empty", "audio")])
def test_probe_rejects_files_that_are_not_audio(clips, kind, message):
    with pytest.raises(AudioError, match=message):
        audio.probe(clips[kind])


def test_probe_rejects_video_without_audio(tmp_path):
    from tests.conftest import ffmpeg

    silent_video = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=1", "-c:v", "libx264", str(silent_video))
    with pytest.raises(AudioError, match="no audio stream"):
        audio.probe(silent_video)


def test_convert_gives_16khz_mono_float32(clips, tmp_path):
    samples = audio.convert(clips["mp3"], tmp_path / "out.f32")
    assert samples.dtype == np.float32
    assert len(samples) / SAMPLE_RATE == pytest.approx(11.0, abs=0.1)
    assert 0.05 < float(np.max(np.abs(samples))) < 1.5  # lossy codecs may overshoot 1.0 a little


def test_convert_of_a_440hz_tone_keeps_its_pitch(clips, tmp_path):
    samples = np.asarray(audio.convert(clips["tone"], tmp_path / "tone.f32"))
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(samples)
    assert peak_hz == pytest.approx(440, abs=2)


def test_convert_failure_is_an_audio_error(clips, tmp_path):
    with pytest.raises(AudioError, match="could not decode"):
        audio.convert(clips["text_as_mp3"], tmp_path / "x.f32")


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


def test_duration_limit_is_checked_by_decoding_when_the_header_says_too_long(clips, settings):
    settings.MAX_AUDIO_SECONDS = 20
    probed = audio.probe(clips["flac"])
    assert audio.check_duration(clips["flac"], probed) == pytest.approx(11.0, abs=0.1)
    lying = audio.Probe(duration=99_999.0, audio_codec="flac", has_video=False)
    assert audio.check_duration(clips["flac"], lying) == pytest.approx(11.0, abs=0.1)
    settings.MAX_AUDIO_SECONDS = 5
    with pytest.raises(AudioError, match="MAX_AUDIO_SECONDS=5"):
        audio.check_duration(clips["flac"], probed)


def test_conversion_stops_past_the_duration_limit(clips, settings, tmp_path):
    settings.MAX_AUDIO_SECONDS = 5
    with pytest.raises(AudioError, match="over the"):
        audio.convert(clips["flac"], tmp_path / "x.f32")
    assert not (tmp_path / "x.f32").exists()
    settings.MAX_AUDIO_SECONDS = 0  # no limit
    assert len(audio.convert(clips["flac"], tmp_path / "y.f32")) == pytest.approx(11 * SAMPLE_RATE, abs=100)
