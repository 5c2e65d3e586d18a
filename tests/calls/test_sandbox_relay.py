"""The sandbox carrier's ConversationRelay client, against a scripted WebSocket server.

The answer and `<Connect action>` webhooks are test_sandbox's signed hooks on a live
server; the WebSocket at the other end is a small server (websockets' own) run by a script
per test, which records what the sandbox sends and plays our side of the protocol.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedOK
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from calls import telephony
from calls.telephony.sandbox import relay
from tests.calls import test_sandbox
from tests.calls.test_sandbox import DOCUMENTS, FROM, GOODBYE, TO, dial, received, statuses
from tests.processes import free_port

pytestmark = pytest.mark.urls(__name__)

# test_sandbox's signed hooks, and its fixtures: sandbox mode on a live server.
urlpatterns = test_sandbox.urlpatterns
queued = test_sandbox.queued
base = test_sandbox.base

GREETING = "Hola, le llamo de Clínica Demo para recordarle su cita del martes. ¿Podrá venir?"
LONG_REPLY = (
    "Perfecto, muchas gracias por confirmar. Le esperamos el martes a las diez en la "
    "clínica, en la segunda planta; traiga su tarjeta sanitaria y llegue diez minutos antes, "
    "por favor, para los papeles."
)


class Peer:
    """Our side of one socket, as a test script plays it."""

    def __init__(self, connection: ServerConnection, log: list[dict[str, Any]]) -> None:
        self.connection = connection
        self.log = log

    def expect(self, kind: str) -> dict[str, Any]:
        """The sandbox's next message, which must be of type `kind`."""
        message = self.next()
        assert message["type"] == kind, message
        return message

    def next(self) -> dict[str, Any]:
        message = json.loads(self.connection.recv(timeout=10))
        self.log.append(message)
        return message

    def send(self, **message: Any) -> None:
        self.connection.send(json.dumps(message))

    def say(self, *tokens: str) -> None:
        for token in tokens[:-1]:
            self.send(type="text", token=token, last=False)
        self.send(type="text", token=tokens[-1], last=True)


@dataclass
class RelayServer:
    url: str = ""
    script: Callable[[Peer], None] = lambda peer: None
    refuse: bool = False
    headers: list[Headers] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    failures: queue.Queue[BaseException] = field(default_factory=queue.Queue)


@pytest.fixture
def server() -> Iterator[RelayServer]:
    stub = RelayServer()

    def refuse(connection: ServerConnection, request: Request) -> Response | None:
        stub.headers.append(request.headers)
        if stub.refuse:
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        return None

    def handler(connection: ServerConnection) -> None:
        try:
            stub.script(Peer(connection, stub.received))
        except Exception as failure:  # noqa: BLE001 - the test reports it, not this thread
            stub.failures.put(failure)

    with serve(handler, "127.0.0.1", 0, process_request=refuse) as websocket_server:
        thread = threading.Thread(target=websocket_server.serve_forever, daemon=True)
        thread.start()
        port = websocket_server.socket.getsockname()[1]
        stub.url = f"ws://127.0.0.1:{port}/relay/7/"
        yield stub
        websocket_server.shutdown()
    thread.join(timeout=5)
    assert stub.failures.empty(), stub.failures.get()


def connect_twiml(url: str, *, action: str = "/hooks/relay-ended", **attributes: str) -> str:
    """Our answer on the relay transport: <Connect action><ConversationRelay .../></Connect>."""
    settings = {
        "url": url,
        "language": "es-ES",
        "ttsProvider": "ElevenLabs",
        "voice": "EXAVITQu4vr4xnSDxMaL",
        "interruptible": "any",
        "dtmfDetection": "true",
        "welcomeGreeting": GREETING,
        **attributes,
    }
    attrs = "".join(f' {name}="{value}"' for name, value in settings.items() if value)
    connect_attrs = f' action="{action}"' if action else ""
    return (
        f"<Response><Connect{connect_attrs}><ConversationRelay{attrs}>"
        '<Language code="en-US" ttsProvider="ElevenLabs" voice="EXAVITQu4vr4xnSDxMaL"/>'
        '<Parameter name="contact" value="12"/><Parameter name="campaign" value="3"/>'
        "</ConversationRelay></Connect></Response>"
    )


def types(server: RelayServer) -> list[str]:
    return [message["type"] for message in server.received]


def test_a_relay_call_opens_a_signed_socket_and_plays_the_persona_to_our_end(base, server) -> None:
    # given: our server answers each line and ends the session for a transfer
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.say("Estupendo, ", "le esperamos. ", "¿Algo más?")
        peer.expect("prompt")
        peer.say("Gracias, adiós.")
        peer.send(type="end", handoffData=json.dumps({"reason": "transfer"}))

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = "<Response><Dial>+34910000999</Dial></Response>"

    # when
    sid = dial(base, "interested")

    # then: the handshake is signed over the URL (or its http twin), with no parameters
    [headers] = server.headers
    signature = headers["X-Twilio-Signature"]
    twin = server.url.replace("ws://", "http://")
    assert any(
        telephony.signature_is_valid(url=url, params={}, signature=signature)
        for url in (server.url, twin)
    )
    assert not telephony.signature_is_valid(
        url=server.url + "other/", params={}, signature=signature
    )
    # and setup says who calls whom, with the <Parameter>s
    setup, first, second = server.received
    assert setup["callSid"] == sid and setup["accountSid"].startswith("AC")
    assert (setup["from"], setup["to"], setup["direction"]) == (FROM, TO, "outbound-api")
    assert setup["sessionId"].startswith("VX") and len(setup["sessionId"]) == 34
    assert setup["customParameters"] == {"contact": "12", "campaign": "3"}
    # and the caller, having heard the welcome greeting, says its lines in the language
    assert first == {
        "type": "prompt",
        "voicePrompt": "Sí, allí estaré. Gracias.",
        "lang": "es-ES",
        "last": True,
    }
    assert second["voicePrompt"] == "Sí, perfecto, gracias."
    # and our end asks the action URL, whose <Dial> is played
    [ended] = received("relay-ended")
    assert (ended["CallSid"], ended["SessionId"]) == (sid, setup["sessionId"])
    assert (ended["SessionStatus"], ended["CallStatus"]) == ("ended", "in-progress")
    assert json.loads(ended["HandoffData"]) == {"reason": "transfer"}
    assert int(ended["SessionDuration"]) > 0
    assert "ErrorCode" not in ended
    assert statuses()[-1] == "completed"
    assert telephony.fetch_call(sid=sid).duration > 20  # greeting, lines, the <Dial>'s talk


def test_the_signed_url_is_the_ws_url_for_some_calls_and_its_http_twin_for_others() -> None:
    sids = [f"CA{index:032x}" for index in range(20)]

    signed = {relay.signed_url(sid, "wss://calls.example.com/relay/7/") for sid in sids}

    assert signed == {"wss://calls.example.com/relay/7/", "https://calls.example.com/relay/7/"}


def test_an_end_without_handoff_data_asks_the_action_without_it(base, server) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "not_interested")

    [ended] = received("relay-ended")
    assert ended["SessionStatus"] == "ended" and "HandoffData" not in ended


def test_the_caller_speaks_over_a_long_reply_with_an_interrupt_then_its_prompt(
    base, server, monkeypatch
) -> None:
    # given a caller that speaks over every long reply it may interrupt
    monkeypatch.setattr(relay, "_speaks_over", lambda sid, turn: True)

    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.say(*[word + " " for word in LONG_REPLY.split()])
        peer.expect("interrupt")
        peer.expect("prompt")
        peer.send(type="end", handoffData='{"reason": "end"}')

    server.script = script
    # a welcome greeting as long: heard whole, the caller speaks over our replies only
    DOCUMENTS["answer"] = connect_twiml(server.url, welcomeGreeting=LONG_REPLY)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    assert types(server) == ["setup", "prompt", "interrupt", "prompt"]
    interrupt, prompt = server.received[2:]
    heard = interrupt["utteranceUntilInterrupt"]
    assert LONG_REPLY.startswith(heard) and 0 < len(heard) < len(LONG_REPLY)
    assert not heard.endswith(" ") and LONG_REPLY[len(heard)] == " "  # at a word's end
    assert interrupt["durationUntilInterruptMs"] == round(len(heard) / 15 * 1000)
    assert prompt["voicePrompt"] == "Sí, perfecto, gracias." and prompt["last"] is True


@pytest.mark.parametrize(("setting", "override"), [("none", None), ("dtmf", None), ("any", False)])
def test_the_caller_lets_a_reply_it_may_not_interrupt_finish(
    base, server, monkeypatch, setting, override
) -> None:
    # given a caller that would speak over it, and a reply that may not be interrupted by
    # speech: by the noun's `interruptible`, or by the text's own
    monkeypatch.setattr(relay, "_speaks_over", lambda sid, turn: True)

    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        if override is None:
            peer.say(LONG_REPLY)
        else:
            peer.send(type="text", token=LONG_REPLY, last=True, interruptible=override)
        peer.expect("prompt")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url, interruptible=setting)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    assert types(server) == ["setup", "prompt", "prompt"]


def test_the_opt_out_caller_presses_the_key_our_reply_offers(base, server, settings) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")  # it said it wants no more calls
        peer.say(f"Entendido. Si no quiere más llamadas, pulse {settings.OPT_OUT_DIGIT}.")
        peer.expect("dtmf")
        peer.send(type="end", handoffData='{"reason": "end"}')

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "opt_out")

    assert server.received[-1] == {"type": "dtmf", "digit": settings.OPT_OUT_DIGIT}


def test_without_dtmf_detection_the_caller_says_its_line_instead_of_pressing(
    base, server, settings
) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.say(f"Si no quiere más llamadas, pulse {settings.OPT_OUT_DIGIT}.")
        peer.expect("prompt")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url, dtmfDetection="")
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "opt_out")

    assert server.received[-1]["voicePrompt"] == "Que no me llamen más, por favor."


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"type": "speak", "token": "Hola"}, "unknown type 'speak'"),
        ({"type": "text", "last": True}, "text without token"),
        ({"type": "text", "token": "Hola", "last": "yes"}, "last not a boolean"),
        ({"type": "sendDigits", "digits": "12a"}, "sendDigits without digits"),
        ({"type": "end", "handoffData": {"reason": "end"}}, "end without handoffData as a string"),
        ("no json", "not JSON"),
    ],
)
def test_a_message_that_is_not_the_protocols_is_refused_with_error_64107(
    base, server, message, problem
) -> None:
    # given our server sends something Twilio cannot act upon, then goes on
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.connection.send(message if isinstance(message, str) else json.dumps(message))
        peer.expect("error")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    error = server.received[2]
    assert "64107" in error["description"] and problem in error["description"]
    # and the session went on to our end: it was refused, not taken
    [ended] = received("relay-ended")
    assert ended["SessionStatus"] == "ended"


def test_a_refused_handshake_fails_the_session_with_64102(base, server) -> None:
    server.refuse = True
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = "<Response><Say>Lo sentimos.</Say><Hangup/></Response>"

    sid = dial(base, "interested")

    [ended] = received("relay-ended")
    assert (ended["SessionStatus"], ended["ErrorCode"]) == ("failed", "64102")
    assert "403" in ended["ErrorMessage"] and "HandoffData" not in ended
    assert server.received == []
    assert telephony.fetch_call(sid=sid).status == "completed"


def test_no_server_at_the_url_fails_the_session_with_64102(base) -> None:
    url = f"ws://127.0.0.1:{free_port()}/relay/7/"
    DOCUMENTS["answer"] = connect_twiml(url)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    [ended] = received("relay-ended")
    assert (ended["SessionStatus"], ended["ErrorCode"]) == ("failed", "64102")


def test_a_socket_that_drops_fails_the_session_with_64105(base, server) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.connection.close()

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    [ended] = received("relay-ended")
    assert (ended["SessionStatus"], ended["ErrorCode"]) == ("failed", "64105")


def test_a_caller_that_hears_nothing_hangs_up_and_the_action_hears_it(
    base, server, monkeypatch
) -> None:
    # given our server that never answers the caller's line
    monkeypatch.setattr(relay, "CALLER_PATIENCE", 0.5)
    done = threading.Event()

    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        done.wait(5)

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = "<Response><Say>Nunca se oye.</Say></Response>"

    sid = dial(base, "interested")
    done.set()

    [ended] = received("relay-ended")
    assert (ended["SessionStatus"], ended["CallStatus"]) == ("completed", "completed")
    assert statuses()[-1] == "completed"
    assert telephony.fetch_call(sid=sid).status == "completed"


def test_our_rest_hang_up_mid_session_closes_the_socket_and_tells_the_action(base, server) -> None:
    # given our server hangs the call up through the REST API while the socket is open
    def script(peer: Peer) -> None:
        setup = peer.expect("setup")
        peer.expect("prompt")
        telephony.hang_up(sid=setup["callSid"])
        with pytest.raises(ConnectionClosedOK):
            peer.connection.recv(timeout=10)

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = "<Response><Say>Nunca se oye.</Say></Response>"

    sid = dial(base, "interested")

    [ended] = received("relay-ended")
    assert (ended["SessionStatus"], ended["CallStatus"]) == ("completed", "completed")
    assert telephony.fetch_call(sid=sid).status == "completed"


def test_our_rest_redirect_mid_session_leaves_it_for_the_new_twiml(base, server) -> None:
    # given our server redirects the live call (a voicemail found by AMD, say)
    def script(peer: Peer) -> None:
        setup = peer.expect("setup")
        telephony.redirect_call(sid=setup["callSid"], url=f"{base}/hooks/voicemail")
        with pytest.raises(ConnectionClosedOK):
            peer.connection.recv(timeout=10)

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["voicemail"] = GOODBYE

    dial(base, "interested")

    assert len(received("voicemail")) == 1
    assert received("relay-ended") == []


def test_partial_prompts_come_before_the_final_one_when_asked_for(base, server) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.expect("prompt")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url, partialPrompts="true")
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    partial, final = server.received[1:]
    assert partial["last"] is False and final["last"] is True
    assert final["voicePrompt"].startswith(partial["voicePrompt"])
    assert partial["voicePrompt"] != final["voicePrompt"]


def test_debug_sends_info_on_who_speaks_and_what_was_played(base, server) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        while peer.next()["type"] != "prompt":
            pass
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url, debug="speaker-events tokens-played")
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    infos = [(m["name"], m["value"]) for m in server.received if m["type"] == "info"]
    assert infos == [
        ("agentSpeaking", "on"),
        ("agentSpeaking", "off"),
        ("tokensPlayed", GREETING),
        ("clientSpeaking", "on"),
        ("clientSpeaking", "off"),
    ]


def test_our_language_message_switches_the_callers_language(base, server) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.send(type="language", ttsLanguage="en-US", transcriptionLanguage="en-US")
        peer.say("Shall we speak English?")
        peer.expect("prompt")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url)
    DOCUMENTS["relay-ended"] = GOODBYE

    dial(base, "interested")

    last = server.received[-1]
    assert (last["voicePrompt"], last["lang"]) == ("Yes, perfect, thanks.", "en-US")


def test_without_an_action_the_call_goes_on_with_the_next_verb(base, server) -> None:
    def script(peer: Peer) -> None:
        peer.expect("setup")
        peer.expect("prompt")
        peer.send(type="end")

    server.script = script
    DOCUMENTS["answer"] = connect_twiml(server.url, action="").replace(
        "</Connect>", '</Connect><Redirect method="POST">/hooks/after</Redirect>'
    )
    DOCUMENTS["after"] = GOODBYE

    dial(base, "interested")

    assert len(received("after")) == 1 and received("relay-ended") == []


@pytest.mark.parametrize(
    "connect",
    [
        '<Connect><Stream url="wss://example.com/media"/></Connect>',
        '<Connect><ConversationRelay url="https://example.com/relay"/></Connect>',
        '<Connect><ConversationRelay url="wss://e.com/r"><Say>Hola</Say></ConversationRelay>'
        "</Connect>",
    ],
)
def test_a_connect_the_sandbox_cannot_play_fails_the_document_with_12100(base, connect) -> None:
    DOCUMENTS["answer"] = f"<Response>{connect}</Response>"
    DOCUMENTS["fallback"] = GOODBYE

    dial(base, "interested")

    [fallback] = received("fallback")
    assert fallback["ErrorCode"] == "12100"


def test_speaks_over_one_long_reply_in_two_by_call_and_turn() -> None:
    draws = [relay._speaks_over(f"CA{index:032x}", turn) for index in range(50) for turn in (1, 2)]

    assert 30 < sum(draws) < 70
    assert draws == [
        relay._speaks_over(f"CA{index:032x}", turn) for index in range(50) for turn in (1, 2)
    ]
