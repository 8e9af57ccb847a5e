"""Schemathesis fuzzes the live OpenAPI schema over real HTTP (the live server, its real Huey
consumer): valid and invalid data for every operation. No request may get a 5xx, and every error
must be a 4xx with a JSON body in the API's shape ({"detail": ...}, or OpenAI's {"error": {...}}
under /v1).

Bounded to run in well under two minutes and not to flake: a fixed number of examples per
operation, derandomised (the same cases every run: a failure reproduces, a pass stays a pass), no
example database, no deadline. Schemathesis sends its own bytes as the upload, which the service
refuses (415) before reading any option, so a second test sends each generated form with a real
clip in its `file` field, to reach option validation; the jobs it creates are cancelled at once.
"""
from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from tests.test_hostile import Leftovers, settle

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EXAMPLES = 40
FUZZ = hsettings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def check_error_is_json_4xx(method: str, path: str, status: int, content_type: str, text: str) -> None:
    where = f"{method} {path} -> {status}"
    assert status < 500, f"server error: {where}: {text[:500]}"
    if status < 400:
        return
    assert content_type.startswith("application/json"), f"{where}: not JSON ({content_type}): {text[:300]}"
    body = json.loads(text)
    if path.startswith("/v1/"):
        assert isinstance(body.get("error"), dict) and body["error"].get("message"), f"{where}: {body}"
    else:
        assert body.get("detail"), f"{where}: {body}"
    assert "Traceback" not in text, where


@pytest.fixture
def api_schema(service, live_worker):  # with a live worker, GET /health is "ok" (200), whatever ran before
    leftovers = Leftovers()
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    schema.config.generation.update(modes=["positive", "negative"], max_examples=EXAMPLES,
                                    deterministic=True, database="none")
    # Methods the schema does not list are test_unlisted_methods_answer_405_in_json's business.
    schema.config.phases.coverage.unexpected_methods = set()
    yield schema
    settle()
    leftovers.check()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ
def test_no_request_gets_a_server_error_and_every_error_is_json(case):
    response = case.call(timeout=120)
    headers = {k.lower(): v for k, v in response.headers.items()}
    content_type = headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    check_error_is_json_4xx(case.method.upper(), case.formatted_path, response.status_code, content_type,
                            response.content.decode("utf-8", "replace"))


def _form_value(value) -> list[str]:
    """A generated value as multipart text, the way a client would spell it."""
    if isinstance(value, list):
        return [v for item in value for v in _form_value(item)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if value is None:
        return ["null"]
    if isinstance(value, (dict,)):
        return [json.dumps(value)]
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    return [str(value)]


@schema.include(path_regex=r"^/transcribe(/batch)?$", method="POST").parametrize()
@FUZZ
def test_generated_options_with_a_real_clip_never_get_a_server_error(case, clips, service):
    """Every generated form, with the tone clip as the upload and wait=false."""
    body = case.body if isinstance(case.body, dict) else {}
    fields = [(name, text) for name, value in body.items() if name not in ("file", "files", "wait")
              for text in _form_value(value)]
    fields.append(("wait", "false"))
    tone = clips["tone"].read_bytes()
    if case.path == "/transcribe":
        files = [("file", ("tone.wav", tone))]
    else:
        files = [("files", ("one.wav", tone)), ("files", ("two.wav", tone))]
    base = service
    resp = requests.post(f"{base}{case.path}", files=files, data=fields, timeout=120)
    if resp.status_code == 202:  # accepted: nothing to transcribe here, cancel it
        body = resp.json()
        for job in body.get("jobs", [body]):
            requests.post(f"{base}/job/{job['job_id']}/cancel", timeout=10)
    check_error_is_json_4xx("POST", case.path, resp.status_code, resp.headers.get("Content-Type", ""),
                            resp.text)
    assert resp.status_code in (202, 400, 404, 413, 415, 422), resp.text[:300]


def test_unlisted_methods_answer_405_in_json(service):
    """An API path asked with a method it does not serve: 405, JSON, with an Allow header.
    django-ninja answers 'Method not allowed' as text/html."""
    schema = requests.get(f"{service}/openapi.json", timeout=10).json()
    problems = []
    for path, operations in schema["paths"].items():
        url = service + path.replace("{job_id}", "00000000-0000-0000-0000-000000000000").replace(
            "{batch_id}", "00000000-0000-0000-0000-000000000000")
        for method in ("PUT", "DELETE", "PATCH"):
            if method.lower() in operations:
                continue
            resp = requests.request(method, url, timeout=10)
            if resp.status_code != 405 or not resp.headers.get("Content-Type", "").startswith("application/json"):
                problems.append(f"{method} {path}: {resp.status_code} {resp.headers.get('Content-Type')}"
                                f" {resp.text[:60]!r}")
    assert not problems, "\n".join(problems)
