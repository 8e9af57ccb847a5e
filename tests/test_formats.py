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
    {"start": 3661.0, "end": 3662.25, "text": " Second."},
]}


def test_txt_srt_vtt_exact_output():
    assert formats.to_txt(RESULT) == "Hello world. Second.\n"
    assert formats.to_srt(RESULT) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello world.\n\n"
        "2\n01:01:01,000 --> 01:01:02,250\nSecond.\n"
    )
    assert formats.to_vtt(RESULT) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello world.\n\n"
        "01:01:01.000 --> 01:01:02.250\nSecond.\n"
    )


def test_write_atomic_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out" / "r.txt"
    formats.write_atomic(target, "привет\n")
    assert target.read_text(encoding="utf-8") == "привет\n"
    assert [p.name for p in target.parent.iterdir()] == ["r.txt"]
