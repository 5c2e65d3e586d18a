"""The sandbox carrier's shared state: its account, the calls it holds (in the Django
cache, which web and worker processes share), their prices, and the key it signs with.

As with Twilio, no callback carries a price: `fetch_call` shows a completed call's price
(at the sandbox's own rate) some seconds after its end, and none for a call not charged.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import math
import time
import wave
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from calls.telephony.base import REASONS, ProviderCall, TelephonyRejected

# The sandbox's own account: "AC" and 32 hex digits, like Twilio's.
ACCOUNT_SID = "AC" + "5a" * 16
API_VERSION = "2010-04-01"
STATE_TTL = 2 * 24 * 3600  # seconds a call's state stays readable
RECORDINGS_PATH = "sandbox/recordings/"

# The sandbox carrier signs its webhooks with a key derived from SECRET_KEY under this salt.
SIGNING_SALT = "calls.telephony.sandbox-webhook-token"


# The sandbox's own price of a call, in USD per started minute of a completed call (not
# Twilio's tariff). Twilio charges neither busy, unanswered, failed nor canceled calls
# (support.twilio.com/hc/en-us/articles/223132547) and shows a call's price on its Call
# resource only some seconds to minutes after its end, never in a callback
# (the Call resource's `price`, https://www.twilio.com/docs/voice/api/call-resource): the
# sandbox shows it PRICE_SECONDS (simulated; 5 real seconds at the default SANDBOX_SPEED)
# after the end.
PRICE_PER_MINUTE = Decimal("0.0140")
PRICE_UNIT = "USD"
PRICE_SECONDS = 25

# Patched by tests that want no real waiting.
_clock = time.time


def now() -> float:
    """The real time, as the sandbox reads it (tests move it)."""
    return _clock()


def webhook_auth_token() -> str:
    """The key the sandbox signs its webhooks with (and asks for its recordings).

    Derived from SECRET_KEY, so it is secret and stable for a deployment without another
    setting.
    """
    return salted_hmac(SIGNING_SALT, "webhooks", algorithm="sha256").hexdigest()


def provider_call(state: Mapping[str, Any]) -> ProviderCall:
    ended = state.get("ended_at")
    return ProviderCall(
        sid=state["sid"],
        status=state["status"],
        queue_time_ms=0,
        answered_by=state["answered_by"],
        duration=state["duration"],
        price=shown_price(state),
        price_unit=PRICE_UNIT,
        ended_at=datetime.datetime.fromtimestamp(ended, datetime.UTC) if ended else None,
    )


def shown_price(state: Mapping[str, Any]) -> str | None:
    """The call's price as its Call resource shows it now: None until PRICE_SECONDS
    (simulated) after its end, then Twilio's form ("-0.01400"); None for ever when it was
    not charged."""
    price, ended = state.get("price"), state.get("ended_at")
    if price is None or ended is None:
        return None
    if now() < ended + PRICE_SECONDS / float(settings.SANDBOX_SPEED):
        return None
    return price


def price_of(status: str, duration: int) -> str | None:
    """What the sandbox charges a call that ended with `status` after `duration` seconds
    of talk, as Twilio writes a price (negative, five decimals); None when not charged."""
    if status != "completed":
        return None
    minutes = max(1, math.ceil(duration / 60))
    return f"{-(PRICE_PER_MINUTE * minutes):.5f}"


def signs_fragment(sid: str) -> bool:
    """Whether the sandbox signs call `sid`'s callbacks over their URL with its
    connection-override fragment (half the calls, by the SID) rather than without."""
    return hashlib.sha256(sid.encode()).digest()[1] % 2 == 0


def rejected(code: int, message: str) -> TelephonyRejected:
    status = 404 if code == 20404 else 400
    reason = REASONS.get(code) or _(
        "The sandbox carrier refused the request (error %(code)s): %(message)s"
    ) % {"code": code, "message": message}
    return TelephonyRejected(
        f"Sandbox carrier rejected the request (HTTP {status}, error {code}): {message}",
        status=status,
        code=code,
        provider_message=message,
        reason=str(reason),
    )


def not_found(sid: str) -> TelephonyRejected:
    return rejected(
        20404,
        f"The requested resource /{API_VERSION}/Accounts/{ACCOUNT_SID}/Calls/{sid}.json "
        "was not found",
    )


def call_key(sid: str) -> str:
    return f"sandbox:call:{sid}"


def control_key(sid: str) -> str:
    return f"sandbox:control:{sid}"


def number_key(to: str) -> str:
    return f"sandbox:to:{to}"


def recording_key(sid: str) -> str:
    return f"sandbox:recording:{sid}"


def live_recording_key(call_sid: str) -> str:
    """Where a recording started over REST on the live call `call_sid` waits for the
    simulation to see it (`start_recording`): its SID and status callback."""
    return f"sandbox:live-recording:{call_sid}"


def recording_wav() -> bytes:
    """A sandbox recording's audio: one second of silence (8 kHz, 16-bit mono WAV)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 8000)
    return buffer.getvalue()


def first(params: Mapping[str, Any], name: str, default: str = "") -> str:
    value = params.get(name, default)
    if isinstance(value, list | tuple):
        return str(value[0]) if value else default
    return str(value)


def recording_url(recording_sid: str) -> str:
    # Like Twilio's RecordingUrl: no extension; ".wav" gives the same audio (views.py).
    return f"{str(settings.APP_URL).rstrip('/')}/{RECORDINGS_PATH}{recording_sid}"
