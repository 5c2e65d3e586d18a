"""The Twilio checks: the account, the caller numbers campaigns dial from, the numbers
people ring back, and `configure_numbers`, which points those at this app."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from callcenter.preflight.base import (
    DIALLING_STATES,
    NAMES_SHOWN,
    Finding,
    Result,
    Status,
    _check,
)
from callcenter.preflight.infrastructure import check_app_url
from calls import telephony
from calls.inbound import inbound_url
from campaigns.models import Campaign

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


def _names(places: list[str]) -> str:
    shown = places[:NAMES_SHOWN]
    text = ", ".join(shown)
    if len(places) > NAMES_SHOWN:
        text += " " + _("and %(count)s more") % {"count": len(places) - NAMES_SHOWN}
    return text
