"""Callcenter settings: one flat list of settings, read from the environment, in one file.

Past 500 lines on purpose: each part below is one setting (or a few read together), in
sections by topic, kept in one file as house style asks. Every variable is listed with a
comment in `.env.example`. With no variables at all the project runs on its embedded
default: a SQLite file, a file-based cache, a filesystem Celery broker and the sandbox
carrier, all under DATA_DIR.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import zoneinfo
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import csp.constants as csp
import dj_database_url
import phonenumbers
from django.utils.translation import gettext_lazy as _

from callcenter import exposure, media
from callcenter.environment import Environment

BASE_DIR = Path(__file__).resolve().parent.parent
env = Environment()

# --- App --------------------------------------------------------------------------------
APP_NAME = env.str("APP_NAME", "Callcenter")
APP_ENV = env.choice("APP_ENV", "development", ("development", "test", "staging", "production"))
DEVELOPMENT = APP_ENV in ("development", "test")
DEBUG = env.bool("DEBUG", env.bool("APP_DEBUG", APP_ENV == "development"))
HOST = env.str("HOST", "127.0.0.1")
PORT = env.int("PORT", 8000, minimum=1, maximum=65535)
# The public base URL: every URL handed to Twilio is built from it, and webhook
# signatures are checked against it (a TLS-terminating proxy hides the real scheme).
APP_URL = env.url("APP_URL", f"http://localhost:{PORT}")
# Where the embedded default keeps its SQLite file, broker queue, cache and media.
DATA_DIR = Path(env.str("DATA_DIR", str(BASE_DIR / "var"))).resolve()

# --- Security ---------------------------------------------------------------------------
DEVELOPMENT_SECRET_KEY = "django-insecure-development-key-never-use-in-production"  # noqa: S105
# Every SECRET_KEY the project has ever published (its default, .env.example, the tests;
# git log -p -S SECRET_KEY finds them): anyone may know them, so staging and production
# refuse them. Published keys too short or too plain for the checks below ("short-but-mine",
# "a" * 60, "change-me-in-production") are refused by those; tests generate their keys.
PUBLISHED_SECRET_KEYS = frozenset(
    {
        DEVELOPMENT_SECRET_KEY,  # this file's default
        "change-me-to-a-long-random-secret",  # .env.example
        # tests/callcenter/test_settings.py's "strong" key until tests generated theirs.
        "x7Hq-2mZp9Lr4Vt8Nc1Bw6Ks3Jd5Gf0Ya!Ue#Io$Pa%Sd^Fg&Hj*Kl(Zx)Cv_Bn+M",
        "a" * 50 + "bcdef",  # tests/calls/test_telephony.py
        "z" * 50 + "vwxyz",  # tests/calls/test_telephony.py
    }
)
SECRET_KEY = env.str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
# The audit trail's key (audit/keys.py): it chains the entries (an edit made in the database
# shows) and hashes the numbers of people whose data was erased (so they are never called
# again). Set it once and keep it: changing it breaks both. Unset: derived from SECRET_KEY,
# which then may never change either.
AUDIT_KEY = (
    env.str("AUDIT_KEY") or hashlib.sha256(b"callcenter.audit\n" + SECRET_KEY.encode()).hexdigest()
)
_GENERATE_KEY = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(64))'"
# Whom the server answers beyond this machine: an address it binds to (HOST; gunicorn's
# configuration sets it to its own bind), or a name it is reached by (APP_URL's host, a
# tunnel's say, or ALLOWED_HOSTS_EXTRA). Anyone reaching a server that signs with a key
# the project published could forge its tokens and the sandbox carrier's callbacks.
EXPOSED_BY = exposure.reached_beyond_loopback(
    host=HOST,
    app_url_host=urlsplit(APP_URL).hostname or "localhost",
    extra_hosts=[part.strip() for part in env.str("ALLOWED_HOSTS_EXTRA").split(",")],
)
if not DEVELOPMENT or EXPOSED_BY:
    _where = (
        f"APP_ENV={APP_ENV}"
        if not DEVELOPMENT
        else f"the server is reached beyond loopback ({EXPOSED_BY})"
    )
    if env.raw("SECRET_KEY") is None:
        env.error(
            "SECRET_KEY", f"must be set to a secret of your own when {_where}; {_GENERATE_KEY}"
        )
    elif exposure.is_published_key(SECRET_KEY, PUBLISHED_SECRET_KEYS):
        env.error(
            "SECRET_KEY",
            f"must be set to a secret of your own when {_where}: this one was "
            f"published with the project (its default, .env.example or its tests); {_GENERATE_KEY}",
            None,
        )
    elif len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        env.error(
            "SECRET_KEY",
            f"must be at least 50 characters with 5 distinct ones; {_GENERATE_KEY}",
            "<hidden>",
        )
if not DEVELOPMENT and DEBUG:
    env.error("DEBUG", f"must be false when APP_ENV={APP_ENV}", "true")

ALGORITHM = env.choice("ALGORITHM", "HS256", ("HS256", "HS384", "HS512"))
ACCESS_TOKEN_EXPIRE_MINUTES = env.int("ACCESS_TOKEN_EXPIRE_MINUTES", 30, minimum=1)
# How long a refresh token mints access tokens before its user must log in again. It is
# not rotated: a stolen one serves this long at most, less if a logout ends it first.
REFRESH_TOKEN_EXPIRE_DAYS = env.int("REFRESH_TOKEN_EXPIRE_DAYS", 1, minimum=1)

_app_host = urlsplit(APP_URL).hostname or "localhost"
# Names besides APP_URL's host that may reach the site: the container's own for its
# health check, say. Host names or IP addresses; never "*".
_host_name = re.compile(
    r"\.?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\]",
    re.IGNORECASE,
)


def _host_header_form(name: str) -> str:
    """An IPv6 address as a Host header carries it, in brackets: a Kubernetes pod's own
    address (deploy/kubernetes/base/web.yaml) comes bare."""
    try:
        return f"[{ipaddress.IPv6Address(name)}]"
    except ValueError:
        return name


ALLOWED_HOSTS_EXTRA = [
    _host_header_form(name)
    for part in env.str("ALLOWED_HOSTS_EXTRA").split(",")
    if (name := part.strip())
]
if _bad_hosts := [name for name in ALLOWED_HOSTS_EXTRA if not _host_name.fullmatch(name)]:
    env.error(
        "ALLOWED_HOSTS_EXTRA",
        "must be comma-separated host names or IP addresses such as web,10.0.0.5",
        ",".join(_bad_hosts),
    )
ALLOWED_HOSTS = [
    _app_host,
    *(["localhost", "127.0.0.1", "[::1]"] if DEVELOPMENT else []),
    *ALLOWED_HOSTS_EXTRA,
]
CSRF_TRUSTED_ORIGINS = [APP_URL]

# Browsers get the same headers everywhere; HTTPS is enforced outside development.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# What the admin's pages may load and run (django-csp): scripts only from this site or
# carrying the page's nonce (the admin's refresh and progress scripts), so a script
# injected into a page through stored data does not run. Inline styles stay allowed: they
# run no code, and the admin's templates and Django's widgets use them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.UNSAFE_INLINE],
        "img-src": [csp.SELF, "data:"],
        # The voices' samples play from ElevenLabs' storage (Voice.preview_url).
        "media-src": [csp.SELF, "https:"],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    }
}
if not DEVELOPMENT:
    if APP_ENV == "production" and urlsplit(APP_URL).scheme != "https":
        env.error("APP_URL", "must be an https:// URL when APP_ENV=production", APP_URL)
    # The TLS-terminating proxy says which scheme the client used; it must overwrite
    # any X-Forwarded-Proto the client sent.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Off only behind a proxy that already redirects http to https.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", True)
    # Container and load-balancer health checks speak plain HTTP to the web port, and so
    # does Prometheus scraping each web instance there (through APP_URL it would read
    # whichever host the load balancer picks); /metrics still wants METRICS_TOKEN.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is a promise to browsers that is slow to take back: an operator opts in.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", False)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # `check --deploy` warns about what the settings above leave off on purpose.
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
        *([] if SECURE_SSL_REDIRECT else ["security.W008"]),
    ]

# --- Logins and the client's address ---------------------------------------------------
# How many proxies in front of the web port append to X-Forwarded-For: the client's address
# is the Nth from the right (0: the connection's own address; the header is ignored).
# Staging and production stand behind one TLS-terminating proxy (docs/deploy.md).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", 0 if DEVELOPMENT else 1, minimum=0, maximum=10)
# Failed logins (admin page and API token) a username, or an address, may make before it
# is locked out for LOGIN_LOCKOUT_MINUTES; each further limit's worth of failures doubles
# the lock, up to LOGIN_LOCKOUT_MAX_MINUTES (callcenter/logins.py).
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=525600)
LOGIN_LOCKOUT_MAX_MINUTES = env.int("LOGIN_LOCKOUT_MAX_MINUTES", 1440, minimum=1, maximum=525600)
if LOGIN_LOCKOUT_MAX_MINUTES < LOGIN_LOCKOUT_MINUTES:
    env.error(
        "LOGIN_LOCKOUT_MAX_MINUTES",
        f"must be at least LOGIN_LOCKOUT_MINUTES ({LOGIN_LOCKOUT_MINUTES})",
        str(LOGIN_LOCKOUT_MAX_MINUTES),
    )
    LOGIN_LOCKOUT_MAX_MINUTES = LOGIN_LOCKOUT_MINUTES
# django-axes keeps the counts in the database, which every web process shares (and a
# Redis restart does not wipe); callcenter/logins.py holds the project's parts.
AXES_HANDLER = "callcenter.logins.LoginAttemptHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
# Either one locks: a username guessed from many addresses, an address trying many names.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = "callcenter.logins.lockout_period"
# Each record expires on its own (its lock's end), so one client's short lock never
# clears another's longer one.
AXES_USE_ATTEMPT_EXPIRATION = True
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "callcenter.logins.client_address"
AXES_LOCKOUT_CALLABLE = "callcenter.logins.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Staff unlock with `manage.py axes_reset_username` / `axes_reset_ip` (docs/security.md);
# successful logins are not logged to the database.
AXES_ENABLE_ADMIN = False
AXES_DISABLE_ACCESS_LOG = True
# Not its start-up banner on every command, nor a client's user agent in each log line.
AXES_VERBOSE = False
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Django core ------------------------------------------------------------------------
INSTALLED_APPS = [
    # Django's admin, whose home page is the operations overview (callcenter/adminsite.py).
    "callcenter.adminsite.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Schedules that operators retime in the admin ("Periodic tasks"); see CELERY_BEAT_SCHEDULE.
    "django_celery_beat",
    # Failed logins and lock-outs (see "Logins" above).
    "axes",
    "audit",
    "voices",
    "templates",
    "campaigns",
    "calls",
    "privacy",
]

MIDDLEWARE = [
    # First, so every later middleware's logs (and the redirects they answer) carry the id.
    "callcenter.logging.RequestContextMiddleware",
    # A NUL in a URL is a 400 on every route, the webhooks' included (PostgreSQL cannot
    # store one).
    "callcenter.middleware.NulCharacterMiddleware",
    # Twilio's webhooks go straight to their views from here (see calls/middleware.py).
    "calls.middleware.TwilioWebhookMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "callcenter.staticfiles.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: turns a locked-out admin login into its refusal page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "callcenter.urls"
WSGI_APPLICATION = "callcenter.wsgi.application"
ASGI_APPLICATION = "callcenter.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "callcenter" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "callcenter.context_processors.deployment",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
# DATABASE_URL is any PostgreSQL URL (a Supabase connection string works as it is);
# without it the embedded default is a SQLite file in DATA_DIR.
_database_url = env.raw("DATABASE_URL")
# Under ASGI each web request runs in a thread of its own, so persistent connections
# (CONN_MAX_AGE) would pile up, one per thread, until PostgreSQL refuses more ("remaining
# connection slots are reserved"). Connections are therefore closed at the end of each
# request, and the web process (callcenter/asgi.py turns this on) makes that cheap by
# borrowing them from a pool of at most DATABASE_POOL_SIZE; a request that finds none free
# waits up to DATABASE_POOL_TIMEOUT seconds. Worker and beat keep one connection per thread.
DATABASE_POOL = env.bool("DATABASE_POOL", False)
DATABASE_POOL_SIZE = env.int("DATABASE_POOL_SIZE", 10, minimum=1, maximum=1000)
DATABASE_POOL_TIMEOUT = env.float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1, maximum=600)
if _database_url is None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES: dict[str, Mapping[str, Any]] = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.sqlite3",
            "NAME": DATA_DIR / "callcenter.sqlite3",
            "OPTIONS": {
                # Web, worker and beat share the file: wait for locks instead of failing,
                # and take the write lock at BEGIN so transactions never deadlock upgrading.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
else:
    try:
        _database = dj_database_url.parse(_database_url)
    except ValueError as exc:
        env.error("DATABASE_URL", f"is not a database URL we understand ({exc})", "<hidden>")
        _database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "invalid.sqlite3"),
        }
    if _database["ENGINE"] == "django.db.backends.postgresql":
        _database["ENGINE"] = "django_prometheus.db.backends.postgresql"
        _database.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
        if DATABASE_POOL:
            _database["OPTIONS"]["pool"] = {
                "min_size": 1,
                "max_size": DATABASE_POOL_SIZE,
                "timeout": DATABASE_POOL_TIMEOUT,
            }
    elif _database["ENGINE"] != "django.db.backends.sqlite3":
        env.error("DATABASE_URL", "must be a postgres:// or postgresql:// URL", "<hidden>")
    DATABASES = {"default": _database}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ------------------------------------------------------------
REDIS_URL = env.url("REDIS_URL", "", schemes=("redis", "rediss"))
REDIS_PASSWORD = env.str("REDIS_PASSWORD", "")
REDIS_CACHE_TTL = env.int("REDIS_CACHE_TTL", 300, minimum=0)


def _redis_url(url: str, *, password: str, db_offset: int) -> str:
    """The Redis URL with REDIS_PASSWORD filled in and its database number shifted."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if password and "@" not in netloc:
        netloc = f":{quote(password, safe='')}@{netloc}"
    path = parts.path.strip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit((parts.scheme, netloc, f"/{db + db_offset}", parts.query, ""))


if REDIS_URL:
    # Celery uses the database of REDIS_URL and the cache the next one, so clearing
    # the cache can never drop queued tasks.
    CELERY_BROKER_URL = _redis_url(REDIS_URL, password=REDIS_PASSWORD, db_offset=0)
    CELERY_RESULT_BACKEND = CELERY_BROKER_URL
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": _redis_url(REDIS_URL, password=REDIS_PASSWORD, db_offset=1),
            "TIMEOUT": REDIS_CACHE_TTL,
            "KEY_PREFIX": "callcenter",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    # No server needed: kombu's filesystem transport passes messages through a folder,
    # and the file-based cache is shared by web, worker and beat on one machine. The
    # transport is ours (callcenter/broker.py): kombu's own lets a worker read a message
    # another process is still writing, and the worker stops.
    _broker_dir = DATA_DIR / "broker"
    # kombu's filesystem transport and Celery's file backend expect their folders to exist.
    for _folder in (_broker_dir / "queue", _broker_dir / "control", DATA_DIR / "results"):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT = "callcenter.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'results'}"
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.filebased.FileBasedCache",
            "LOCATION": DATA_DIR / "cache",
            "TIMEOUT": REDIS_CACHE_TTL,
            "KEY_PREFIX": "callcenter",
        }
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Where a worker serves its own Prometheus metrics (what its tasks count); 0: nowhere.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
# What Prometheus must send to read /metrics and the worker's port, as
# "Authorization: Bearer <token>": the counters tell a stranger how busy the product is and
# how it fails. Required wherever the server is reached beyond loopback or APP_ENV is
# staging or production: without it those answer 404 there. Generate it as SECRET_KEY.
METRICS_TOKEN = env.str("METRICS_TOKEN")
METRICS_OPEN = DEVELOPMENT and not EXPOSED_BY and not METRICS_TOKEN
if METRICS_TOKEN and (len(METRICS_TOKEN) < 32 or len(set(METRICS_TOKEN)) < 5):
    env.error("METRICS_TOKEN", "must be at least 32 characters with 5 distinct ones", "<hidden>")
# Beat reads its schedule from the database (django-celery-beat's PeriodicTask rows, edited
# in the admin under "Periodic tasks") and writes each entry's last run there, so that
# web, worker and beat agree on it and no schedule file is needed.
# With REDIS_URL, a beat sends only while it holds a lock in Redis that it renews at every
# tick (callcenter/beat.py): a second beat, on this host or another, waits as a standby and
# takes over within BEAT_LOCK_SECONDS of the first one's end.
CELERY_BEAT_SCHEDULER = "callcenter.beat:LeaderScheduler"
BEAT_LOCK_SECONDS = env.int("BEAT_LOCK_SECONDS", 30, minimum=3, maximum=600)
# Beat only ticks: when a campaign calls is data on the campaign. These
# ticks stay in code: beat writes them to the database at each start, over any edit made
# in the admin, since the product's pacing depends on them. What operators may retime (the
# nightly voice sync, the purge of idempotency keys, the nightly purge of expired data) is
# only in the database, created by voices/migrations/0003_periodic_tasks.py and
# calls/migrations/0015_purge_expired_data_periodic_task.py.
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "callcenter.tasks.heartbeat_task", "schedule": 30.0},
    "advance-campaigns": {"task": "campaigns.tasks.advance_campaigns_task", "schedule": 30.0},
    # The dispatcher's tick: its period is calls.dispatcher.DISPATCH_INTERVAL_SECONDS, the
    # interval the pacing buckets are sized for. A tick left waiting expires (the task's).
    "dispatch-calls": {"task": "calls.tasks.dispatch_calls_task", "schedule": 2.0},
    "reconcile-calls": {"task": "calls.tasks.reconcile_calls_task", "schedule": 60.0},
    # Twilio's price of each ended call, asked for when due (calls.dialing.check_prices;
    # its period is PRICE_TICK_SECONDS there): a call's price is kept within a minute.
    "check-call-prices": {"task": "calls.tasks.check_prices_task", "schedule": 10.0},
    "prerender-upcoming-speech": {
        "task": "campaigns.tasks.prerender_upcoming_speech_task",
        "schedule": 20.0,
    },
    # Partner webhooks' retries (and deliveries whose task was lost) when they fall due.
    "retry-webhook-deliveries": {
        "task": "campaigns.tasks.retry_webhook_deliveries_task",
        "schedule": 30.0,
    },
    # Erasures whose recordings the carrier could not delete yet (privacy.recordings).
    "retry-erasure-recordings": {
        "task": "privacy.tasks.retry_erasure_recordings_task",
        "schedule": 60.0,
    },
}

# --- Internationalisation: Spanish first, English too ------------------------------------
LANGUAGE_CODE = "es"
LANGUAGES = [("es", _("Spanish")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = env.str("TIME_ZONE", "Europe/Madrid")
if TIME_ZONE not in zoneinfo.available_timezones():
    env.error("TIME_ZONE", "must be an IANA time zone such as Europe/Madrid", TIME_ZONE)
    TIME_ZONE = "UTC"
# Beat's crontab schedules (the nightly voice sync) follow this clock, not UTC.
CELERY_TIMEZONE = TIME_ZONE
# Calls default to Spanish (Spain); contacts' numbers are read in this region
# unless they carry their own country code.
DEFAULT_CALL_LANGUAGE = "es-ES"
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", "ES").upper()
if DEFAULT_PHONE_REGION not in phonenumbers.SUPPORTED_REGIONS:
    env.error(
        "DEFAULT_PHONE_REGION", "must be an ISO 3166 region code such as ES", DEFAULT_PHONE_REGION
    )
    DEFAULT_PHONE_REGION = "ES"

# --- Static and media files -------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = DATA_DIR / "media"
# Clips, contact files, suppression list copies and data-subject exports: in MEDIA_ROOT
# (one host), or in a private S3-compatible bucket that every host shares.
MEDIA_STORAGE = env.choice("MEDIA_STORAGE", media.FILESYSTEM, (media.FILESYSTEM, media.S3))
S3_BUCKET = env.str("S3_BUCKET")
S3_ENDPOINT_URL = env.url("S3_ENDPOINT_URL", "")  # empty: AWS's own for S3_REGION
S3_REGION = env.str("S3_REGION", "us-east-1")  # Cloudflare R2: auto
S3_ACCESS_KEY_ID = env.str("S3_ACCESS_KEY_ID")
S3_SECRET_ACCESS_KEY = env.str("S3_SECRET_ACCESS_KEY")
S3_ADDRESSING_STYLE = env.choice("S3_ADDRESSING_STYLE", "auto", ("auto", "path", "virtual"))
S3_PREFIX = env.str("S3_PREFIX").strip("/")
# How Twilio fetches a clip: from our clip view (app), or straight from the bucket by a
# presigned URL (signed) valid CLIP_SIGNED_URL_SECONDS, which must outlive any call.
CLIP_URLS = env.choice("CLIP_URLS", "app", ("app", "signed"))
CLIP_SIGNED_URL_SECONDS = env.int(
    "CLIP_SIGNED_URL_SECONDS",
    media.SIGNED_URL_MAX_SECONDS,
    minimum=media.CALL_LIFETIME_SECONDS,
    maximum=media.SIGNED_URL_MAX_SECONDS,
)
if MEDIA_STORAGE == media.S3:
    if not S3_BUCKET:
        env.error("S3_BUCKET", "must name the bucket when MEDIA_STORAGE=s3")
    if bool(S3_ACCESS_KEY_ID) != bool(S3_SECRET_ACCESS_KEY):
        env.error(
            "S3_SECRET_ACCESS_KEY" if S3_ACCESS_KEY_ID else "S3_ACCESS_KEY_ID",
            "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together (or neither, for "
            "an instance or pod role)",
        )
    _default_storage = media.s3_storage(
        bucket=S3_BUCKET,
        endpoint_url=S3_ENDPOINT_URL,
        region=S3_REGION,
        access_key=S3_ACCESS_KEY_ID,
        secret_key=S3_SECRET_ACCESS_KEY,
        addressing_style=S3_ADDRESSING_STYLE,
        prefix=S3_PREFIX,
    )
else:
    if CLIP_URLS == "signed":
        env.error("CLIP_URLS", "signed needs MEDIA_STORAGE=s3 (a folder has no signed URLs)")
        CLIP_URLS = "app"
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        # Hashed, compressed files for deployments (they need collectstatic); plain
        # files in development and tests.
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEVELOPMENT
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEVELOPMENT

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that a request without credentials answers 401 with its challenge.
        "campaigns.authentication.TokenAuthentication",
        "campaigns.authentication.PartnerApiKeyAuthentication",
        # Staff trying the API in the browser (/api/docs/) with their admin session.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["callcenter.access.IsPartnerOrStaff"],
    "DEFAULT_THROTTLE_CLASSES": ["callcenter.access.PartnerRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "DEFAULT_FILTER_BACKENDS": ["callcenter.filters.PartnerScopedFilterBackend"],
    # JSON in; the contact upload adds multipart for its file.
    "DEFAULT_PARSER_CLASSES": ["callcenter.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "callcenter.api.exception_handler",
    "PAGE_SIZE": 50,
}
# Requests each partner may make (shared by all web processes through the cache):
# "<count>/<second|minute|hour|day>". Over it, 429 with Retry-After.
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", "1200/minute")
if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", API_THROTTLE_RATE):
    env.error("API_THROTTLE_RATE", "must look like 1200/minute", API_THROTTLE_RATE)
    API_THROTTLE_RATE = "1200/minute"
# Largest JSON body the API reads (10,000 contacts fit); uploads have their own limit.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024)
# Largest contact file accepted for upload (multipart).
CONTACT_IMPORT_MAX_BYTES = env.int("CONTACT_IMPORT_MAX_BYTES", 512 * 1024 * 1024, minimum=1024)
# Contact files up to this size are imported during the request (the answer has the
# counts and rejected rows); larger ones in the background, polled for progress.
CONTACT_IMPORT_SYNC_MAX_BYTES = env.int("CONTACT_IMPORT_SYNC_MAX_BYTES", 1_048_576, minimum=0)
# The API reads the body itself (and checks its size first): Django's own cap would
# answer before the API could say what is wrong.
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# How long the answer to a POST with an Idempotency-Key is kept for replay.
IDEMPOTENCY_KEY_HOURS = env.int("IDEMPOTENCY_KEY_HOURS", 24, minimum=1)
SIMPLE_JWT = {
    "ALGORITHM": ALGORITHM,
    "SIGNING_KEY": SECRET_KEY,
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=REFRESH_TOKEN_EXPIRE_DAYS),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_OBTAIN_SERIALIZER": "campaigns.authentication.TokenSerializer",
    "TOKEN_REFRESH_SERIALIZER": "campaigns.authentication.RefreshSerializer",
    # Tokens carry a hash of the password hash: a new password ends them at once.
    "CHECK_REVOKE_TOKEN": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"{APP_NAME} API",
    "DESCRIPTION": (
        "The partner API: campaigns, contacts, calls, call templates, voices, "
        "do-not-call list and webhooks. Authenticate with a JWT "
        "(`Authorization: Bearer <access>` from /api/v1/auth/token/) or an API key "
        "(`Authorization: Api-Key <key>`). Errors share one body: code, message, errors."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Several models have a "state": each choice set gets its own name.
    "ENUM_NAME_OVERRIDES": {
        "CampaignStateEnum": "campaigns.models.CampaignState",
        "ContactStateEnum": "campaigns.models.ContactState",
        "ContactImportStateEnum": "campaigns.models.ContactImportState",
        "WebhookEventEnum": "campaigns.models.WebhookEvent",
        "WebhookDeliveryStateEnum": "campaigns.models.WebhookDeliveryState",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "callcenter.api.add_error_responses",
    ],
}

# --- Vendors ----------------------------------------------------------------------------
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN")
TWILIO_PHONE_NUMBER = env.str("TWILIO_PHONE_NUMBER")
TWILIO_API_BASE_URL = env.url("TWILIO_API_BASE_URL", "https://api.twilio.com")
TWILIO_MAX_CPS = env.int("TWILIO_MAX_CPS", 1, minimum=1, maximum=1000)
# Retries of a transient Twilio failure (429, 5xx, timeout, connection error). A call is
# re-created only after a 429 or a refused connection, never after a 5xx or a timeout.
TWILIO_MAX_RETRIES = env.int("TWILIO_MAX_RETRIES", 3, minimum=0, maximum=10)
# Seconds to wait for Twilio to connect or send the next bytes, per attempt.
TWILIO_TIMEOUT = env.float("TWILIO_TIMEOUT", 10.0, minimum=1.0, maximum=60.0)
if TWILIO_ACCOUNT_SID and not (
    len(TWILIO_ACCOUNT_SID) == 34 and TWILIO_ACCOUNT_SID.startswith("AC")
):
    env.error("TWILIO_ACCOUNT_SID", "must be 'AC' followed by 32 characters", TWILIO_ACCOUNT_SID)
if TWILIO_PHONE_NUMBER:
    try:
        _caller = phonenumbers.parse(TWILIO_PHONE_NUMBER, None)
        if not phonenumbers.is_valid_number(_caller):
            raise phonenumbers.NumberParseException(0, "not a valid number")
        TWILIO_PHONE_NUMBER = phonenumbers.format_number(
            _caller, phonenumbers.PhoneNumberFormat.E164
        )
    except phonenumbers.NumberParseException:
        env.error(
            "TWILIO_PHONE_NUMBER",
            "must be a valid number in E.164 form (+34...)",
            TWILIO_PHONE_NUMBER,
        )
# The voice of <Say> (lines Twilio speaks when no rendered clip can be played), by the
# call's language: named for each language, since Twilio's default voice speaks English
# and its basic voices few languages well. "language=Voice" pairs override these.
TWILIO_SAY_VOICES = env.mapping(
    "TWILIO_SAY_VOICES",
    {
        "es-ES": "Polly.Lucia-Neural",
        "es-MX": "Polly.Mia-Neural",
        "es-US": "Polly.Lupe-Neural",
        "ca-ES": "Polly.Arlet-Neural",
        "en-US": "Polly.Joanna-Neural",
        "en-GB": "Polly.Amy-Neural",
        "en-AU": "Polly.Olivia-Neural",
        "en-IN": "Polly.Kajal-Neural",
        "fr-FR": "Polly.Lea-Neural",
        "fr-CA": "Polly.Gabrielle-Neural",
        "de-DE": "Polly.Vicki-Neural",
        "it-IT": "Polly.Bianca-Neural",
        "nl-NL": "Polly.Laura-Neural",
        "pt-BR": "Polly.Camila-Neural",
        "pt-PT": "Polly.Ines-Neural",
    },
)
_has_twilio_credentials = bool(TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)
# twilio, sandbox (calls.telephony.BACKENDS) or the dotted path of a backend class, as
# EMAIL_BACKEND takes; calls.telephony imports it on first use.
TELEPHONY_BACKEND = env.str("TELEPHONY_BACKEND", "twilio" if _has_twilio_credentials else "sandbox")
if TELEPHONY_BACKEND not in ("twilio", "sandbox") and not re.fullmatch(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", TELEPHONY_BACKEND
):
    env.error(
        "TELEPHONY_BACKEND",
        "must be one of twilio, sandbox, or the dotted path of a backend class",
        TELEPHONY_BACKEND,
    )
if (
    TELEPHONY_BACKEND in ("twilio", "calls.telephony.twilio.TwilioBackend")
    and not _has_twilio_credentials
):
    env.error(
        "TELEPHONY_BACKEND",
        "is twilio but TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not both set",
        TELEPHONY_BACKEND,
    )
elif (
    APP_ENV == "production" and not _has_twilio_credentials and env.raw("TELEPHONY_BACKEND") is None
):
    # Fail closed: production without credentials would quietly place no real calls. The
    # simulated carrier stays available on purpose (a demo), and the admin then says so.
    env.error(
        " and ".join(
            name
            for name, value in (
                ("TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT_SID),
                ("TWILIO_AUTH_TOKEN", TWILIO_AUTH_TOKEN),
            )
            if not value
        ),
        "must be set when APP_ENV=production; to run on the simulated carrier instead "
        "(no real calls), set TELEPHONY_BACKEND=sandbox",
        None,
    )

ELEVENLABS_API_KEY = env.str("ELEVENLABS_API_KEY")
ELEVENLABS_DEFAULT_VOICE = env.str("ELEVENLABS_DEFAULT_VOICE", "Bella")
ELEVENLABS_MAX_RETRIES = env.int("ELEVENLABS_MAX_RETRIES", 3, minimum=0, maximum=10)
ELEVENLABS_BASE_URL = env.url("ELEVENLABS_BASE_URL", "https://api.elevenlabs.io")
# The model of template lines and pre-rendered speech, and the fast one of live AI lines.
ELEVENLABS_MODEL = env.str("ELEVENLABS_MODEL", "eleven_multilingual_v2")
ELEVENLABS_LIVE_MODEL = env.str("ELEVENLABS_LIVE_MODEL", "eleven_flash_v2_5")
# Seconds to wait for ElevenLabs to connect or send the next bytes, per attempt.
ELEVENLABS_TIMEOUT = env.float("ELEVENLABS_TIMEOUT", 10.0, minimum=1.0, maximum=120.0)
# Requests in flight to ElevenLabs at once, across every process and machine (0: no
# limit). Set your plan's: 2 on Free, 3 Starter, 5 Creator (the default: the smallest plan
# sold for production use), 10 Pro, 15 Scale and Business; over it ElevenLabs answers 429.
# A live AI call needs about a line a second voiced: at ~0.3 s a line, a slot serves some
# three live calls before lines wait (and, past the webhook's deadline, are said by <Say>).
ELEVENLABS_CONCURRENCY = env.int("ELEVENLABS_CONCURRENCY", 5, minimum=0, maximum=1000)

OPENAI_API_KEY = env.str("OPENAI_API_KEY")
OPENAI_BASE_URL = env.url("OPENAI_BASE_URL", "https://api.openai.com/v1")
DEFAULT_MODEL = env.str("DEFAULT_MODEL", "gpt-4o-mini")
# Upper bound of the spoken reply (a token is about 4 characters): it ends at the last
# whole sentence within it. Tool arguments and reasoning have bounds of their own below.
MAX_TOKENS = env.int("MAX_TOKENS", 150, minimum=1, maximum=16384)
# Left out for reasoning models (o-series, gpt-5), which take only their default.
TEMPERATURE = env.float("TEMPERATURE", 0.7, minimum=0.0, maximum=2.0)
# The name of the token bound: OpenAI's max_completion_tokens, or the deprecated
# max_tokens for an OpenAI-compatible server that knows only that one.
OPENAI_TOKEN_PARAMETER = env.choice(
    "OPENAI_TOKEN_PARAMETER", "max_completion_tokens", ("max_completion_tokens", "max_tokens")
)
# Tokens for the tool calls of a reply (answers recorded, a callback), beyond MAX_TOKENS.
OPENAI_TOOL_MAX_TOKENS = env.int("OPENAI_TOOL_MAX_TOKENS", 512, minimum=16, maximum=16384)
# A reasoning model's reasoning_effort: auto asks the least its family takes (minimal for
# gpt-5, none for gpt-5.1 and later, low for the o-series); others never get one.
OPENAI_REASONING_EFFORT = env.choice(
    "OPENAI_REASONING_EFFORT", "auto", ("auto", "none", "minimal", "low", "medium", "high")
)
# Tokens a reasoning model may reason before it answers, beyond MAX_TOKENS and the tools'.
OPENAI_REASONING_MAX_TOKENS = env.int(
    "OPENAI_REASONING_MAX_TOKENS", 2048, minimum=0, maximum=100000
)
# Seconds the model may take to start answering a turn before the caller hears a holding
# line (the turn is then tried once more, then closed politely).
MODEL_TIMEOUT = env.float("MODEL_TIMEOUT", 4.0, minimum=0.5, maximum=60.0)

# --- Calls ------------------------------------------------------------------------------
# Seconds a webhook answering TwiML has to answer, the model and speech included; past it
# the caller hears what is ready (a line spoken by Twilio's <Say>, or a holding line).
# Twilio waits 15 s, then plays the fallback's apology and the call is lost.
WEBHOOK_DEADLINE_SECONDS = env.float("WEBHOOK_DEADLINE_SECONDS", 8.0, minimum=2.0, maximum=14.0)
# Hard limits of one conversation, whatever the model or script says.
CALL_MAX_TURNS = env.int("CALL_MAX_TURNS", 20, minimum=1, maximum=200)
# Call templates (templates/rendering/). A spoken line (greeting, voicemail, a step's
# prompt...) and the AI instructions may each be this long, as written and once filled in
# with a contact's data: Twilio's <Say> takes 3,000-4,096 characters, ElevenLabs 10,000.
TEMPLATE_LINE_MAX_CHARS = env.int("TEMPLATE_LINE_MAX_CHARS", 4_000, minimum=200, maximum=10_000)
TEMPLATE_INSTRUCTIONS_MAX_CHARS = env.int(
    "TEMPLATE_INSTRUCTIONS_MAX_CHARS", 20_000, minimum=1_000, maximum=200_000
)
# Steps, variables and the outcome schema: each at most this long as JSON.
TEMPLATE_JSON_MAX_CHARS = env.int(
    "TEMPLATE_JSON_MAX_CHARS", 100_000, minimum=1_000, maximum=1_000_000
)
# How deep {% if %} blocks may nest in one line.
TEMPLATE_MAX_NESTING = env.int("TEMPLATE_MAX_NESTING", 10, minimum=1, maximum=50)
# Source characters of parsed lines each process keeps (a parsed line takes 50 to 80 bytes
# per character of source: the default holds 25 to 40 MB).
TEMPLATE_CACHE_MAX_CHARS = env.int(
    "TEMPLATE_CACHE_MAX_CHARS", 500_000, minimum=0, maximum=50_000_000
)
# Threads per web process for the blocking work of call webhooks (database, speech): how
# many turns one process serves at once. They borrow database connections from the pool.
WEBHOOK_THREADS = env.int("WEBHOOK_THREADS", 24, minimum=1, maximum=256)
# ConversationRelay (campaigns on the streamed transport, calls/relay/): who speaks our
# text on Twilio's side (ElevenLabs with the campaign's voice, or Google / Amazon with a
# voice of theirs named by the campaign's voice id).
RELAY_TTS_PROVIDER = env.choice(
    "RELAY_TTS_PROVIDER", "ElevenLabs", ("ElevenLabs", "Google", "Amazon")
)
# Twilio ends a session as soon as it gets our `end` message, so a last line (a goodbye,
# a transfer's announcement) must have been heard first: we wait its length at this many
# characters a second (about 15 in Spanish at a natural pace). 0: end at once.
RELAY_SPEECH_CHARS_PER_SECOND = env.float(
    "RELAY_SPEECH_CHARS_PER_SECOND", 15.0, minimum=0.0, maximum=100.0
)
# Ask Twilio to open the socket again when it drops during a call (ConversationRelay's
# Application Reconnect): a web process restarted by a deploy then loses no call, the
# conversation goes on from its transcript in another.
RELAY_APPLICATION_RECONNECT = env.bool("RELAY_APPLICATION_RECONNECT", True)
# Seconds of silence after our line is heard before the caller is asked whether they are
# still there (twice in a row: the call closes politely), as <Gather>'s timeout does.
RELAY_SILENCE_SECONDS = env.float("RELAY_SILENCE_SECONDS", 6.0, minimum=1.0, maximum=60.0)
# Abandoned calls (calls/abandonment.py): the rate that raises a campaign's alert (1 %) and
# pauses it (3 %) is taken over at least this many live-answered calls, so that one slow
# call among the first few pauses nothing; 1 takes the plain rate, as the rules count it.
ABANDONMENT_MIN_ANSWERED = env.int("ABANDONMENT_MIN_ANSWERED", 100, minimum=1, maximum=100_000)
# The key a callee presses to ask not to be called again (offered by the fallback too).
OPT_OUT_DIGIT = env.choice("OPT_OUT_DIGIT", "9", tuple("0123456789"))
# ES-5: how old the Lista Robinson copy a Spanish marketing campaign is scrubbed against may
# be, in days (the operator's policy; calling-rules.md suggests 30 at most).
SUPPRESSION_ROBINSON_MAX_AGE_DAYS = env.int(
    "SUPPRESSION_ROBINSON_MAX_AGE_DAYS", 30, minimum=1, maximum=365
)
# The sandbox carrier's clock: simulated seconds per real second (10 plays a 30 s call in 3 s).
SANDBOX_SPEED = env.float("SANDBOX_SPEED", 5.0, minimum=0.1, maximum=1000.0)

# --- Costs ------------------------------------------------------------------------------
# What calls cost is told in this currency (ISO 4217): the unit prices below are in it,
# and Twilio's price counts when the account is billed in it.
COST_CURRENCY = env.str("COST_CURRENCY", "USD").upper()
if not re.fullmatch(r"[A-Z]{3}", COST_CURRENCY):
    env.error("COST_CURRENCY", "must be an ISO 4217 code such as USD or EUR", COST_CURRENCY)
    COST_CURRENCY = "USD"


def _prices(pairs: dict[str, str], *, name: str, parts: int) -> dict[str, tuple[Decimal, ...]]:
    """``model=price`` pairs (``parts`` prices separated by "/") as Decimals."""
    prices = {}
    for model, value in pairs.items():
        try:
            numbers = tuple(Decimal(part) for part in value.split("/"))
        except InvalidOperation:
            numbers = ()
        if len(numbers) != parts or any(not n.is_finite() or n < 0 for n in numbers):
            shape = "/".join(["price"] * parts)
            env.error(name, f"each model needs {shape}, non-negative numbers", value)
            continue
        prices[model] = numbers
    return prices


# OpenAI's prices per million tokens, input/output, in COST_CURRENCY: "model=in/out" pairs
# over these (openai.com/api/pricing, standard tier). A model without one is reported as
# unpriced, its tokens still counted.
OPENAI_PRICES = _prices(
    env.mapping(
        "OPENAI_PRICES",
        {
            "gpt-4o-mini": "0.15/0.60",
            "gpt-4o": "2.50/10.00",
            "gpt-4.1": "2.00/8.00",
            "gpt-4.1-mini": "0.40/1.60",
            "gpt-4.1-nano": "0.10/0.40",
            "gpt-4": "30.00/60.00",
            "gpt-4-turbo": "10.00/30.00",
            "gpt-3.5-turbo": "0.50/1.50",
            "o4-mini": "1.10/4.40",
            "o3-mini": "1.10/4.40",
            "o3": "2.00/8.00",
            "gpt-5": "1.25/10.00",
            "gpt-5-mini": "0.25/2.00",
            "gpt-5-nano": "0.05/0.40",
        },
    ),
    name="OPENAI_PRICES",
    parts=2,
)
# ElevenLabs' price per thousand characters, by model, in COST_CURRENCY ("model=price"
# pairs over these; elevenlabs.io/pricing/api: Flash and Turbo half the price of
# Multilingual). Set them to your plan's.
ELEVENLABS_PRICES = _prices(
    env.mapping(
        "ELEVENLABS_PRICES",
        {
            "eleven_flash_v2_5": "0.05",
            "eleven_flash_v2": "0.05",
            "eleven_turbo_v2_5": "0.05",
            "eleven_turbo_v2": "0.05",
            "eleven_multilingual_v2": "0.10",
            "eleven_v3": "0.10",
        },
    ),
    name="ELEVENLABS_PRICES",
    parts=1,
)

# --- Partner webhooks -------------------------------------------------------------------
# Seconds a partner's endpoint may take to accept a connection or send the next bytes of
# its answer before the attempt counts as failed (and is retried later).
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", 10.0, minimum=1.0, maximum=60.0)
# Whether partners' endpoints may be internal addresses (loopback, private networks, cloud
# metadata): only in development and tests, where receivers run on this machine. Anywhere
# else it would let a partner reach our own network (docs/security.md), so it is refused.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", DEVELOPMENT)
if WEBHOOK_ALLOW_PRIVATE_ADDRESSES and not DEVELOPMENT:
    env.error(
        "WEBHOOK_ALLOW_PRIVATE_ADDRESSES",
        f"must be false when APP_ENV={APP_ENV}: it would let partners reach internal addresses",
        "true",
    )

# --- Logging ----------------------------------------------------------------------------
# One line per record on stdout: readable in development, one JSON object per line
# elsewhere, for the log collector. Request id, CallSid and masked phone numbers either way.
LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOG_FORMAT = env.choice("LOG_FORMAT", "plain" if DEVELOPMENT else "json", ("json", "plain"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "callcenter.logging.RequestContextFilter"},
        "mask_phone_numbers": {"()": "callcenter.logging.MaskPhoneNumbersFilter"},
    },
    "formatters": {
        "plain": {"()": "callcenter.logging.PlainFormatter"},
        "json": {"()": "callcenter.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_context", "mask_phone_numbers"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx and twilio log every vendor request at INFO (twilio in a dozen lines): too
    # much for a call's worth of turns.
    "loggers": {"httpx": {"level": "WARNING"}, "twilio.http_client": {"level": "WARNING"}},
}

env.check()
