"""The OpenAI-compatible API, driven by the official `openai` client against a live server and a
real worker, plus raw multipart requests."""
import openai
import pytest
import requests

from tests.conftest import JFK_REFERENCE, normalise_words, wer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(service):
    return openai.OpenAI(base_url=f"{service}/v1", api_key="unused-when-open", max_retries=0, timeout=300)


def test_json_and_text_formats(client, clips):
    with open(clips["flac"], "rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh, language="en")
    assert wer(JFK_REFERENCE, result.text) <= 0.1
    with open(clips["mp3"], "rb") as fh:
        text = client.audio.transcriptions.create(model="base", file=fh, language="en", response_format="text")
    assert isinstance(text, str) and text.endswith("\n") and "ask not" in text.lower()


def test_srt_and_vtt_formats(client, clips):
    with open(clips["flac"], "rb") as fh:
        srt = client.audio.transcriptions.create(model="base", file=fh, language="en", response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:") and "ask not" in srt.lower()
    with open(clips["flac"], "rb") as fh:
        vtt = client.audio.transcriptions.create(model="base", file=fh, language="en", response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00.000 --> ") and "ask not" in vtt.lower()


@pytest.mark.ffmpeg
def test_verbose_json_with_segments_and_words(client, clips):
    with open(clips["flac"], "rb") as fh:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="verbose_json",
            timestamp_granularities=["word", "segment"])
    assert result.task == "transcribe" and result.language == "english"
    assert result.duration == pytest.approx(11.0, abs=0.05)
    segment = result.segments[0]
    assert segment.id == 0 and segment.start == 0.0 and segment.tokens and segment.text.startswith(" ")
    for field in ("seek", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"):
        assert getattr(segment, field) is not None
    words = result.words
    # the words, not their punctuation, which the model's build decides ("so," on one CPU, "so" on another)
    assert normalise_words(" ".join(w.word for w in words[:3])) == "and so my"
    assert all(0 <= w.start <= w.end <= 11.05 for w in words)


def test_verbose_json_words_only_omits_segments(service, clips):
    with open(clips["flac"], "rb") as fh:
        resp = requests.post(f"{service}/v1/audio/transcriptions", files={"file": ("jfk.flac", fh)},
                             data={"model": "base", "language": "en", "response_format": "verbose_json",
                                   "timestamp_granularities[]": ["word"]}, timeout=300)
    body = resp.json()
    assert resp.status_code == 200 and "segments" not in body and len(body["words"]) >= 20


def test_translation_endpoint(client, eval_dir):
    with open(eval_dir / "multilingual.mp3", "rb") as fh:
        result = client.audio.translations.create(model="base", file=fh, response_format="verbose_json")
    assert result.task == "translate"
    assert "permission" in result.text.lower() and "software" in result.text.lower()


def test_models_in_openai_shape(client):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "whisper-1" and {"base", "tiny.en"} <= set(ids)
    assert all(m.object == "model" and m.owned_by == "local" for m in client.models.list())


def test_errors_come_in_openai_shape(service, client, clips):
    with open(clips["flac"], "rb") as fh, pytest.raises(openai.BadRequestError) as exc:
        client.audio.transcriptions.create(model="whisper-huge", file=fh)
    assert "installed models" in exc.value.body["message"] and exc.value.body["param"] == "model"
    with open(clips["flac"], "rb") as fh:
        resp = requests.post(f"{service}/v1/audio/transcriptions", files={"file": ("jfk.flac", fh)},
                             data={"response_format": "docx"}, timeout=60)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "response_format"
    with open(clips["flac"], "rb") as fh:
        resp = requests.post(f"{service}/v1/audio/transcriptions", files={"file": ("jfk.flac", fh)},
                             data={"response_format": "json", "timestamp_granularities[]": "word"}, timeout=60)
    assert resp.status_code == 400 and "verbose_json" in resp.json()["error"]["message"]
    with open(clips["txt"], "rb") as fh:
        resp = requests.post(f"{service}/v1/audio/transcriptions", files={"file": ("notes.txt", fh)}, timeout=60)
    assert resp.status_code == 415 and resp.json()["error"]["param"] == "file"


def test_bearer_tokens_guard_every_api_when_configured(service, settings, clips):
    settings.API_TOKENS = ["s3cret-token"]
    bad = openai.OpenAI(base_url=f"{service}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.status_code == 401 and "API token" in exc.value.body["message"]
    good = openai.OpenAI(base_url=f"{service}/v1", api_key="s3cret-token", max_retries=0, timeout=300)
    assert "base" in [m.id for m in good.models.list()]
    assert requests.get(f"{service}/models", timeout=10).status_code == 401
    assert requests.get(f"{service}/job/00000000-0000-0000-0000-000000000000", timeout=10).status_code == 401
    with open(clips["flac"], "rb") as fh:
        assert requests.post(f"{service}/transcribe", files={"file": fh}, timeout=60).status_code == 401
    auth = {"Authorization": "Bearer s3cret-token"}
    assert requests.get(f"{service}/models", headers=auth, timeout=10).status_code == 200
    assert requests.get(f"{service}/health", timeout=30).status_code == 200  # probes stay open
    with open(clips["flac"], "rb") as fh:
        text = good.audio.transcriptions.create(model="base", file=fh, language="en", response_format="text")
    assert "ask not" in text.lower()


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_translation_endpoint_in_every_format(client, clips, fmt):
    with open(clips["flac"], "rb") as fh:
        result = client.audio.translations.create(model="base", file=fh, response_format=fmt)
    text = result if isinstance(result, str) else result.text
    assert "ask not what your country" in text.lower()
    if fmt in ("srt", "vtt"):
        assert "-->" in text


def test_raw_curl_request_with_repeated_granularities(service, clips):
    import json
    import shutil
    import subprocess

    curl = shutil.which("curl")
    assert curl, "curl is needed for this test (Debian package curl)"
    out = subprocess.run(
        [curl, "-sS", "-w", "\\n%{http_code}", f"{service}/v1/audio/transcriptions",
         "-F", f"file=@{clips['mp3']}", "-F", "model=whisper-1", "-F", "language=en",
         "-F", "response_format=verbose_json", "-F", "timestamp_granularities[]=word",
         "-F", "timestamp_granularities[]=segment"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    body, status = out.rsplit("\n", 1)
    assert status == "200"
    data = json.loads(body)
    assert data["language"] == "english" and data["segments"] and data["words"]
    assert data["words"][0]["word"] == "And"
