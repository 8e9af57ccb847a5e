"""Live sessions: the LocalAgreement policy on its own, then the /v1/live WebSocket for real —
uvicorn serving project.asgi, a `run_live` worker decoding with the base model, a Huey consumer
running the job each session becomes — fed the shared recordings as a client would send them."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests import conversations
from tests.conftest import JFK_REFERENCE, _wait_announced, asgi_server, normalise_words, wer
from transcription import access
from transcription.live.agreement import Decoded, LocalAgreement, Word

RATE = 16_000


# --- the agreement policy, with scripted decodings ------------------------------------------------


def scripted(*decodings: list[tuple[float, float, str]]):
    """A decode function answering each call with the next scripted list of (start, end, word)."""
    calls = iter(decodings)
    prompts = []

    def decode(samples, prompt):
        prompts.append(prompt)
        words = [Word(s, e, " " + w) for s, e, w in next(calls)]
        return Decoded(words, [words[-1].end] if words else [])

    return decode, prompts


def test_a_word_is_final_only_once_two_decodings_agree_on_it_and_all_before_it():
    decode, _ = scripted(
        [(0.0, 0.4, "And"), (0.4, 0.8, "so")],
        [(0.0, 0.4, "And"), (0.4, 0.8, "so,"), (0.9, 1.3, "my")],  # "so," = "so": punctuation is not a word
        [(0.0, 0.4, "And"), (0.4, 0.8, "so"), (0.9, 1.3, "by"), (1.3, 1.8, "fellow")],
        [(0.0, 0.4, "And"), (0.4, 0.8, "so"), (0.9, 1.3, "my"), (1.3, 1.8, "fellow")],
    )
    live = LocalAgreement(decode)
    live.insert(np.zeros(RATE, dtype=np.float32))
    assert live.step() == ([], [Word(0.0, 0.4, " And"), Word(0.4, 0.8, " so")])  # nothing to agree with yet
    live.insert(np.zeros(RATE, dtype=np.float32))
    confirmed, tentative = live.step()
    assert [w.text for w in confirmed] == [" And", " so,"] and [w.text for w in tentative] == [" my"]
    live.insert(np.zeros(RATE, dtype=np.float32))
    confirmed, tentative = live.step()  # "my" became "by": nothing new is final
    assert confirmed == [] and [w.text for w in tentative] == [" by", " fellow"]
    live.insert(np.zeros(RATE, dtype=np.float32))
    confirmed, tentative = live.step()
    assert confirmed == [] and [w.text for w in tentative] == [" my", " fellow"]  # "by" ≠ "my"
    assert [w.text for w in live.confirmed] == [" And", " so,"]


def test_finish_confirms_the_last_decoding_and_confirmed_words_are_never_told_twice():
    decode, _ = scripted(
        [(0.0, 0.5, "ask"), (0.5, 0.9, "not")],
        [(0.0, 0.5, "ask"), (0.5, 0.9, "not"), (1.0, 1.4, "what")],
        [(0.0, 0.5, "ask"), (0.5, 0.9, "not"), (1.0, 1.4, "what"), (1.4, 1.8, "your"), (1.8, 2.4, "country")],
    )
    live = LocalAgreement(decode)
    for _ in range(2):
        live.insert(np.zeros(RATE, dtype=np.float32))
        live.step()
    live.insert(np.zeros(RATE // 2, dtype=np.float32))  # audio after the last step: decoded once more
    rest = live.finish()
    assert [w.text for w in rest] == [" what", " your", " country"]
    assert [w.text for w in live.confirmed] == [" ask", " not", " what", " your", " country"]


def test_a_long_buffer_is_cut_where_a_confirmed_segment_ends_and_read_on_from_its_text():
    sentence = [(0.2 + i, 0.9 + i, f"w{i}") for i in range(14)]  # one 15-s sentence, then more
    calls = []

    def decode(samples, prompt):
        calls.append((len(samples) / RATE, prompt))
        words = [Word(s, e, " " + w) for s, e, w in sentence]
        if len(calls) > 1:
            words.append(Word(14.2, 14.9, " next"))
        return Decoded(words, [14.0, 15.0])

    live = LocalAgreement(decode, trim_seconds=15.0)
    live.insert(np.zeros(16 * RATE, dtype=np.float32))
    live.step()
    live.insert(np.zeros(RATE, dtype=np.float32))
    live.step()  # the sentence agrees: confirmed, and its segment (ending at 14 s) is cut off
    assert live.offset == pytest.approx(14.0) and len(live.buffer) == 3 * RATE
    live.insert(np.zeros(RATE, dtype=np.float32))
    live.step()
    assert calls[-1][0] == pytest.approx(4.0)
    assert calls[-1][1].endswith("w12 w13")  # the confirmed text before the cut is the prompt


# --- the WebSocket, for real -----------------------------------------------------------------------


class LiveClient:
    """A client of /v1/live: sends PCM as a microphone would, collects every message with the time
    it came."""

    def __init__(self, url: str, **connect_args) -> None:
        self.ws = connect(url, open_timeout=30, **connect_args).__enter__()  # closed by the server
        self.began = time.monotonic()
        self.messages: list[tuple[float, dict]] = []
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.messages.append((time.monotonic() - self.began, json.loads(raw)))
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def send_audio(self, samples: np.ndarray, speed: float = 1.0, piece: float = 0.1) -> None:
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        step = int(piece * RATE) * 2
        start = time.monotonic()
        for n, at in enumerate(range(0, len(pcm), step)):
            self.ws.send(pcm[at:at + step])
            lag = start + (n + 1) * piece / speed - time.monotonic()  # keep the microphone's pace
            if lag > 0:
                self.closed.wait(lag)

    def stop(self) -> None:
        self.ws.send(json.dumps({"type": "stop"}))

    def ended(self, timeout: float = 120) -> dict:
        assert self.closed.wait(timeout), [m for _, m in self.messages][-5:]
        ends = [m for _, m in self.messages if m["type"] == "ended"]
        assert len(ends) == 1, [m for _, m in self.messages][-5:]
        return ends[0]

    def wait_for(self, kind: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while not self.of_type(kind):
            assert time.monotonic() < deadline and not self.closed.is_set(), [m for _, m in self.messages]
            time.sleep(0.05)
        return self.of_type(kind)[0]

    def of_type(self, kind: str) -> list[dict]:
        return [m for _, m in self.messages if m["type"] == kind]


def wait_job(base: str, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{base}/job/{job_id}", timeout=30).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def asgi_limits(django_db_setup):
    """The same server with small limits, to reach them in seconds."""
    yield from asgi_server(LIVE_IDLE_SECONDS="2", LIVE_MAX_SECONDS="3", LIVE_MAX_FRAME_BYTES="8192",
                           MAX_UPLOAD_BYTES=str(2 * 1024 * 1024))


def ws_url(base: str, **query: str) -> str:
    from urllib.parse import urlencode

    return base.replace("http://", "ws://") + "/v1/live" + ("?" + urlencode(query) if query else "")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_live_session_confirms_words_as_they_are_spoken_and_becomes_a_job(live):
    from transcription.models import LiveSession

    samples = conversations.clip("jfk.flac")
    client = LiveClient(ws_url(live, language="en"))
    client.send_audio(samples)  # at the microphone's pace
    client.stop()
    end = client.ended()
    started = client.of_type("session.started")[0]
    assert started["sample_rate"] == RATE and started["format"] == "pcm_s16le" and started["model"] == "base"
    finals = client.of_type("final")
    assert len(finals) >= 3 and client.of_type("partial")
    # final text never changes: the pieces follow one another and make up the session's text
    assert all(a["end"] <= b["start"] + 0.05 for a, b in zip(finals, finals[1:]))
    told = " ".join(f["text"] for f in finals)
    assert normalise_words(told) == normalise_words(end["text"])
    assert wer(JFK_REFERENCE, told) <= 0.15
    # words came while the speech went on, not only at the end
    first_final = next(t for t, m in client.messages if m["type"] == "final")
    assert first_final < len(samples) / RATE
    assert end["code"] == 1000 and end["reason"] == "stopped by the client"
    assert end["audio_seconds"] == pytest.approx(len(samples) / RATE, abs=0.11)
    assert client.ws.close_code == 1000 and client.ws.close_reason == "stopped by the client"
    assert end["page_url"] == f"{live}/jobs/{end['job_id']}/" and end["job_url"] == f"{live}/job/{end['job_id']}"
    session = requests.get(f"{live}/live/{started['session_id']}", timeout=30).json()  # for a client that lost `ended`
    assert session["status"] == "ended" and session["job_id"] == end["job_id"] and session["text"] == end["text"]
    assert requests.get(f"{live}/live/{end['job_id']}", timeout=30).status_code == 404

    job = wait_job(live, end["job_id"])
    assert job["status"] == "done" and job["file"].startswith("live-") and job["file"].endswith(".wav")
    assert job["result"]["live"] == {"session_id": started["session_id"], "text": end["text"], "redecoded": True}
    assert wer(JFK_REFERENCE, job["result"]["text"]) <= 0.1
    assert job["duration"] == pytest.approx(len(samples) / RATE, abs=0.11)
    srt = requests.get(f"{live}/job/{end['job_id']}/result", params={"format": "srt"}, timeout=30)
    assert srt.status_code == 200 and "ask not" in srt.text.lower()
    session = LiveSession.objects.get(pk=started["session_id"])
    assert session.status == "ended" and str(session.job_id) == end["job_id"] and session.end_code == 1000


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_client_that_disconnects_mid_word_still_leaves_a_job(live):
    from transcription.models import LiveSession

    client = LiveClient(ws_url(live, language="en"))
    client.send_audio(conversations.clip("jfk.flac", 0, 3.3), speed=4)  # "...ask n-"
    session_id = client.of_type("session.started")[0]["session_id"]
    client.ws.socket.close()  # gone without a close frame
    deadline = time.monotonic() + 60
    while not LiveSession.objects.filter(pk=session_id, job__isnull=False).exists():
        assert time.monotonic() < deadline, "the session did not end"
        time.sleep(0.2)
    session = LiveSession.objects.get(pk=session_id)
    assert session.end_code == 1006 and session.end_reason == "the client disconnected"
    assert session.audio_seconds == pytest.approx(3.3, abs=0.11)
    job = wait_job(live, str(session.job_id))
    assert "fellow americans" in normalise_words(job["result"]["text"])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_bad_settings_are_refused_with_a_reason(live):
    for query, needle in (({"model": "gigantic"}, "model"), ({"language": "xx"}, "language"),
                          ({"speed": "2"}, "unknown parameter 'speed'")):
        client = LiveClient(ws_url(live, **query))
        end = client.ended()
        assert end["code"] == 4400 and needle in end["reason"] and end["job_id"] is None
        assert client.ws.close_code == 4400 and needle in client.of_type("error")[0]["message"]


@pytest.fixture
def limited(asgi_limits, live_worker, worker):
    from django.conf import settings
    from pathlib import Path

    _wait_announced(live_worker, Path(settings.DATA_DIR) / "live.log")
    return asgi_limits


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad, code, needle", [
    (b"\x00" * 9000, 1009, "over the 8192-byte limit"),
    (b"\x00" * 3201, 1003, "odd number of bytes"),
    ("hello", 1003, "must be JSON"),
    (json.dumps({"type": "pause"}), 1003, "must be JSON"),
])
def test_a_malformed_or_oversized_message_ends_the_session_and_keeps_the_audio_before_it(limited, bad, code, needle):
    client = LiveClient(ws_url(limited, language="en"))
    client.send_audio(conversations.clip("jfk.flac", 0, 1.5), speed=4)
    client.ws.send(bad)
    end = client.ended()
    assert end["code"] == code and needle in end["reason"] and client.ws.close_code == code
    assert needle in client.of_type("error")[0]["message"]
    assert end["audio_seconds"] == pytest.approx(1.5, abs=0.11) and end["job_id"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_idle_and_length_limits_end_the_session_with_their_codes(limited):
    idle = LiveClient(ws_url(limited, language="en"))
    idle.send_audio(conversations.clip("jfk.flac", 0, 1.0), speed=4)
    end = idle.ended()  # nothing more is sent
    assert end["code"] == 4408 and end["reason"] == "no audio for 2 s" and idle.ws.close_code == 4408

    long = LiveClient(ws_url(limited, language="en"))
    long.send_audio(conversations.clip("jfk.flac", 0, 5.0), speed=4)
    end = long.ended()
    assert end["code"] == 4413 and "limit of 0.05 minutes" in end["reason"]
    assert end["audio_seconds"] == pytest.approx(3.0, abs=0.01)  # what came past the limit is not kept
    assert normalise_words(end["text"]).startswith("and so")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_one_session_per_client_at_a_time(limited):
    first = LiveClient(ws_url(limited, language="en"))
    first.send_audio(conversations.clip("jfk.flac", 0, 0.5), speed=4)
    second = LiveClient(ws_url(limited, language="en"))
    end = second.ended(timeout=30)
    assert end["code"] == 1008 and "limit per client" in end["reason"] and second.ws.close_code == 1008
    first.stop()
    assert first.ended()["code"] == 1000
    third = LiveClient(ws_url(limited, language="en"))  # the place is free again
    third.wait_for("session.ready")
    third.stop()
    assert third.ended()["code"] == 1000


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_another_sites_page_cannot_open_a_session(live):
    with pytest.raises(Exception) as refused:
        connect(ws_url(live, language="en"), origin="http://evil.example", open_timeout=10)
    assert "403" in str(refused.value)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_asgi_server_streams_events_and_refuses_an_oversized_upload_before_reading_it(limited, clips):
    with open(clips["flac"], "rb") as fh:
        accepted = requests.post(f"{limited}/transcribe", files={"file": ("jfk.flac", fh)},
                                 data={"wait": "false", "language": "en"}, timeout=60).json()
    with requests.get(f"{limited}/job/{accepted['job_id']}/events", stream=True, timeout=120) as response:
        lines = [line for line in response.iter_lines(chunk_size=1, decode_unicode=True) if line]
    assert lines[-2] == "event: done" and any("ask not" in line.lower() for line in lines if line.startswith("data:"))
    # the player's audio, streamed a block at a time under ASGI (not read whole into memory first)
    original = clips["flac"].read_bytes()
    part = requests.get(f"{limited}/jobs/{accepted['job_id']}/audio", headers={"Range": "bytes=100-1123"}, timeout=30)
    assert part.status_code == 206 and part.content == original[100:1124]
    assert requests.get(f"{limited}/jobs/{accepted['job_id']}/audio", timeout=30).content == original
    big = b"\0" * (3 * 1024 * 1024)
    answer = requests.post(f"{limited}/transcribe", files={"file": ("big.wav", big)}, timeout=60)
    assert answer.status_code == 413 and answer.json() == {"detail": "file is larger than the 2.0 MB limit",
                                                           "field": "file"}
    sent = []

    def chunked():  # no Content-Length: refused once the body passes the cap, the rest never read
        for _ in range(256):  # 64 MB
            sent.append(1)
            yield b"\0" * (256 * 1024)

    answer = requests.post(f"{limited}/v1/audio/transcriptions", data=chunked(), timeout=60,
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "file_too_large"
    assert len(sent) < 256  # the server stopped reading long before the end


# --- opening a session: the rules, against the database ---------------------------------------------


@pytest.fixture
def live_worker_row(db):
    from transcription.models import Worker

    return Worker.objects.create(name="elsewhere:1", host="elsewhere", pid=1, threads=2,
                                 queue="SqliteHuey:transcription-live")


def test_the_overall_limit_counts_every_clients_open_sessions_but_not_dead_ones(settings, live_worker_row):
    from datetime import timedelta

    from django.utils import timezone

    from transcription.live import opening
    from transcription.models import LiveSession

    settings.LIVE_MAX_SESSIONS, settings.LIVE_MAX_SESSIONS_PER_CLIENT = 2, 1
    now = timezone.now()
    LiveSession.objects.create(client="addr:10.0.0.1", model="base", engine="ctranslate2", status="live",
                               heartbeat_at=now)
    LiveSession.objects.create(client="addr:10.0.0.2", model="base", engine="ctranslate2", status="waiting")
    with pytest.raises(opening.Refused) as refused:
        opening.open_session({"language": "en"}, access.ANONYMOUS, "10.0.0.3")
    assert refused.value.code == 1013 and "limit of 2 live sessions" in refused.value.reason
    # a session whose worker stopped beating no longer holds its place
    LiveSession.objects.filter(status="live").update(heartbeat_at=now - timedelta(minutes=5))
    session = opening.open_session({"language": "en", "model": "base"}, access.ANONYMOUS, "10.0.0.3")
    assert session.status == "waiting" and session.model == "base" and session.client == "addr:10.0.0.3"
    assert session.request.language == "en"


def test_no_live_worker_or_live_turned_off_refuses_with_1013(settings, db):
    from transcription.live import opening

    with pytest.raises(opening.Refused) as refused:
        opening.open_session({"language": "en"}, access.ANONYMOUS, "1")
    assert refused.value.code == 1013 and "no live worker is running" in refused.value.reason
    settings.LIVE_MAX_SESSIONS = 0
    with pytest.raises(opening.Refused) as refused:
        opening.open_session({"language": "en"}, access.ANONYMOUS, "1")
    assert refused.value.code == 1013 and "turned off" in refused.value.reason


def test_with_api_tokens_a_session_needs_one_or_a_logged_in_user(settings, db):
    from types import SimpleNamespace

    from django.contrib.auth import get_user_model

    from transcription import services
    from transcription.live import opening

    settings.API_TOKENS = ["s3cret"]
    with pytest.raises(opening.Refused) as refused:
        opening.authorize(None, None)
    assert refused.value.code == 4401
    with pytest.raises(opening.Refused) as refused:
        opening.authorize("wrong", SimpleNamespace(is_authenticated=False))
    assert "invalid API token" in refused.value.reason
    assert opening.authorize("s3cret", None).service
    anna = get_user_model().objects.create_user("anna")
    assert opening.authorize(None, anna).owner == anna  # the page's logged-in user
    _, key = services.create_token(anna, "mic", "write")
    actor = opening.authorize(key, None)
    assert actor.owner == anna and opening.client_key(actor, "1.2.3.4") != opening.client_key(
        opening.authorize("s3cret", None), "1.2.3.4")
    _, reader = services.create_token(anna, "read", "read")
    with pytest.raises(opening.Refused) as refused:  # a session makes a job: a read token may not
        opening.authorize(reader, None)
    assert refused.value.code == 4401 and "only read" in refused.value.reason
    assert opening.client_key(access.ANONYMOUS, "1.2.3.4") == "addr:1.2.3.4"


def test_the_admin_lists_live_sessions_with_how_each_ended_and_its_job(admin_client, clips):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from transcription import services
    from transcription.models import LiveSession
    from transcription.schemas import TranscribeOptions

    job = services.create_job(SimpleUploadedFile("live-2026.wav", clips["wav"].read_bytes()),
                              TranscribeOptions(language="en"), enqueue=False)
    session = LiveSession.objects.create(model="base", engine="ctranslate2", status="ended", audio_seconds=11.0,
                                         text="ask not", end_reason="stopped by the client", end_code=1000, job=job)
    listing = admin_client.get("/admin/transcription/livesession/").content.decode()
    assert str(session.id)[:8] in listing and "stopped by the client (1000)" in listing and "11.0 s" in listing
    page = admin_client.get(f"/admin/transcription/livesession/{session.id}/change/").content.decode()
    assert f"/admin/transcription/job/{job.id}/change/" in page and "ask not" in page
    assert admin_client.post(f"/admin/transcription/livesession/{session.id}/change/", {}).status_code == 403
