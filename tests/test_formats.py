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
