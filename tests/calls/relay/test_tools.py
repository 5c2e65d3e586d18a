"""What the model's tools and the caller's keys do to a relay call: the session ends with
an `end` whose hand-off data the <Connect> action reads (a hang-up, or a transfer to the
campaign's own number), outcomes are recorded as on any call, and an opt-out (the key, or
the model's tool) is committed to the do-not-call list before its confirmation leaves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection

from calls.models import Call, Turn
from campaigns.models import Contact, DoNotCall
from tests.calls.relay.conftest import (
    TRANSFER_NUMBER,
    answered,
    eventually,
    prompt,
    relay_ended,
    reply,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)


def ended(socket: ClientConnection) -> dict[str, Any]:
    """The `end` message that follows, its hand-off data read."""
    message = json.loads(socket.recv(timeout=10))
    assert message["type"] == "end", message
    return json.loads(message["handoffData"])


def line(socket: ClientConnection) -> tuple[str, list[dict[str, Any]]]:
    """Our next line: a talk cycle with words (a reply of tools alone closes an empty one)."""
    while True:
        text, messages = reply(socket)
        if text:
            return text, messages


def said_by_us(call: Call) -> list[str]:
    return list(
        call.turns.filter(role=Turn.Role.AGENT).order_by("sequence").values_list("text", flat=True)
    )


def verbs(twiml) -> list[tuple[str, str]]:
    return [(element.tag, (element.text or "").strip()) for element in twiml]


# --- end_call -------------------------------------------------------------------------------


def test_end_call_ends_the_session_and_its_action_hangs_up(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("Gracias, Ana. Adiós.", tool_calls=[("end_call", {"reason": "done"})])
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Eso es todo."))
        text, _messages = reply(socket)
        handoff = ended(socket)
    assert text == "Gracias, Ana. Adiós."
    assert handoff == {"reason": "end"}

    twiml = relay_ended(relay_call, SessionStatus="ended", HandoffData=json.dumps(handoff))

    assert verbs(twiml) == [("Hangup", "")]
    relay_call.refresh_from_db()
    assert relay_call.dialogue["ended"] is True
    assert said_by_us(relay_call)[-1] == "Gracias, Ana. Adiós."
    assert not relay_call.flags.get("relay_failed")


def test_end_call_without_words_says_the_closing_line_before_the_end(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    fake_openai.queue_reply("", tool_calls=[("end_call", {"reason": "done"})])
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Eso es todo."))
        text, messages = line(socket)
        handoff = ended(socket)
    assert text == "Gracias, adiós."  # the template's closing line
    assert messages[-1]["interruptible"] is False
    assert handoff == {"reason": "end"}


# --- transfer_to_human ----------------------------------------------------------------------


def test_transfer_to_human_ends_the_session_and_its_action_dials_the_campaigns_number(
    relay_call, fake_openai, relay_server
) -> None:
    template = relay_call.campaign.template
    template.transfer_line = "Le paso con una persona."
    template.save(update_fields=["transfer_line"])
    answered(relay_call)
    fake_openai.queue_reply(
        "Claro, Ana.", tool_calls=[("transfer_to_human", {"reason": "asks for a person"})]
    )
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Quiero hablar con una persona."))
        text, _messages = reply(socket)
        announced, messages = reply(socket)
        handoff = ended(socket)
    assert (text, announced) == ("Claro, Ana.", "Le paso con una persona.")
    assert messages[-1]["interruptible"] is False  # what follows it is decided
    assert handoff == {"reason": "transfer"}

    twiml = relay_ended(relay_call, SessionStatus="ended", HandoffData=json.dumps(handoff))

    [dial] = list(twiml)
    assert (dial.tag, dial.text.strip()) == ("Dial", TRANSFER_NUMBER)
    assert dial.get("action").endswith(f"/twilio/calls/{relay_call.pk}/transfer-ended")
    assert dial.get("callerId") == relay_call.our_number
    relay_call.refresh_from_db()
    assert relay_call.flags["transferred"] is True
    assert said_by_us(relay_call)[-2:] == ["Claro, Ana.", "Le paso con una persona."]


def test_a_handoff_naming_another_number_is_ignored(relay_call, fake_openai) -> None:
    answered(relay_call)
    handoff = {"reason": "transfer", "number": "+34600999999", "to": "+34600999999"}

    twiml = relay_ended(relay_call, SessionStatus="ended", HandoffData=json.dumps(handoff))

    [dial] = list(twiml)
    assert (dial.tag, dial.text.strip()) == ("Dial", TRANSFER_NUMBER)
    assert b"+34600999999" not in json.dumps(verbs(twiml)).encode()


def test_a_transfer_without_an_allowed_number_closes_politely(
    relay_call, fake_openai, relay_server
) -> None:
    relay_call.campaign.transfer_number = "+34910000099"  # not among the partner's
    relay_call.campaign.save(update_fields=["transfer_number"])
    answered(relay_call)
    fake_openai.queue_reply("", tool_calls=[("transfer_to_human", {"reason": "asks"})])
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Con una persona."))
        text, _messages = line(socket)
        handoff = ended(socket)
    assert text == "Gracias, adiós."
    assert handoff == {"reason": "end"}
    # Whatever the hand-off said, the action never dials a number the partner withdrew.
    twiml = relay_ended(relay_call, SessionStatus="ended", HandoffData='{"reason": "transfer"}')
    assert verbs(twiml) == [("Hangup", "")]


# --- Outcomes -------------------------------------------------------------------------------


def test_schedule_callback_keeps_the_local_time_in_the_contacts_zone(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    fake_openai.queue_reply(
        "De acuerdo, le llamamos el martes a las diez.",
        tool_calls=[("schedule_callback", {"at": "2030-01-15T10:00", "note": "prefiere tarde"})],
    )
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Llámenme el martes a las diez."))
        text, messages = reply(socket)
        assert all(m["type"] == "text" for m in messages)  # the call goes on
        eventually(lambda: Call.objects.get(pk=relay_call.pk).outcome.get("callback_at"))
    assert text == "De acuerdo, le llamamos el martes a las diez."
    relay_call.refresh_from_db()
    # Europe/Madrid in January: UTC+1.
    assert relay_call.outcome["callback_at"] == "2030-01-15T10:00:00+01:00"
    assert relay_call.outcome["callback_note"] == "prefiere tarde"


def test_record_answer_keeps_the_outcome_field(relay_call, fake_openai, relay_server) -> None:
    answered(relay_call)
    fake_openai.queue_reply(
        "Perfecto, la apunto.",
        tool_calls=[("record_answer", {"field": "attending", "value": True})],
    )
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("Sí, iré."))
        reply(socket)
        eventually(lambda: "attending" in Call.objects.get(pk=relay_call.pk).outcome)
    relay_call.refresh_from_db()
    assert relay_call.outcome["attending"] is True


# --- Opt-outs -------------------------------------------------------------------------------


def listed(call: Call) -> bool:
    return DoNotCall.objects.filter(phone=call.to_number, partner=call.campaign.partner).exists()


def test_the_opt_out_key_is_committed_before_its_confirmation_then_the_session_ends(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    with relay_server.open_session(relay_call) as socket:
        send(socket, {"type": "dtmf", "digit": settings.OPT_OUT_DIGIT})
        message = json.loads(socket.recv(timeout=10))
        listed_when_confirmed = listed(relay_call)  # read as the confirmation arrives
        handoff = ended(socket)
    assert message["type"] == "text" and message["last"] is True
    assert message["interruptible"] is False
    assert listed_when_confirmed
    assert handoff == {"reason": "end"}
    assert fake_openai.chat_requests == []
    relay_call.refresh_from_db()
    assert relay_call.flags["opted_out"] is True
    assert Contact.objects.get(pk=relay_call.contact_id).state == Contact.State.OPTED_OUT
    turns = list(relay_call.turns.order_by("sequence").values_list("role", "digits", "text"))
    assert turns[-2:] == [("caller", settings.OPT_OUT_DIGIT, ""), ("agent", "", message["token"])]


def test_another_key_is_the_callers_turn_for_the_model(
    relay_call, fake_openai, relay_server
) -> None:
    answered(relay_call)
    other = "3" if settings.OPT_OUT_DIGIT != "3" else "4"
    fake_openai.queue_reply("Ha pulsado una tecla. ¿Viene a la cita?")
    with relay_server.open_session(relay_call) as socket:
        send(socket, {"type": "dtmf", "digit": other})
        text, _messages = reply(socket)
    assert text == "Ha pulsado una tecla. ¿Viene a la cita?"
    assert fake_openai.chat_requests[-1]["messages"][-1] == {"role": "user", "content": other}
    assert not listed(relay_call)


def test_the_opt_out_tool_is_committed_before_our_confirmation(
    relay_call, fake_openai, relay_server
) -> None:
    # The model's own words confirm nothing: our confirmation follows, once committed.
    relay_call.campaign.template.language = "en-US"
    relay_call.campaign.template.save(update_fields=["language"])
    answered(relay_call)
    fake_openai.queue_reply("Of course.", tool_calls=[("opt_out", {})])
    with relay_server.open_session(relay_call) as socket:
        send(socket, prompt("My husband handles this, leave us alone."))
        words, _messages = reply(socket)
        assert words == "Of course."
        message = json.loads(socket.recv(timeout=10))
        listed_when_confirmed = listed(relay_call)
        handoff = ended(socket)
    assert message["token"] == "Understood: we will not call you again. Goodbye."
    assert message["interruptible"] is False
    assert listed_when_confirmed
    assert handoff == {"reason": "end"}
    relay_call.refresh_from_db()
    assert Contact.objects.get(pk=relay_call.contact_id).state == Contact.State.OPTED_OUT
    # What the caller heard, the model's words and ours, is in the transcript.
    assert said_by_us(relay_call)[-2:] == ["Of course.", message["token"]]
