"""A relay call's conversation over its socket, Twilio's side played by a WebSocket client
against the real ASGI application: the answer that connects it, the model's tokens
streamed, the caller speaking over a reply, keys, and the transcript kept."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from django.test import Client

from calls.models import Call, Turn
from tests.calls.relay.conftest import prompt, reply, send, signed_post

pytestmark = pytest.mark.django_db(transaction=True)


def answered(call: Call) -> ET.Element:
    response = signed_post(Client(), "answer", call, {"CallStatus": "in-progress"})
    assert response.status_code == 200
    return ET.fromstring(response.content)


def test_the_answer_connects_a_relay_call_to_its_socket(relay_call, fake_openai) -> None:
    relay_call.campaign.template.hints = "Acme, cita"
    relay_call.campaign.template.extra_languages = "en-US, es-ES"
    relay_call.campaign.template.save()
    twiml = answered(relay_call)
    connect = twiml.find("Connect")
    assert connect is not None
    assert connect.get("action").endswith(f"/twilio/calls/{relay_call.pk}/relay-ended")
    relay = connect.find("ConversationRelay")
    assert relay.get("url") == f"wss://calls.example.com/relay/{relay_call.pk}/"
    assert relay.get("language") == "es-ES"
    assert relay.get("ttsProvider") == "ElevenLabs"
    assert relay.get("interruptible") == "any"
    assert relay.get("dtmfDetection") == "true"
    assert relay.get("hints") == "Acme, cita"
    assert relay.get("welcomeGreeting").startswith("Hola Ana.")
    assert [language.get("code") for language in relay.findall("Language")] == ["en-US"]
    # The contact's id only: nothing personal goes to Twilio's parameters.
    parameters = {p.get("name"): p.get("value") for p in relay.findall("Parameter")}
    assert parameters == {"contact": str(relay_call.contact_id)}
    relay_call.refresh_from_db()
    assert relay_call.transport == "relay"
    assert list(relay_call.turns.values_list("role", "text")) == [
        ("agent", relay.get("welcomeGreeting"))
    ]


def test_a_whole_conversation_streams_tokens_and_keeps_the_transcript(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes a las diez.", chunk_size=6)
    fake_openai.queue_reply("Gracias, adiós.", tool_calls=[("end_call", {"reason": "done"})])
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Sí, iré", last=False))
        send(socket, prompt("Sí, iré el martes."))
        _text, first = reply(socket)
        send(socket, prompt("Nada más, gracias."))
        _text, second = reply(socket)
        second.append(json.loads(socket.recv(timeout=10)))
    tokens = [m for m in first if m["type"] == "text"]
    assert len(tokens) > 3  # streamed as written, not as one line
    assert (
        "".join(m["token"] for m in tokens) == "Perfecto, Ana. Le esperamos el martes a las diez."
    )
    assert tokens[-1]["last"] is True and all(not m["last"] for m in tokens[:-1])
    assert second[-1]["type"] == "end"
    assert '"reason": "end"' in second[-1]["handoffData"]
    turns = list(Turn.objects.filter(call=relay_call).order_by("sequence"))
    assert [(t.role, t.text) for t in turns][1:] == [
        ("caller", "Sí, iré el martes."),
        ("agent", "Perfecto, Ana. Le esperamos el martes a las diez."),
        ("caller", "Nada más, gracias."),
        ("agent", "Gracias, adiós."),
    ]
    assert all(t.response_ms is not None for t in turns[2::2])
    relay_call.refresh_from_db()
    assert relay_call.dialogue["ended"] is True
    assert relay_call.first_audio_ms is not None
