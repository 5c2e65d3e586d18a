"""The sandbox carrier: a simulated Twilio, so that a campaign runs on a laptop with no
credentials (TELEPHONY_BACKEND=sandbox).

`create_call` takes the dial request Twilio's Calls API takes (its form parameters) and
answers as Twilio would; `run_call`, queued as `run_sandbox_call_task`, then plays the
call through our own webhooks over HTTP: signed status callbacks in order, the TwiML of
the answer URL fetched and obeyed verb by verb, a simulated callee (a persona) answering
each <Gather>, the asynchronous AMD verdict, fallbacks, REST redirects and hang-ups, and
the recording callback. A call's state lives in the Django cache, which web and worker
processes share (the file cache on one machine, Redis otherwise).

It rings our numbers too: `place_inbound_call` (and `call_back`, a contact returning our
call) plays an incoming call through our inbound webhooks, as Twilio delivers the calls of
a number pointed at them (calls.inbound), the simulated callee now the caller.

Time is simulated: SANDBOX_SPEED simulated seconds pass per real second. The callee speaks
the language its <Gather> listens in (Spanish unless that is en-*). A simulated call holds
one worker process for its whole (real) length, so run the worker with a few processes.

As with Twilio, no callback carries a price: `fetch_call` shows a completed call's price
(at the sandbox's own rate) some seconds after its end, and none for a call not charged.
Callbacks registered with a connection-override fragment (`#rc=3`) are signed over their
URL with the fragment for half the calls and without it for the others, chosen by the
CallSid, since Twilio does not document which it signs.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import hashlib
import io
import logging
import math
import re
import time
import uuid
import wave
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urldefrag, urlencode, urljoin

import requests
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import re_path
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from calls import telephony
from calls.telephony import ProviderCall, TelephonyRejected, webhook_auth_token
from campaigns.models import SandboxPersona, default_sandbox_personas, sandbox_personas_problems
from campaigns.phones import E164_REGEX

if TYPE_CHECKING:
    from campaigns.models import Campaign, Contact

logger = logging.getLogger(__name__)

PERSONAS: tuple[str, ...] = tuple(SandboxPersona.values)

# What each persona says, one line per <Gather> it answers, then it stays silent. This is
# the simulated callee's speech in the call's language, not interface text: not gettext.
REPLIES: dict[str, dict[str, tuple[str, ...]]] = {
    "es": {
        SandboxPersona.INTERESTED: ("Sí, allí estaré. Gracias.", "Sí, perfecto, gracias."),
        SandboxPersona.NOT_INTERESTED: ("No, gracias, no me interesa.", "No, nada más, gracias."),
        SandboxPersona.CALLBACK: (
            "Ahora no puedo, llámeme mañana a las diez.",
            "Sí, mañana a las diez. Adiós.",
        ),
        SandboxPersona.OPT_OUT: (
            "No me llame más, bórrenme de su lista.",
            "Que no me llamen más, por favor.",
        ),
    },
    "en": {
        SandboxPersona.INTERESTED: ("Yes, I'll be there. Thank you.", "Yes, perfect, thanks."),
        SandboxPersona.NOT_INTERESTED: (
            "No, thank you, I'm not interested.",
            "No, that's all, thanks.",
        ),
        SandboxPersona.CALLBACK: (
            "I can't talk now, call me tomorrow at ten.",
            "Yes, tomorrow at ten. Bye.",
        ),
        SandboxPersona.OPT_OUT: (
            "Don't call me again, take me off your list.",
            "Please don't call me again.",
        ),
    },
}
# The key a persona presses, in place of its line, when a <Gather> listens for keys only
# (opt_out presses OPT_OUT_DIGIT); the others stay silent then.
KEYS = {SandboxPersona.INTERESTED: "1", SandboxPersona.NOT_INTERESTED: "2"}

# The sandbox's own account: "AC" and 32 hex digits, like Twilio's.
ACCOUNT_SID = "AC" + "5a" * 16
API_VERSION = "2010-04-01"
STATE_TTL = 2 * 24 * 3600  # seconds a call's state stays readable
RECORDINGS_PATH = "sandbox/recordings/"

# Simulated seconds.
RING_SECONDS = 5  # before a person picks up
VOICEMAIL_PICKUP_SECONDS = 20  # before voicemail picks up: a shorter Timeout gets no-answer
BUSY_SECONDS = 2
CHARACTERS_PER_SECOND = 15  # of <Say> text and of the callee's speech
CLIP_SECONDS = 4  # one <Play>: the sandbox fetches no audio
KEY_PRESS_SECONDS = 2
DIAL_RING_SECONDS = 3
DIAL_TALK_SECONDS = 20  # the agent a <Dial> reaches talks this long
DEFAULT_TIMEOUT = 60  # Twilio's defaults for the Calls API
DEFAULT_TIME_LIMIT = 14400
# AMD verdicts (AnsweredBy) and the milliseconds detection takes.
DETECTION_MS = {
    "human": 2600,
    "machine_start": 3200,
    "machine_end_beep": 3800,
    "machine_end_silence": 4200,
}

# The sandbox's own price of a call, in USD per started minute of a completed call (not
# Twilio's tariff). Twilio charges neither busy, unanswered, failed nor canceled calls
# (support.twilio.com/hc/en-us/articles/223132547) and shows a call's price on its Call
# resource only some seconds to minutes after its end, never in a callback
# (reference/vendors.md): the sandbox shows it PRICE_SECONDS (simulated; 5 real seconds
# at the default SANDBOX_SPEED) after the end.
PRICE_PER_MINUTE = Decimal("0.0140")
PRICE_UNIT = "USD"
PRICE_SECONDS = 25

POLL_SECONDS = 0.05  # real seconds between looks at the shared state during a wait
# A <Gather> waiting this long or less after its lines is heard as a pause mid-reply: the
# callee does not answer it (calls.flow speaks a reply's first line in one).
MID_REPLY_TIMEOUT = 1
MAX_DOCUMENTS = 200  # TwiML documents one call may fetch: ends a document that loops
# Twilio's webhook defaults and connection overrides (reference/twilio.md §5).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
DEFAULT_RETRIES = 1
DEFAULT_RETRY_POLICY = frozenset({"ct", "5xx"})

RETRIEVAL_FAILURE = 11200
CONNECTION_FAILURE = 11205
DOCUMENT_PARSE_FAILURE = 12100

# The TwiML the sandbox plays; anything else fails the document with 12100. <Start> and
# <Stop> (streams, background recordings) are accepted and have no effect.
VERBS = frozenset(
    {"Say", "Play", "Pause", "Gather", "Redirect", "Hangup", "Reject", "Dial", "Record"}
    | {"Start", "Stop"}
)
PROMPTS = frozenset({"Say", "Play", "Pause"})

# Patched by tests that want no real waiting.
_sleep = time.sleep
_clock = time.time


# --- The carrier's REST side -------------------------------------------------------------


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
    to = _first(params, "To")
    caller = _first(params, "From")
    if not to:
        raise _rejected(21201, "No 'To' number is specified")
    if not re.match(E164_REGEX, to) or persona == SandboxPersona.INVALID_NUMBER:
        raise _rejected(21211, f"The 'To' number {to} is not a valid phone number.")
    if not caller:
        raise _rejected(21603, "A 'From' phone number is required.")
    if not re.match(E164_REGEX, caller):
        raise _rejected(21212, f"The 'From' number {caller} is not a valid phone number.")
    if not _first(params, "Url"):
        raise _rejected(21205, "Url parameter is required.")

    sid = "CA" + uuid.uuid4().hex
    state = {
        "sid": sid,
        "params": {name: value for name, value in params.items()},
        "persona": persona or _weighted_choice(default_sandbox_personas(), key=to),
        "status": "queued",
        "answered_by": "",
        "duration": None,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    cache.set(_call_key(sid), state, STATE_TTL)
    index_key = _number_key(to)
    cache.set(index_key, [*(cache.get(index_key) or []), sid][-50:], STATE_TTL)
    _queue(sid)
    return _provider_call(state)


def fetch_call(sid: str) -> ProviderCall:
    """The sandbox call `sid` as it is now; an unknown SID is rejected (20404) like Twilio."""
    state = cache.get(_call_key(sid))
    if state is None:
        raise _not_found(sid)
    return _provider_call(state)


def update_call(
    sid: str, *, status: str | None = None, url: str | None = None, method: str = "POST"
) -> ProviderCall:
    """Hang up (`status` completed, or canceled before an answer) or redirect (`url`) the
    live call `sid`; the simulation obeys at its next look at the shared state.

    Redirecting an ended call is rejected (21220) like Twilio; hanging it up changes nothing.
    """
    state = cache.get(_call_key(sid))
    if state is None:
        raise _not_found(sid)
    if status not in (None, "completed", "canceled"):
        raise ValueError("status must be completed or canceled")
    ended = state["status"] not in ("queued", "ringing", "in-progress")
    if url and ended:
        raise _rejected(21220, "Call is not in-progress. Cannot redirect.")
    if ended:
        return _provider_call(state)
    key = _control_key(sid)
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
    return _provider_call(state)


def find_calls(*, to: str, from_: str, created_after: datetime.datetime) -> list[ProviderCall]:
    """Sandbox calls to `to` from `from_` created after `created_after`, newest first."""
    found = []
    for sid in reversed(cache.get(_number_key(to)) or []):
        state = cache.get(_call_key(sid))
        if state is None or _first(state["params"], "From") != from_:
            continue
        if datetime.datetime.fromisoformat(state["created_at"]) >= created_after:
            found.append(_provider_call(state))
    return found


# The personas that can ring us: someone who talks (or keeps silent) once through.
CALLER_PERSONAS: tuple[str, ...] = (
    SandboxPersona.INTERESTED,
    SandboxPersona.NOT_INTERESTED,
    SandboxPersona.CALLBACK,
    SandboxPersona.OPT_OUT,
    SandboxPersona.SILENT,
)


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
    from calls.inbound import inbound_url  # built on the telephony this module serves

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
            "Url": inbound_url("inbound"),
            "Method": "POST",
            "FallbackUrl": inbound_url("inbound-fallback"),
            "FallbackMethod": "POST",
            "StatusCallback": inbound_url("inbound-status"),
            "StatusCallbackMethod": "POST",
        },
        "persona": persona,
        "status": "ringing",
        "answered_by": "",
        "duration": None,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    cache.set(_call_key(sid), state, STATE_TTL)
    if queue:
        _queue(sid)
    return _provider_call(state)


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


def persona_for(
    contact: Contact, campaign: Campaign | None = None, *, attempt: int | None = None
) -> str:
    """The persona the sandbox plays for `contact`'s call number `attempt` (by default
    its attempts so far): its `sandbox_persona` variable when that names one, otherwise a
    choice weighted by the campaign's mix, the same for the same phone and attempt."""
    variables = contact.variables if isinstance(contact.variables, dict) else {}
    chosen = variables.get("sandbox_persona")
    if isinstance(chosen, str) and chosen in PERSONAS:
        return chosen
    mix = (campaign or contact.campaign).sandbox_personas
    if not mix or sandbox_personas_problems(mix):
        mix = default_sandbox_personas()
    number = contact.attempts if attempt is None else attempt
    return _weighted_choice(mix, key=f"{contact.phone}:{number}")


def _weighted_choice(mix: Mapping[str, int], *, key: str) -> str:
    # A hash, not a random draw: the same key always meets the same callee.
    total = sum(mix.get(persona, 0) for persona in PERSONAS)
    point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total
    for persona in PERSONAS:
        weight = mix.get(persona, 0)
        if point < weight:
            return persona
        point -= weight
    raise AssertionError("unreachable")  # pragma: no cover - point < total


def _queue(sid: str) -> None:
    # Not after commit: like Twilio, the carrier places the call whatever becomes of the
    # caller's transaction (the status callbacks cope with a call not yet saved).
    run_sandbox_call_task.delay(sid)


def _provider_call(state: Mapping[str, Any]) -> ProviderCall:
    ended = state.get("ended_at")
    return ProviderCall(
        sid=state["sid"],
        status=state["status"],
        queue_time_ms=0,
        answered_by=state["answered_by"],
        duration=state["duration"],
        price=_shown_price(state),
        price_unit=PRICE_UNIT,
        ended_at=datetime.datetime.fromtimestamp(ended, datetime.UTC) if ended else None,
    )


def _shown_price(state: Mapping[str, Any]) -> str | None:
    """The call's price as its Call resource shows it now: None until PRICE_SECONDS
    (simulated) after its end, then Twilio's form ("-0.01400"); None for ever when it was
    not charged."""
    price, ended = state.get("price"), state.get("ended_at")
    if price is None or ended is None:
        return None
    if _clock() < ended + PRICE_SECONDS / float(settings.SANDBOX_SPEED):
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


def _rejected(code: int, message: str) -> TelephonyRejected:
    status = 404 if code == 20404 else 400
    reason = telephony.REASONS.get(code) or _(
        "The sandbox carrier refused the request (error %(code)s): %(message)s"
    ) % {"code": code, "message": message}
    return TelephonyRejected(
        f"Sandbox carrier rejected the request (HTTP {status}, error {code}): {message}",
        status=status,
        code=code,
        provider_message=message,
        reason=str(reason),
    )


def _not_found(sid: str) -> TelephonyRejected:
    return _rejected(
        20404,
        f"The requested resource /{API_VERSION}/Accounts/{ACCOUNT_SID}/Calls/{sid}.json "
        "was not found",
    )


def _call_key(sid: str) -> str:
    return f"sandbox:call:{sid}"


def _control_key(sid: str) -> str:
    return f"sandbox:control:{sid}"


def _number_key(to: str) -> str:
    return f"sandbox:to:{to}"


def _recording_key(sid: str) -> str:
    return f"sandbox:recording:{sid}"


def _first(params: Mapping[str, Any], name: str, default: str = "") -> str:
    value = params.get(name, default)
    if isinstance(value, list | tuple):
        return str(value[0]) if value else default
    return str(value)


# --- The simulation ------------------------------------------------------------------------


@shared_task(soft_time_limit=3600, time_limit=3660)
def run_sandbox_call_task(sid: str) -> None:
    """Play the sandbox call `sid`; running it again does nothing."""
    run_call(sid)


def run_call(sid: str) -> None:
    """Play the sandbox call `sid` from `initiated` to its final status callback.

    Claimed once through the cache, so a task delivered twice plays the call once.
    """
    state = cache.get(_call_key(sid))
    if state is None:
        logger.warning("Sandbox call %s is unknown (expired?); not played", sid)
        return
    if not cache.add(f"sandbox:run:{sid}", True, STATE_TTL):
        logger.info("Sandbox call %s is already being played", sid)
        return
    logger.info("Sandbox call %s started: persona %s", sid, state["persona"])
    simulation = _Simulation(state)
    try:
        status = simulation.play()
    except SoftTimeLimitExceeded:
        logger.warning("Sandbox call %s ran out of real time; ending it", sid)
        status = "completed" if simulation.answered_at is not None else "canceled"
    simulation.finish(status)


class _CallEnded(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _Redirected(Exception):
    """Our server redirected the live call through the REST API."""

    def __init__(self, url: str, method: str) -> None:
        super().__init__(url)
        self.url = url
        self.method = method


class _TwimlFailed(Exception):
    """A TwiML document could not be had: `code` is Twilio's error code for why."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class _Document:
    url: str
    verbs: list[ElementTree.Element]


class _Simulation:
    """One call being played: its simulated clock, what the callee has said, the callbacks
    sent so far."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.sid: str = state["sid"]
        self.params: dict[str, Any] = state["params"]
        self.persona: str = state["persona"]
        self.speed = float(settings.SANDBOX_SPEED)
        self.clock = 0.0  # simulated seconds since the call left the queue
        self.answered_at: float | None = None
        self.sequence = 0
        self.replies = 0  # lines the callee has said
        self.detection: str = ""  # the AMD verdict this callee will get
        self.detection_due: float | None = None  # when an async AMD callback is due
        self.answered_by = ""
        self.control_seen = 0
        self.pending_redirect: tuple[str, str] | None = None
        self.documents = 0
        self.events = set(_event_list(self.params.get("StatusCallbackEvent")))
        self.inbound = state.get("direction") == "inbound"
        self.session = requests.Session()

    # -- the call's course --

    def play(self) -> str:
        """Play the call up to its end; returns its final status."""
        try:
            self._check_control()  # hung up while queued
            if self.inbound:
                self._ring_in()
                return "completed"
            self._status_event("initiated", "initiated")
            if self.persona == SandboxPersona.BUSY:
                self._wait(BUSY_SECONDS)
                return "busy"
            self._set_status("ringing")
            self._status_event("ringing", "ringing")
            timeout = _number(self._param("Timeout"), DEFAULT_TIMEOUT, low=1, high=600)
            pickup = {
                SandboxPersona.NO_ANSWER: None,
                SandboxPersona.VOICEMAIL: VOICEMAIL_PICKUP_SECONDS,
            }.get(self.persona, RING_SECONDS)
            if pickup is None or pickup > timeout:
                self._wait(timeout)
                return "no-answer"
            self._wait(pickup)
            self._answer()
            self._converse()
        except _CallEnded as end:
            return end.status
        return "completed"

    def _answer(self) -> None:
        self.answered_at = self.clock
        self._set_status("in-progress")
        self._status_event("answered", "in-progress")
        mode = self._param("MachineDetection")
        if mode in telephony.MACHINE_DETECTION_MODES:
            if self.persona != SandboxPersona.VOICEMAIL:
                self.detection = "human"
            elif mode == "Enable":
                self.detection = "machine_start"
            else:
                # One machine in five ends its greeting in silence rather than a beep.
                digest = hashlib.sha256(self.sid.encode()).digest()
                self.detection = "machine_end_silence" if digest[0] % 5 == 0 else "machine_end_beep"
            self.detection_due = self.clock + DETECTION_MS[self.detection] / 1000

    def _ring_in(self) -> None:
        """An incoming call: the number's voice URL is asked while the call rings
        (CallStatus ringing), its TwiML answers it, and the caller follows it."""
        document = self._fetch(self._param("Url"), self._param("Method", "POST"))
        self.answered_at = self.clock
        self._set_status("in-progress")
        self._follow(document)

    def _converse(self) -> None:
        url, method = self.pending_redirect or (self._param("Url"), self._param("Method", "POST"))
        extra: dict[str, str] = {}
        try:
            if self.detection and self._param("AsyncAmd").lower() != "true":
                # Synchronous AMD: the TwiML waits for the verdict, which it is sent.
                due, self.detection_due = self.detection_due or self.clock, None
                self._wait(due - self.clock)
                self.answered_by = self.detection
                extra["AnsweredBy"] = self.detection
        except _Redirected as redirect:
            url, method = redirect.url, redirect.method
        self._follow(self._fetch(url, method, extra))

    def _follow(self, document: _Document | None) -> None:
        """Run TwiML documents one after the other until none is left."""
        while document is not None:
            try:
                document = self._execute(document)
            except _Redirected as redirect:
                document = self._fetch(redirect.url, redirect.method)

    def finish(self, status: str) -> None:
        """Record the end, send the final status callback and the recording's."""
        answered = self.answered_at is not None and status == "completed"
        duration = math.ceil(self.clock - self.answered_at) if answered else 0
        self.state.update(
            status=status,
            duration=duration,
            answered_by=self.answered_by,
            ended_at=_clock(),
            price=price_of(status, duration),
        )
        cache.set(_call_key(self.sid), self.state, STATE_TTL)
        final = {
            "CallDuration": str(duration),
            "Duration": str(math.ceil(duration / 60)),
        }
        if self.answered_by:
            final["AnsweredBy"] = self.answered_by
        self._status_event("completed", status, final)
        if answered and duration and self._param("Record").lower() == "true":
            self._recording(
                callback=self._param("RecordingStatusCallback"),
                method=self._param("RecordingStatusCallbackMethod", "POST"),
                events=_event_list(self.params.get("RecordingStatusCallbackEvent"))
                or ["completed"],
                duration=duration,
                source="OutboundAPI",
            )
        self.session.close()
        logger.info(
            "Sandbox call %s ended: %s after %d s (persona %s)",
            self.sid,
            status,
            duration,
            self.persona,
        )

    # -- TwiML --

    def _fetch(self, url: str, method: str, extra: Mapping[str, str] | None = None) -> _Document:
        """The TwiML at `url`, or the fallback's when it cannot be had; when neither can,
        the call ends as Twilio ends it (completed)."""
        candidates = [(url, method, dict(extra or {}))]
        fallback = self._param("FallbackUrl")
        for attempt, (target, verb, params) in enumerate(candidates):
            self.documents += 1
            if self.documents > MAX_DOCUMENTS:
                logger.warning(
                    "Sandbox call %s fetched %d documents; ending it", self.sid, MAX_DOCUMENTS
                )
                raise _CallEnded("completed")
            try:
                response = self._send(target, {**self._call_params(), **params}, method=verb)
                return _Document(url=urldefrag(target).url, verbs=_parse(response.content))
            except _TwimlFailed as failure:
                logger.warning(
                    "Sandbox call %s: TwiML from %s failed (error %d: %s)",
                    self.sid,
                    urldefrag(target).url,
                    failure.code,
                    failure,
                )
                if attempt == 0 and fallback:
                    candidates.append(
                        (
                            fallback,
                            self._param("FallbackMethod", "POST"),
                            {"ErrorCode": str(failure.code), "ErrorUrl": urldefrag(target).url},
                        )
                    )
        raise _CallEnded("completed")

    def _execute(self, document: _Document) -> _Document | None:
        """Run `document`'s verbs; the next document when one takes over, None when the
        call should end (no verb left)."""
        for verb in document.verbs:
            self._check_control()
            following = getattr(self, f"_verb_{verb.tag.lower()}")(verb, document)
            if following is not None:
                return following
        return None

    def _verb_say(self, verb: ElementTree.Element, document: _Document) -> None:
        text = (verb.text or "").strip()
        self._wait(max(1.0, len(text) / CHARACTERS_PER_SECOND) * _loops(verb))

    def _verb_play(self, verb: ElementTree.Element, document: _Document) -> None:
        digits = verb.get("digits", "")
        self._wait(0.5 * len(digits) if digits else CLIP_SECONDS * _loops(verb))

    def _verb_pause(self, verb: ElementTree.Element, document: _Document) -> None:
        self._wait(_number(verb.get("length"), 1, low=0, high=600))

    def _verb_gather(self, verb: ElementTree.Element, document: _Document) -> _Document | None:
        for prompt in verb:
            getattr(self, f"_verb_{prompt.tag.lower()}")(prompt, document)
        inputs = set((verb.get("input") or "dtmf").split())
        action = urljoin(document.url, verb.get("action") or document.url)
        method = (verb.get("method") or "POST").upper()
        timeout = _number(verb.get("timeout"), 5, low=1, high=600)
        language = verb.get("language") or settings.DEFAULT_CALL_LANGUAGE
        lines = REPLIES["en" if language.lower().startswith("en") else "es"].get(self.persona, ())
        if timeout <= MID_REPLY_TIMEOUT:
            # A second's wait after a line is a pause in the middle of what the agent says
            # (the start of a reply, the rest to come): a callee lets them finish.
            lines = ()
        if self.replies < len(lines) and "speech" in inputs:
            line = lines[self.replies]
            self.replies += 1
            speech_timeout = verb.get("speechTimeout")
            end = 1 if speech_timeout in (None, "auto") else _number(speech_timeout, 1, low=0)
            self._wait(len(line) / CHARACTERS_PER_SECOND + end)
            # A steady, plausible confidence; the words are exactly the persona's.
            return self._fetch(action, method, {"SpeechResult": line, "Confidence": "0.9312"})
        key = _key_for(self.persona)
        if self.replies < len(lines) and "dtmf" in inputs and key:
            self.replies += 1
            self._wait(KEY_PRESS_SECONDS)
            return self._fetch(action, method, {"Digits": key})
        self._wait(timeout)
        if verb.get("actionOnEmptyResult") == "true":
            return self._fetch(action, method)
        return None  # Twilio goes on with the verb after <Gather>

    def _verb_redirect(self, verb: ElementTree.Element, document: _Document) -> _Document:
        target = urljoin(document.url, (verb.text or "").strip())
        return self._fetch(target, (verb.get("method") or "POST").upper())

    def _verb_hangup(self, verb: ElementTree.Element, document: _Document) -> None:
        raise _CallEnded("completed")

    def _verb_reject(self, verb: ElementTree.Element, document: _Document) -> None:
        # <Reject> is for incoming calls; on an answered outbound call it can only hang up.
        raise _CallEnded("completed")

    def _verb_dial(self, verb: ElementTree.Element, document: _Document) -> _Document | None:
        number = "".join(verb.itertext()).strip()
        talk = 0
        if number:
            self._wait(DIAL_RING_SECONDS)
            talk = min(DIAL_TALK_SECONDS, _number(verb.get("timeLimit"), DEFAULT_TIME_LIMIT, low=1))
            self._wait(talk)
        action = verb.get("action")
        if not action:
            return None  # Twilio goes on with the verb after <Dial>
        return self._fetch(
            urljoin(document.url, action),
            (verb.get("method") or "POST").upper(),
            {
                "DialCallStatus": "completed" if number else "failed",
                "DialCallSid": "CA" + uuid.uuid4().hex,
                "DialCallDuration": str(talk),
            },
        )

    def _verb_record(self, verb: ElementTree.Element, document: _Document) -> _Document:
        if verb.get("playBeep", "true") != "false":
            self._wait(0.5)
        max_length = _number(verb.get("maxLength"), 3600, low=1)
        timeout = _number(verb.get("timeout"), 5, low=0)
        lines = REPLIES["es"].get(self.persona, ())
        spoken = 0.0
        if self.replies < len(lines):
            spoken = len(lines[self.replies]) / CHARACTERS_PER_SECOND
            self.replies += 1
        self._wait(min(spoken + timeout, max_length))
        recording_sid = self._recording(
            callback=verb.get("recordingStatusCallback", ""),
            method=verb.get("recordingStatusCallbackMethod", "POST"),
            events=(verb.get("recordingStatusCallbackEvent") or "completed").split(),
            duration=math.ceil(min(spoken, max_length)),
            source="RecordVerb",
        )
        # Without an action Twilio requests the current document again, as here.
        return self._fetch(
            urljoin(document.url, verb.get("action") or document.url),
            (verb.get("method") or "POST").upper(),
            {
                "RecordingSid": recording_sid,
                "RecordingUrl": _recording_url(recording_sid),
                "RecordingDuration": str(math.ceil(min(spoken, max_length))),
            },
        )

    def _verb_start(self, verb: ElementTree.Element, document: _Document) -> None:
        logger.debug("Sandbox call %s: <Start> has no effect in the sandbox", self.sid)

    def _verb_stop(self, verb: ElementTree.Element, document: _Document) -> None:
        logger.debug("Sandbox call %s: <Stop> has no effect in the sandbox", self.sid)

    # -- time and the shared state --

    def _wait(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass, sending the AMD verdict when it is due and
        obeying hang-ups, redirects and the time limit as they come."""
        end = self.clock + max(0.0, seconds)
        while True:
            self._tick()
            if self.clock >= end:
                return
            step = min(end - self.clock, self.speed * POLL_SECONDS)
            for due in (self.detection_due, self._time_limit_at()):
                if due is not None and due > self.clock:
                    step = min(step, due - self.clock)
            _sleep(step / self.speed)
            self.clock += step

    def _tick(self) -> None:
        if self.detection_due is not None and self.clock >= self.detection_due:
            self.detection_due = None
            self._machine_detection()
        limit = self._time_limit_at()
        if limit is not None and self.clock >= limit:
            raise _CallEnded("completed")
        self._check_control()

    def _time_limit_at(self) -> float | None:
        if self.answered_at is None:
            return None
        limit = _number(self._param("TimeLimit"), DEFAULT_TIME_LIMIT, low=1)
        return self.answered_at + limit

    def _check_control(self) -> None:
        control = cache.get(_control_key(self.sid))
        if not control or control["seq"] <= self.control_seen:
            return
        self.control_seen = control["seq"]
        if control["hangup"]:
            raise _CallEnded("completed" if self.answered_at is not None else "canceled")
        if control["url"]:
            if self.answered_at is None:
                self.pending_redirect = (control["url"], control["method"])
            else:
                raise _Redirected(control["url"], control["method"])

    def _set_status(self, status: str) -> None:
        self.state["status"] = status
        cache.set(_call_key(self.sid), self.state, STATE_TTL)

    # -- callbacks --

    def _call_params(self) -> dict[str, str]:
        """What Twilio sends with every request about the call."""
        to, caller = self._param("To"), self._param("From")
        return {
            "CallSid": self.sid,
            "AccountSid": ACCOUNT_SID,
            "From": caller,
            "To": to,
            "Caller": caller,
            "Called": to,
            "CallStatus": self.state["status"],
            "Direction": "inbound" if self.inbound else "outbound-api",
            "ApiVersion": API_VERSION,
        }

    def _status_event(
        self, event: str, status: str, extra: Mapping[str, str] | None = None
    ) -> None:
        url = self._param("StatusCallback")
        # Twilio sends `completed` whether or not it was asked for.
        if not url or (event != "completed" and event not in self.events):
            return
        params = {
            **self._call_params(),
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            "Timestamp": _timestamp(),
            **(extra or {}),
        }
        self.sequence += 1
        self._notify(url, params, method=self._param("StatusCallbackMethod", "POST"))

    def _machine_detection(self) -> None:
        self.answered_by = self.detection
        url = self._param("AsyncAmdStatusCallback")
        if not url:
            return
        params = {
            "CallSid": self.sid,
            "AccountSid": ACCOUNT_SID,
            "AnsweredBy": self.detection,
            "MachineDetectionDuration": str(DETECTION_MS[self.detection]),
        }
        self._notify(url, params, method=self._param("AsyncAmdStatusCallbackMethod", "POST"))

    def _recording(
        self, *, callback: str, method: str, events: list[str], duration: int, source: str
    ) -> str:
        """Make a recording of `duration` seconds and report it to `callback`; its SID."""
        recording_sid = "RE" + uuid.uuid4().hex
        cache.set(
            _recording_key(recording_sid), {"call": self.sid, "duration": duration}, STATE_TTL
        )
        if callback and "completed" in events:
            params = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": self.sid,
                "RecordingSid": recording_sid,
                "RecordingUrl": _recording_url(recording_sid),
                "RecordingStatus": "completed",
                "RecordingDuration": str(duration),
                "RecordingChannels": "1",
                "RecordingStartTime": _timestamp(),
                "RecordingSource": source,
            }
            self._notify(callback, params, method=method)
        return recording_sid

    def _notify(self, url: str, params: Mapping[str, str], *, method: str) -> None:
        """Send a callback whose answer does not matter; a failure is only logged."""
        try:
            self._send(url, params, method=method)
        except _TwimlFailed as failure:
            logger.warning(
                "Sandbox call %s: callback to %s failed (error %d: %s)",
                self.sid,
                urldefrag(url).url,
                failure.code,
                failure,
            )

    def _send(self, url: str, params: Mapping[str, str], *, method: str) -> requests.Response:
        """Send a signed request to `url` as Twilio does, retried as its connection
        overrides say (`#rc=N`, `rp`, `ct`, `rt`); raises _TwimlFailed when it fails. A
        URL with overrides is signed with or without them, as `signs_fragment` says."""
        target, fragment = urldefrag(url)
        overrides = {name: values[-1] for name, values in parse_qs(fragment).items()}
        retries = int(_number(overrides.get("rc"), DEFAULT_RETRIES, low=0, high=5))
        policy = set(overrides["rp"].split(",")) if "rp" in overrides else DEFAULT_RETRY_POLICY
        timeout = (
            _number(overrides.get("ct"), CONNECT_TIMEOUT * 1000, low=100, high=10000) / 1000,
            _number(overrides.get("rt"), READ_TIMEOUT * 1000, low=100, high=15000) / 1000,
        )
        if method.upper() == "GET":
            separator = "&" if "?" in target else "?"
            target = f"{target}{separator}{urlencode(params)}"
            signed: Mapping[str, str] = {}
        else:
            signed = params
        signed_url = f"{target}#{fragment}" if fragment and signs_fragment(self.sid) else target
        headers = {
            "X-Twilio-Signature": telephony.sign_request(
                url=signed_url, params=signed, keep_fragment=True
            ),
            "User-Agent": "TwilioProxy/1.1 (callcenter sandbox)",
        }
        for attempt in range(retries + 1):
            try:
                if method.upper() == "GET":
                    response = self.session.get(target, headers=headers, timeout=timeout)
                else:
                    response = self.session.post(
                        target, data=dict(params), headers=headers, timeout=timeout
                    )
            except requests.RequestException as exc:
                # ConnectTimeout is both; a read timeout or a broken answer is not "ct".
                connect = isinstance(exc, requests.ConnectTimeout) or (
                    isinstance(exc, requests.ConnectionError)
                    and not isinstance(exc, requests.Timeout)
                )
                kind = "ct" if connect else "rt"
                code = CONNECTION_FAILURE if connect else RETRIEVAL_FAILURE
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status_code < 300:
                    return response
                kind = "5xx" if response.status_code >= 500 else "4xx"
                code, problem = RETRIEVAL_FAILURE, f"HTTP {response.status_code}"
            if attempt == retries or not (kind in policy or "all" in policy):
                raise _TwimlFailed(code, problem)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _param(self, name: str, default: str = "") -> str:
        return _first(self.params, name, default)


def _parse(content: bytes) -> list[ElementTree.Element]:
    """The verbs of a TwiML document; raises _TwimlFailed (12100) when it is not one the
    sandbox can play."""
    try:
        # Our own server's answer, and expat (>= 2.4.1 in Python 3.11) caps entity
        # expansion; ElementTree resolves no external entities.
        root = ElementTree.fromstring(content)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise _TwimlFailed(DOCUMENT_PARSE_FAILURE, f"not XML: {exc}") from exc
    if root.tag != "Response":
        raise _TwimlFailed(DOCUMENT_PARSE_FAILURE, f"<{root.tag}> is not <Response>")
    for verb in root:
        if verb.tag not in VERBS:
            raise _TwimlFailed(DOCUMENT_PARSE_FAILURE, f"<{verb.tag}> is not a verb it plays")
        if verb.tag == "Gather" and any(child.tag not in PROMPTS for child in verb):
            raise _TwimlFailed(DOCUMENT_PARSE_FAILURE, "<Gather> holds more than Say/Play/Pause")
        if verb.tag == "Redirect" and not (verb.text or "").strip():
            raise _TwimlFailed(DOCUMENT_PARSE_FAILURE, "<Redirect> without a URL")
    return list(root)


def _number(value: Any, default: float, *, low: float = 0, high: float | None = None) -> float:
    """`value` as a number within [low, high], `default` when it is missing or not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if math.isnan(number):
        return default
    return max(low, min(number, high)) if high is not None else max(low, number)


def _key_for(persona: str) -> str:
    """The key `persona` presses on a keys-only <Gather>; empty: none."""
    if persona == SandboxPersona.OPT_OUT:
        return settings.OPT_OUT_DIGIT
    return KEYS.get(persona, "")


def _loops(verb: ElementTree.Element) -> int:
    # loop="0" repeats until the call moves on; the sandbox counts it as ten times.
    loops = int(_number(verb.get("loop"), 1, low=0, high=1000))
    return loops or 10


def _event_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [event for item in items for event in str(item).replace(",", " ").split()]


def _timestamp() -> str:
    """Now in RFC 2822 form, as Twilio writes its callbacks' Timestamp."""
    return email.utils.format_datetime(datetime.datetime.now(datetime.UTC))


# --- Recordings --------------------------------------------------------------------------


def _recording_url(recording_sid: str) -> str:
    # Like Twilio's RecordingUrl: no extension; ".wav" gives the same audio.
    return f"{settings.APP_URL.rstrip('/')}/{RECORDINGS_PATH}{recording_sid}"


@require_GET
def recording(request: HttpRequest, recording_sid: str) -> HttpResponse:
    """A sandbox recording: one second of silence (8 kHz, 16-bit mono WAV). Like
    Twilio's media with HTTP authentication enforced, it asks for the account's SID and
    key (the sandbox's webhook key): the platform fetches it for staff, nobody else."""
    if not _authorized(request.headers.get("Authorization", "")):
        response = HttpResponse(status=401)
        response["WWW-Authenticate"] = 'Basic realm="sandbox"'
        return response
    if cache.get(_recording_key(recording_sid)) is None:
        raise Http404(_("No such sandbox recording."))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 8000)
    return HttpResponse(buffer.getvalue(), content_type="audio/x-wav")


urlpatterns = [
    re_path(
        rf"^{RECORDINGS_PATH}(?P<recording_sid>RE[0-9a-f]{{32}})(?:\.wav)?$",
        recording,
        name="sandbox_recording",
    ),
]


def _authorized(header: str) -> bool:
    scheme, _space, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _colon, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return constant_time_compare(user, ACCOUNT_SID) and constant_time_compare(
        password, webhook_auth_token()
    )
