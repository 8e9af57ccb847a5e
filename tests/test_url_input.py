"""Files by URL (url= on POST /transcribe, "From a URL" on the upload page): a real file server on
127.0.0.1 in a thread, the live server and a real worker. Fetched files become ordinary jobs that
keep their address; redirects are followed and checked again; refused addresses, remote errors,
files too large (announced or not), stalls and wrong types are clear 4xx answers that leave
nothing on disk."""
from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.browser import chromium, pages, screenshot, sideways  # noqa: F401
from tests.conftest import JFK_REFERENCE, until, wer
from transcription import fetch, netguard
from transcription.models import Job

MODEL = {"model": "tiny.en", "engine": "ctranslate2", "language": "en"}
SLOW = 60.0  # how long a stalling route holds its connection at most (released when the test ends)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


# --- a real file server ----------------------------------------------------------------------------


class FileServer:
    """An HTTP/1.1 server on `host` in a thread. `routes` maps a path (with its query) to a function
    answering the request handler; every request's path is recorded in `seen`."""

    def __init__(self, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        self.routes: dict = {}
        self.seen: list[str] = []
        self.release = threading.Event()  # set when the test ends: stalling routes let go
        self.notes: dict = {}
        files = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                files.seen.append(self.path)
                route = files.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                self.close_connection = True
                route(self)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.host, self.scheme = host, "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, tls))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def send_file(data: bytes, content_type: str | None, length: int | None = None, **headers: str):
    """A route answering 200 with `data` (Content-Length `length` if given: a lie)."""
    def route(h) -> None:
        h.send_response(200)
        if content_type:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data) if length is None else length))
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(data)
    return route


def stall_after(server: "FileServer", sent: int, length: int):
    """A route announcing an MP3 of `length` bytes that sends `sent` of them, then holds the
    connection silent until the test ends (at most SLOW)."""
    def route(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "audio/mpeg")
        h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.write(b"\xff" * sent)
        h.wfile.flush()
        server.release.wait(SLOW)
    return route


def redirect(location: str, status: int = 302):
    def route(h) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return route


@pytest.fixture
def files():
    made: list[FileServer] = []

    def make(host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> FileServer:
        made.append(FileServer(host, tls))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def server(files) -> FileServer:
    return files()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and no other name) and its key, made with openssl."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is missing (apt-get install -y openssl): the HTTPS test makes its certificate with it")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


# --- helpers -----------------------------------------------------------------------------------------


def transcribe(base_url: str, timeout: float = 600, **fields) -> requests.Response:
    """POST /transcribe as `curl -F url=…` does: a multipart form without a file."""
    data = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in {**MODEL, **fields}.items()}
    return requests.post(f"{base_url}/transcribe", files={k: (None, v) for k, v in data.items()}, timeout=timeout)


def final_job(base_url: str, job_id: str) -> dict:
    def done():
        job = requests.get(f"{base_url}/job/{job_id}", timeout=30).json()
        return job if job["status"] in ("done", "failed", "cancelled") else None
    return until(done, f"job {job_id} to end")


def leftovers() -> set[Path]:
    """Files a download could leave: stored uploads, and the temporary files uploads stream to."""
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    stored = set(uploads.iterdir()) if uploads.is_dir() else set()
    return stored | set(Path(settings.FILE_UPLOAD_TEMP_DIR).glob("*.upload*"))


@pytest.fixture
def nothing_left():
    """Fails the test if it leaves a stored upload or a temporary upload behind (the server removes
    a request's own uploaded file just after its answer: that one is waited for)."""
    before = leftovers()
    yield
    deadline = time.monotonic() + 10
    while (left := leftovers() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == set(), "a refused download left files behind"


def refused(answer: requests.Response, status: int, *words: str) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["field"] == "url", body
    for word in words:
        assert word in body["detail"], body
    assert "Traceback" not in answer.text and str(settings.DATA_DIR) not in answer.text
    return body


# --- what works ----------------------------------------------------------------------------------------


def test_a_url_job_transcribes_the_fetched_file_and_keeps_its_address(service, clips, server, admin_client):
    data = clips["flac"].read_bytes()
    server.routes["/talks/jfk.flac?signed=1"] = send_file(data, "audio/flac")
    url = server.url("/talks/jfk.flac?signed=1")

    answer = transcribe(service, url=url)  # the synchronous default: the result in the answer

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert wer(JFK_REFERENCE, result["text"]) <= 0.2, result["text"]
    assert result["uploaded_file"].endswith("jfk.flac")
    job = requests.get(f"{service}/job/{result['job_id']}", timeout=30).json()
    assert job["source_url"] == url and job["file"] == "jfk.flac"
    stored = Job.objects.select_related("upload").get(id=result["job_id"]).upload
    assert stored.source_url == url and stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.path.read_bytes() == data
    # the address on the job page (a link that hands on no referrer) and in the admin, read-only
    page = requests.get(f"{service}/jobs/{result['job_id']}/", timeout=30).text
    assert f'<a href="{url.replace("&", "&amp;")}" rel="noreferrer nofollow">' in page
    admin_page = admin_client.get(f"/admin/transcription/upload/{stored.id}/change/").content.decode()
    assert url in admin_page and 'name="source_url"' not in admin_page
    # an uploaded file's job says it was not fetched
    with open(clips["mp3"], "rb") as fh:
        sent = requests.post(f"{service}/transcribe", files={"file": ("jfk.mp3", fh)},
                             data={**MODEL, "wait": "false"}, timeout=60)
    assert requests.get(sent.json()["url"], timeout=30).json()["source_url"] is None


def test_a_chain_of_redirects_is_followed_and_the_type_names_a_nameless_file(service, clips, server):
    server.routes["/start"] = redirect("/second", 301)
    server.routes["/second"] = redirect(server.url("/third"), 303)
    server.routes["/third"] = redirect("media/8f3a2b", 307)  # relative to /third
    server.routes["/media/8f3a2b"] = send_file(clips["mp3"].read_bytes(), "audio/mpeg; charset=binary")
    url = server.url("/start")

    answer = transcribe(service, url=url, wait=False)

    assert answer.status_code == 202, answer.text
    assert server.seen == ["/start", "/second", "/third", "/media/8f3a2b"]
    job = final_job(service, answer.json()["job_id"])
    assert job["status"] == "done", job
    assert job["file"] == "8f3a2b.mp3" and job["source_url"] == url
    assert wer(JFK_REFERENCE, job["result"]["text"]) <= 0.2


def test_the_name_comes_from_content_disposition_filename_star_first(service, clips, server):
    server.routes["/download?id=7"] = send_file(
        clips["mp3"].read_bytes(), "application/octet-stream",
        Content_Disposition="attachment; filename=\"plain.mp3\"; filename*=UTF-8''%D1%80%D0%B5%D1%87%D1%8C%201.mp3")

    answer = transcribe(service, url=server.url("/download?id=7"), wait=False)

    assert answer.status_code == 202, answer.text
    assert requests.get(answer.json()["url"], timeout=30).json()["file"] == "речь 1.mp3"


def test_an_address_with_letters_outside_ascii_is_escaped_and_names_the_file(service, clips, server):
    server.routes["/talks/%D0%B4%D0%BE%D0%BA%D0%BB%D0%B0%D0%B4%201.mp3"] = send_file(clips["mp3"].read_bytes(), None)
    url = server.url("/talks/доклад 1.mp3")

    answer = transcribe(service, url=url, wait=False)

    assert answer.status_code == 202, answer.text
    job = requests.get(answer.json()["url"], timeout=30).json()
    assert job["file"] == "доклад 1.mp3" and job["source_url"] == url


@pytest.mark.parametrize(("header", "name"), [
    ('attachment; filename="talk.mp3"', "talk.mp3"),
    ("attachment; filename*=UTF-8''%E2%82%AC%20rates.wav; filename=\"rates.wav\"", "€ rates.wav"),
    ("attachment; filename*=iso-8859-1'en'%A3%20rates.flac", "£ rates.flac"),
    ('inline; filename=bare.ogg', "bare.ogg"),
    ("inline", ""),
    ("", ""),
])
def test_disposition_names_follow_rfc_6266(header, name):
    assert fetch.disposition_name(header) == name


# --- what is refused -----------------------------------------------------------------------------------


def test_a_redirect_to_a_refused_address_is_refused_before_connecting(service, clips, files, settings, monkeypatch,
                                                                      nothing_left):
    """With private networks refused, only 127.0.0.2 counts as non-public here (Linux routes all of
    127/8 to lo), so the first hop on 127.0.0.1 is allowed and the redirect is what is refused."""
    settings.ALLOW_PRIVATE_NETWORKS = False
    monkeypatch.setattr(netguard, "non_public", lambda ip: "loopback" if str(ip) == "127.0.0.2" else None)
    first, hidden = files("127.0.0.1"), files("127.0.0.2")
    hidden.routes["/jfk.mp3"] = send_file(clips["mp3"].read_bytes(), "audio/mpeg")
    first.routes["/jfk.mp3"] = redirect(hidden.url("/jfk.mp3"))

    refused(transcribe(service, url=first.url("/jfk.mp3")), 422, "127.0.0.2 is a loopback address",
            "ALLOW_PRIVATE_NETWORKS")

    assert first.seen == ["/jfk.mp3"] and hidden.seen == []
    refused(transcribe(service, url=hidden.url("/jfk.mp3")), 422, "loopback")  # asked for at once
    assert hidden.seen == []


def test_metadata_addresses_are_refused_even_with_private_networks_allowed(service, server, nothing_left):
    assert settings.ALLOW_PRIVATE_NETWORKS
    refused(transcribe(service, url="http://169.254.169.254/latest/meta-data/"), 422, "cloud metadata")
    server.routes["/creds"] = redirect("http://169.254.169.254/latest/meta-data/iam/")
    refused(transcribe(service, url=server.url("/creds")), 422, "169.254.169.254", "cloud metadata")


def test_other_schemes_too_many_redirects_and_credentials_are_refused(service, server, nothing_left):
    refused(transcribe(service, url="file:///etc/passwd"), 422, "http:// or https://")
    refused(transcribe(service, url="ftp://example.com/a.mp3"), 422, "not ftp://")
    for hop in range(7):
        server.routes[f"/loop{hop}"] = redirect(f"/loop{hop + 1}")
    refused(transcribe(service, url=server.url("/loop0")), 422, "redirected more than 5 times")
    assert len(server.seen) == 6
    refused(transcribe(service, url=f"http://user:secret@127.0.0.1:{server.port}/a.mp3"), 422, "password")


def test_a_remote_error_names_the_host_and_its_status(service, server, nothing_left):
    body = refused(transcribe(service, url=server.url("/missing.mp3")), 422, "127.0.0.1 answered 404 Not Found")
    assert body["detail"].startswith("url: ")


def test_a_content_length_over_the_cap_is_refused_before_the_body_is_read(service, server, settings, nothing_left):
    settings.MAX_UPLOAD_BYTES = 100_000

    # a reader of the body would wait for the time-out
    server.routes["/big.mp3"] = stall_after(server, sent=1000, length=100_001)
    started = time.monotonic()
    refused(transcribe(service, url=server.url("/big.mp3"), timeout=60), 413, "larger than the 97.7 KB limit")
    assert time.monotonic() - started < settings.URL_FETCH_TIMEOUT_SECONDS / 2


def test_a_body_without_length_is_cut_off_once_it_passes_the_cap(service, server, settings, nothing_left):
    settings.MAX_UPLOAD_BYTES = 300_000
    limit = 64 * 1024 * 1024

    def endless_chunks(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "audio/mpeg")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        block, sent = b"\x00" * 65536, 0
        try:
            while sent < limit:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                sent += len(block)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        server.notes["sent"] = sent

    server.routes["/stream.mp3"] = endless_chunks
    refused(transcribe(service, url=server.url("/stream.mp3"), timeout=60), 413, "limit")
    sent = until(lambda: server.notes.get("sent"), "the server to stop sending", timeout=60)
    assert sent < limit / 4, f"the download went on to {sent} bytes"


def test_a_server_that_stalls_is_given_up_after_the_timeout(service, server, settings, nothing_left):
    settings.URL_FETCH_TIMEOUT_SECONDS = 1.0

    server.routes["/stall.mp3"] = stall_after(server, sent=10_000, length=50_000)
    started = time.monotonic()
    refused(transcribe(service, url=server.url("/stall.mp3"), timeout=30), 422,
            "no answer from 127.0.0.1 within 1 s")
    assert time.monotonic() - started < 15


def test_a_download_that_drips_is_given_up_after_the_whole_download_time(service, server, settings, nothing_left):
    settings.URL_FETCH_TIMEOUT_SECONDS, settings.URL_FETCH_MAX_SECONDS = 2.0, 3.0

    def drip(h) -> None:  # a byte every 0.2 s: never silent for the time-out
        h.send_response(200)
        h.send_header("Content-Type", "audio/mpeg")
        h.send_header("Content-Length", "50000")
        h.end_headers()
        try:
            while not server.release.wait(0.2):
                h.wfile.write(b"\xff")
                h.wfile.flush()
        except OSError:
            pass

    def drip_head(h) -> None:  # the answer's head, a byte every 0.2 s
        try:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not server.release.wait(0.2):
                h.wfile.write(b"z")
                h.wfile.flush()
        except OSError:
            pass

    server.routes["/drip.mp3"] = drip
    server.routes["/drip-head.mp3"] = drip_head
    for path in ("/drip.mp3", "/drip-head.mp3"):
        started = time.monotonic()
        refused(transcribe(service, url=server.url(path), timeout=30), 422, "took longer than 3 s")
        assert time.monotonic() - started < 15


def test_a_body_shorter_than_announced_is_refused(service, server, nothing_left):
    server.routes["/short.mp3"] = send_file(b"\xff" * 1000, "audio/mpeg", length=5000)
    refused(transcribe(service, url=server.url("/short.mp3")), 422, "closed the connection after 1000 of 5000")


def test_https_certificates_are_verified_for_the_name_asked_for(service, clips, files, tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    server = files("127.0.0.1", tls=(cert, key))
    server.routes["/jfk.mp3"] = send_file(clips["mp3"].read_bytes(), "audio/mpeg")
    before = leftovers()
    refused(transcribe(service, url=server.url("/jfk.mp3")), 422, "TLS with 127.0.0.1 failed",
            "CERTIFICATE_VERIFY_FAILED")  # self-signed: not trusted

    trusted = ssl.create_default_context(cafile=str(cert))  # as if a public CA had signed it
    monkeypatch.setattr(netguard.ssl, "create_default_context", lambda: trusted)
    refused(transcribe(service, url=f"https://localhost:{server.port}/jfk.mp3"), 422,
            "TLS with localhost failed")  # trusted, but not for that name
    assert leftovers() == before
    answer = transcribe(service, url=server.url("/jfk.mp3"), wait=False)
    assert answer.status_code == 202, answer.text
    assert final_job(service, answer.json()["job_id"])["status"] == "done"


def test_html_without_an_extension_is_refused_as_an_unsupported_type(service, server, nothing_left):
    server.routes["/watch?v=abc"] = send_file(b"<!doctype html><title>A talk</title>", "text/html; charset=utf-8")
    refused(transcribe(service, url=server.url("/watch?v=abc")), 415, "text/html", "accepted: .wav")
    assert server.seen == ["/watch?v=abc"]


def test_a_named_file_that_is_not_audio_is_refused_by_the_probe(service, server, nothing_left):
    server.routes["/notes.mp3"] = send_file(b"this is a text file, not audio\n" * 50, "audio/mpeg")
    refused(transcribe(service, url=server.url("/notes.mp3")), 422, "notes.mp3")
    server.routes["/empty.mp3"] = send_file(b"", "audio/mpeg")
    refused(transcribe(service, url=server.url("/empty.mp3")), 400, "empty")


def test_a_file_and_a_url_together_are_refused(service, clips, server, nothing_left):
    server.routes["/jfk.mp3"] = send_file(clips["mp3"].read_bytes(), "audio/mpeg")
    with open(clips["mp3"], "rb") as fh:
        answer = requests.post(f"{service}/transcribe", files={"file": ("jfk.mp3", fh)},
                               data={**MODEL, "url": server.url("/jfk.mp3")}, timeout=60)
    refused(answer, 422, "send a file or a url, not both")
    assert server.seen == []


def test_neither_a_file_nor_a_url_is_refused_naming_both(service):
    for answer in (transcribe(service, url="  "), transcribe(service)):
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert "'file'" in body["detail"] and "'url'" in body["detail"]
        assert body["field"] == "file" and [e["field"] for e in body["errors"]] == ["file", "url"]


def test_the_api_documents_url_and_file_as_optional_form_fields(service):
    schema = requests.get(f"{service}/openapi.json", timeout=30).json()
    body = schema["paths"]["/transcribe"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"file", "url"} <= set(body["properties"])
    assert "file" not in body.get("required", []) and "url" not in body.get("required", [])
    assert "JobOut" in schema["components"]["schemas"] and \
        "source_url" in schema["components"]["schemas"]["JobOut"]["properties"]


# --- the upload page --------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en-US", "ru-RU"])
def test_the_upload_page_sends_an_address_and_shows_a_refusal(pages, service, clips, server, locale, tmp_path):
    server.routes["/jfk.mp3"] = send_file(clips["mp3"].read_bytes(), "audio/mpeg")
    page = pages.open("/", locale=locale, width=390)
    page.select_option("#id_model", "tiny.en")
    page.select_option("#id_language", "en")
    page.fill("#url", server.url("/jfk.mp3"))
    page.press("#id_num_speakers", "Enter")  # the form's implicit submission: not a request to fetch
    assert page.locator(".upload-row").count() == 0 and page.get_attribute("#url", "aria-invalid") is None
    page.click("#url-send")
    page.wait_for_function("document.querySelector('.upload-row')?.dataset.jobId")
    row = page.locator(".upload-row").first
    assert row.locator(".name").inner_text() == server.url("/jfk.mp3")
    assert page.input_value("#url") == ""  # accepted: the field is ready for the next address

    page.fill("#url", server.url("/gone.mp3"))
    page.press("#url", "Enter")
    page.wait_for_function("document.querySelectorAll('.upload-row')[1]?.dataset.status === 'rejected'")
    assert "answered 404 Not Found" in page.locator(".upload-row").nth(1).locator(".error").inner_text()
    assert page.input_value("#url") == server.url("/gone.mp3")  # kept, to correct it

    page.fill("#url", "not an address")
    page.click("#url-send")
    assert page.locator(".upload-row").count() == 2  # refused in the page, nothing sent
    assert page.get_attribute("#url", "aria-invalid") == "true"

    label = page.inner_text("label[for=url]")
    assert label == ("По ссылке" if locale == "ru-RU" else "From a URL")
    screenshot(page, f"url-{locale}.png", tmp_path)
    assert sideways(page) == [], "the upload page scrolls sideways on a 390-px phone"
    job_id = row.get_attribute("data-job-id")
    assert final_job(service, job_id)["source_url"] == server.url("/jfk.mp3")


def test_without_javascript_the_url_button_posts_the_page_and_opens_the_job(pages, service, clips, server):
    server.routes["/jfk.mp3"] = send_file(clips["mp3"].read_bytes(), "audio/mpeg")
    page = pages.open("/", java_script_enabled=False)
    page.select_option("#id_model", "tiny.en")
    page.select_option("#id_language", "en")
    page.fill("#url", server.url("/gone.mp3"))
    with page.expect_navigation():
        page.click("#url-send")
    assert "answered 404 Not Found" in page.inner_text("#url-errors")
    assert page.input_value("#url") == server.url("/gone.mp3")

    page.fill("#url", server.url("/jfk.mp3"))
    with page.expect_navigation():
        page.click("#url-send")
    assert "/jobs/" in page.url
    link = page.locator("#meta-source a")
    assert link.get_attribute("href") == server.url("/jfk.mp3")
    assert link.get_attribute("rel") == "noreferrer nofollow"
