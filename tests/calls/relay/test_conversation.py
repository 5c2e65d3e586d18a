"""A relay call's conversation over its socket, Twilio's side played by a WebSocket client
against the real ASGI application: the answer that connects it, the model's tokens
streamed, the caller speaking over a reply, keys, and the transcript kept."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from calls.models import Turn
from tests.calls.relay.conftest import answered, eventually, prompt, reply, send

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_silence_after_our_line_asks_if_they_are_still_there_then_closes(
    relay_call, fake_openai, relay_server, settings
) -> None:
    # given an English template (our own lines are then English msgids) and short silences
    template = relay_call.campaign.template
    template.language = "en-US"
    template.save(update_fields=["language"])
    settings.RELAY_SILENCE_SECONDS = 0.3
    answered(relay_call)
    fake_openai.queue_reply("Tuesday at ten, then.")
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Tuesday works."))
        said, _messages = reply(socket)

        # when the caller says nothing, twice
        asked, _messages = reply(socket)
        closing, messages = reply(socket)
        end = json.loads(socket.recv(timeout=10))

    # then
    assert said == "Tuesday at ten, then."
    assert asked == "Are you still there?"
    assert closing == "Gracias, adiós."  # the template's closing line
    assert messages[-1]["interruptible"] is False
    assert end["type"] == "end"
    assert json.loads(end["handoffData"]) == {"reason": "end"}
    relay_call.refresh_from_db()
    assert relay_call.dialogue["closed"] == "silence"
    assert len(fake_openai.chat_requests) == 1  # silences are not the model's turns


def test_words_after_a_silence_go_on_with_the_conversation(
    relay_call, fake_openai, relay_server, settings
) -> None:
    settings.RELAY_SILENCE_SECONDS = 0.3
    answered(relay_call)
    fake_openai.queue_reply("Le esperamos el martes.")
    with relay_server.open_session(relay_call) as socket:
        asked, _messages = reply(socket)  # the greeting met with silence
        settings.RELAY_SILENCE_SECONDS = 30
        assert fake_openai.chat_requests == []
        send(socket, prompt("Sí, perdone."))
        text, _messages = reply(socket)
        eventually(lambda: relay_call.turns.filter(text=text).exists())  # recorded
    assert text == "Le esperamos el martes."
    # The caller's words are written with the reply, once it is streamed.
    said = eventually(
        lambda: (
            list(relay_call.turns.order_by("sequence").values_list("role", "text"))[1:4]
            if relay_call.turns.count() == 4
            else None
        )
    )
    assert said == [("agent", asked), ("caller", "Sí, perdone."), ("agent", text)]
    relay_call.refresh_from_db()
    assert relay_call.dialogue.get("silences", 0) == 0  # the silences in a row ended
    assert relay_call.dialogue.get("ended") is not True


def test_the_time_to_first_audio_and_each_response_time_are_kept(
    relay_call, fake_openai, relay_server
) -> None:
    # given an answer, and Twilio opening the socket a moment later
    answered(relay_call)
    time.sleep(0.3)
    fake_openai.queue_reply("Perfecto.", first_delay=0.4)
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Sí, iré."))
        reply(socket)
        send(socket, {"type": "dtmf", "digit": settings.OPT_OUT_DIGIT})
        reply(socket)
        assert json.loads(socket.recv(timeout=10))["type"] == "end"  # timed before it
    relay_call.refresh_from_db()
    assert 300 <= relay_call.first_audio_ms < 10_000
    reply_turn, confirmation = relay_call.turns.filter(role="agent").order_by("sequence")[1:]
    # From the caller's last words to our first token: the model's own wait included.
    assert 400 <= reply_turn.response_ms < 10_000
    assert reply_turn.text == "Perfecto."
    # Our own line (the opt-out's confirmation) has its response time too.
    assert confirmation.response_ms is not None and confirmation.response_ms < 10_000


def last_token_then_next(socket) -> tuple[str, dict, float]:
    """A reply of ours, then the message after it and the seconds between them."""
    text, _messages = reply(socket)
    sent = time.monotonic()
    message = json.loads(socket.recv(timeout=10))
    return text, message, time.monotonic() - sent


def test_our_end_waits_for_a_streamed_goodbye_to_be_heard(
    relay_call, fake_openai, relay_server, settings
) -> None:
    # Twilio ends the session on `end` at once, cutting off what it has not said yet.
    settings.RELAY_SPEECH_CHARS_PER_SECOND = 50
    answered(relay_call)
    goodbye = "Muchas gracias por su tiempo, Ana. Adiós."  # 41 characters: 0.8 s
    fake_openai.queue_reply(goodbye, tool_calls=[("end_call", {"reason": "done"})])
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Nada más."))
        text, end, waited = last_token_then_next(socket)
    assert text == goodbye
    assert end["type"] == "end"
    assert waited >= 0.7


def test_the_silence_after_a_streamed_reply_counts_once_it_has_been_heard(
    relay_call, fake_openai, relay_server, settings
) -> None:
    settings.RELAY_SPEECH_CHARS_PER_SECOND = 50
    settings.RELAY_SILENCE_SECONDS = 0.3
    answered(relay_call)
    said = "Le esperamos el martes a las diez, en la calle Mayor."  # 53 characters: 1 s
    fake_openai.queue_reply(said)
    with relay_server.open_session(relay_call) as socket:
        reply(socket)  # still there? after the greeting met with silence
        send(socket, prompt("Sí, perdone."))
        text, asked, waited = last_token_then_next(socket)
        settings.RELAY_SILENCE_SECONDS = 30
    assert text == said
    assert asked["type"] == "text"  # the caller is asked whether they are still there
    assert waited >= 1.0 + 0.3 - 0.1


def test_the_model_is_asked_before_the_callers_words_are_written(
    relay_call, fake_openai, relay_server
) -> None:
    # The flow's own decisions (opt-out, the turn limit) are read from the words and the
    # session's memory: nothing stands between the words and the model.
    answered(relay_call)
    fake_openai.queue_reply("Le esperamos el martes.", first_delay=1.0)
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Sí, iré el martes."))
        eventually(lambda: fake_openai.chat_requests)
        written_when_asked = relay_call.turns.filter(role=Turn.Role.CALLER).count()
        text, _messages = reply(socket)
    assert written_when_asked == 0
    assert text == "Le esperamos el martes."
    said = eventually(
        lambda: (
            list(relay_call.turns.order_by("sequence").values_list("role", "text"))[1:]
            if relay_call.turns.count() == 3
            else None
        )
    )
    assert said == [("caller", "Sí, iré el martes."), ("agent", text)]


def test_a_caller_still_speaking_is_not_asked_whether_they_are_there(
    relay_call, fake_openai, relay_server, settings
) -> None:
    # Twilio reports the words as they come (partialPrompts): a long answer is no silence.
    settings.RELAY_SILENCE_SECONDS = 0.5
    assert answered(relay_call).find("Connect/ConversationRelay").get("partialPrompts") == "true"
    fake_openai.queue_reply("Muy bien.")
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Pues verá, el martes", last=False))
        with pytest.raises(TimeoutError):
            socket.recv(timeout=1.5)  # past the silence: nothing said over them
        send(socket, prompt("Pues verá, el martes no puedo ir."))
        text, _messages = reply(socket)
    assert text == "Muy bien."
