"""Callbacks: the address rules (netguard), and signed deliveries to a real receiver on 127.0.0.1,
retried through a real Huey consumer, for jobs, cancellations and batches."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone

from tests.conftest import until
from transcription import netguard, services, webhooks
from transcription.models import Account, ApiToken, Batch, Job, WebhookDelivery
from transcription.schemas import TranscribeOptions

MODEL = {"model": "tiny.en", "engine": "ctranslate2", "language": "en"}
PUBLIC_ONLY = override_settings(ALLOW_PRIVATE_NETWORKS=False)


# --- a real receiver -----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 in a thread: records every POST and answers with the next of
    `answers` (a status, or (status, body, headers)), then 200."""

    def __init__(self) -> None:
        self.answers: list = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append(Received(self.path, self.headers, body))
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                status, text, extra = answer if isinstance(answer, tuple) else (answer, b"ok", {})
                self.send_response(status)
                for name, value in {**extra, "Content-Length": str(len(text))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/stt?source=test"

    def posts(self, event: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if event is None or r.event["event"] == event]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    """Makes receivers; stops them after the test."""
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def receiver(receivers) -> Receiver:
    return receivers()


def verify(received: Received, secret: str) -> None:
    """The README's recipe: HMAC-SHA256 of "<timestamp>." + body, compared in constant time, and a
    timestamp within 5 minutes."""
    timestamp = received.headers["Webhook-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["Webhook-Signature"], f"v1={expected}")
    assert abs(time.time() - int(timestamp)) < 300


def _queued_job(clips, callback_url: str, owner=None) -> Job:
    """A job recorded but never handed to the queue: it stays queued until the test moves it."""
    upload = SimpleUploadedFile("tone.wav", clips["tone"].read_bytes())
    return services.create_job(upload, TranscribeOptions(**MODEL, callback_url=callback_url), enqueue=False,
                               owner=owner)


def _deliveries(**filters) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(**filters).order_by("attempt"))


# --- the address rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "says"), [
    ("http://localhost:8000/hook", "localhost resolves to 127.0.0.1, a loopback address"),
    ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("http://192.168.0.10/hook", "192.168.0.10 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
    ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
    ("http://[::1]:8000/hook", "::1 is a loopback address"),
    ("http://[fd00::1]/hook", "fd00::1 is a private address"),
    ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1 is a loopback address"),
    ("http://0.0.0.0/hook", "0.0.0.0 is an unspecified address"),
    ("ftp://example.com/hook", "use an http:// or https:// address, not ftp://"),
    ("example.com/hook", "use an http:// or https:// address"),
    ("http:///hook", "names no host"),
    ("http://no-such-host.invalid/hook", "no-such-host.invalid does not resolve to any address"),
])
def test_check_url_refuses_what_is_not_a_public_http_address_and_says_why(url, says):
    with PUBLIC_ONLY, pytest.raises(netguard.AddressRefused) as refused:
        netguard.check_url(url)
    assert says in str(refused.value)
    assert "Traceback" not in str(refused.value) and str(settings.BASE_DIR) not in str(refused.value)


def test_check_url_names_the_setting_that_allows_private_addresses():
    with PUBLIC_ONLY, pytest.raises(netguard.AddressRefused, match=r"ALLOW_PRIVATE_NETWORKS=true"):
        netguard.check_url("http://127.0.0.1:9/")


def test_check_url_allows_loopback_when_private_networks_are_allowed():
    with override_settings(ALLOW_PRIVATE_NETWORKS=True):
        assert [str(ip) for ip in netguard.check_url("http://127.0.0.1:9/hook")] == ["127.0.0.1"]
        # the other rules still hold
        with pytest.raises(netguard.AddressRefused, match="not ftp://"):
            netguard.check_url("ftp://127.0.0.1/")
        with pytest.raises(netguard.AddressRefused, match="does not resolve"):
            netguard.check_url("http://no-such-host.invalid/")
        # cloud metadata endpoints hand out credentials: never, whatever the setting
        for url in ("http://169.254.169.254/latest/", "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"):
            with pytest.raises(netguard.AddressRefused, match="cloud metadata address, never allowed"):
                netguard.check_url(url)


def test_a_public_address_passes():
    with PUBLIC_ONLY:
        assert [str(ip) for ip in netguard.check_url("https://93.184.215.14/hook")] == ["93.184.215.14"]
        assert [str(ip) for ip in netguard.check_url("http://[2606:4700::1111]/")] == ["2606:4700::1111"]


def test_post_checks_the_name_again_when_sending_and_connects_to_the_address_it_checked(receiver, monkeypatch):
    # A name that answered a public address when the job was created and a private one now
    # (DNS rebinding): the request is refused, and nothing reaches the private address.
    real, answers = netguard.socket.getaddrinfo, []

    def resolve(host, port, *args, **kwargs):  # the name answers once per answer given, then fails
        if host != "hooks.example.test":
            return real(host, port, *args, **kwargs)
        if not answers:
            raise netguard.socket.gaierror(netguard.socket.EAI_NONAME, "Name or service not known")
        return [(netguard.socket.AF_INET, netguard.socket.SOCK_STREAM, 6, "", (answers.pop(0), port))]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", resolve)
    url = f"http://hooks.example.test:{receiver.port}/x"
    answers[:] = ["127.0.0.1"]
    with PUBLIC_ONLY, pytest.raises(netguard.AddressRefused, match="hooks.example.test resolves to 127.0.0.1"):
        netguard.post(url, b"{}", {}, timeout=5)
    assert receiver.posts() == []
    # Allowed, it connects to the address it checked (resolving the name once: a second look would
    # fail), naming the host it was given.
    answers[:] = ["127.0.0.1"]
    with override_settings(ALLOW_PRIVATE_NETWORKS=True):
        assert netguard.post(url, b"{}", {"Content-Type": "application/json"}, timeout=5) == (200, "ok")
    [got] = receiver.posts()
    assert got.headers["Host"] == f"hooks.example.test:{receiver.port}" and got.path == "/x"


def test_post_does_not_follow_redirects_and_keeps_only_the_start_of_the_answer(receivers):
    first, elsewhere = receivers(), receivers()
    first.answers = [(302, b"moved", {"Location": elsewhere.url}), (500, b"x" * 100_000, {})]
    assert netguard.post(first.url, b"{}", {}, timeout=5) == (302, "moved")
    status, answer = netguard.post(first.url, b"{}", {}, timeout=5)
    assert status == 500 and answer == "x" * netguard.ANSWER_BYTES
    assert elsewhere.posts() == [] and len(first.posts()) == 2


def test_post_reports_a_closed_port_as_a_failure_to_send(receiver):
    url = receiver.url
    receiver.stop()
    with pytest.raises(netguard.SendFailed, match="127.0.0.1"):
        netguard.post(url, b"{}", {}, timeout=5)


# --- deliveries in this process --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_refused_address_is_recorded_as_refused_and_not_retried(clips, receiver):
    job = _queued_job(clips, f"http://localhost:{receiver.port}/hook")
    with PUBLIC_ONLY:
        services.cancel(job)  # job_ended: the first attempt, in a thread, with the rule in force
        [row] = until(lambda: _deliveries(job=job), "the refused attempt's row")
    assert row.outcome == WebhookDelivery.Outcome.REFUSED and row.event == "job.cancelled"
    assert "localhost resolves to 127.0.0.1, a loopback address" in row.error
    assert row.status_code is None and row.next_attempt_at is None and row.attempt == 1
    assert receiver.posts() == []


@pytest.mark.django_db(transaction=True)
def test_the_last_attempt_gives_up_and_keeps_the_start_of_the_answer(clips, receiver):
    job = _queued_job(clips, "")
    services.cancel(job)  # no callback address yet: nothing sent
    Job.objects.filter(pk=job.pk).update(callback_url=receiver.url)
    receiver.answers = [(503, "busy ".encode() * 1000, {})]
    with override_settings(WEBHOOK_MAX_ATTEMPTS=1):
        row = webhooks.deliver("job", str(job.pk), "job.cancelled", 1)
    assert row.outcome == WebhookDelivery.Outcome.GAVE_UP and row.status_code == 503
    assert row.answer.startswith("busy busy") and len(row.answer) <= netguard.ANSWER_BYTES
    assert row.next_attempt_at is None and row.duration_ms is not None
    assert len(receiver.posts()) == 1


@pytest.mark.django_db(transaction=True)
def test_cancelling_through_the_api_sends_a_signed_job_cancelled_event(live_server, clips, receiver):
    job = _queued_job(clips, receiver.url)
    with override_settings(WEBHOOK_SECRET="ownerless-secret"):  # the job has no owner
        answer = requests.post(f"{live_server.url}/job/{job.pk}/cancel", timeout=30)
        assert answer.status_code == 200, answer.text
        [row] = until(lambda: _deliveries(job=job), "the cancellation's delivery")
    assert row.outcome == WebhookDelivery.Outcome.DELIVERED and row.event == "job.cancelled"
    [got] = receiver.posts()
    verify(got, "ownerless-secret")
    event = got.event
    assert event["event"] == "job.cancelled" and event["event_id"] == f"{job.pk}:job.cancelled"
    assert event["job"]["status"] == "cancelled" and event["job"]["file"] == "tone.wav"
    assert "text" not in event["job"] and event["job"]["path"] == f"/job/{job.pk}"


@pytest.mark.django_db(transaction=True)
def test_an_ownerless_job_without_webhook_secret_is_sent_unsigned(clips, receiver):
    job = _queued_job(clips, receiver.url)
    with override_settings(WEBHOOK_SECRET=""):
        services.cancel(job)
        until(lambda: _deliveries(job=job), "the delivery")
    [got] = receiver.posts()
    assert "Webhook-Signature" not in got.headers and got.headers["Webhook-Id"] == f"{job.pk}:job.cancelled"


# --- through the queue: a real consumer ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_failed_callbacks_are_retried_until_delivered_with_the_same_signed_event(service, clips, receiver):
    user = get_user_model().objects.create_user("webhook-owner")
    token = ApiToken(user=user, name="webhooks test")
    key = token.new_key()
    token.save()
    receiver.answers = [500, 500]
    with open(clips["wav"], "rb") as fh:
        answer = requests.post(f"{service}/transcribe", files={"file": ("jfk.wav", fh)},
                               data={**MODEL, "wait": "false", "callback_url": receiver.url},
                               headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert answer.status_code in (200, 202), answer.text
    job_id = answer.json()["job_id"]
    rows = until(lambda: (r := _deliveries(job_id=job_id)) and r[-1].outcome != "retrying" and r,
                 "three attempts, the last delivered")
    assert [(r.attempt, r.outcome, r.status_code) for r in rows] == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200)]
    assert all(r.owner_id == user.pk and r.event == "job.done" and r.url == receiver.url for r in rows)
    assert all(r.next_attempt_at is not None for r in rows[:2]) and rows[2].next_attempt_at is None
    # the pauses grow: WEBHOOK_RETRY_SECONDS (0.5 in tests), then twice that
    assert rows[1].sent_at - rows[0].sent_at >= timedelta(seconds=0.5)
    assert rows[2].sent_at - rows[1].sent_at >= timedelta(seconds=1.0)

    posts = receiver.posts()
    assert len(posts) == 3
    assert {p.headers["Webhook-Id"] for p in posts} == {f"{job_id}:job.done"}
    assert len({p.body for p in posts}) == 1  # the same event, byte for byte
    secret = Account.of(user).webhook_secret
    for post in posts:
        verify(post, secret)
        assert post.headers["Content-Type"] == "application/json"
        assert post.headers["User-Agent"] == "whisper-service-webhooks"
        assert post.path == "/hooks/stt?source=test"
    event = posts[0].event
    assert event["event"] == "job.done" and event["event_id"] == f"{job_id}:job.done"
    summary = event["job"]
    assert summary["id"] == job_id and summary["status"] == "done" and summary["file"] == "jfk.wav"
    assert "ask not what your country" in summary["text"].lower()
    assert summary["model"] == "tiny.en" and summary["language"] == "en"
    assert summary["duration"] == pytest.approx(11.0, abs=0.1)
    assert summary["path"] == f"/job/{job_id}" and summary["result_path"] == f"/job/{job_id}/result"
    assert summary["error"] == "" and summary["finished_at"] == event["created_at"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_batch_sends_each_jobs_event_and_one_batch_finished(service, clips, receiver):
    tone = clips["tone"].read_bytes()
    answer = requests.post(f"{service}/transcribe/batch",
                           files=[("files", ("first.wav", tone)), ("files", ("second.wav", tone))],
                           data={**MODEL, "callback_url": receiver.url}, timeout=120)
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batch_id"]
    job_ids = {j["job_id"] for j in answer.json()["jobs"]}
    until(lambda: len(receiver.posts()) >= 3, "two job events and the batch's")
    assert {p.event["job"]["id"] for p in receiver.posts("job.done")} == job_ids
    [finished] = receiver.posts("batch.finished")
    event = finished.event
    assert event["event_id"] == f"{batch_id}:batch.finished" and finished.headers["Webhook-Id"] == event["event_id"]
    batch = event["batch"]
    assert batch["id"] == batch_id and batch["status"] == "done" and batch["counts"]["done"] == 2
    assert {(j["id"], j["status"]) for j in batch["jobs"]} == {(i, "done") for i in job_ids}
    assert sorted(j["file"] for j in batch["jobs"]) == ["first.wav", "second.wav"]
    rows = until(lambda: _deliveries(batch_id=batch_id), "the batch's delivery row")
    assert [(r.event, r.outcome) for r in rows] == [("batch.finished", "delivered")]
    assert Batch.objects.get(pk=batch_id).notified_at is not None
    assert webhooks.claim_batch(batch_id) is False  # claimed once, for good
    assert WebhookDelivery.objects.filter(job_id__in=job_ids, outcome="delivered").count() == 2


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_sweep_sends_an_event_whose_first_attempt_was_lost(worker, clips, receiver):
    lost = _queued_job(clips, "")
    services.cancel(lost)  # no callback address then: nothing sent
    recent = _queued_job(clips, "")
    services.cancel(recent)
    long_ago = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=lost.pk).update(callback_url=receiver.url, finished_at=long_ago)
    Job.objects.filter(pk=recent.pk).update(callback_url=receiver.url)  # may still be under way
    assert webhooks.sweep() == 1
    assert webhooks.sweep() == 0  # already handed to the queue
    rows = until(lambda: _deliveries(job=lost), "the swept delivery, through the worker")
    assert (rows[0].outcome, rows[0].event, rows[0].attempt) == ("delivered", "job.cancelled", 1)
    # (the worker's own minutely sweep may have sent it too, if it ran in between: receivers drop
    # repeats by Webhook-Id)
    assert {p.event["job"]["id"] for p in receiver.posts()} == {str(lost.pk)}
    assert _deliveries(job=recent) == []


# --- the admin -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_lists_deliveries_read_only_and_can_delete_them(admin_client):
    from transcription.models import Upload

    upload = Upload.objects.create(original_name="talk.mp3", stored_path="uploads/x.mp3", size=1, sha256="0" * 64)
    job = Job.objects.create(upload=upload, callback_url="https://hooks.example.com/stt")
    row = WebhookDelivery.objects.create(event_id=f"{job.pk}:job.done", event="job.done", job=job, attempt=2,
                                         url=job.callback_url, outcome="retrying", status_code=502,
                                         answer="bad gateway", duration_ms=41)
    listing = admin_client.get("/admin/transcription/webhookdelivery/").content.decode()
    assert "https://hooks.example.com/stt" in listing and f"/admin/transcription/job/{job.pk}/change/" in listing
    assert "502" in listing and "41" in listing
    assert "hooks.example.com" in admin_client.get("/admin/transcription/webhookdelivery/",
                                                   {"q": "example.com"}).content.decode()
    assert "hooks.example.com/stt" not in admin_client.get("/admin/transcription/webhookdelivery/",
                                                           {"outcome__exact": "delivered"}).content.decode()
    page = admin_client.get(f"/admin/transcription/webhookdelivery/{row.pk}/change/").content.decode()
    assert "bad gateway" in page and 'name="_save"' not in page
    assert admin_client.get("/admin/transcription/webhookdelivery/add/").status_code == 403
    assert admin_client.post(f"/admin/transcription/webhookdelivery/{row.pk}/change/",
                             {"outcome": "delivered"}).status_code == 403
    admin_client.post(f"/admin/transcription/webhookdelivery/{row.pk}/delete/", {"post": "yes"})
    assert not WebhookDelivery.objects.filter(pk=row.pk).exists()
