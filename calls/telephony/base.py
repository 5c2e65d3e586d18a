"""What every telephony backend shares: its errors, the values it returns, and the
`TelephonyBackend` base class both carriers (Twilio, the sandbox) implement.

Both speak Twilio's protocol, so its error codes are the codes here. Nothing in this module
imports a vendor SDK or a backend.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.urls import URLPattern

    from campaigns.models import Campaign, Contact

STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION_MODES = ("Enable", "DetectMessageEnd")

# Twilio error codes a dialer maps to an outcome (https://www.twilio.com/docs/api/errors).
INVALID_NUMBER_CODES = frozenset({21211, 13224, 21217})
GEO_PERMISSION_CODE = 21215
CALLER_ID_CODES = frozenset({21210, 21212})
CONCURRENCY_LIMIT_CODE = 10004
NOT_IN_PROGRESS_CODE = 21220
NOT_FOUND_CODE = 20404
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
    def is_not_found(self) -> bool:
        """The carrier has no such resource (404, 20404): gone, or never there."""
        return self.status == 404 or self.code == NOT_FOUND_CODE

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


def rejected(
    action: str, status: int, code: int | None, provider_message: str
) -> TelephonyRejected:
    """The TelephonyRejected for a refused `action`, its reason in the operator's words."""
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


@dataclass(frozen=True)
class RecordingAudio:
    """A recording's audio as the carrier serves it, and its media type."""

    content: bytes
    content_type: str


def fetch_recording(
    url: str, *, base: str, auth: tuple[str, str], extension: str
) -> RecordingAudio:
    """The audio at `url` + `extension`, fetched with `auth`; only a URL under `base` (the
    carrier's API) is fetched, so the credentials go nowhere else. Raises TelephonyRejected
    (unknown, refused, not ours) or TelephonyUnavailable."""
    if urlsplit(url)[:2] != urlsplit(base)[:2]:
        raise rejected("recording fetch", 0, None, "the recording is not on the account's API")
    try:
        response = requests.get(url + extension, auth=auth, timeout=float(settings.TWILIO_TIMEOUT))
    except requests.RequestException as exc:
        raise TelephonyUnavailable(f"recording fetch failed: {exc}", attempts=1) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise TelephonyUnavailable(
            f"recording fetch: HTTP {response.status_code}", attempts=1, status=response.status_code
        )
    if response.status_code != 200:
        raise rejected("recording fetch", response.status_code, None, response.text[:200])
    content_type = response.headers.get("Content-Type", "audio/mpeg").split(";")[0]
    return RecordingAudio(content=response.content, content_type=content_type)


class TelephonyBackend(abc.ABC):
    """A carrier that places and controls calls the way Twilio's REST API does.

    TELEPHONY_BACKEND names the one in use (`calls.telephony.backend()`). `parameters` of
    `create_call` are the keyword arguments of Twilio's SDK (`to`, `from_`, `url`,
    `status_callback_event`...), already checked. A backend raises TelephonyRejected and
    TelephonyUnavailable, never its transport's own errors.

    The capabilities past the REST calls have defaults for a carrier that lacks them:
    `simulated` (it reaches no phone), `rings_our_numbers` (it can make a call to one of
    our numbers itself, `ring_in` and `ring_back`), its own URL routes, and the simulated
    callee it plays for a contact (`callee_persona`).
    """

    simulated: ClassVar[bool] = False
    rings_our_numbers: ClassVar[bool] = False

    @abc.abstractmethod
    def create_call(
        self, parameters: Mapping[str, object], *, persona: str | None = None
    ) -> ProviderCall:
        """Dial a call as `parameters` say; `persona` is the simulated callee (if any)."""

    @abc.abstractmethod
    def fetch_call(self, *, sid: str) -> ProviderCall:
        """The call `sid` as the carrier has it now."""

    @abc.abstractmethod
    def hang_up(self, *, sid: str) -> ProviderCall:
        """End the call `sid`."""

    @abc.abstractmethod
    def redirect_call(self, *, sid: str, url: str) -> ProviderCall:
        """Make the live call `sid` run the TwiML at `url` now."""

    @abc.abstractmethod
    def find_calls(
        self, *, to: str, from_: str, created_after: datetime.datetime, limit: int
    ) -> list[ProviderCall]:
        """Calls to `to` from `from_` created after `created_after`, newest first."""

    @abc.abstractmethod
    def webhook_auth_token(self) -> str:
        """The key the carrier signs its webhook requests with."""

    @abc.abstractmethod
    def recording_audio(self, url: str) -> RecordingAudio:
        """The audio of the recording at `url` (a RecordingUrl of a signed callback)."""

    @abc.abstractmethod
    def recording_media(self, *, sid: str) -> RecordingAudio:
        """The audio of the recording `sid` (its Recording resource's media); an unknown
        or deleted recording raises TelephonyRejected with `status` 404."""

    @abc.abstractmethod
    def delete_recording(self, *, sid: str) -> bool:
        """Delete the recording `sid` at the carrier; False when it was already gone."""

    @abc.abstractmethod
    def start_recording(self, *, call_sid: str, status_callback: str) -> str:
        """Start recording the live call `call_sid` now; the new recording's SID. Its
        status callbacks go to `status_callback` (by POST). A call that is not in
        progress is refused (TelephonyRejected, Twilio's 21220)."""

    def urlpatterns(self) -> list[URLPattern]:
        """Routes the carrier serves in this app (mounted under calls: at start-up)."""
        return []

    def callee_persona(
        self, contact: Contact, campaign: Campaign | None = None, *, attempt: int | None = None
    ) -> str | None:
        """The simulated callee the carrier plays for `contact`'s call `attempt`; None on a
        carrier that reaches real people."""
        return None

    def ring_in(self, *, from_: str, to: str, persona: str, queue: bool = True) -> ProviderCall:
        """Ring our number `to` from `from_` (only where `rings_our_numbers`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot ring our numbers")

    def ring_back(
        self, *, contact: Contact, persona: str | None = None, queue: bool = True
    ) -> ProviderCall:
        """`contact` rings its campaign's number (only where `rings_our_numbers`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot ring our numbers")

    def play(self, sid: str) -> ProviderCall:
        """Play the call `sid` placed with `queue=False` here, to its end (only where
        `rings_our_numbers`); the call as it ended."""
        raise NotImplementedError(f"{type(self).__name__} plays no call itself")
