"""The spectrogram computed a stretch at a time equals the engine libraries' own, whole-file one,
on real speech, and its memory does not grow with the length of the audio beyond the result."""
import tracemalloc

import numpy as np
import pytest

from tests.conftest import normalise_words, wer
from transcription import modelstore
from transcription.audio import convert
from transcription.engines import DecodeOptions, get_engine, melspec

N_SAMPLES = 480_000  # mlx-whisper pads 30 s of zeros


@pytest.fixture(scope="module")
def clips16k(tmp_path_factory, eval_dir) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("mel")
    return {name: np.array(convert(eval_dir / name, out / f"{name}.f32"))
            for name in ("jfk.flac", "multilingual.mp3", "hotwords.mp3", "en_librispeech_1995-1837-0001.wav")}


@pytest.fixture(scope="module")
def speech(clips16k) -> np.ndarray:
    """About 150 s of real speech, English and German: the eval clips one after another, twice."""
    return np.concatenate([clips16k[n] for n in ("jfk.flac", "multilingual.mp3", "hotwords.mp3")] * 2)


@pytest.mark.parametrize("chunk_frames", [1000, 4321])
def test_faster_whisper_features_are_the_librarys_whatever_the_stretch(speech, chunk_frames):
    from faster_whisper.feature_extractor import FeatureExtractor

    extractor = FeatureExtractor(feature_size=80)
    expected = extractor(speech, padding=160)
    got = melspec.numpy_log_mel(speech, extractor.mel_filters, 160, chunk_frames=chunk_frames)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize("chunk_frames", [1000, 4321])
def test_mlx_features_are_the_librarys_whatever_the_stretch(speech, chunk_frames):
    from mlx_whisper.audio import log_mel_spectrogram

    expected = np.array(log_mel_spectrogram(speech, 80, padding=N_SAMPLES))
    got = np.array(melspec.mlx_log_mel(speech, 80, padding=N_SAMPLES, chunk_frames=chunk_frames))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_the_ends_of_the_signal_are_reflected_as_numpy_pads():
    audio = np.arange(1000, dtype=np.float32)
    padded = np.pad(np.pad(audio, (0, 160)), 200, mode="reflect")
    assert np.array_equal(melspec.signal_slice(audio, 160, -200, 1360), padded)
    assert np.array_equal(melspec.signal_slice(audio, 160, 500, 700), audio[500:700])


def test_memory_is_the_result_plus_one_stretch_not_the_whole_transform():
    """20 minutes: the library's transform peaks at about 850 MB; a stretch at a time needs the
    37 MB result plus one stretch's transform."""
    from faster_whisper.feature_extractor import FeatureExtractor

    audio = np.random.default_rng(0).standard_normal(20 * 60 * 16_000, dtype=np.float32)
    filters = FeatureExtractor(feature_size=80).mel_filters
    tracemalloc.start()
    try:
        result = melspec.numpy_log_mel(audio, filters, 160)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - result.nbytes < 200 * 2**20, f"peak {peak / 2**20:.0f} MB"


def test_ctranslate2_engine_on_audio_longer_than_a_stretch_gives_the_librarys_text(clips16k, monkeypatch):
    """The engine's model computes features a stretch at a time; faster-whisper alone, on the
    same samples and options, must give the same text. (Not bit-identical features: BLAS sums a
    matrix product in another order for another width, which moves values by 1e-7. On English
    speech that changes nothing here; on tiny.en hallucinating over German it can.)"""
    from faster_whisper import WhisperModel

    monkeypatch.setattr(melspec, "CHUNK_FRAMES", 2000)  # 20 s stretches: the same code, a shorter test
    # 79 s of plain English. (Not hotwords.mp3: its made-up word "ComfyUI" is a coin toss for tiny.en,
    # which such a 1e-7 tips one way or the other, as ctranslate2 4.8.5 did.)
    english = np.concatenate([clips16k["jfk.flac"], clips16k["en_librispeech_1995-1837-0001.wav"]] * 4)
    assert melspec.n_frames(len(english), 160) > 2 * melspec.CHUNK_FRAMES
    path = modelstore.engine_dir("tiny.en", "ctranslate2")
    options = DecodeOptions(language="en", temperature=(0.0,), word_timestamps=False,
                            hallucination_silence_threshold=None, batch_size=1)  # the library's own loop
    ours = get_engine("ctranslate2").transcribe(path, english, options, lambda _f: None).segments
    plain = WhisperModel(str(path), device="cpu", compute_type="int8")
    segments, _ = plain.transcribe(english, language="en", temperature=[0.0], vad_filter=False,
                                   word_timestamps=False, condition_on_previous_text=True,
                                   no_speech_threshold=0.4, compression_ratio_threshold=2.4,
                                   log_prob_threshold=-1.0, suppress_tokens=[-1])
    expected = list(segments)
    ours_text = normalise_words(" ".join(s.text for s in ours))
    expected_text = normalise_words(" ".join(s.text for s in expected))
    assert wer(expected_text, ours_text) < 0.02, (expected_text, ours_text)
    assert ours_text.count("what your country can do for you") == 4
    assert abs(len(ours) - len(expected)) <= 2
    assert abs(ours[0].end - expected[0].end) < 0.5 and abs(ours[-1].end - expected[-1].end) < 1.0


def test_mlx_engine_on_audio_longer_than_a_stretch_gives_the_librarys_text(clips16k, monkeypatch):
    """Through mlx_whisper.transcribe, which the engine hands the stretch-wise spectrogram (here
    bit-identical to the library's: MLX's product does not depend on the width): the same text as
    mlx-whisper with its own spectrogram."""
    import importlib

    import mlx_whisper.audio

    mlx_transcribe = importlib.import_module("mlx_whisper.transcribe")  # the package shadows it

    monkeypatch.setattr(melspec, "CHUNK_FRAMES", 2000)  # 20 s stretches: the same code, a shorter test
    english = np.concatenate([clips16k["jfk.flac"], clips16k["hotwords.mp3"]] * 2)  # 30 s
    assert melspec.n_frames(len(english), N_SAMPLES) > 2 * melspec.CHUNK_FRAMES
    path = modelstore.engine_dir("tiny.en", "mlx")
    options = DecodeOptions(language="en", temperature=(0.0,), word_timestamps=False,
                            hallucination_silence_threshold=None)
    ours = get_engine("mlx").transcribe(path, english, options, lambda _f: None)
    assert mlx_transcribe.log_mel_spectrogram is melspec.mlx_log_mel
    monkeypatch.setattr(mlx_transcribe, "log_mel_spectrogram", mlx_whisper.audio.log_mel_spectrogram)
    plain = mlx_transcribe.transcribe(english, path_or_hf_repo=str(path), fp16=False, language="en",
                                      temperature=(0.0,), word_timestamps=False, no_speech_threshold=0.4,
                                      condition_on_previous_text=True, verbose=None)
    assert [s.text for s in ours.segments] == [s["text"] for s in plain["segments"]]
    assert normalise_words(plain["text"]).count("ask not what your country") >= 2
