"""Speakers where people read them: the options on the upload and "run again" forms, the job page
(turns labelled and coloured, the speakers' time, renaming them), the history's filter and the
admin. Rendered through Django's test client, and in Chromium against a live server whose real
worker diarizes a real two-voice recording."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.browser import (  # noqa: F401
    check_accessible_basics,
    chromium,
    drop_files,
    pages,
    screenshot,
    sideways,
)
from tests.test_webui import DEFAULT_OPTIONS, JFK_RESULT, make_job, spec_data
from transcription.models import Job

ANNA = "Anna"


def _segment(i: int, start: float, end: float, text: str, speaker: str) -> dict:
    words = text.split()
    step = (end - start) / len(words)
    return {"id": i, "start": start, "end": end, "text": " " + text, "speaker": speaker,
            "words": [{"start": round(start + k * step, 2), "end": round(start + (k + 1) * step, 2),
                       "word": " " + word, "probability": 0.9, "speaker": speaker}
                      for k, word in enumerate(words)]}


# Shaped like the pipeline's result for tests/conversations.py's "en-2" (a reader, JFK, the reader).
SEGMENTS = [
    _segment(0, 0.0, 5.0, "Permission is hereby granted free of charge to any person", "SPEAKER_1"),
    _segment(1, 5.0, 9.1, "obtaining a copy of this software.", "SPEAKER_1"),
    _segment(2, 10.08, 19.96, "And so my fellow Americans ask not what your country can do for you.", "SPEAKER_2"),
    _segment(3, 20.9, 30.0, "Including without limitation the rights to use, copy and modify.", "SPEAKER_1"),
]
DIARIZED_RESULT = {
    "text": " ".join(seg["text"].strip() for seg in SEGMENTS),
    "language": "en",
    "segments": SEGMENTS,
    "speakers": [
        {"id": "SPEAKER_1", "name": None, "seconds": 18.2,
         "words": sum(len(s["words"]) for s in SEGMENTS if s["speaker"] == "SPEAKER_1")},
        {"id": "SPEAKER_2", "name": None, "seconds": 9.88,
         "words": sum(len(s["words"]) for s in SEGMENTS if s["speaker"] == "SPEAKER_2")},
    ],
    "options": {**DEFAULT_OPTIONS, "diarize": True, "model": "base", "engine": "ctranslate2"},
}
WORDS = {s["id"]: s["words"] for s in DIARIZED_RESULT["speakers"]}  # 26 and 14
ONE_VOICE_RESULT = {**JFK_RESULT, "speakers": [{"id": "SPEAKER_1", "name": None, "seconds": 5.5, "words": 2}],
                    "segments": [{**seg, "speaker": "SPEAKER_1"} for seg in JFK_RESULT["segments"]]}


def diarized_job(name: str = "meeting.wav", result: dict = DIARIZED_RESULT, **kwargs) -> Job:
    """A finished job that was asked to tell the speakers apart, as the pipeline leaves it."""
    job = make_job(name, status="done", result=result, **kwargs)
    Job.objects.filter(pk=job.pk).update(spec_data=spec_data(language="en", diarize=True))
    return Job.objects.get(pk=job.pk)


def _field(html: str, name: str) -> str:
    """The markup of one form field's box (label, input, help, errors)."""
    match = re.search(rf'<div class="form-(?:field|check)">(?:(?!<div class="form-).)*?id="id_{name}".*?</div>',
                      html, re.DOTALL)
    assert match, f"no field {name}"
    return match.group(0)


# --- the options forms ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_upload_form_offers_the_speaker_options_with_the_schemas_bounds(client):
    html = client.get("/").content.decode()
    group = html.split('<fieldset class="speaker-options">')[1].split("</fieldset>")[0]
    assert "<legend>Speakers</legend>" in group
    assert re.search(r'<input type="checkbox" name="diarize"[^>]*id="id_diarize"', group)
    assert not re.search(r'<input type="checkbox" name="diarize"[^>]*checked', group), "off unless asked"
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        field = re.search(rf'<input type="number" name="{name}"[^>]*>', group).group(0)
        assert 'min="1"' in field and 'max="20"' in field and "value=" not in field, field  # empty: automatic
        assert f'aria-describedby="id_{name}_help"' in field
    assert "Needs word timestamps" in group

    russian = client.get("/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "<legend>Говорящие</legend>" in russian and "Различать говорящих" in russian
    assert '<label for="id_num_speakers">Число говорящих</label>' in russian


@pytest.mark.django_db
def test_run_again_takes_the_speaker_options_and_starts_from_the_jobs_own(client, eval_dir):
    old = diarized_job("jfk.flac", source=eval_dir / "jfk.flac")
    page = client.get(f"/jobs/{old.id}/").content.decode()
    retry = page.split('id="retry-form"')[1]
    assert re.search(r'<input type="checkbox" name="diarize"[^>]*checked', retry), "the job's own options"

    form = {"language": "en", "task": "transcribe", "model": "tiny.en", "no_speech_threshold": "0.4",
            "hallucination_silence_threshold": "0.8", "silence_threshold": "-60", "silence_duration": "0.5",
            "temperature": "0.0", "word_timestamps": "on", "diarize": "on", "min_speakers": "2",
            "max_speakers": "3"}
    response = client.post(f"/jobs/{old.id}/retry", form)
    new = Job.objects.exclude(pk=old.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{new.id}/"
    assert new.options["diarize"] is True and new.spec.speakers.backend
    assert (new.options["min_speakers"], new.options["max_speakers"], new.options["num_speakers"]) == (2, 3, None)


@pytest.mark.django_db
def test_a_bad_speaker_option_is_shown_at_its_field_and_nothing_is_queued(client, eval_dir):
    old = make_job("jfk.flac", source=eval_dir / "jfk.flac", status="failed")
    base = {"language": "en", "task": "transcribe", "model": "tiny.en", "no_speech_threshold": "0.4",
            "hallucination_silence_threshold": "0.8", "silence_threshold": "-60", "silence_duration": "0.5",
            "temperature": "0.0", "word_timestamps": "on", "diarize": "on"}
    cases = (
        ({"num_speakers": "0"}, "num_speakers", "greater than or equal to 1"),  # the schema's bound
        ({"max_speakers": "21"}, "max_speakers", "less than or equal to 20"),
        ({"diarize": "", "num_speakers": "3"}, "num_speakers", "it needs diarize=true"),  # the service's rules
        ({"min_speakers": "4", "max_speakers": "2"}, "min_speakers", "more than max_speakers"),
        ({"word_timestamps": ""}, "word_timestamps", "needs word_timestamps=true"),
    )
    for change, name, words in cases:
        response = client.post(f"/jobs/{old.id}/retry", {k: v for k, v in {**base, **change}.items() if v})
        html = response.content.decode()
        assert response.status_code == 422, (change, response.status_code)
        field = _field(html.split('id="retry-form"')[1], name)
        assert re.search(rf'<ul class="errorlist"[^>]*><li>[^<]*{re.escape(words)}', field), (change, field)
        summary = html.split('id="retry-errors"')[1].split("</div>")[0]
        assert re.search(rf'<a href="#id_{name}">[^<]+</a>: [^<]*{re.escape(words)}', summary), (change, summary)
        assert "Traceback" not in html
    assert Job.objects.count() == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_upload_page_shows_the_services_refusal_at_the_speaker_field(pages, clips):  # noqa: F811
    page = pages.open("/")
    page.select_option("#id_language", "en")
    page.select_option("#id_model", "tiny.en")
    page.fill("#id_num_speakers", "3")  # without ticking "Tell the speakers apart"
    drop_files(page, "#dropzone", [("jfk.wav", clips["wav"].read_bytes())])
    page.wait_for_function("document.querySelector('.upload-row').dataset.status === 'rejected'")
    message = page.locator("#id_num_speakers").locator("xpath=..").locator(".errorlist").inner_text()
    assert "needs diarize=true" in message
    assert page.get_attribute("#id_num_speakers", "aria-invalid") == "true"
    described = page.get_attribute("#id_num_speakers", "aria-describedby").split()
    assert "id_num_speakers_server_error" in described and "id_num_speakers_help" in described
    assert "needs diarize=true" in page.inner_text(".upload-row .error")  # and on the file's row

    page.check("#id_diarize")
    page.fill("#id_num_speakers", "")
    drop_files(page, "#dropzone", [("tone.wav", clips["tone"].read_bytes())])
    page.wait_for_function("document.querySelectorAll('.upload-row')[1].dataset.status === 'queued'")
    assert page.locator(".errorlist.from-server").count() == 0, "fixed: the message went"
    assert page.get_attribute("#id_num_speakers", "aria-invalid") is None
    assert Job.objects.get().options["diarize"] is True


# --- the job page ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_job_page_labels_each_turn_and_lists_the_speakers_with_their_time(client):
    job = diarized_job()
    html = client.get(f"/jobs/{job.id}/").content.decode()
    segments = re.findall(r'<li class="segment spoken"[^>]*data-speaker="(SPEAKER_\d)" style="--speaker:(#[0-9a-f]{6})"',
                          html)
    assert [who for who, _ in segments] == [s["speaker"] for s in SEGMENTS]
    colours = dict(segments)
    assert len(set(colours.values())) == 2, "a colour of its own for each speaker"
    # the name where a turn starts; inside a turn it is there for screen readers only
    tags = re.findall(r'<span class="speaker-tag( visually-hidden)?">(SPEAKER_\d)<', html.split('id="segments"')[1].split("</ol>")[0])
    assert tags == [("", "SPEAKER_1"), (" visually-hidden", "SPEAKER_1"), ("", "SPEAKER_2"), ("", "SPEAKER_1")]

    listed = html.split('id="speakers"')[1].split("</ul>")[0]
    assert re.findall(r'<li data-speaker="(SPEAKER_\d)" style="--speaker:(#[0-9a-f]{6})"', listed) == [
        ("SPEAKER_1", colours["SPEAKER_1"]), ("SPEAKER_2", colours["SPEAKER_2"])]
    assert "0:18 · 65 %" in listed and "0:10 · 35 %" in listed  # 18.2 s and 9.88 s of 28.08 s, rounded
    assert f"{WORDS['SPEAKER_1']} words" in listed and f"{WORDS['SPEAKER_2']} words" in listed
    # the text reads like the .txt download: a paragraph a turn
    text = html.split('id="full-text"')[1].split("</pre>")[0]
    assert "SPEAKER_1: Permission is hereby" in text and "\n\nSPEAKER_2: And so my fellow" in text
    options = html.split('id="options-used"')[1].split("</table>")[0]
    assert '<tr data-option="diarize"><td>Tell the speakers apart</td><td>Yes</td></tr>' in options
    assert f'action="/jobs/{job.id}/speakers"' in html

    plain = make_job("talk.flac", status="done", result=JFK_RESULT)
    html = client.get(f"/jobs/{plain.id}/").content.decode()
    assert 'id="speakers-card"' not in html and "speaker-tag" not in html and 'class="segment"' in html


@pytest.mark.django_db
def test_renaming_a_speaker_shows_the_name_on_the_page_and_in_every_download(client):
    job = diarized_job()
    response = client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": f"  {ANNA} ", "speaker-SPEAKER_2": ""})
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    job.refresh_from_db()
    assert job.speaker_names == {"SPEAKER_1": ANNA}

    html = client.get(response["Location"]).content.decode()
    assert "The speakers&#x27; names were saved" in html
    tags = re.findall(r'<span class="speaker-tag(?: visually-hidden)?">([^<]+)<', html.split('id="segments"')[1].split("</ol>")[0])
    assert tags == [ANNA, ANNA, "SPEAKER_2", ANNA]
    listed = html.split('id="speakers"')[1].split("</ul>")[0]
    assert f'<span class="speaker-tag">{ANNA}</span>' in listed and "· SPEAKER_1" in listed  # its label, small
    assert re.search(rf'<textarea name="speaker-SPEAKER_1"[^>]*>\s*{ANNA}</textarea>', html)
    assert re.search(r'<textarea name="speaker-SPEAKER_2"[^>]*placeholder="SPEAKER_2"[^>]*>\s*</textarea>', html)
    assert f"{ANNA}: Permission" in html.split('id="full-text"')[1]

    downloads = {fmt: client.get(f"/job/{job.id}/result", {"format": fmt}).content.decode()
                 for fmt in ("txt", "srt", "vtt", "tsv")}
    assert downloads["txt"].startswith(f"{ANNA}: Permission") and "\n\nSPEAKER_2: And so" in downloads["txt"]
    assert f"<v {ANNA}>" in downloads["vtt"] and f"{ANNA}: " in downloads["srt"]
    assert f"\t{ANNA}\n" in downloads["tsv"]
    assert (Path(settings.MEDIA_ROOT) / job.result_text_path).read_text() == downloads["txt"]

    client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": ""})  # empty: the label again
    job.refresh_from_db()
    assert job.speaker_names == {}
    assert client.get(f"/job/{job.id}/result", {"format": "txt"}).content.decode().startswith("SPEAKER_1: ")


@pytest.mark.django_db
def test_rename_refuses_a_name_over_100_characters_with_a_message_and_changes_nothing(client):
    job = diarized_job()
    client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_2": "JFK"})
    before = (Path(settings.MEDIA_ROOT) / job.result_text_path).read_text()
    response = client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": "A" * 101, "speaker-SPEAKER_2": "Jack"})
    html = response.content.decode()
    assert response.status_code == 422 and "Traceback" not in html
    summary = html.split('id="names-errors"')[1].split("</div>")[0]
    assert "The names were not saved." in summary
    assert re.search(r'<a href="#id_speaker-SPEAKER_1">SPEAKER_1</a>: [^<]*at most 100 characters \(it has 101\)',
                     summary), summary
    box = _field(html.split('id="rename-form"')[1], "speaker-SPEAKER_1")
    assert re.search(r'<ul class="errorlist"[^>]*><li>[^<]*at most 100 characters', box)
    assert re.search(r'maxlength="100"[^>]*>\s*A{101}</textarea>', box), "what was typed is kept, to be shortened"
    assert '<details class="rename" open>' in html
    job.refresh_from_db()
    assert job.speaker_names == {"SPEAKER_2": "JFK"}, "nothing saved, not even the valid name"
    assert (Path(settings.MEDIA_ROOT) / job.result_text_path).read_text() == before
    # exactly 100 is allowed
    assert client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": "A" * 100}).status_code == 302
    job.refresh_from_db()
    assert job.speaker_names == {"SPEAKER_1": "A" * 100, "SPEAKER_2": "JFK"}


@pytest.mark.django_db
def test_rename_says_why_when_a_job_has_no_speakers_and_needs_a_post_with_a_csrf_token(client):
    plain = make_job("talk.flac", status="done", result=JFK_RESULT)
    response = client.post(f"/jobs/{plain.id}/speakers", {"speaker-SPEAKER_1": ANNA})
    html = response.content.decode()
    assert response.status_code == 409 and "Traceback" not in html
    assert "has no speakers: run it again with diarize=true" in html.split('id="names-errors"')[1]
    running = make_job("long.mp3", status="running")
    assert client.post(f"/jobs/{running.id}/speakers", {}).status_code == 409

    job = diarized_job()
    assert client.get(f"/jobs/{job.id}/speakers").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": ANNA}).status_code == 403
    token = re.search(r'id="rename-form".*?name="csrfmiddlewaretoken" value="([^"]+)"',
                      strict.get(f"/jobs/{job.id}/").content.decode(), re.DOTALL).group(1)
    assert strict.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": ANNA,
                                                    "csrfmiddlewaretoken": token}).status_code == 302
    job.refresh_from_db()
    assert job.speaker_names == {"SPEAKER_1": ANNA}


@pytest.mark.django_db
def test_job_page_speaks_russian_about_speakers(client):
    job = diarized_job()
    html = client.get(f"/jobs/{job.id}/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert '<h2 id="speakers-title">Говорящие</h2>' in html
    assert f"{WORDS['SPEAKER_2']} слов" in html and "Переименовать говорящих" in html and "Сохранить имена" in html
    html = client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_1": "Я" * 101},
                       HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Имена не сохранены." in html


# --- history ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_history_filters_jobs_with_more_than_one_speaker_and_shows_their_count(client):
    two = diarized_job("meeting.wav")
    one = diarized_job("monologue.wav", result=ONE_VOICE_RESULT)
    plain = make_job("lecture.mp3", status="done", result=JFK_RESULT)
    queued = make_job("later.mp3")

    everything = client.get("/jobs/").content.decode()
    assert set(re.findall(r'<tr data-job-id="([^"]+)"', everything)) == {str(j.id) for j in (two, one, plain, queued)}
    rows = dict(re.findall(r'<tr data-job-id="([^"]+)">(.*?)</tr>', everything, re.DOTALL))
    counts = {job_id: re.findall(r"<td[^>]*>([^<]*)</td>", cells)[-1] for job_id, cells in rows.items()}
    assert counts == {str(two.id): "2", str(one.id): "1", str(plain.id): "—", str(queued.id): "—"}
    assert 'data-label="Speakers" data-speakers="2">2</td>' in rows[str(two.id)]
    assert '<input type="checkbox" id="speakers-filter" name="speakers" value="several">' in everything

    several = client.get("/jobs/", {"speakers": "several"}).content.decode()
    assert re.findall(r'<tr data-job-id="([^"]+)"', several) == [str(two.id)]
    assert 'name="speakers" value="several" checked' in several
    assert re.findall(r'<tr data-job-id="([^"]+)"', client.get("/jobs/?speakers=several&status=failed")
                      .content.decode()) == []
    assert "No job matches these filters." in client.get("/jobs/?speakers=several&status=failed").content.decode()

    for i in range(25):  # the filter is kept from page to page
        diarized_job(f"meeting-{i}.wav")
    first = client.get("/jobs/", {"speakers": "several", "status": "done"}).content.decode()
    assert 'href="?page=2&amp;status=done&amp;speakers=several"' in first
    second = client.get("/jobs/", {"speakers": "several", "status": "done", "page": "2"}).content.decode()
    assert re.findall(r'<tr data-job-id="([^"]+)"', second) == [str(two.id)]
    assert "Больше одного говорящего" in client.get("/jobs/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()


# --- admin -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_job_page_shows_the_speakers_their_time_and_given_names(admin_client):
    job = diarized_job()
    admin_client.post(f"/jobs/{job.id}/speakers", {"speaker-SPEAKER_2": "JFK"})
    html = admin_client.get(f"/admin/transcription/job/{job.pk}/change/").content.decode()
    table = html.split('<table class="speakers">')[1].split("</table>")[0]
    rows = re.findall(r'<tr data-speaker="(SPEAKER_\d)"><td><span class="speaker-tag" style="background:(#[0-9a-f]{6})">'
                      r'([^<]+)</span> </td><td class="extra">(SPEAKER_\d)</td><td class="extra">([^<]+)</td>'
                      r'<td class="num">([^<]+)</td>'
                      r'<td class="num">(\d+) %</td><td class="num extra">(\d+)</td></tr>', table)
    assert [(r[0], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows] == [
        ("SPEAKER_1", "SPEAKER_1", "SPEAKER_1", "—", "18.20 s", "65", str(WORDS["SPEAKER_1"])),
        ("SPEAKER_2", "JFK", "SPEAKER_2", "JFK", "9.88 s", "35", str(WORDS["SPEAKER_2"])),
    ]
    assert rows[0][1] != rows[1][1]
    assert f'href="/jobs/{job.pk}/#speakers-card"' in html  # where to rename them
    segments = html.split('<table class="segments">')[1].split("</table>")[0]
    assert segments.count('<span class="speaker-tag"') == len(SEGMENTS) and ">JFK</span>" in segments

    plain = make_job("talk.flac", status="done", result=JFK_RESULT)
    assert "Not diarized." in admin_client.get(f"/admin/transcription/job/{plain.pk}/change/").content.decode()
    russian = admin_client.get(f"/admin/transcription/job/{job.pk}/change/", HTTP_ACCEPT_LANGUAGE="ru")
    assert "Время речи" in russian.content.decode() and "18,20 с" in russian.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("value,expected", [
    ("none", ["lecture.mp3", "later.mp3"]),
    ("one", ["monologue.wav"]),
    ("several", ["meeting.wav"]),
    (None, ["meeting.wav", "monologue.wav", "lecture.mp3", "later.mp3"]),
])
def test_admin_job_list_filters_on_the_number_of_speakers(admin_client, value, expected):
    jobs = {"meeting.wav": diarized_job("meeting.wav"), "monologue.wav": diarized_job("monologue.wav",
                                                                                      result=ONE_VOICE_RESULT),
            "lecture.mp3": make_job("lecture.mp3", status="done", result=JFK_RESULT), "later.mp3": make_job("later.mp3")}
    html = admin_client.get("/admin/transcription/job/", {"speakers": value} if value else {}).content.decode()
    found = set(re.findall(r'<input type="checkbox" name="_selected_action" value="([^"]+)"', html))
    assert found == {str(jobs[name].pk) for name in expected}
    assert "None (not diarized)" in html and "More than one" in html


# --- in the browser, against a live server and a real worker ----------------------------------------------


def _colour(page, selector: str) -> str:
    return page.eval_on_selector(selector, "el => getComputedStyle(el).backgroundColor")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_upload_two_voices_name_one_and_download_the_named_transcript(service, pages, tmp_path):  # noqa: F811
    from tests.conversations import recordings, write

    samples, truth, _language = recordings()["en-2"]
    wav = write(samples, tmp_path / "two-voices.wav")
    page = pages.open("/")
    page.select_option("#id_language", "en")
    page.select_option("#id_model", "tiny.en")
    page.check("#id_diarize")
    drop_files(page, "#dropzone", [("two-voices.wav", wav.read_bytes())])
    page.wait_for_function("['done', 'failed', 'rejected'].includes(document.querySelector('.upload-row').dataset.status)",
                           timeout=180_000)
    assert page.locator(".upload-row").get_attribute("data-status") == "done", page.inner_text(".upload-row")
    with page.expect_navigation():
        page.click(".upload-row a.open")

    job = Job.objects.get()
    assert job.options["diarize"] is True and job.speaker_count == 2 == len({t.speaker for t in truth})
    check_accessible_basics(page)
    assert page.locator("#speakers li").count() == 2
    first, second = (page.locator("#speakers li").nth(i).get_attribute("data-speaker") for i in (0, 1))
    assert (first, second) == ("SPEAKER_1", "SPEAKER_2")
    colours = {who: _colour(page, f'#speakers li[data-speaker="{who}"] .speaker-tag') for who in (first, second)}
    assert colours[first] != colours[second]
    # every segment is labelled, in its speaker's colour, and the turns' names are shown
    spoken = page.eval_on_selector_all("#segments .segment", "els => els.map(e => [e.dataset.speaker,"
                                       " getComputedStyle(e).borderLeftColor])")
    assert len(spoken) == len(job.result["segments"]) and {who for who, _ in spoken} == {first, second}
    assert all(colour == colours[who] for who, colour in spoken)
    visible = page.locator("#segments .speaker-tag:not(.visually-hidden)").all_inner_texts()
    assert visible[0] == first and second in visible
    total = sum(s["seconds"] for s in job.result["speakers"])
    for speaker in job.result["speakers"]:
        row = page.inner_text(f'#speakers li[data-speaker="{speaker["id"]}"]')
        assert f"{round(100 * speaker['seconds'] / total)} %" in row, row

    page.click("details.rename summary")
    page.fill("#id_speaker-SPEAKER_1", ANNA)
    with page.expect_navigation():
        page.press("#id_speaker-SPEAKER_1", "Enter")  # a name is one line: Enter saves, as in a text box
    assert "names were saved" in page.inner_text(".messages")
    assert page.inner_text(f'#speakers li[data-speaker="{first}"] .speaker-tag') == ANNA
    assert page.locator("#segments .speaker-tag:not(.visually-hidden)").first.inner_text() == ANNA
    assert _colour(page, f'#speakers li[data-speaker="{first}"] .speaker-tag') == colours[first]
    assert page.inner_text("#full-text").startswith(f"{ANNA}: ")
    check_accessible_basics(page)

    bodies = {}
    for fmt in ("txt", "vtt"):
        with page.expect_download() as info:
            page.click(f'#downloads a[data-format="{fmt}"]')
        bodies[fmt] = Path(info.value.path()).read_text(encoding="utf-8")
    assert re.search(rf"^{ANNA}: \S", bodies["txt"], re.MULTILINE) and re.search(r"^SPEAKER_2: \S", bodies["txt"], re.MULTILINE)
    assert f"<v {ANNA}>" in bodies["vtt"] and "<v SPEAKER_2>" in bodies["vtt"]

    page.evaluate("window.scrollTo(0, 0)")
    shot = screenshot(page, "speakers-page.png", Path("/tmp"))
    assert shot == Path("/tmp/speakers-page.png") and shot.stat().st_size > 10_000
    assert sideways(page) == []
