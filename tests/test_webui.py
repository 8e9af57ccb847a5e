"""The web pages: rendered through Django's test client (i18n, options, ranges, history, actions)
and driven in Chromium against a live server with a real Huey worker (upload, progress, viewer)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.browser import (chromium, check_accessible_basics, drop_files, pages,  # noqa: F401
                           screenshot, throttle_uploads)
from tests.conftest import JFK_REFERENCE, post_file, wer
from transcription.models import Job, Upload
from transcription.schemas import TranscribeOptions
from transcription.spec import JobSpec
from transcription.uploads import ALLOWED_EXTENSIONS
from webui.media import parse_range

DEFAULT_OPTIONS = TranscribeOptions().model_dump(exclude={"model", "engine", "wait", "callback_url"})


def spec_data(**options) -> dict:
    """A job's stored spec, as intake makes it from a request with these options."""
    return JobSpec.from_request(TranscribeOptions(**options)).model_dump(mode="json")


def make_job(name: str = "talk.flac", source: Path | None = None, status: str = "queued",
             result: dict | None = None, language: str = "en", **fields) -> Job:
    """A job row in the given state, moved there by the model's own transitions. `language` is
    the one asked for: a named one is kept as it is, 'auto' is detected (as English, 97 %)."""
    rel = f"uploads/{uuid.uuid4()}{Path(name).suffix}"  # any name fits the file system
    path = Path(settings.MEDIA_ROOT) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if source:
        shutil.copyfile(source, path)
    else:
        path.write_bytes(b"\0" * 1000)
    upload = Upload.objects.create(original_name=name, stored_path=rel, size=path.stat().st_size,
                                   sha256=hashlib.sha256(path.read_bytes()).hexdigest(), duration=11.0)
    job = Job.objects.create(upload=upload, model="base", engine="ctranslate2",
                             spec_data=spec_data(language=language), **fields)
    if status != "queued":
        job.start()
    if status == "done":
        result = result or {"text": "hello", "segments": []}
        if "options" in result:  # what the job was asked for, as the pipeline records it
            result = {**result, "options": {**result["options"], "language": language}}
        text_rel = f"results/{job.id}.txt"
        (Path(settings.MEDIA_ROOT) / text_rel).parent.mkdir(parents=True, exist_ok=True)
        (Path(settings.MEDIA_ROOT) / text_rel).write_text(result["text"], encoding="utf-8")
        detected = language == "auto"
        job.finish(result, text_rel, inference_seconds=1.0, language="en" if detected else language,
                   language_probability=0.97 if detected else None)
    elif status == "failed":
        job.fail("this file has no audio stream", "bad_audio")
    elif status == "cancelled":
        job.cancel()
    return job


JFK_RESULT = {
    "text": "And so my fellow Americans, ask not.",
    "language": "en",
    "segments": [
        {"id": 0, "start": 0.0, "end": 3.2, "text": "And so my fellow Americans,",
         "words": [{"start": 0.0, "end": 0.4, "word": " And"}, {"start": 0.4, "end": 0.8, "word": " so"}]},
        {"id": 1, "start": 3.2, "end": 5.5, "text": "ask not.", "words": None},
    ],
    "options": {**DEFAULT_OPTIONS, "model": "base", "engine": "ctranslate2"},
}


# --- pages through the test client -------------------------------------------------------------


@pytest.mark.django_db
def test_upload_page_offers_installed_models_every_whisper_language_and_the_schemas_bounds(client):
    from transcription.languages import LANGUAGES
    from transcription.modelstore import installed_names

    html = client.get("/").content.decode()
    models = re.findall(r'<option value="([^"]*)"', html.split('name="model"')[1].split("</select>")[0])
    assert models == installed_names() and models, models
    languages = re.findall(r'<option value="([^"]*)"', html.split('name="language"')[1].split("</select>")[0])
    assert languages[0] == "auto" and set(languages[1:]) == set(LANGUAGES)
    assert '<option value="ru" selected>Russian</option>' in html  # WHISPER_DEFAULT_LANGUAGE
    # the browser checks what the API checks: bounds and defaults come from TranscribeOptions
    field = re.search(r'<input[^>]*name="no_speech_threshold"[^>]*>', html).group(0)
    assert 'min="0.0"' in field and 'max="1.0"' in field and 'value="0.4"' in field
    field = re.search(r'<input[^>]*name="silence_threshold"[^>]*>', html).group(0)
    assert 'min="-120.0"' in field and 'max="0.0"' in field and 'value="-60.0"' in field
    field = re.search(r'<input[^>]*name="beam_size"[^>]*>', html).group(0)
    assert 'min="1"' in field and 'max="16"' in field
    for name in ("word_timestamps", "condition_on_previous_text", "remove_silence"):
        assert re.search(rf'<input type="checkbox" name="{name}"[^>]*checked', html), name
    for name in ("hallucination_silence_threshold", "silence_duration", "temperature", "initial_prompt"):
        assert f'name="{name}"' in html
    assert f'data-extensions="{",".join(ALLOWED_EXTENSIONS)}"' in html
    assert f'data-max-bytes="{settings.MAX_UPLOAD_BYTES}"' in html


@pytest.mark.django_db
def test_pages_speak_russian_when_the_browser_asks_for_it(client):
    job = make_job(status="done", result=JFK_RESULT)
    for path in ("/", "/jobs/", f"/jobs/{job.id}/"):
        russian = client.get(path, HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9").content.decode()
        english = client.get(path, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
        assert '<html lang="ru">' in russian and '<html lang="en">' in english, path
        assert "История" in russian and "History" in english, path
    index = client.get("/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Перетащите сюда аудио- или видеофайлы" in index
    assert '<option value="ru" selected>Русский</option>' in index
    assert "Готово" in client.get(f"/jobs/{job.id}/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()


@pytest.mark.django_db
def test_no_page_loads_anything_from_another_host(client):
    job = make_job(status="done", result=JFK_RESULT)
    for path in ("/", "/jobs/", f"/jobs/{job.id}/"):
        html = client.get(path).content.decode()
        assert not re.findall(r'(?:src|href|action)="(?:https?:)?//', html), path
        assert "@import" not in html and "url(http" not in html
    for name in ("app.css", "common.js", "upload.js", "job.js"):
        text = (Path(settings.BASE_DIR) / "webui/static/webui" / name).read_text()
        assert not re.search(r"https?://", text), name


@pytest.mark.parametrize("header,size,expected", [
    ("bytes=0-99", 1000, (0, 99)),
    ("bytes=500-", 1000, (500, 999)),
    ("bytes=-100", 1000, (900, 999)),
    ("bytes=900-5000", 1000, (900, 999)),
    ("bytes=0-0", 1000, (0, 0)),
    ("bytes=0-1,5-9", 1000, None),  # several ranges: the whole file, as RFC 9110 allows
    ("items=0-1", 1000, None),
    ("bytes=5-1", 1000, None),
])
def test_range_headers_are_read_as_rfc_9110_says(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges_raise(header):
    from webui.media import Unsatisfiable

    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


@pytest.mark.django_db
def test_audio_is_served_with_byte_ranges_for_seeking(client, eval_dir):
    job = make_job("jfk.flac", source=eval_dir / "jfk.flac")
    data = (eval_dir / "jfk.flac").read_bytes()
    url = f"/jobs/{job.id}/audio"

    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert whole["Content-Type"] == "audio/flac" and int(whole["Content-Length"]) == len(data)
    assert b"".join(whole.streaming_content) == data

    part = client.get(url, HTTP_RANGE="bytes=1000-1999")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    assert part["Content-Length"] == "1000" and b"".join(part.streaming_content) == data[1000:2000]

    tail = client.get(url, HTTP_RANGE="bytes=-500")
    assert tail.status_code == 206 and b"".join(tail.streaming_content) == data[-500:]

    rest = client.get(url, HTTP_RANGE=f"bytes={len(data) - 10}-")
    assert b"".join(rest.streaming_content) == data[-10:]

    beyond = client.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(data)}"

    stale = client.get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"not-this-file"')
    assert stale.status_code == 200  # the file changed since: send it all
    fresh = client.get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=whole["ETag"])
    assert fresh.status_code == 206

    download = client.get(url + "?download=1")
    assert download["Content-Disposition"] == "attachment; filename*=UTF-8''jfk.flac"


@pytest.mark.django_db
def test_audio_of_a_deleted_file_or_unknown_job_is_404(client):
    job = make_job()
    (Path(settings.MEDIA_ROOT) / job.upload.stored_path).unlink()
    assert client.get(f"/jobs/{job.id}/audio").status_code == 404
    assert client.get(f"/jobs/{uuid.uuid4()}/audio").status_code == 404
    assert client.get(f"/jobs/{uuid.uuid4()}/").status_code == 404


@pytest.mark.django_db
def test_history_pages_jobs_newest_first(client):
    jobs = [make_job(f"file-{i:02d}.mp3") for i in range(30)]
    first = client.get("/jobs/").content.decode()
    rows = re.findall(r'<tr data-job-id="([^"]+)"', first)
    assert rows == [str(j.id) for j in reversed(jobs)][:25]
    second = client.get("/jobs/?page=2").content.decode()
    assert re.findall(r'<tr data-job-id="([^"]+)"', second) == [str(j.id) for j in reversed(jobs)][25:]
    assert "Page 2 of 2 · 30 jobs" in second
    make_job("broken.wav", status="failed")
    failed = client.get("/jobs/?status=failed").content.decode()
    assert len(re.findall(r"<tr data-job-id", failed)) == 1 and "broken.wav" in failed


@pytest.mark.django_db
def test_job_page_shows_result_metadata_and_why_a_job_failed(client):
    done = make_job("jfk.flac", status="done", result=JFK_RESULT, language="auto")
    Job.objects.filter(pk=done.pk).update(audio_duration=11.0, conversion_seconds=0.5)
    html = client.get(f"/jobs/{done.id}/").content.decode()
    assert html.count('class="segment"') == 2 and html.count('class="word"') == 2
    assert 'data-start="3.2"' in html  # machine-readable times, never localised
    assert "English (en) · probability 97 %" in html
    assert re.search(r'id="meta-rtf">0.091', html)  # 1.0 s inference / 11.0 s audio
    for fmt in ("txt", "srt", "vtt", "json"):
        assert f'href="/job/{done.id}/result?format={fmt}"' in html
    assert 'id="cancel-job"' not in html and 'id="retry-form"' in html

    failed = make_job("noise.wav", status="failed")
    html = client.get(f"/jobs/{failed.id}/").content.decode()
    assert "The job failed:" in html and "this file has no audio stream" in html

    running = make_job("long.mp3", status="running")
    html = client.get(f"/jobs/{running.id}/").content.decode()
    assert 'id="cancel-job"' in html and 'id="retry-form"' not in html


@pytest.mark.django_db
def test_cancel_stops_a_queued_job_and_says_so_for_a_finished_one(client):
    job = make_job()
    response = client.post(f"/jobs/{job.id}/cancel", follow=True)
    job.refresh_from_db()
    assert job.status == "cancelled" and "The job was cancelled." in response.content.decode()
    again = client.post(f"/jobs/{job.id}/cancel", follow=True).content.decode()
    assert f"job {job.id} was already cancelled" in again
    assert client.get(f"/jobs/{job.id}/cancel").status_code == 405


@pytest.mark.django_db
def test_retry_queues_a_new_job_with_the_new_options(client, eval_dir):
    old = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="failed")
    form = {"language": "en", "task": "transcribe", "model": "tiny.en", "engine": "ctranslate2",
            "no_speech_threshold": "0.5", "hallucination_silence_threshold": "0",
            "silence_threshold": "-50", "silence_duration": "1.5", "beam_size": "2",
            "temperature": "0.0", "initial_prompt": "Kennedy", "remove_silence": "on"}
    response = client.post(f"/jobs/{old.id}/retry", form)
    new = Job.objects.exclude(pk=old.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{new.id}/"
    assert new.upload_id == old.upload_id and new.status == "queued"
    assert new.model == "tiny.en" and new.engine == "ctranslate2"
    assert new.options["word_timestamps"] is False  # unticked box
    assert new.options["remove_silence"] is True
    assert new.options["beam_size"] == 2 and new.options["initial_prompt"] == "Kennedy"
    assert new.options["silence_duration"] == 1.5 and new.options["hallucination_silence_threshold"] == 0


@pytest.mark.django_db
def test_retry_with_a_bad_option_explains_and_queues_nothing(client, eval_dir):
    old = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="failed")
    base = {"language": "en", "task": "transcribe", "model": "base", "no_speech_threshold": "0.4",
            "hallucination_silence_threshold": "0.8", "silence_threshold": "-60", "silence_duration": "0.5",
            "temperature": "0.0"}
    out_of_bounds = client.post(f"/jobs/{old.id}/retry", {**base, "no_speech_threshold": "2"})
    assert out_of_bounds.status_code == 422
    assert "less than or equal to 1.0" in out_of_bounds.content.decode()
    english_only = client.post(f"/jobs/{old.id}/retry", {**base, "model": "tiny.en", "language": "ru"})
    assert english_only.status_code == 422 and "English-only" in english_only.content.decode()
    bad_temperature = client.post(f"/jobs/{old.id}/retry", {**base, "temperature": "hot"})
    assert bad_temperature.status_code == 422 and "comma-separated numbers" in bad_temperature.content.decode()
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_retry_form_shows_every_error_at_the_top_and_opens_the_section_holding_them(client, eval_dir):
    old = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="failed")
    form = {"language": "ru", "task": "transcribe", "model": "tiny.en", "no_speech_threshold": "2",
            "hallucination_silence_threshold": "0.8", "silence_threshold": "-60", "silence_duration": "0.5",
            "beam_size": "0", "temperature": "hot"}
    response = client.post(f"/jobs/{old.id}/retry", form)
    html = response.content.decode()
    assert response.status_code == 422 and Job.objects.count() == 1
    summary = html.split('id="retry-errors"')[1].split("</div>")[0]
    assert html.index('id="retry-errors"') < html.index('class="layout-job"'), "at the top of the page"
    # the form's own checks, the schema's and the plan's, all at once, each linked to its field
    for field, label, words in (("no_speech_threshold", "No-speech threshold", "less than or equal to 1.0"),
                                ("beam_size", "Beam size", "greater than or equal to 1"),
                                ("temperature", "Temperature", "comma-separated numbers"),
                                ("language", "Language", "English-only")):
        assert re.search(rf'<a href="#id_{field}">{label}</a>: [^<]*{words}', summary), field
    assert re.search(r'<details class="advanced" open>', html)

    # an error only in the basic fields leaves the advanced section as it was: closed
    html = client.post(f"/jobs/{old.id}/retry", {**form, "no_speech_threshold": "0.4", "beam_size": "",
                                                 "temperature": "0.0"}).content.decode()
    summary = html.split('id="retry-errors"')[1].split("</div>")[0]
    assert summary.count("<li>") == 1 and "English-only" in summary
    assert '<details class="advanced">' in html


@pytest.mark.parametrize("language,sizes", [
    ("en", ["1000 bytes", "1.1 MB", "5.0 GB", "97.7 KB"]),
    ("ru", ["1000 байт", "1,1 МБ", "5,0 ГБ", "97,7 КБ"]),
])
def test_sizes_and_seconds_are_written_in_the_pages_language(language, sizes):
    from django.utils import translation

    from webui.templatetags.webui import filesize, secs

    with translation.override(language):
        assert [filesize(n) for n in (1000, 1153434, 5 * 1024**3, 100_000)] == sizes
        assert secs(0.499) == ("0.50 s" if language == "en" else "0,50 с")  # rounded, not cut off


@pytest.mark.django_db
def test_upload_form_starts_on_the_default_language(client, settings):
    def chosen():
        select = client.get("/").content.decode().split('name="language"')[1].split("</select>")[0]
        return re.findall(r'<option value="([^"]*)" selected>', select)

    assert settings.WHISPER_DEFAULT_LANGUAGE == "ru" and chosen() == ["ru"]
    settings.WHISPER_DEFAULT_LANGUAGE = "de"
    assert chosen() == ["de"]
    settings.WHISPER_DEFAULT_LANGUAGE = "auto"
    assert chosen() == ["auto"]


@pytest.mark.django_db
def test_unknown_page_is_a_translated_404_in_the_sites_layout(client):
    for path in ("/no-such-page/", f"/jobs/{uuid.uuid4()}/"):
        english = client.get(path, HTTP_ACCEPT_LANGUAGE="en")
        russian = client.get(path, HTTP_ACCEPT_LANGUAGE="ru")
        assert english.status_code == russian.status_code == 404
        english, russian = english.content.decode(), russian.content.decode()
        assert "<h1>Page not found</h1>" in english and 'class="navbar"' in english
        assert "<h1>Страница не найдена</h1>" in russian and '<html lang="ru">' in russian
        assert f'<code class="file-name">{path}</code>' in russian
        assert "История" in russian and 'href="/"' in russian  # the nav bar, a way back


@pytest.mark.django_db
@pytest.mark.parametrize("accept,chosen,detected", [
    ("en", "Russian (ru) · chosen", "English (en) · probability 97 %"),
    ("ru", "Русский (ru) · выбран", "Английский (en) · вероятность 97 %"),
])
def test_job_page_says_a_chosen_language_was_chosen_and_a_detected_one_how_sure(client, accept, chosen,
                                                                                  detected):
    given = make_job("talk.mp3", status="done", result=JFK_RESULT, language="ru")
    assert given.language_probability is None
    html = client.get(f"/jobs/{given.id}/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
    assert f'<dd id="meta-language">{chosen}</dd>' in html
    # rows from before the pipeline left the probability empty still say "chosen", not "100 %"
    Job.objects.filter(pk=given.pk).update(language_probability=1.0)
    html = client.get(f"/jobs/{given.id}/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
    assert f'<dd id="meta-language">{chosen}</dd>' in html and "100" not in html.split("meta-language")[1][:60]
    auto = make_job("talk.mp3", status="done", result=JFK_RESULT, language="auto")
    html = client.get(f"/jobs/{auto.id}/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
    assert f'<dd id="meta-language">{detected}</dd>' in html


def _options_used(html: str) -> dict[str, tuple[str, str]]:
    table = html.split('id="options-used"')[1].split("</table>")[0]
    return {name: (label, value) for name, label, value in
            re.findall(r'<tr data-option="([^"]+)"><td>([^<]*)</td><td>([^<]*)</td></tr>', table)}


@pytest.mark.django_db
def test_options_used_read_as_the_forms_labels_and_plain_values(client):
    job = make_job("talk.mp3", status="done", language="auto", result={**JFK_RESULT, "options": {
        **JFK_RESULT["options"], "initial_prompt": None, "beam_size": None}})
    english = _options_used(client.get(f"/jobs/{job.id}/", HTTP_ACCEPT_LANGUAGE="en").content.decode())
    assert set(english) == set(JFK_RESULT["options"])  # every option, none left out
    assert english["no_speech_threshold"] == ("No-speech threshold", "0.4")
    assert english["temperature"] == ("Temperature", "0.0, 0.2, 0.4, 0.6, 0.8, 1.0")  # room to wrap
    assert english["word_timestamps"] == ("Word timestamps", "Yes")
    assert english["no_timestamps"] == ("Without timestamps", "No")
    assert english["beam_size"] == ("Beam size", "engine default")
    assert english["initial_prompt"] == ("Initial prompt", "—")
    assert english["language"] == ("Language", "Detect automatically")
    assert english["engine"] == ("Engine", "ctranslate2")
    for label, value in english.values():
        assert "_" not in label and value not in ("null", "None", "true", "false", ""), (label, value)

    russian = _options_used(client.get(f"/jobs/{job.id}/", HTTP_ACCEPT_LANGUAGE="ru").content.decode())
    assert russian["no_speech_threshold"] == ("Порог отсутствия речи", "0,4")
    assert russian["temperature"] == ("Температура", "0,0; 0,2; 0,4; 0,6; 0,8; 1,0")
    assert russian["word_timestamps"] == ("Метки времени слов", "Да")
    assert russian["beam_size"][1] == "по умолчанию движка"
    assert russian["language"][1] == "Определить автоматически"
    assert russian["task"] == ("Задача", "Расшифровать")
    for label, _value in russian.values():
        assert re.search("[а-яё]", label, re.I), label


@pytest.mark.django_db
def test_a_failed_job_and_an_empty_result_say_what_happened(client):
    failed = make_job("noise.wav", status="failed")
    html = client.get(f"/jobs/{failed.id}/").content.decode()
    assert "appears here when the job is done" not in html
    assert "There is no transcript: the job failed" in html
    cancelled = make_job("noise.wav", status="cancelled")
    html = client.get(f"/jobs/{cancelled.id}/").content.decode()
    assert "appears here when the job is done" not in html and "the job was cancelled" in html

    silent = make_job("silence.wav", status="done", result={"text": " ", "segments": []})
    html = client.get(f"/jobs/{silent.id}/").content.decode()
    assert "No speech was found in this file." in html
    assert 'id="full-text"' not in html and 'id="copy-text"' not in html  # no empty box to copy


def test_every_whisper_language_has_a_name_in_russian():
    """The language menu (and the job page, which names languages the same way) in Russian."""
    from django.utils import translation

    from transcription.languages import LANGUAGES
    from webui.selectors import language_choices

    with translation.override("en"):
        english = dict(language_choices())
    with translation.override("ru"):
        russian = dict(language_choices())
    assert set(russian) == set(LANGUAGES) | {"auto"}
    # Cyrillic and Latin letters never spell the same name, so a Russian name is always different
    untranslated = {code: name for code, name in russian.items()
                    if name == english[code] or not re.fullmatch(r"[А-ЯЁа-яё ()-]+", name)}
    assert untranslated == {}
    assert russian["la"] == "Латинский" and russian["be"] == "Белорусский" and russian["no"] == "Норвежский"
    assert english["la"] == "Latin" and english["ht"] == "Haitian Creole" and english["my"] == "Burmese"


@pytest.mark.django_db
def test_pages_need_a_login_when_api_tokens_are_set(client, settings, admin_user):
    settings.API_TOKENS = ["secret-token"]
    job = make_job()
    for path in ("/", "/jobs/", f"/jobs/{job.id}/", f"/jobs/{job.id}/audio"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path
    client.force_login(admin_user)
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_with_api_tokens_the_page_sends_to_the_api_with_its_session_and_csrf_token(settings, admin_user, clips):
    from django.test import Client

    settings.API_TOKENS = ["secret-token"]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    html = browser.get("/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    with open(clips["wav"], "rb") as fh:
        accepted = browser.post("/transcribe", {"file": fh, "wait": "false", "language": "en"},
                                HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 202, accepted.content
    with open(clips["wav"], "rb") as fh:
        forged = browser.post("/transcribe", {"file": fh, "wait": "false"})
    assert forged.status_code in (401, 403)
    assert Job.objects.count() == 1


# --- in the browser, against a live server and a real worker ----------------------------------------

RECORD_ROWS = """() => {
  window.__seen = [];
  const list = document.getElementById('uploads');
  new MutationObserver(() => {
    for (const row of list.querySelectorAll('.upload-row')) {
      const bar = row.querySelector('.progress');
      window.__seen.push({name: row.querySelector('.name').textContent, status: row.dataset.status || '',
        phase: bar.dataset.phase || '', value: parseFloat(bar.getAttribute('aria-valuenow')),
        detail: row.querySelector('.detail').textContent});
    }
  }).observe(list, {subtree: true, childList: true, attributes: true, characterData: true});
}"""

ROWS = """() => [...document.querySelectorAll('.upload-row')].map(r => ({
  name: r.querySelector('.name').textContent, status: r.dataset.status, job: r.dataset.jobId || null,
  value: parseFloat(r.querySelector('.progress').getAttribute('aria-valuenow')),
  error: r.querySelector('.error').textContent}))"""


# Resolves window.__after with the player's time and the highlighted segment and word as the page
# left them when the player's next `type` event had been handled.
AFTER_PLAYER_EVENT = """(type) => { const p = document.getElementById('player');
  window.__after = new Promise(resolve => p.addEventListener(type, () => {
    const w = document.querySelector('.word.active'), s = document.querySelector('.segment.active');
    resolve({t: p.currentTime, w: w && [+w.dataset.start, +w.dataset.end],
             s: s && [+s.dataset.start, +s.dataset.end], current: s && s.getAttribute('aria-current')});
  }, {once: true})); }"""


def _highlighted(spans: list[tuple[float, float]], t: float) -> list[float] | None:
    """The page's rule: the last item starting at (or a millisecond before) t, while t is before its end."""
    started = [span for span in spans if span[0] <= t + 1e-3]
    return list(started[-1]) if started and t < started[-1][1] else None


def _wait_rows_final(page, timeout: float = 180, on_poll=None) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = page.evaluate(ROWS)
        if on_poll:
            on_poll(rows)
        if rows and all(r["status"] in ("done", "failed", "cancelled", "rejected") for r in rows):
            return rows
        time.sleep(0.2)
    pytest.fail(f"rows not final after {timeout} s: {page.evaluate(ROWS)}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_drop_two_clips_and_watch_them_upload_run_and_finish(service, pages, eval_dir):
    page = pages.open("/", permissions=["clipboard-read", "clipboard-write"])
    check_accessible_basics(page)
    page.select_option("#id_language", "en")
    page.select_option("#id_model", "base")
    page.click("details.advanced summary")
    page.select_option("#id_engine", "ctranslate2")
    page.click("details.advanced summary")  # closed again: the options stay chosen
    throttle_uploads(page, 400 * 1024)  # ~3 s for jfk.flac: upload progress is seen, not assumed
    page.evaluate(RECORD_ROWS)
    drop_files(page, "#dropzone", [("jfk.flac", (eval_dir / "jfk.flac").read_bytes()),
                                   ("multilingual.mp3", (eval_dir / "multilingual.mp3").read_bytes())])
    assert page.locator(".upload-row").count() == 2

    shot = {}

    def capture_while_running(rows):
        if not shot and rows[0]["status"] == "done" and rows[1]["status"] == "running" and rows[1]["value"] > 0:
            shot["path"] = screenshot(page, "upload-page.png")

    rows = _wait_rows_final(page, on_poll=capture_while_running)
    assert [r["status"] for r in rows] == ["done", "done"], rows
    assert all(r["value"] == 100 for r in rows)
    assert page.inner_text("#announcer") == "multilingual.mp3: Done"  # what a screen reader heard last

    seen = page.evaluate("window.__seen")
    for name in ("jfk.flac", "multilingual.mp3"):
        mine = [s for s in seen if s["name"] == name]
        uploads = [s["value"] for s in mine if s["phase"] == "upload"]
        assert any(0 < v < 100 for v in uploads), f"{name}: no partial upload progress seen: {uploads}"
        job_values = [s["value"] for s in mine if s["status"] in ("queued", "running", "done")]
        assert job_values == sorted(job_values), f"{name}: progress went backwards: {job_values}"
        assert any("elapsed" in s["detail"] for s in mine), name
    running = [s for s in seen if s["name"] == "multilingual.mp3" and s["status"] == "running"]
    assert any(0 < s["value"] < 100 for s in running), "no real percentage seen while the worker ran"
    assert any("left" in s["detail"] for s in running), "no estimate of the time left"
    assert "path" in shot

    jobs = {r["name"]: Job.objects.get(pk=r["job"]) for r in rows}
    assert all(j.status == "done" and j.model == "base" and j.engine == "ctranslate2" for j in jobs.values())
    assert wer(JFK_REFERENCE, jobs["jfk.flac"].result["text"]) <= 0.10
    assert page.locator(".upload-row .preview").first.inner_text().startswith("And so")

    page.locator(".upload-row").nth(1).locator("a.open").click()  # each row opens its job's page
    page.wait_for_url(f"**/jobs/{jobs['multilingual.mp3'].id}/")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_finished_job_reads_plays_highlights_downloads_and_copies(service, pages, eval_dir):
    answer = post_file(service, eval_dir / "multilingual.mp3", language="en", model="base", engine="ctranslate2")
    assert answer.status_code == 200, answer.text
    job = Job.objects.get(pk=answer.json()["job_id"])
    segments = job.result["segments"]
    page = pages.open(f"/jobs/{job.id}/", permissions=["clipboard-read", "clipboard-write"])
    check_accessible_basics(page)
    assert page.locator("#segments .segment").count() == len(segments) >= 5
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    duration = page.evaluate("document.getElementById('player').duration")
    assert duration == pytest.approx(59.95, abs=0.5)
    seekable = page.evaluate("(() => { const s = document.getElementById('player').seekable;"
                             " return s.length ? s.end(s.length - 1) : 0; })()")
    assert seekable == pytest.approx(duration, abs=0.5), "the server's byte ranges let Chromium seek anywhere"

    # What the page highlighted, read by a listener added after the page's own: it runs in the same
    # task, so both see the same currentTime. Nothing depends on where this FFmpeg put word edges.
    seg_spans = [(seg["start"], seg["end"]) for seg in segments]
    word_spans = [(w["start"], w["end"]) for seg in segments for w in seg.get("words") or []]
    target = segments[4]
    page.evaluate(AFTER_PLAYER_EVENT, "seeked")
    page.locator("#segments .segment").nth(4).locator("button.time").click()
    state = page.evaluate("window.__after")
    # the seek lands where asked, give or take the player's timeupdate granularity (at most 250 ms)
    assert target["start"] - 0.001 <= state["t"] <= target["start"] + 0.25, (state, target["start"])
    assert state["s"] == _highlighted(seg_spans, state["t"]) == [target["start"], target["end"]], state
    assert state["current"] == "true"  # told to screen readers too
    assert page.locator("#segments .segment.active").count() == 1

    # playback moves the highlight along: from a word to a later one once that word has been spoken
    # (in a later segment of at least three words: how the decoder splits segments is its own)
    later = next(i for i, seg in enumerate(segments) if i > 4 and len(seg.get("words") or []) >= 3)
    word = page.locator("#segments .segment").nth(later).locator(".word").nth(2)
    word_start, word_end = float(word.get_attribute("data-start")), float(word.get_attribute("data-end"))
    word.click()
    page.wait_for_function(f"document.getElementById('player').currentTime > {word_end + 0.25}", timeout=15_000)
    page.evaluate(AFTER_PLAYER_EVENT, "pause")
    page.evaluate("document.getElementById('player').pause()")
    state = page.evaluate("window.__after")
    assert state["s"] == _highlighted(seg_spans, state["t"]), state
    assert state["w"] == _highlighted(word_spans, state["t"]), state  # None between two words
    assert state["w"] is None or state["w"][0] >= word_end - 1e-3, (state, word_start, word_end)

    expected_text = page.inner_text("#full-text")
    for fmt in ("txt", "srt", "vtt", "json"):
        with page.expect_download() as info:
            page.click(f'#downloads a[data-format="{fmt}"]')
        download = info.value
        assert download.suggested_filename == f"multilingual.{fmt}"
        body = Path(download.path()).read_text(encoding="utf-8")
        if fmt == "txt":
            assert body.strip() == job.result["text"].strip() == expected_text.strip()
        elif fmt == "srt":
            assert re.search(r"^1\n00:00:0\d,\d{3} --> 00:00:\d\d,\d{3}\n", body)
        elif fmt == "vtt":
            assert body.startswith("WEBVTT") and "-->" in body
        else:
            assert len(json.loads(body)["segments"]) == len(segments)

    page.click("#copy-text")
    page.wait_for_function("document.getElementById('copy-status').textContent.length > 0")
    assert page.inner_text("#copy-status") == "Copied to the clipboard."
    assert page.evaluate("navigator.clipboard.readText()").strip() == job.result["text"].strip()

    assert page.inner_text("#meta-model") == "base" and page.inner_text("#meta-engine") == "ctranslate2"
    assert page.inner_text("#meta-language") == "English (en) · chosen"  # asked for, not detected
    rtf = float(page.inner_text("#meta-rtf").split()[0])
    assert rtf == pytest.approx(job.inference_seconds / job.audio_duration, abs=0.002)

    # for the picture: the player in the middle of a word about 25 s in, wherever this build put it
    middle = min((t for t in ((a + b) / 2 for a, b in word_spans) if _highlighted(word_spans, t)),
                 key=lambda t: abs(t - 25.5))
    page.evaluate(f"document.getElementById('player').currentTime = {middle}")
    page.wait_for_function("document.querySelector('.word.active') !== null")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "job-page.png")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_cancel_a_running_job_then_retry_it_with_other_options(service, pages, eval_dir):
    with open(eval_dir / "multilingual.mp3", "rb") as fh:
        accepted = requests.post(f"{service}/transcribe", files={"file": ("multilingual.mp3", fh)},
                                 data={"language": "auto", "model": "base", "engine": "ctranslate2",
                                       "wait": "false"}, timeout=60).json()
    page = pages.open(f"/jobs/{accepted['job_id']}/")
    page.wait_for_function("document.getElementById('job-status').dataset.status === 'running'", timeout=60_000)
    page.wait_for_function("document.getElementById('live-detail').textContent.includes('elapsed')")
    check_accessible_basics(page)
    page.click("#cancel-job")
    page.wait_for_selector('#job-status[data-status="cancelled"]')
    assert "The job was cancelled." in page.inner_text(".messages")
    assert Job.objects.get(pk=accepted["job_id"]).status == "cancelled"

    page.select_option("#id_model", "tiny.en")
    page.select_option("#id_language", "en")
    page.click("#retry-form details.advanced summary")
    page.uncheck("#id_word_timestamps")
    page.fill("#id_beam_size", "1")
    page.click("#retry-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
    new_id = page.url.rstrip("/").split("/")[-1]
    assert new_id != accepted["job_id"]
    page.wait_for_selector('#job-status[data-status="done"]', timeout=120_000)  # the page reloads itself
    assert page.inner_text("#meta-model") == "tiny.en"
    assert page.locator("#segments .segment").count() > 3 and page.locator("#segments .word").count() == 0
    options = dict(page.eval_on_selector_all("#options-used tbody tr",
                                             "rows => rows.map(r => [r.dataset.option, r.cells[1].textContent])"))
    assert options["word_timestamps"] == "No" and options["beam_size"] == "1" and options["model"] == "tiny.en"
    new = Job.objects.get(pk=new_id)
    assert new.upload_id == Job.objects.get(pk=accepted["job_id"]).upload_id and new.status == "done"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_run_again_with_mistakes_lists_them_all_at_the_top(pages, eval_dir):
    old = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="failed")
    page = pages.open(f"/jobs/{old.id}/")
    page.select_option("#id_model", "tiny.en")
    page.select_option("#id_language", "ru")
    page.click("#retry-form details.advanced summary")
    page.fill("#id_no_speech_threshold", "2")
    page.fill("#id_temperature", "hot")
    page.click("#retry-form details.advanced summary")  # closed again: the mistakes are out of sight
    page.click("#retry-form button[type=submit]")
    page.wait_for_selector("#retry-errors")
    items = page.locator("#retry-errors li").all_inner_texts()
    assert [item.split(":")[0] for item in items] == ["Language", "No-speech threshold", "Temperature"], items
    assert page.evaluate("document.getElementById('retry-errors').getBoundingClientRect().top") < 200
    assert page.locator("#retry-form details.advanced").get_attribute("open") is not None
    page.click("#retry-errors a[href='#id_temperature']")
    assert page.locator("#id_temperature").is_visible() and page.url.endswith("#id_temperature")
    assert Job.objects.count() == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_files_are_checked_in_the_browser_before_sending_and_again_by_the_server(pages, settings, clips):
    settings.MAX_UPLOAD_BYTES = 100_000  # the live server runs in this process: it sees the change
    page = pages.open("/")
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/transcribe") else None)
    big = clips["wav"].read_bytes()
    assert len(big) > settings.MAX_UPLOAD_BYTES
    drop_files(page, "#dropzone", [("notes.txt", b"hello"), ("jfk.wav", big), ("empty.mp3", b"")])
    rows = _wait_rows_final(page, timeout=10)
    assert [r["status"] for r in rows] == ["rejected"] * 3
    assert "this file type is not accepted" in rows[0]["error"]
    assert "over the 97.7 KB limit" in rows[1]["error"]
    assert "empty" in rows[2]["error"]
    assert sent == []

    # passes the browser's checks (.mp3, small), but the server finds no audio in it
    drop_files(page, "#dropzone", [("notes.mp3", clips["text_as_mp3"].read_bytes())])
    rows = _wait_rows_final(page, timeout=30)
    assert rows[3]["status"] == "rejected" and len(sent) == 1
    assert "notes.mp3" in rows[3]["error"] and "audio" in rows[3]["error"].lower()

    # a page rendered before the limit was lowered lets a big file through: the server refuses it
    settings.MAX_UPLOAD_BYTES = 10 * len(big)
    stale = pages.open("/")
    stale.on("request", lambda r: sent.append(r.url) if r.url.endswith("/transcribe") else None)
    settings.MAX_UPLOAD_BYTES = 100_000
    drop_files(stale, "#dropzone", [("jfk.wav", big)])
    rows = _wait_rows_final(stale, timeout=30)
    assert rows[0]["status"] == "rejected" and len(sent) == 2
    assert rows[0]["error"] in ("file is larger than the 97.7 KB limit", "The upload was interrupted"
                                " (connection closed). Over the size limit?"), rows[0]["error"]
    assert not Job.objects.exists()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_drop_zone_is_reachable_and_usable_from_the_keyboard(pages, tmp_path):
    page = pages.open("/")
    # Listen for the file picker before any key is pressed: Playwright turns interception on
    # asynchronously, and a dialog opened before that is lost (expect_file_chooser() races too).
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "dropzone":
            break
    else:
        pytest.fail("Tab never reached the drop zone")
    outline = page.evaluate("getComputedStyle(document.activeElement).boxShadow")
    assert outline != "none", "the focused drop zone must show it has the focus"
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    # count the picker input's clicks: if the dialog is missed, the message says whether the key landed
    page.evaluate("window.__c = 0; document.getElementById('files').addEventListener('click', () => window.__c++)")
    page.keyboard.press("Enter")
    for _ in range(50):
        if choosers:
            break
        page.wait_for_timeout(100)
    assert choosers, ("Enter on the drop zone did not open the file picker",
                      page.evaluate("[window.__c, document.activeElement.id, document.hasFocus()]"))
    assert choosers[0].is_multiple()
    choosers[0].set_files(str(notes))
    rows = _wait_rows_final(page, timeout=10)
    assert rows[0]["name"] == "notes.txt" and rows[0]["status"] == "rejected"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_history_and_pages_in_russian_in_the_browser(pages):
    jobs = [make_job(f"lecture-{i:02d}.mp3", status="done", result=JFK_RESULT) for i in range(27)]
    page = pages.open("/jobs/", locale="ru-RU")
    assert page.get_attribute("html", "lang") == "ru"
    assert page.inner_text("h1") == "История"
    check_accessible_basics(page)
    ids = page.eval_on_selector_all("#history tbody tr", "rows => rows.map(r => r.dataset.jobId)")
    assert ids == [str(j.id) for j in reversed(jobs)][:25]
    page.click("a[rel=next]")
    ids = page.eval_on_selector_all("#history tbody tr", "rows => rows.map(r => r.dataset.jobId)")
    assert ids == [str(jobs[1].id), str(jobs[0].id)]
    page.click(f'tr[data-job-id="{jobs[0].id}"] a')
    page.wait_for_url(f"**/jobs/{jobs[0].id}/")
    assert page.inner_text("#job-status") == "Готово"
    assert page.inner_text("#transcript-title") == "Расшифровка"
    check_accessible_basics(page)

    page.goto(page.url.split("/jobs/")[0] + "/")
    assert page.inner_text(".dropzone strong") == "Перетащите сюда аудио- или видеофайлы"
    assert page.inner_text("label[for=id_language]") == "Язык"
    check_accessible_basics(page)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_api_docs_page_works_offline(pages):
    """The nav bar's "API" link: Swagger UI from the app's own static files, no CDN."""
    page = pages.open("/")
    page.click("nav a:text-is('API')")
    page.wait_for_selector(".opblock-summary-path[data-path='/transcribe']")
    assert page.locator(".opblock-post .opblock-summary-path[data-path='/transcribe']").count() == 1
    assert page.locator(".opblock-get .opblock-summary-path[data-path='/job/{job_id}']").count() == 1
    assert page.inner_text(".information-container .title").startswith("Whisper transcription service")
    # and the pages fixture fails the test if anything was asked of another host


def test_a_running_jobs_time_left_is_the_workers_estimate_not_elapsed_arithmetic(pages):
    from datetime import timedelta

    from django.utils import timezone

    job = make_job("long-talk.flac", status="running")
    # 40 % done after ten minutes of loading and decoding, but the worker measured its decoding
    # speed and expects to finish in 90 s: elapsed × 60/40 would say 15 minutes.
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=10))
    job.set_progress(40.0, timezone.now() + timedelta(seconds=90))
    page = pages.open(f"/jobs/{job.id}/")
    page.wait_for_function("document.getElementById('live-detail').textContent.includes('left')")
    detail = page.locator("#live-detail").text_content()
    assert re.search(r"about 1:(2\d|30) left", detail), detail


@pytest.mark.django_db
def test_the_upload_page_says_when_no_worker_would_take_the_files(client):
    from transcription.models import Worker

    Worker.objects.all().delete()
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert 'id="no-worker"' in page and "Обработчик не запущен" in page
    Worker.objects.create(name="here:1", host="here", pid=1)
    assert 'id="no-worker"' not in client.get("/").content.decode()
