"""The go-live checks behind `manage.py preflight`.

An operator runs them with the real credentials before the first campaign. Each check is
a function of the seconds any one request may take, returning one `Result`: its status
(OK, WARN, FAIL or SKIP), what it found and, unless OK, what to do. The checks change
nothing: they read the database and the cache, ask the vendors through the project's own
adapters (the clients, base URLs and request shapes production uses), and fetch APP_URL's
/health. Only `configure_numbers` (`preflight --configure-numbers`) changes something: it
points the numbers people ring back at this app's inbound webhooks.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from callcenter import health
from callcenter.tasks import HEARTBEAT_CACHE_KEY
from calls import conversation, telephony
from calls.inbound import inbound_url
from campaigns.models import Campaign
from templates.models import CallTemplate
from voices import services as voice_services
from voices import speech

# Seconds any one request of a check may take: a vendor that does not answer fails its
# line within this, never hangs the command.
DEFAULT_TIMEOUT = 10.0
# Beat's heartbeat ticks every 30 s: older than this, the worker or beat is behind...
HEARTBEAT_LATE_SECONDS = 90
# ...and older than this (the beat container's own health check), they are not running.
HEARTBEAT_DEAD_SECONDS = 600
# Below this share of the plan's characters, the ElevenLabs line warns.
LOW_CHARACTERS_SHARE = 0.1
# Campaigns that may still dial: their caller numbers must work.
DIALLING_STATES = (
    Campaign.State.DRAFT,
    Campaign.State.SCHEDULED,
    Campaign.State.RUNNING,
    Campaign.State.PAUSED,
)
# Campaign names shown for one caller number before "and N more".
NAMES_SHOWN = 3


class Status(enum.StrEnum):
    """A check's verdict. FAIL makes the command exit 1; WARN works but degrades calls
    or needs a look; SKIP could not be checked because of a line above."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Finding:
    """What a check found: its `status`, what it saw (`detail`) and, unless OK, what to
    do (`action`). Texts are translated."""

    status: Status
    detail: str
    action: str = ""


@dataclass(frozen=True)
class Result(Finding):
    """One check's line: a finding and the `name` of what was checked."""

    name: str = ""


Check = Callable[..., Result]
# Every check, in the order it is registered (and printed) by `_check`.
CHECKS: list[Check] = []


def _check(label: str) -> Callable[[Callable[..., Finding]], Check]:
    """Register a check named `label` (translated when it runs): it takes the seconds any
    one of its requests may take and returns a Finding, which becomes its Result. A
    check that breaks fails its own line, naming why, and never hides the lines after it."""

    def register(function: Callable[..., Finding]) -> Check:
        @functools.wraps(function)
        def check(*, timeout: float) -> Result:
            try:
                finding = function(timeout=timeout)
            # Whatever broke, the line says it and the other checks still run.
            except Exception as exc:  # noqa: BLE001
                finding = Finding(
                    Status.FAIL,
                    _("The check itself failed: %(error)s")
                    % {"error": f"{type(exc).__name__}: {exc}"},
                    _("Fix what the error names (a line above may say more), then run again."),
                )
            return Result(finding.status, finding.detail, finding.action, name=_(label))

        CHECKS.append(check)
        return check

    return register


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
    url = settings.APP_URL.rstrip("/") + "/health"
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


# --- Twilio ----------------------------------------------------------------------------


@_check(gettext_noop("Twilio account"))
def check_twilio_account(*, timeout: float) -> Finding:
    """The Twilio credentials open an active, upgraded account, and the Twilio backend is
    the one selected."""
    if not telephony.is_configured():
        return Finding(
            Status.FAIL,
            _(
                "No Twilio credentials: the sandbox carrier is selected, so calls are "
                "simulated and reach no phone."
            ),
            _("Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio Console, Account Info)."),
        )
    try:
        account = telephony.fetch_account(timeout=timeout, retries=0)
    except telephony.TelephonyRejected as exc:
        return _twilio_refused(exc)
    except telephony.TelephonyUnavailable as exc:
        return _twilio_unavailable(exc)
    detail = _("%(name)s (%(sid)s): %(type)s account, %(status)s.") % {
        "name": account.name or "?",
        "sid": account.sid,
        "type": account.type,
        "status": account.status,
    }
    if account.status != "active":
        return Finding(
            Status.FAIL,
            detail,
            _(
                "The account is not active: Twilio places no calls for it. See Billing in "
                "Twilio's Console, or Twilio's support."
            ),
        )
    if account.type == "Trial":
        return Finding(
            Status.FAIL,
            detail,
            _(
                "Upgrade the account in Twilio's Console: a trial account calls only "
                "verified numbers and plays a trial notice before each call."
            ),
        )
    if telephony.backend().simulated:
        return Finding(
            Status.FAIL,
            _("%(detail)s But TELEPHONY_BACKEND=sandbox: calls are simulated.")
            % {"detail": detail},
            _("Unset TELEPHONY_BACKEND, or set it to twilio."),
        )
    return Finding(Status.OK, detail)


@_check(gettext_noop("Twilio caller numbers"))
def check_caller_numbers(*, timeout: float) -> Finding:
    """TWILIO_PHONE_NUMBER and the caller number of every campaign that may still dial
    are numbers of the account or verified caller ids: Twilio refuses any other From."""
    if not telephony.is_configured():
        return Finding(Status.SKIP, _("No Twilio credentials (see the Twilio account line)."))
    used: dict[str, list[str]] = {}
    if settings.TWILIO_PHONE_NUMBER:
        used[settings.TWILIO_PHONE_NUMBER] = ["TWILIO_PHONE_NUMBER"]
    try:
        campaigns = list(
            Campaign.objects.filter(state__in=DIALLING_STATES)
            .exclude(caller_number="")
            .order_by("name", "pk")
            .values_list("caller_number", "name")
        )
    except DatabaseError as exc:
        return Finding(
            Status.SKIP,
            _("The campaigns could not be read (see the Database line): %(error)s")
            % {"error": exc},
        )
    for number, campaign in campaigns:
        used.setdefault(number, []).append(f"“{campaign}”")
    if not used:
        return Finding(
            Status.FAIL,
            _("No caller number: TWILIO_PHONE_NUMBER is not set and no campaign has one."),
            _("Set TWILIO_PHONE_NUMBER to a number of the Twilio account."),
        )
    try:
        numbers = telephony.list_account_numbers(timeout=timeout, retries=0)
    except telephony.TelephonyRejected as exc:
        return _twilio_refused(exc)
    except telephony.TelephonyUnavailable as exc:
        return _twilio_unavailable(exc)
    refused = [number for number in used if not numbers.allows(number)]
    if refused:
        listed = "; ".join(f"{number} ({_names(used[number])})" for number in refused)
        return Finding(
            Status.FAIL,
            _("Neither a number of the account nor a verified caller id: %(numbers)s.")
            % {"numbers": listed},
            _(
                "Buy or port the number in Twilio's Console (Phone Numbers), verify it "
                "(Verified Caller IDs), or change the caller number."
            ),
        )
    detail = _(
        "%(count)s caller number(s) checked: the account has %(owned)s number(s) and "
        "%(verified)s verified caller id(s)."
    ) % {"count": len(used), "owned": len(numbers.owned), "verified": len(numbers.verified)}
    if not settings.TWILIO_PHONE_NUMBER:
        return Finding(
            Status.WARN,
            _("%(detail)s TWILIO_PHONE_NUMBER is not set.") % {"detail": detail},
            _(
                "Set TWILIO_PHONE_NUMBER: campaigns without a caller number of their own "
                "cannot start."
            ),
        )
    return Finding(Status.OK, detail)


# --- The numbers people ring back ------------------------------------------------------------


def numbers_rung_back() -> dict[str, list[str]]:
    """The numbers people who missed a call ring back, each with what calls from it:
    TWILIO_PHONE_NUMBER and every campaign's caller number, whatever the campaign's state
    (people ring back after a campaign ends)."""
    used: dict[str, list[str]] = {}
    if settings.TWILIO_PHONE_NUMBER:
        used[settings.TWILIO_PHONE_NUMBER] = ["TWILIO_PHONE_NUMBER"]
    campaigns = (
        Campaign.objects.exclude(caller_number="")
        .order_by("name", "pk")
        .values_list("caller_number", "name")
    )
    for number, campaign in campaigns:
        used.setdefault(number, []).append(f"“{campaign}”")
    return used


def inbound_webhooks() -> dict[str, str]:
    """Where a number must send its calls, by the IncomingPhoneNumber field that says so."""
    return {
        "voice_url": inbound_url("inbound"),
        "voice_fallback_url": inbound_url("inbound-fallback"),
        "status_callback": inbound_url("inbound-status"),
    }


def _points_here(number: telephony.IncomingNumber) -> bool:
    """Whether `number` sends its calls to our inbound webhooks, by POST."""
    return (
        not number.voice_application_sid
        and not number.trunk_sid
        and number.voice_method in ("", "POST")
        and all(getattr(number, field) == url for field, url in inbound_webhooks().items())
    )


def _taken_elsewhere(number: telephony.IncomingNumber) -> str:
    """What takes `number`'s calls instead of its voice URL (a TwiML application or a SIP
    trunk, which Twilio puts first), or ""."""
    if number.voice_application_sid:
        return _("TwiML application %(sid)s") % {"sid": number.voice_application_sid}
    if number.trunk_sid:
        return _("SIP trunk %(sid)s") % {"sid": number.trunk_sid}
    return ""


@_check(gettext_noop("Twilio inbound numbers"))
def check_inbound_numbers(*, timeout: float) -> Finding:
    """Each number of the account that people may ring back sends its calls to this app's
    inbound webhooks (calls.inbound): otherwise those who call back hear nothing of ours."""
    if not telephony.is_configured():
        return Finding(Status.SKIP, _("No Twilio credentials (see the Twilio account line)."))
    try:
        used = numbers_rung_back()
    except DatabaseError as exc:
        return Finding(
            Status.SKIP,
            _("The campaigns could not be read (see the Database line): %(error)s")
            % {"error": exc},
        )
    try:
        owned = {n.phone_number: n for n in telephony.incoming_numbers(timeout=timeout, retries=0)}
    except telephony.TelephonyRejected as exc:
        return _twilio_refused(exc)
    except telephony.TelephonyUnavailable as exc:
        return _twilio_unavailable(exc)
    ours = [number for number in used if number in owned]
    if not ours:
        return Finding(
            Status.SKIP,
            _("No number of the account is a caller number (see the caller numbers line)."),
        )
    astray = [number for number in ours if not _points_here(owned[number])]
    if astray:
        listed = "; ".join(
            f"{number} ({_names(used[number])}): "
            + (_taken_elsewhere(owned[number]) or owned[number].voice_url or _("no voice URL"))
            for number in astray
        )
        return Finding(
            Status.WARN,
            _("Calls to these numbers do not reach this app: %(numbers)s.") % {"numbers": listed},
            _(
                "Run manage.py preflight --configure-numbers (docs/deploy.md, Numbers): "
                "people who ring back hear nothing of ours until then."
            ),
        )
    return Finding(
        Status.OK,
        _("%(count)s number(s) send their calls to %(url)s.")
        % {"count": len(ours), "url": inbound_webhooks()["voice_url"]},
    )


def configure_numbers(*, timeout: float) -> Iterator[Result]:
    """Point every number of the account that people may ring back (``numbers_rung_back``)
    at this app's inbound webhooks: its voice URL, fallback URL and status callback, all
    POST. One line per number, or one saying why none could be. The one thing here that
    changes something: ``preflight --configure-numbers`` runs it before the checks.

    A number whose calls a TwiML application or a SIP trunk takes is left alone (its
    voice URL would be ignored, and its calls may be another system's): its line fails,
    saying so. A number that is not the account's (a verified caller id) is skipped."""
    name = _("Configure numbers")
    if not telephony.is_configured():
        yield Result(
            Status.SKIP,
            _(
                "No Twilio credentials: the sandbox carrier rings the inbound webhooks "
                "itself, there is nothing to configure."
            ),
            name=name,
        )
        return
    app_url = check_app_url(timeout=timeout)
    if app_url.status != Status.OK:
        yield Result(
            Status.FAIL,
            _("Numbers not configured: %(reason)s") % {"reason": app_url.detail},
            app_url.action,
            name=name,
        )
        return
    try:
        used = numbers_rung_back()
        listed = telephony.incoming_numbers(timeout=timeout, retries=0)
    except DatabaseError as exc:
        yield Result(
            Status.FAIL,
            _("The campaigns could not be read: %(error)s") % {"error": exc},
            _("See the Database line below."),
            name=name,
        )
        return
    except telephony.TelephonyRejected as exc:
        finding = _twilio_refused(exc)
        yield Result(finding.status, finding.detail, finding.action, name=name)
        return
    except telephony.TelephonyUnavailable as exc:
        finding = _twilio_unavailable(exc)
        yield Result(finding.status, finding.detail, finding.action, name=name)
        return
    owned = {number.phone_number: number for number in listed}
    if not used:
        yield Result(
            Status.SKIP,
            _("No number to configure: TWILIO_PHONE_NUMBER is not set and no campaign has one."),
            name=name,
        )
    urls = inbound_webhooks()
    for phone, places in used.items():
        line = _("Number %(number)s") % {"number": phone}
        where = _names(places)
        number = owned.get(phone)
        if number is None:
            yield Result(
                Status.SKIP,
                _(
                    "Not a number of the account (%(where)s): calls to it ring its own line, "
                    "not Twilio. Nothing to configure."
                )
                % {"where": where},
                name=line,
            )
            continue
        if elsewhere := _taken_elsewhere(number):
            yield Result(
                Status.FAIL,
                _("Its calls go to %(elsewhere)s (%(where)s), which Twilio puts before any URL.")
                % {"elsewhere": elsewhere, "where": where},
                _(
                    "If nothing else needs it, remove it from the number in Twilio's Console "
                    "(Phone Numbers, Voice Configuration), then run again."
                ),
                name=line,
            )
            continue
        if _points_here(number):
            yield Result(
                Status.OK,
                _("Already sends its calls to %(url)s (%(where)s).")
                % {"url": urls["voice_url"], "where": where},
                name=line,
            )
            continue
        try:
            telephony.point_number(
                sid=number.sid,
                voice_url=urls["voice_url"],
                fallback_url=urls["voice_fallback_url"],
                status_callback=urls["status_callback"],
                timeout=timeout,
                retries=0,
            )
        except telephony.TelephonyRejected as exc:
            finding = _twilio_refused(exc)
            yield Result(finding.status, finding.detail, finding.action, name=line)
            continue
        except telephony.TelephonyUnavailable as exc:
            finding = _twilio_unavailable(exc)
            yield Result(finding.status, finding.detail, finding.action, name=line)
            continue
        yield Result(
            Status.OK,
            _(
                "Now sends its calls to %(url)s, its failures to the fallback and its ends "
                "to the status callback (%(where)s); it sent them to %(before)s."
            )
            % {
                "url": urls["voice_url"],
                "where": where,
                "before": number.voice_url or _("no voice URL"),
            },
            name=line,
        )


# --- ElevenLabs ------------------------------------------------------------------------


@_check(gettext_noop("ElevenLabs account"))
def check_elevenlabs(*, timeout: float) -> Finding:
    """The ElevenLabs key works, and the characters left this period are shown."""
    if not speech.is_configured():
        return Finding(
            Status.WARN,
            _("No ELEVENLABS_API_KEY: every line is spoken by Twilio's <Say> voices."),
            _("Set ELEVENLABS_API_KEY to speak with ElevenLabs voices."),
        )
    try:
        subscription = speech.get_subscription(deadline=time.monotonic() + timeout)
    except speech.SpeechRejected as exc:
        if exc.is_missing_permission:
            return Finding(
                Status.WARN,
                _("The key works but may not read the subscription: %(message)s")
                % {"message": exc.provider_message},
                _(
                    "Give the key the User read permission (ElevenLabs, API keys) to see "
                    "the characters left here."
                ),
            )
        return _elevenlabs_refused(exc)
    except speech.SpeechUnavailable as exc:
        return _elevenlabs_unavailable(exc)
    left, limit = subscription.characters_left, subscription.character_limit
    until = (
        _(", until %(date)s") % {"date": subscription.next_reset.date().isoformat()}
        if subscription.next_reset
        else ""
    )
    detail = _("%(tier)s plan: %(left)s of %(limit)s characters left%(until)s.") % {
        "tier": subscription.tier or "?",
        "left": number_format(left, force_grouping=True),
        "limit": number_format(limit, force_grouping=True),
        "until": until,
    }
    if left <= 0:
        return Finding(
            Status.WARN,
            detail,
            _(
                "Lines are spoken by <Say> until the characters come back: upgrade the plan "
                "or allow usage-based billing at ElevenLabs."
            ),
        )
    if left < limit * LOW_CHARACTERS_SHARE:
        return Finding(
            Status.WARN,
            detail,
            _("Few characters are left: upgrade the plan before a large campaign."),
        )
    return Finding(Status.OK, detail)


@_check(gettext_noop("ElevenLabs default voice"))
def check_default_voice(*, timeout: float) -> Finding:
    """The default voice of campaigns (the one chosen on the Voices page, else the one
    ELEVENLABS_DEFAULT_VOICE names) is a voice ElevenLabs has."""
    if not speech.is_configured():
        return Finding(Status.SKIP, _("No ELEVENLABS_API_KEY (see the line above)."))
    setting = settings.ELEVENLABS_DEFAULT_VOICE
    try:
        voice = voice_services.resolve_default_voice()
    except DatabaseError as exc:
        return Finding(
            Status.SKIP,
            _("The voice catalogue could not be read: %(error)s") % {"error": exc},
        )
    voice_id = voice.provider_voice_id if voice is not None else voice_services.default_voice_id()
    if not voice_id:
        return Finding(
            Status.FAIL,
            _("ELEVENLABS_DEFAULT_VOICE is “%(value)s”, which names no voice of the catalogue.")
            % {"value": setting},
            _(
                "Sync the voices (Voices page in the admin) or set ELEVENLABS_DEFAULT_VOICE to "
                "a voice id; campaigns without a voice of their own cannot start."
            ),
        )
    try:
        found = speech.get_voice(voice_id=voice_id, deadline=time.monotonic() + timeout)
    except speech.SpeechRejected as exc:
        if exc.status_code == 404:
            return Finding(
                Status.FAIL,
                _("ElevenLabs has no voice %(id)s (from %(source)s).")
                % {"id": voice_id, "source": _voice_source(voice, setting)},
                _(
                    "Choose another default voice: ELEVENLABS_DEFAULT_VOICE, or the Voices "
                    "page in the admin."
                ),
            )
        if exc.is_missing_permission:
            return Finding(
                Status.FAIL,
                _("The key may not read voices: %(message)s") % {"message": exc.provider_message},
                _(
                    "Give the key the Voices read permission (ElevenLabs, API keys): the "
                    "voice sync needs it too."
                ),
            )
        return _elevenlabs_refused(exc)
    except speech.SpeechUnavailable as exc:
        return _elevenlabs_unavailable(exc)
    return Finding(
        Status.OK,
        _("%(name)s (%(id)s), from %(source)s.")
        % {"name": found.name, "id": found.voice_id, "source": _voice_source(voice, setting)},
    )


# --- OpenAI ----------------------------------------------------------------------------


@_check(gettext_noop("OpenAI turn"))
def check_model_turn(*, timeout: float) -> Finding:
    """DEFAULT_MODEL takes a turn's request as calls send it (streamed, with the tools)."""
    return _model_result(kind="turn", timeout=timeout)


@_check(gettext_noop("OpenAI extraction"))
def check_model_extraction(*, timeout: float) -> Finding:
    """DEFAULT_MODEL takes an extraction's request as calls send it (JSON mode)."""
    return _model_result(kind="extraction", timeout=timeout)


def _model_result(*, kind: str, timeout: float) -> Finding:
    try:
        probe = conversation.probe_model(kind=kind, timeout=timeout)
    except conversation.ConversationNotConfigured:
        return _no_model(kind=kind)
    except conversation.ConversationRejected as exc:
        return _model_refused(exc)
    except conversation.ConversationUnavailable as exc:
        return Finding(
            Status.FAIL,
            exc.reason,
            _(
                "Run the preflight again; if it persists, check OPENAI_BASE_URL (%(url)s) and "
                "the provider's status page."
            )
            % {"url": settings.OPENAI_BASE_URL},
        )
    sent = _parameters_text(probe.parameters, kind=kind)
    if kind == "turn":
        detail = _("%(model)s takes a turn's request (%(sent)s): started answering in %(s)s s.")
    else:
        detail = _("%(model)s takes an extraction's request (%(sent)s): answered in %(s)s s.")
    detail = detail % {"model": probe.model, "sent": sent, "s": f"{probe.seconds:.1f}"}
    failures, warnings = [], []
    for refusal in probe.refused:
        refused = _("%(model)s refused %(parameter)s=%(value)s (“%(message)s”).") % {
            "model": probe.model,
            "parameter": refusal.name,
            "value": refusal.value,
            "message": refusal.message,
        }
        fix = _parameter_fix(refusal.name, probe.parameters)
        if fix:
            failures.append((refused, fix))
        else:
            warnings.append((refused, _adaptation_note(refusal.name)))
    if kind == "turn" and probe.seconds > settings.MODEL_TIMEOUT:
        warnings.append(
            (
                _(
                    "It started answering later than MODEL_TIMEOUT (%(timeout)s s) allows: "
                    "callers would hear the holding line."
                )
                % {"timeout": settings.MODEL_TIMEOUT},
                _("Choose a faster DEFAULT_MODEL, or raise MODEL_TIMEOUT."),
            )
        )
    found = failures + warnings
    if not found:
        return Finding(Status.OK, detail)
    return Finding(
        Status.FAIL if failures else Status.WARN,
        " ".join([detail, *(problem for problem, _fix in found)]),
        " ".join(fix for _problem, fix in found),
    )


def _no_model(*, kind: str) -> Finding:
    """No OPENAI_API_KEY: a failure when a campaign that may dial has an AI template."""
    if kind == "extraction":
        return Finding(Status.SKIP, _("No OPENAI_API_KEY (see the line above)."))
    try:
        ai_campaigns = Campaign.objects.filter(
            state__in=DIALLING_STATES, template__mode=CallTemplate.Mode.AI
        ).count()
    except DatabaseError:
        ai_campaigns = 0  # unknown: the Database line says why
    action = _("Set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible server).")
    if ai_campaigns:
        return Finding(
            Status.FAIL,
            _("No OPENAI_API_KEY, but %(count)s campaign(s) that may dial have an AI template.")
            % {"count": ai_campaigns},
            action,
        )
    return Finding(
        Status.WARN,
        _("No OPENAI_API_KEY: AI templates cannot converse; scripted ones work."),
        action,
    )


def _model_refused(exc: conversation.ConversationRejected) -> Finding:
    model = settings.DEFAULT_MODEL
    if exc.parameter in conversation.TOKEN_PARAMETERS:
        # The first refusal of a token bound is adapted to: this is the second name refused.
        return Finding(
            Status.FAIL,
            _("%(model)s takes neither max_completion_tokens nor max_tokens (“%(message)s”).")
            % {"model": model, "message": exc.provider_message},
            _("Set DEFAULT_MODEL to a model this server serves with one of them."),
        )
    if exc.parameter:
        return Finding(
            Status.FAIL,
            _("%(model)s refused %(parameter)s (“%(message)s”).")
            % {"model": model, "parameter": exc.parameter, "message": exc.provider_message},
            _parameter_fix(exc.parameter, {}) or _("Set DEFAULT_MODEL to another model."),
        )
    if exc.status in (401, 403):
        return Finding(
            Status.FAIL,
            exc.reason,
            _("Set OPENAI_API_KEY to a key that works (platform.openai.com, API keys)."),
        )
    if exc.status == 404:
        return Finding(
            Status.FAIL,
            exc.reason,
            _(
                "Set DEFAULT_MODEL (now %(model)s) to a model that %(url)s serves and the key "
                "may use."
            )
            % {"model": model, "url": settings.OPENAI_BASE_URL},
        )
    return Finding(
        Status.FAIL,
        exc.reason,
        _("Check DEFAULT_MODEL (%(model)s) and OPENAI_BASE_URL (%(url)s).")
        % {"model": model, "url": settings.OPENAI_BASE_URL},
    )


def _parameter_fix(parameter: str, accepted: dict[str, Any]) -> str:
    """The setting that makes calls send what the model takes from the start; empty for a
    parameter no setting controls (calls adapt to its refusal instead)."""
    if parameter in conversation.TOKEN_PARAMETERS:
        other = next(name for name in conversation.TOKEN_PARAMETERS if name != parameter)
        return _("Set OPENAI_TOKEN_PARAMETER=%(name)s.") % {"name": other}
    if parameter == "reasoning_effort" and accepted.get("reasoning_effort"):
        return _("Set OPENAI_REASONING_EFFORT=%(value)s.") % {"value": accepted["reasoning_effort"]}
    if parameter == "reasoning_effort" and not accepted:
        return _("Set OPENAI_REASONING_EFFORT to a value the model lists.")
    return ""


def _adaptation_note(parameter: str) -> str:
    if parameter == "response_format":
        return _(
            "Nothing to set: the model has no JSON mode, and outcomes are read from its text "
            "after its first refusal in each process."
        )
    return _(
        "Nothing to set: calls leave %(parameter)s out after the model's first refusal in "
        "each process (one refused request each)."
    ) % {"parameter": parameter}


def _parameters_text(parameters: dict[str, Any], *, kind: str) -> str:
    parts = []
    for name, value in parameters.items():
        if name == "response_format":
            parts.append(_("JSON mode"))
        elif name in conversation.TOKEN_PARAMETERS:
            parts.append(name)
        else:
            parts.append(f"{name} {value}")
    if kind == "turn":
        parts += [_("tools"), _("streamed")]
    return ", ".join(parts)


# --- All of them -----------------------------------------------------------------------


def run_checks(*, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Result]:
    """Every check's result, in order (what the product runs on, then its address, then
    the vendors), each as soon as it is known."""
    for check in CHECKS:
        yield check(timeout=timeout)


# --- Helpers ---------------------------------------------------------------------------


def _database_description() -> str:
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
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


def _twilio_refused(exc: telephony.TelephonyRejected) -> Finding:
    if exc.is_auth_failure:
        return Finding(
            Status.FAIL,
            _("Twilio refused the credentials (HTTP %(status)s, error %(code)s).")
            % {"status": exc.status, "code": exc.code or "-"},
            _(
                "Check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN against Twilio's Console "
                "(Account Info): the token of that very account."
            ),
        )
    return Finding(
        Status.FAIL,
        exc.reason,
        _("See Twilio's words above and its Console's Debugger."),
    )


def _twilio_unavailable(exc: telephony.TelephonyUnavailable) -> Finding:
    return Finding(
        Status.FAIL,
        _("Twilio did not answer: %(error)s") % {"error": exc},
        _(
            "Run the preflight again; if it persists, check this machine's network, "
            "TWILIO_API_BASE_URL (%(url)s) and status.twilio.com."
        )
        % {"url": settings.TWILIO_API_BASE_URL},
    )


def _elevenlabs_refused(exc: speech.SpeechRejected) -> Finding:
    if exc.status_code == 401:
        return Finding(
            Status.FAIL,
            _("ElevenLabs refused the key: %(message)s") % {"message": exc.provider_message},
            _("Set ELEVENLABS_API_KEY to a key of your ElevenLabs account (API keys)."),
        )
    return Finding(
        Status.FAIL,
        _("ElevenLabs refused the request (HTTP %(status)s): %(message)s")
        % {"status": exc.status_code, "message": exc.provider_message},
        _("Check ELEVENLABS_API_KEY and ELEVENLABS_BASE_URL (%(url)s).")
        % {"url": settings.ELEVENLABS_BASE_URL},
    )


def _elevenlabs_unavailable(exc: speech.SpeechUnavailable) -> Finding:
    return Finding(
        Status.FAIL,
        _("ElevenLabs did not answer: %(error)s") % {"error": exc},
        _(
            "Run the preflight again; if it persists, check ELEVENLABS_BASE_URL (%(url)s) and "
            "status.elevenlabs.io."
        )
        % {"url": settings.ELEVENLABS_BASE_URL},
    )


def _voice_source(voice: Any, setting: str) -> str:
    if voice is not None and voice.is_default:
        return _("the default chosen on the Voices page")
    return f"ELEVENLABS_DEFAULT_VOICE={setting}"


def _names(places: list[str]) -> str:
    shown = places[:NAMES_SHOWN]
    text = ", ".join(shown)
    if len(places) > NAMES_SHOWN:
        text += " " + _("and %(count)s more") % {"count": len(places) - NAMES_SHOWN}
    return text
