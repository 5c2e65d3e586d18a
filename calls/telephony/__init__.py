"""Telephony: the one public API over the carrier that TELEPHONY_BACKEND names.

Callers write `from calls import telephony` and `telephony.create_call(...)`; the backend
(`base.TelephonyBackend`) is loaded once, like Django's EMAIL_BACKEND, from a short name
(`twilio`, `sandbox`) or a dotted path to a backend class. Errors and values are the
backends' shared ones (`base`); TwiML (`twiml`) and webhook signatures (`signatures`) are
the carrier protocol both backends speak. The Twilio account functions (`fetch_account`,
`incoming_numbers`, `point_number`...) always speak to Twilio: preflight checks the
account of the credentials whatever the backend.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from callcenter.metrics import DIAL_ERRORS
from calls.telephony import signatures
from calls.telephony.base import CALLER_ID_CODES as CALLER_ID_CODES
from calls.telephony.base import MACHINE_DETECTION_MODES as MACHINE_DETECTION_MODES
from calls.telephony.base import REASONS as REASONS
from calls.telephony.base import STATUS_CALLBACK_EVENTS as STATUS_CALLBACK_EVENTS
from calls.telephony.base import AccountNumbers as AccountNumbers
from calls.telephony.base import IncomingNumber as IncomingNumber
from calls.telephony.base import ProviderAccount as ProviderAccount
from calls.telephony.base import ProviderCall as ProviderCall
from calls.telephony.base import RecordingAudio as RecordingAudio
from calls.telephony.base import TelephonyBackend as TelephonyBackend
from calls.telephony.base import TelephonyNotConfigured as TelephonyNotConfigured
from calls.telephony.base import TelephonyRejected as TelephonyRejected
from calls.telephony.base import TelephonyUnavailable as TelephonyUnavailable
from calls.telephony.signatures import url_with_retries as url_with_retries
from calls.telephony.twilio import fetch_account as fetch_account
from calls.telephony.twilio import incoming_numbers as incoming_numbers
from calls.telephony.twilio import is_configured as is_configured
from calls.telephony.twilio import list_account_numbers as list_account_numbers
from calls.telephony.twilio import point_number as point_number
from calls.telephony.twiml import Spoken as Spoken
from calls.telephony.twiml import fallback_twiml as fallback_twiml
from calls.telephony.twiml import gather_twiml as gather_twiml
from calls.telephony.twiml import hang_up_twiml as hang_up_twiml
from calls.telephony.twiml import hold_twiml as hold_twiml
from calls.telephony.twiml import interruptible_twiml as interruptible_twiml
from calls.telephony.twiml import message_twiml as message_twiml
from calls.telephony.twiml import pause_twiml as pause_twiml
from calls.telephony.twiml import relay_twiml as relay_twiml
from calls.telephony.twiml import transfer_twiml as transfer_twiml

if TYPE_CHECKING:
    from campaigns.models import Campaign, Contact

logger = logging.getLogger(__name__)

# TELEPHONY_BACKEND's short names; any other value is a dotted path to a backend class.
BACKENDS = {
    "twilio": "calls.telephony.twilio.TwilioBackend",
    "sandbox": "calls.telephony.sandbox.SandboxBackend",
}


def backend_path(name: str) -> str:
    """The dotted path of the backend class TELEPHONY_BACKEND=`name` selects."""
    return BACKENDS.get(name, name)


@functools.cache
def backend() -> TelephonyBackend:
    """The carrier TELEPHONY_BACKEND names, loaded on first use and kept (a test that
    changes the setting gets the new one: see `_forget_backend`)."""
    path = backend_path(settings.TELEPHONY_BACKEND)
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"TELEPHONY_BACKEND={settings.TELEPHONY_BACKEND!r}: cannot import {path} ({exc})"
        ) from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, TelephonyBackend)):
        raise ImproperlyConfigured(
            f"TELEPHONY_BACKEND={settings.TELEPHONY_BACKEND!r}: {path} is not a "
            "calls.telephony.base.TelephonyBackend"
        )
    return backend_class()


@receiver(setting_changed)
def _forget_backend(*, setting: str, **kwargs: Any) -> None:
    if setting == "TELEPHONY_BACKEND":
        backend.cache_clear()


def is_simulated_deployment() -> bool:
    """Whether a staging or production deployment runs on a simulated carrier, which places
    no real calls: the admin and /health say so (in development it is the usual case)."""
    return backend().simulated and settings.APP_ENV in ("staging", "production")


# --- Calls ------------------------------------------------------------------------------


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
    """Ask the carrier to dial `to` from `from_` (TWILIO_PHONE_NUMBER when None).

    Answering-machine detection runs in the background (`AsyncAmd`), so the greeting
    starts at once and the verdict arrives at `async_amd_callback`; `machine_detection=None`
    turns it off. Raises TelephonyRejected or TelephonyUnavailable (see `possibly_created`),
    each counted in `callcenter_dial_errors_total`. A simulated carrier plays
    `sandbox_persona` as the callee (None: one chosen by the number); Twilio ignores it.
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
        return backend().create_call(parameters, persona=sandbox_persona)
    except (TelephonyRejected, TelephonyUnavailable) as exc:
        _count_dial_error(exc)
        raise


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
    """The call `sid` as the carrier has it now (its price too, once it is priced).

    Raises TelephonyRejected (404 for a SID the carrier does not know) or
    TelephonyUnavailable.
    """
    return backend().fetch_call(sid=sid)


def hang_up(*, sid: str) -> ProviderCall:
    """End the call `sid` by setting its Status to completed."""
    return backend().hang_up(sid=sid)


def redirect_call(*, sid: str, url: str) -> ProviderCall:
    """Make the live call `sid` run the TwiML at `url` now (the voicemail after AMD)."""
    return backend().redirect_call(sid=sid, url=url)


def find_calls(
    *, to: str, from_: str | None, created_after: datetime.datetime, limit: int = 20
) -> list[ProviderCall]:
    """The carrier's calls to `to` from `from_` (TWILIO_PHONE_NUMBER when None) created
    after `created_after`, newest first: how a call whose creation answer was lost is found."""
    caller = from_ or settings.TWILIO_PHONE_NUMBER
    return backend().find_calls(to=to, from_=caller, created_after=created_after, limit=limit)


def callee_persona(
    contact: Contact, campaign: Campaign | None = None, *, attempt: int | None = None
) -> str | None:
    """The simulated callee a simulated carrier plays for `contact`'s call `attempt`;
    None on a carrier that reaches real people."""
    return backend().callee_persona(contact, campaign, attempt=attempt)


def recording_audio(url: str) -> RecordingAudio:
    """The audio of the recording at `url` (a RecordingUrl from a signed callback),
    fetched with the account's credentials so that recordings need not be public.

    Only URLs of the carrier's own API are fetched: the credentials go nowhere else.
    Raises TelephonyRejected (unknown, refused, not ours) or TelephonyUnavailable.
    """
    return backend().recording_audio(url)


def recording_media(*, sid: str) -> RecordingAudio:
    """The audio of the carrier's recording `sid`, by its Recording resource. Raises
    TelephonyRejected (`is_not_found` when it is gone) or TelephonyUnavailable."""
    return backend().recording_media(sid=sid)


def delete_recording(*, sid: str) -> bool:
    """Delete the carrier's recording `sid`; False when it was already gone. Raises
    TelephonyRejected or TelephonyUnavailable."""
    return backend().delete_recording(sid=sid)


def start_recording(*, call_sid: str, status_callback: str) -> str:
    """Start recording the live call `call_sid` now (Twilio's "create a Recording" of a
    call); the recording's SID, its status callbacks to `status_callback`. Raises
    TelephonyRejected (21220: the call is not in progress) or TelephonyUnavailable."""
    return backend().start_recording(call_sid=call_sid, status_callback=status_callback)


# --- Webhook signatures -----------------------------------------------------------------


def webhook_auth_token() -> str:
    """The key webhooks are signed with: Twilio's auth token, or the sandbox carrier's."""
    return backend().webhook_auth_token()


def sign_request(
    *, url: str, params: Mapping[str, str | list[str]], keep_fragment: bool = False
) -> str:
    """The X-Twilio-Signature the carrier would send with a form POST of `params` to `url`
    (with `keep_fragment`, signed over the URL's connection-override fragment too)."""
    return signatures.compute_signature(
        token=webhook_auth_token(), url=url, params=params, keep_fragment=keep_fragment
    )


def signature_is_valid(
    *, url: str, params: Mapping[str, str | list[str]], signature: str | None
) -> bool:
    """Whether `signature` (X-Twilio-Signature) signs a form POST of `params` to `url`.

    `url` is the full public URL that was called, query included; a Django QueryDict
    works as `params`, repeated names too. Given the URL with its connection-override
    fragment, a signature of the URL with or without it is accepted.
    """
    if not signature:
        return False
    try:
        token = webhook_auth_token()
    except TelephonyNotConfigured:
        # An empty key would accept signatures anyone can compute.
        logger.error("Twilio webhook refused: TWILIO_AUTH_TOKEN is not set")
        return False
    return signatures.is_valid(token=token, url=url, params=params, signature=signature)
