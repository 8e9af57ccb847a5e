"""Models without a shell: install (bundled package, server folder, hub), remove and preload through
the API and the admin's Models page, done by a real worker on this module's own models folder.

Nothing here touches the repo's models/: the tests and their worker use a MODELS_DIR in a temporary
folder (copies of the repo's models where a test needs one installed), and their own queue file, so
that no other consumer of the test run (the session's `worker`, whose MODELS_DIR is the repo's) can
take a removal meant for this folder."""
from __future__ import annotations

import re
import shutil
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from huey.contrib.djhuey import HUEY
from huey.storage import SqliteStorage

from tests.browser import SIDEWAYS, check_accessible_basics, chromium, pages  # noqa: F401
from tests.conftest import REPO, _wait_announced, start_process, stop_process, until
from tests.test_webui import make_job
from transcription import modelstore, services
from transcription.models import Job, ModelTask, Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE = "/admin/transcription/whispermodel/"


# --- fixtures: this module's models folder, queue and worker ----------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-admin") / "models"


@pytest.fixture(scope="module")
def queue_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-admin-queue") / "huey.sqlite3"


@pytest.fixture(scope="module")
def model_worker(store, queue_file, django_db_setup, django_db_blocker):
    """A real `manage.py run_huey` on this module's models folder and queue."""
    store.mkdir(parents=True, exist_ok=True)
    proc = start_process([sys.executable, str(REPO / "manage.py"), "run_huey", "--workers", "1"],
                         "model-worker.log", MODELS_DIR=str(store), HUEY_SQLITE_PATH=str(queue_file),
                         HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    with django_db_blocker.unblock():
        _wait_announced(proc, Path(django_settings.DATA_DIR) / "model-worker.log")
    yield proc
    stop_process(proc)


@pytest.fixture
def own_store(settings, store, queue_file, monkeypatch):
    """This test process (and its live server) on the module's models folder and queue."""
    store.mkdir(parents=True, exist_ok=True)
    settings.MODELS_DIR = store
    monkeypatch.setattr(HUEY, "storage", SqliteStorage(name=HUEY.name, filename=str(queue_file)))
    return store


def have(store: Path, *names: str) -> None:
    """Exactly these models installed in the module's folder (copies of the repo's)."""
    for folder in store.glob("whisper-*"):
        if modelstore.name_of(folder) not in names:
            shutil.rmtree(folder)
    for name in names:
        if not (store / f"whisper-{name}").is_dir():
            shutil.copytree(REPO / "models" / f"whisper-{name}", store / f"whisper-{name}")
    assert sorted(modelstore.installed_names()) == sorted(names)


@pytest.fixture
def service(live_server, model_worker, own_store):
    """The live server's URL once the module's worker is announced (each test empties the tables;
    it writes its row again within a second)."""
    _wait_announced(model_worker, Path(django_settings.DATA_DIR) / "model-worker.log")
    return live_server.url


def _staff(name: str = "mira", allowed: bool = True):
    user = get_user_model().objects.create_user(name, password="pw-" + name * 3, is_staff=True)
    if allowed:
        user.user_permissions.add(Permission.objects.get(codename="manage_models"))
    return user


def _bearer(user) -> dict:
    _token, key = services.create_token(user, "models script", "write")
    return {"Authorization": f"Bearer {key}"}


def follow(base: str, headers: dict, answer: requests.Response, timeout: float = 180) -> tuple[dict, list[dict]]:
    """Poll a model task from its 202 to its end; returns the final state and every state seen."""
    assert answer.status_code == 202, answer.text
    url = answer.json()["url"]
    assert url.startswith(base) and url.endswith(f"/models/tasks/{answer.json()['task_id']}")
    seen: list[dict] = []

    def ended():
        state = requests.get(url, headers=headers, timeout=30).json()
        if not seen or seen[-1] != state:
            seen.append(state)
        return state if state["status"] in ("done", "failed") else None

    return until(ended, f"model task {url}", timeout, every=0.05), seen


def no_leftovers(store: Path) -> None:
    assert not [p.name for p in store.iterdir() if p.name.startswith(".")], "staging or removal folders left"


# --- installing --------------------------------------------------------------------------------------


def test_install_from_the_bundled_package_shows_progress_and_the_model_then_runs_a_job(service, own_store, eval_dir,
                                                                                     model_worker):
    have(own_store)  # nothing installed
    staff = _staff()
    auth = _bearer(staff)
    answer = requests.post(f"{service}/models/tiny.en/install", json={"source": "package"}, headers=auth, timeout=30)
    assert answer.json()["status"] == "queued" and answer.json()["model"] == "tiny.en"
    final, seen = follow(service, auth, answer)
    assert final["status"] == "done", final
    assert final["progress"] == 100 and final["error"] is None and final["requested_by"] == "mira"
    assert final["worker"].endswith(f":{model_worker.pid}")
    # progress moved: the task was seen running part-way, in a named step, before it was done
    partway = [s for s in seen if s["status"] == "running" and 0 < s["progress"] < 100]
    assert partway and all(s["step"] for s in partway), seen
    assert [s["progress"] for s in partway] == sorted(s["progress"] for s in partway)
    assert modelstore.installed_engines("tiny.en") == ["mlx", "ctranslate2"]
    no_leftovers(own_store)
    listed = requests.get(f"{service}/models", headers=auth, timeout=30).json()
    assert next(m for m in listed["models"] if m["name"] == "tiny.en")["installed"] is True
    # and a job with it runs on the worker
    with open(eval_dir / "jfk.flac", "rb") as fh:
        done = requests.post(f"{service}/transcribe", headers=auth, files={"file": ("jfk.flac", fh)},
                             data={"model": "tiny.en", "language": "en"}, timeout=600)
    assert done.status_code == 200, done.text
    assert "ask not what your country can do for you" in done.json()["text"].lower()
    assert Job.objects.get().model == "tiny.en"


def test_install_from_a_server_folder_converts_its_ctranslate2_layout(service, own_store, tmp_path):
    have(own_store)
    folder = tmp_path / "from-colleague"
    shutil.copytree(REPO / "models" / "whisper-tiny.en" / "ctranslate2", folder)
    auth = _bearer(_staff())
    final, _ = follow(service, auth, requests.post(f"{service}/models/tiny.en/install",
                                                   json={"source": "folder", "path": str(folder)},
                                                   headers=auth, timeout=30))
    assert final["status"] == "done", final
    assert modelstore.installed_engines("tiny.en") == ["mlx", "ctranslate2"]
    assert (own_store / "whisper-tiny.en" / "weights.safetensors").stat().st_size > 10_000_000
    assert sorted(folder.iterdir()) == sorted(folder / f for f in modelstore.CT2_FILES)  # the source is left as it was
    no_leftovers(own_store)


@pytest.mark.parametrize("content,message", [
    ("nothing", "holds neither a CTranslate2 model"),
    ("corrupt", "model.bin"),
    ("missing", "is not a directory"),
])
def test_a_bad_folder_fails_the_task_with_a_clear_error_and_installs_nothing(service, own_store, tmp_path,
                                                                          content, message):
    have(own_store)
    folder = tmp_path / "not-a-model"
    if content != "missing":
        folder.mkdir()
        (folder / "readme.txt").write_text("no model here\n")
    if content == "corrupt":  # looks like a CTranslate2 model until it is read: fails while converting
        for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(REPO / "models" / "whisper-tiny.en" / "ctranslate2" / f, folder / f)
        (folder / "model.bin").write_bytes(b"\x06\x00\x00\x00" + b"\xff" * 100_000)
    auth = _bearer(_staff())
    final, _ = follow(service, auth, requests.post(f"{service}/models/tiny.en/install",
                                                   json={"source": "folder", "path": str(folder)},
                                                   headers=auth, timeout=30))
    assert final["status"] == "failed"
    assert message in final["error"], final["error"]
    assert str(own_store) not in final["error"] and "Traceback" not in final["error"]
    assert not modelstore.installed_names()
    no_leftovers(own_store)


def test_install_from_the_hub_without_internet_fails_with_a_clear_error(service, own_store):
    have(own_store)
    auth = _bearer(_staff())
    final, _ = follow(service, auth, requests.post(f"{service}/models/small/install", json={"source": "hub"},
                                                   headers=auth, timeout=30))
    assert final["status"] == "failed"
    error = final["error"]
    assert "download from the Hugging Face hub failed" in error and "Systran/faster-whisper-small" in error
    assert "no internet access" in error and "the bundled package" in error and "--from-package" not in error
    assert not modelstore.installed_names()
    no_leftovers(own_store)


def test_a_model_with_a_task_under_way_refuses_a_second_naming_the_first(own_store, live_server):
    have(own_store, "tiny.en")
    first = ModelTask.objects.create(model_name="tiny.en", action=ModelTask.Action.PRELOAD)  # queued: nobody runs it
    auth = _bearer(_staff())
    for verb, path in (("post", "/models/tiny.en/install"), ("delete", "/models/tiny.en"),
                       ("post", "/models/tiny.en/preload")):
        second = getattr(requests, verb)(f"{live_server.url}{path}", headers=auth, timeout=30)
        assert second.status_code == 409, second.text
        assert str(first.pk) in second.json()["detail"] and "preload task is queued" in second.json()["detail"]
    assert ModelTask.objects.count() == 1


# --- removing ----------------------------------------------------------------------------------------


def test_removing_a_model_a_queued_job_needs_is_refused_naming_the_job(service, own_store, admin_client):
    have(own_store, "tiny.en", "base")
    job = make_job("meeting-monday.wav")
    Job.objects.filter(pk=job.pk).update(model="tiny.en")
    auth = _bearer(_staff())
    answer = requests.delete(f"{service}/models/tiny.en", headers=auth, timeout=30)
    assert answer.status_code == 409, answer.text
    assert str(job.pk) in answer.json()["detail"] and "meeting-monday.wav" in answer.json()["detail"]
    assert "queued" in answer.json()["detail"]
    assert not ModelTask.objects.exists()
    # the admin's confirmation page says the same, without a button to remove it
    page = admin_client.get(f"{PAGE}tiny.en/remove/").content.decode()
    assert str(job.pk) in page and 'id="removal-refused"' in page and "Yes, I’m sure" not in page
    # and its POST is refused too
    admin_client.post(f"{PAGE}tiny.en/remove/")
    assert not ModelTask.objects.exists()
    assert modelstore.installed_engines("tiny.en") == ["mlx", "ctranslate2"]
    # once the job has ended, the model can go
    services.cancel(job)
    final, _ = follow(service, auth, requests.delete(f"{service}/models/tiny.en", headers=auth, timeout=30))
    assert final["status"] == "done", final
    assert modelstore.installed_names() == ["base"]


def test_removing_an_unused_model_removes_its_folder_and_jobs_can_no_longer_choose_it(service, own_store, eval_dir,
                                                                                      model_worker):
    have(own_store, "tiny.en", "base")
    auth = _bearer(_staff())
    # loaded in the worker first: the removal frees its memory too
    follow(service, auth, requests.post(f"{service}/models/base/preload", headers=auth, timeout=30))

    def holds_base():
        row = Worker.objects.filter(pid=model_worker.pid).first()
        return row is not None and "base" in [m.name for m in row.loaded]

    until(holds_base, "base loaded in the worker", 120, every=0.05)
    final, seen = follow(service, auth, requests.delete(f"{service}/models/base", headers=auth, timeout=30))
    assert final["status"] == "done" and final["action"] == "remove", final
    assert not (own_store / "whisper-base").exists() and modelstore.installed_names() == ["tiny.en"]
    no_leftovers(own_store)
    until(lambda: Worker.objects.filter(pid=model_worker.pid).exists() and not holds_base(),
          "the worker to let go of the removed model", 120, every=0.05)
    with open(eval_dir / "jfk.flac", "rb") as fh:
        refused = requests.post(f"{service}/transcribe", headers=auth, files={"file": ("jfk.flac", fh)},
                                data={"model": "base"}, timeout=60)
    assert refused.status_code == 422 and "model 'base' is not installed" in refused.json()["detail"]
    # the last model stays: without one no job could run
    last = requests.delete(f"{service}/models/tiny.en", headers=auth, timeout=30)
    assert last.status_code == 409 and "only one installed" in last.json()["detail"]
    assert requests.delete(f"{service}/models/base", headers=auth, timeout=30).status_code == 409  # not installed


def test_a_removal_under_way_refuses_new_jobs_for_the_model(own_store, live_server, eval_dir):
    have(own_store, "tiny.en", "base")
    # running on a worker elsewhere (a queued one could be handed to some consumer of this test run)
    ModelTask.objects.create(model_name="base", action=ModelTask.Action.REMOVE, status=ModelTask.Status.RUNNING,
                             started_at=timezone.now(), worker="elsewhere:1")
    with open(eval_dir / "jfk.flac", "rb") as fh:
        refused = requests.post(f"{live_server.url}/transcribe", files={"file": ("jfk.flac", fh)},
                                data={"model": "base", "wait": "false"}, timeout=60)
    assert refused.status_code == 409 and "being removed" in refused.json()["detail"]


def test_a_task_whose_worker_died_fails_with_the_reason_and_its_staging_folder_goes(own_store, monkeypatch,
                                                                                     tmp_path):
    have(own_store, "tiny.en")
    # a queue nobody consumes: what the reaper puts in it stays there to be looked at
    monkeypatch.setattr(HUEY, "storage", SqliteStorage(name=HUEY.name, filename=str(tmp_path / "q.sqlite3")))
    long_ago = timezone.now() - timedelta(minutes=5)
    task = ModelTask.objects.create(model_name="base", action=ModelTask.Action.INSTALL, source="package",
                                    status=ModelTask.Status.RUNNING, started_at=long_ago, worker="gone:1")
    staging = own_store / ".install-base-x1y2"
    (staging / "ctranslate2").mkdir(parents=True)
    (staging / "ctranslate2" / "model.bin").write_bytes(b"half")
    other = own_store / ".install-tiny.en-a1b2"  # another model's: not this task's to clean
    other.mkdir()
    services.reap_stale_jobs()
    task.refresh_from_db()
    assert task.status == "failed" and "the worker doing it (gone:1) stopped before it finished" in task.error
    assert not staging.exists() and other.exists()
    other.rmdir()
    # a queued one whose queue entry was lost is queued again (after JOB_STALE_SECONDS)
    lost = ModelTask.objects.create(model_name="small", action=ModelTask.Action.PRELOAD, created_at=long_ago)
    services.reap_stale_jobs()
    assert str(lost.pk) in {str(entry.args[0]) for entry in HUEY.pending() if entry.args}
    lost.delete()
    # one whose worker is alive is left to it
    Worker.objects.create(name="here:2", host="here", pid=2)
    busy = ModelTask.objects.create(model_name="base", action=ModelTask.Action.INSTALL, source="package",
                                    status=ModelTask.Status.RUNNING, started_at=long_ago, worker="here:2")
    services.reap_stale_jobs()
    busy.refresh_from_db()
    assert busy.status == "running"


# --- preloading --------------------------------------------------------------------------------------


def test_preload_loads_the_model_and_the_worker_row_and_the_page_say_so(service, own_store, admin_client,
                                                                       model_worker):
    have(own_store, "tiny.en")
    auth = _bearer(_staff())
    final, _ = follow(service, auth, requests.post(f"{service}/models/tiny.en/preload", headers=auth, timeout=30))
    assert final["status"] == "done" and final["engine"] == "ctranslate2", final
    worker = until(lambda: Worker.objects.filter(pid=model_worker.pid).first(), "the worker's row", 120, every=0.05)
    loaded = until(lambda: Worker.objects.get(pk=worker.pk).loaded, "loaded_models", 120, every=0.05)
    assert [(m.name, m.engine) for m in loaded] == [("tiny.en", "ctranslate2")]
    page = admin_client.get(PAGE).content.decode()
    row = re.search(r'<tr data-model="tiny.en".*?</tr>', page, re.S).group(0)
    assert f"{worker.name} (ctranslate2)" in row and "last used" in row


# --- who may -----------------------------------------------------------------------------------------


def test_only_staff_with_the_permission_or_a_service_token_may_manage_models(own_store, live_server, settings):
    have(own_store, "tiny.en")
    base = live_server.url
    calls = [("post", "/models/tiny.en/install", {"json": {"source": "package"}}), ("delete", "/models/tiny.en", {}),
             ("post", "/models/tiny.en/preload", {}), ("get", f"/models/tasks/{uuid.uuid4()}", {})]

    def statuses(headers: dict) -> list[int]:
        return [getattr(requests, verb)(base + path, headers=headers, timeout=30, **kw).status_code
                for verb, path, kw in calls]

    # an open service: anyone may transcribe, nobody anonymous may change the models
    assert statuses({}) == [403] * 4
    clerk = get_user_model().objects.create_user("clerk", password="pw-clerkclerk")
    assert statuses(_bearer(clerk)) == [403] * 4  # a personal token of someone who is not staff
    assert statuses(_bearer(_staff("sam", allowed=False))) == [403] * 4  # staff without the permission
    refusal = requests.post(f"{base}/models/tiny.en/preload", timeout=30).json()["detail"]
    assert "manage_models" in refusal and "service token" in refusal
    assert not ModelTask.objects.exists()
    # a service token passes (an unknown task is then a 404, a relative folder a 422)
    settings.API_TOKENS = ["models-service-secret"]
    service_token = {"Authorization": "Bearer models-service-secret"}
    assert requests.get(f"{base}/models/tasks/{uuid.uuid4()}", headers=service_token, timeout=30).status_code == 404
    bad = requests.post(f"{base}/models/tiny.en/install", json={"source": "folder", "path": "models/tiny"},
                        headers=service_token, timeout=30)
    assert bad.status_code == 422 and bad.json()["field"] == "path" and "full path" in bad.json()["detail"]
    assert not ModelTask.objects.exists()


def test_unknown_models_are_404_with_the_known_names_and_bad_sources_422(own_store, live_server):
    have(own_store, "tiny.en")
    auth = _bearer(_staff())
    base = live_server.url
    unknown = requests.post(f"{base}/models/huge/install", json={"source": "package"}, headers=auth, timeout=30)
    assert unknown.status_code == 404 and "tiny.en" in unknown.json()["detail"] and "large" in unknown.json()["detail"]
    assert requests.delete(f"{base}/models/huge", headers=auth, timeout=30).status_code == 404
    source = requests.post(f"{base}/models/tiny.en/install", json={"source": "ftp"}, headers=auth, timeout=30)
    assert source.status_code == 422 and source.json()["field"] == "body.source"  # as the other JSON bodies' fields
    assert "'package', 'folder' or 'hub'" in source.json()["detail"]
    no_package = requests.post(f"{base}/models/small/install", json={"source": "package"}, headers=auth, timeout=30)
    assert no_package.status_code == 422 and "no bundled package ships 'small'" in no_package.json()["detail"]
    no_path = requests.post(f"{base}/models/small/install", json={"source": "folder"}, headers=auth, timeout=30)
    assert no_path.status_code == 422 and no_path.json()["field"] == "path"
    assert not ModelTask.objects.exists()


# --- the admin's Models page -------------------------------------------------------------------------


def test_models_page_lists_every_catalogue_entry_with_its_state(own_store, admin_client):
    have(own_store, "tiny.en")
    make_job("done.wav", status="done")
    Job.objects.update(model="tiny.en")
    index = admin_client.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in index and "Whisper models" in index
    page = admin_client.get(PAGE).content.decode()
    rows = dict(re.findall(r'<tr data-model="([^"]+)" data-installed="(true|false)"', page))
    assert list(rows) == list(modelstore.NAMES)
    assert rows == {name: "true" if name == "tiny.en" else "false" for name in modelstore.NAMES}
    tiny = re.search(r'<tr data-model="tiny.en".*?</tr>', page, re.S).group(0)
    assert "mlx, ctranslate2" in tiny and "MB" in tiny and "English only" in tiny and "39M" in tiny
    assert "Remove" in tiny and "Preload" in tiny and "Reinstall" in tiny
    assert re.search(r'<td class="last-used[^"]*">[^<—]*\d[^<]*</td>', tiny)  # the job's finish
    small = re.search(r'<tr data-model="small".*?</tr>', page, re.S).group(0)
    assert "not installed" in small and "Remove" not in small and ">Install<" in small
    assert '<option value="hub" selected>' in small  # no bundled package ships small


def test_models_page_installs_from_its_form_and_shows_the_task(service, own_store, admin_client):
    have(own_store)
    answer = admin_client.post(f"{PAGE}tiny.en/install/", {"source": "package", "path": ""})
    assert answer.status_code == 302
    task = ModelTask.objects.get()
    assert task.requested_by.username == "admin" and task.source == "package"
    page = admin_client.get(PAGE).content.decode()
    assert f'data-task="{task.pk}"' in page
    until(lambda: ModelTask.objects.get(pk=task.pk).is_final, "the install", 180, every=0.05)
    assert ModelTask.objects.get(pk=task.pk).status == "done"
    page = admin_client.get(PAGE).content.decode()
    assert 'data-busy="false"' in page and re.search(rf'data-task="{task.pk}" data-status="done"', page)
    # a refusal comes back as a message on the page
    page = admin_client.post(f"{PAGE}tiny.en/remove/", follow=True).content.decode()
    assert "only one installed" in page


def test_models_page_is_for_staff_with_the_permission_and_speaks_russian(own_store, client):
    have(own_store, "tiny.en")
    sam = _staff("sam", allowed=False)
    client.force_login(sam)
    assert client.get(PAGE).status_code == 403
    assert PAGE not in client.get("/admin/").content.decode()
    mira = _staff("mira")
    client.force_login(mira)
    page = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Модели Whisper" in page and "Установить" in page and "не установлена" in page


def test_a_person_installs_a_model_on_the_page_and_watches_it_finish(service, own_store, pages, admin_user):
    """In Chromium: the folder field appears only for a server folder, Install queues the task, the
    page follows it by itself until the model is installed, and everything fits 1,280 px."""
    have(own_store)
    page = pages.open_logged_in(admin_user, PAGE)
    row = page.locator('tr[data-model="tiny.en"]')
    assert row.locator("input[name=path]").is_hidden()  # the bundled package is chosen: no folder asked
    row.locator("select[name=source]").select_option("folder")
    assert row.locator("input[name=path]").is_visible()
    row.locator("select[name=source]").select_option("package")
    check_accessible_basics(page)
    assert page.evaluate(SIDEWAYS) == []
    with page.expect_navigation():
        row.locator("button:text-is('Install')").click()
    assert "Installing tiny.en" in page.inner_text(".messagelist")
    # no reload by hand: the page reloads itself while the task is under way
    page.wait_for_selector('tr[data-model="tiny.en"][data-installed="true"]', timeout=180_000)
    page.wait_for_selector('#content-main[data-busy="false"]', timeout=30_000)
    assert "mlx, ctranslate2" in page.inner_text('tr[data-model="tiny.en"] td.engines')
    assert page.locator('#model-tasks tr[data-status="done"]').count() == 1
    assert page.evaluate(SIDEWAYS) == []
    phone = pages.open(PAGE, width=390, storage_state=page.context.storage_state())
    assert phone.evaluate(SIDEWAYS) == []
    assert phone.locator('tr[data-model="tiny.en"] button.remove-button').is_visible()
