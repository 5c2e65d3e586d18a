"""Twilio opening a relay call's socket again after it dropped (ConversationRelay's
Application Reconnect, twilio.com/en-us/changelog/studio-conversationrelay-widget-updates:
Twilio keeps the call, reconnects to our URL and replays what it buffered): the
conversation goes on from its transcript, in whichever web process takes the socket."""

from __future__ import annotations

import json
import socket as sockets

import pytest

from calls.models import Call, Turn
from calls.relay.consumer import NOT_SET_UP
from tests.calls.relay.conftest import (
    answered,
    close_code,
    eventually,
    prompt,
    reply,
    send,
    setup_message,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_answer_asks_twilio_to_reconnect_unless_told_not_to(relay_call, settings) -> None:
    relay = answered(relay_call).find("Connect/ConversationRelay")
    assert relay is not None and relay.get("applicationReconnect") == "true"
    settings.RELAY_APPLICATION_RECONNECT = False
    relay_call.turns.all().delete()
    relay = answered(relay_call).find("Connect/ConversationRelay")
    assert relay is not None and relay.get("applicationReconnect") is None


@pytest.mark.parametrize("with_setup", [False, True], ids=["replayed words", "setup again"])
def test_a_socket_opened_again_after_a_drop_goes_on_with_the_conversation(
    relay_call, fake_openai, relay_server, with_setup
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Le esperamos el martes a las diez.")
    fake_openai.queue_reply("Perfecto, hasta el martes.")
    with relay_server.socket(relay_call.pk) as connection:
        send(connection, setup_message(relay_call))
        send(connection, prompt("¿Cuándo es la cita?"))
        first, _messages = reply(connection)
        eventually(lambda: relay_call.turns.count() == 3)
        connection.socket.shutdown(sockets.SHUT_RDWR)  # lost, no closing handshake
    eventually(lambda: Call.objects.filter(pk=relay_call.pk, flags__relay_dropped=True).exists())
    first_audio = Call.objects.get(pk=relay_call.pk).first_audio_ms

    # when Twilio opens the socket again and replays the caller's next words
    with relay_server.socket(relay_call.pk) as connection:
        if with_setup:
            send(connection, setup_message(relay_call))
        send(connection, prompt("Vale, allí estaré."))
        second, _messages = reply(connection)

    # then the model answered them knowing the conversation so far
    assert second == "Perfecto, hasta el martes."
    history = fake_openai.chat_requests[-1]["messages"]
    assert {"role": "assistant", "content": first} in history
    said = eventually(
        lambda: (
            list(relay_call.turns.order_by("sequence").values_list("role", "text"))[1:]
            if relay_call.turns.count() == 5
            else None
        )
    )
    assert said == [
        (Turn.Role.CALLER, "¿Cuándo es la cita?"),
        (Turn.Role.AGENT, first),
        (Turn.Role.CALLER, "Vale, allí estaré."),
        (Turn.Role.AGENT, second),
    ]
    call = Call.objects.get(pk=relay_call.pk)
    assert call.first_audio_ms == first_audio  # the greeting was heard once
    assert call.flags["relay_drops"] == 1


def test_words_before_any_setup_on_a_call_never_connected_are_refused(
    relay_call, relay_server
) -> None:
    answered(relay_call)
    with relay_server.socket(relay_call.pk) as connection:
        send(connection, prompt("Hola"))
        assert close_code(connection) == NOT_SET_UP
    assert not relay_call.turns.filter(role=Turn.Role.CALLER).exists()


def test_a_call_that_ended_is_not_reopened(relay_call, fake_openai, relay_server) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Adiós.", tool_calls=[("end_call", {"reason": "done"})])
    with relay_server.socket(relay_call.pk) as connection:
        send(connection, setup_message(relay_call))
        send(connection, prompt("Nada más."))
        reply(connection)
        assert json.loads(connection.recv(timeout=10))["type"] == "end"
    with relay_server.socket(relay_call.pk) as connection:
        send(connection, prompt("¿Hola?"))
        assert close_code(connection) == NOT_SET_UP
