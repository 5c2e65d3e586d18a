"""The sandbox carrier's simulation of one call, queued as `run_sandbox_call_task`.

`run_call` plays the call through our own webhooks over HTTP: signed status callbacks in
order, the TwiML of the answer URL fetched and obeyed verb by verb, a simulated callee (a
persona) answering each <Gather>, the asynchronous AMD verdict, fallbacks, REST redirects
and hang-ups, and the recording callback. A call's state lives in the Django cache, which
web and worker processes share (the file cache on one machine, Redis otherwise).

Time is simulated: SANDBOX_SPEED simulated seconds pass per real second. The callee speaks
the language its <Gather> listens in (Spanish unless that is en-*). A simulated call holds
one worker process for its whole (real) length, so run the worker with a few processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urldefrag

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache

from calls.telephony.base import MACHINE_DETECTION_MODES
from calls.telephony.sandbox import verbs
from calls.telephony.sandbox.state import (
    ACCOUNT_SID,
    API_VERSION,
    STATE_TTL,
    call_key,
    control_key,
    first,
    live_recording_key,
    now,
    price_of,
    recording_key,
    recording_url,
)
from calls.telephony.sandbox.verbs import DEFAULT_TIME_LIMIT, CallEnded
from calls.telephony.sandbox.webhooks import (
    Document,
    TwimlFailed,
    Webhooks,
    bounded,
    parse,
    timestamp,
)
from campaigns.models import SandboxPersona

logger = logging.getLogger(__name__)

# Simulated seconds.
RING_SECONDS = 5  # before a person picks up
VOICEMAIL_PICKUP_SECONDS = 20  # before voicemail picks up: a shorter Timeout gets no-answer
BUSY_SECONDS = 2
DEFAULT_TIMEOUT = 60  # Twilio's defaults for the Calls API
# AMD verdicts (AnsweredBy) and the milliseconds detection takes.
DETECTION_MS = {
    "human": 2600,
    "machine_start": 3200,
    "machine_end_beep": 3800,
    "machine_end_silence": 4200,
}

POLL_SECONDS = 0.05  # real seconds between looks at the shared state during a wait
MAX_DOCUMENTS = 200  # TwiML documents one call may fetch: ends a document that loops

# Patched by tests that want no real waiting.
_sleep = time.sleep


def run_call(sid: str) -> None:
    """Play the sandbox call `sid` from `initiated` to its final status callback.

    Claimed once through the cache, so a task delivered twice plays the call once.
    """
    state = cache.get(call_key(sid))
    if state is None:
        logger.warning("Sandbox call %s is unknown (expired?); not played", sid)
        return
    if not cache.add(f"sandbox:run:{sid}", True, STATE_TTL):
        logger.info("Sandbox call %s is already being played", sid)
        return
    logger.info("Sandbox call %s started: persona %s", sid, state["persona"])
    simulation = Simulation(state)
    try:
        status = simulation.play()
    except SoftTimeLimitExceeded:
        logger.warning("Sandbox call %s ran out of real time; ending it", sid)
        status = "completed" if simulation.answered_at is not None else "canceled"
    simulation.finish(status)


class _Redirected(Exception):
    """Our server redirected the live call through the REST API."""

    def __init__(self, url: str, method: str) -> None:
        super().__init__(url)
        self.url = url
        self.method = method


class Simulation:
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
        # A recording started over REST (carrier.start_recording): its SID, status
        # callback and the simulated moment it started.
        self.live_recording: tuple[str, str, float] | None = None
        self.documents = 0
        self.events = set(_event_list(self.params.get("StatusCallbackEvent")))
        self.inbound = state.get("direction") == "inbound"
        self.webhooks = Webhooks(self.sid)

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
                self.wait(BUSY_SECONDS)
                return "busy"
            self._set_status("ringing")
            self._status_event("ringing", "ringing")
            timeout = bounded(self._param("Timeout"), DEFAULT_TIMEOUT, low=1, high=600)
            pickups: dict[str, int | None] = {
                SandboxPersona.NO_ANSWER: None,
                SandboxPersona.VOICEMAIL: VOICEMAIL_PICKUP_SECONDS,
            }
            pickup = pickups.get(self.persona, RING_SECONDS)
            if pickup is None or pickup > timeout:
                self.wait(timeout)
                return "no-answer"
            self.wait(pickup)
            self._answer()
            self._converse()
        except CallEnded as end:
            return end.status
        return "completed"

    def _answer(self) -> None:
        self.answered_at = self.clock
        self._set_status("in-progress")
        self._status_event("answered", "in-progress")
        mode = self._param("MachineDetection")
        if mode in MACHINE_DETECTION_MODES:
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
        document = self.fetch(self._param("Url"), self._param("Method", "POST"))
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
                self.wait(due - self.clock)
                self.answered_by = self.detection
                extra["AnsweredBy"] = self.detection
        except _Redirected as redirect:
            url, method = redirect.url, redirect.method
        self._follow(self.fetch(url, method, extra))

    def _follow(self, document: Document | None) -> None:
        """Run TwiML documents one after the other until none is left."""
        while document is not None:
            try:
                document = self._execute(document)
            except _Redirected as redirect:
                document = self.fetch(redirect.url, redirect.method)

    def finish(self, status: str) -> None:
        """Record the end, send the final status callback and the recording's."""
        answered_at = self.answered_at if status == "completed" else None
        answered = answered_at is not None
        duration = math.ceil(self.clock - answered_at) if answered_at is not None else 0
        self.state.update(
            status=status,
            duration=duration,
            answered_by=self.answered_by,
            ended_at=now(),
            price=price_of(status, duration),
        )
        cache.set(call_key(self.sid), self.state, STATE_TTL)
        final = {
            "CallDuration": str(duration),
            "Duration": str(math.ceil(duration / 60)),
        }
        if self.answered_by:
            final["AnsweredBy"] = self.answered_by
        self._status_event("completed", status, final)
        if answered and self.live_recording is None:
            self._see_live_recording()
        if answered and self.live_recording is not None:
            recording_sid, callback, started = self.live_recording
            # A recording started mid-call holds the call from then on; its callback
            # names its source as Twilio's does (the spec's recording_enum_source).
            self.record(
                callback=callback,
                method="POST",
                events=["completed"],
                duration=max(1, math.ceil(self.clock - started)),
                source="StartCallRecordingAPI",
                recording_sid=recording_sid,
            )
        if answered and duration and self._param("Record").lower() == "true":
            self.record(
                callback=self._param("RecordingStatusCallback"),
                method=self._param("RecordingStatusCallbackMethod", "POST"),
                events=_event_list(self.params.get("RecordingStatusCallbackEvent"))
                or ["completed"],
                duration=duration,
                source="OutboundAPI",
            )
        self.webhooks.close()
        logger.info(
            "Sandbox call %s ended: %s after %d s (persona %s)",
            self.sid,
            status,
            duration,
            self.persona,
        )

    # -- TwiML --

    def fetch(self, url: str, method: str, extra: Mapping[str, str] | None = None) -> Document:
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
                raise CallEnded("completed")
            try:
                response = self.webhooks.send(target, {**self.call_params(), **params}, method=verb)
                return Document(url=urldefrag(target).url, verbs=parse(response.content))
            except TwimlFailed as failure:
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
        raise CallEnded("completed")

    def _execute(self, document: Document) -> Document | None:
        """Run `document`'s verbs; the next document when one takes over, None when the
        call should end (no verb left)."""
        for verb in document.verbs:
            self._check_control()
            following = verbs.PLAYERS[verb.tag](self, verb, document)
            if following is not None:
                return following
        return None

    # -- time and the shared state --

    def wait(self, seconds: float) -> None:
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
            raise CallEnded("completed")
        self._check_control()

    def _time_limit_at(self) -> float | None:
        if self.answered_at is None:
            return None
        limit = bounded(self._param("TimeLimit"), DEFAULT_TIME_LIMIT, low=1)
        return self.answered_at + limit

    def _check_control(self) -> None:
        if self.answered_at is not None and self.live_recording is None:
            self._see_live_recording()
        control = cache.get(control_key(self.sid))
        if not control or control["seq"] <= self.control_seen:
            return
        self.control_seen = control["seq"]
        if control["hangup"]:
            raise CallEnded("completed" if self.answered_at is not None else "canceled")
        if control["url"]:
            if self.answered_at is None:
                self.pending_redirect = (control["url"], control["method"])
            else:
                raise _Redirected(control["url"], control["method"])

    def _see_live_recording(self) -> None:
        started = cache.get(live_recording_key(self.sid))
        if started is not None:
            self.live_recording = (started["sid"], started["callback"], self.clock)

    def _set_status(self, status: str) -> None:
        self.state["status"] = status
        cache.set(call_key(self.sid), self.state, STATE_TTL)

    # -- callbacks --

    def call_params(self) -> dict[str, str]:
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
            **self.call_params(),
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            "Timestamp": timestamp(),
            **(extra or {}),
        }
        self.sequence += 1
        self.webhooks.notify(url, params, method=self._param("StatusCallbackMethod", "POST"))

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
        self.webhooks.notify(
            url, params, method=self._param("AsyncAmdStatusCallbackMethod", "POST")
        )

    def record(
        self,
        *,
        callback: str,
        method: str,
        events: list[str],
        duration: int,
        source: str,
        recording_sid: str | None = None,
    ) -> str:
        """Make a recording of `duration` seconds and report it to `callback`; its SID
        (`recording_sid` when it was given one as it started)."""
        recording_sid = recording_sid or "RE" + uuid.uuid4().hex
        cache.set(recording_key(recording_sid), {"call": self.sid, "duration": duration}, STATE_TTL)
        if callback and "completed" in events:
            params = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": self.sid,
                "RecordingSid": recording_sid,
                "RecordingUrl": recording_url(recording_sid),
                "RecordingStatus": "completed",
                "RecordingDuration": str(duration),
                "RecordingChannels": "1",
                "RecordingStartTime": timestamp(),
                "RecordingSource": source,
            }
            self.webhooks.notify(callback, params, method=method)
        return recording_sid

    def _param(self, name: str, default: str = "") -> str:
        return first(self.params, name, default)


def _event_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [event for item in items for event in str(item).replace(",", " ").split()]
