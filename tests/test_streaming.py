"""Results streamed as the worker decodes them: a job's server-sent events (read with a plain SSE
reader) and OpenAI's transcript events (`stream=true`, read with the official client), through a
live server and a real worker."""
from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from tests import conversations
from tests.browser import chromium, pages  # noqa: F401
from tests.conftest import normalise_words, wer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def reading(tmp_path_factory):
    """About 90 s of English read by three voices: three windows or more when decoded one after another."""
    samples, reference = conversations.reading(rounds=3)
    path = conversations.write(samples, tmp_path_factory.mktemp("reading") / "reading.wav")
    return path, reference


def sse_events(response: requests.Response):
    """(event, data, arrival time) of a text/event-stream, read line by line as it comes."""
    name, data = "message", []
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):  # each byte as it comes
        if line == "":
            if data:
                yield name, json.loads("\n".join(data)), time.monotonic()
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def submit(service, path, **fields) -> str:
    with open(path, "rb") as fh:
        answer = requests.post(f"{service}/transcribe", files={"file": (path.name, fh)},
                               data={"wait": "false", "language": "en", **fields}, timeout=60)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def test_job_events_tell_each_segment_while_the_job_runs(service, reading):
    path, reference = reading
    job_id = submit(service, path, batch_size="1")  # one window after another: segments come apart
    with requests.get(f"{service}/job/{job_id}/events", stream=True, timeout=300) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        got = list(sse_events(response))
    names = [name for name, _, _ in got]
    assert names[-1] == "done" and names.count("done") == 1
    segments = [data for name, data, _ in got if name == "segment"]
    assert len(segments) >= 4
    assert [s["n"] for s in segments] == list(range(len(segments)))
    assert all(a["start"] <= b["start"] for a, b in zip(segments, segments[1:]))
    # Streamed, not saved up: the job was still running, further on, after the first segment came.
    first = names.index("segment")
    later = [data for name, data, _ in got[first + 1:] if name == "progress"]
    timeline = [(n, d.get("progress"), round(t - got[0][2], 2)) for n, d, t in got]
    assert any(p["status"] == "running" and p["progress"] < 99 for p in later), timeline
    told = " ".join(s["text"] for s in segments)
    final = got[-1][1]
    assert final["status"] == "done" and final["result"]["text"]
    assert wer(reference, told) <= 0.15
    assert normalise_words(told) == normalise_words(final["result"]["text"])


def test_events_of_a_finished_job_end_at_once(service, clips):
    job_id = submit(service, clips["flac"])
    with requests.get(f"{service}/job/{job_id}/events", stream=True, timeout=300) as response:
        first = list(sse_events(response))
    assert first[-1][0] == "done"
    with requests.get(f"{service}/job/{job_id}/events", stream=True, timeout=30) as response:
        again = list(sse_events(response))
    # the segments told while it ran, then its final state
    assert [n for n, _, _ in again] == ["segment"] * (len(again) - 1) + ["done"]
    assert "ask not" in " ".join(d["text"] for n, d, _ in again if n == "segment").lower()


def test_events_of_an_unknown_job_are_404(service):
    answer = requests.get(f"{service}/job/6d1c4c1e-0000-4000-8000-000000000000/events", timeout=30)
    assert answer.status_code == 404 and "detail" in answer.json()


def test_openai_client_streams_deltas_then_the_text(service, reading):
    path, reference = reading
    client = openai.OpenAI(base_url=f"{service}/v1", api_key="unused-when-open", max_retries=0, timeout=300)
    with open(path, "rb") as fh:
        stream = client.audio.transcriptions.create(model="whisper-1", file=fh, language="en", stream=True)
        got = list(stream)
    kinds = [event.type for event in got]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    deltas = [event.delta for event in got if event.type == "transcript.text.delta"]
    assert len(deltas) >= 4 and kinds[:-1] == ["transcript.text.delta"] * len(deltas)
    done = got[-1]
    assert done.usage.seconds == pytest.approx(len(conversations.reading(rounds=3)[0]) / 16000, abs=0.1)
    assert wer(reference, done.text) <= 0.15
    assert " ".join("".join(deltas).split()) == " ".join(done.text.split())


def test_stream_needs_a_text_format(service, clips):
    client = openai.OpenAI(base_url=f"{service}/v1", api_key="unused-when-open", max_retries=0, timeout=60)
    with open(clips["flac"], "rb") as fh, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="srt", stream=True)
    assert "response_format" in str(caught.value)


def test_the_job_page_shows_segments_as_they_are_decoded(service, pages, reading):
    path, reference = reading
    job_id = submit(service, path, batch_size="1")
    page = pages.open(f"/jobs/{job_id}/")
    # words on the page while the worker is still on the file, then the page turns into the result
    page.wait_for_function("!document.getElementById('live-text').hidden"
                           " && document.getElementById('job-status').dataset.status === 'running'",
                           timeout=120_000)
    so_far = normalise_words(page.inner_text("#live-text")).split()
    assert so_far and wer(" ".join(normalise_words(reference).split()[:len(so_far)]), " ".join(so_far)) <= 0.2
    page.wait_for_selector('#job-status[data-status="done"]', timeout=120_000)
    assert page.locator("#live-text").count() == 0 and page.locator(".segment").count() >= 4


def test_segments_are_logged_as_decoded_and_openais_deltas_come_in_time_order(settings, tmp_path):
    from transcription import events, sse
    from transcription.engines import Segment

    settings.MEDIA_ROOT = str(tmp_path)
    job = "5b0a3a5e-1111-4000-8000-000000000001"
    events.start(job)
    teller = events.Teller(job)
    seg = lambda start, text: Segment(id=0, start=start, end=start + 2, text=text)  # noqa: E731
    teller.take([seg(40.0, " later stream")], 8.0)  # a second stream's window: 8-40 s not yet decoded
    teller.take([seg(2.0, " first"), seg(6.0, " "), seg(7.0, " second")], 9.0)
    teller.take([], None)  # the end: everything is decoded
    logged, offset = events.read(job, 0)
    assert [(e.get("n"), e.get("text")) for e in logged if e["type"] == "segment"] == [
        (0, "later stream"), (1, "first"), (2, "second")]  # as decoded; blank ones are not told
    assert [e["seconds"] for e in logged if e["type"] == "decoded_to"] == [8.0, 9.0, None]

    openai = sse.OpenAIEvents()
    deltas = [frame for name, data in [(e["type"], e) for e in logged] for frame in openai(name, data)]
    texts = [json.loads(frame.removeprefix("data: "))["delta"] for frame in deltas]
    assert texts == ["first", " second", " later stream"]  # in time order, each once nothing can come before it
    assert events.read(job, offset) == ([], offset)
    events.start(job)  # a new attempt reads from the start again
    assert events.read(job, offset) == ([], 0)
