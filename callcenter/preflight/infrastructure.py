"""The checks of what the product runs on: the database, Redis, the worker and beat, and
the app's own address (APP_URL and its /health)."""

from __future__ import annotations

import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from callcenter import health
from callcenter.preflight.base import (
    DIALLING_STATES,
    HEARTBEAT_DEAD_SECONDS,
    HEARTBEAT_LATE_SECONDS,
    Finding,
    Status,
    _check,
)
from callcenter.tasks import HEARTBEAT_CACHE_KEY
from calls import links, telephony
from campaigns.models import Campaign, ConversationTransport

# --- Database, Redis, worker and beat ------------------------------------------------------


@_check(gettext_noop("Database"))
def check_database(*, timeout: float) -> Finding:
    """The database answers and has every migration of this release applied."""
    connection = connections["default"]
    where = _database_description()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return Finding(
            Status.FAIL,
            _("%(database)s does not answer: %(error)s") % {"database": where, "error": exc},
            _(
                "Check DATABASE_URL (host, port, user, password; ?sslmode=require for "
                "Supabase) and that this machine may reach the database."
            ),
        )
    if unapplied:
        names = [f"{m.app_label}.{m.name}" for m, _backwards in unapplied]
        migrations = ", ".join(names[:5])
        if len(names) > 5:
            migrations += " " + _("and %(count)s more") % {"count": len(names) - 5}
        return Finding(
            Status.FAIL,
            _("%(database)s lacks %(count)s migration(s) of this release: %(migrations)s")
            % {"database": where, "count": len(unapplied), "migrations": migrations},
            _("Run the migrations: docker compose run --rm migrate (or manage.py migrate)."),
        )
    if connection.vendor == "sqlite":
        return Finding(
            Status.WARN,
            _("%(database)s, the embedded default: every migration applied.") % {"database": where},
            _(
                "Set DATABASE_URL to PostgreSQL: one SQLite file shared by web, worker and "
                "beat suits a trial, not calls at scale."
            ),
        )
    return Finding(Status.OK, _("%(database)s: every migration applied.") % {"database": where})


@_check(gettext_noop("Redis"))
def check_redis(*, timeout: float) -> Finding:
    """The cache and the Celery broker answer: Redis when REDIS_URL is set, else the
    embedded file cache and filesystem broker (said so, as a warning)."""
    problems = []
    for component, check in (("cache", health.check_cache), ("broker", health.check_broker)):
        try:
            check()
        # As in /health: any failure of a component means it is down; its class says why.
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{component}: {type(exc).__name__}: {exc}")
    if settings.REDIS_URL:
        where = _redis_description(settings.REDIS_URL)
        if problems:
            return Finding(
                Status.FAIL,
                _("%(redis)s does not answer (%(problems)s).")
                % {"redis": where, "problems": "; ".join(problems)},
                _(
                    "Start Redis (docker compose up -d redis) and check REDIS_URL and "
                    "REDIS_PASSWORD, which Redis and the app must share."
                ),
            )
        return Finding(
            Status.OK,
            _("%(redis)s answers: Celery broker and cache.") % {"redis": where},
        )
    if problems:
        return Finding(
            Status.FAIL,
            _(
                "The file cache or the filesystem broker in DATA_DIR (%(folder)s) fails: "
                "%(problems)s"
            )
            % {"folder": settings.DATA_DIR, "problems": "; ".join(problems)},
            _("Make DATA_DIR writable for web, worker and beat, or set REDIS_URL."),
        )
    return Finding(
        Status.WARN,
        _(
            "REDIS_URL is not set: the file cache and filesystem broker in DATA_DIR "
            "(%(folder)s) are used instead, which only processes on this machine share."
        )
        % {"folder": settings.DATA_DIR},
        _("Set REDIS_URL (docker compose runs Redis) before running on more than one machine."),
    )


@_check(gettext_noop("Worker and beat"))
def check_worker_and_beat(*, timeout: float) -> Finding:
    """A worker ran beat's 30-second heartbeat tick lately: both are alive."""
    action = _(
        "Start the worker and beat (docker compose up -d worker beat) and read their logs "
        "(docker compose logs worker beat); beat runs exactly once."
    )
    try:
        value = cache.get(HEARTBEAT_CACHE_KEY)
    # As in /health: the Redis line above says what is wrong with the cache.
    except Exception as exc:  # noqa: BLE001
        return Finding(
            Status.FAIL,
            _("The heartbeat could not be read from the cache: %(error)s")
            % {"error": f"{type(exc).__name__}: {exc}"},
            _("Fix the cache first (see the Redis line)."),
        )
    when = parse_datetime(value) if isinstance(value, str) else None
    if when is None:
        return Finding(
            Status.FAIL,
            _("No worker has run beat's heartbeat tick: the worker, beat or both are not running."),
            action,
        )
    age = max(0.0, (timezone.now() - when).total_seconds())
    detail = _("A worker last ran beat's heartbeat tick (every 30 s) %(seconds)s s ago.") % {
        "seconds": round(age)
    }
    if age > HEARTBEAT_DEAD_SECONDS:
        return Finding(Status.FAIL, detail, action)
    if age > HEARTBEAT_LATE_SECONDS:
        return Finding(
            Status.WARN,
            detail,
            _(
                "Beat or the worker is behind: check that beat runs and that the worker is "
                "not overloaded (docker compose logs worker beat)."
            ),
        )
    return Finding(Status.OK, detail)


# --- APP_URL ---------------------------------------------------------------------------


@_check(gettext_noop("APP_URL"))
def check_app_url(*, timeout: float) -> Finding:
    """APP_URL is an https:// address that Twilio can reach (not this machine's own)."""
    url = settings.APP_URL
    parts = urlsplit(url)
    if parts.scheme != "https":
        return Finding(
            Status.FAIL,
            _(
                "%(url)s is not https: Twilio's webhooks and staff's passwords would travel "
                "in the clear."
            )
            % {"url": url},
            _(
                "Serve the app behind a TLS-terminating proxy and set APP_URL to its "
                "https:// address (docs/deploy.md, Production)."
            ),
        )
    if _is_local(parts.hostname or ""):
        return Finding(
            Status.FAIL,
            _("%(url)s names this machine or a private network: Twilio cannot reach it.")
            % {"url": url},
            _("Set APP_URL to the public https:// address Twilio calls."),
        )
    return Finding(Status.OK, _("%(url)s is https.") % {"url": url})


@_check(gettext_noop("APP_URL /health"))
def check_app_health(*, timeout: float) -> Finding:
    """This app's own /health answers 200 through APP_URL, as Twilio would reach it."""
    url = str(settings.APP_URL).rstrip("/") + "/health"
    started = time.perf_counter()
    try:
        response = requests.get(
            url, timeout=timeout, allow_redirects=False, headers={"Accept": "application/json"}
        )
    except requests.exceptions.SSLError as exc:
        return Finding(
            Status.FAIL,
            _("%(url)s: the TLS handshake failed: %(error)s") % {"url": url, "error": exc},
            _(
                "Serve a certificate for APP_URL's host from a public authority: Twilio "
                "refuses self-signed certificates."
            ),
        )
    except requests.Timeout:
        return Finding(
            Status.FAIL,
            _("%(url)s did not answer within %(seconds)s s.") % {"url": url, "seconds": timeout},
            _unreachable_app_action(),
        )
    except requests.RequestException as exc:
        return Finding(
            Status.FAIL,
            _("%(url)s could not be reached: %(error)s") % {"url": url, "error": exc},
            _unreachable_app_action(),
        )
    milliseconds = round((time.perf_counter() - started) * 1000)
    if response.is_redirect:
        return Finding(
            Status.FAIL,
            _("%(url)s redirects to %(location)s.")
            % {"url": url, "location": response.headers.get("Location", "?")},
            _(
                "Set APP_URL to the address that answers itself (Twilio signs the exact "
                "URL it calls), or stop the proxy redirecting it."
            ),
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not _is_health_body(body):
        return Finding(
            Status.FAIL,
            _("%(url)s answers HTTP %(status)s, but not with this app's /health.")
            % {"url": url, "status": response.status_code},
            _(
                "APP_URL reaches something else: make the proxy pass APP_URL's host to "
                "the web service."
            ),
        )
    if response.status_code != 200 or body["status"] != "up":
        down = ", ".join(str(component) for component in body.get("down") or ()) or "?"
        return Finding(
            Status.FAIL,
            _("%(url)s answers HTTP %(status)s: down: %(down)s.")
            % {"url": url, "status": response.status_code, "down": down},
            _("See docs/deploy.md, Troubleshooting, for the component named."),
        )
    return Finding(
        Status.OK,
        _("This app answers at %(url)s in %(ms)s ms.") % {"url": url, "ms": milliseconds},
    )


@_check(gettext_noop("ConversationRelay socket"))
def check_relay_socket(*, timeout: float) -> Finding:
    """A WebSocket handshake signed as Twilio signs it reaches this app through APP_URL
    (the proxy passes the upgrade on): what a streamed campaign's calls need. Failing,
    it fails only when such a campaign may dial; else it warns."""
    url = links.relay_url(0)  # no call: the socket is accepted, then closed at once
    streaming = Campaign.objects.filter(
        state__in=DIALLING_STATES, transport=ConversationTransport.RELAY
    ).exists()
    failed = Status.FAIL if streaming else Status.WARN
    try:
        signature = telephony.sign_request(url=url, params={})
    except telephony.TelephonyNotConfigured:
        return Finding(
            failed,
            _("No Twilio auth token to sign a handshake with."),
            _("Set TWILIO_AUTH_TOKEN."),
        )
    started = time.perf_counter()
    try:
        with connect(
            url, additional_headers={"X-Twilio-Signature": signature}, open_timeout=timeout
        ):
            pass
    except (OSError, TimeoutError, WebSocketException) as exc:
        return Finding(
            failed,
            _("%(url)s did not take a WebSocket: %(error)s") % {"url": url, "error": exc},
            _(
                "Make the proxy pass WebSocket upgrades on for /relay/ (docs/deploy.md, "
                "ConversationRelay's WebSocket behind a proxy)."
            ),
        )
    milliseconds = round((time.perf_counter() - started) * 1000)
    return Finding(
        Status.OK,
        _("%(url)s takes a signed WebSocket in %(ms)s ms.") % {"url": url, "ms": milliseconds},
    )


def _database_description() -> str:
    database = settings.DATABASES["default"]
    if str(database["ENGINE"]).endswith("sqlite3"):
        return _("SQLite file %(path)s") % {"path": database["NAME"]}
    host = database.get("HOST") or "localhost"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return _("PostgreSQL database %(name)s on %(host)s%(port)s") % {
        "name": database.get("NAME"),
        "host": host,
        "port": port,
    }


def _redis_description(url: str) -> str:
    """REDIS_URL without its password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return _("Redis at %(address)s") % {"address": f"{parts.scheme}://{host}{port}"}


def _is_local(host: str) -> bool:
    """Whether `host` is this machine or a private network's, which Twilio cannot reach."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: where it leads is checked by fetching /health


def _is_health_body(body: Any) -> bool:
    """Whether `body` is what this app's /health answers (callcenter/health.py)."""
    return (
        isinstance(body, dict)
        and body.get("status") in ("up", "down")
        and isinstance(body.get("components"), dict)
        and {"database", "cache", "broker"} <= body["components"].keys()
        and isinstance(body.get("down"), list)
        and "heartbeat" in body
    )


def _unreachable_app_action() -> str:
    return _(
        "Check that APP_URL's host resolves to your proxy, that the proxy forwards it to the "
        "web service, and that the web service runs (docker compose ps web)."
    )
