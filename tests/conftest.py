"""Shared fixtures: real clips made with FFmpeg, the shared eval recordings, a real Huey consumer."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = Path(os.getenv("SHARED_DIR", REPO.parent / "shared")) / "eval"


# What tests/settings.py puts in os.environ to point this run's own processes at its own files.
# A test that starts a separate deployment must not inherit them: with HUEY_SQLITE_PATH inherited,
# the session's worker polled that deployment's queue too, took its tasks and dropped them
# ("event=missing"), so the deployment's job stayed queued.
_RUN_POINTERS = ("HUEY_SQLITE_PATH", "LIVE_HUEY_SQLITE_PATH", "HUEY_IMMEDIATE", "HUEY_NAME", "HUEY_REDIS_URL",
                 "REDIS_URL", "DATABASE_URL", "MEDIA_ROOT", "TEST_DATABASE_PATH")


@pytest.fixture(autouse=True)
def _default_language_after_each_test():
    """A request through the test client in Russian leaves Russian active in the test's thread (the
    locale middleware activates it; nothing in-process deactivates it); a later test of a command
    would then read Russian. Each test starts as a process does: in LANGUAGE_CODE."""
    yield
    from django.utils import translation

    translation.deactivate()


def deployment_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for a separate deployment (web, worker, CLI) whose every file is in data_dir."""
    env = {k: v for k, v in os.environ.items() if k not in _RUN_POINTERS}
    return {**env, "DJANGO_SETTINGS_MODULE": "project.settings", "DATA_DIR": str(data_dir), **overrides}


def ffmpeg(*args: str) -> None:
    from transcription.audio import ffmpeg_binary

    subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
                   check=True)


def normalise_words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalise_words(reference), normalise_words(hypothesis))


def manifest() -> dict[str, dict]:
    lines = (EVAL_DIR / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return {row.split("\t")[0]: dict(zip(header, row.split("\t"))) for row in lines[1:] if row}


JFK_REFERENCE = ("And so, my fellow Americans, ask not what your country can do for you, "
                 "ask what you can do for your country.")


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    if not (EVAL_DIR / "jfk.flac").is_file():
        pytest.fail(f"shared eval clips not found in {EVAL_DIR} (set SHARED_DIR)")
    return EVAL_DIR


@pytest.fixture(scope="session")
def clips(tmp_path_factory, eval_dir) -> dict[str, Path]:
    """The JFK clip in every container the service promises, plus broken and silent files."""
    d = tmp_path_factory.mktemp("clips")
    jfk = eval_dir / "jfk.flac"
    out = {"flac": jfk}
    ffmpeg("-i", str(jfk), "-ar", "16000", "-ac", "1", str(d / "jfk.wav")); out["wav"] = d / "jfk.wav"
    ffmpeg("-i", str(jfk), "-c:a", "libmp3lame", "-b:a", "64k", str(d / "jfk.mp3")); out["mp3"] = d / "jfk.mp3"
    ffmpeg("-i", str(jfk), "-c:a", "libopus", "-b:a", "32k", str(d / "jfk.ogg")); out["ogg"] = d / "jfk.ogg"
    ffmpeg("-i", str(jfk), "-c:a", "aac", "-b:a", "64k", str(d / "jfk.m4a")); out["m4a"] = d / "jfk.m4a"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=11", "-i", str(jfk), "-shortest",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(d / "jfk.mp4"))
    out["mp4"] = d / "jfk.mp4"
    # 3 s of digital silence before the speech and 2 s after.
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-i", str(out["wav"]),
           "-filter_complex", "[0]atrim=0:3[a];[0]atrim=0:2[b];[a][1][b]concat=n=3:v=0:a=1",
           str(d / "jfk_padded.wav"))
    out["padded"] = d / "jfk_padded.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", str(d / "tone.wav"))
    out["tone"] = d / "tone.wav"
    (d / "empty.wav").write_bytes(b"")
    out["empty"] = d / "empty.wav"
    (d / "notes.mp3").write_text("this is a text file, not audio\n" * 50)
    out["text_as_mp3"] = d / "notes.mp3"
    corrupt = bytearray(out["mp3"].read_bytes()[:64]) + os.urandom(20_000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(corrupt))
    out["corrupt"] = d / "corrupt.wav"
    (d / "speech.txt").write_text("hello")
    out["txt"] = d / "speech.txt"
    return out


def shared_env(**overrides: str) -> dict[str, str]:
    """Environment for this run's own processes (worker, live worker, ASGI server): the test
    database, queue files and media."""
    db_name = settings.DATABASES["default"]["NAME"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{db_name}",
        "HUEY_SQLITE_PATH": settings.HUEY["filename"],
        "DATA_DIR": str(settings.DATA_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MODELS_DIR": str(settings.MODELS_DIR),
        "HUEY_MAX_DELAY": "0.3",
        # Transactional tests empty every table after them, the worker's row too: it announces
        # itself again within a second (the `service` fixture waits for that).
        "JOB_HEARTBEAT_SECONDS": "1",
        "LIVE_HUEY_SQLITE_PATH": settings.LIVE_QUEUE.get("filename", ""),
        **overrides,
    }


def _consumer(django_db_blocker, command: list[str], log_name: str):
    """A manage.py consumer for the session, once it has announced itself; stopped after."""
    proc = start_process([sys.executable, str(REPO / "manage.py"), *command], log_name)
    with django_db_blocker.unblock():
        _wait_announced(proc, Path(settings.DATA_DIR) / log_name)
    yield proc
    stop_process(proc)


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker):
    """A real `manage.py run_huey` process sharing the test database and queue files."""
    yield from _consumer(django_db_blocker, ["run_huey", "--workers", "1"], "worker.log")


def _wait_announced(proc: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    """Until the consumer has written its Worker row (it does so before taking any task)."""
    from transcription.models import Worker

    deadline = time.monotonic() + timeout
    while not Worker.objects.filter(pid=proc.pid).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"huey consumer did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture
def service(live_server, worker):
    """Base URL of a live HTTP server whose jobs a real consumer runs."""
    _wait_announced(worker, Path(settings.DATA_DIR) / "worker.log")
    return live_server.url


def post_file(base_url: str, path: Path, timeout: float = 600, name: str | None = None,
              **fields) -> requests.Response:
    data = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in fields.items()}
    with open(path, "rb") as fh:
        return requests.post(f"{base_url}/transcribe", files={"file": (name or path.name, fh)},
                             data=data, timeout=timeout)


def until(condition, what: str, timeout: float = 180.0, every: float = 0.1):
    """Wait for `condition()` to be truthy (polled), and return it; fail naming `what`, with the
    worker's last log lines."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            log = Path(settings.DATA_DIR) / "worker.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(every)
    return value


def start_process(args: list[str], log_name: str, **env: str) -> subprocess.Popen:
    """One of this run's own processes (its output in DATA_DIR/<log_name>)."""
    log = open(Path(settings.DATA_DIR) / log_name, "ab")
    return subprocess.Popen(args, cwd=REPO, env=shared_env(**env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_process(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def live_worker(django_db_setup, django_db_blocker):
    """A real `manage.py run_live` process: the live sessions' consumer."""
    yield from _consumer(django_db_blocker, ["run_live", "--sessions", "3"], "live.log")


@pytest.fixture(scope="session")
def asgi(django_db_setup):
    """uvicorn serving project.asgi with the default limits, for the session."""
    yield from asgi_server()


@pytest.fixture
def live(asgi, live_worker, worker):
    """The ASGI server's URL once both workers have announced themselves (each transactional test
    empties the tables: they do so again within a second)."""
    _wait_announced(live_worker, Path(settings.DATA_DIR) / "live.log")
    _wait_announced(worker, Path(settings.DATA_DIR) / "worker.log")
    return asgi


def asgi_server(**env: str):
    """uvicorn serving project.asgi (what `make run` and the README's deployment run) on a free
    port, sharing the test database; yields its base URL."""
    from tests.processes import free_port, wait_up
    from transcription.management.commands.serve import web_command

    port = str(free_port())
    proc = start_process(web_command("127.0.0.1", port), f"asgi-{port}.log", **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/health", healthy=False)
        yield base
    finally:
        stop_process(proc)
