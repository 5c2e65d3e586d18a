"""The Twilio backend: the only module that imports the twilio SDK.

It returns plain values, reads its settings at call time and raises the project's own
errors: `TelephonyUnavailable` when a retry may help (it has already been retried here, as
far as that is safe), `TelephonyRejected` when it cannot (invalid number, geo permissions,
bad credentials, the account's concurrency limit). The account functions (`fetch_account`,
`incoming_numbers`...) speak to the Twilio account of the credentials whatever the backend
in use: preflight checks it. The SDK's TwiML builder and webhook validator are handed on
from here to `twiml` and `signatures`, which both carriers use.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator as RequestValidator
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance
from twilio.rest.api.v2010.account.incoming_phone_number import IncomingPhoneNumberInstance
from twilio.twiml.voice_response import Gather as Gather
from twilio.twiml.voice_response import VoiceResponse as VoiceResponse
from urllib3.exceptions import NewConnectionError

from callcenter.backoff import backoff_seconds, retry_after_seconds
from callcenter.text import truncate
from calls.telephony.base import (
    REASONS,
    TOO_MANY_REQUESTS_CODE,
    AccountNumbers,
    IncomingNumber,
    ProviderAccount,
    ProviderCall,
    RecordingAudio,
    TelephonyBackend,
    TelephonyNotConfigured,
    TelephonyRejected,
    TelephonyUnavailable,
    fetch_recording,
    rejected,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Patched by tests so that backoff never waits.
_sleep = time.sleep

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


class TwilioBackend(TelephonyBackend):
    """Calls through Twilio's REST API, with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."""

    def create_call(
        self, parameters: Mapping[str, object], *, persona: str | None = None
    ) -> ProviderCall:
        # Twilio plays no simulated callee: `persona` is the sandbox's alone.
        call = _call(
            "call creation",
            lambda client: client.api.account.calls.create(**parameters),
            creates_call=True,
        )
        return _provider_call(call)

    def fetch_call(self, *, sid: str) -> ProviderCall:
        call = _call("call fetch", lambda client: client.api.account.calls(sid).fetch())
        return _provider_call(call)

    def hang_up(self, *, sid: str) -> ProviderCall:
        # Repeating a hang-up is harmless, so every transient failure is retried.
        call = _call(
            "hang-up", lambda client: client.api.account.calls(sid).update(status="completed")
        )
        return _provider_call(call)

    def redirect_call(self, *, sid: str, url: str) -> ProviderCall:
        # Retried like a fetch: if a lost answer hid a redirect that worked, the repeat only
        # restarts the same TwiML a moment later, which beats a machine hearing the dialogue.
        call = _call(
            "redirect",
            lambda client: client.api.account.calls(sid).update(url=url, method="POST"),
        )
        return _provider_call(call)

    def find_calls(
        self, *, to: str, from_: str, created_after: datetime.datetime, limit: int
    ) -> list[ProviderCall]:
        calls = _call(
            "call lookup",
            lambda client: client.api.account.calls.list(
                to=to, from_=from_, limit=limit, page_size=limit
            ),
        )
        return [
            _provider_call(call)
            for call in calls
            if call.date_created is None or call.date_created >= created_after
        ]

    def webhook_auth_token(self) -> str:
        if not settings.TWILIO_AUTH_TOKEN:
            raise TelephonyNotConfigured("TWILIO_AUTH_TOKEN")
        return settings.TWILIO_AUTH_TOKEN

    def recording_audio(self, url: str) -> RecordingAudio:
        # Recordings need not be public: they are fetched with the account's credentials,
        # from the account's own API only.
        return fetch_recording(
            url,
            base=settings.TWILIO_API_BASE_URL,
            auth=(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN),
            extension=".mp3",
        )

    def recording_media(self, *, sid: str) -> RecordingAudio:
        # The Recording resource (GET .../Recordings/{Sid}.json) through the SDK, then its
        # media: the resource's URI without ".json", plus ".mp3"
        # (https://www.twilio.com/docs/voice/api/recording#fetch-a-recording-media-file),
        # from the account's own API and with its credentials.
        recording = _call(
            "recording fetch", lambda client: client.api.account.recordings(sid).fetch()
        )
        uri = (recording.uri or "").removesuffix(".json")
        base = str(settings.TWILIO_API_BASE_URL).rstrip("/")
        return fetch_recording(
            base + uri,
            base=base,
            auth=(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN),
            extension=".mp3",
        )

    def delete_recording(self, *, sid: str) -> bool:
        # DELETE .../Recordings/{Sid}.json answers 204; an unknown (or already deleted)
        # recording 404 with error 20404
        # (https://www.twilio.com/docs/voice/api/recording#delete-a-recording-resource).
        # Repeating a delete is harmless, so transient failures are retried.
        try:
            _call("recording deletion", lambda client: client.api.account.recordings(sid).delete())
        except TelephonyRejected as error:
            if error.is_not_found:
                return False
            raise
        return True

    def start_recording(self, *, call_sid: str, status_callback: str) -> str:
        # "Create a Recording resource" of a live call: POST .../Calls/{CallSid}/Recordings.json
        # (https://www.twilio.com/docs/voice/api/recording#create-a-recording-resource).
        # Not repeated after a failure that may have reached Twilio (a second recording of
        # the same call would be made), as a call creation is not.
        recording = _call(
            "recording start",
            lambda client: client.api.account.calls(call_sid).recordings.create(
                recording_status_callback=status_callback,
                recording_status_callback_method="POST",
                recording_status_callback_event=["completed"],
            ),
            creates_call=True,
        )
        return recording.sid or ""


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
                    raise rejected(action, status, code, provider_message) from exc
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
    return status, code, truncate(message) or "no message"


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
