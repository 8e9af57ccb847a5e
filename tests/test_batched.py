"""Batched decoding: windows cut at pauses, streams decoded side by side, the device plan, and
batched against sequential on a recording built from the shared clips with exact references."""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from tests.conftest import manifest, normalise_words
from tests.scoring import score, words
from transcription import engines, modelstore
from transcription.audio import convert
from transcription.engines import DecodeOptions, streams, windows
from transcription.engines.ctranslate2 import device_plan

SR = 16_000


def noise(seconds: float, level: float = 0.1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * level).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


# --- windows ---------------------------------------------------------------------------------------

def test_streams_are_cut_in_the_longest_pause_near_the_middle_and_cover_everything():
    # "Words" of 0.4 s with 0.1 s gaps everywhere, and one 0.6 s pause 2 s after the middle.
    words = [part for i in range(60) for part in (noise(0.4, seed=i), silence(0.1))]
    first, second = np.concatenate(words[:74]), np.concatenate(words[74:])
    audio = np.concatenate([first, silence(0.6), second])
    streams = windows.streams(audio, 2)
    assert len(streams) == 2
    assert streams[0].start == 0 and streams[0].end == streams[1].start and streams[1].end == len(audio)
    pause = (len(first), len(first) + int(0.6 * SR))
    assert pause[0] < streams[0].end < pause[1], (streams, pause)


def test_no_more_streams_than_30_second_windows_and_short_audio_is_one():
    assert len(windows.streams(noise(40), 8)) == 2
    assert len(windows.streams(noise(10), 8)) == 1
    assert len(windows.streams(noise(300), 4)) == 4


def test_next_speech_jumps_over_what_the_vad_called_silence():
    spans = [(100, 200), (500, 900)]
    assert windows.next_speech(0, spans) == 100
    assert windows.next_speech(150, spans) == 150
    assert windows.next_speech(300, spans) == 500
    assert windows.next_speech(950, spans) > 10 ** 12


@pytest.fixture(scope="module")
def jfk(tmp_path_factory, eval_dir) -> np.ndarray:
    return np.array(convert(eval_dir / "jfk.flac", tmp_path_factory.mktemp("jfk") / "jfk.f32"))


def test_speech_is_told_from_a_pause_and_from_noise_whatever_its_level(jfk):
    quiet_speech = jfk[int(1 * SR):int(3 * SR)] * 0.03  # 30 dB down
    assert windows.has_speech(np.concatenate([silence(1), quiet_speech]))
    assert not windows.has_speech(silence(3))
    assert not windows.has_speech(noise(3, level=0.01))


# --- where and how ---------------------------------------------------------------------------------

def test_device_plan_uses_float16_and_bigger_batches_on_a_gpu():
    cpu, gpu = device_plan(0), device_plan(2)
    assert (cpu.device, cpu.compute_type, cpu.batch_size, cpu.beam_size) == ("cpu", "int8", 8, 1)
    assert (gpu.device, gpu.compute_type, gpu.batch_size, gpu.beam_size) == ("cuda", "float16", 16, 5)
    assert device_plan(0, batch_setting=4).batch_size == 4 and device_plan(1, batch_setting=4).batch_size == 4


# --- cut short ---------------------------------------------------------------------------------------

def _output(end: float, advance: int, no_speech: float = 0.01, logprob: float = -0.2) -> streams.Output:
    segment = {"text": " words", "start": 0.0, "end": end, "tokens": [1], "seek": 0}
    return streams.Output([segment], advance, True, logprob, no_speech)


@pytest.mark.parametrize("speech_after", [True, False])
def test_a_window_that_stops_before_speech_it_did_not_read_goes_on_from_there(jfk, speech_after):
    after = jfk[int(1 * SR):int(3 * SR)] if speech_after else silence(2)
    audio = np.concatenate([noise(5), silence(3), after, silence(20)])
    decoder = streams.StreamDecoder(audio, DecodeOptions(batch_size=2), lambda f: None)
    kept, advance = decoder.judge(windows.Window(0, 30 * SR), _output(5.0, 30 * SR))
    assert [seg.text for seg in kept] == [" words"]
    assert advance == (5 * SR if speech_after else 30 * SR)


def test_a_gap_over_speech_inside_the_output_sends_the_stream_back_to_it(jfk):
    audio = np.concatenate([noise(3), jfk[int(1 * SR):int(5 * SR)], noise(3, seed=2), silence(20)])
    decoder = streams.StreamDecoder(audio, DecodeOptions(batch_size=2), lambda f: None)
    output = _output(3.0, 30 * SR)
    output.segments.append({"text": " later", "start": 7.0, "end": 10.0, "tokens": [2], "seek": 0})
    kept, advance = decoder.judge(windows.Window(0, 30 * SR), output)
    assert [seg.text for seg in kept] == [" words"] and advance == 3 * SR


def test_a_silent_window_is_dropped_and_skipped():
    decoder = streams.StreamDecoder(noise(30), DecodeOptions(batch_size=2), lambda f: None)
    output = _output(3.0, 3 * SR, no_speech=0.9, logprob=-1.5)
    assert decoder.judge(windows.Window(0, 30 * SR), output) == ([], 30 * SR)


def test_tokens_are_read_as_whisper_reads_them():
    begin, eot = 100, 99
    window = windows.Window(10 * SR, 40 * SR)
    text = lambda tokens: "".join(chr(96 + t) for t in tokens)  # noqa: E731
    # two complete segments and an unfinished third: read to the second's end (4.0 s)
    segments, advance, single = streams.split_by_timestamps(
        [begin, 1, 2, begin + 100, begin + 100, 3, begin + 200, begin + 200, 4, 5], begin, eot, window, text)
    assert [(s["start"], s["end"], s["text"]) for s in segments] == [(10.0, 12.0, "ab"), (12.0, 14.0, "c")]
    assert advance == 4 * SR and not single and segments[0]["seek"] == 10 * SR // 160
    # ending on a single timestamp: the whole window was read
    segments, advance, single = streams.split_by_timestamps([begin, 1, begin + 50, eot], begin, eot, window, text)
    assert single and advance == 30 * SR and [(s["start"], s["end"]) for s in segments] == [(10.0, 11.0)]


# --- batched against sequential on real speech ---------------------------------------------------

# The shared English clips with exact references (the English first 30 s of multilingual.mp3).
READING = [("jfk.flac", None, "jfk"), ("en_timit_LDC93S1.wav", None, "timit"),
           ("multilingual.mp3", 30.0, "mit"), ("en_librispeech_1995-1837-0001.wav", None, "librispeech"),
           ("en_librivox_sense_and_sensibility_0870.wav", None, "librivox")]


@pytest.fixture(scope="module")
def reading(tmp_path_factory, eval_dir):
    """The clips twice over, in two orders (2 minutes): samples, each clip's span and reference."""
    refs = {name: row["reference"] for name, row in manifest().items()}
    paragraph = refs["multilingual.mp3"]
    refs["multilingual.mp3"] = paragraph[paragraph.index("Permission"):paragraph.index(" The rest is")]
    work = tmp_path_factory.mktemp("reading")
    pieces, spans, offset = [], [], 0
    for name, keep, marker in READING + READING[::-1]:
        samples = np.array(convert(eval_dir / name, work / f"{name}.f32"))
        if keep is not None:
            samples = samples[:int(keep * SR)]
        pieces.append(samples)
        spans.append((name, offset / SR, (offset + len(samples)) / SR, refs[name], marker))
        offset += len(samples)
    return np.concatenate(pieces), spans


def _decode(samples, batch_size):
    seen = []
    transcript = engines.get_engine("ctranslate2").transcribe(
        modelstore.engine_dir("base", "ctranslate2"), samples,
        DecodeOptions(language="en", batch_size=batch_size), seen.append)
    return transcript, seen


def test_batched_matches_sequential_on_the_shared_clips_and_keeps_the_files_timeline(reading):
    samples, spans = reading
    batched, seen = _decode(samples, 4)
    sequential, _ = _decode(samples, 1)
    sentences = [ref for *_, ref, _ in spans]
    batched_score, sequential_score = score(batched.text, sentences), score(sequential.text, sentences)
    assert batched_score["wer"] <= sequential_score["wer"] + 0.01, (batched_score, sequential_score)
    assert batched_score["dropped"] == 0, batched_score
    # on the file's timeline: each clip's words are timed inside that clip
    timed = [w for seg in batched.segments for w in seg.words]
    for name, start, end, ref, _ in spans:
        inside = [w for w in timed if start - 0.5 <= w.start and w.end <= end + 0.5]
        assert len(inside) >= len(words(ref)) / 2, (name, start, end, [w.word for w in inside])
    assert [seg.start for seg in batched.segments] == sorted(seg.start for seg in batched.segments)
    assert all(seg.start <= seg.end <= len(samples) / SR + 0.5 for seg in batched.segments)
    assert [seg.id for seg in batched.segments] == list(range(len(batched.segments)))
    # real progress, once a batch: from 0 to 1, never back, with steps between
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    _, seen = _decode(samples, 2)  # two streams of a minute: several batches
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert len({f for f in seen if 0.0 < f < 1.0}) >= 2, seen


def test_vad_filter_skips_a_long_silence_and_keeps_the_timeline(reading):
    samples, spans = reading
    first = spans[0]
    jfk = samples[:int(first[2] * SR)]
    audio = np.concatenate([jfk, silence(45), jfk])
    transcript = engines.get_engine("ctranslate2").transcribe(
        modelstore.engine_dir("base", "ctranslate2"), audio,
        DecodeOptions(language="en", batch_size=4, vad_filter=True), lambda f: None)
    assert normalise_words(transcript.text).count("americans") == 2
    gap = (first[2] + 0.5, first[2] + 44.5)
    assert not [seg for seg in transcript.segments if gap[0] < seg.start < gap[1]], transcript.segments
    second = [w for seg in transcript.segments for w in seg.words if normalise_words(w.word) == "americans"][1]
    assert first[2] + 45 < second.start < len(audio) / SR


def test_hotwords_reach_the_decoder(eval_dir, tmp_path):
    # hotwords.mp3 says "ComfyUI", which the base model spells otherwise unless told.
    samples = np.array(convert(eval_dir / "hotwords.mp3", tmp_path / "h.f32"))
    engine, path = engines.get_engine("ctranslate2"), modelstore.engine_dir("base", "ctranslate2")
    for batch_size in (1, 2):
        told = engine.transcribe(path, samples, DecodeOptions(language="en", batch_size=batch_size,
                                                              hotwords="ComfyUI"), lambda f: None)
        assert "ComfyUI" in told.text, (batch_size, told.text)


def test_mlx_refuses_what_it_cannot_do():
    problems = engines.get_engine("mlx").unsupported(DecodeOptions(vad_filter=True, hotwords="Huey"))
    assert len(problems) == 2 and all("ctranslate2" in p for p in problems)


# --- the options at every door ---------------------------------------------------------------------

@pytest.mark.django_db
def test_the_api_takes_the_options_and_refuses_a_zero_batch_naming_it(client, clips, service):
    with open(clips["wav"], "rb") as fh:
        resp = client.post("/transcribe", data={"file": fh, "batch_size": "0", "language": "en"})
    assert resp.status_code == 422
    assert "batch_size" in resp.content.decode() and "greater than or equal to 1" in resp.content.decode()
    with open(clips["wav"], "rb") as fh:
        resp = client.post("/transcribe", data={"file": fh, "batch_size": "2", "vad_filter": "true",
                                                "hotwords": "Kennedy", "language": "en", "model": "base"})
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert (body["options"]["batch_size"], body["options"]["vad_filter"], body["options"]["hotwords"]) == (
        2, True, "Kennedy")
    assert "ask not what your country" in body["text"].lower()


@pytest.mark.django_db
def test_the_openai_endpoint_takes_them_as_extra_fields(client, clips, service):
    with open(clips["wav"], "rb") as fh:
        resp = client.post("/v1/audio/transcriptions", data={"file": fh, "batch_size": "0"})
    assert resp.status_code in (400, 422) and "batch_size" in resp.content.decode()
    with open(clips["wav"], "rb") as fh:
        resp = client.post("/v1/audio/transcriptions", data={"file": fh, "model": "base", "language": "en",
                                                             "batch_size": "1", "hotwords": "Kennedy",
                                                             "response_format": "text"})
    assert resp.status_code == 200 and "ask not" in resp.content.decode().lower()


@pytest.mark.django_db(transaction=True)
def test_the_command_refuses_a_zero_batch_and_takes_the_others(clips, tmp_path):
    with pytest.raises((CommandError, SystemExit)):
        call_command("transcribe", str(clips["flac"]), "--batch-size", "0", stderr=io.StringIO())
    call_command("transcribe", str(clips["flac"]), "--model", "base", "--engine", "ctranslate2",
                 "--language", "en", "--batch-size", "2", "--vad-filter", "--hotwords", "Kennedy",
                 "--format", "json", "--output-dir", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())
    import json

    result = json.loads((tmp_path / "jfk.json").read_text(encoding="utf-8"))
    assert (result["options"]["batch_size"], result["options"]["vad_filter"]) == (2, True)


# --- the mlx engine (MLX's CPU backend here: tiny.en, short audio) ----------------------------------

def _mlx(samples, settings, **options):
    settings.WHISPER_MLX_BATCHED = True
    return engines.get_engine("mlx").transcribe(modelstore.engine_dir("tiny.en", "mlx"), samples,
                                                DecodeOptions(language="en", **options), lambda f: None)


def test_mlx_batched_gives_sequential_text_on_one_window_and_the_same_accuracy_on_two_streams(reading, settings):
    samples, spans = reading
    one_window = samples[:int(spans[0][2] * SR)]  # jfk: one window either way, the same words
    batched, sequential = _mlx(one_window, settings, batch_size=4), _mlx(one_window, settings, batch_size=1)
    assert normalise_words(batched.text) == normalise_words(sequential.text), (batched.text, sequential.text)
    three = samples[:int(spans[2][2] * SR)]  # and the MIT paragraph: 44 s, two streams
    sentences = [ref for *_, ref, _ in spans[:3]]
    batched = _mlx(three, settings, batch_size=2)
    sequential = _mlx(three, settings, batch_size=1)
    batched_score, sequential_score = score(batched.text, sentences), score(sequential.text, sentences)
    assert batched_score["dropped"] == 0 and batched_score["wer"] <= sequential_score["wer"] + 0.02, (
        batched_score, sequential_score)
    words_timed = [w for seg in batched.segments for w in seg.words]
    assert words_timed and all(0 <= w.start <= w.end <= len(three) / SR + 0.5 for w in words_timed)
