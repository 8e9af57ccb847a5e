"""The admin: list columns, filters, search, readable results, actions (retry, cancel, delete with
files), the first-admin hint of `make run`, and a real session in Chromium against a live worker."""
from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from tests.browser import chromium, pages  # noqa: F401
from tests.test_webui import JFK_RESULT, make_job
from transcription.models import Job, Upload

JOBS = "/admin/transcription/job/"
UPLOADS = "/admin/transcription/upload/"


def _media(rel: str) -> Path:
    return Path(settings.MEDIA_ROOT) / rel


def _rows(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox" name="_selected_action" value="([^"]+)"', html)


@pytest.mark.django_db
def test_job_list_has_coloured_status_progress_file_and_run_columns(admin_client):
    done = make_job("jfk.flac", status="done", result=JFK_RESULT)
    make_job("noise.wav", status="failed")
    make_job("long.mp3", status="running")
    html = admin_client.get(JOBS).content.decode()
    assert len(_rows(html)) == 3
    for header in ("Status", "File", "Duration", "Model, engine", "Language", "Created", "Run time"):
        assert f">{header}<" in html or f">{header}</a>" in html, header
    assert re.search(r'data-status="done" style="background:#146c43;color:#fff', html)
    assert re.search(r'data-status="failed" style="background:#b02a37', html)
    assert html.count("<progress ") == 1 and '<progress value="0" max="100"' in html  # the running job's
    assert "jfk.flac" in html and "noise.wav" in html
    assert str(done.pk)[:8] in html
    assert "base<br><span class=\"quiet\">ctranslate2</span>" in html
    # run time: finished - started, in seconds
    assert re.search(r"<td class=\"field-run_time\">\d+\.\d\d s</td>", html)


@pytest.mark.django_db
@pytest.mark.parametrize("query,expected", [
    ("status=failed", ["noise.wav"]),
    ("status=done", ["jfk.flac"]),
    ("model=base", ["jfk.flac", "long.mp3", "noise.wav"]),
    ("engine=ctranslate2", ["jfk.flac", "long.mp3", "noise.wav"]),
    ("language=en", ["jfk.flac"]),
    ("created_at__gte=2000-01-01 00:00:00%2B00:00", ["jfk.flac", "long.mp3", "noise.wav"]),
    ("created_at__gte=2999-01-01 00:00:00%2B00:00", []),
])
def test_job_list_filters(admin_client, query, expected):
    jobs = {name: make_job(name, status=status, result=JFK_RESULT if status == "done" else None)
            for name, status in (("jfk.flac", "done"), ("noise.wav", "failed"), ("long.mp3", "running"))}
    found = set(_rows(admin_client.get(f"{JOBS}?{query}").content.decode()))
    assert found == {str(jobs[name].pk) for name in expected}


@pytest.mark.django_db
def test_job_search_finds_file_names_job_ids_and_words_of_the_transcript(admin_client):
    jfk = make_job("jfk.flac", status="done", result=JFK_RESULT)
    other = make_job("lecture.mp3", status="done", result={"text": "Ein deutscher Satz.", "segments": []})
    assert _rows(admin_client.get(JOBS, {"q": "fellow americans"}).content.decode()) == [str(jfk.pk)]
    assert _rows(admin_client.get(JOBS, {"q": "deutscher"}).content.decode()) == [str(other.pk)]
    assert _rows(admin_client.get(JOBS, {"q": "lecture"}).content.decode()) == [str(other.pk)]
    assert _rows(admin_client.get(JOBS, {"q": str(jfk.pk)}).content.decode()) == [str(jfk.pk)]
    assert _rows(admin_client.get(JOBS, {"q": str(jfk.pk)[:8]}).content.decode()) == [str(jfk.pk)]
    uploads = admin_client.get(UPLOADS, {"q": "fellow"}).content.decode()
    assert "jfk.flac" in uploads and "lecture.mp3" not in uploads


@pytest.mark.django_db
def test_job_page_renders_the_result_readably_and_cannot_be_edited(admin_client, eval_dir):
    job = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="done", result=JFK_RESULT)
    html = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert f'<audio controls preload="none" src="/jobs/{job.pk}/audio"' in html
    for fmt in ("txt", "srt", "vtt", "tsv", "json"):
        assert f'href="/job/{job.pk}/result?format={fmt}"' in html
    table = html.split('<table class="segments">')[1].split("</table>")[0]
    assert table.count("<tr>") == 3  # header + two segments
    assert "<td>3.20</td><td>5.50</td><td>ask not.</td>" in table
    assert "And so my fellow Americans, ask not." in html
    assert '<tr data-option="no_speech_threshold"><td>No-speech threshold</td><td>0.4</td></tr>' in html
    assert f'href="/jobs/{job.pk}/"' in html  # the transcript viewer
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert admin_client.get(f"{JOBS}add/").status_code == 403


@pytest.mark.django_db
def test_upload_page_shows_its_jobs_inline_and_the_list_counts_them(admin_client):
    first = make_job("jfk.flac", status="failed")
    second = Job.objects.create(upload=first.upload, spec_data=first.spec_data, model="base", engine="ctranslate2")
    html = admin_client.get(f"{UPLOADS}{first.upload_id}/change/").content.decode()
    assert "Jobs on this upload" in html
    assert f"/admin/transcription/job/{first.pk}/change/" in html
    assert f"/admin/transcription/job/{second.pk}/change/" in html
    listing = admin_client.get(UPLOADS).content.decode()
    assert '<td class="field-job_count">2</td>' in listing
    assert 'data-status="queued"' in listing  # the latest job's status


@pytest.mark.django_db
def test_cancel_action_stops_queued_jobs_and_leaves_finished_ones(admin_client):
    queued = make_job("a.mp3")
    done = make_job("b.mp3", status="done")
    response = admin_client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [queued.pk, done.pk]},
                                 follow=True)
    text = response.content.decode()
    assert "1 job cancelled." in text and "1 job was already finished" in text
    queued.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == "cancelled" and done.status == "done"


@pytest.mark.django_db
def test_retry_action_queues_the_same_options_again(admin_client, eval_dir):
    old = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="failed")
    response = admin_client.post(JOBS, {"action": "retry_jobs", "_selected_action": [old.pk]}, follow=True)
    assert "1 job queued again." in response.content.decode()
    new = Job.objects.exclude(pk=old.pk).get()
    assert new.status == "queued" and new.upload_id == old.upload_id
    assert new.options == old.options and new.model == old.model

    (_media(old.upload.stored_path)).unlink()
    response = admin_client.post(JOBS, {"action": "retry_jobs", "_selected_action": [old.pk]}, follow=True)
    assert "is no longer stored" in response.content.decode()
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_deleting_jobs_removes_their_files_and_uploads_nobody_else_uses(
        admin_client, django_capture_on_commit_callbacks):
    lone = make_job("lone.mp3", status="done", result=JFK_RESULT)
    shared = make_job("shared.mp3", status="done", result=JFK_RESULT)
    sibling = Job.objects.create(upload=shared.upload, spec_data=shared.spec_data, model="base")
    legacy = _media(lone.result_text_path).with_suffix(".json")  # the copy jobs kept before
    legacy.write_text("{}")
    files = {job.pk: [legacy if job is lone else _media(job.result_text_path),
                      _media(job.result_text_path), _media(job.upload.stored_path)] for job in (lone, shared)}
    assert all(p.is_file() for paths in files.values() for p in paths)

    actions = admin_client.get(JOBS).content.decode()
    assert "Delete selected jobs and their files" in actions
    confirm = admin_client.post(JOBS, {"action": "delete_selected", "_selected_action": [lone.pk, shared.pk]})
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(JOBS, {"action": "delete_selected", "_selected_action": [lone.pk, shared.pk],
                                 "post": "yes"})
    assert list(Job.objects.all()) == [sibling]
    assert not any(p.exists() for p in files[lone.pk])  # results and the upload nobody else uses
    assert not files[shared.pk][0].exists() and not files[shared.pk][1].exists()
    assert files[shared.pk][2].is_file(), "the sibling job still needs the shared upload"
    assert list(Upload.objects.values_list("original_name", flat=True)) == ["shared.mp3"]


@pytest.mark.django_db
def test_deleting_an_upload_removes_its_audio_jobs_and_results(admin_client, django_capture_on_commit_callbacks):
    job = make_job("talk.mp3", status="done", result=JFK_RESULT)
    running = Job.objects.create(upload=job.upload, spec_data=job.spec_data, model="base")
    running.start()
    paths = [_media(job.result_text_path), _media(job.upload.stored_path)]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{UPLOADS}{job.upload_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Upload.objects.exists() and not Job.objects.exists()
    assert not any(p.exists() for p in paths)


@pytest.mark.django_db
def test_admin_speaks_russian_when_the_browser_asks(admin_client):
    make_job("jfk.flac", status="done", result=JFK_RESULT)
    html = admin_client.get(JOBS, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Повторить выбранные задания с теми же параметрами" in html
    assert ">Статус<" in html and ">Готово<" in html
    assert "Удалить выбранные" in html


@pytest.mark.django_db
def test_admin_model_and_field_names_are_translated(admin_client):
    job = make_job("jfk.flac", status="done", result=JFK_RESULT)
    upload_page = f"{UPLOADS}{job.upload_id}/change/"

    # Russian, asked for by the browser: model names in the title, breadcrumbs and the delete action
    jobs = admin_client.get(JOBS, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "<h1>Выберите задание для изменения</h1>" in jobs
    assert "&rsaquo; Задания\n" in jobs
    assert ">Удалить выбранные задания вместе с данными на диске<" in jobs
    assert ">Готово<" in jobs  # the status choice's label
    index = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert ">Задания</a>" in index and ">Загруженные файлы</a>" in index
    assert ">Расшифровка</a>" in index and "Transcription" not in index  # the app's own name

    # ... and by the language cookie: field labels and help texts come from the model
    admin_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"
    upload = admin_client.get(upload_page).content.decode()
    for label in ("Исходное имя", "Путь хранения", "Тип содержимого", "SHA-256", "Время создания"):
        assert f"<label>{label}:</label>" in upload, label
    assert "Относительно MEDIA_ROOT." in upload
    assert "Изменить загруженный файл" in upload
    job_page = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    for label in ("Модель", "Движок", "Время начала", "Время завершения", "Попытки",
                  "Пакет"):
        assert f"<label>{label}:</label>" in job_page, label

    # English pages keep Django's default labels
    del admin_client.cookies[settings.LANGUAGE_COOKIE_NAME]
    jobs = admin_client.get(JOBS, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "<h1>Select job to change</h1>" in jobs and "&rsaquo; Jobs\n" in jobs
    assert ">Delete selected jobs and their files<" in jobs
    upload = admin_client.get(upload_page, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for label in ("Original name", "Stored path", "Content type", "Sha256", "Created at"):
        assert f"<label>{label}:</label>" in upload, label
    assert "Relative to MEDIA_ROOT." in upload and "Change upload" in upload
    job_page = admin_client.get(f"{JOBS}{job.pk}/change/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for label in ("Model", "Engine", "Started at", "Finished at", "Attempts", "Batch"):
        assert f"<label>{label}:</label>" in job_page, label


@pytest.mark.django_db
@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/admin/", "javascript:alert(1)"])
def test_login_with_an_unsafe_next_lands_on_the_front_page(client, admin_user, next_url):
    response = client.post(f"/admin/login/?next={next_url}", {"username": "admin", "password": "password"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get(response["Location"]).status_code == 200
    # a safe one is still followed, and none at all goes to the admin's index as before
    client.logout()
    safe = client.post("/admin/login/?next=/jobs/", {"username": "admin", "password": "password"})
    assert safe["Location"] == "/jobs/"
    client.logout()
    assert client.post("/admin/login/", {"username": "admin", "password": "password",
                                         "next": "/admin/"})["Location"] == "/admin/"


RUSSIAN_MONTHS_GENITIVE = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
                           "сентября", "октября", "ноября", "декабря")


@pytest.mark.django_db
def test_russian_admin_names_jobs_dates_units_and_statuses_in_russian(admin_client):
    from django.utils import timezone

    job = make_job("jfk.flac", status="done", result=JFK_RESULT, language="ru")
    Job.objects.filter(pk=job.pk).update(audio_duration=11.0, conversion_seconds=0.5)
    admin_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "ru"

    listing = admin_client.get(JOBS).content.decode()
    assert "<h1>Выберите задание для изменения</h1>" in listing
    # every job is from this month, so the date hierarchy lists days: "29 ноября", not "29 Ноябрь"
    today = timezone.localdate(job.created_at)
    assert f">{today.day} {RUSSIAN_MONTHS_GENITIVE[today.month - 1]}<" in listing
    assert re.search(r'<td class="field-run_time">\d+,\d\d с</td>', listing)

    page = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert title.startswith("jfk.flac · Готово | Изменить задание"), title
    assert "(done)" not in page and "<h1>Изменить задание</h1>" in page
    assert "конвертация: 0,50 с · распознавание: 1,00 с · коэффициент реального времени: 0,091" in page
    assert "Русский (ru) · выбран" in page


@pytest.mark.django_db
def test_admin_says_whether_the_language_was_chosen_or_detected(admin_client):
    chosen = make_job("a.mp3", status="done", result=JFK_RESULT, language="ru")
    detected = make_job("b.mp3", status="done", result=JFK_RESULT, language="auto")
    assert "Russian (ru) · chosen" in admin_client.get(f"{JOBS}{chosen.pk}/change/").content.decode()
    assert "English (en) · probability 97 %" in admin_client.get(f"{JOBS}{detected.pk}/change/").content.decode()


@pytest.mark.django_db
def test_delete_confirmations_say_the_files_go_too(admin_client):
    first = make_job("a.mp3", status="done", result=JFK_RESULT)
    second = make_job("b.mp3", status="done", result=JFK_RESULT)
    many_jobs = admin_client.post(JOBS, {"action": "delete_selected",
                                         "_selected_action": [first.pk, second.pk]}).content.decode()
    assert ("Files are deleted from disk too: the jobs' result files (.txt, .json), and each uploaded"
            " audio file that no other job uses.") in many_jobs
    one_job = admin_client.get(f"{JOBS}{first.pk}/delete/").content.decode()
    assert ("Files are deleted from disk too: the job's result files (.txt, .json), and the uploaded audio"
            " file when no other job uses it.") in one_job
    uploads = admin_client.post(UPLOADS, {"action": "delete_selected",
                                          "_selected_action": [first.upload_id, second.upload_id]})
    assert ("Files are deleted from disk too: the uploaded audio files, and the result files (.txt, .json)"
            " of all their jobs.") in uploads.content.decode()
    one_upload = admin_client.get(f"{UPLOADS}{first.upload_id}/delete/").content.decode()
    assert "the uploaded audio file, and the result files (.txt, .json) of all its jobs" in one_upload
    russian = admin_client.get(f"{JOBS}{first.pk}/delete/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "С диска удаляются и файлы: результаты задания (.txt, .json)" in russian
    assert Job.objects.count() == 2  # only asked, nothing deleted


@pytest.mark.django_db
def test_make_run_says_how_to_create_the_first_admin_user(django_user_model):
    out = io.StringIO()
    call_command("ensure_admin", "--url", "http://127.0.0.1:8000/admin/", "--no-input", stdout=out)
    assert "No admin user yet. Create one with:" in out.getvalue() and "createsuperuser" in out.getvalue()
    django_user_model.objects.create_superuser("boss", "boss@example.com", "a-long-password-1")
    out = io.StringIO()
    call_command("ensure_admin", "--url", "http://127.0.0.1:8000/admin/", stdout=out)
    assert out.getvalue().strip() == "Admin: http://127.0.0.1:8000/admin/ (superuser: boss)"


# --- a real session in the browser -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_review_retry_and_delete_a_real_job_in_the_admin(service, pages, admin_user, eval_dir):
    with open(eval_dir / "jfk.flac", "rb") as fh:
        body = requests.post(f"{service}/transcribe", files={"file": ("jfk.flac", fh)},
                             data={"language": "en", "model": "base", "engine": "ctranslate2"}, timeout=120).json()
    job = Job.objects.get(pk=body["job_id"])
    result_files = [_media(job.result_text_path)]
    audio = _media(job.upload.stored_path)
    assert all(p.is_file() for p in [*result_files, audio])

    page = pages.open("/admin/login/?next=" + JOBS)
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"**{JOBS}")
    assert page.inner_text("#result_list .job-status") == "Done"
    page.fill("#searchbar", "ask what you can do")
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_navigation():
        page.click("#changelist-filter a:text-is('Failed')")
    assert page.locator("#result_list").count() == 0  # no failed job matches
    page.goto(f"{service}{JOBS}")

    with page.expect_navigation():
        page.click(f"#result_list a:text-is('{str(job.pk)[:8]}')")
    page.evaluate("document.querySelector('audio').load()")  # preload=none: the list stays light
    page.wait_for_function("document.querySelector('audio').readyState >= 1")
    assert page.evaluate("document.querySelector('audio').duration") == pytest.approx(11.0, abs=0.1)
    assert page.locator("table.segments tbody tr").count() == len(job.result["segments"])
    with page.expect_download() as download:
        page.click("a[href$='format=srt']")
    assert "-->" in Path(download.value.path()).read_text()

    page.goto(f"{service}{JOBS}")
    page.check(f"input[name=_selected_action][value='{job.pk}']")
    page.select_option("select[name=action]", "retry_jobs")
    with page.expect_navigation():
        page.click("button[name=index]")
    assert "1 job queued again." in page.inner_text(".messagelist")
    retried = Job.objects.exclude(pk=job.pk).get()
    deadline = time.monotonic() + 120
    while retried.status != "done" and time.monotonic() < deadline:
        time.sleep(0.3)
        retried.refresh_from_db()
    assert retried.status == "done" and retried.upload_id == job.upload_id

    page.check(f"input[name=_selected_action][value='{job.pk}']")
    page.select_option("select[name=action]", "delete_selected")
    with page.expect_navigation():
        page.click("button[name=index]")
    with page.expect_navigation():
        page.click("input[type=submit]")  # "Yes, I'm sure"
    assert "Successfully deleted 1 job." in page.inner_text(".messagelist")
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not any(p.exists() for p in result_files)
    assert audio.is_file(), "the retried job still uses the upload"

    page.goto(f"{service}{UPLOADS}")
    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "delete_selected")
    with page.expect_navigation():
        page.click("button[name=index]")
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert "Successfully deleted 1 upload." in page.inner_text(".messagelist")
    assert not Upload.objects.exists() and not audio.exists()
    assert not _media(retried.result_text_path).exists()


def test_workers_are_listed_alive_or_gone_with_what_they_run(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    from transcription.models import Worker

    Worker.objects.create(name="gpu-1:41", host="gpu-1", pid=41, threads=2, queue="RedisHuey:stt")
    Worker.objects.create(name="old:7", host="old", pid=7, seen_at=timezone.now() - timedelta(hours=1))
    html = admin_client.get("/admin/transcription/worker/").content.decode()
    assert "gpu-1:41" in html and "old:7" in html
    assert html.count('alt="True"') == 1 and html.count('alt="False"') == 1  # alive / gone
    assert admin_client.get("/admin/transcription/worker/add/").status_code == 403
