"""JSON sanitising and result writers."""
import json
import math

import numpy as np
import pytest

from transcription import formats


def test_jsonable_replaces_nan_and_infinity_and_numpy_scalars():
    value = {"a": float("nan"), "b": float("inf"), "c": -math.inf, "d": np.float32(0.5),
             "e": np.int64(7), "f": np.array([1.5, np.nan]), "g": (1, 2), 3: np.bool_(True),
             "h": np.float64("nan")}
    out = formats.jsonable(value)
    assert out == {"a": None, "b": None, "c": None, "d": 0.5, "e": 7, "f": [1.5, None],
                   "g": [1, 2], "3": True, "h": None}
    assert type(out["d"]) is float and type(out["e"]) is int and type(out["3"]) is bool
    json.dumps(out, allow_nan=False)  # strict JSON accepts it


def test_dumps_never_emits_nan():
    text = formats.dumps({"x": [np.float32("nan"), 1e400]})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": [None, None]}


@pytest.mark.parametrize("seconds,sep,expected", [
    (0, ".", "00:00:00.000"), (3.0006, ",", "00:00:03,001"), (61.25, ".", "00:01:01.250"),
    (3600 * 101 + 59.999, ",", "101:00:59,999"), (-1, ".", "00:00:00.000"),
])
def test_timestamp_format(seconds, sep, expected):
    assert formats.timestamp(seconds, sep) == expected


RESULT = {"text": " Hello world. Second. ", "segments": [
    {"start": 0.0, "end": 1.5, "text": " Hello world."},
    {"start": 3661.0, "end": 3662.25, "text": " Second --> third."},
    {"start": 360000.5, "end": 360001.0, "text": "\tLate."},
]}

WORDS = {"text": "Ask not what your country can do", "segments": [
    {"start": 0.0, "end": 2.0, "text": " Ask not what your country can do", "words": [
        {"word": " Ask", "start": 0.0, "end": 0.3}, {"word": " not", "start": 0.3, "end": 0.6},
        {"word": " what", "start": 0.6, "end": 0.9}, {"word": " your", "start": 0.9, "end": 1.1},
        {"word": " country", "start": 1.1, "end": 1.5}, {"word": " can", "start": 1.5, "end": 1.7},
        {"word": " do", "start": 1.7, "end": 2.0}]},
]}


def test_txt_is_the_text_and_a_newline():
    assert formats.to_txt(RESULT) == "Hello world. Second.\n"


def test_srt_has_hours_and_commas_even_past_99_hours():
    assert formats.to_srt(RESULT) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello world.\n\n"
        "2\n01:01:01,000 --> 01:01:02,250\nSecond -> third.\n\n"
        "3\n100:00:00,500 --> 100:00:01,000\nLate.\n\n"
    )


def test_vtt_uses_dots_and_hours_only_when_needed():
    assert formats.to_vtt(RESULT) == (
        "WEBVTT\n\n00:00.000 --> 00:01.500\nHello world.\n\n"
        "01:01:01.000 --> 01:01:02.250\nSecond -> third.\n\n"
        "100:00:00.500 --> 100:00:01.000\nLate.\n\n"
    )


def test_tsv_is_integer_milliseconds_without_tabs_in_text():
    assert formats.to_tsv(RESULT) == (
        "start\tend\ttext\n0\t1500\tHello world.\n3661000\t3662250\tSecond --> third.\n"
        "360000500\t360001000\tLate.\n"
    )


def test_subtitle_line_width_and_count_split_cues_on_word_times():
    options = formats.SubtitleOptions(max_line_width=12, max_line_count=2)
    assert formats.to_srt(WORDS, options) == (
        "1\n00:00:00,000 --> 00:00:01,500\nAsk not what\nyour country\n\n"
        "2\n00:00:01,500 --> 00:00:02,000\ncan do\n\n"
    )


def test_max_words_per_line_makes_a_cue_of_at_most_that_many_words():
    srt = formats.to_srt(WORDS, formats.SubtitleOptions(max_words_per_line=3))
    assert srt == (
        "1\n00:00:00,000 --> 00:00:00,900\nAsk not what\n\n"
        "2\n00:00:00,900 --> 00:00:01,700\nyour country can\n\n"
        "3\n00:00:01,700 --> 00:00:02,000\ndo\n\n"
    )


def test_vtt_highlights_each_word_while_it_is_spoken():
    text = formats.to_vtt(WORDS, formats.SubtitleOptions(highlight_words=True))
    cues = text.split("\n\n")[1:-1]
    assert len(cues) == 7
    assert cues[0] == "00:00.000 --> 00:00.300\n<u>Ask</u> not what your country can do"
    assert cues[4] == "00:01.100 --> 00:01.500\nAsk not what your <u>country</u> can do"


def test_json_writer_is_strict_json():
    assert json.loads(formats.to_json({"a": float("nan")})) == {"a": None}


def test_write_atomic_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out" / "r.txt"
    formats.write_atomic(target, "привет\n")
    assert target.read_text(encoding="utf-8") == "привет\n"
    assert [p.name for p in target.parent.iterdir()] == ["r.txt"]


def _random_result(seed: int) -> dict:
    """Segments of words with short gaps and, now and then, a pause of several seconds."""
    import random

    rng = random.Random(seed)
    vocabulary = ["ask", "not", "what", "your", "country", "can", "do", "for", "you", "—", "-->", "Réunion",
                  "переход", "a", "extraordinarily"]
    segments, now = [], rng.uniform(0, 2)
    for _ in range(rng.randint(1, 6)):
        words = []
        for _ in range(rng.randint(1, 25)):
            start = now + (rng.uniform(3.5, 6) if rng.random() < 0.1 else rng.uniform(0, 0.3))
            now = start + rng.uniform(0.1, 0.8)
            words.append({"word": " " + rng.choice(vocabulary), "start": round(start, 3), "end": round(now, 3),
                          "probability": 0.9})
        segments.append({"start": words[0]["start"], "end": words[-1]["end"],
                         "text": "".join(w["word"] for w in words), "words": words})
    return {"text": "".join(s["text"] for s in segments), "segments": segments}


OPTION_SETS = [formats.SubtitleOptions(), formats.SubtitleOptions(max_line_width=20, max_line_count=2),
               formats.SubtitleOptions(max_line_width=42, max_line_count=1, highlight_words=True),
               formats.SubtitleOptions(max_words_per_line=3), formats.SubtitleOptions(highlight_words=True),
               formats.SubtitleOptions(max_line_width=10, max_line_count=3, max_words_per_line=2)]


@pytest.mark.parametrize("seed", range(12))
def test_subtitles_are_whispers_own_cues_without_loading_an_inference_library(seed):
    import io

    from mlx_whisper.writers import WriteSRT, WriteVTT

    result = _random_result(seed)
    for options in OPTION_SETS:
        asked = {"max_line_width": options.max_line_width, "max_line_count": options.max_line_count,
                 "highlight_words": options.highlight_words, "max_words_per_line": options.max_words_per_line}
        for ours, theirs in ((formats.to_srt, WriteSRT), (formats.to_vtt, WriteVTT)):
            expected = io.StringIO()
            theirs(".").write_result(result, file=expected, options=asked)
            assert ours(result, options) == expected.getvalue(), (seed, options)


def test_a_subtitle_download_loads_no_inference_library_in_the_web_process(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO, deployment_env

    env = deployment_env(tmp_path)
    subprocess.run([sys.executable, str(REPO / "manage.py"), "migrate", "-v0"], env=env, check=True, cwd=REPO)
    probe = (
        "import sys, django; django.setup()\n"
        "from django.test import Client\n"
        "from transcription.models import Job, Upload\n"
        "upload = Upload.objects.create(original_name='talk.wav', stored_path='uploads/x.wav', size=1, sha256='x')\n"
        "words = [{'word': ' hello', 'start': 0.0, 'end': 0.5}, {'word': ' there', 'start': 0.6, 'end': 1.0}]\n"
        "result = {'text': 'hello there', 'segments': [{'id': 0, 'start': 0.0, 'end': 1.0, 'text': ' hello there',"
        " 'words': words}]}\n"
        "job = Job.objects.create(upload=upload, status='done', result=result)\n"
        "for fmt in ('srt', 'vtt', 'tsv'):\n"
        "    answer = Client().get(f'/job/{job.id}/result', {'format': fmt, 'highlight_words': 'true'})\n"
        "    assert answer.status_code == 200 and b'hello' in answer.content, answer.content\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlx', 'mlx_whisper', 'faster_whisper',"
        " 'ctranslate2', 'numba', 'torch', 'tiktoken', 'scipy'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"  # mlx_whisper.writers pulled in mlx, numba, scipy


def test_every_format_is_one_registry_entry_read_by_the_api_and_the_command_line(client, db):
    from transcription.management.commands.transcribe import Command

    assert formats.NAMES == ("txt", "srt", "vtt", "tsv", "json")
    assert all(f.content_type.endswith("charset=utf-8") and f.extension == f.name for f in formats.REGISTRY.values())
    assert formats.get(" SRT ") is formats.REGISTRY["srt"] and formats.get("docx") is None
    schema = client.get("/openapi.json").json()
    described = [p for p in schema["paths"]["/job/{job_id}/result"]["get"]["parameters"] if p["name"] == "format"]
    assert described[0]["schema"]["description"] == ", ".join(formats.NAMES)
    help_text = Command().create_parser("manage.py", "transcribe").format_help()
    assert ", ".join(formats.NAMES) in " ".join(help_text.split())
