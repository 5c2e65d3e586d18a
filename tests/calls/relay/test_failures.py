"""What goes wrong on a relay call, and the state each failure ends in: the model slow or
failing (a holding line and one more try, then a polite close), the socket dropped (the
transcript kept, the <Connect> action apologising and hanging up), Twilio's error
messages and frames that are not Twilio's (counted; the conversation goes on)."""

from __future__ import annotations

import json
import logging
import socket as sockets
import time

import pytest
from django.db import OperationalError
from prometheus_client import REGISTRY

from calls.models import Call, Turn
from tests.calls.relay.conftest import (
    answered,
    eventually,
    prompt,
    relay_ended,
    relay_errors,
    reply,
    send,
    setup_message,
)

pytestmark = pytest.mark.django_db(transaction=True)

LONG = (
    "Le esperamos el martes a las diez en la consulta de la calle Mayor, número doce, "
    "segundo piso, puerta B. ¿Le viene bien?"
)


@pytest.fixture
def in_english(relay_call) -> Call:
    """``relay_call`` with an English template: our own lines are then English msgids."""
    template = relay_call.campaign.template
    template.language = "en-US"
    template.save(update_fields=["language"])
    return relay_call


def interrupt_message(heard: str) -> dict:
    """Twilio's `interrupt` (twilio.com/docs/voice/conversationrelay/websocket-messages)."""
    return {"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 500}


def sessions() -> float:
    return REGISTRY.get_sample_value("callcenter_relay_sessions") or 0.0


def ended(socket) -> dict:
    message = json.loads(socket.recv(timeout=10))
    assert message["type"] == "end", message
    return json.loads(message["handoffData"])


# --- The model ------------------------------------------------------------------------------


def test_a_model_past_its_timeout_gets_a_holding_line_and_one_more_try(
    in_english, fake_openai, relay_server, settings
) -> None:
    # given a model that sends nothing for longer than MODEL_TIMEOUT, then answers
    settings.MODEL_TIMEOUT = 1.0  # the second try, answered at once, within it on a busy machine
    answered(in_english)
    fake_openai.hang_next(6)
    fake_openai.queue_reply("Sorry for the wait. Tuesday at ten.")
    before = relay_errors("model")

    with relay_server.open_session(in_english) as socket:
        send(socket, prompt("When is it?"))
        holding, messages = reply(socket)
        answer, _messages = reply(socket)
        eventually(lambda: in_english.turns.filter(text=answer).exists())

    # then
    assert holding == "One moment, please."
    assert messages[-1]["interruptible"] is False
    assert answer == "Sorry for the wait. Tuesday at ten."
    assert len(fake_openai.chat_requests) == 2
    assert relay_errors("model") == before + 1
    said = list(in_english.turns.order_by("sequence").values_list("role", "text"))
    assert said[-3:] == [
        ("caller", "When is it?"),
        ("agent", "One moment, please."),
        ("agent", "Sorry for the wait. Tuesday at ten."),
    ]


@pytest.mark.parametrize("failure", ["timeout", 500, 503, 429])
def test_a_model_failing_twice_closes_the_call_politely(
    in_english, fake_openai, relay_server, settings, failure
) -> None:
    settings.MODEL_TIMEOUT = 0.5
    answered(in_english)
    if failure == "timeout":
        fake_openai.hang_next(5, times=2)
    else:
        fake_openai.fail_next(failure, times=2)
    before = relay_errors("model")

    with relay_server.open_session(in_english) as socket:
        send(socket, prompt("When is it?"))
        holding, _messages = reply(socket)
        closing, messages = reply(socket)
        handoff = ended(socket)

    assert holding == "One moment, please."
    assert closing == "Gracias, adiós."  # the template's closing line
    assert messages[-1]["interruptible"] is False
    assert handoff == {"reason": "end"}
    assert len(fake_openai.chat_requests) == 2
    assert relay_errors("model") == before + 2
    in_english.refresh_from_db()
    assert in_english.dialogue["ended"] is True
    assert in_english.dialogue["closed"] == "model failed twice"


def test_a_model_failing_after_some_words_keeps_them_and_holds(
    relay_call, fake_openai, relay_server, settings
) -> None:
    # The stream breaks after a few chunks: what was said stays in the transcript.
    answered(relay_call)
    fake_openai.queue_reply(LONG, chunk_size=4, drop_after=5)
    fake_openai.queue_reply("El martes a las diez.")
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("¿Cuándo es?"))
        broken, _messages = reply(socket)
        _holding, _messages = reply(socket)
        answer, _messages = reply(socket)
        eventually(lambda: relay_call.turns.filter(text=answer).exists())
    assert broken and LONG.startswith(broken)
    turns = list(relay_call.turns.order_by("sequence"))
    assert (turns[2].role, turns[2].text, turns[2].interrupted) == ("agent", broken.strip(), True)
    assert turns[-1].text == "El martes a las diez."


# --- The socket -----------------------------------------------------------------------------


def test_a_dropped_socket_keeps_what_was_said_and_the_action_apologises(
    in_english, fake_openai, relay_server
) -> None:
    # given a reply being written
    answered(in_english)
    fake_openai.queue_reply(LONG, chunk_size=4, chunk_delay=0.2)
    before = relay_errors("dropped")
    with relay_server.socket(in_english.pk) as connection:
        send(connection, setup_message(in_english))
        send(connection, prompt("When is it?"))
        got = ""
        while len(got) < 12:
            got += json.loads(connection.recv(timeout=10))["token"]

        # when the TCP connection is lost, without a closing handshake
        connection.socket.shutdown(sockets.SHUT_RDWR)

    # then the call keeps the drop and what was said
    call = eventually(
        lambda: Call.objects.filter(pk=in_english.pk, flags__relay_dropped=True).first()
    )
    assert relay_errors("dropped") == before + 1
    assert call.dialogue.get("ended") is not True  # Twilio's action ends it
    line = Turn.objects.filter(call=call, role=Turn.Role.AGENT).order_by("sequence").last()
    assert line.interrupted is True
    assert line.text.startswith(got.strip()) and LONG.startswith(line.text)

    # when Twilio's <Connect> action reports the failed session
    twiml = relay_ended(
        call, SessionStatus="failed", ErrorCode="64105", ErrorMessage="WebSocket closed"
    )

    # then an apology, and a hang-up
    assert [(verb.tag, (verb.text or "").strip()) for verb in twiml] == [
        (
            "Say",
            "Sorry, we are having a technical problem. This call was from Acme; "
            "we will call you another time.",
        ),
        ("Hangup", ""),
    ]
    call.refresh_from_db()
    assert call.flags["relay_failed"] == "64105"
    assert call.dialogue["ended"] is True


def test_a_normal_close_after_our_end_is_not_a_drop(relay_call, fake_openai, relay_server) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Adiós.", tool_calls=[("end_call", {"reason": "done"})])
    before, open_before = relay_errors("dropped"), sessions()
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Nada más."))
        reply(socket)
        ended(socket)
    # closed with 1000 on leaving the block, as Twilio closes it after an `end`
    eventually(lambda: sessions() == open_before)
    eventually(lambda: Call.objects.get(pk=relay_call.pk).dialogue.get("ended"))
    relay_call.refresh_from_db()
    assert "relay_dropped" not in relay_call.flags
    assert relay_call.dialogue["closed"] != "relay socket dropped"
    assert relay_errors("dropped") == before


def test_a_dropped_socket_after_our_end_is_not_a_drop(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Adiós.", tool_calls=[("end_call", {"reason": "done"})])
    before, open_before = relay_errors("dropped"), sessions()
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Nada más."))
        reply(socket)
        ended(socket)
        socket.socket.shutdown(sockets.SHUT_RDWR)
    eventually(lambda: sessions() == open_before)  # the server saw it
    relay_call.refresh_from_db()
    assert "relay_dropped" not in relay_call.flags
    assert relay_errors("dropped") == before


# --- Twilio's messages ----------------------------------------------------------------------


def test_a_twilio_error_is_logged_and_counted_and_the_call_goes_on(
    relay_call, fake_openai, relay_server, caplog
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Perfecto.")
    before = relay_errors("twilio")
    with (
        caplog.at_level(logging.WARNING, logger="calls.relay"),
        relay_server.open_session(relay_call) as socket,
    ):
        # As Twilio reports an invalid message of ours (error 64107).
        send(socket, {"type": "error", "description": "Invalid message received: 64107"})
        send(socket, prompt("Sí."))
        text, _messages = reply(socket)
    assert text == "Perfecto."
    assert relay_errors("twilio") == before + 1
    assert any("Invalid message received: 64107" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("not json", id="not-json"),
        pytest.param(b"\x00\x01", id="binary"),
        pytest.param('["prompt"]', id="not-an-object"),
        pytest.param('{"type": "prompt", "voicePrompt": 5}', id="wrong-type"),
        pytest.param('{"type": "dtmf", "digit": "x"}', id="not-a-key"),
        pytest.param('{"type": "teleport"}', id="unknown-type"),
    ],
)
def test_an_unreadable_frame_is_counted_and_the_session_goes_on(
    relay_call, fake_openai, relay_server, frame
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Perfecto.")
    before = relay_errors("unreadable")
    with relay_server.open_session(relay_call) as socket:
        socket.send(frame)
        send(socket, prompt("Sí."))
        text, _messages = reply(socket)
    assert text == "Perfecto."
    assert relay_errors("unreadable") == before + 1
    assert fake_openai.chat_requests[-1]["messages"][-1] == {"role": "user", "content": "Sí."}


def test_a_drop_right_after_an_interruption_keeps_only_what_was_heard(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    fake_openai.queue_reply(LONG, chunk_size=4, chunk_delay=0.2)
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("¿Cuándo es?"))
        got = ""
        while len(got) < 16:
            got += json.loads(socket.recv(timeout=10))["token"]
        send(socket, interrupt_message(got[:9]))
        socket.socket.shutdown(sockets.SHUT_RDWR)
    line = eventually(lambda: relay_call.turns.filter(interrupted=True).first())
    assert (line.role, line.text) == ("agent", got[:9].strip())


def test_a_caller_hanging_up_before_the_reply_leaves_no_line_unsaid_in_the_transcript(
    relay_call, fake_openai, relay_server
) -> None:
    # Twilio passes on the caller's last words, then closes the socket (they hung up):
    # the model's reply is never heard, so the transcript does not say it was.
    answered(relay_call)
    fake_openai.queue_reply("Entonces le esperamos el martes.", first_delay=0.5)
    open_before = sessions()
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Vale, adiós."))
    eventually(lambda: sessions() == open_before)
    eventually(lambda: relay_call.turns.filter(text="Vale, adiós.").exists())
    time.sleep(1.0)  # the model's answer would be in by now
    said = list(relay_call.turns.order_by("sequence").values_list("role", "text"))
    assert said[-1] == ("caller", "Vale, adiós.")


@pytest.mark.parametrize("said", ["words", "key"])
def test_a_turn_that_fails_ends_the_session_and_the_action_apologises(
    in_english, fake_openai, relay_server, monkeypatch, said
) -> None:
    # given the database failing under a turn (as <Gather>'s webhook would answer 500 and
    # Twilio would play the fallback)
    answered(in_english)

    def lost(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("the database connection was lost")

    # (under a turn the flow decides, and under the exchange written after a reply)
    monkeypatch.setattr("calls.relay.session.prepare_turn", lost)
    monkeypatch.setattr("calls.relay.records.record_streamed", lost)
    fake_openai.queue_reply("It is on Tuesday.")
    with relay_server.open_session(in_english) as socket:
        if said == "words":  # the model answers at once; its exchange is not written
            send(socket, prompt("When is it?"))
            reply(socket)
        else:  # a key: a turn the flow decides, which is not written
            send(socket, {"type": "dtmf", "digit": "5"})
        handoff = ended(socket)  # not left in silence

    # then the <Connect> action apologises and hangs up
    twiml = relay_ended(in_english, SessionStatus="ended", HandoffData=json.dumps(handoff))
    assert [verb.tag for verb in twiml] == ["Say", "Hangup"]
    assert twiml[0].text.startswith("Sorry, we are having a technical problem.")
    assert handoff == {"reason": "failed"}
    in_english.refresh_from_db()
    assert in_english.flags["relay_failed"] == "turn failed"
    assert in_english.dialogue["ended"] is True


@pytest.mark.parametrize(
    "status", [{"SessionStatus": "completed"}, {"CallStatus": "completed", "SessionStatus": ""}]
)
def test_a_session_that_ends_with_the_callees_hang_up_is_no_failure(in_english, status) -> None:
    # given a relay call whose callee hung up: Twilio's action without our hand-off
    answered(in_english)
    twiml = relay_ended(in_english, **status)

    # then nothing is said (nobody listens), and nothing is flagged
    assert [verb.tag for verb in twiml] == ["Hangup"]
    in_english.refresh_from_db()
    assert "relay_failed" not in in_english.flags
