"""The sandbox carrier's ConversationRelay: `<Connect><ConversationRelay>` played as Twilio
plays it, the simulated callee at the other end of our WebSocket.

Twilio's pages this follows, cited below as CR and WS:
- CR: https://www.twilio.com/docs/voice/twiml/connect/conversationrelay (the TwiML noun,
  its attributes, the `<Connect action>` request at the session's end);
- WS: https://www.twilio.com/docs/voice/conversationrelay/websocket-messages (the messages
  each side sends).

The call opens a WebSocket to the `url` (signed with X-Twilio-Signature), sends `setup`,
hears the `welcomeGreeting`, then plays the persona: its lines as `prompt`s, the keys it
presses as `dtmf`, sometimes speaking over a long reply (`interrupt`), hanging up when it
has heard nothing for a while. Our `end` closes the socket and the `<Connect action>` URL is
asked what comes next; so is it, with SessionStatus=failed, when the socket is refused or
drops. A message of ours that is not the protocol's is answered with an `error` (64107).

Time: what is said takes simulated seconds (`Simulation.wait`), as in the rest of the
sandbox; waiting for our server does not, and is bounded in real seconds, since our
server's clock (its silence timer, the model) is real.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
import xml.etree.ElementTree as ElementTree
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from calls.telephony import signatures
from calls.telephony.sandbox.personas import REPLIES, key_for
from calls.telephony.sandbox.state import ACCOUNT_SID, webhook_auth_token
from calls.telephony.sandbox.verbs import (
    CHARACTERS_PER_SECOND,
    CLIP_SECONDS,
    KEY_PRESS_SECONDS,
    CallEnded,
)
from calls.telephony.sandbox.webhooks import CONNECT_TIMEOUT, Document

if TYPE_CHECKING:
    from calls.telephony.sandbox.simulation import Simulation

logger = logging.getLogger(__name__)

# Twilio's ConversationRelay errors (twilio.com/docs/api/errors/<code>).
UNABLE_TO_CONNECT = 64102  # "Unable to Connect to Websocket URL"
WEBSOCKET_ENDED = 64105  # "Websocket ended": it disconnected from the server side
INVALID_MESSAGE = 64107  # "Invalid Message Received": not a message it can act upon

# Real seconds: how long the caller waits hearing nothing before it hangs up (our server's
# silence timer must speak before), and the step between looks at the call's state.
CALLER_PATIENCE = 30.0
POLL_SECONDS = 0.1
CLOSE_TIMEOUT = 2.0
# Simulated seconds: Twilio's end-of-speech detection after the caller's last word.
END_OF_SPEECH = 1.0
# A reply longer than this (characters; ten seconds spoken) is long: the caller may speak
# over it (one long reply in two, by the call and the turn), after hearing this much.
LONG_REPLY = 150
HEARD_BEFORE_INTERRUPTING = 60

# What our server may send, with the fields each needs (WS, "Sending messages to Twilio").
OUR_MESSAGES = frozenset({"text", "play", "sendDigits", "language", "end"})
DIGITS = re.compile(r"^[0-9*#wW]+$")


def play_relay(call: Simulation, verb: ElementTree.Element, document: Document) -> Document | None:
    """`<Connect>` holding `<ConversationRelay>` (webhooks.parse checked its shape): the
    session, then the `<Connect action>` document, or the next verb when it has none."""
    return RelaySession(call, verb, document).play()


def refusal(raw: str | bytes) -> str | None:
    """Why Twilio would refuse `raw` from our server (64107, WS), None when it is valid."""
    if isinstance(raw, bytes):
        return "a binary frame; messages are JSON text"
    try:
        message = json.loads(raw)
    except ValueError:
        return "not JSON"
    if not isinstance(message, dict):
        return "not a JSON object"
    kind = message.get("type")
    if kind not in OUR_MESSAGES:
        return f"unknown type {kind!r}"
    problems = {
        "text": not isinstance(message.get("token"), str),
        "play": not isinstance(message.get("source"), str) or not message["source"],
        "sendDigits": not DIGITS.match(str(message.get("digits", ""))),
        "language": not any(
            isinstance(message.get(name), str) and message[name]
            for name in ("ttsLanguage", "transcriptionLanguage")
        ),
        "end": not isinstance(message.get("handoffData", ""), str),
    }
    if problems[kind]:
        fields = {
            "text": "token (a string)",
            "play": "source (a URL)",
            "sendDigits": "digits (0-9, *, #, w)",
            "language": "ttsLanguage or transcriptionLanguage",
            "end": "handoffData as a string",
        }
        return f"{kind} without {fields[kind]}"
    for flag in ("last", "interruptible", "preemptible"):
        if flag in message and not isinstance(message[flag], bool):
            return f"{kind} with {flag} not a boolean"
    return None


def signed_url(sid: str, url: str) -> str:
    """The URL the handshake of call `sid` is signed over: the `url` as given for half the
    calls (by the CallSid), its https:// (http://) twin for the others, since Twilio does
    not document which it signs (CR, "Configure your WebSocket server" in its onboarding
    guide: the signature is computed over the URL with no parameters)."""
    if hashlib.sha256(sid.encode()).digest()[2] % 2 == 0:
        return url
    return re.sub(r"^ws(s?)://", r"http\1://", url)


class _Silence(Exception):
    """The caller heard nothing for CALLER_PATIENCE and hangs up."""


class RelaySession:
    """One ConversationRelay session of a sandbox call: its socket, what the caller has
    heard, what it has said."""

    def __init__(self, call: Simulation, verb: ElementTree.Element, document: Document) -> None:
        relay = verb.find("ConversationRelay")
        assert relay is not None  # webhooks.parse lets no other <Connect> through
        self.call = call
        self.url = relay.get("url", "")
        action = verb.get("action")
        self.action = urljoin(document.url, action) if action else ""
        self.method = (verb.get("method") or "POST").upper()
        # CR: `language` defaults to en-US; `interruptible` to "any"; `dtmfDetection` and
        # `partialPrompts` are off unless "true"; `debug` lists the `info` messages wanted.
        self.language = relay.get("language") or "en-US"
        self.interruptible = relay.get("interruptible", "any")
        self.welcome = relay.get("welcomeGreeting", "")
        self.dtmf = relay.get("dtmfDetection", "").lower() == "true"
        self.partial_prompts = relay.get("partialPrompts", "").lower() == "true"
        self.debug = set((relay.get("debug") or "").split())
        self.parameters = {
            parameter.get("name", ""): parameter.get("value", "")
            for parameter in relay.iter("Parameter")
            if parameter.get("name")
        }
        self.session_id = "VX" + uuid.uuid4().hex
        self.started = call.clock
        self.replies_heard = 0
        self.socket: ClientConnection | None = None

    # -- the session's course --

    def play(self) -> Document | None:
        try:
            self.socket = connect(
                self.url,
                additional_headers={
                    "X-Twilio-Signature": signatures.compute_signature(
                        token=webhook_auth_token(),
                        url=signed_url(self.call.sid, self.url),
                        params={},
                    ),
                    "User-Agent": "TwilioProxy/1.1 (callcenter sandbox)",
                },
                open_timeout=CONNECT_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
                proxy=None,  # Twilio reaches the URL itself: no proxy of the environment
                compression=None,
                legacy=True,  # one connection, not websockets' reconnecting iterator
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            # CR: the session fails; the action URL hears why (SessionStatus=failed).
            logger.warning(
                "Sandbox call %s: no relay socket at %s (%s)", self.call.sid, self.url, exc
            )
            return self._ended("failed", error=(UNABLE_TO_CONNECT, f"{type(exc).__name__}: {exc}"))
        try:
            handoff = self._converse()
        except ConnectionClosed as exc:
            logger.warning("Sandbox call %s: relay socket dropped (%s)", self.call.sid, exc)
            return self._ended("failed", error=(WEBSOCKET_ENDED, f"{type(exc).__name__}: {exc}"))
        except CallEnded:
            # The call ends (the time limit, our REST hang-up): the socket closes and the
            # action URL is told the call completed; what it answers is not played (CR,
            # the `<Connect>` action).
            self._close()
            self._session_over()
            raise
        except _Silence as exc:
            # The caller, hearing nothing, hangs up: the same.
            self._close()
            self._session_over()
            raise CallEnded("completed") from exc
        finally:
            self._close()
        return self._ended("ended", handoff=handoff)

    def _converse(self) -> str | None:
        """Play the caller until our `end`; its handoffData (None when it has none)."""
        direction = "inbound" if self.call.inbound else "outbound-api"
        params = self.call.call_params()
        # WS, "Setup message": sent right after the WebSocket is established.
        self._send(
            {
                "type": "setup",
                "sessionId": self.session_id,
                "accountSid": ACCOUNT_SID,
                "parentCallSid": "",
                "callSid": self.call.sid,
                "from": params["From"],
                "to": params["To"],
                "forwardedFrom": "",
                "callType": "PSTN",
                "callerName": "",
                "direction": direction,
                "callStatus": "IN-PROGRESS",
                "customParameters": self.parameters,
            }
        )
        if self.welcome:
            # CR, `welcomeGreeting`: spoken as soon as the session starts. The caller hears
            # it whole (it speaks over our replies only), whatever
            # `welcomeGreetingInterruptible` allows.
            self._hear(self.welcome, "none")
        tokens: list[str] = []
        interruptible: bool | None = None
        while True:
            raw = self._receive()
            problem = refusal(raw)
            if problem is not None:
                # WS, "Error message"; twilio.com/docs/api/errors/64107.
                logger.warning("Sandbox call %s: refused %r (%s)", self.call.sid, raw, problem)
                self._send(
                    {
                        "type": "error",
                        "description": f"Invalid message received (error {INVALID_MESSAGE}): "
                        f"{problem}",
                    }
                )
                continue
            message: dict[str, Any] = json.loads(raw)
            kind = message["type"]
            if kind == "text":
                # WS, "Text tokens message": tokens are spoken as they come; `last` ends
                # the reply; `interruptible` overrides the noun's for this reply.
                tokens.append(message["token"])
                if message.get("interruptible") is not None:
                    interruptible = message["interruptible"]
                if message.get("last"):
                    reply, tokens = "".join(tokens), []
                    self._hear(reply, self.interruptible, override=interruptible)
                    interruptible = None
            elif kind == "play":
                # WS, "Play media message": the sandbox fetches no audio.
                self._speaking("agentSpeaking", CLIP_SECONDS)
                self._answer("")
            elif kind == "sendDigits":
                self.call.wait(0.5 * len(message["digits"]))
            elif kind == "language":
                # WS, "Switch language message": the caller now speaks the new language.
                self.language = message.get("transcriptionLanguage") or self.language
            else:  # end, WS "End session message"
                handoff = message.get("handoffData")
                return handoff if isinstance(handoff, str) else None

    def _hear(self, reply: str, setting: str, *, override: bool | None = None) -> None:
        """The caller hears `reply`, maybe speaking over it (a long one, when speech may
        interrupt it: CR `interruptible`), then answers it."""
        speech_may_interrupt = setting.lower() in ("any", "speech", "true")
        if override is not None:
            speech_may_interrupt = override
        line = self._next_line()
        self.replies_heard += 1
        cut = _interruption_point(reply)
        if (
            line
            and speech_may_interrupt
            and cut is not None
            and _speaks_over(self.call.sid, self.replies_heard)
        ):
            heard = reply[:cut].rstrip()
            self._speaking("agentSpeaking", len(heard) / CHARACTERS_PER_SECOND, played=heard)
            # WS, "Interrupt message": what was spoken of the reply until the caller
            # started talking, and for how long.
            self._send(
                {
                    "type": "interrupt",
                    "utteranceUntilInterrupt": heard,
                    "durationUntilInterruptMs": round(len(heard) / CHARACTERS_PER_SECOND * 1000),
                }
            )
            self._say(line)
            return
        self._speaking("agentSpeaking", len(reply) / CHARACTERS_PER_SECOND, played=reply)
        self._answer(reply)

    def _answer(self, heard: str) -> None:
        """The caller's turn after hearing `heard`: the key it presses when that offers it
        and keys are listened for (CR `dtmfDetection`), else its next line, else silence."""
        line = self._next_line()
        if not line:
            return
        key = key_for(self.call.persona)
        if self.dtmf and key and _offers_key(heard, key):
            self.call.replies += 1
            self.call.wait(KEY_PRESS_SECONDS)
            for digit in key:
                self._send({"type": "dtmf", "digit": digit})  # WS, "DTMF message"
            return
        self._say(line)

    def _say(self, line: str) -> None:
        """The caller says `line`: a partial `prompt` halfway when partialPrompts is on, the
        final one (`last` true) after its end-of-speech pause (WS, "Prompt message")."""
        self.call.replies += 1
        self._info("clientSpeaking", "on")
        seconds = len(line) / CHARACTERS_PER_SECOND
        words = line.split()
        if self.partial_prompts and len(words) > 1:
            self.call.wait(seconds / 2)
            partial = " ".join(words[: len(words) // 2])
            self._send(
                {"type": "prompt", "voicePrompt": partial, "lang": self.language, "last": False}
            )
            self.call.wait(seconds / 2)
        else:
            self.call.wait(seconds)
        self._info("clientSpeaking", "off")
        self.call.wait(END_OF_SPEECH)
        self._send({"type": "prompt", "voicePrompt": line, "lang": self.language, "last": True})

    def _next_line(self) -> str:
        language = "en" if self.language.lower().startswith("en") else "es"
        lines = REPLIES[language].get(self.call.persona, ())
        return lines[self.call.replies] if self.call.replies < len(lines) else ""

    # -- the socket --

    def _send(self, message: dict[str, Any]) -> None:
        assert self.socket is not None
        self.socket.send(json.dumps(message))

    def _receive(self) -> str | bytes:
        """Our server's next message; raises _Silence when none comes for CALLER_PATIENCE
        real seconds, CallEnded or a redirect when the call's state says so."""
        assert self.socket is not None
        deadline = time.monotonic() + CALLER_PATIENCE
        while True:
            self.call.wait(0)  # hang-ups, redirects, the time limit
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Silence
            try:
                return self.socket.recv(timeout=min(remaining, POLL_SECONDS))
            except TimeoutError:
                continue

    def _speaking(self, who: str, seconds: float, *, played: str = "") -> None:
        """`seconds` of speech by `who` (agentSpeaking: ours), told in `info` messages when
        `debug` asks for them."""
        self._info(who, "on")
        self.call.wait(seconds)
        self._info(who, "off")
        if played:
            self._info("tokensPlayed", played)

    def _info(self, name: str, value: str) -> None:
        # WS, "Info message": only with CR `debug`; speaker-events: who speaks, on and off;
        # tokens-played: the words of ours that were played.
        option = "tokens-played" if name == "tokensPlayed" else "speaker-events"
        if option in self.debug or "debugging" in self.debug:
            self._send({"type": "info", "name": name, "value": value})

    def _close(self) -> None:
        if self.socket is not None:
            self.socket.close()

    # -- the `<Connect action>` request --

    def _session_params(self, status: str) -> dict[str, str]:
        return {
            "SessionId": self.session_id,
            "SessionStatus": status,
            "SessionDuration": str(math.ceil(self.call.clock - self.started)),
        }

    def _ended(
        self, status: str, *, handoff: str | None = None, error: tuple[int, str] | None = None
    ) -> Document | None:
        """CR, `<Connect action>`: the session's end asks the action URL what comes next,
        with HandoffData when our `end` carried it and ErrorCode/ErrorMessage on failure;
        without an action the call goes on with the next verb."""
        if not self.action:
            return None
        params = self._session_params(status)
        if handoff is not None:
            params["HandoffData"] = handoff
        if error is not None:
            params["ErrorCode"], params["ErrorMessage"] = str(error[0]), error[1]
        return self.call.fetch(self.action, self.method, params)

    def _session_over(self) -> None:
        if self.action:
            params = {**self._session_params("completed"), "CallStatus": "completed"}
            self.call.webhooks.notify(
                self.action, {**self.call.call_params(), **params}, method=self.method
            )


def _interruption_point(reply: str) -> int | None:
    """Where in a long `reply` the caller starts speaking (a word's end), None when the
    reply is not long."""
    if len(reply) <= LONG_REPLY:
        return None
    space = reply.find(" ", HEARD_BEFORE_INTERRUPTING)
    return space if space > 0 else None


def _speaks_over(sid: str, turn: int) -> bool:
    # A hash, not a random draw: the same call speaks over the same replies.
    return hashlib.sha256(f"{sid}:{turn}".encode()).digest()[0] % 2 == 0


def _offers_key(heard: str, key: str) -> bool:
    """Whether `heard` asks for `key` ("pulse 9", "press 9")."""
    pattern = rf"\b(pulse|marque|presione|press|dial)\b[^.?!]{{0,20}}?(?<!\d){re.escape(key)}(?!\d)"
    return re.search(pattern, heard, re.IGNORECASE) is not None
