"""Pages hold any content at any width: a 300-character file name on every page (upload, job,
history, the admin's job list and job page), and 100-character speaker names on a diarized job's
page, on a 1,280 px screen and a 390 px phone, in English and Russian: nothing scrolls sideways.
Screenshots go to the test's folder for a person to look at."""
from __future__ import annotations

import pytest

from tests.browser import chromium, drop_files, pages, screenshot, sideways  # noqa: F401
from tests.test_speaker_pages import diarized_job
from tests.test_webui import JFK_RESULT, make_job

LONG_NAME = ("interview_with_the_regional_planning_committee_" * 7)[:296] + ".mp3"  # no break opportunity
WIDTHS = (1280, 390)
LOCALES = ("en-US", "ru-RU")


@pytest.fixture
def long_job(eval_dir):
    job = make_job(LONG_NAME, source=eval_dir / "jfk.flac", status="done", result=JFK_RESULT)
    for i in range(2):
        make_job(f"meeting-{i}.mp3", status="failed" if i == 1 else "done", result=JFK_RESULT if i != 1 else None)
    diarized_job("meeting-2.mp3")  # the history and the admin list show its speakers
    return job


# No break opportunity, then one with spaces: each speaker name as long as a name may be.
LONG_SPEAKERS = {"SPEAKER_1": "Konstantinopolskaya" * 5 + "Pavlovna"[:5], "SPEAKER_2": ("Dr. Maria Ivanovna " * 6)[:100]}


@pytest.fixture
def long_speakers_job(eval_dir):
    job = diarized_job(LONG_NAME, source=eval_dir / "jfk.flac")
    job.speaker_names = LONG_SPEAKERS
    job.save(update_fields=["speaker_names"])
    return job


def _fits(page, what: str) -> None:
    assert sideways(page) == [], f"{what} scrolls sideways"


def _each_view(pages, path: str, user=None):
    for locale in LOCALES:
        for width in WIDTHS:
            if user is None:
                page = pages.open(path, locale=locale, width=width)
            else:
                page = pages.open_logged_in(user, path, locale=locale, width=width)
            yield page, f"{locale[:2]}-{width}"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_upload_page_fits_a_long_file_name_at_every_width(pages, eval_dir, tmp_path):
    for page, view in _each_view(pages, "/"):
        page.click("details.advanced summary")
        drop_files(page, "#dropzone", [(LONG_NAME[:-4] + ".txt", b"not audio"),
                                       (LONG_NAME, (eval_dir / "jfk.flac").read_bytes())])
        page.wait_for_function("[...document.querySelectorAll('.upload-row')].every("
                               "r => ['rejected', 'queued', 'running', 'done'].includes(r.dataset.status))")
        screenshot(page, f"upload-{view}.png", tmp_path)
        _fits(page, f"upload page {view}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_job_page_fits_a_long_file_name_and_its_options_at_every_width(pages, long_job, tmp_path):
    for page, view in _each_view(pages, f"/jobs/{long_job.id}/"):
        page.click("#options-title")
        page.click("#retry-form details.advanced summary")
        screenshot(page, f"job-{view}.png", tmp_path)
        _fits(page, f"job page {view}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_diarized_job_page_fits_long_speaker_names_at_every_width(pages, long_speakers_job, admin_user, tmp_path):
    assert all(len(name) == 100 for name in LONG_SPEAKERS.values())
    for page, view in _each_view(pages, f"/jobs/{long_speakers_job.id}/"):
        page.click("details.rename summary")
        screenshot(page, f"job-speakers-{view}.png", tmp_path)
        _fits(page, f"diarized job page {view}")
        width = page.viewport_size["width"]
        for tag in page.locator(".speaker-tag:not(.visually-hidden)").all():
            box = tag.bounding_box()
            assert box and 0 <= box["x"] and box["x"] + box["width"] <= width, view
    for page, view in _each_view(pages, f"/admin/transcription/job/{long_speakers_job.pk}/change/",
                                 admin_user):
        screenshot(page, f"admin-job-speakers-{view}.png", tmp_path)
        _fits(page, f"admin diarized job page {view}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_live_page_fits_a_long_transcript_at_every_width(pages, tmp_path):
    for page, view in _each_view(pages, "/live"):
        page.evaluate("document.getElementById('live-final').textContent = 'spoken words '.repeat(200)"
                      " + 'W'.repeat(150); document.getElementById('live-partial').textContent = ' maybe more'")
        screenshot(page, f"live-{view}.png", tmp_path)
        _fits(page, f"live page {view}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_history_fits_a_long_file_name_at_every_width(pages, long_job, tmp_path):
    for page, view in _each_view(pages, "/jobs/"):
        screenshot(page, f"history-{view}.png", tmp_path)
        _fits(page, f"history {view}")
        # every row's file name and status are on screen, not pushed off by the long name
        for row in page.locator("#history tbody tr").all():
            for cell in (row.locator("a").first, row.locator(".badge")):
                box = cell.bounding_box()
                assert box and 0 <= box["x"] and box["x"] + box["width"] <= page.viewport_size["width"], view


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_admin_job_list_and_job_page_fit_at_every_width(pages, long_job, admin_user, tmp_path):
    for page, view in _each_view(pages, "/admin/transcription/job/", admin_user):
        assert page.locator("#result_list tbody tr").count() == 4
        screenshot(page, f"admin-jobs-{view}.png", tmp_path)
        _fits(page, f"admin job list {view}")
    for page, view in _each_view(pages, f"/admin/transcription/job/{long_job.pk}/change/", admin_user):
        screenshot(page, f"admin-job-{view}.png", tmp_path)
        _fits(page, f"admin job page {view}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_admin_job_list_of_ordinary_names_fits_a_laptop_screen(pages, admin_user, tmp_path):
    for i in range(3):
        make_job(f"meeting-{i}.mp3", status="done", result=JFK_RESULT)
    make_job("lecture.mp3", status="running")
    for locale in LOCALES:
        page = pages.open_logged_in(admin_user, "/admin/transcription/job/", locale=locale, width=1280)
        screenshot(page, f"admin-jobs-{locale[:2]}.png", tmp_path)
        _fits(page, f"admin job list {locale}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_account_page_fits_long_token_names_and_a_new_token_at_every_width(pages, admin_user, tmp_path):
    from transcription import services
    from transcription.models import Account

    services.create_token(admin_user, "N" * 100, "read")  # a name as long as a name may be, no break
    services.create_token(admin_user, ("nightly backup of the meeting room recordings " * 3)[:100], "write")
    account = Account.of(admin_user)
    account.callback_url = "https://hooks.example.com/" + "x" * 300
    account.save()
    for page, view in _each_view(pages, "/account/tokens", admin_user):
        page.fill("#id_name", "L" * 100)
        with page.expect_navigation():
            page.click("#create-token")
        assert page.locator("#new-token-key").inner_text().startswith("stt_")
        screenshot(page, f"account-{view}.png", tmp_path)
        _fits(page, f"account page {view}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_shared_page_and_share_section_fit_at_every_width(pages, long_job, admin_user, tmp_path):
    from transcription import services

    services.share(long_job, admin_user, 7)
    _, key = services.share(long_job, admin_user, 1)
    for page, view in _each_view(pages, f"/jobs/{long_job.id}/", admin_user):
        page.locator("#share").scroll_into_view_if_needed()
        screenshot(page, f"job-share-{view}.png", tmp_path)
        _fits(page, f"job page with its share links {view}")
    for page, view in _each_view(pages, f"/s/{key}/"):
        assert page.locator("#shared-note").is_visible() and page.locator(".nav-links").count() == 0
        screenshot(page, f"shared-{view}.png", tmp_path)
        _fits(page, f"shared page {view}")
