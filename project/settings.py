"""Settings, read from the environment with safe local defaults (see README: Configuration).

Importing this module only reads: the data folders are made when the app starts
(transcription/apps.py), the queue file's folder by the queue (transcription/queue.py), and the
generated secret key on first use."""
import math
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import lazy

BASE_DIR = Path(__file__).resolve().parent.parent


TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool = False) -> bool:
    """true/false (also 1/0, yes/no, on/off); anything else stops the start with a message."""
    value = os.getenv(name, str(default)).strip().lower()
    if value not in TRUE | FALSE:
        raise ImproperlyConfigured(f"{name}={value!r}: use true or false")
    return value in TRUE


def _number(kind: type, name: str, default: float, low: float | None, high: float | None):
    raw = os.getenv(name, "").strip()
    if not raw:
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(part for part in (f"at least {low:g}" if low is not None else "",
                                                f"at most {high:g}" if high is not None else "") if part)
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name}={raw!r}: use {what}" + (f", {bounds}" if bounds else ""))
    return value


def envint(name: str, default: int, low: int | None = None, high: int | None = None) -> int:
    """A whole number from the environment within bounds; a bad value stops the start, named."""
    return _number(int, name, default, low, high)


def envfloat(name: str, default: float, low: float | None = None, high: float | None = None) -> float:
    """A finite number from the environment within bounds; a bad value stops the start, named."""
    return _number(float, name, default, low, high)


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.getenv("DATA_DIR", BASE_DIR / "var"))


def _generated_secret_key() -> str:
    """The key generated once into DATA_DIR/secret_key (never in the repo), made on first use.
    Processes starting together (web, worker) agree: the first link wins, the others read it."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".secret_key.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(50))
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


SECRET_KEY = os.getenv("DJANGO_SECRET_KEY") or lazy(_generated_secret_key, str)()
DEBUG = envbool("DJANGO_DEBUG")
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # django-ninja's own copy of Swagger UI for /docs (without it the page loads it from a CDN).
    "ninja",
    # transcription before djhuey: its run_huey (announces the worker, stops it cleanly) wins.
    "transcription",
    "huey.contrib.djhuey",
    "webui",
]

MIDDLEWARE = [
    "transcription.metrics.RequestTimer",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "transcription.middleware.JsonMethodNotAllowed",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default; DATABASE_URL (e.g. postgres://user@host/db) when the service outgrows it.
DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write the same file: wait for locks instead of failing,
    # and let readers run beside the writer (WAL).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if os.getenv("TEST_DATABASE_PATH"):
        # Tests whose worker runs in another process need the test database in a file.
        DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_PATH"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# After the admin's login (also the pages' login when API_TOKENS is set), when `next` is missing or
# points off the site: the front page, which every user who can log in may use (not a 404).
LOGIN_REDIRECT_URL = "webui:index"
LOGIN_URL = "webui:login"  # every user's (the admin keeps its own, for staff)
LOGOUT_REDIRECT_URL = "webui:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
# Corrections to Django's date formats per language (ru: "29 ноября", not "29 Ноябрь").
FORMAT_MODULE_PATH = ["webui.formats"]
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Serve app static files straight from their folders too, so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", DATA_DIR / "media"))
MEDIA_URL = "media/"

# Uploads: streamed to a temp file in DATA_DIR (so the final move is a rename), hashed and
# capped while streaming.
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 5 * 1024**3, low=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
FILE_UPLOAD_HANDLERS = ["transcription.uploads.CappedHashingUploadHandler"]
FILE_UPLOAD_PERMISSIONS = 0o640
# Form fields other than files, in all: room for /v1's known speakers' samples (data URLs; 4 of
# 10 s of 16-kHz WAV are 1.7 MB), held in memory while a request is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# Whisper
MODELS_DIR = Path(os.getenv("MODELS_DIR", BASE_DIR / "models"))
WHISPER_ENGINE = os.getenv("WHISPER_ENGINE", "auto").strip().lower()
if WHISPER_ENGINE not in ("auto", "mlx", "ctranslate2"):
    raise ImproperlyConfigured(f"WHISPER_ENGINE={WHISPER_ENGINE!r}: use auto, mlx or ctranslate2")
WHISPER_DEFAULT_MODEL = os.getenv("WHISPER_DEFAULT_MODEL", "")


def _language(name: str, default: str) -> str:
    """A Whisper language code (or 'auto') from the environment; a bad value stops the start."""
    from transcription.languages import normalise_language  # plain tables: no app, no model

    value = os.getenv(name, default)
    try:
        return normalise_language(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r}: {exc}") from None


# The language the REST API, the upload form and the CLI assume when none is given (the
# specification's default is Russian); 'auto' detects it. /v1 keeps OpenAI's rule: detect.
WHISPER_DEFAULT_LANGUAGE = _language("WHISPER_DEFAULT_LANGUAGE", "ru")
WHISPER_CPU_THREADS = envint("WHISPER_CPU_THREADS", 0, low=0, high=1024)
# A worker keeps models loaded between jobs; one unused this many seconds is released (0: never),
# and past this many loaded models the least recently used idle one goes (0: no limit).
WHISPER_MODEL_TTL = envfloat("WHISPER_MODEL_TTL", 1800, low=0)
WHISPER_MAX_LOADED_MODELS = envint("WHISPER_MAX_LOADED_MODELS", 2, low=0)
FFMPEG_BINARY = os.getenv("FFMPEG_BINARY", "")
# Longest audio accepted (seconds; 0: no limit). Decoded, a second is 64 KB of temporary samples,
# and a megabyte of FLAC silence decodes to hours: the upload size cap alone does not bound that.
MAX_AUDIO_SECONDS = envfloat("MAX_AUDIO_SECONDS", 12 * 3600, low=0)
# Long audio is transcribed in pieces of at most this many seconds, cut in quiet gaps. The
# spectrogram of a piece is held whole (about 110 MB an hour, 220 MB with mlx; engines/melspec.py
# computes it a stretch at a time), so an hour bounds that while a file under an hour is decoded
# in one call, exactly as the engine library alone would.
WHISPER_WINDOW_SECONDS = envfloat("WHISPER_WINDOW_SECONDS", 3600, low=30)
# Windows decoded together when a request leaves batch_size unset (0: 8 on CPU, 16 on a GPU).
WHISPER_BATCH_SIZE = envint("WHISPER_BATCH_SIZE", 0, low=0, high=64)
# The mlx engine decodes sequentially unless this is set: its batched decoding gives the same text
# on MLX's CPU backend (tests/test_batched.py), but its speed on a Mac's GPU is not measured yet.
WHISPER_MLX_BATCHED = envbool("WHISPER_MLX_BATCHED", False)
# Who spoke when (diarize=true): auto uses pyannote's pipeline when it is installed and can run,
# else the bundled offline Resemblyzer encoder (README: "Speakers").
DIARIZATION_BACKEND = os.getenv("DIARIZATION_BACKEND", "auto").strip().lower()
if DIARIZATION_BACKEND not in ("auto", "resemblyzer", "pyannote"):
    raise ImproperlyConfigured(f"DIARIZATION_BACKEND must be auto, resemblyzer or pyannote, not {DIARIZATION_BACKEND!r}")
# Crash recovery: a running job's worker beats every JOB_HEARTBEAT_SECONDS; a job silent for
# JOB_STALE_SECONDS is requeued, up to JOB_MAX_ATTEMPTS starts, then failed with the reason.
JOB_HEARTBEAT_SECONDS = envfloat("JOB_HEARTBEAT_SECONDS", 10, low=0.05)
JOB_STALE_SECONDS = envfloat("JOB_STALE_SECONDS", 60, low=1)
JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", 3, low=1)
# Worker threads (and the inference threads they start) run at this niceness, so that a busy
# worker on the web server's machine does not slow its pages and status requests. 0: unchanged.
WORKER_NICE = envint("WORKER_NICE", 10, low=0, high=19)
# Shared service tokens (comma-separated): each acts as the service itself, seeing every job (for
# trusted automation); people get personal tokens (the admin, /account, manage.py create_token).
API_TOKENS = envlist("API_TOKENS", "")
# Whether every page and API call needs a user (a login, or a personal or service token); always so
# when API_TOKENS is set. Otherwise the service is open, as the spec intends locally: anonymous
# callers see only anonymous jobs; logged-in users and personal tokens see their own.
AUTH_REQUIRED = envbool("AUTH_REQUIRED", False)
# Quotas per user (an account in the admin may set its own): audio hours in any 24 hours, and jobs
# waiting or running at once. Unset: no limit. Anonymous use of an open service has none.
QUOTA_AUDIO_HOURS_PER_DAY = envfloat("QUOTA_AUDIO_HOURS_PER_DAY", 0, low=0) or None
QUOTA_QUEUED_JOBS = envint("QUOTA_QUEUED_JOBS", 0, low=0) or None
# Callbacks (callback_url) and files by URL (url=) go only to public addresses: loopback, private,
# link-local and other reserved ranges are refused unless this is true; cloud metadata always is.
ALLOW_PRIVATE_NETWORKS = envbool("ALLOW_PRIVATE_NETWORKS")
# Files by URL: a server silent this long while connecting or sending is given up on (seconds) ...
URL_FETCH_TIMEOUT_SECONDS = envfloat("URL_FETCH_TIMEOUT_SECONDS", 30, low=0.5, high=600)
# ... and so is a whole download (redirects, headers and body) that takes longer than this.
URL_FETCH_MAX_SECONDS = envfloat("URL_FETCH_MAX_SECONDS", 3600, low=1, high=86400)
# A callback that fails is tried again after WEBHOOK_RETRY_SECONDS, then twice as long each time,
# WEBHOOK_MAX_ATTEMPTS tries in all; each waits WEBHOOK_TIMEOUT_SECONDS for the answer.
WEBHOOK_MAX_ATTEMPTS = envint("WEBHOOK_MAX_ATTEMPTS", 6, low=1, high=20)
WEBHOOK_RETRY_SECONDS = envfloat("WEBHOOK_RETRY_SECONDS", 30, low=0.1)
WEBHOOK_TIMEOUT_SECONDS = envfloat("WEBHOOK_TIMEOUT_SECONDS", 10, low=0.5, high=120)
# Signs the callbacks of jobs and batches without an owner (an open service, a service token);
# unset, those are sent unsigned. An owner's jobs are signed with the owner's own secret.
WEBHOOK_SECRET = os.getenv("WEBHOOK_SECRET", "")
# A share link lasts this many days unless its owner chooses otherwise.
SHARE_LINK_DAYS = envint("SHARE_LINK_DAYS", 7, low=1, high=3650)
# Per-client limit on creating jobs (POST /transcribe, /transcribe/batch, /v1/audio/*): e.g. "30/min".
JOB_RATE_LIMIT = os.getenv("JOB_RATE_LIMIT", "") or None
# Prometheus metrics (GET /metrics). Each process of a machine writes its counters in METRICS_DIR
# (`serve` empties it when it starts); scraping is open to these networks (comma-separated
# addresses or CIDRs; empty: none) and to `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_DIR = Path(os.getenv("METRICS_DIR", DATA_DIR / "metrics"))
METRICS_TOKEN = os.getenv("METRICS_TOKEN", "")
METRICS_ALLOWED_ADDRESSES = envlist("METRICS_ALLOWED_ADDRESSES", "127.0.0.0/8,::1")


def _networks(name: str, values: list[str]) -> list:
    import ipaddress

    try:
        return [ipaddress.ip_network(v, strict=False) for v in values]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc} (give addresses or CIDRs, comma-separated)") from None


METRICS_ALLOWED_NETWORKS = _networks("METRICS_ALLOWED_ADDRESSES", METRICS_ALLOWED_ADDRESSES)

# How long POST /detect-language waits for a worker's answer (503 after).
DETECT_WAIT_SECONDS = envfloat("DETECT_WAIT_SECONDS", 300, low=1)
# How long POST /transcribe waits for its job before answering 202 with the job's URL.
TRANSCRIBE_WAIT_SECONDS = envfloat("TRANSCRIBE_WAIT_SECONDS", 3600, low=0)
# How often a server-sent event stream (a job's events, /v1 stream=true) looks at its job.
SSE_POLL_SECONDS = envfloat("SSE_POLL_SECONDS", 0.25, low=0.02)

# Queue: SqliteHuey in DATA_DIR by default, RedisHuey when a Redis URL is given.
_redis_url = os.getenv("HUEY_REDIS_URL") or os.getenv("REDIS_URL")
HUEY = {
    "name": os.getenv("HUEY_NAME", "transcription"),
    "immediate": envbool("HUEY_IMMEDIATE"),
    "consumer": {
        "workers": envint("HUEY_WORKERS", 1, low=1, high=64),
        "worker_type": "thread",
        "check_worker_health": True,
        # SqliteHuey polls: keep the idle delay short so a job starts within a second.
        "initial_delay": 0.1,
        "backoff": 1.15,
        "max_delay": envfloat("HUEY_MAX_DELAY", 1.0, low=0.01),
        # Ctrl-C/SIGINT waits this long for running jobs, then they are handed back to the queue.
        "shutdown_timeout": envfloat("HUEY_SHUTDOWN_TIMEOUT", 30, low=0),
    },
}
if _redis_url:
    HUEY.update({"huey_class": "huey.RedisHuey", "url": _redis_url})
else:
    HUEY.update(
        {
            "huey_class": "transcription.queue.SqliteHuey",
            "filename": os.getenv("HUEY_SQLITE_PATH", str(DATA_DIR / "huey.sqlite3")),
        }
    )

# Live sessions (/live, /v1/live): decoded by `manage.py run_live` consumers of their own queue (the
# jobs' queue name + "-live"), one session per consumer thread, so a long file never delays one.
LIVE_MAX_SESSIONS = envint("LIVE_MAX_SESSIONS", 2, low=0, high=64)  # at once, in all
LIVE_MAX_SESSIONS_PER_CLIENT = envint("LIVE_MAX_SESSIONS_PER_CLIENT", 1, low=1, high=64)
LIVE_IDLE_SECONDS = envfloat("LIVE_IDLE_SECONDS", 20, low=1)  # no audio this long: the session ends
LIVE_MAX_SECONDS = envfloat("LIVE_MAX_SECONDS", 3 * 3600, low=1)  # of audio in one session
LIVE_MAX_FRAME_BYTES = envint("LIVE_MAX_FRAME_BYTES", 64 * 1024, low=1024)  # one message: 2 s of audio
# A live worker that stops beating this long is taken for dead: the web process ends its session.
LIVE_WORKER_SILENT_SECONDS = envfloat("LIVE_WORKER_SILENT_SECONDS", 30, low=1)
LIVE_MIN_STEP_SECONDS = envfloat("LIVE_MIN_STEP_SECONDS", 0.5, low=0.1)  # new audio before decoding again
LIVE_QUEUE = {**HUEY, "name": HUEY["name"] + "-live"}
if not _redis_url:
    LIVE_QUEUE["filename"] = os.getenv("LIVE_HUEY_SQLITE_PATH",
                                       str(Path(HUEY["filename"]).with_suffix(".live.sqlite3")))

# The cache holds rate-limit counters: per process by default, shared through Redis when configured.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if _redis_url:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis_url}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    # Its own handler and no propagation, so run_huey adds none and lines are not printed twice.
    "loggers": {
        "huey": {"handlers": ["console"], "level": os.getenv("HUEY_LOG_LEVEL", "INFO"), "propagate": False},
        # a line per decoding ("Processing audio…", "VAD filter removed…"): twice a second in a live session
        "faster_whisper": {"level": os.getenv("FASTER_WHISPER_LOG_LEVEL", "WARNING")},
    },
}
