"""Settings for tunix-rt, read from the environment (and an optional `.env`).

The defaults describe the embedded mode (SQLite in WAL mode under `var/`, a
filesystem Celery broker) so that one command brings the app up on a laptop.
Production sets `DATABASE_URL`, `CELERY_BROKER_URL`, `SECRET_KEY` and turns
`DEBUG` off; `manage.py check --deploy` is clean with the values in the README.

Every value is validated here: an invalid one stops start-up with an
`ImproperlyConfigured` error that names the variable.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from kombu import Exchange, Queue

# Lets `ModelAdmin[Trace]` and friends (written for the type checker) run.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = Path(os.environ.get("TUNIXRT_ENV_FILE", BASE_DIR / ".env"))
if _env_file.is_file():
    env.read_env(str(_env_file), overwrite=False)


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}.")


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}.") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, got {value}.")
    return value


def _float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}.") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be between {low} and {high}, got {value}.")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
    return value


_RATE_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
                 "d": 86400, "day": 86400}


def _rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as `600/min` (periods s, min, hour, day), or `off` for no limit (None)."""
    value = os.environ.get(name, "").strip().lower() or default
    if value == "off":
        return None
    count, _, period = value.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _RATE_PERIODS:
        raise ImproperlyConfigured(
            f"{name} must be a rate such as 600/min (a positive count per s, min, hour or day) or off, "
            f"got {value!r}."
        )
    return value


def _list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = _bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off (set SECRET_KEY, or DEBUG=true for local use)."
        )
    SECRET_KEY = "insecure-local-development-key-" + "x" * 40

ALLOWED_HOSTS = _list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS", [])

VAR_DIR = Path(os.environ.get("TUNIXRT_VAR_DIR", BASE_DIR / "var"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "tunixrt",
    "traces",
    "runs",
]

MIDDLEWARE = [
    "tunixrt.metrics.RequestMetricsMiddleware",  # first: it times everything below
    # Next, so it sees every answer: JSON errors under /api/, 503 while the database is down.
    "tunixrt.middleware.ErrorResponseMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tunixrt.middleware.PageLoginRequiredMiddleware",
    "tunixrt.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tunixrt.inputguard.NulInputMiddleware",
    # Last, as django-axes asks: it turns a login refused during a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tunixrt.urls"
# Longer URLs (path and query string) answer 414, as JSON under /api/. The web server (granian)
# answers 414 itself, with no body, past 65,534 characters: the most this can usefully be.
URL_MAX_LENGTH = _int("URL_MAX_LENGTH", 8192, 1024, 65_534)
WSGI_APPLICATION = "tunixrt.wsgi.application"
ASGI_APPLICATION = "tunixrt.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite (WAL) under var/ by default; PostgreSQL through psycopg 3 and
# its connection pool when DATABASE_URL says so.
DB_POOL_MIN_SIZE = _int("DB_POOL_MIN_SIZE", 1, 0, 100)
DB_POOL_MAX_SIZE = _int("DB_POOL_MAX_SIZE", 10, 0, 500)
DB_POOL_TIMEOUT = _float("DB_POOL_TIMEOUT", 10.0, 0.5, 300.0)
if DB_POOL_MAX_SIZE and DB_POOL_MIN_SIZE > DB_POOL_MAX_SIZE:
    raise ImproperlyConfigured(
        f"DB_POOL_MIN_SIZE ({DB_POOL_MIN_SIZE}) must not exceed DB_POOL_MAX_SIZE ({DB_POOL_MAX_SIZE})."
    )

_default_db_url = f"sqlite:///{VAR_DIR / 'tunixrt.sqlite3'}"
try:
    _db: dict[str, Any] = env.db_url("DATABASE_URL", default=_default_db_url)
except (ImproperlyConfigured, KeyError, ValueError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if not _db.get("ENGINE"):
    # django-environ only warns (and returns no ENGINE) for a URL without a known scheme.
    raise ImproperlyConfigured(
        "DATABASE_URL is not a valid database URL: no known scheme (postgres://, sqlite://)."
    )

if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            # Writers queue on the lock instead of failing; WAL lets readers run
            # alongside the one writer (web and worker share the file).
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000;"
            ),
        }
    )
    if _db["NAME"] != ":memory:":
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
elif _db["ENGINE"] in {"django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"}:
    _db["ENGINE"] = "django.db.backends.postgresql"
    # The capture fast paths (traces.pgwrite) bind server-side and ask for their few
    # statements to be prepared once per pooled connection (~0.3 ms off each capture).
    # Django's own queries bind client-side and are never prepared. Turn it off
    # behind a pooler in transaction mode (PgBouncer), where prepared statements break.
    if _bool("DB_PREPARED_STATEMENTS", True):
        _db.setdefault("OPTIONS", {})["prepare_threshold"] = 1_000_000
    if DB_POOL_MAX_SIZE:
        from tunixrt.dbpool import check_connection

        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": DB_POOL_MIN_SIZE,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT,
            # Each connection is checked (an empty query) before Django gets it: after a
            # PostgreSQL restart every pooled connection is dead, and unchecked each one
            # failed a request (11 of 30 requests answered 500 after a restart).
            "check": check_connection,
        }
    else:
        # Unpooled: a connection per request, checked anyway if CONN_MAX_AGE keeps it.
        _db["CONN_HEALTH_CHECKS"] = True
else:
    raise ImproperlyConfigured(
        f"DATABASE_URL must point at PostgreSQL or SQLite, got engine {_db['ENGINE']!r}."
    )
_db.setdefault("TEST", {})
if os.environ.get("TEST_DATABASE_NAME"):
    _db["TEST"]["NAME"] = os.environ["TEST_DATABASE_NAME"]
elif _db["ENGINE"] == "django.db.backends.sqlite3" and _db["NAME"] != ":memory:":
    # Tests run on a file beside the app's, as the app runs (WAL, a connection per thread),
    # not on Django's default in-memory database: that one connection is shared with the live
    # server's request threads, and a page poll served while the test (or another poll) used it
    # failed with "bad parameter or other API misuse" or "database table is locked".
    _name = Path(_db["NAME"])
    _db["TEST"]["NAME"] = str(_name.with_name(f"test_{_name.name}"))
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes counts failed logins on every form that checks a password (the login page, the admin's,
# the browsable API's) and refuses further ones, per account and per client address, for a cool-off.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _int("LOGIN_FAILURE_LIMIT", 5, 1, 1000)
AXES_COOLOFF_TIME = dt.timedelta(seconds=_int("LOGIN_COOLOFF_SECONDS", 900, 1, 7 * 24 * 3600))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # keep failures only: a row per successful login would grow forever
AXES_LOCKOUT_CALLABLE = "tunixrt.views.login_locked_out"
AXES_CLIENT_IP_CALLABLE = "tunixrt.throttling.client_address"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing root
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# Traces: the largest single trace (its JSON) and the largest batch request.
TRACE_MAX_BYTES = _int("TRACE_MAX_BYTES", 1024 * 1024, 1024, 10 * 1024 * 1024)
TRACE_BATCH_MAX_ITEMS = 1000
TRACE_BATCH_MAX_BYTES = _int("TRACE_BATCH_MAX_BYTES", 64 * 1024 * 1024, 1024, 512 * 1024 * 1024)
TRACE_UPLOAD_MAX_BYTES = _int(
    "TRACE_UPLOAD_MAX_BYTES", 256 * 1024 * 1024, 1024, 4 * 1024 * 1024 * 1024
)
# Django refuses larger bodies before the views can answer 413 themselves, so
# its own limit sits above ours.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(TRACE_BATCH_MAX_BYTES, TRACE_MAX_BYTES) + 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# Datasets: builds selecting more traces than this run on a Celery worker.
DATASET_INLINE_MAX = _int("DATASET_INLINE_MAX", 10_000, 1, 1_000_000)

# Runs: Tunix training in one child process per run, supervised by a Celery worker.
RUNS_DIR = Path(os.environ.get("RUNS_DIR", VAR_DIR / "runs"))
MODELS_DIR = Path(os.environ.get("MODELS_DIR", VAR_DIR / "models"))
JAX_CACHE_DIR = Path(os.environ.get("JAX_CACHE_DIR", VAR_DIR / "jax-cache"))
TRAINING_PYTHON = os.environ.get("TRAINING_PYTHON", "") or None  # default: the worker's interpreter
# XLA_FLAGS for the training and evaluation children (and the worker's device probe), e.g.
# --xla_force_host_platform_device_count=2 to shard over two CPU devices; empty: the worker's own.
TRAINING_XLA_FLAGS = os.environ.get("TRAINING_XLA_FLAGS", "")
RUN_DEFAULT_TIMEOUT_SECONDS = _int("RUN_DEFAULT_TIMEOUT_SECONDS", 3600, 10, 7 * 24 * 3600)
RUN_HEARTBEAT_SECONDS = _int("RUN_HEARTBEAT_SECONDS", 5, 1, 60)
RUN_STALE_SECONDS = _int("RUN_STALE_SECONDS", 60, 5, 3600)
RUN_MAX_ATTEMPTS = _int("RUN_MAX_ATTEMPTS", 3, 1, 20)
# A pending job whose message is older than this is published again (a broker restart may have lost it).
JOB_REQUEUE_SECONDS = _int("JOB_REQUEUE_SECONDS", 600, 30, 7 * 24 * 3600)
RUN_KILL_GRACE_SECONDS = _int("RUN_KILL_GRACE_SECONDS", 15, 1, 600)
REGISTRY_DIR = Path(os.environ.get("REGISTRY_DIR", VAR_DIR / "registry"))
EVAL_MAX_PROMPT_LENGTH = _int("EVAL_MAX_PROMPT_LENGTH", 256, 16, 8192)
TUNIX_OUTPUT_MAX_BYTES = _int("TUNIX_OUTPUT_MAX_BYTES", 10_240, 1024, 1024 * 1024)

# RediAI: the predecessor's optional external health check.
REDIAI_MODE = _choice("REDIAI_MODE", "off", ("off", "mock", "real"))
REDIAI_BASE_URL = os.environ.get("REDIAI_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
if REDIAI_MODE == "real" and not REDIAI_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"REDIAI_BASE_URL must be an http(s) URL when REDIAI_MODE=real, got {REDIAI_BASE_URL!r}."
    )
REDIAI_HEALTH_PATH = os.environ.get("REDIAI_HEALTH_PATH", "/health")
if not REDIAI_HEALTH_PATH.startswith("/"):
    raise ImproperlyConfigured(
        f"REDIAI_HEALTH_PATH must start with '/', got {REDIAI_HEALTH_PATH!r}."
    )
REDIAI_HEALTH_CACHE_TTL_SECONDS = _int("REDIAI_HEALTH_CACHE_TTL_SECONDS", 30, 0, 300)
REDIAI_TIMEOUT_SECONDS = 5.0

# Celery: Redis in production and CI; a filesystem broker needing no server by default.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if not CELERY_BROKER_URL.startswith(("filesystem://", "redis://", "rediss://", "memory://")):
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL must be filesystem://, memory:// or a redis:// URL, "
        f"got {CELERY_BROKER_URL!r}."
    )
CELERY_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's, except that a worker busy with a task survives losing Redis (see tunixrt.broker).
    CELERY_BROKER_TRANSPORT = "tunixrt.broker:Transport"
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0
# Fail fast when the broker is down at launch, so the user hears about it at once:
# a publish does not retry, and opening its connection gives up after the connection
# timeout above (kombu bounds the attempts by time, not by the retry count below).
CELERY_TASK_PUBLISH_RETRY = False
# The worker and beat, on the other hand, outlive any broker outage: they retry for
# ever, backing off from 2 s to 30 s between attempts, and resume consuming (the
# retry count caps only their reconnects, never a publish from the web process).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A run trains for hours in a child the task supervises: a broker blip must not
# cancel it. Its message stays unacknowledged and the guarded claim turns away a
# redelivery, so keeping it running is safe.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CONCURRENCY = _int("CELERY_WORKER_CONCURRENCY", 2, 1, 64)
# Two queues, so that a long training run never delays search indexing or a dataset build:
# runs and evaluations go to `training` (each job model names its queue, `Job.job_queue`, and
# tunixrt.jobs.route_task routes its task there however it is sent), everything else to `default`.
DEFAULT_QUEUE = "default"
TRAINING_QUEUE = "training"
CELERY_TASK_DEFAULT_QUEUE = DEFAULT_QUEUE
# A worker started without -Q consumes both. Each queue has its own exchange and routing key: a
# queue declared without them is bound to the default queue's, and would receive its messages too.
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name), routing_key=name) for name in (DEFAULT_QUEUE, TRAINING_QUEUE))
CELERY_TASK_ROUTES = ("tunixrt.jobs.route_task",)
# A worker consuming only `training` runs this many tasks at once unless given -c: each training
# child uses every core, so one at a time by default (tunixrt.workers).
TRAINING_WORKER_CONCURRENCY = _int("TRAINING_WORKER_CONCURRENCY", 1, 1, 64)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "reap-jobs": {"task": "tunixrt.reap_jobs", "schedule": 30.0},
    # Bulk captures ask for indexing themselves; this catches what a broker outage or a lost worker left.
    "index-search": {"task": "traces.index_search", "schedule": 30.0},
}
# The cache holds the API rate-limit counters and the RediAI probe results. It must be shared by
# every web worker (each worker of a local-memory cache would count on its own): the broker's
# Redis when there is one, else files under var/ (one host, like SQLite and the filesystem broker).
# CACHE_URL overrides: redis://…, rediss://…, filecache:///absolute/path, or locmem:// (one process).
_cache_url = os.environ.get("CACHE_URL", "").strip()
if not _cache_url:
    _cache_url = (
        CELERY_BROKER_URL
        if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
        else f"filecache://{VAR_DIR / 'cache'}"
    )
if _cache_url.startswith(("redis://", "rediss://")):
    _cache: dict[str, Any] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _cache_url,
        # Short timeouts: the rate limits let requests through while Redis is away (tunixrt.throttling).
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
elif _cache_url.startswith("filecache:///"):
    _cache = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": _cache_url.removeprefix("filecache://"),
    }
elif _cache_url == "locmem://":
    _cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
else:
    raise ImproperlyConfigured(
        "CACHE_URL must be a redis:// or rediss:// URL, filecache:///absolute/path or locmem://, "
        f"got {_cache_url!r}."
    )
CACHES = {"default": {**_cache, "KEY_PREFIX": "tunixrt"}}

WORKER_HEARTBEAT_SECONDS = 10
WORKER_STALE_SECONDS = 45

# Prometheus scrapes /metrics with `Authorization: Bearer <METRICS_TOKEN>`; unset, only
# maintainers' sessions can read it. Multi-process counting: PROMETHEUS_MULTIPROC_DIR (tunixrt/metrics.py).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and not re.fullmatch(r"[!-~]{16,}", METRICS_TOKEN):
    raise ImproperlyConfigured(
        "METRICS_TOKEN must be at least 16 printable ASCII characters without spaces "
        "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
    )

# API rate limits, per minute or hour in fixed windows (tunixrt.throttling). A safety valve against
# runaway clients, never in the way of capture: one token posting single traces sustains ~400
# requests/s on one worker (bench/bench_api.py), so a user may make 1,000/s on average over a minute.
# Anonymous calls (and wrong tokens) are counted per client address; issuing a token per user.
API_THROTTLE_USER = _rate("API_THROTTLE_USER", "60000/min")
API_THROTTLE_ANON = _rate("API_THROTTLE_ANON", "120/min")
API_THROTTLE_TOKEN = _rate("API_THROTTLE_TOKEN", "10/hour")
# How long a process reuses a token's lookup (user, role) instead of asking the database again.
# A change to the token, the user or their role reaches the process that made it at once and the
# other web processes within this many seconds; 0 looks every token up on every request.
API_TOKEN_CACHE_SECONDS = _float("API_TOKEN_CACHE_SECONDS", 5.0, 0.0, 60.0)
# Reverse proxies in front of the app that append the client's address to X-Forwarded-For. Rate
# limits and login lockouts count per address: 0 uses the connection's address (the header can be forged).
NUM_PROXIES = _int("NUM_PROXIES", 0, 0, 10)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "tunixrt.authentication.TokenAuthentication",
    ],
    # Logged in, then the role each endpoint declares (tunixrt.roles).
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "tunixrt.roles.RolePermission",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["tunixrt.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": API_THROTTLE_USER, "anon": API_THROTTLE_ANON, "token": API_THROTTLE_TOKEN},
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_PARSER_CLASSES": ["tunixrt.api.OrjsonParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "tunixrt.api.OrjsonRenderer",
        "tunixrt.api.BrowsableAPIPolicyRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["tunixrt.api.FilterBackend"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "tunixrt.api.ContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tunixrt.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "tunix-rt API",
    "DESCRIPTION": "Capture, curate and train on reasoning traces.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Like the rest of the API: anonymous callers get 403 (the Swagger page sends them to the login).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tunixrt.openapi.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "runs.choices.RunStatus",
        "DatasetStatusEnum": "traces.choices.DatasetStatus",
    },
}

# Security headers. The CSP allows only this origin: htmx and every script are
# served from static/, so the app works offline and nothing inline runs.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, 0, 63072000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)
if _bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SILENCED_SYSTEM_CHECKS = ["security.W021"] if not SECURE_HSTS_PRELOAD else []

LOG_LEVEL = _choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error"))
LOG_FORMAT = _choice("LOG_FORMAT", "json" if not DEBUG else "text", ("json", "text"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "tunixrt.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL.upper()},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
