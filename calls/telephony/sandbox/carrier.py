"""The sandbox carrier's REST side: a simulated Twilio, so that a campaign runs on a
laptop with no credentials (TELEPHONY_BACKEND=sandbox).

`create_call` takes the dial request Twilio's Calls API takes (its form parameters) and
answers as Twilio would, then queues the call's simulation (`run_sandbox_call_task`,
`simulation.run_call`). It rings our numbers too: `place_inbound_call` (and `call_back`, a
contact returning our call) plays an incoming call through our inbound webhooks, as Twilio
delivers the calls of a number pointed at them (calls.inbound), the simulated callee now
the caller. `SandboxBackend` is this carrier as `calls.telephony` sees it.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils.translation import gettext as _

from calls.telephony.base import ProviderCall, RecordingAudio, TelephonyBackend, fetch_recording
from calls.telephony.sandbox.personas import CALLER_PERSONAS, PERSONAS, persona_for, weighted_choice
from calls.telephony.sandbox.state import (
    ACCOUNT_SID,
    API_VERSION,
    STATE_TTL,
    call_key,
    control_key,
    first,
    live_recording_key,
    not_found,
    number_key,
    provider_call,
    recording_key,
    recording_wav,
    rejected,
    webhook_auth_token,
)
from calls.telephony.sandbox.tasks import run_sandbox_call_task
from campaigns.models import SandboxPersona, default_sandbox_personas
from campaigns.phones import E164_REGEX

if TYPE_CHECKING:
    from django.urls import URLPattern

    from campaigns.models import Campaign, Contact


def create_call(
    params: Mapping[str, str | list[str]], *, persona: str | None = None
) -> ProviderCall:
    """Accept a dial request in Twilio's form parameters and queue its simulation.

    Raises TelephonyRejected as Twilio would: no To (21201), To not in E.164 form or the
    `invalid_number` persona (21211), no From (21603) or a bad one (21212), no Url (21205).
    `persona` None picks one from the default mix by the number.
    """
    if persona is not None and persona not in PERSONAS:
        raise ValueError(f"unknown sandbox persona {persona!r}; use one of {PERSONAS}")
    to = first(params, "To")
    caller = first(params, "From")
    if not to:
        raise rejected(21201, "No 'To' number is specified")
    if not re.match(E164_REGEX, to) or persona == SandboxPersona.INVALID_NUMBER:
        raise rejected(21211, f"The 'To' number {to} is not a valid phone number.")
    if not caller:
        raise rejected(21603, "A 'From' phone number is required.")
    if not re.match(E164_REGEX, caller):
        raise rejected(21212, f"The 'From' number {caller} is not a valid phone number.")
    if not first(params, "Url"):
        raise rejected(21205, "Url parameter is required.")

    sid = "CA" + uuid.uuid4().hex
    state = {
        "sid": sid,
        "params": {name: value for name, value in params.items()},
        "persona": persona or weighted_choice(default_sandbox_personas(), key=to),
        "status": "queued",
        "answered_by": "",
        "duration": None,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    cache.set(call_key(sid), state, STATE_TTL)
    index_key = number_key(to)
    cache.set(index_key, [*(cache.get(index_key) or []), sid][-50:], STATE_TTL)
    _queue(sid)
    return provider_call(state)


def fetch_call(sid: str) -> ProviderCall:
    """The sandbox call `sid` as it is now; an unknown SID is rejected (20404) like Twilio."""
    state = cache.get(call_key(sid))
    if state is None:
        raise not_found(sid)
    return provider_call(state)


def update_call(
    sid: str, *, status: str | None = None, url: str | None = None, method: str = "POST"
) -> ProviderCall:
    """Hang up (`status` completed, or canceled before an answer) or redirect (`url`) the
    live call `sid`; the simulation obeys at its next look at the shared state.

    Redirecting an ended call is rejected (21220) like Twilio; hanging it up changes nothing.
    """
    state = cache.get(call_key(sid))
    if state is None:
        raise not_found(sid)
    if status not in (None, "completed", "canceled"):
        raise ValueError("status must be completed or canceled")
    ended = state["status"] not in ("queued", "ringing", "in-progress")
    if url and ended:
        raise rejected(21220, "Call is not in-progress. Cannot redirect.")
    if ended:
        return provider_call(state)
    key = control_key(sid)
    control = cache.get(key) or {"seq": 0, "hangup": False, "url": None, "method": "POST"}
    hangs_up = status == "completed" or (status == "canceled" and state["status"] != "in-progress")
    control = {
        "seq": control["seq"] + 1,
        "hangup": control["hangup"] or hangs_up,
        "url": url or None,
        "method": method.upper(),
    }
    cache.set(key, control, STATE_TTL)
    if hangs_up:
        state = {**state, "status": "completed" if state["status"] == "in-progress" else "canceled"}
    return provider_call(state)


def start_recording(call_sid: str, *, status_callback: str) -> str:
    """Start recording the live sandbox call `call_sid`, as Twilio's "Create a Recording
    resource" of a call does (https://www.twilio.com/docs/voice/api/recording#create-a-recording-resource):
    the simulation sees it at its next look at the shared state and reports the recording,
    from that moment to the call's end, to `status_callback` when the call ends. An unknown
    call is 20404; one not in progress is refused with 21220, as Twilio refuses it."""
    state = cache.get(call_key(call_sid))
    if state is None:
        raise not_found(call_sid)
    if state["status"] != "in-progress":
        raise rejected(21220, "Call is not in-progress. Cannot create recording.")
    recording_sid = "RE" + uuid.uuid4().hex
    started = {"sid": recording_sid, "callback": status_callback}
    if not cache.add(live_recording_key(call_sid), started, STATE_TTL):
        return str(cache.get(live_recording_key(call_sid))["sid"])
    return recording_sid


def delete_recording(recording_sid: str) -> bool:
    """Delete the sandbox recording `recording_sid`; False when there was none."""
    return bool(cache.delete(recording_key(recording_sid)))


def recording_media(recording_sid: str) -> RecordingAudio:
    """The sandbox recording's audio (WAV); an unknown or deleted one is 20404."""
    if cache.get(recording_key(recording_sid)) is None:
        raise rejected(
            20404,
            f"The requested resource /{API_VERSION}/Accounts/{ACCOUNT_SID}/Recordings/"
            f"{recording_sid}.json was not found",
        )
    return RecordingAudio(content=recording_wav(), content_type="audio/x-wav")


def find_calls(*, to: str, from_: str, created_after: datetime.datetime) -> list[ProviderCall]:
    """Sandbox calls to `to` from `from_` created after `created_after`, newest first."""
    found = []
    for sid in reversed(cache.get(number_key(to)) or []):
        state = cache.get(call_key(sid))
        if state is None or first(state["params"], "From") != from_:
            continue
        if datetime.datetime.fromisoformat(state["created_at"]) >= created_after:
            found.append(provider_call(state))
    return found


def place_inbound_call(*, from_: str, to: str, persona: str, queue: bool = True) -> ProviderCall:
    """Ring our number `to` from `from_` as Twilio delivers a call to one of the account's
    numbers pointed at our inbound webhooks (what ``preflight --configure-numbers`` sets
    on Twilio's numbers): the voice URL asked for TwiML with Direction=inbound and
    CallStatus=ringing, the fallback URL when that fails, the number's status callback at
    the end (only `completed`: the event a number's StatusCallback gets). `persona` is the
    caller, one of CALLER_PERSONAS. The call is queued to be played like any sandbox call
    (with `queue` false, not: the caller plays it, ``run_call``).

    Raises ValueError naming the number that is not in E.164 form, or the persona that
    is no caller's.
    """
    if persona not in CALLER_PERSONAS:
        raise ValueError(
            _("The sandbox caller “%(persona)s” is none of %(personas)s.")
            % {"persona": persona, "personas": ", ".join(CALLER_PERSONAS)}
        )
    for name, number in (("From", from_), ("To", to)):
        if not re.match(E164_REGEX, number):
            raise ValueError(
                _("The %(name)s number “%(number)s” is not in E.164 form (+34600000000).")
                % {"name": name, "number": number}
            )
    sid = "CA" + uuid.uuid4().hex
    state = {
        "sid": sid,
        "direction": "inbound",
        "params": {
            "From": from_,
            "To": to,
            "Url": _number_webhook("inbound"),
            "Method": "POST",
            "FallbackUrl": _number_webhook("inbound-fallback"),
            "FallbackMethod": "POST",
            "StatusCallback": _number_webhook("inbound-status"),
            "StatusCallbackMethod": "POST",
        },
        "persona": persona,
        "status": "ringing",
        "answered_by": "",
        "duration": None,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    cache.set(call_key(sid), state, STATE_TTL)
    if queue:
        _queue(sid)
    return provider_call(state)


def _number_webhook(name: str) -> str:
    # Where preflight --configure-numbers points Twilio's numbers (calls.inbound.inbound_url):
    # the sandbox's numbers are pointed there already.
    return str(settings.APP_URL).rstrip("/") + reverse(f"calls:{name}")


def call_back(*, contact: Contact, persona: str | None = None, queue: bool = True) -> ProviderCall:
    """`contact` rings its campaign's number back through the sandbox carrier, as the
    person it stands for (`persona`; by default its `sandbox_persona` variable when that
    is a caller's, else interested). Raises ValueError when the campaign has no number
    to ring (no caller number and no TWILIO_PHONE_NUMBER)."""
    number = contact.campaign.effective_caller_number
    if not number:
        raise ValueError(
            _(
                "The campaign has no number to ring back: set its caller number or "
                "TWILIO_PHONE_NUMBER."
            )
        )
    if persona is None:
        variables = contact.variables if isinstance(contact.variables, dict) else {}
        chosen = variables.get("sandbox_persona")
        persona = chosen if chosen in CALLER_PERSONAS else SandboxPersona.INTERESTED
    return place_inbound_call(from_=contact.phone, to=number, persona=persona, queue=queue)


def _queue(sid: str) -> None:
    # Not after commit: like Twilio, the carrier places the call whatever becomes of the
    # caller's transaction (the status callbacks cope with a call not yet saved).
    run_sandbox_call_task.delay(sid)


class SandboxBackend(TelephonyBackend):
    """The sandbox carrier as a telephony backend: it places no real call, and it can ring
    our own numbers."""

    simulated: ClassVar[bool] = True
    rings_our_numbers: ClassVar[bool] = True

    def create_call(
        self, parameters: Mapping[str, object], *, persona: str | None = None
    ) -> ProviderCall:
        return create_call(wire_parameters(parameters), persona=persona)

    def fetch_call(self, *, sid: str) -> ProviderCall:
        return fetch_call(sid)

    def hang_up(self, *, sid: str) -> ProviderCall:
        return update_call(sid, status="completed")

    def redirect_call(self, *, sid: str, url: str) -> ProviderCall:
        return update_call(sid, url=url, method="POST")

    def find_calls(
        self, *, to: str, from_: str, created_after: datetime.datetime, limit: int
    ) -> list[ProviderCall]:
        return find_calls(to=to, from_=from_, created_after=created_after)

    def webhook_auth_token(self) -> str:
        return webhook_auth_token()

    def recording_audio(self, url: str) -> RecordingAudio:
        # The sandbox serves its recordings under APP_URL (views.py), as WAV.
        return fetch_recording(
            url,
            base=settings.APP_URL,
            auth=(ACCOUNT_SID, webhook_auth_token()),
            extension=".wav",
        )

    def recording_media(self, *, sid: str) -> RecordingAudio:
        return recording_media(sid)

    def delete_recording(self, *, sid: str) -> bool:
        return delete_recording(sid)

    def start_recording(self, *, call_sid: str, status_callback: str) -> str:
        return start_recording(call_sid, status_callback=status_callback)

    def urlpatterns(self) -> list[URLPattern]:
        from calls.telephony.sandbox.views import urlpatterns  # the web's part only

        return list(urlpatterns)

    def callee_persona(
        self, contact: Contact, campaign: Campaign | None = None, *, attempt: int | None = None
    ) -> str | None:
        return persona_for(contact, campaign, attempt=attempt)

    def ring_in(self, *, from_: str, to: str, persona: str, queue: bool = True) -> ProviderCall:
        return place_inbound_call(from_=from_, to=to, persona=persona, queue=queue)

    def ring_back(
        self, *, contact: Contact, persona: str | None = None, queue: bool = True
    ) -> ProviderCall:
        return call_back(contact=contact, persona=persona, queue=queue)

    def play(self, sid: str) -> ProviderCall:
        from calls.telephony.sandbox.simulation import run_call

        run_call(sid)
        return fetch_call(sid)


def wire_parameters(parameters: Mapping[str, object]) -> dict[str, str | list[str]]:
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
