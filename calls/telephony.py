"""The Twilio adapter: the only module that imports the twilio SDK.

It returns plain values, reads its settings at call time and raises the project's own
errors: `TelephonyUnavailable` when a retry may help (it has already been retried here, as
far as that is safe), `TelephonyRejected` when it cannot (invalid number, geo permissions,
bad credentials, the account's concurrency limit). It also signs and checks webhook
requests the way Twilio does, for Twilio itself and for the built-in sandbox carrier.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, TypeVar
from urllib.parse import urldefrag, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext_lazy as _
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance
from twilio.rest.api.v2010.account.incoming_phone_number import IncomingPhoneNumberInstance
from twilio.twiml.voice_response import Gather, VoiceResponse
from urllib3.exceptions import NewConnectionError

from callcenter.backoff import backoff_seconds, retry_after_seconds
from callcenter.metrics import DIAL_ERRORS

logger = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION_MODES = ("Enable", "DetectMessageEnd")

# Twilio error codes a dialer maps to an outcome (reference/twilio.md §9).
INVALID_NUMBER_CODES = frozenset({21211, 13224, 21217})
GEO_PERMISSION_CODE = 21215
CALLER_ID_CODES = frozenset({21210, 21212})
CONCURRENCY_LIMIT_CODE = 10004
AUTHENTICATION_CODE = 20003
TOO_MANY_REQUESTS_CODE = 20429

REASONS = {
    21211: _("The number to call is not valid."),
    13224: _(
        "The number to call is invalid or not supported: not in international format, "
        "nonexistent, premium rate, or without a carrier route."
    ),
    21215: _(
        "Calls to this country or number are not enabled in the account's Voice Geo Permissions."
    ),
    21217: _("The number to call is not a valid phone number."),
    21210: _("The caller number is not a Twilio number or verified caller ID of the account."),
    21212: _("The caller number is not valid."),
    10004: _("The account's limit of simultaneous calls was reached; try again when calls end."),
    20003: _("Twilio did not accept the credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)."),
}

# The sandbox carrier signs its webhooks with a key derived from SECRET_KEY under this salt.
SANDBOX_SIGNING_SALT = "calls.telephony.sandbox-webhook-token"

# Patched by tests so that backoff never waits.
_sleep = time.sleep


class TelephonyUnavailable(Exception):
    """A transient failure (429, 5xx, timeout, connection error) that outlived the retries.

    `possibly_created` is true when a call-creating request failed in a way that leaves
    Twilio's side unknown (a 5xx, a timeout, a connection lost after sending): the call
    may exist, so the caller reconciles instead of dialling again.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        status: int | None = None,
        code: int | None = None,
        possibly_created: bool = False,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.code = code
        self.possibly_created = possibly_created


class TelephonyRejected(Exception):
    """A permanent failure: Twilio refused the request and repeating it will not help.

    `status` is the HTTP status (0 when refused before sending), `code` Twilio's error
    code, `provider_message` Twilio's own words and `reason` a translated explanation.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None,
        provider_message: str,
        reason: str,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.provider_message = provider_message
        self.reason = reason

    @property
    def is_auth_failure(self) -> bool:
        """Bad TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN: every request will fail alike."""
        return self.code == AUTHENTICATION_CODE or self.status == 401

    @property
    def is_concurrency_limit(self) -> bool:
        """Too many live calls on the account (10004): back off and dial fewer at once."""
        return self.code == CONCURRENCY_LIMIT_CODE

    @property
    def is_invalid_number(self) -> bool:
        """The number called is not valid or not routable: the contact, not the campaign."""
        return self.code in INVALID_NUMBER_CODES

    @property
    def is_geo_permission(self) -> bool:
        """The destination is not enabled in the account's Voice Geo Permissions."""
        return self.code == GEO_PERMISSION_CODE


class TelephonyNotConfigured(TelephonyRejected):
    """A setting the request needs is not set; no request was made (`status` is 0)."""

    def __init__(self, missing: str) -> None:
        super().__init__(
            f"Twilio is not configured: {missing} is not set",
            status=0,
            code=None,
            provider_message="",
            reason=str(
                _("Twilio is not configured: %(setting)s is not set.") % {"setting": missing}
            ),
        )


@dataclass(frozen=True)
class ProviderCall:
    """A call as Twilio's Call resource describes it.

    `queue_time_ms` is how long Twilio held the call behind the account's CPS limit;
    `ended_at` when it ended (Twilio leaves it empty for a call that was not answered);
    `price` what Twilio charged, as it writes it (a negative string such as "-0.01300"),
    None until Twilio has priced the ended call (seconds to minutes after its end).
    The Call resource carries no error fields, so `error_code` and `error_message` stay
    empty here; they exist for callers that learn of errors elsewhere (status callbacks).
    """

    sid: str
    status: str
    queue_time_ms: int | None = None
    answered_by: str = ""
    duration: int | None = None
    price: str | None = None
    price_unit: str = ""
    error_code: int | None = None
    error_message: str = ""
    ended_at: datetime.datetime | None = None


@dataclass(frozen=True)
class ProviderAccount:
    """The Twilio account the credentials open: `status` is active, suspended or closed,
    `type` Trial or Full (the Account resource's enums)."""

    sid: str
    name: str
    status: str
    type: str


@dataclass(frozen=True)
class AccountNumbers:
    """The numbers a call of the account may come from, in E.164: its own phone numbers
    (IncomingPhoneNumbers) and its verified caller ids (OutgoingCallerIds)."""

    owned: frozenset[str]
    verified: frozenset[str]

    def allows(self, number: str) -> bool:
        """Whether Twilio takes `number` as a call's From (else it refuses with 21210)."""
        return number in self.owned or number in self.verified


# The largest page the list endpoints serve (PageSize's maximum in Twilio's spec): most
# accounts' numbers fit one request.
LIST_PAGE_SIZE = 1000


def is_configured() -> bool:
    """Whether Twilio credentials are set."""
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


def fetch_account(*, timeout: float | None = None, retries: int | None = None) -> ProviderAccount:
    """The account of TWILIO_ACCOUNT_SID, fetched with TWILIO_AUTH_TOKEN: proves that the
    credentials work. `timeout` and `retries` override TWILIO_TIMEOUT and
    TWILIO_MAX_RETRIES. Raises TelephonyRejected (401: refused credentials) or
    TelephonyUnavailable."""
    account = _call(
        "account fetch",
        lambda client: client.api.account.fetch(),
        timeout=timeout,
        retries=retries,
    )
    return ProviderAccount(
        sid=account.sid or "",
        name=account.friendly_name or "",
        status=str(account.status or ""),
        type=str(account.type or ""),
    )


def list_account_numbers(
    *, timeout: float | None = None, retries: int | None = None
) -> AccountNumbers:
    """Every phone number and verified caller id of the account, following the lists'
    pages (`timeout` applies to each page). Raises TelephonyRejected or
    TelephonyUnavailable."""
    owned = _call(
        "phone number listing",
        lambda client: [
            number.phone_number
            for number in client.api.account.incoming_phone_numbers.list(page_size=LIST_PAGE_SIZE)
            if number.phone_number
        ],
        timeout=timeout,
        retries=retries,
    )
    verified = _call(
        "caller id listing",
        lambda client: [
            caller_id.phone_number
            for caller_id in client.api.account.outgoing_caller_ids.list(page_size=LIST_PAGE_SIZE)
            if caller_id.phone_number
        ],
        timeout=timeout,
        retries=retries,
    )
    return AccountNumbers(owned=frozenset(owned), verified=frozenset(verified))


def create_call(
    *,
    to: str,
    from_: str | None = None,
    url: str,
    fallback_url: str,
    status_callback: str,
    status_callback_events: Iterable[str] = STATUS_CALLBACK_EVENTS,
    machine_detection: str | None = "DetectMessageEnd",
    async_amd_callback: str,
    timeout: int,
    time_limit: int,
    record: bool,
    recording_status_callback: str | None = None,
    sandbox_persona: str | None = None,
) -> ProviderCall:
    """Ask Twilio to dial `to` from `from_` (TWILIO_PHONE_NUMBER when None).

    Answering-machine detection runs in the background (`AsyncAmd`), so the greeting
    starts at once and the verdict arrives at `async_amd_callback`; `machine_detection=None`
    turns it off. Raises TelephonyRejected or TelephonyUnavailable (see `possibly_created`),
    each counted in `callcenter_dial_errors_total`. With TELEPHONY_BACKEND=sandbox the
    sandbox carrier takes the same request and plays `sandbox_persona` (None: one chosen
    by the number); Twilio ignores it.
    """
    events = list(status_callback_events)
    unknown = [event for event in events if event not in STATUS_CALLBACK_EVENTS]
    if unknown:
        raise ValueError(f"unknown status callback events: {unknown}")
    if machine_detection is not None and machine_detection not in MACHINE_DETECTION_MODES:
        raise ValueError(f"machine_detection must be one of {MACHINE_DETECTION_MODES}")
    caller = from_ or settings.TWILIO_PHONE_NUMBER
    if not caller:
        error = TelephonyNotConfigured("TWILIO_PHONE_NUMBER")
        _count_dial_error(error)
        raise error

    parameters: dict[str, object] = {
        "to": to,
        "from_": caller,
        "url": url,
        "method": "POST",
        "fallback_url": fallback_url,
        "fallback_method": "POST",
        "status_callback": status_callback,
        # The SDK sends each event as its own StatusCallbackEvent parameter, as Twilio wants.
        "status_callback_event": events,
        "status_callback_method": "POST",
        "timeout": timeout,
        "time_limit": time_limit,
    }
    if machine_detection is not None:
        parameters.update(
            machine_detection=machine_detection,
            async_amd="true",
            async_amd_status_callback=async_amd_callback,
            async_amd_status_callback_method="POST",
        )
    if record:
        parameters["record"] = True
        if recording_status_callback:
            parameters.update(
                recording_status_callback=recording_status_callback,
                recording_status_callback_method="POST",
            )

    try:
        if (carrier := _sandbox()) is not None:
            return carrier.create_call(_wire_parameters(parameters), persona=sandbox_persona)
        call = _call(
            "call creation",
            lambda client: client.api.account.calls.create(**parameters),
            creates_call=True,
        )
    except (TelephonyRejected, TelephonyUnavailable) as exc:
        _count_dial_error(exc)
        raise
    return _provider_call(call)


def is_simulated_deployment() -> bool:
    """Whether a staging or production deployment runs on the sandbox carrier, which places
    no real calls: the admin and /health say so (in development it is the usual case)."""
    return settings.TELEPHONY_BACKEND == "sandbox" and settings.APP_ENV in ("staging", "production")


def _sandbox() -> ModuleType | None:
    """The sandbox carrier when TELEPHONY_BACKEND=sandbox (imported here: it uses this module)."""
    if settings.TELEPHONY_BACKEND != "sandbox":
        return None
    from calls import sandbox

    return sandbox


def _wire_parameters(parameters: Mapping[str, object]) -> dict[str, str | list[str]]:
    """The SDK's keyword arguments as the form Twilio receives: `status_callback_event`
    becomes repeated `StatusCallbackEvent`, `from_` becomes `From`, True becomes "true"."""
    wire: dict[str, str | list[str]] = {}
    for name, value in parameters.items():
        key = "".join(part.capitalize() for part in name.rstrip("_").split("_"))
        if isinstance(value, list | tuple):
            wire[key] = [str(item) for item in value]
        elif isinstance(value, bool):
            wire[key] = "true" if value else "false"
        else:
            wire[key] = str(value)
    return wire


def _count_dial_error(error: TelephonyRejected | TelephonyUnavailable) -> None:
    """Count a failed call creation in `callcenter_dial_errors_total` by Twilio's code."""
    if isinstance(error, TelephonyUnavailable):
        code = "unavailable"
    elif isinstance(error, TelephonyNotConfigured):
        code = "not_configured"
    elif error.code:
        code = str(error.code)
    else:
        code = f"http_{error.status}"
    DIAL_ERRORS.labels(code=code).inc()


def fetch_call(*, sid: str) -> ProviderCall:
    """The call `sid` as Twilio has it now (its price too, once Twilio has priced it).

    Raises TelephonyRejected (404 for a SID Twilio does not know) or TelephonyUnavailable.
    """
    if (carrier := _sandbox()) is not None:
        return carrier.fetch_call(sid)
    call = _call("call fetch", lambda client: client.api.account.calls(sid).fetch())
    return _provider_call(call)


def hang_up(*, sid: str) -> ProviderCall:
    """End the call `sid` by setting its Status to completed."""
    if (carrier := _sandbox()) is not None:
        return carrier.update_call(sid, status="completed")
    # Repeating a hang-up is harmless, so every transient failure is retried.
    call = _call("hang-up", lambda client: client.api.account.calls(sid).update(status="completed"))
    return _provider_call(call)


def redirect_call(*, sid: str, url: str) -> ProviderCall:
    """Make the live call `sid` run the TwiML at `url` now (the voicemail after AMD)."""
    # Retried like a fetch: if a lost answer hid a redirect that worked, the repeat only
    # restarts the same TwiML a moment later, which beats a machine hearing the dialogue.
    if (carrier := _sandbox()) is not None:
        return carrier.update_call(sid, url=url, method="POST")
    call = _call(
        "redirect",
        lambda client: client.api.account.calls(sid).update(url=url, method="POST"),
    )
    return _provider_call(call)


def find_calls(
    *, to: str, from_: str | None, created_after: datetime.datetime, limit: int = 20
) -> list[ProviderCall]:
    """Twilio's calls to `to` from `from_` (TWILIO_PHONE_NUMBER when None) created after
    `created_after`, newest first: how a call whose creation answer was lost is found."""
    caller = from_ or settings.TWILIO_PHONE_NUMBER
    if settings.TELEPHONY_BACKEND == "sandbox":
        from calls import sandbox

        return sandbox.find_calls(to=to, from_=caller, created_after=created_after)
    calls = _call(
        "call lookup",
        lambda client: client.api.account.calls.list(
            to=to, from_=caller, limit=limit, page_size=limit
        ),
    )
    return [
        _provider_call(call)
        for call in calls
        if call.date_created is None or call.date_created >= created_after
    ]


@dataclass(frozen=True)
class IncomingNumber:
    """One of the account's phone numbers (Twilio's IncomingPhoneNumber): where its calls go.

    A number with a `voice_application_sid` or a `trunk_sid` ignores its voice URLs
    (Twilio's IncomingPhoneNumber resource: the application or the trunk takes its calls).
    """

    sid: str
    phone_number: str
    voice_url: str = ""
    voice_method: str = ""
    voice_fallback_url: str = ""
    status_callback: str = ""
    voice_application_sid: str = ""
    trunk_sid: str = ""


def incoming_numbers(
    *, timeout: float | None = None, retries: int | None = None
) -> list[IncomingNumber]:
    """The account's phone numbers with where each sends its calls, following the list's
    pages (`timeout` applies to each page). Raises TelephonyRejected or
    TelephonyUnavailable."""
    return _call(
        "phone number listing",
        lambda client: [
            _incoming_number(number)
            for number in client.api.account.incoming_phone_numbers.list(page_size=LIST_PAGE_SIZE)
        ],
        timeout=timeout,
        retries=retries,
    )


def point_number(
    *,
    sid: str,
    voice_url: str,
    fallback_url: str,
    status_callback: str,
    timeout: float | None = None,
    retries: int | None = None,
) -> IncomingNumber:
    """Send the calls of the account's number `sid` to `voice_url` (its TwiML),
    `fallback_url` (when that fails) and `status_callback` (the call's end), each by POST.
    Repeating it is harmless. Raises TelephonyRejected or TelephonyUnavailable."""
    number = _call(
        "phone number update",
        lambda client: client.api.account.incoming_phone_numbers(sid).update(
            voice_url=voice_url,
            voice_method="POST",
            voice_fallback_url=fallback_url,
            voice_fallback_method="POST",
            status_callback=status_callback,
            status_callback_method="POST",
        ),
        timeout=timeout,
        retries=retries,
    )
    return _incoming_number(number)


def _incoming_number(number: IncomingPhoneNumberInstance) -> IncomingNumber:
    return IncomingNumber(
        sid=number.sid or "",
        phone_number=number.phone_number or "",
        voice_url=number.voice_url or "",
        voice_method=number.voice_method or "",
        voice_fallback_url=number.voice_fallback_url or "",
        status_callback=number.status_callback or "",
        voice_application_sid=number.voice_application_sid or "",
        trunk_sid=number.trunk_sid or "",
    )


def url_with_retries(url: str, *, retry_count: int = 3) -> str:
    """`url` with Twilio's connection override `#rc=N`: retry a failed webhook N times.

    Other override parameters already in the fragment (`ct`, `rp`, ...) are kept.
    """
    if not 0 <= retry_count <= 5:
        raise ValueError("Twilio accepts a retry count from 0 to 5")
    base, fragment = urldefrag(url)
    parts = [part for part in fragment.split("&") if part and part.split("=", 1)[0] != "rc"]
    return f"{base}#{'&'.join([f'rc={retry_count}', *parts])}"


# --- Webhook signatures -----------------------------------------------------------------


def webhook_auth_token() -> str:
    """The key webhooks are signed with: Twilio's auth token, or the sandbox carrier's.

    The sandbox key is derived from SECRET_KEY, so it is secret and stable for a deployment
    without another setting.
    """
    if settings.TELEPHONY_BACKEND == "sandbox":
        return salted_hmac(SANDBOX_SIGNING_SALT, "webhooks", algorithm="sha256").hexdigest()
    if not settings.TWILIO_AUTH_TOKEN:
        raise TelephonyNotConfigured("TWILIO_AUTH_TOKEN")
    return settings.TWILIO_AUTH_TOKEN


def sign_request(
    *, url: str, params: Mapping[str, str | list[str]], keep_fragment: bool = False
) -> str:
    """The X-Twilio-Signature Twilio would send with a form POST of `params` to `url`.

    Twilio does not document whether it signs a URL's connection-override fragment
    (`#rc=3`) or not: by default it is left out, with `keep_fragment` it is signed too, so
    that a carrier imitating Twilio can sign either way.
    """
    validator = RequestValidator(webhook_auth_token())
    signed = url if keep_fragment else _signed_url(url)
    return validator.compute_signature(signed, _multi_value(params))


def signature_is_valid(
    *, url: str, params: Mapping[str, str | list[str]], signature: str | None
) -> bool:
    """Whether `signature` (X-Twilio-Signature) signs a form POST of `params` to `url`.

    `url` is the full public URL that was called, query included; a Django QueryDict
    works as `params`, repeated names too. Given the URL with its connection-override
    fragment, a signature of the URL with or without it is accepted (Twilio's documents do
    not say which it signs; the SDK's validator likewise tries with and without the port).
    """
    if not signature:
        return False
    try:
        token = webhook_auth_token()
    except TelephonyNotConfigured:
        # An empty key would accept signatures anyone can compute.
        logger.error("Twilio webhook refused: TWILIO_AUTH_TOKEN is not set")
        return False
    validator = RequestValidator(token)
    multi = _multi_value(params)
    return any(
        validator.validate(candidate, multi, signature)
        for candidate in dict.fromkeys([url, _signed_url(url)])
    )


def _signed_url(url: str) -> str:
    # A fragment (Twilio's connection overrides) never reaches the server: the URL the
    # server sees.
    return urldefrag(url).url


def _multi_value(params: Mapping[str, str | list[str]]) -> MultiValueDict:
    """`params` with every value a list; the validator reads repeated names by getlist()."""
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        return MultiValueDict({name: list(getlist(name)) for name in params})
    return MultiValueDict(
        {
            name: list(value) if isinstance(value, list | tuple) else [value]
            for name, value in params.items()
        }
    )


# --- Requests and retries ---------------------------------------------------------------


def _call(
    action: str,
    request: Callable[[Client], T],
    *,
    creates_call: bool = False,
    timeout: float | None = None,
    retries: int | None = None,
) -> T:
    """Run `request` with a configured client, retrying transient failures with backoff
    (`timeout` and `retries`, when given, instead of TWILIO_TIMEOUT and TWILIO_MAX_RETRIES).

    Twilio never processes a request it answers with 429, and one that could not connect
    never left this machine, so those are always retried. After a 5xx, a timeout or a
    connection lost mid-request Twilio may have acted on it: fetches and updates are
    retried (repeating them is harmless), but a call creation is not, because a second
    request could ring the same person twice. It raises TelephonyUnavailable with
    `possibly_created=True` and the caller reconciles.
    """
    if not is_configured():
        raise TelephonyNotConfigured("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    client, http_client = _client(
        account_sid=settings.TWILIO_ACCOUNT_SID,
        auth_token=settings.TWILIO_AUTH_TOKEN,
        base_url=settings.TWILIO_API_BASE_URL,
        timeout=float(settings.TWILIO_TIMEOUT if timeout is None else timeout),
    )
    attempts = 1 + max(0, int(settings.TWILIO_MAX_RETRIES if retries is None else retries))
    for attempt in range(1, attempts + 1):
        retry_after: float | None = None
        status: int | None = None
        code: int | None = None
        try:
            return request(client)
        except TwilioException as exc:
            refusal = _refusal(exc)
            error: Exception = exc
            if refusal is None:
                # Neither an error answer nor a success the SDK could read.
                problem = f"unreadable response: {exc}"
                safe_to_repeat = not creates_call
            else:
                status, code, provider_message = _error_details(refusal)
                too_many = status == 429 or code == TOO_MANY_REQUESTS_CODE
                # A mapped code is an answer, whatever the status: 10004 means "fewer
                # calls", which is the dialer's decision, not a reason to repeat this.
                if code in REASONS or (status < 500 and not too_many):
                    raise _rejected(action, status, code, provider_message) from exc
                problem = f"HTTP {status}" + (f", error {code}" if code else "")
                problem += f": {provider_message}"
                if too_many:
                    retry_after = retry_after_seconds(http_client.last_response_headers)
                safe_to_repeat = too_many or not creates_call
        except requests.RequestException as exc:
            problem = f"{type(exc).__name__}: {exc}"
            safe_to_repeat = _failed_before_sending(exc) or not creates_call
            error = exc
        except json.JSONDecodeError as exc:
            # A success status with a body that is not Twilio's JSON (a proxy's page).
            problem = f"unreadable response: {exc}"
            safe_to_repeat = not creates_call
            error = exc
        if not safe_to_repeat:
            raise TelephonyUnavailable(
                f"Twilio {action} failed and may have succeeded ({problem}); not repeated",
                attempts=attempt,
                status=status,
                code=code,
                possibly_created=True,
            ) from error
        if attempt == attempts:
            raise TelephonyUnavailable(
                f"Twilio {action} failed after {attempts} attempt(s): {problem}",
                attempts=attempts,
                status=status,
                code=code,
            ) from error
        delay = backoff_seconds(attempt, retry_after)
        logger.warning(
            "Twilio %s failed (%s), attempt %d of %d; retrying in %.1fs",
            action,
            problem,
            attempt,
            attempts,
            delay,
        )
        _sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class _HttpClient(TwilioHttpClient):
    """Twilio's HTTP client, sending every request to one base URL.

    The SDK names its hosts itself (`api.twilio.com`, rewritten further by edge and
    region); rebasing here, where every REST request passes, sends them all to
    TWILIO_API_BASE_URL, so a regional edge or a test's fake server takes all traffic.
    It also keeps the last response's headers per thread: the SDK's exceptions drop them,
    and a 429's Retry-After is among them.
    """

    def __init__(self, *, base_url: str, timeout: float) -> None:
        # requests' adapters make no retries of their own: the loop in `_call` is the only
        # one, and it knows which requests are safe to repeat.
        super().__init__(timeout=timeout)
        self.base_url = urlsplit(base_url)
        self._local = threading.local()

    @property
    def last_response_headers(self) -> Mapping[str, str]:
        return getattr(self._local, "headers", {})

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self._local.headers = {}
        parts = urlsplit(url)
        base = self.base_url
        rebased = urlunsplit(
            (base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, "")
        )
        response = super().request(
            method,
            rebased,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._local.headers = dict(response.headers or {})
        return response


@functools.lru_cache(maxsize=4)
def _client(
    *, account_sid: str, auth_token: str, base_url: str, timeout: float
) -> tuple[Client, _HttpClient]:
    # One client per configuration keeps its connection pool (no new TLS handshake per
    # request); settings are still read on every call.
    http_client = _HttpClient(base_url=base_url, timeout=timeout)
    return Client(account_sid, auth_token, http_client=http_client), http_client


def _failed_before_sending(exc: requests.RequestException) -> bool:
    """Whether the connection could not be opened, so no byte of the request was sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)  # urllib3's MaxRetryError
        # Refused connections and failed name lookups (NameResolutionError is a subclass).
        return isinstance(reason, NewConnectionError)
    return False


def _refusal(exc: TwilioException) -> TwilioRestException | TwilioServiceException | None:
    """The error answer behind an SDK exception; None when there was none to read.

    A list's page that is not a 200 raises the SDK's base exception with only the response
    (twilio/base/page.py, `Page.process_response`): its status and Twilio's error JSON
    are read from it here, so that a listing fails as any other request does.
    """
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        return exc
    response = exc.args[1] if len(exc.args) > 1 else None
    if not isinstance(response, Response):
        return None
    try:
        body = json.loads(response.text)
    except (TypeError, ValueError):
        body = None
    if not isinstance(body, dict):
        body = {"message": str(response.text or "")[:200]}
    code = body.get("code")
    return TwilioRestException(
        response.status_code,
        "",
        msg=str(body.get("message") or ""),
        code=code if isinstance(code, int) else None,
    )


def _error_details(
    exc: TwilioRestException | TwilioServiceException,
) -> tuple[int, int | None, str]:
    """HTTP status, Twilio error code and Twilio's message of an SDK error."""
    status = int(exc.status or 0)
    code = exc.code if isinstance(exc.code, int) else None
    if isinstance(exc, TwilioServiceException):
        message = exc.detail or exc.title or ""
    else:
        # The SDK prefixes Twilio's message with its own ("Unable to create record: ...").
        message = str(exc.msg or "")
        prefix, separator, rest = message.partition(": ")
        if separator and prefix.startswith("Unable to"):
            message = rest
    return status, code, message[:500] or "no message"


def _rejected(
    action: str, status: int, code: int | None, provider_message: str
) -> TelephonyRejected:
    if code in REASONS:
        reason = str(REASONS[code])
    elif status == 401:
        reason = str(REASONS[AUTHENTICATION_CODE])
    elif code:
        reason = str(
            _("Twilio refused the request (error %(code)s): %(message)s")
            % {"code": code, "message": provider_message}
        )
    else:
        reason = str(
            _("Twilio refused the request (HTTP %(status)s): %(message)s")
            % {"status": status, "message": provider_message}
        )
    return TelephonyRejected(
        f"Twilio rejected the {action} (HTTP {status}, error {code}): {provider_message}",
        status=status,
        code=code,
        provider_message=provider_message,
        reason=reason,
    )


def _provider_call(call: CallInstance) -> ProviderCall:
    return ProviderCall(
        sid=call.sid or "",
        status=str(call.status or ""),
        queue_time_ms=_integer(call.queue_time),
        answered_by=call.answered_by or "",
        duration=_integer(call.duration),
        price=call.price or None,
        price_unit=call.price_unit or "",
        ended_at=call.end_time if isinstance(call.end_time, datetime.datetime) else None,
    )


def _integer(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


# --- TwiML ------------------------------------------------------------------------------


class Spoken(Protocol):
    """A line to speak: <Play> `url` when set, else <Say> `text` in `language`."""

    text: str
    language: str
    url: str


def _speak(verb: VoiceResponse | Gather, line: Spoken) -> None:
    if line.url:
        verb.play(line.url)
    elif line.text:
        # Twilio's <Say> defaults to en-US: the language is always given, and the voice
        # for it (TWILIO_SAY_VOICES) where one is named.
        voice = settings.TWILIO_SAY_VOICES.get(line.language)
        verb.say(line.text, language=line.language, **({"voice": voice} if voice else {}))


def gather_twiml(
    *,
    lines: Iterable[Spoken],
    action: str,
    language: str,
    no_input_url: str,
    timeout: int = 5,
    hints: str = "",
) -> str:
    """Speak `lines` while listening (speech or keys), post the answer to `action`; with
    no answer, Twilio goes on to the <Redirect> to `no_input_url`.

    The speech language is always set (Twilio's default is en-US). `speechTimeout=auto`
    needs a speech model other than `default` (warning 13335), hence `phone_call`.
    """
    response = VoiceResponse()
    gather = response.gather(
        input="speech dtmf",
        action=action,
        method="POST",
        language=language,
        timeout=timeout,
        speech_timeout="auto",
        speech_model="phone_call",
        num_digits=1,
        action_on_empty_result=False,
        **({"hints": hints} if hints else {}),
    )
    for line in lines:
        _speak(gather, line)
    response.redirect(no_input_url, method="POST")
    return str(response)


def hang_up_twiml(*, lines: Iterable[Spoken] = ()) -> str:
    """Speak `lines`, then end the call."""
    response = VoiceResponse()
    for line in lines:
        _speak(response, line)
    response.hangup()
    return str(response)


def transfer_twiml(
    *, lines: Iterable[Spoken], number: str, caller_id: str, timeout: int, action: str
) -> str:
    """Speak `lines`, then connect the callee to `number`; `action` hears how it went."""
    response = VoiceResponse()
    for line in lines:
        _speak(response, line)
    response.dial(
        number, caller_id=caller_id or None, timeout=timeout, action=action, method="POST"
    )
    return str(response)


def fallback_twiml(*, lines: Iterable[Spoken], action: str, goodbye: Spoken) -> str:
    """Speak `lines` while waiting for one key (posted to `action`); with none, speak
    `goodbye` and end the call."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, timeout=5, action=action, method="POST")
    for line in lines:
        _speak(gather, line)
    _speak(response, goodbye)
    response.hangup()
    return str(response)


def message_twiml(
    *,
    lines: Iterable[Spoken],
    goodbye: Iterable[Spoken],
    opt_out_action: str = "",
    transfer_lines: Iterable[Spoken] = (),
    transfer_to: str = "",
    caller_id: str = "",
    timeout: int = 30,
) -> str:
    """A short message to someone who rang us: speak `lines`, listening meanwhile for one
    key posted to `opt_out_action` (when given); then, with `transfer_to`, speak
    `transfer_lines` and put them through to it (TwiML goes on after the <Dial> once it
    ends); last speak `goodbye` and end the call."""
    response = VoiceResponse()
    if opt_out_action:
        gather = response.gather(
            input="dtmf", num_digits=1, timeout=5, action=opt_out_action, method="POST"
        )
        for line in lines:
            _speak(gather, line)
    else:
        for line in lines:
            _speak(response, line)
    if transfer_to:
        for line in transfer_lines:
            _speak(response, line)
        response.dial(transfer_to, caller_id=caller_id or None, timeout=timeout)
    for line in goodbye:
        _speak(response, line)
    response.hangup()
    return str(response)


def hold_twiml(*, lines: Iterable[Spoken], retry_url: str) -> str:
    """Speak `lines` (a holding line), then fetch `retry_url` for what comes next."""
    response = VoiceResponse()
    for line in lines:
        _speak(response, line)
    response.redirect(retry_url, method="POST")
    return str(response)


def interruptible_twiml(
    *, lines: Iterable[Spoken], action: str, language: str, next_url: str
) -> str:
    """Speak `lines` (the start of a reply) while listening, so that the callee can speak
    over them (their words are posted to `action`), then fetch `next_url` for the rest.

    The <Gather> waits one second after the lines (its `timeout` takes whole seconds,
    one the least) for the callee to start speaking; nothing heard, Twilio goes on to
    the <Redirect>.
    """
    response = VoiceResponse()
    gather = response.gather(
        input="speech dtmf",
        action=action,
        method="POST",
        language=language,
        timeout=1,
        speech_timeout="auto",
        speech_model="phone_call",
        num_digits=1,
        action_on_empty_result=False,
    )
    for line in lines:
        _speak(gather, line)
    response.redirect(next_url, method="POST")
    return str(response)


def pause_twiml(*, seconds: int, next_url: str) -> str:
    """Keep the line open `seconds` in silence, then fetch `next_url`."""
    response = VoiceResponse()
    response.pause(length=seconds)
    response.redirect(next_url, method="POST")
    return str(response)


# --- Recordings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingAudio:
    content: bytes
    content_type: str


def recording_audio(url: str) -> RecordingAudio:
    """The audio of the recording at `url` (a RecordingUrl from a signed callback),
    fetched with the account's credentials so that recordings need not be public.

    Only URLs of the account's own API (or the sandbox carrier's, under APP_URL) are
    fetched: the credentials go nowhere else. Raises TelephonyRejected (unknown, refused,
    not ours) or TelephonyUnavailable.
    """
    if settings.TELEPHONY_BACKEND == "sandbox":
        from calls import sandbox

        base, auth, extension = (
            settings.APP_URL,
            (sandbox.ACCOUNT_SID, webhook_auth_token()),
            ".wav",
        )
    else:
        base = settings.TWILIO_API_BASE_URL
        auth = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
        extension = ".mp3"
    if urlsplit(url)[:2] != urlsplit(base)[:2]:
        raise _rejected("recording fetch", 0, None, "the recording is not on the account's API")
    try:
        response = requests.get(url + extension, auth=auth, timeout=float(settings.TWILIO_TIMEOUT))
    except requests.RequestException as exc:
        raise TelephonyUnavailable(f"recording fetch failed: {exc}", attempts=1) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise TelephonyUnavailable(
            f"recording fetch: HTTP {response.status_code}", attempts=1, status=response.status_code
        )
    if response.status_code != 200:
        raise _rejected("recording fetch", response.status_code, None, response.text[:200])
    content_type = response.headers.get("Content-Type", "audio/mpeg").split(";")[0]
    return RecordingAudio(content=response.content, content_type=content_type)
