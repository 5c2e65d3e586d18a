"""The caller speaking over our line on a relay call: Twilio stops speaking and tells us
what they heard of it (`interrupt`); the transcript, and so the model's next turn, keeps
only that, whether the line was still being written or already recorded."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import ClientConnection

from calls.models import Turn
from tests.calls.relay.conftest import answered, eventually, prompt, reply, send

pytestmark = pytest.mark.django_db(transaction=True)

LONG = (
    "Le esperamos el martes a las diez en la consulta de la calle Mayor, número doce, "
    "segundo piso, puerta B. ¿Le viene bien?"
)


def interrupt(heard: str) -> dict:
    """Twilio's `interrupt` (twilio.com/docs/voice/conversationrelay/websocket-messages)."""
    return {
        "type": "interrupt",
        "utteranceUntilInterrupt": heard,
        "durationUntilInterruptMs": 60 * len(heard),
    }


def tokens_until(socket: ClientConnection, chars: int) -> str:
    """Our tokens until at least ``chars`` characters came (none of them the last)."""
    got = ""
    while len(got) < chars:
        message = json.loads(socket.recv(timeout=10))
        assert message["type"] == "text" and not message["last"], message
        got += message["token"]
    return got


def model_history(fake_openai) -> list[tuple[str, str]]:
    """The conversation the model's latest request carried (system messages aside)."""
    return [
        (m["role"], m["content"])
        for m in fake_openai.chat_requests[-1]["messages"]
        if m["role"] != "system"
    ]


def test_speaking_over_a_reply_being_written_keeps_only_what_was_heard(
    relay_call, fake_openai, relay_server
) -> None:
    # given the model writing slowly
    answered(relay_call)
    fake_openai.queue_reply(LONG, chunk_size=4, chunk_delay=0.2)
    fake_openai.queue_reply("El martes. ¿Algo más?")
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("¿Cuándo es la cita?"))
        got = tokens_until(socket, 16)
        heard = got[:13]  # Twilio had said a little less ("Le esperamos ")

        # when the caller speaks over it
        send(socket, interrupt(heard))
        send(socket, prompt("Perdone, ¿qué día?"))
        cut, _messages = reply(socket)  # the cut line's cycle closed
        answer, _messages = reply(socket)
        eventually(lambda: relay_call.turns.filter(text=answer).exists())  # recorded

    # then
    assert heard.endswith(" ")
    assert len(got + cut) < len(LONG)  # the stream stopped
    assert answer == "El martes. ¿Algo más?"
    turns = list(relay_call.turns.order_by("sequence"))
    assert [(t.role, t.text, t.interrupted) for t in turns[1:]] == [
        ("caller", "¿Cuándo es la cita?", False),
        ("agent", heard.strip(), True),
        ("caller", "Perdone, ¿qué día?", False),
        ("agent", "El martes. ¿Algo más?", False),
    ]
    assert turns[2].response_ms is not None
    history = model_history(fake_openai)
    assert history[-3:] == [
        ("user", "¿Cuándo es la cita?"),
        ("assistant", heard.strip()),
        ("user", "Perdone, ¿qué día?"),
    ]
    assert not any(LONG[:20] in text for _role, text in history)


def test_speaking_over_a_reply_already_recorded_cuts_the_recorded_line(
    relay_call, fake_openai, relay_server
) -> None:
    # given a reply streamed whole and recorded
    answered(relay_call)
    fake_openai.queue_reply(LONG)
    fake_openai.queue_reply("El martes.")
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("¿Cuándo es la cita?"))
        said, _messages = reply(socket)
        assert said == LONG
        eventually(lambda: relay_call.turns.filter(text=LONG).exists())

        # when Twilio, still speaking it, is interrupted
        heard = "Le esperamos el martes a las diez en"
        send(socket, interrupt(heard))
        line = eventually(lambda: relay_call.turns.filter(interrupted=True).first())
        send(socket, prompt("¿A qué hora?"))
        reply(socket)

    # then
    assert (line.role, line.text) == ("agent", heard)
    assert not relay_call.turns.filter(text=LONG).exists()
    assert model_history(fake_openai)[-2:] == [("assistant", heard), ("user", "¿A qué hora?")]


def test_speaking_over_the_greeting_keeps_what_was_heard_of_it(
    relay_call, fake_openai, relay_server
) -> None:
    twiml = answered(relay_call)
    greeting = twiml.find("Connect/ConversationRelay").get("welcomeGreeting")
    fake_openai.queue_reply("Sí, soy un asistente.")
    with relay_server.open_session(relay_call) as socket:
        send(socket, interrupt(greeting[:9]))
        send(socket, prompt("¿Es usted una máquina?"))
        reply(socket)
    first = relay_call.turns.order_by("sequence").first()
    assert (first.text, first.interrupted) == (greeting[:9].strip(), True)
    assert model_history(fake_openai)[0] == ("assistant", greeting[:9].strip())


def test_an_interruption_stops_the_model_so_its_tools_are_never_applied(
    relay_call, fake_openai, relay_server
) -> None:
    # The model's tool calls follow its text: a reply spoken over is cut before them.
    answered(relay_call)
    fake_openai.queue_reply(
        LONG, chunk_size=4, chunk_delay=0.2, tool_calls=[("end_call", {"reason": "done"})]
    )
    fake_openai.queue_reply("Dígame.")
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("¿Cuándo es la cita?"))
        heard = tokens_until(socket, 8)
        send(socket, interrupt(heard))
        send(socket, prompt("Espere, una pregunta."))
        reply(socket)
        answer, messages = reply(socket)
        eventually(lambda: Turn.objects.filter(call=relay_call, text="Dígame.").exists())
    assert answer == "Dígame."
    assert all(m["type"] == "text" for m in messages)  # no `end`
    relay_call.refresh_from_db()
    assert relay_call.dialogue.get("ended") is not True
    assert not relay_call.flags.get("relay_dropped")
