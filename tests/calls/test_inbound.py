"""Calls our numbers receive: a contact ringing back, a stranger, a number on the list."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone, translation

from calls import dialing, inbound, tasks, telephony
from calls.dispatcher import dispatch
from calls.models import Call, CallEvent, Turn
from calls.telephony import sandbox
from calls.telephony.sandbox import carrier as sandbox_carrier
from campaigns import tasks as campaign_tasks
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    WebhookDelivery,
)
from templates.models import CallTemplate
from tests.factories import (
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    DoNotCallFactory,
    PartnerFactory,
    TurnFactory,
    WebhookEndpointFactory,
)

# The turn webhook works in threads of its own, as under the real server: committed data.
pytestmark = pytest.mark.django_db(transaction=True)

APP_URL = "https://calls.example.com"
SID = "CA" + "c" * 32
OUR_NUMBER = "+34910000000"
CALLER = "+34600000001"
CALLED_AT = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _inbound_settings(settings, monkeypatch) -> None:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "sandbox"  # webhooks signed with the sandbox key
    settings.TWILIO_PHONE_NUMBER = "+34910000111"
    settings.CALL_MAX_TURNS = 20
    # No worker takes what a call queues: the tests look at what was queued.
    monkeypatch.setattr(campaign_tasks.deliver_webhook_task, "delay_on_commit", lambda _id: None)


@pytest.fixture
def concluded(monkeypatch) -> list[int]:
    queued: list[int] = []
    monkeypatch.setattr(tasks.conclude_call_task, "delay", queued.append)
    return queued


@pytest.fixture
def hung_up(monkeypatch) -> list[int]:
    queued: list[int] = []
    monkeypatch.setattr(tasks.hang_up_ringing_task, "delay", queued.append)
    return queued


@pytest.fixture
def numbered(campaign) -> Campaign:
    campaign.caller_number = OUR_NUMBER
    campaign.save()
    return campaign


@pytest.fixture
def contact(numbered) -> Contact:
    """A contact we called this morning, who missed it and waits for a retry."""
    contact = ContactFactory(
        campaign=numbered,
        phone=CALLER,
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
        state=Contact.State.RETRY,
        attempts=1,
        next_attempt_at=timezone.now() + datetime.timedelta(hours=2),
    )
    CallFactory(
        campaign=numbered,
        contact=contact,
        attempt=1,
        status=Call.Status.NO_ANSWER,
        provider_sid="CA" + "0" * 32,
        from_number=OUR_NUMBER,
        to_number=CALLER,
        dialed_at=CALLED_AT,
        ended_at=CALLED_AT + datetime.timedelta(seconds=25),
    )
    return contact


@pytest.fixture
def scripted(call_template) -> CallTemplate:
    call_template.mode = CallTemplate.Mode.SCRIPTED
    call_template.steps = [
        {
            "id": "confirm",
            "prompt": "¿Vendrá a su cita? Diga sí o no.",
            "answers": [
                {"keywords": ["sí"], "digit": "1", "next": "end", "outcome": {"ok": True}},
                {"keywords": ["no"], "digit": "2", "next": "end", "outcome": {"ok": False}},
            ],
        }
    ]
    call_template.save()
    return call_template


def sign_and_post(client, path: str, params: dict[str, str]):
    signature = telephony.sign_request(url=APP_URL + path, params=params)
    return client.post(path, params, headers={"x-twilio-signature": signature})


def ring(client, *, caller: str = CALLER, called: str = OUR_NUMBER, sid: str = SID, **extra):
    """Twilio's voice request for a call from ``caller`` to our number ``called``."""
    params = {
        "CallSid": sid,
        "AccountSid": sandbox.ACCOUNT_SID,
        "From": caller,
        "To": called,
        "Caller": caller,
        "Called": called,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        **extra,
    }
    return sign_and_post(client, reverse("calls:inbound"), params)


def hang_up(client, *, sid: str = SID, caller: str = CALLER, duration: str = "60"):
    """The number's status callback at the end of the call."""
    params = {
        "CallSid": sid,
        "AccountSid": sandbox.ACCOUNT_SID,
        "From": caller,
        "To": OUR_NUMBER,
        "CallStatus": "completed",
        "Direction": "inbound",
        "CallDuration": duration,
    }
    response = sign_and_post(client, reverse("calls:inbound-status"), params)
    assert response.status_code == 204
    return response


def turn(call: Call, params: dict[str, str]) -> list[ET.Element]:
    """POST the call's turn webhook through the ASGI stack, following an AI reply to its
    end: every verb, in order."""

    async def converse() -> list[ET.Element]:
        client = AsyncClient()
        path = reverse("calls:turn", kwargs={"call_id": call.pk})
        elements: list[ET.Element] = []
        while True:
            form = {"CallSid": call.provider_sid, **params}
            signature = telephony.sign_request(url=APP_URL + path, params=form)
            response = await client.post(path, form, headers={"x-twilio-signature": signature})
            elements += verbs(response)
            last = elements[-1]
            if last.tag != "Redirect" or "/continue?" not in (last.text or ""):
                return elements
            elements.pop()
            path = last.text.removeprefix(APP_URL)

    return async_to_sync(converse)()


def verbs(response) -> list[ET.Element]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    return list(ET.fromstring(response.content))  # noqa: S314 - our own TwiML


def said(elements: list[ET.Element]) -> list[str]:
    return [
        element.text or ""
        for node in elements
        for element in ([node] if node.tag == "Say" else list(node))
        if element.tag == "Say"
    ]


def inbound_call() -> Call:
    return Call.objects.get(direction=Call.Direction.INBOUND)


# --- The webhooks --------------------------------------------------------------------------


def test_the_inbound_urls_are_the_documented_ones() -> None:
    assert reverse("calls:inbound") == "/twilio/inbound"
    assert reverse("calls:inbound-status") == "/twilio/inbound/status"
    assert reverse("calls:inbound-opt-out") == "/twilio/inbound/opt-out"
    assert reverse("calls:inbound-fallback") == "/twilio/inbound/fallback"


@pytest.mark.parametrize(
    "name", ["inbound", "inbound-status", "inbound-opt-out", "inbound-fallback"]
)
@pytest.mark.parametrize("signature", [None, "forged"])
def test_every_inbound_webhook_refuses_a_request_not_signed_by_twilio(
    client, contact, name, signature
) -> None:
    params = {"CallSid": SID, "From": CALLER, "To": OUR_NUMBER, "Digits": "9"}
    headers = {"x-twilio-signature": signature} if signature else {}

    response = client.post(reverse(f"calls:{name}"), params, headers=headers)

    assert response.status_code == 403
    assert not Call.objects.filter(provider_sid=SID).exists()
    assert not CallEvent.objects.exists()
    assert not DoNotCall.objects.exists()


def test_a_request_signed_for_another_caller_is_refused(client, contact) -> None:
    path = reverse("calls:inbound")
    params = {"CallSid": SID, "From": CALLER, "To": OUR_NUMBER}
    signature = telephony.sign_request(
        url=APP_URL + path, params={**params, "From": "+34600999999"}
    )

    response = client.post(path, params, headers={"x-twilio-signature": signature})

    assert response.status_code == 403


# --- A contact calls back ------------------------------------------------------------------


def test_a_contact_calling_back_gets_its_campaigns_conversation(client, contact) -> None:
    # given: a greeting for those who call back
    template = contact.campaign.template
    template.inbound_greeting = (
        "Hola {{ first_name }}, gracias por devolvernos la llamada. "
        "Le atiende el asistente automático de {{ partner }}."
    )
    template.save()

    # when
    gather, redirect = verbs(ring(client))

    # then: the greeting for those who call back, then we listen at the call's own turn URL
    call = inbound_call()
    assert said([gather]) == [
        "Hola Ana, gracias por devolvernos la llamada.",
        "Le atiende el asistente automático de Acme.",
    ]
    assert gather.get("action") == f"{APP_URL}/twilio/calls/{call.pk}/turn"
    assert redirect.text == f"{APP_URL}/twilio/calls/{call.pk}/turn?silence=1"
    assert (call.contact, call.campaign, call.attempt) == (contact, contact.campaign, None)
    assert (call.status, call.answered_by) == (Call.Status.IN_PROGRESS, "human")
    assert (call.provider_sid, call.from_number, call.to_number) == (SID, CALLER, OUR_NUMBER)
    assert (call.contact_number, call.our_number) == (CALLER, OUR_NUMBER)
    assert call.dialogue["missed_call_at"] == CALLED_AT.isoformat()
    [event] = CallEvent.objects.filter(kind=CallEvent.Kind.INBOUND)
    assert (event.call, event.payload["Direction"]) == (call, "inbound")
    # While it lasts the contact is on a call: it is not dialled.
    Campaign.objects.filter(pk=contact.campaign_id).update(state=Campaign.State.RUNNING)
    Contact.objects.filter(pk=contact.pk).update(next_attempt_at=timezone.now())
    assert dispatch().created == []


def test_the_standard_greeting_names_the_company_and_says_an_assistant_speaks(
    client, contact
) -> None:
    CallTemplate.objects.filter(pk=contact.campaign.template_id).update(language="en-US")

    gather, _redirect = verbs(ring(client))

    assert said([gather]) == [
        "Thank you for calling us back.",
        "This is the automated assistant of Acme.",
    ]
    assert gather.get("language") == "en-US"


def test_twilio_asking_again_for_the_same_call_greets_no_one_twice(client, contact) -> None:
    ring(client)

    gather, _redirect = verbs(ring(client))

    assert list(gather) == []
    assert Call.objects.filter(direction=Call.Direction.INBOUND).count() == 1
    assert inbound_call().turns.count() == 1


def test_the_model_is_told_the_contact_is_calling_back(client, contact, fake_openai) -> None:
    ring(client)
    fake_openai.queue_reply("Claro, Ana. Su cita es el martes. ¿Vendrá?")

    elements = turn(inbound_call(), {"SpeechResult": "Hola, me han llamado"})

    assert "Su cita es el martes." in " ".join(said(elements))
    system, contact = fake_openai.chat_requests[0]["messages"][:2]
    system = system["content"]
    assert system.startswith("Confirma la cita de [contact.first_name].")
    assert '{"first_name": "Ana"}' in contact["content"]
    # When we called, in the contact's own time (Madrid, UTC+1 in March).
    assert "calling us back: we called them on Monday 2026-03-02 at 11:00" in system
    assert "Do not say that you are calling them" in system


def test_a_contact_we_never_called_is_told_about_as_calling_in(
    client, contact, fake_openai
) -> None:
    Call.objects.filter(contact=contact).delete()
    ring(client)
    fake_openai.queue_reply("Dígame.")

    turn(inbound_call(), {"SpeechResult": "Hola"})

    system = fake_openai.chat_requests[0]["messages"][0]["content"]
    assert "The person called us, on the number we call from." in system
    assert "calling us back" not in system


def test_a_scripted_call_back_asks_the_first_question_and_ends_done(
    client, contact, scripted, concluded
) -> None:
    # given
    [gather, _redirect] = verbs(ring(client))
    assert said([gather])[-1] == "Diga sí o no."
    call = inbound_call()

    # when: the contact answers and hangs up
    elements = turn(call, {"SpeechResult": "Sí, allí estaré"})
    hang_up(client)

    # then: the conversation counts as one of ours, the retry it waited for is cancelled
    assert elements[-1].tag == "Hangup"
    call.refresh_from_db()
    assert (call.status, call.outcome, call.duration_seconds) == ("completed", {"ok": True}, 60)
    contact.refresh_from_db()
    assert (contact.state, contact.next_attempt_at, contact.attempts) == ("done", None, 1)
    assert concluded == [call.pk]
    assert [t.role for t in call.turns.all()] == ["agent", "caller", "agent"]


def test_a_contact_who_hangs_up_before_saying_a_word_keeps_its_retry(
    client, contact, concluded
) -> None:
    ring(client)

    hang_up(client, duration="3")

    contact.refresh_from_db()
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at is not None
    assert inbound_call().status == Call.Status.COMPLETED


def test_a_contact_calling_back_may_ask_to_be_called_at_a_time(
    client, contact, fake_openai, concluded
) -> None:
    ring(client)
    fake_openai.queue_reply(
        "De acuerdo, le llamamos el lunes a las diez. Adiós.",
        tool_calls=[("schedule_callback", {"at": "2030-01-14T10:00"}), ("end_call", {})],
    )
    turn(inbound_call(), {"SpeechResult": "Llámenme el lunes a las diez"})

    hang_up(client)

    contact.refresh_from_db()
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at.isoformat() == "2030-01-14T09:00:00+00:00"


@pytest.mark.parametrize(
    "params", [{"SpeechResult": "No me llamen más, por favor"}, {"Digits": "9"}]
)
def test_a_contact_calling_back_who_opts_out_is_put_on_the_list(
    client, contact, scripted, concluded, params
) -> None:
    endpoint = WebhookEndpointFactory(
        partner=contact.campaign.partner,
        url="https://partner.example.com/hooks",
        events=["contact.opted_out", "call.completed"],
    )
    ring(client)
    call = inbound_call()

    elements = turn(call, params)
    hang_up(client)

    assert elements[-1].tag == "Hangup"
    entry = DoNotCall.objects.get(phone=CALLER)
    assert (entry.partner, entry.source) == (contact.campaign.partner, "opt_out")
    contact.refresh_from_db()
    assert contact.state == Contact.State.OPTED_OUT
    delivery = WebhookDelivery.objects.get(endpoint=endpoint, event_type="contact.opted_out")
    data = delivery.payload["data"]
    assert (data["call_id"], data["direction"]) == (call.pk, "inbound")


def test_the_contact_we_called_last_is_the_one_calling_back(client, contact, partner) -> None:
    # given: the same person in another campaign on the same number, called later
    template = CallTemplateFactory(
        partner=partner,
        name="Encuesta",
        greeting="Hola, le llamamos de {{ partner }}. Soy un asistente automático.",
        instructions="Haz la encuesta.",
    )
    later = CampaignFactory(
        partner=partner, name="Encuesta", template=template, caller_number=OUR_NUMBER
    )
    other = ContactFactory(campaign=later, phone=CALLER, state=Contact.State.DONE)
    CallFactory(
        campaign=later,
        contact=other,
        attempt=1,
        status=Call.Status.BUSY,
        from_number=OUR_NUMBER,
        to_number=CALLER,
        dialed_at=CALLED_AT + datetime.timedelta(hours=1),
    )
    # and one on another number, never the one rung
    elsewhere = CampaignFactory(
        partner=partner, name="Otra", template=template, caller_number="+34910000222"
    )
    ContactFactory(campaign=elsewhere, phone=CALLER)

    ring(client)

    assert inbound_call().contact == other


def test_a_campaign_without_a_number_of_its_own_answers_on_twilios_default(
    client, contact, settings
) -> None:
    Campaign.objects.filter(pk=contact.campaign_id).update(caller_number="")

    ring(client, called=settings.TWILIO_PHONE_NUMBER)

    assert inbound_call().contact == contact


def test_our_call_still_ringing_the_contact_is_hung_up(client, contact, hung_up) -> None:
    # given: a retry of ours rings the contact as they ring us
    Contact.objects.filter(pk=contact.pk).update(state=Contact.State.CALLING, attempts=2)
    ringing = CallFactory(
        campaign=contact.campaign,
        contact=contact,
        attempt=2,
        status=Call.Status.RINGING,
        provider_sid="CA" + "1" * 32,
        from_number=OUR_NUMBER,
        to_number=CALLER,
        dialed_at=timezone.now(),
    )

    ring(client)

    assert hung_up == [ringing.pk]
    assert inbound_call().is_live and ringing.is_live  # one live call each way


def test_hang_up_ringing_hangs_up_only_a_call_still_ringing(contact, monkeypatch) -> None:
    ended: list[str] = []
    monkeypatch.setattr(telephony, "hang_up", lambda *, sid: ended.append(sid))
    call = CallFactory(
        campaign=contact.campaign,
        contact=contact,
        attempt=2,
        status=Call.Status.RINGING,
        provider_sid="CA" + "1" * 32,
        from_number=OUR_NUMBER,
        to_number=CALLER,
    )

    assert inbound.hang_up_ringing(call_id=call.pk) == "hung_up"
    Call.objects.filter(pk=call.pk).update(status=Call.Status.IN_PROGRESS)
    assert inbound.hang_up_ringing(call_id=call.pk) == "over"  # answered meanwhile
    assert ended == [call.provider_sid]


def test_a_dial_of_a_contact_on_an_inbound_call_is_released_and_the_contact_waits(
    client, contact
) -> None:
    # given: the dispatcher made a call just before the contact rang us
    Campaign.objects.filter(pk=contact.campaign_id).update(
        state=Campaign.State.RUNNING, compliance_profile="none"
    )
    Contact.objects.filter(pk=contact.pk).update(state=Contact.State.CALLING, attempts=2)
    pending = CallFactory(
        campaign=contact.campaign,
        contact=contact,
        attempt=2,
        from_number=OUR_NUMBER,
        to_number=CALLER,
    )
    ring(client)

    # when
    result = dialing.place_call(call_id=pending.pk)

    # then: not placed, the attempt given back, the contact waiting (not closed)
    assert result == dialing.Dialed.RELEASED
    contact.refresh_from_db()
    assert (contact.state, contact.attempts) == (Contact.State.RETRY, 1)
    assert contact.next_attempt_at is not None


def test_an_inbound_call_whose_end_was_never_reported_is_settled_from_twilio(
    client, contact, scripted, concluded, fake_twilio
) -> None:
    # given: a number pointed at the voice URL by hand, without the status callback
    verbs(ring(client))
    call = inbound_call()
    TurnFactory(call=call, sequence=1, role="caller", text="Sí", started_at=timezone.now())
    fake_twilio.set_call(SID, status="completed", duration="95", direction="inbound")

    # when: the reconciliation tick looks at it, long after its longest life
    later = timezone.now() + datetime.timedelta(hours=1)
    result = dialing.reconcile_calls(now=later)

    # then: it ends as its status callback would have ended it
    assert result.refreshed == [call.pk]
    call.refresh_from_db()
    assert (call.status, call.duration_seconds) == (Call.Status.COMPLETED, 95)
    contact.refresh_from_db()
    assert (contact.state, contact.next_attempt_at) == (Contact.State.DONE, None)


# --- A number on the do-not-call list ------------------------------------------------------


def test_a_contact_on_the_do_not_call_list_hears_no_sales_conversation(
    client, contact, concluded
) -> None:
    DoNotCallFactory(partner=contact.campaign.partner, phone=CALLER)
    CallTemplate.objects.filter(pk=contact.campaign.template_id).update(language="en-US")

    elements = verbs(ring(client))

    assert [element.tag for element in elements] == ["Say", "Say", "Say", "Hangup"]
    assert said(elements) == [
        "This is Acme.",
        "Your number is on our do-not-call list: we will not call you.",
        "Goodbye.",
    ]
    call = inbound_call()
    assert call.outcome == {"do_not_call": True}
    hang_up(client)
    contact.refresh_from_db()
    assert contact.state == Contact.State.RETRY  # the dispatcher closes it for the list
    # Asked again, the same message, no conversation.
    assert [element.tag for element in verbs(ring(client))][-1] == "Hangup"
    assert call.turns.count() == 1


def test_an_opted_out_contact_asking_something_is_put_through_to_a_person(client, contact) -> None:
    Contact.objects.filter(pk=contact.pk).update(state=Contact.State.OPTED_OUT)
    Campaign.objects.filter(pk=contact.campaign_id).update(transfer_number="+34910000999")

    elements = verbs(ring(client))

    dial = elements[-1]
    assert (dial.tag, dial.text.strip(), dial.get("callerId")) == (
        "Dial",
        "+34910000999",
        OUR_NUMBER,
    )
    assert "Acme" in said(elements)[0]
    assert not inbound_call().turns.filter(role=Turn.Role.CALLER).exists()


# --- A caller we do not know ---------------------------------------------------------------


def test_a_stranger_hears_the_company_and_may_opt_out(client, numbered) -> None:
    CallTemplate.objects.filter(pk=numbered.template_id).update(language="en-US")

    gather, *rest = verbs(ring(client, caller="+34699000111"))

    assert (gather.tag, gather.get("input"), gather.get("numDigits")) == ("Gather", "dtmf", "1")
    assert gather.get("action") == f"{APP_URL}/twilio/inbound/opt-out"
    assert said([gather]) == [
        "Thank you for calling Acme.",
        "If you do not want us to call you again, press 9 now.",
    ]
    assert [element.tag for element in rest] == ["Say", "Hangup"]
    assert not Call.objects.filter(direction=Call.Direction.INBOUND).exists()
    [event] = CallEvent.objects.all()
    assert (event.kind, event.call, event.payload["From"]) == ("inbound", None, "+34699000111")


def test_a_stranger_pressing_the_opt_out_digit_is_put_on_every_list_for_that_number(
    client, numbered, partner
) -> None:
    # given: another partner calls from the same number
    other = PartnerFactory(name="Otra", trusted=True)
    template = CallTemplateFactory(
        partner=other, name="T", greeting="Hola, {{ partner }}.", instructions="x"
    )
    CampaignFactory(partner=other, name="C", template=template, caller_number=OUR_NUMBER)
    params = {"CallSid": SID, "From": "+34699000111", "To": OUR_NUMBER, "Digits": "9"}

    elements = verbs(sign_and_post(client, reverse("calls:inbound-opt-out"), params))

    assert elements[-1].tag == "Hangup"
    entries = DoNotCall.objects.filter(phone="+34699000111")
    assert {entry.partner for entry in entries} == {partner, other}
    assert {entry.source for entry in entries} == {"opt_out"}


def test_a_stranger_pressing_another_key_is_not_put_on_a_list(client, numbered) -> None:
    params = {"CallSid": SID, "From": "+34699000111", "To": OUR_NUMBER, "Digits": "1"}

    elements = verbs(sign_and_post(client, reverse("calls:inbound-opt-out"), params))

    assert elements[-1].tag == "Hangup"
    assert not DoNotCall.objects.exists()


def test_a_stranger_ringing_a_number_no_campaign_uses_hears_the_platform_and_the_global_list(
    client, db, settings
) -> None:
    settings.APP_NAME = "Callcenter Demo"
    gather, *_rest = verbs(ring(client, caller="+34699000111", called="+34910000333"))
    assert "Callcenter Demo" in said([gather])[0]
    params = {"CallSid": SID, "From": "+34699000111", "To": "+34910000333", "Digits": "9"}

    sign_and_post(client, reverse("calls:inbound-opt-out"), params)

    assert DoNotCall.objects.get(phone="+34699000111").partner is None


def test_a_stranger_is_put_through_when_the_campaign_has_a_transfer_number(
    client, numbered
) -> None:
    numbered.transfer_number = "+34910000999"
    numbered.save()

    elements = verbs(ring(client, caller="+34699000111"))

    assert [element.tag for element in elements] == ["Gather", "Say", "Dial", "Say", "Hangup"]
    assert (elements[2].text.strip(), elements[2].get("callerId")) == ("+34910000999", OUR_NUMBER)


def test_a_caller_without_a_number_is_offered_no_opt_out(client, numbered) -> None:
    elements = verbs(ring(client, caller="anonymous"))

    assert "Gather" not in [element.tag for element in elements]
    assert elements[-1].tag == "Hangup"


def test_a_strangers_status_callback_is_kept_without_a_call(client, numbered) -> None:
    hang_up(client, caller="+34699000111")

    [event] = CallEvent.objects.all()
    assert (event.kind, event.call, event.payload["CallStatus"]) == ("status", None, "completed")


def test_the_inbound_fallback_apologises_names_the_company_and_offers_the_opt_out(
    client, numbered
) -> None:
    params = {"CallSid": SID, "From": "+34699000111", "To": OUR_NUMBER, "ErrorCode": "11200"}

    gather, *_rest = verbs(sign_and_post(client, reverse("calls:inbound-fallback"), params))

    assert gather.get("action") == f"{APP_URL}/twilio/inbound/opt-out"
    assert "Acme" in said([gather])[0]


def test_the_inbound_fallback_of_a_contacts_call_offers_that_calls_opt_out(client, contact) -> None:
    ring(client)
    params = {"CallSid": SID, "From": CALLER, "To": OUR_NUMBER, "ErrorCode": "11200"}

    gather, *_rest = verbs(sign_and_post(client, reverse("calls:inbound-fallback"), params))

    call = inbound_call()
    assert gather.get("action") == f"{APP_URL}/twilio/calls/{call.pk}/fallback/opt-out"
    with translation.override("en"):
        assert "Acme" in said([gather])[0]


def test_a_failure_answering_an_inbound_call_is_apologised_for(
    client, numbered, monkeypatch
) -> None:
    def broken(**_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(inbound, "_stranger", broken)

    gather, *_rest = verbs(ring(client, caller="+34699000111"))

    assert gather.get("action") == f"{APP_URL}/twilio/inbound/opt-out"


# --- The sandbox carrier rings our numbers ---------------------------------------------------


@pytest.fixture
def carrier(live_server, settings, monkeypatch) -> list[str]:
    """The sandbox carrier ringing the live server's webhooks (APP_URL); the calls it
    queues are kept here, each played by the test."""
    settings.APP_URL = live_server.url
    settings.SANDBOX_SPEED = 1000
    queued: list[str] = []
    monkeypatch.setattr(sandbox_carrier, "_queue", queued.append)
    return queued


def test_a_sandbox_contact_calls_back_through_our_webhooks_to_the_end(
    carrier, contact, scripted, concluded
) -> None:
    # given: the contact missed our call and waits for a retry
    Contact.objects.filter(pk=contact.pk).update(variables={"first_name": "Ana"})

    # when: it rings the campaign's number back, and the carrier plays the call
    placed = sandbox.call_back(contact=contact)
    sandbox.run_call(placed.sid)

    # then: a conversation through our own webhooks, signed, in the contact's history
    call = inbound_call()
    assert call.provider_sid == placed.sid
    assert (call.status, call.outcome) == (Call.Status.COMPLETED, {"ok": True})
    assert [turn.role for turn in call.turns.all()] == ["agent", "caller", "agent"]
    assert call.turns.all()[1].text == "Sí, allí estaré. Gracias."
    contact.refresh_from_db()
    assert (contact.state, contact.next_attempt_at) == (Contact.State.DONE, None)
    assert list(contact.calls.values_list("direction", flat=True)) == ["inbound", "outbound"]
    assert concluded == [call.pk]


def test_a_sandbox_stranger_opts_out_through_our_webhooks(carrier, numbered) -> None:
    placed = sandbox.place_inbound_call(from_="+34699000111", to=OUR_NUMBER, persona="opt_out")
    sandbox.run_call(placed.sid)

    entry = DoNotCall.objects.get(phone="+34699000111")
    assert (entry.partner, entry.source) == (numbered.partner, "opt_out")
    kinds = set(CallEvent.objects.filter(provider_sid=placed.sid).values_list("kind", flat=True))
    assert kinds == {"inbound", "status"}
    assert not Call.objects.filter(provider_sid=placed.sid).exists()
