"""POST /detect-language over live HTTP with a real worker and the bundled multilingual model: the
language of the first 30 s of speech, in whisper-asr-webservice's shape and the service's own."""
from __future__ import annotations

import pytest
import requests

from tests.conftest import ffmpeg

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _detect(base: str, path, field: str = "audio_file", **params) -> requests.Response:
    with open(path, "rb") as fh:
        return requests.post(f"{base}/detect-language", files={field: (path.name, fh)}, params=params, timeout=300)


@pytest.mark.parametrize(("clip", "code", "name"), [
    ("jfk.flac", "en", "english"),
    ("de_picovoice_leopard_test_de.wav", "de", "german"),
    ("ru_pisets_test_sound_ru.wav", "ru", "russian"),
    ("fr_picovoice_leopard_test_fr.wav", "fr", "french"),
])
def test_each_language_is_found_in_both_shapes(service, eval_dir, clip, code, name):
    answer = _detect(service, eval_dir / clip, top=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # whisper-asr-webservice's three fields
    assert (body["language_code"], body["detected_language"]) == (code, name)
    assert 0.5 < body["confidence"] <= 1.0
    # the service's own: the top three, most probable first, the first the same as above
    languages = body["languages"]
    assert len(languages) == 3 and languages[0]["code"] == code and languages[0]["probability"] == body["confidence"]
    probabilities = [row["probability"] for row in languages]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    assert body["model"] == "base" and 0 < body["seconds_used"] <= 30


def test_only_the_first_30_s_of_speech_are_heard_after_the_silence_before_it(service, eval_dir, tmp_path):
    # 5 s of silence, then 40 s of German (the German clip eight times), then English
    german = eval_dir / "de_picovoice_leopard_test_de.wav"
    long = tmp_path / "silence-german-english.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=5", *sum((["-i", str(german)] for _ in range(8)), []),
           "-i", str(eval_dir / "jfk.flac"), "-filter_complex",
           "".join(f"[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}];" for i in range(10))
           + "".join(f"[a{i}]" for i in range(10)) + "concat=n=10:v=0:a=1", str(long))
    body = _detect(service, long, field="file").json()
    assert body["language_code"] == "de", body
    assert 4.0 < body["speech_start"] < 5.5 and body["seconds_used"] == 30.0 and body["seconds"] > 50


def test_what_cannot_be_answered_is_refused_clearly(service, clips, eval_dir):
    # no speech at all
    silent = clips["padded"].parent / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=3", str(silent))
    answer = _detect(service, silent)
    assert answer.status_code == 422 and "no speech" in answer.json()["detail"]
    # not audio; not an accepted type; empty; no file; two files
    for path, status in ((clips["text_as_mp3"], 422), (clips["txt"], 415), (clips["empty"], 400)):
        answer = _detect(service, path)
        assert answer.status_code == status, (path.name, answer.text)
        assert answer.json()["detail"] and "Traceback" not in answer.text
    assert requests.post(f"{service}/detect-language", timeout=30).status_code == 422
    with open(clips["wav"], "rb") as a, open(clips["wav"], "rb") as b:
        both = requests.post(f"{service}/detect-language", files={"audio_file": ("a.wav", a), "file": ("b.wav", b)},
                             timeout=60)
    assert both.status_code == 422 and "one file" in both.json()["detail"]
    # an English-only model cannot tell languages apart; an unknown one is not installed
    answer = _detect(service, eval_dir / "jfk.flac", model="tiny.en")
    assert answer.status_code == 422 and "English-only" in answer.json()["detail"]
    answer = _detect(service, eval_dir / "jfk.flac", model="large")
    assert answer.status_code == 422 and "not installed" in answer.json()["detail"]
    assert _detect(service, eval_dir / "jfk.flac", top=0).status_code == 422


def test_the_file_is_not_kept(service, eval_dir, settings):
    from pathlib import Path

    assert _detect(service, eval_dir / "jfk.flac").status_code == 200
    folder = Path(settings.MEDIA_ROOT) / "detect"
    assert not folder.exists() or not any(folder.iterdir())
