"""Two people on one service, over live HTTP with a real worker: each sees and touches only their
own jobs (another's is a 404, never a 403), tokens expire and are revoked with a reason, a read
token only reads, share links open one job and nothing else, and quotas refuse with a 429."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from transcription import services
from transcription.models import Account, ApiToken, Job, ShareLink

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _user(name: str, **extra):
    return get_user_model().objects.create_user(name, password="pw-" + name * 3, **extra)


def _token(user, scope="write", **fields) -> str:
    token, key = services.create_token(user, f"{user.username}'s script", scope)
    if fields:
        ApiToken.objects.filter(pk=token.pk).update(**fields)
    return key


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _done_job(base: str, key: str, clip, **fields) -> dict:
    with open(clip, "rb") as fh:
        answer = requests.post(f"{base}/transcribe", headers=_auth(key), files={"file": (clip.name, fh)},
                               data={"model": "tiny.en", "language": "en", **fields}, timeout=600)
    assert answer.status_code == 200, answer.text
    job = Job.objects.order_by("-created_at").first()
    return {"id": str(job.id), "result": answer.json()}


def _login(base: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=30)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    done = session.post(f"{base}/login/", data={"username": username, "password": "pw-" + username * 3,
                                                      "csrfmiddlewaretoken": csrf, "next": "/"}, timeout=30)
    assert done.status_code == 200 and "sessionid" in session.cookies
    return session


@pytest.fixture
def team(service, clips, settings):
    """Anna and Boris, each with a write token and a finished job; a closed service (API_TOKENS)."""
    settings.API_TOKENS = ["service-wide-secret"]
    anna, boris = _user("anna"), _user("boris")
    keys = {"anna": _token(anna), "boris": _token(boris)}
    jobs = {"anna": _done_job(service, keys["anna"], clips["wav"]),
            "boris": _done_job(service, keys["boris"], clips["mp3"])}
    return {"base": service, "users": {"anna": anna, "boris": boris}, "keys": keys, "jobs": jobs}


def test_every_endpoint_page_and_download_of_anothers_job_is_a_404(team):
    base, keys, jobs = team["base"], team["keys"], team["jobs"]
    anna_job = jobs["anna"]["id"]
    batch = Job.objects.get(pk=anna_job).batch_id
    reads = [f"/job/{anna_job}", f"/job/{anna_job}/result?format=srt", f"/job/{anna_job}/events",
             f"/job/{anna_job}/share", f"/jobs/{anna_job}/", f"/jobs/{anna_job}/audio",
             f"/jobs/{anna_job}/audio?download=1"]
    writes = [("post", f"/job/{anna_job}/cancel", {}), ("put", f"/job/{anna_job}/speakers", {"json": {"names": {}}}),
              ("post", f"/job/{anna_job}/share", {"json": {}}), ("delete", f"/job/{anna_job}/share/1", {})]
    # Anna reaches her own job everywhere (the audio too, with her token: no login page)
    for path in reads:
        answer = requests.get(base + path, headers=_auth(keys["anna"]), timeout=30, stream=True)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        answer.close()
    # Boris, by token, gets 404 for every one of them, and learns nothing from the message
    for path in reads:
        answer = requests.get(base + path, headers=_auth(keys["boris"]), timeout=30)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "anna" not in answer.text.lower()
    for method, path, extra in writes:
        answer = getattr(requests, method)(base + path, headers=_auth(keys["boris"]), timeout=30, **extra)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text[:200])
    assert Job.objects.get(pk=anna_job).status == Job.Status.DONE and not ShareLink.objects.exists()
    # ... and by the pages, logged in
    boris = _login(base, "boris")
    for path in (f"/jobs/{anna_job}/", f"/jobs/{anna_job}/audio"):
        assert boris.get(base + path, timeout=30).status_code == 404, path
    csrf = boris.cookies.get("csrftoken") or re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', boris.get(f"{base}/", timeout=30).text).group(1)
    for path in (f"/jobs/{anna_job}/cancel", f"/jobs/{anna_job}/retry", f"/jobs/{anna_job}/share"):
        answer = boris.post(base + path, data={"csrfmiddlewaretoken": csrf}, headers={"Referer": base + "/"},
                            timeout=30, allow_redirects=False)
        assert answer.status_code == 404, (path, answer.status_code)
    assert Job.objects.filter(upload__original_name="jfk.wav").count() == 1  # no retry was made
    # the history lists each one's own jobs only
    history = boris.get(f"{base}/jobs/", timeout=30).text
    assert jobs["boris"]["id"] in history and anna_job not in history
    anna = _login(base, "anna")
    history = anna.get(f"{base}/jobs/", timeout=30).text
    assert anna_job in history and jobs["boris"]["id"] not in history
    # a batch, too
    if batch:
        assert requests.get(f"{base}/batch/{batch}", headers=_auth(keys["boris"]), timeout=30).status_code == 404


def test_jobs_record_their_owner_and_a_batch_belongs_to_its_sender(team, clips):
    base, keys = team["base"], team["keys"]
    job = Job.objects.get(pk=team["jobs"]["anna"]["id"])
    assert job.owner == team["users"]["anna"] and job.upload.owner == team["users"]["anna"]
    shown = requests.get(f"{base}/job/{job.id}", headers=_auth(keys["anna"]), timeout=30).json()
    assert shown["owner"] == "anna"
    with open(clips["wav"], "rb") as a, open(clips["mp3"], "rb") as b:
        answer = requests.post(f"{base}/transcribe/batch", headers=_auth(keys["boris"]), timeout=120,
                               files=[("files", ("one.wav", a)), ("files", ("two.mp3", b))],
                               data={"model": "tiny.en", "language": "en"})
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batch_id"]
    assert requests.get(f"{base}/batch/{batch_id}", headers=_auth(keys["boris"]), timeout=30).status_code == 200
    assert requests.get(f"{base}/batch/{batch_id}", headers=_auth(keys["anna"]), timeout=30).status_code == 404
    for ref in answer.json()["jobs"]:
        assert requests.get(ref["url"], headers=_auth(keys["anna"]), timeout=30).status_code == 404
        assert Job.objects.get(pk=ref["job_id"]).owner == team["users"]["boris"]


def test_staff_with_the_permission_and_service_tokens_see_every_job(team):
    base, jobs = team["base"], team["jobs"]
    lead = _user("lead", is_staff=True)
    lead_session = _login(base, "lead")
    assert lead_session.get(f"{base}/jobs/{jobs['anna']['id']}/", timeout=30).status_code == 404  # staff alone: no
    admin_list = lead_session.get(f"{base}/admin/transcription/job/", timeout=30)
    assert jobs["anna"]["id"][:8] not in admin_list.text
    lead.user_permissions.add(Permission.objects.get(codename="view_all_jobs"),
                              Permission.objects.get(codename="view_job"))
    lead_session = _login(base, "lead")
    for who in ("anna", "boris"):
        assert lead_session.get(f"{base}/jobs/{jobs[who]['id']}/", timeout=30).status_code == 200
    admin_list = lead_session.get(f"{base}/admin/transcription/job/", timeout=30).text
    assert jobs["anna"]["id"][:8] in admin_list and jobs["boris"]["id"][:8] in admin_list
    anna_id = team["users"]["anna"].pk
    filtered = lead_session.get(f"{base}/admin/transcription/job/?owner__id__exact={anna_id}", timeout=30).text
    assert jobs["anna"]["id"][:8] in filtered and jobs["boris"]["id"][:8] not in filtered
    # a shared service token (API_TOKENS) acts as the service: it sees both
    for who in ("anna", "boris"):
        assert requests.get(f"{base}/job/{jobs[who]['id']}", headers=_auth("service-wide-secret"),
                            timeout=30).status_code == 200


def test_expired_revoked_unknown_and_read_only_tokens_are_refused_saying_why(team, clips):
    base, anna = team["base"], team["users"]["anna"]
    job = team["jobs"]["anna"]["id"]
    expired = _token(anna, expires_at=timezone.now() - timedelta(days=1))
    revoked = _token(anna, revoked_at=timezone.now())
    reader = _token(anna, scope="read")

    def get(key):
        return requests.get(f"{base}/job/{job}", headers=_auth(key), timeout=30)

    answer = get(expired)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    answer = get(revoked)
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    unknown = get("stt_" + "x" * 43).json()["detail"]
    malformed = get("not-a-token").json()["detail"]
    assert unknown == malformed and "expired" not in unknown and "revoked" not in unknown  # says nothing of existence
    # a wrong secret behind a real token's prefix is just as unknown
    assert get(team["keys"]["anna"][:10] + "y" * 40).json()["detail"] == unknown
    # the pages' audio answers the same way to a bad token
    audio = requests.get(f"{base}/jobs/{job}/audio", headers=_auth(revoked), timeout=30)
    assert audio.status_code == 401 and "revoked" in audio.text
    # read scope: reads, but cannot send or cancel
    assert get(reader).status_code == 200
    with open(clips["wav"], "rb") as fh:
        refused = requests.post(f"{base}/transcribe", headers=_auth(reader), files={"file": ("a.wav", fh)}, timeout=60)
    assert refused.status_code == 403 and "read" in refused.json()["detail"]
    assert requests.post(f"{base}/job/{job}/cancel", headers=_auth(reader), timeout=30).status_code == 403
    # last use is recorded
    used = ApiToken.objects.get(prefix=reader[:10])
    assert used.last_used_at is not None
    # no credentials at all on a closed service
    assert requests.get(f"{base}/job/{job}", timeout=30).status_code == 401


def test_a_share_link_opens_one_job_read_only_and_nothing_else(team):
    base, keys, jobs = team["base"], team["keys"], team["jobs"]
    job = jobs["anna"]["id"]
    made = requests.post(f"{base}/job/{job}/share", headers=_auth(keys["anna"]), json={"expires_in_days": 1},
                         timeout=30)
    assert made.status_code == 201, made.text
    link = made.json()["url"]
    key = link.rstrip("/").rsplit("/", 1)[1]
    stranger = requests.Session()  # no account, no token
    page = stranger.get(link, timeout=30)
    assert page.status_code == 200 and jobs["anna"]["result"]["text"].strip()[:20] in page.text
    assert "retry-form" not in page.text and "rename-form" not in page.text and "share-form" not in page.text
    assert f"/jobs/{job}" not in page.text
    audio = stranger.get(f"{base}/s/{key}/audio", headers={"Range": "bytes=0-99"}, timeout=30)
    assert audio.status_code == 206 and len(audio.content) == 100
    for fmt in ("txt", "srt", "vtt", "json"):
        download = stranger.get(f"{base}/s/{key}/result?format={fmt}", timeout=30)
        assert download.status_code == 200 and download.content, fmt
    # nothing else: not the job by id, not its API, not the other job, not the history
    for path in (f"/jobs/{job}/", f"/job/{job}", f"/jobs/{jobs['boris']['id']}/", "/jobs/"):
        answer = stranger.get(base + path, timeout=30, allow_redirects=False)
        assert answer.status_code in (302, 401), (path, answer.status_code)  # to the login / a token asked
    assert stranger.get(f"{base}/s/{key}x/", timeout=30).status_code == 404
    # the owner sees it and revokes it; the link then opens nothing
    listed = requests.get(f"{base}/job/{job}/share", headers=_auth(keys["anna"]), timeout=30).json()
    # one visit of the page; its audio and downloads, and the refused paths, do not count again
    assert [row["state"] for row in listed] == ["active"] and listed[0]["views"] == 1 and listed[0]["url"] is None
    assert requests.delete(f"{base}/job/{job}/share/{listed[0]['id']}", headers=_auth(keys["anna"]),
                           timeout=30).status_code == 200
    assert stranger.get(link, timeout=30).status_code == 404
    assert stranger.get(f"{base}/s/{key}/audio", timeout=30).status_code == 404
    # an expired link opens nothing either
    again = requests.post(f"{base}/job/{job}/share", headers=_auth(keys["anna"]), json={}, timeout=30).json()
    ShareLink.objects.filter(pk=again["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert stranger.get(again["url"], timeout=30).status_code == 404


def test_quotas_refuse_with_a_429_and_keep_nothing(team, clips):
    base, boris = team["base"], team["users"]["boris"]
    account = Account.of(boris)
    used = account.audio_seconds_today()
    assert used > 0  # boris's job counts
    account.audio_hours_per_day = used / 3600 + 1 / 3600  # one more second: the next 11-s clip is over
    account.save()
    uploads = Path(django_settings.MEDIA_ROOT) / "uploads"
    uploads_before = sorted(p.name for p in uploads.iterdir())
    with open(clips["wav"], "rb") as fh:
        refused = requests.post(f"{base}/transcribe", headers=_auth(team["keys"]["boris"]), timeout=60,
                                files={"file": ("more.wav", fh)}, data={"model": "tiny.en", "language": "en"})
    detail = refused.json()["detail"]
    assert refused.status_code == 429 and "of audio in 24 hours" in detail and "room for it in" in detail, detail
    # room comes when boris's job leaves the 24-hour window: a day from its creation, give or take the test
    assert 23 * 3600 < int(refused.headers["Retry-After"]) <= 24 * 3600
    assert not Job.objects.filter(upload__original_name="more.wav").exists()
    assert sorted(p.name for p in uploads.iterdir()) == uploads_before  # the refused file is not kept
    # queued jobs: with no room at all, refused before the file is stored
    account.audio_hours_per_day, account.max_queued_jobs = None, 0
    account.save()
    with open(clips["wav"], "rb") as fh:
        refused = requests.post(f"{base}/transcribe", headers=_auth(team["keys"]["boris"]), timeout=60,
                                files={"file": ("queued.wav", fh)}, data={"model": "tiny.en", "language": "en"})
    assert refused.status_code == 429 and "waiting or running" in refused.json()["detail"]
    # anna has no quota: she still may
    with open(clips["wav"], "rb") as fh:
        fine = requests.post(f"{base}/transcribe", headers=_auth(team["keys"]["anna"]), timeout=600,
                             files={"file": ("fine.wav", fh)}, data={"model": "tiny.en", "language": "en",
                                                                     "wait": "false"})
    assert fine.status_code == 202, fine.text


def test_open_service_keeps_anonymous_use_and_hides_users_jobs_from_it(service, clips, settings):
    settings.API_TOKENS = []
    anna = _user("anna")
    key = _token(anna)
    own = _done_job(service, key, clips["wav"])
    with open(clips["wav"], "rb") as fh:  # anonymous, as the spec's open service has it
        anonymous = requests.post(f"{service}/transcribe", files={"file": ("anon.wav", fh)},
                                  data={"model": "tiny.en", "language": "en"}, timeout=600)
    assert anonymous.status_code == 200
    anon_job = Job.objects.get(upload__original_name="anon.wav")
    assert anon_job.owner is None
    assert requests.get(f"{service}/job/{anon_job.id}", timeout=30).status_code == 200
    assert requests.get(f"{service}/job/{own['id']}", timeout=30).status_code == 404  # anna's is hers
    assert requests.get(f"{service}/job/{own['id']}", headers=_auth(key), timeout=30).status_code == 200
    # an OpenAI client always sends some key: an unknown one on an open service is simply anonymous
    assert requests.get(f"{service}/job/{anon_job.id}", headers=_auth("sk-anything"), timeout=30).status_code == 200


def test_create_token_command_prints_a_working_token_once(service, settings, capsys):
    settings.API_TOKENS = ["service-wide-secret"]
    _user("carol")
    call_command("create_token", "carol", "--name", "laptop", "--expires", "2999-01-01", "--scope", "read")
    key = capsys.readouterr().out.strip()
    assert key.startswith("stt_")
    token = ApiToken.objects.get(user__username="carol")
    assert token.key_digest != key and key not in token.prefix + token.key_digest  # stored hashed
    assert token.scope == "read" and token.expires_at.year == 2999
    assert requests.get(f"{service}/job/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=_auth(key),
                        timeout=30).status_code == 404  # let in (no such job), not 401
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user"):
        call_command("create_token", "nobody", "--name", "x")


def test_account_page_makes_a_token_shown_once_and_revokes_it(service, settings):
    settings.API_TOKENS = ["service-wide-secret"]
    _user("dora")
    session = _login(service, "dora")
    page = session.get(f"{service}/account/tokens", timeout=30)
    assert page.status_code == 200
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    made = session.post(f"{service}/account/tokens", data={"csrfmiddlewaretoken": csrf, "action": "create",
                                                            "name": "phone", "scope": "write", "days": "30"},
                        headers={"Referer": f"{service}/account/tokens"}, timeout=30)
    key = re.search(r'id="new-token-key"[^>]*>(stt_[^<]+)<', made.text).group(1)
    assert requests.get(f"{service}/job/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=_auth(key),
                        timeout=30).status_code == 404
    assert key not in session.get(f"{service}/account/tokens", timeout=30).text  # shown once
    token = ApiToken.objects.get(user__username="dora")
    session.post(f"{service}/account/tokens", data={"csrfmiddlewaretoken": csrf, "action": "revoke",
                                                     "token": token.pk},
                 headers={"Referer": f"{service}/account/tokens"}, timeout=30)
    answer = requests.get(f"{service}/job/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=_auth(key), timeout=30)
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    assert ApiToken.objects.get(pk=token.pk).state == "revoked"


def test_staff_without_the_permission_cannot_reach_others_through_tokens_or_accounts(team):
    """A staff user with every other permission of the app: their own tokens and account only."""
    from transcription.models import Account as AccountModel

    base, anna = team["base"], team["users"]["anna"]
    clerk = _user("clerk", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(content_type__app_label="transcription")
                               .exclude(codename="view_all_jobs"))
    session = _login(base, "clerk")
    tokens = session.get(f"{base}/admin/transcription/apitoken/", timeout=30).text
    assert "anna" not in tokens and ApiToken.objects.filter(user=anna).exists()
    form = session.get(f"{base}/admin/transcription/apitoken/add/", timeout=30).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    assert f'<option value="{anna.pk}"' not in form  # only themselves to choose
    made = session.post(f"{base}/admin/transcription/apitoken/add/", headers={"Referer": base + "/admin/"},
                        data={"csrfmiddlewaretoken": csrf, "user": anna.pk, "name": "steal", "scope": "write"},
                        timeout=30)
    assert made.status_code == 200 and not ApiToken.objects.filter(name="steal").exists()
    AccountModel.of(anna)
    accounts = session.get(f"{base}/admin/transcription/account/", timeout=30).text
    assert "anna" not in accounts
    anna_account = AccountModel.objects.get(user=anna)
    page = session.get(f"{base}/admin/transcription/account/{anna_account.pk}/change/", timeout=30)
    assert page.status_code in (302, 404) or anna_account.webhook_secret not in page.text
    # a superuser sees the account, but the secret only by its first characters
    _user("root", is_staff=True, is_superuser=True)
    root = _login(base, "root")
    page = root.get(f"{base}/admin/transcription/account/{anna_account.pk}/change/", timeout=30).text
    assert anna_account.webhook_secret[:4] in page and anna_account.webhook_secret not in page


def test_a_default_callback_that_became_refused_never_stops_a_job_and_none_turns_it_off(team, clips, settings):
    base, anna, key = team["base"], team["users"]["anna"], team["keys"]["anna"]
    account = Account.of(anna)
    account.callback_url = "http://127.0.0.1:9/hook"  # saved while private addresses were allowed
    account.save()
    settings.ALLOW_PRIVATE_NETWORKS = False
    for callback in ({}, {"callback_url": "none"}):
        with open(clips["wav"], "rb") as fh:
            answer = requests.post(f"{base}/transcribe", headers=_auth(key), files={"file": ("a.wav", fh)},
                                   data={"model": "tiny.en", "language": "en", "wait": "false", **callback},
                                   timeout=120)
        assert answer.status_code == 202, answer.text
        job = Job.objects.get(pk=answer.json()["job_id"])
        assert job.callback_url == ("" if callback else account.callback_url)
        services.cancel(job)
    # one the request names itself is checked at once
    with open(clips["wav"], "rb") as fh:
        answer = requests.post(f"{base}/transcribe", headers=_auth(key), files={"file": ("a.wav", fh)},
                               data={"callback_url": "http://127.0.0.1:9/hook", "wait": "false"}, timeout=120)
    assert answer.status_code == 422 and answer.json()["field"] == "callback_url"


def test_the_rate_limit_says_which_limit_and_when_to_come_back(team, clips, settings):
    from django.core.cache import cache

    cache.clear()
    settings.JOB_RATE_LIMIT = "1/min"
    answers = []
    for _ in range(2):
        with open(clips["tone"], "rb") as fh:
            answers.append(requests.post(f"{team['base']}/transcribe", headers=_auth(team["keys"]["boris"]),
                                         files={"file": ("t.wav", fh)}, data={"wait": "false"}, timeout=60))
    assert answers[0].status_code == 202
    assert answers[1].status_code == 429 and "JOB_RATE_LIMIT" in answers[1].json()["detail"]
    assert 1 <= int(answers[1].headers["Retry-After"]) <= 60
    for answer in answers[:1]:
        services.cancel(Job.objects.get(pk=answer.json()["job_id"]))


def test_logging_out_by_address_offers_the_button(team):
    session = _login(team["base"], "anna")
    page = session.get(f"{team['base']}/logout/", timeout=30)
    assert page.status_code == 200 and 'id="logout-form"' in page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    session.post(f"{team['base']}/logout/", data={"csrfmiddlewaretoken": csrf},
                 headers={"Referer": team["base"] + "/"}, timeout=30)
    assert session.get(f"{team['base']}/jobs/", timeout=30, allow_redirects=False).status_code == 302
