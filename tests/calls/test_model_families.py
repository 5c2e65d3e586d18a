"""A whole AI call through the webhooks, signed as Twilio signs them, for each family of
OpenAI models the fake answers as OpenAI does: the original gpt-4 (no JSON mode), a chat
model, an o-series and a gpt-5 reasoning model (no max_tokens, no temperature, reasoning
counted in their token bound)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import reverse

from calls import conversation, tasks, telephony
from calls.models import Call, Turn
from campaigns.models import Contact
from tests.factories import CallFactory, ContactFactory
from tests.fakes.openai import FakeOpenAI

# The turn webhook works in threads of its own, as under the real server: committed data.
pytestmark = pytest.mark.django_db(transaction=True)

APP_URL = "https://calls.example.com"
SID = "CA" + "b" * 32
FAMILIES = ["gpt-4", "gpt-4o-mini", "o4-mini", "gpt-5-mini"]
OUTCOME = {"outcome": {"attending": True}, "summary": "Ana confirma que vendrá el martes."}


@pytest.fixture(autouse=True)
def _call_settings(settings) -> Iterator[None]:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "sandbox"  # webhooks signed with the sandbox key
    settings.MAX_TOKENS = 150
    settings.TEMPERATURE = 0.7
    settings.OPENAI_TOKEN_PARAMETER = "max_completion_tokens"
    settings.OPENAI_REASONING_EFFORT = "auto"
    conversation._LEARNT.clear()
    yield
    conversation._LEARNT.clear()


@pytest.fixture
def live_call(campaign) -> Call:
    campaign.caller_number = "+34910000000"
    campaign.save()
    # The field the model records during the call (record_answer takes only these).
    campaign.template.outcome_schema = {
        "type": "object",
        "properties": {"attending": {"type": "boolean"}},
    }
    campaign.template.save(update_fields=["outcome_schema"])
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000002",
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
        state=Contact.State.CALLING,
        attempts=1,
    )
    return CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.IN_PROGRESS,
        provider_sid=SID,
        from_number="+34910000000",
        to_number=contact.phone,
    )


def signed_post(client, name: str, call: Call, params: dict[str, str]):
    path = reverse(f"calls:{name}", kwargs={"call_id": call.pk})
    params = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **params}
    signature = telephony.sign_request(url=APP_URL + path, params=params)
    return client.post(path, params, headers={"x-twilio-signature": signature})


def turn(call: Call, params: dict[str, str]) -> list[ET.Element]:
    """POST the turn webhook as Twilio would through the ASGI stack, following an AI
    reply's <Redirect> to its continuation: every verb, in order."""

    async def converse() -> list[ET.Element]:
        client = AsyncClient()
        path = reverse("calls:turn", kwargs={"call_id": call.pk})
        elements: list[ET.Element] = []
        while True:
            form = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **params}
            signature = telephony.sign_request(url=APP_URL + path, params=form)
            response = await client.post(path, form, headers={"x-twilio-signature": signature})
            assert response.status_code == 200, response.content
            elements += list(ET.fromstring(response.content))  # noqa: S314 - our own TwiML
            last = elements[-1]
            if last.tag != "Redirect" or "/continue?" not in (last.text or ""):
                return elements
            elements.pop()
            path = last.text.removeprefix(APP_URL)

    return async_to_sync(converse)()


def said(elements: list[ET.Element]) -> list[str]:
    return [
        element.text or ""
        for node in elements
        for element in ([node] if node.tag == "Say" else list(node))
        if element.tag == "Say"
    ]


@pytest.mark.parametrize("model", FAMILIES)
def test_a_whole_call_works_with_each_model_family(
    model: str, live_call: Call, fake_openai: FakeOpenAI, settings, monkeypatch
) -> None:
    settings.DEFAULT_MODEL = model
    signed_post(Client(), "answer", live_call, {})

    # The model speaks.
    fake_openai.queue_reply("Perfecto, Ana. ¿Confirma su cita del martes?")
    spoken = turn(live_call, {"SpeechResult": "Sí, dígame."})
    assert said(spoken) == ["Perfecto, Ana.", "¿Confirma su cita del martes?"]

    # It records the answer with a tool alone, then says what follows in the same turn.
    fake_openai.queue_reply(tool_calls=[("record_answer", {"field": "attending", "value": True})])
    fake_openai.queue_reply("Anotado, le esperamos. ¿Algo más?")
    continued = turn(live_call, {"SpeechResult": "Sí, allí estaré."})
    assert said(continued) == ["Anotado, le esperamos.", "¿Algo más?"]

    # It says goodbye and ends the call.
    fake_openai.queue_reply("Gracias, Ana. Adiós.", tool_calls=[("end_call", {"reason": "done"})])
    ended = turn(live_call, {"SpeechResult": "No, gracias."})
    assert said(ended) == ["Gracias, Ana.", "Adiós."]
    assert ended[-1].tag == "Hangup"

    # The call completes; its outcome is extracted (gpt-4, without JSON mode, wraps it).
    extracted = json.dumps(OUTCOME, ensure_ascii=False)
    if model == "gpt-4":
        extracted = f"Aquí tiene el resultado:\n```json\n{extracted}\n```"
    fake_openai.queue_reply(extracted)
    queued: list[int] = []
    monkeypatch.setattr(tasks.conclude_call_task, "delay", queued.append)
    completed = signed_post(
        Client(),
        "status",
        live_call,
        {"CallStatus": "completed", "SequenceNumber": "3", "CallDuration": "42"},
    )
    assert completed.status_code == 204
    assert queued == [live_call.pk]
    assert tasks.conclude_call_task.apply(args=(live_call.pk,)).get() == "extracted"

    # The transcript holds what the caller heard; the outcome, the answer and summary.
    transcript = [(t.role, t.text) for t in live_call.turns.order_by("sequence")][1:]
    assert transcript == [
        (Turn.Role.CALLER, "Sí, dígame."),
        (Turn.Role.AGENT, "Perfecto, Ana. ¿Confirma su cita del martes?"),
        (Turn.Role.CALLER, "Sí, allí estaré."),
        (Turn.Role.AGENT, "Anotado, le esperamos. ¿Algo más?"),
        (Turn.Role.CALLER, "No, gracias."),
        (Turn.Role.AGENT, "Gracias, Ana. Adiós."),
    ]
    live_call.refresh_from_db()
    assert live_call.outcome["attending"] is True
    assert "extraction_failed" not in live_call.outcome
    assert live_call.summary == OUTCOME["summary"]
    # Every request took the parameters of its family.
    requests = fake_openai.chat_requests
    assert len(requests) == 5  # three turns, one continued, and the extraction
    assert all("max_tokens" not in body for body in requests)
    reasoning = model in ("o4-mini", "gpt-5-mini")
    assert all(("temperature" in body) is not reasoning for body in requests)
    assert all(("reasoning_effort" in body) is reasoning for body in requests)
    assert ("response_format" in requests[-1]) is (model != "gpt-4")
