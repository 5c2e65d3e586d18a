"""The TwiML verbs the sandbox carrier plays, one function each (`PLAYERS`), and the
simulated seconds each takes: the callee's answers to <Gather>, a <Dial>'s talk, a
<Record>'s recording; <Connect><ConversationRelay> is played by `relay`."""

from __future__ import annotations

import logging
import math
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from django.conf import settings

from calls.telephony.sandbox.personas import REPLIES, key_for
from calls.telephony.sandbox.state import recording_url
from calls.telephony.sandbox.webhooks import Document, bounded

if TYPE_CHECKING:
    from calls.telephony.sandbox.simulation import Simulation

logger = logging.getLogger(__name__)

# Simulated seconds.
CHARACTERS_PER_SECOND = 15  # of <Say> text and of the callee's speech
CLIP_SECONDS = 4  # one <Play>: the sandbox fetches no audio
KEY_PRESS_SECONDS = 2
DIAL_RING_SECONDS = 3
DIAL_TALK_SECONDS = 20  # the agent a <Dial> reaches talks this long
DEFAULT_TIME_LIMIT = 14400  # Twilio's default for the Calls API
# A <Gather> waiting this long or less after its lines is heard as a pause mid-reply: the
# callee does not answer it (calls.flow speaks a reply's first line in one).
MID_REPLY_TIMEOUT = 1


class CallEnded(Exception):
    """The call ends now, with `status`."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def say(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    text = (verb.text or "").strip()
    call.wait(max(1.0, len(text) / CHARACTERS_PER_SECOND) * _loops(verb))


def play(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    digits = verb.get("digits", "")
    call.wait(0.5 * len(digits) if digits else CLIP_SECONDS * _loops(verb))


def pause(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    call.wait(bounded(verb.get("length"), 1, low=0, high=600))


def gather(call: Simulation, verb: ElementTree.Element, document: Document) -> Document | None:
    for prompt in verb:
        PLAYERS[prompt.tag](call, prompt, document)
    inputs = set((verb.get("input") or "dtmf").split())
    action = urljoin(document.url, verb.get("action") or document.url)
    method = (verb.get("method") or "POST").upper()
    timeout = bounded(verb.get("timeout"), 5, low=1, high=600)
    language = verb.get("language") or settings.DEFAULT_CALL_LANGUAGE
    lines = REPLIES["en" if language.lower().startswith("en") else "es"].get(call.persona, ())
    if timeout <= MID_REPLY_TIMEOUT:
        # A second's wait after a line is a pause in the middle of what the agent says
        # (the start of a reply, the rest to come): a callee lets them finish.
        lines = ()
    if call.replies < len(lines) and "speech" in inputs:
        line = lines[call.replies]
        call.replies += 1
        speech_timeout = verb.get("speechTimeout")
        end = 1 if speech_timeout in (None, "auto") else bounded(speech_timeout, 1, low=0)
        call.wait(len(line) / CHARACTERS_PER_SECOND + end)
        # A steady, plausible confidence; the words are exactly the persona's.
        return call.fetch(action, method, {"SpeechResult": line, "Confidence": "0.9312"})
    key = key_for(call.persona)
    if call.replies < len(lines) and "dtmf" in inputs and key:
        call.replies += 1
        call.wait(KEY_PRESS_SECONDS)
        return call.fetch(action, method, {"Digits": key})
    call.wait(timeout)
    if verb.get("actionOnEmptyResult") == "true":
        return call.fetch(action, method)
    return None  # Twilio goes on with the verb after <Gather>


def redirect(call: Simulation, verb: ElementTree.Element, document: Document) -> Document:
    target = urljoin(document.url, (verb.text or "").strip())
    return call.fetch(target, (verb.get("method") or "POST").upper())


def hangup(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    raise CallEnded("completed")


def reject(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    # <Reject> is for incoming calls; on an answered outbound call it can only hang up.
    raise CallEnded("completed")


def dial(call: Simulation, verb: ElementTree.Element, document: Document) -> Document | None:
    number = "".join(verb.itertext()).strip()
    talk: float = 0
    if number:
        call.wait(DIAL_RING_SECONDS)
        talk = min(DIAL_TALK_SECONDS, bounded(verb.get("timeLimit"), DEFAULT_TIME_LIMIT, low=1))
        call.wait(talk)
    action = verb.get("action")
    if not action:
        return None  # Twilio goes on with the verb after <Dial>
    return call.fetch(
        urljoin(document.url, action),
        (verb.get("method") or "POST").upper(),
        {
            "DialCallStatus": "completed" if number else "failed",
            "DialCallSid": "CA" + uuid.uuid4().hex,
            "DialCallDuration": str(talk),
        },
    )


def record(call: Simulation, verb: ElementTree.Element, document: Document) -> Document:
    if verb.get("playBeep", "true") != "false":
        call.wait(0.5)
    max_length = bounded(verb.get("maxLength"), 3600, low=1)
    timeout = bounded(verb.get("timeout"), 5, low=0)
    lines = REPLIES["es"].get(call.persona, ())
    spoken = 0.0
    if call.replies < len(lines):
        spoken = len(lines[call.replies]) / CHARACTERS_PER_SECOND
        call.replies += 1
    call.wait(min(spoken + timeout, max_length))
    recording_sid = call.record(
        callback=verb.get("recordingStatusCallback", ""),
        method=verb.get("recordingStatusCallbackMethod", "POST"),
        events=(verb.get("recordingStatusCallbackEvent") or "completed").split(),
        duration=math.ceil(min(spoken, max_length)),
        source="RecordVerb",
    )
    # Without an action Twilio requests the current document again, as here.
    return call.fetch(
        urljoin(document.url, verb.get("action") or document.url),
        (verb.get("method") or "POST").upper(),
        {
            "RecordingSid": recording_sid,
            "RecordingUrl": recording_url(recording_sid),
            "RecordingDuration": str(math.ceil(min(spoken, max_length))),
        },
    )


def connect(call: Simulation, verb: ElementTree.Element, document: Document) -> Document | None:
    # <Connect><ConversationRelay>: relay.py, which builds on this module's timings.
    from calls.telephony.sandbox.relay import play_relay

    return play_relay(call, verb, document)


def start(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    logger.debug("Sandbox call %s: <Start> has no effect in the sandbox", call.sid)


def stop(call: Simulation, verb: ElementTree.Element, document: Document) -> None:
    logger.debug("Sandbox call %s: <Stop> has no effect in the sandbox", call.sid)


def _loops(verb: ElementTree.Element) -> int:
    # loop="0" repeats until the call moves on; the sandbox counts it as ten times.
    loops = int(bounded(verb.get("loop"), 1, low=0, high=1000))
    return loops or 10


Player = Callable[["Simulation", ElementTree.Element, Document], "Document | None"]

# What plays each verb `webhooks.VERBS` lets through.
PLAYERS: dict[str, Player] = {
    "Say": say,
    "Play": play,
    "Pause": pause,
    "Gather": gather,
    "Redirect": redirect,
    "Hangup": hangup,
    "Reject": reject,
    "Dial": dial,
    "Record": record,
    "Connect": connect,
    "Start": start,
    "Stop": stop,
}
