"""Engine choice, refusal of options an engine cannot honour, and the model cache."""
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import JFK_REFERENCE, wer
from transcription import engines, modelstore
from transcription.audio import convert
from transcription.engines import DecodeOptions


@pytest.mark.parametrize("system,machine,expected", [
    ("Darwin", "arm64", "mlx"), ("Linux", "x86_64", "ctranslate2"), ("Darwin", "x86_64", "ctranslate2"),
    ("Linux", "aarch64", "ctranslate2"),
])
def test_auto_picks_mlx_only_on_apple_silicon(monkeypatch, settings, system, machine, expected):
    apple = engines.is_apple_silicon(system, machine)
    assert apple == (expected == "mlx")
    monkeypatch.setattr(engines, "is_apple_silicon", lambda: apple)
    settings.WHISPER_ENGINE = "auto"
    assert engines.resolve_engine_name() == expected


def test_auto_on_this_machine_follows_what_it_is(settings):
    import platform

    settings.WHISPER_ENGINE = "auto"
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    assert engines.is_apple_silicon() == apple
    assert engines.resolve_engine_name() == ("mlx" if apple else "ctranslate2")


def test_explicit_choice_wins_and_unknown_is_refused(settings):
    settings.WHISPER_ENGINE = "mlx"
    assert engines.resolve_engine_name() == "mlx"
    assert engines.resolve_engine_name("ctranslate2") == "ctranslate2"
    with pytest.raises(ValueError, match="unknown engine 'onnx'"):
        engines.resolve_engine_name("onnx")


def test_both_engines_are_available_with_the_projects_requirements():
    # requirements.txt installs mlx (mlx[cpu] on Linux) and faster-whisper on every platform.
    assert engines.available_engines() == ["mlx", "ctranslate2"]


def test_mlx_refuses_beam_search_and_ctranslate2_takes_everything():
    opts = DecodeOptions(beam_size=5, patience=2.0)
    assert len(engines.get_engine("mlx").unsupported(opts)) == 2
    assert engines.get_engine("mlx").unsupported(DecodeOptions(beam_size=1)) == []
    assert engines.get_engine("ctranslate2").unsupported(opts) == []


@pytest.fixture(scope="module")
def jfk_samples(tmp_path_factory, eval_dir):
    return np.array(convert(eval_dir / "jfk.flac", tmp_path_factory.mktemp("a") / "jfk.f32"))


def test_ctranslate2_transcribes_reports_progress_and_keeps_the_model_loaded(jfk_samples):
    engine = engines.get_engine("ctranslate2")
    path = modelstore.engine_dir("base", "ctranslate2")
    seen = []
    three = np.concatenate([jfk_samples] * 3)
    # sequential: progress each window (batched decoding's is in test_batched.py)
    result = engine.transcribe(path, three, DecodeOptions(language="en", batch_size=1), seen.append)
    assert "ask not what your country can do for you" in result.text.lower()
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert any(0.0 < f < 1.0 for f in seen), seen  # real progress between the ends
    assert engine.is_loaded(path)


def test_a_loaded_model_serves_the_next_job_without_loading_again(jfk_samples, monkeypatch):
    engine = engines.get_engine("ctranslate2")
    path = modelstore.engine_dir("base", "ctranslate2")
    engine.transcribe(path, jfk_samples, DecodeOptions(language="en"), lambda f: None)

    def load_again(*args):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(engine, "_load", load_again)
    result = engine.transcribe(path, jfk_samples, DecodeOptions(language="en"), lambda f: None)
    assert "ask not" in result.text.lower()


def test_progress_callback_can_cancel_an_engine(jfk_samples):
    def stop(fraction):
        if fraction > 0:
            raise engines.Cancelled()

    long_audio = np.concatenate([jfk_samples] * 4)
    with pytest.raises(engines.Cancelled):
        engines.get_engine("ctranslate2").transcribe(
            modelstore.engine_dir("base", "ctranslate2"), long_audio, DecodeOptions(language="en"), stop)


# A compression-ratio threshold no text meets: every window is judged repetitive and decoded again
# at every temperature, the slowest a window gets (six model calls).
ALWAYS_FALLS_BACK = dict(language="en", compression_ratio_threshold=0.1, logprob_threshold=None)


def _stop_after(calls: list, n: int):
    def progress(_fraction):
        if len(calls) >= n:
            raise engines.Cancelled()
    return progress


@pytest.mark.parametrize("batch_size", [1, 8])
def test_a_cancel_waits_for_one_ctranslate2_call_not_for_a_windows_fallbacks(jfk_samples, monkeypatch,
                                                                              batch_size):
    from transcription.engines import ctranslate2

    calls = []
    generate = ctranslate2._Checkpointed.generate

    def counted(self, *args, **kwargs):
        result = generate(self, *args, **kwargs)
        calls.append(len(result))  # a finished call, and how many windows it decoded
        return result

    monkeypatch.setattr(ctranslate2._Checkpointed, "generate", counted)
    options = DecodeOptions(batch_size=batch_size, **ALWAYS_FALLS_BACK)
    with pytest.raises(engines.Cancelled):
        engines.get_engine("ctranslate2").transcribe(
            modelstore.engine_dir("base", "ctranslate2"), np.concatenate([jfk_samples] * 2), options,
            _stop_after(calls, 2))
    # sequential: two temperatures tried, then the checkpoint before the third stopped it;
    # batched: the batch, a window's first try alone, then the checkpoint before its second
    assert len(calls) == 2, calls


def test_a_cancel_waits_for_one_mlx_decode_not_for_a_windows_fallbacks(jfk_samples, monkeypatch):
    from mlx_whisper.whisper import Whisper

    calls = []
    decode = Whisper.decode

    def counted(*args, **kwargs):
        result = decode(*args, **kwargs)
        calls.append(1)
        return result

    monkeypatch.setattr(Whisper, "decode", counted)
    with pytest.raises(engines.Cancelled):
        engines.get_engine("mlx").transcribe(modelstore.engine_dir("tiny.en", "mlx"), jfk_samples,
                                             DecodeOptions(**ALWAYS_FALLS_BACK), _stop_after(calls, 2))
    assert len(calls) == 2, calls


def test_mlx_engine_transcribes_tiny_en_with_word_timestamps(jfk_samples):
    engine = engines.get_engine("mlx")
    path = modelstore.engine_dir("tiny.en", "mlx")
    seen = []
    result = engine.transcribe(path, jfk_samples, DecodeOptions(language="en"), seen.append)
    assert wer(JFK_REFERENCE, result.text) < 0.15
    words = [w for s in result.segments for w in s.words]
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert 0.0 <= words[0].start < 1.0 and 9.0 < words[-1].end <= 11.1
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert engine.is_loaded(path)


def test_mlx_progress_adapter_reports_fraction_of_frames():
    from transcription.engines import mlx

    seen = []
    mlx._progress["callback"] = seen.append
    try:
        with mlx._ProgressBar(total=3000, unit="frames", disable=True) as bar:
            bar.update(1000)
            bar.update(3000)
    finally:
        mlx._progress.pop("callback")
    assert seen == [pytest.approx(1 / 3), 1.0]


# mlx-whisper advances its bar once per window itself (test_mlx_progress_adapter_... checks that we
# forward each step); on MLX's CPU backend this minute of audio takes two minutes, so only here.
@pytest.mark.parametrize("engine_name,model", [("ctranslate2", "base")])
def test_progress_is_reported_at_least_every_30_seconds_of_audio_even_across_silence(
        jfk_samples, engine_name, model):
    # Speech, 35 s of silence, speech: no segment ends inside the silence, yet the job must move.
    silence = np.zeros(35 * 16_000, dtype=np.float32)
    audio = np.concatenate([jfk_samples, silence, jfk_samples])
    seen = []
    # One temperature: falling back over the silence would time the dice, not the progress.
    # Sequential decoding (batched decoding reports once a batch: test_batched.py).
    engines.get_engine(engine_name).transcribe(modelstore.engine_dir(model, engine_name), audio,
                                               DecodeOptions(language="en", temperature=(0.0,), batch_size=1),
                                               seen.append)
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0
    seconds = len(audio) / 16_000
    biggest_step = max(b - a for a, b in zip(seen, seen[1:])) * seconds
    assert biggest_step <= 30.0 + 0.5, (biggest_step, seen)  # one Whisper window, plus rounding


class FakeModel:
    released: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def cache(settings):
    from transcription.engines.cache import ModelCache

    settings.WHISPER_MODEL_TTL = 60
    settings.WHISPER_MAX_LOADED_MODELS = 2
    clock = [0.0]
    made = ModelCache(clock=lambda: clock[0])
    made.clock = clock
    released = []
    made.use_named = lambda name: made.use(name, lambda: FakeModel(name), lambda m: released.append(m.name))
    made.released = released
    return made


def test_the_cache_releases_a_model_unused_for_the_ttl_and_keeps_a_recent_one(cache):
    with cache.use_named("base"):
        pass
    cache.clock[0] = 30
    with cache.use_named("small"):
        pass
    cache.clock[0] = 61  # base idle 61 s, small 31 s
    assert cache.release_idle() == 1
    assert cache.released == ["base"] and cache.loaded() == ["small"]


def test_past_the_limit_the_least_recently_used_idle_model_goes_never_one_in_use(cache):
    with cache.use_named("base"):
        cache.clock[0] = 1
        with cache.use_named("small"):
            pass
        cache.clock[0] = 2
        with cache.use_named("large"):  # three loaded, limit two: small (idle) goes, base is in use
            assert cache.released == ["small"]
            assert sorted(cache.loaded()) == ["base", "large"]


def test_threads_asking_for_one_model_together_load_it_once(cache):
    import threading

    loads = []

    def load():
        loads.append(1)
        return FakeModel("base")

    def job():
        with cache.use("base", load):
            pass

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [1]


MEMORY_PROBE = """
import os, sys, django
django.setup()
import numpy as np
from transcription import engines, modelstore
from transcription.engines import DecodeOptions

def anon_mb():
    return int([l for l in open('/proc/self/status') if l.startswith('RssAnon')][0].split()[1]) / 1024

engine, path = engines.get_engine('ctranslate2'), modelstore.engine_dir('base', 'ctranslate2')
engine.transcribe(path, np.zeros(16000, dtype=np.float32), DecodeOptions(language='en'), lambda f: None)
loaded = anon_mb()
released = engines.models.release_idle()
print(loaded, anon_mb(), released, engine.is_loaded(path))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc (Linux)")
def test_releasing_a_model_gives_its_memory_back(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO, deployment_env

    env = deployment_env(tmp_path, WHISPER_MODEL_TTL="0.000001")  # idle at once
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, after, released, still_loaded = out.stdout.split()
    assert (released, still_loaded) == ("1", "False")
    # base is 145 MB on disk in float16, about half that once loaded as int8: at least a quarter
    # of the file must come back (without malloc_trim, 25 MB of it did).
    disk_mb = (modelstore.engine_dir("base", "ctranslate2") / "model.bin").stat().st_size / 2**20
    assert float(loaded) - float(after) >= disk_mb / 4, (loaded, after, disk_mb)
