"""The /live page in a real browser: Chromium's fake microphone plays a shared recording into it,
through the AudioWorklet and the WebSocket to a run_live worker, then the session is a job."""
from __future__ import annotations


import numpy as np
import pytest

from tests import conversations
from tests.browser import Pages, check_accessible_basics, chromium, fake_microphone, screenshot  # noqa: F401
from tests.conftest import JFK_REFERENCE, normalise_words, wer
from tests.test_live import wait_job



@pytest.fixture
def microphone(chromium, tmp_path):  # noqa: F811
    """A browser whose microphone says JFK's sentence, then stays silent for 10 s (then repeats)."""
    speech = conversations.clip("jfk.flac")
    wav = conversations.write(np.concatenate([speech, np.zeros(10 * 16000, dtype=np.float32)]),
                              tmp_path / "microphone.wav")
    browser = fake_microphone(chromium, wav)
    yield browser
    browser.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_speaking_into_the_page_shows_words_as_spoken_then_the_session_is_a_job(live, microphone):
    pages = Pages(microphone, live)
    page = pages.open("/live", permissions=["microphone"])
    check_accessible_basics(page)
    # the server's default language is Russian; the page starts on the browser's (en-US) instead
    assert page.input_value("#id_language") == "en"
    page.click("#live-start")
    assert page.is_disabled("#id_model")  # a session's settings are fixed while it runs
    # tentative words (grey) come first, then final ones
    page.wait_for_function("window.liveLog.some(e => e.message.type === 'partial' && e.message.text)", timeout=60_000)
    page.wait_for_function("document.getElementById('live-final').textContent.trim().split(' ').length >= 3",
                           timeout=60_000)
    assert page.evaluate("window.levels.some(level => level > 0.01)")  # the meter moved with the voice
    # for the picture: final words and a tentative tail at once
    page.wait_for_function("document.getElementById('live-partial').textContent.trim().length > 0"
                           " && document.getElementById('live-final').textContent.split(' ').length >= 5",
                           timeout=60_000)
    screenshot(page, "live-page.png", settle=False)
    # the whole sentence, to its second "country", is final before Stop
    page.wait_for_function(
        "document.getElementById('live-final').textContent.toLowerCase().split('country').length > 2", timeout=60_000)
    assert page.evaluate("window.liveLog.some(e => e.message.type === 'partial' && e.message.text)")
    page.click("#live-stop")
    page.wait_for_selector("#live-job:not([hidden])", timeout=60_000)
    assert page.inner_text("#live-status") == "Stopped. The recording is kept as a job."
    spoken = page.inner_text("#live-final")
    assert wer(JFK_REFERENCE, spoken) <= 0.2, spoken
    ended = page.evaluate("window.liveLog.find(e => e.message.type === 'ended').message")
    assert ended["code"] == 1000 and normalise_words(ended["text"]) == normalise_words(spoken)
    page.click("#live-job-link")
    page.wait_for_selector('#job-status[data-status="done"]', timeout=120_000)
    assert "live session" in page.inner_text("#live-origin summary")
    job = wait_job(live, ended["job_id"])
    assert wer(JFK_REFERENCE, job["result"]["text"]) <= 0.1
    assert job["result"]["live"]["text"] == ended["text"]
    pages.close()
    assert not pages.errors and not pages.outside


@pytest.mark.django_db
def test_the_page_says_when_no_live_worker_runs_in_the_pages_language(client, settings):
    from transcription.models import Worker

    Worker.objects.all().delete()  # as if run_live were not running
    page = client.get("/live").content.decode()
    assert "No live worker is running" in page and 'id="live-start" disabled' in page
    page = client.get("/live", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Обработчик живой расшифровки не запущен" in page
    settings.LIVE_MAX_SESSIONS = 0
    assert "turned off on this server" in client.get("/live").content.decode()
