"""Every option of POST /transcribe is validated before any work, with a 4xx naming the field."""
import json
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from transcription.models import Job, Upload


@pytest.fixture
def post(client, clips):
    def _post(path=None, name=None, **fields):
        path = path or clips["wav"]
        upload = SimpleUploadedFile(name or path.name, path.read_bytes())
        return client.post("/transcribe", data={"file": upload, **{k: str(v) for k, v in fields.items()}})
    return _post


def body(resp) -> dict:
    """JSON of an answer; refused uploads are streamed (so the server closes the connection)."""
    return json.loads(b"".join(resp.streaming_content) if resp.streaming else resp.content)


BAD_FIELDS = [
    ("language", "klingon", "unknown language"),
    ("task", "summarise", "transcribe"),
    ("engine", "tensorflow", "mlx"),
    ("word_timestamps", "maybe", "bool"),
    ("condition_on_previous_text", "perhaps", "bool"),
    ("no_speech_threshold", "1.5", "less than or equal to 1"),
    ("no_speech_threshold", "-0.1", "greater than or equal to 0"),
    ("no_speech_threshold", "nan", "finite"),
    ("no_speech_threshold", "abc", "number"),
    ("hallucination_silence_threshold", "-1", "greater than or equal to 0"),
    ("hallucination_silence_threshold", "inf", "finite"),
    ("remove_silence", "sometimes", "bool"),
    ("silence_threshold", "10", "less than or equal to 0"),
    ("silence_threshold", "-200", "greater than or equal to -120"),
    ("silence_duration", "-0.5", "greater than or equal to 0"),
    ("beam_size", "0", "greater than or equal to 1"),
    ("beam_size", "2.5", "integer"),
    ("best_of", "100", "less than or equal to 16"),
    ("patience", "0", "greater than 0"),
    ("length_penalty", "-1", "greater than or equal to 0"),
    ("temperature", "1.5", "between 0.0 and 1.0"),
    ("temperature", "hot", "comma-separated numbers"),
    ("temperature", "0,0,0,0,0,0,0,0,0,0,0", "1 to 10"),
    ("initial_prompt", "x" * 2001, "at most 2000"),
    ("suppress_tokens", "a,b", "integer token ids"),
    ("suppress_tokens", "-5", "-1 or between"),
    ("no_timestamps", "often", "bool"),
    ("compression_ratio_threshold", "0", "greater than 0"),
    ("logprob_threshold", "0.5", "less than or equal to 0"),
    ("wait", "later", "bool"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("field,value,message", BAD_FIELDS, ids=[f"{f}={v[:12]}" for f, v, _ in BAD_FIELDS])
def test_bad_option_is_rejected_naming_the_field(post, field, value, message):
    resp = post(**{field: value})
    assert resp.status_code == 422, resp.content
    body = resp.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert message.lower() in body["detail"].lower()
    assert Job.objects.count() == 0 and Upload.objects.count() == 0


@pytest.mark.django_db
def test_missing_file_is_rejected_naming_the_field(client):
    resp = client.post("/transcribe", data={"language": "en"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "file"


@pytest.mark.django_db
def test_unknown_model_is_rejected_with_installed_list(post):
    resp = post(model="gigantic", language="en")
    assert resp.status_code == 422
    body = resp.json()
    assert body["field"] == "model"
    assert "unknown model 'gigantic'" in body["detail"] and "installed models: " in body["detail"]
    assert "base" in body["detail"]
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_model_not_installed_names_the_installed_ones(post):
    resp = post(model="medium", language="en")
    assert resp.status_code == 422
    assert "model 'medium' is not installed; installed models: " in resp.json()["detail"]
    assert "install_model medium" in resp.json()["detail"]


@pytest.mark.django_db
def test_english_only_model_refuses_other_languages_and_translation(post):
    resp = post(model="tiny.en", language="ru")
    assert resp.status_code == 422 and resp.json()["field"] == "language"
    resp = post(model="tiny.en", language="en", task="translate")
    assert resp.status_code == 422 and resp.json()["field"] == "task"


@pytest.mark.django_db
def test_mlx_engine_refuses_beam_search_it_cannot_do(post):
    resp = post(model="tiny.en", language="en", engine="mlx", beam_size=5)
    assert resp.status_code == 422
    assert "beam_size > 1 is not supported by the mlx engine" in resp.json()["detail"]
    resp = post(model="tiny.en", language="en", engine="mlx", patience=2)
    assert resp.status_code == 422 and "patience" in resp.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["speech.txt", "speech", "speech.exe", "archive.tar.gz"])
def test_wrong_extension_is_rejected_before_storing(post, clips, settings, name):
    resp = post(clips["wav"], name=name, language="en")
    assert resp.status_code == 415
    detail = body(resp)["detail"]
    assert "is not allowed" in detail and ".wav" in detail
    assert Upload.objects.count() == 0


@pytest.mark.django_db
def test_extension_check_ignores_case(post, clips):
    resp = post(clips["wav"], name="JFK.WAV", language="en", model="nonexistent")
    assert resp.status_code == 422 and resp.json()["field"] == "model"  # got past the extension


@pytest.mark.django_db
def test_empty_file_is_rejected(post, clips):
    resp = post(clips["empty"], language="en")
    assert resp.status_code == 400
    assert "empty" in resp.json()["detail"]
    assert Upload.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("clip", ["text_as_mp3", "corrupt"])
def test_file_that_is_not_audio_is_rejected_and_not_kept(post, clips, settings, clip):
    uploads = settings.MEDIA_ROOT / "uploads"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    resp = post(clips[clip], language="en")
    assert resp.status_code == 422, resp.content
    assert resp.json()["field"] == "file"
    assert "audio" in resp.json()["detail"]
    assert Upload.objects.count() == 0
    assert (set(uploads.iterdir()) if uploads.exists() else set()) == before


@pytest.mark.django_db
def test_oversized_upload_is_cut_off_with_413_and_nothing_left(client, clips, settings):
    settings.MAX_UPLOAD_BYTES = 50_000  # jfk.wav is ~350 kB
    tmp_dir = settings.FILE_UPLOAD_TEMP_DIR
    before = set(os.listdir(tmp_dir))
    with open(clips["wav"], "rb") as fh:
        resp = client.post("/transcribe", data={"file": fh, "language": "en"})
    assert resp.status_code == 413
    assert "larger than the" in body(resp)["detail"]
    assert set(os.listdir(tmp_dir)) == before
    assert Upload.objects.count() == 0


@pytest.mark.django_db
def test_a_stored_upload_gets_file_upload_permissions_not_the_temp_files_0600(post, settings):
    """Uploads stream to a private temp file (0600) which is then moved under MEDIA_ROOT: the
    move kept 0600, so a web server or backup user in the group could not read the media."""
    resp = post(wait="false", language="en", model="base")
    assert resp.status_code == 202, resp.content
    upload = Upload.objects.get()
    mode = os.stat(os.path.join(settings.MEDIA_ROOT, upload.stored_path)).st_mode & 0o777
    assert mode == settings.FILE_UPLOAD_PERMISSIONS == 0o640
