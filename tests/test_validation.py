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
    ("batch_size", "0", "greater than or equal to 1"),
    ("batch_size", "65", "less than or equal to 64"),
    ("vad_filter", "often", "bool"),
    ("hotwords", "x" * 1001, "at most 1000"),
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


@pytest.mark.django_db
@pytest.mark.parametrize("setting", ["en", "auto"])
def test_the_default_language_is_one_setting_for_the_api_and_the_command_line(post, settings, setting):
    from transcription.management.commands.transcribe import Command

    settings.WHISPER_DEFAULT_LANGUAGE = setting
    resp = post(wait="false")  # no language field
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["job_id"]).options["language"] == setting
    args = Command().create_parser("manage.py", "transcribe").parse_args(["talk.mp3"])
    assert args.language == setting


def test_a_bad_default_language_stops_the_start_with_a_message():
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "WHISPER_DEFAULT_LANGUAGE": "klingon"}
    out = subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], env=env, capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode != 0 and "WHISPER_DEFAULT_LANGUAGE='klingon'" in out.stderr


@pytest.mark.parametrize("variable,value,message", [
    ("HUEY_WORKERS", "two", "HUEY_WORKERS='two': use a whole number, at least 1"),
    ("JOB_HEARTBEAT_SECONDS", "inf", "JOB_HEARTBEAT_SECONDS='inf': use a number"),
    ("WORKER_NICE", "40", "at most 19"),
    ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG='maybe': use true or false"),
    ("WHISPER_ENGINE", "onnx", "use auto, mlx or ctranslate2"),
])
def test_a_bad_setting_stops_the_start_with_one_line_naming_it(variable, value, message):
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", variable: value}
    out = subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], env=env, capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.django_db
def test_cancelling_twice_says_the_job_was_already_cancelled(post):
    job_id = post(language="en", wait="false").json()["job_id"]
    from django.test import Client

    assert Client().post(f"/job/{job_id}/cancel").status_code == 200
    again = Client().post(f"/job/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["detail"] == f"job {job_id} was already cancelled"


@pytest.mark.django_db
def test_a_batch_with_a_text_file_names_the_file_and_the_field(client, clips):
    files = [SimpleUploadedFile("talk.wav", clips["wav"].read_bytes()), SimpleUploadedFile("notes.txt", b"hello")]
    resp = client.post("/transcribe/batch", data={"files": files, "language": "en"})
    assert resp.status_code == 415
    answer = body(resp)
    assert answer["field"] == "files" and answer["detail"].startswith("notes.txt: ")
    assert Job.objects.count() == 0 and Upload.objects.count() == 0


def test_a_file_name_of_thousands_of_characters_gets_a_message_about_the_name(live_server, clips):
    import requests

    # Over real HTTP: Django's test client cuts names to 255 characters before sending them.
    with open(clips["wav"], "rb") as fh:
        resp = requests.post(f"{live_server.url}/transcribe", files={"file": ("ж" * 4996 + ".wav", fh)},
                             data={"language": "en"}, timeout=60)
    assert resp.status_code == 400
    answer = resp.json()
    assert answer["field"] == "file" and "file name" in answer["detail"] and "header size" not in answer["detail"]
    assert Upload.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/job/not-a-uuid", "/job/not-a-uuid/result", "/batch/12345"])
def test_an_id_that_is_not_a_uuid_is_404_like_any_unknown_id(client, path):
    resp = client.get(path)
    assert resp.status_code == 404 and "no " in resp.json()["detail"]
    assert client.post("/job/not-a-uuid/cancel").status_code == 404


def test_importing_the_settings_makes_nothing_and_the_generated_key_is_shared(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "project.settings"}
    env.pop("DJANGO_SECRET_KEY", None)
    read = subprocess.run([sys.executable, "-c", "import project.settings"], env=env, cwd=REPO, check=True)
    assert read.returncode == 0 and not (tmp_path / "data").exists()  # importing only reads
    keys = [subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.conf import settings;"
                            " print(str(settings.SECRET_KEY))"], env=env, cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip() for _ in range(2)]
    assert len(keys[0]) > 40 and keys[0] == keys[1]  # generated once, then read by every process
    assert oct((tmp_path / "data" / "secret_key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.django_db
def test_job_creation_is_rate_limited_per_client(client, clips, settings):
    settings.JOB_RATE_LIMIT = "2/min"
    statuses = []
    for _ in range(3):
        upload = SimpleUploadedFile("jfk.wav", clips["wav"].read_bytes())
        statuses.append(client.post("/transcribe", data={"file": upload, "model": "nope"}).status_code)
    assert statuses == [422, 422, 429]
    assert client.get("/models").status_code == 200  # reading is not limited
    settings.JOB_RATE_LIMIT = None
    upload = SimpleUploadedFile("jfk.wav", clips["wav"].read_bytes())
    assert client.post("/transcribe", data={"file": upload, "model": "nope"}).status_code == 422
