"""A call's TwiML webhooks: answer, turns (scripted and AI), voicemail, fallback, signed."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls import callbacks, conversation, flow, model_turns, streaming, tasks, telephony
from calls.models import Call, CallEvent, Turn
from campaigns.models import Contact, DoNotCall
from templates.models import CallTemplate
from tests.factories import CallFactory, ContactFactory, VoiceFactory
from tests.fakes.elevenlabs import SARAH_ID
from voices.models import SpeechClip, Voice

# The turn webhook works in threads of its own, as under the real server: committed data.
pytestmark = pytest.mark.django_db(transaction=True)

APP_URL = "https://calls.example.com"
SID = "CA" + "a" * 32


@pytest.fixture(autouse=True)
def _call_settings(settings) -> None:
    settings.APP_URL = APP_URL
    settings.TELEPHONY_BACKEND = "sandbox"  # webhooks signed with the sandbox key
    settings.CALL_MAX_TURNS = 20


@pytest.fixture
def live_call(campaign) -> Call:
    campaign.caller_number = "+34910000000"
    campaign.transfer_number = "+34910000999"
    campaign.save()
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
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


@pytest.fixture
def bella_voice(campaign) -> Voice:
    """The campaign's voice: ElevenLabs' "Sarah", named Bella in the deployment guide."""
    voice = VoiceFactory(provider_voice_id=SARAH_ID, name="Sarah")
    campaign.voice = voice
    campaign.save(update_fields=["voice"])
    return voice


@pytest.fixture
def scripted(call_template) -> CallTemplate:
    call_template.mode = CallTemplate.Mode.SCRIPTED
    call_template.steps = [
        {
            "id": "confirm",
            "prompt": "¿Vendrá a su cita? Diga sí o no.",
            "retry_prompt": "Perdone, ¿vendrá? Diga sí o no.",
            "answers": [
                {"keywords": ["sí", "claro"], "digit": "1", "next": "end", "outcome": {"ok": True}},
                {"keywords": ["no"], "digit": "2", "next": "why", "outcome": {"ok": False}},
                {"keywords": ["persona"], "next": "transfer"},
            ],
        },
        {
            "id": "why",
            "prompt": "¿Quiere cambiar la cita?",
            "answers": [{"keywords": ["sí"], "next": "end", "outcome": {"change": True}}],
        },
    ]
    call_template.save()
    return call_template


def post(client, name: str, call: Call, params: dict[str, str] | None = None, query: str = ""):
    path = reverse(f"calls:{name}", kwargs={"call_id": call.pk}) + query
    params = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **(params or {})}
    signature = telephony.sign_request(url=APP_URL + path, params=params)
    return client.post(path, params, headers={"x-twilio-signature": signature})


def turn(call: Call, params: dict[str, str] | None = None, query: str = "") -> list[ET.Element]:
    """POST the turn webhook as Twilio would through the ASGI stack, in one event loop,
    following an AI reply's <Redirect> to its continuation: every verb, in order."""

    async def converse() -> list[ET.Element]:
        client = AsyncClient()
        path = reverse("calls:turn", kwargs={"call_id": call.pk}) + query
        elements: list[ET.Element] = []
        while True:
            form = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **(params or {})}
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


def spoken(elements: list[ET.Element]) -> str:
    """All that <Say> speaks in ``elements``, one line (it is said sentence by sentence)."""
    return " ".join(said(elements))


def said(elements: list[ET.Element]) -> list[str]:
    return [
        element.text or ""
        for node in elements
        for element in ([node] if node.tag == "Say" else list(node))
        if element.tag == "Say"
    ]


# --- Answer ---------------------------------------------------------------------------------


def test_answer_greets_in_the_templates_language_and_listens(client, live_call) -> None:
    gather, redirect = verbs(post(client, "answer", live_call))

    turn_url = f"{APP_URL}/twilio/calls/{live_call.pk}/turn"
    assert gather.tag == "Gather"
    assert gather.get("input") == "speech dtmf"
    assert gather.get("language") == "es-ES"
    assert gather.get("action") == turn_url
    # Sentence by sentence: each is its own clip, voiced ahead (campaigns.prerendering).
    says = list(gather)
    assert [say.text for say in says] == [
        "Hola Ana.",
        "Le llamamos de Acme.",
        "Soy un asistente automático.",
    ]
    assert {say.get("language") for say in says} == {"es-ES"}
    assert (redirect.tag, redirect.text) == ("Redirect", turn_url + "?silence=1")
    [greeting] = live_call.turns.all()
    assert (greeting.role, greeting.sequence) == (Turn.Role.AGENT, 0)


def test_a_repeated_answer_request_never_greets_twice(client, live_call) -> None:
    post(client, "answer", live_call)

    gather, _redirect = verbs(post(client, "answer", live_call))

    assert list(gather) == []
    assert live_call.turns.count() == 1


def test_a_scripted_answer_asks_the_first_question(client, live_call, scripted) -> None:
    [gather, _redirect] = verbs(post(client, "answer", live_call))

    assert spoken([gather]).endswith("¿Vendrá a su cita? Diga sí o no.")
    live_call.refresh_from_db()
    assert live_call.dialogue["step"] == "confirm"


def test_an_answer_for_another_calls_sid_hangs_up(client, live_call) -> None:
    [hangup] = verbs(post(client, "answer", live_call, {"CallSid": "CA" + "b" * 32}))

    assert hangup.tag == "Hangup"
    assert live_call.turns.count() == 0


@pytest.mark.parametrize("name", ["answer", "turn", "voicemail", "fallback", "transfer-ended"])
def test_every_twiml_webhook_refuses_an_unsigned_request(client, live_call, name) -> None:
    path = reverse(f"calls:{name}", kwargs={"call_id": live_call.pk})

    response = client.post(path, {"CallSid": SID}, headers={"x-twilio-signature": "forged"})

    assert response.status_code == 403
    assert live_call.turns.count() == 0


# --- Scripted turns ---------------------------------------------------------------------


def test_a_scripted_answer_moves_to_the_next_step(client, live_call, scripted) -> None:
    post(client, "answer", live_call)

    gather, _ = turn(live_call, {"SpeechResult": "No, no puedo"})

    assert said([gather]) == ["¿Quiere cambiar la cita?"]
    live_call.refresh_from_db()
    assert live_call.outcome == {"ok": False}
    assert [t.role for t in live_call.turns.all()] == ["agent", "caller", "agent"]


def test_a_scripted_digit_ends_the_script_with_the_closing_line(client, live_call, scripted):
    post(client, "answer", live_call)

    elements = turn(live_call, {"Digits": "1"})

    assert said(elements) == ["Gracias, adiós."]
    assert elements[-1].tag == "Hangup"
    live_call.refresh_from_db()
    assert live_call.outcome == {"ok": True}


def test_a_scripted_answer_not_understood_gets_the_retry_prompt(client, live_call, scripted):
    post(client, "answer", live_call)

    gather, _ = turn(live_call, {"SpeechResult": "el perro ladra"})

    assert said([gather]) == ["Perdone, ¿vendrá?", "Diga sí o no."]


def test_a_scripted_transfer_dials_the_campaigns_number(client, live_call, scripted) -> None:
    post(client, "answer", live_call)

    elements = turn(live_call, {"SpeechResult": "con una persona"})

    dial = elements[-1]
    assert (dial.tag, dial.text.strip()) == ("Dial", "+34910000999")
    assert dial.get("action") == f"{APP_URL}/twilio/calls/{live_call.pk}/transfer-ended"
    live_call.refresh_from_db()
    assert live_call.outcome["transferred"] is True


# --- Opt-out, silence, limits -------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{"SpeechResult": "No me llame más, por favor"}, {"Digits": "9"}]
)
def test_an_opt_out_is_written_before_the_confirmation_is_spoken(
    client, live_call, scripted, params
) -> None:
    post(client, "answer", live_call)

    elements = turn(live_call, params)

    assert elements[-1].tag == "Hangup"
    assert said(elements) == ["Entendido: no le volveremos a llamar.", "Adiós."]
    entry = DoNotCall.objects.get(phone=live_call.to_number)
    assert entry.partner == live_call.campaign.partner
    assert entry.source == "opt_out"
    contact = Contact.objects.get(pk=live_call.contact_id)
    assert contact.state == Contact.State.OPTED_OUT


def test_silence_twice_in_a_row_ends_the_call_politely(client, live_call, scripted) -> None:
    post(client, "answer", live_call)

    first = turn(live_call, query="?silence=1")
    second = turn(live_call, query="?silence=1")

    assert said(first) == ["¿Sigue ahí?"]  # the call's language, whatever the request's
    assert first[0].tag == "Gather"
    assert said(second) == ["Gracias, adiós."]
    assert second[-1].tag == "Hangup"


def test_an_english_template_hears_the_platforms_lines_in_english(
    client, live_call, scripted
) -> None:
    CallTemplate.objects.filter(pk=scripted.pk).update(language="en-US")
    post(client, "answer", live_call)

    elements = turn(live_call, query="?silence=1")

    assert said(elements) == ["Are you still there?"]
    assert elements[0].get("language") == "en-US"


def test_the_turn_limit_closes_the_call(client, live_call, scripted, settings) -> None:
    settings.CALL_MAX_TURNS = 1
    post(client, "answer", live_call)

    elements = turn(live_call, {"SpeechResult": "no"})

    assert elements[-1].tag == "Hangup"


# --- AI turns -----------------------------------------------------------------------------


def test_an_ai_turn_speaks_the_models_reply_and_listens(live_call, fake_openai) -> None:
    post(Client(), "answer", live_call)
    # Slow enough that the first sentence is voiced while the model still writes.
    fake_openai.queue_reply(
        "Perfecto, Ana. Le esperamos el martes. ¿Algo más?", chunk_size=6, chunk_delay=0.05
    )

    elements = turn(live_call, {"SpeechResult": "Sí, iré"})

    # The first sentence left on its own, before the rest of the reply existed, in a
    # <Gather> of its own so that the caller can speak over it.
    assert [element.tag for element in elements] == ["Gather", "Gather", "Redirect"]
    assert said(elements) == ["Perfecto, Ana.", "Le esperamos el martes.", "¿Algo más?"]
    first = elements[0]
    assert first.get("action").startswith(f"{APP_URL}/twilio/calls/{live_call.pk}/turn?reply=")
    assert (first.get("input"), first.get("timeout")) == ("speech dtmf", "1")
    [request] = fake_openai.chat_requests
    messages = request["messages"]
    assert messages[0]["role"] == "system"
    # The instructions refer to the contact's name; it comes apart, as data.
    assert "Confirma la cita de [contact.first_name]." in messages[0]["content"]
    assert messages[1]["role"] == "system"
    assert '<contact_record>\n{"first_name": "Ana"}\n</contact_record>' in messages[1]["content"]
    assert messages[2:] == [
        {"role": "assistant", "content": live_call.turns.first().text},
        {"role": "user", "content": "Sí, iré"},
    ]
    reply = live_call.turns.last()
    assert reply.role == Turn.Role.AGENT
    assert reply.model_ms is not None and reply.latency_ms >= reply.model_ms


def first_answer_then_rest(
    call: Call, params: dict[str, str], *, took: list[float] | None = None
) -> tuple[list, list]:
    """The turn webhook's own answer, and what its continuation answered after it;
    ``took`` gets the seconds the first answer took."""

    async def converse() -> tuple[list, list]:
        client = AsyncClient()
        path = reverse("calls:turn", kwargs={"call_id": call.pk})
        form = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **params}
        signature = telephony.sign_request(url=APP_URL + path, params=form)
        started = time.monotonic()
        first = verbs(await client.post(path, form, headers={"x-twilio-signature": signature}))
        if took is not None:
            took.append(time.monotonic() - started)
        if first[-1].tag != "Redirect" or "/continue?" not in (first[-1].text or ""):
            return first, []
        path = first[-1].text.removeprefix(APP_URL)
        signature = telephony.sign_request(url=APP_URL + path, params=form)
        rest = verbs(await client.post(path, form, headers={"x-twilio-signature": signature}))
        return first, rest

    return async_to_sync(converse)()


def slow_first_line(monkeypatch, seconds: float = 0.3) -> list[tuple[str, float, float]]:
    """Voice a reply's first sentence ("Perfecto...") ``seconds`` slowly, the others at
    once; the lines voiced, as (text, started, ended)."""
    speech_for_call = streaming.speech_for_call
    voiced: list[tuple[str, float, float]] = []

    def voice(*, call, text, **options):
        started = time.monotonic()
        if "Perfecto" in text:
            time.sleep(seconds)
        speech = speech_for_call(call=call, text=text, **options)
        voiced.append((text, started, time.monotonic()))
        return speech

    monkeypatch.setattr(streaming, "speech_for_call", voice)
    return voiced


def test_a_reply_written_before_its_first_line_is_voiced_starts_with_that_line(
    live_call, fake_openai, monkeypatch
) -> None:
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes. ¿Algo más?", chunk_delay=0)
    slow_first_line(monkeypatch)

    first, rest = first_answer_then_rest(live_call, {"SpeechResult": "Sí, iré"})

    # The model had written all three lines before the first was voiced: the first left
    # on its own all the same, without waiting for the rest to be voiced and recorded;
    # the rest followed with the listening.
    assert [element.tag for element in first] == ["Gather", "Redirect"]
    assert said(first) == ["Perfecto, Ana."]
    assert [element.tag for element in rest] == ["Gather", "Redirect"]
    assert said(rest) == ["Le esperamos el martes.", "¿Algo más?"]
    assert live_call.turns.last().text == "Perfecto, Ana. Le esperamos el martes. ¿Algo más?"


def test_the_lines_after_the_first_are_voiced_after_it(live_call, fake_openai, monkeypatch):
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes. ¿Algo más?", chunk_delay=0)
    voiced = slow_first_line(monkeypatch)

    first_answer_then_rest(live_call, {"SpeechResult": "Sí, iré"})

    # Written together, but the first line, which the caller waits for, was voiced
    # alone; the others only once it was.
    (first_text, _started, first_ended), *others = voiced
    assert first_text == "Perfecto, Ana."
    assert sorted(text for text, _started, _ended in others) == [
        "Le esperamos el martes.",
        "¿Algo más?",
    ]
    assert all(started >= first_ended for _text, started, _ended in others)


def test_a_first_line_that_cannot_be_voiced_is_apologised_for_and_not_kept(
    live_call, fake_openai, monkeypatch
) -> None:
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes.", chunk_delay=0.05)

    def broken(*, call, text, **options):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(streaming, "speech_for_call", broken)

    first, rest = first_answer_then_rest(live_call, {"SpeechResult": "Sí, iré"})

    assert "problema técnico" in said(first)[0] and rest == []
    assert live_call.turns.last().role == Turn.Role.CALLER  # the reply was not recorded


def test_a_one_line_reply_already_whole_is_answered_whole(live_call, fake_openai) -> None:
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana.", chunk_delay=0)

    first, rest = first_answer_then_rest(live_call, {"SpeechResult": "Sí, iré"})

    assert [element.tag for element in first] == ["Gather", "Redirect"]
    assert said(first) == ["Perfecto, Ana."] and rest == []


def test_a_reply_that_no_continuation_could_find_is_answered_whole(
    live_call, fake_openai, monkeypatch, caplog
) -> None:
    post(Client(), "answer", live_call)
    fake_openai.queue_reply(
        "Perfecto, Ana. Le esperamos el martes. ¿Algo más?", chunk_size=6, chunk_delay=0.05
    )

    async def unavailable(call_id, token, value):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(streaming, "_store", unavailable)

    first, rest = first_answer_then_rest(live_call, {"SpeechResult": "Sí, iré"})

    # The first line was voiced long before the rest, but no continuation could have
    # found the rest: the caller hears the whole reply in one answer, a little later.
    assert [element.tag for element in first] == ["Gather", "Redirect"]
    assert said(first) == ["Perfecto, Ana.", "Le esperamos el martes.", "¿Algo más?"]
    assert rest == []
    assert "cannot be continued" in caplog.text
    assert live_call.turns.last().text == "Perfecto, Ana. Le esperamos el martes. ¿Algo más?"


def test_an_ai_turn_reads_the_locked_call_and_its_transcript_in_two_queries(
    client, live_call
) -> None:
    post(client, "answer", live_call)

    with CaptureQueriesContext(connection) as queries:
        pending = flow.prepare_turn(
            call_id=live_call.pk, params={"CallSid": SID, "SpeechResult": "Sí, iré"}
        )

    assert isinstance(pending, model_turns.PendingReply)
    statements = [query["sql"] for query in queries.captured_queries]
    # The call with all a turn needs, locked; its transcript; the caller's words; the
    # dialogue state. Each by key.
    assert [sql.split()[0] for sql in statements] == [
        *("BEGIN", "SELECT", "SELECT", "INSERT", "UPDATE", "COMMIT")
    ]
    if connection.features.has_select_for_update:  # SQLite locks the whole file instead
        assert statements[1].endswith('FOR UPDATE OF "calls_call"')
    assert pending.history[-1] == {"role": "user", "content": "Sí, iré"}


def test_a_reply_is_recorded_after_the_locked_call_in_three_queries(client, live_call) -> None:
    post(client, "answer", live_call)
    pending = flow.prepare_turn(
        call_id=live_call.pk, params={"CallSid": SID, "SpeechResult": "Sí, iré"}
    )
    answer = conversation.Reply(
        text="Perfecto.",
        actions=(),
        model_ms=300,
        first_sentence_ms=300,
        prompt_tokens=None,
        completion_tokens=None,
    )

    with CaptureQueriesContext(connection) as queries:
        model_turns.record_reply(pending.call, answer, [], timings=(300, 150, 460), early=None)

    statements = [query["sql"] for query in queries.captured_queries]
    # The call locked; then its transcript's last sequence (read under the lock: in the
    # locking query it would be read as it was before the wait, without a caller's turn
    # committed meanwhile); the reply. The dialogue did not change, and the caller's turn
    # had just touched the call.
    assert [sql.split()[0] for sql in statements] == [
        "BEGIN",
        "SELECT",
        "SELECT",
        "INSERT",
        "COMMIT",
    ]
    assert [(turn.role, turn.text) for turn in live_call.turns.order_by("sequence")][-2:] == [
        (Turn.Role.CALLER, "Sí, iré"),
        (Turn.Role.AGENT, "Perfecto."),
    ]
    assert list(live_call.turns.values_list("sequence", flat=True)) == [0, 1, 2]


def test_the_model_is_asked_before_the_callers_words_are_written(client, live_call) -> None:
    post(client, "answer", live_call)
    seen: list[tuple[list[dict[str, str]], bool]] = []

    def on_model_turn(pending: model_turns.PendingReply) -> None:
        written = live_call.turns.filter(role=Turn.Role.CALLER).exists()
        seen.append((pending.history, written))

    pending = flow.prepare_turn(
        call_id=live_call.pk,
        params={"CallSid": SID, "SpeechResult": "Sí, iré"},
        on_model_turn=on_model_turn,
    )

    # the model had the caller's words before they were written; they are written after
    [(history, written)] = seen
    assert history[-1] == {"role": "user", "content": "Sí, iré"} and not written
    assert pending.history == history
    assert live_call.turns.filter(role=Turn.Role.CALLER, text="Sí, iré").exists()


def test_a_turn_that_cannot_be_written_says_no_reply_and_apologises(
    live_call, fake_openai, monkeypatch
) -> None:
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto. Le esperamos el martes.", first_delay=0.3)
    real_add_turn = flow.add_turn

    def failing_add_turn(call, *, role, **fields):
        if role == Turn.Role.CALLER:
            raise RuntimeError("the database went away")
        return real_add_turn(call, role=role, **fields)

    monkeypatch.setattr(flow, "add_turn", failing_add_turn)
    path = reverse("calls:turn", kwargs={"call_id": live_call.pk})
    form = {"CallSid": SID, "SpeechResult": "Sí, iré"}
    signature = telephony.sign_request(url=APP_URL + path, params=form)

    async def answered_then_wait():
        response = await AsyncClient().post(path, form, headers={"x-twilio-signature": signature})
        await asyncio.sleep(1.0)  # the event loop lives on, as the server's does
        return response

    elements = verbs(async_to_sync(answered_then_wait)())

    assert "problema técnico" in said(elements)[0]
    # the reply already asked of the model was dropped: nothing of it was said or kept
    assert len(fake_openai.chat_requests) <= 1
    assert list(live_call.turns.values_list("role", flat=True)) == [Turn.Role.AGENT]


def test_the_models_tools_record_answers_and_end_the_call(client, live_call, fake_openai):
    live_call.campaign.template.outcome_schema = {
        "type": "object",
        "properties": {"attending": {"type": "boolean"}},
    }
    live_call.campaign.template.save(update_fields=["outcome_schema"])
    post(client, "answer", live_call)
    fake_openai.queue_reply(
        "De acuerdo, le llamo mañana a las diez. Adiós.",
        tool_calls=[
            ("schedule_callback", {"at": "2026-11-29T10:00"}),
            ("record_answer", {"field": "attending", "value": False}),
            ("end_call", {"reason": "callback"}),
        ],
    )

    elements = turn(live_call, {"SpeechResult": "Llámeme mañana"})

    assert elements[-1].tag == "Hangup"
    live_call.refresh_from_db()
    assert live_call.outcome["attending"] is False
    assert live_call.outcome["callback_at"] == "2026-11-29T10:00:00+01:00"


def test_the_models_opt_out_tool_writes_the_do_not_call_entry(client, live_call, fake_openai):
    post(client, "answer", live_call)
    fake_openai.queue_reply("", tool_calls=[("opt_out", {})])

    elements = turn(live_call, {"SpeechResult": "Quítenme de aquí"})

    assert elements[-1].tag == "Hangup"
    assert DoNotCall.objects.filter(phone=live_call.to_number).exists()


def test_a_model_failure_holds_then_tries_once_more_then_closes(
    client, live_call, fake_openai
) -> None:
    post(client, "answer", live_call)
    fake_openai.fail_next(500, times=2)

    holding = turn(live_call, {"SpeechResult": "¿Qué día era?"})
    closing = turn(live_call, query="?retry=1")

    assert said(holding) == ["Un momento, por favor."]
    assert (holding[-1].tag, holding[-1].text) == (
        "Redirect",
        f"{APP_URL}/twilio/calls/{live_call.pk}/turn?retry=1",
    )
    assert said(closing) == ["Gracias, adiós."]
    assert closing[-1].tag == "Hangup"
    # The retry did not count as a silence nor record a caller turn.
    assert [t.role for t in live_call.turns.all()] == ["agent", "caller", "agent", "agent"]


def test_an_ai_template_without_a_model_holds_once_then_closes(client, live_call, settings) -> None:
    """What the README promises of an AI template while OPENAI_API_KEY is unset."""
    settings.OPENAI_API_KEY = ""
    post(client, "answer", live_call)

    holding = turn(live_call, {"SpeechResult": "¿Quién es?"})
    closing = turn(live_call, query="?retry=1")

    assert said(holding) == ["Un momento, por favor."]
    assert said(closing) == ["Gracias, adiós."]
    assert closing[-1].tag == "Hangup"
    live_call.refresh_from_db()
    assert live_call.dialogue["closed"] == "model failed twice"


# --- Machines, recordings, fallback -------------------------------------------------------


def test_a_machine_gets_the_voicemail_through_a_redirect(
    client, live_call, fake_twilio, monkeypatch
) -> None:
    queued = []
    monkeypatch.setattr(tasks.handle_machine_task, "delay", queued.append)
    sid = fake_twilio.set_call(SID, status="in-progress")["sid"]
    params = {"CallSid": sid, "AnsweredBy": "machine_end_beep"}
    path = reverse("calls:amd", kwargs={"call_id": live_call.pk})
    signature = telephony.sign_request(url=APP_URL + path, params=params)

    response = client.post(path, params, headers={"x-twilio-signature": signature})

    assert response.status_code == 204
    assert queued == [live_call.pk]  # the redirect is a task's job, after the answer
    assert flow.handle_machine(call_id=live_call.pk) == "voicemail"
    [update] = fake_twilio.requests_to("POST", f"/Calls/{sid}.json")
    assert update.form["Url"] == [f"{APP_URL}/twilio/calls/{live_call.pk}/voicemail"]
    live_call.refresh_from_db()
    assert live_call.answered_by == "machine_end_beep"
    assert CallEvent.objects.get(kind="amd").payload["AnsweredBy"] == "machine_end_beep"


def test_the_voicemail_message_is_spoken_then_the_call_ends(client, live_call) -> None:
    elements = verbs(post(client, "voicemail", live_call))

    assert said(elements) == ["Le llamamos de Acme.", "Llámenos al 910 000 000."]
    assert elements[-1].tag == "Hangup"


def test_a_human_verdict_changes_nothing_on_the_call(client, live_call) -> None:
    assert not callbacks.record_machine_detection(
        call_id=live_call.pk, params={"CallSid": SID, "AnsweredBy": "human"}
    )
    live_call.refresh_from_db()
    assert live_call.answered_by == "human"


def test_a_completed_recording_is_kept_on_the_call(client, live_call) -> None:
    params = {
        "RecordingSid": "RE" + "1" * 32,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
        "RecordingStatus": "completed",
        "RecordingDuration": "37",
    }

    response = post(client, "recording", live_call, params)

    assert response.status_code == 204
    live_call.refresh_from_db()
    assert live_call.recording_sid == "RE" + "1" * 32
    assert live_call.recording_seconds == 37


def test_the_fallback_apologises_names_the_company_and_offers_the_opt_out(
    client, live_call
) -> None:
    elements = verbs(post(client, "fallback", live_call, {"ErrorCode": "11200"}))

    gather = elements[0]
    assert gather.get("action") == f"{APP_URL}/twilio/calls/{live_call.pk}/fallback/opt-out"
    assert "Acme" in said([gather])[0]
    assert "pulse 9" in said([gather])[1]
    assert elements[-1].tag == "Hangup"

    confirm = verbs(post(client, "fallback-opt-out", live_call, {"Digits": "9"}))

    assert confirm[-1].tag == "Hangup"
    assert DoNotCall.objects.filter(phone=live_call.to_number).exists()


def test_an_unexpected_failure_is_answered_with_the_fallback_not_an_error(
    client, live_call, monkeypatch
) -> None:
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(flow, "answer", broken)

    elements = verbs(post(client, "answer", live_call))

    assert elements[0].tag == "Gather"
    assert "problema técnico" in said(elements)[0]


@pytest.mark.parametrize("answered_by", ["fax", "machine_start"])
def test_a_fax_or_a_machine_still_greeting_is_hung_up_not_left_a_message(
    live_call, fake_twilio, answered_by
) -> None:
    # Twilio's AMD: a voicemail is left on machine_end_* only; a fax hears nothing.
    sid = fake_twilio.set_call(SID, status="in-progress")["sid"]
    callbacks.record_machine_detection(
        call_id=live_call.pk, params={"CallSid": sid, "AnsweredBy": answered_by}
    )

    assert flow.handle_machine(call_id=live_call.pk) == "hung_up"

    [update] = fake_twilio.requests_to("POST", f"/Calls/{sid}.json")
    assert update.form == {"Status": ["completed"]}


# --- Transfers nobody takes -----------------------------------------------------------------


@pytest.fixture
def concluded(monkeypatch) -> list[int]:
    """The calls whose conclusion was queued, kept here: no worker should take them (a
    Celery worker of the test session would, and run into the end of the test)."""
    queued: list[int] = []
    monkeypatch.setattr(tasks.conclude_call_task, "delay", queued.append)
    return queued


def end_call(client, call: Call) -> Contact:
    """Twilio's final status callback for ``call``; its contact as it is then."""
    response = post(client, "status", call, {"CallStatus": "completed", "CallDuration": "60"})
    assert response.status_code == 204
    return Contact.objects.get(pk=call.contact_id)


def test_the_models_words_before_a_transfer_are_heard_then_the_number_is_dialled(
    client, live_call, fake_openai
) -> None:
    post(client, "answer", live_call)
    fake_openai.queue_reply(
        "Claro, le paso con una compañera.",
        tool_calls=[("transfer_to_human", {"reason": "asks for a person"})],
    )

    elements = turn(live_call, {"SpeechResult": "Quiero hablar con una persona"})

    assert said(elements) == ["Claro, le paso con una compañera."]
    assert (elements[-1].tag, elements[-1].text.strip()) == ("Dial", "+34910000999")


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed"])
def test_a_transfer_nobody_takes_apologises_offers_a_callback_and_listens(
    client, live_call, concluded, fake_openai, status
) -> None:
    post(client, "answer", live_call)
    fake_openai.queue_reply("", tool_calls=[("transfer_to_human", {"reason": "asks"})])
    turn(live_call, {"SpeechResult": "Con una persona, por favor"})

    elements = verbs(post(client, "transfer-ended", live_call, {"DialCallStatus": status}))

    gather = elements[0]
    assert gather.tag == "Gather"
    assert gather.get("action") == f"{APP_URL}/twilio/calls/{live_call.pk}/turn"
    assert spoken(elements) == (
        "Lo siento, ahora mismo nadie puede atenderle. Podemos llamarle más tarde: "
        "¿cuándo le viene bien?"
    )
    live_call.refresh_from_db()
    assert live_call.outcome == {
        "transferred": False,
        "transfer_failed": True,
        "transfer_status": status,
    }
    assert live_call.turns.last().text == spoken(elements)
    # Nothing more said: the contact is called again as the retry policy says.
    contact = end_call(client, live_call)
    assert contact.state == Contact.State.RETRY
    assert contact.state_reason == "Transferencia no atendida: se volverá a llamar más tarde."


def test_after_a_transfer_nobody_takes_the_callee_can_ask_for_a_callback(
    client, live_call, concluded, fake_openai
) -> None:
    post(client, "answer", live_call)
    fake_openai.queue_reply("", tool_calls=[("transfer_to_human", {"reason": "asks"})])
    turn(live_call, {"SpeechResult": "Con una persona, por favor"})
    post(client, "transfer-ended", live_call, {"DialCallStatus": "no-answer"})
    fake_openai.queue_reply(
        "De acuerdo, le llamamos mañana a las diez. Adiós.",
        tool_calls=[
            ("schedule_callback", {"at": "2030-01-15T10:00"}),
            ("end_call", {"reason": "callback"}),
        ],
    )

    elements = turn(live_call, {"SpeechResult": "Mañana a las diez"})

    assert elements[-1].tag == "Hangup"
    history = fake_openai.chat_requests[-1]["messages"]
    assert history[-2]["content"].startswith("Lo siento, ahora mismo nadie puede atenderle.")
    contact = end_call(client, live_call)
    assert contact.state == Contact.State.RETRY
    assert contact.next_attempt_at.isoformat() == "2030-01-15T09:00:00+00:00"


def test_a_scripted_transfer_nobody_takes_promises_the_callback_and_ends(
    client, live_call, concluded, scripted
) -> None:
    scripted.transfer_failed_line = "Nadie puede atenderle ahora; le llamaremos. Adiós."
    scripted.save()
    post(client, "answer", live_call)
    turn(live_call, {"SpeechResult": "con una persona"})

    elements = verbs(post(client, "transfer-ended", live_call, {"DialCallStatus": "busy"}))

    assert spoken(elements) == "Nadie puede atenderle ahora; le llamaremos. Adiós."
    assert elements[-1].tag == "Hangup"
    contact = end_call(client, live_call)
    assert contact.state == Contact.State.RETRY
    assert contact.state_reason == "Ha pedido que se le llame en otro momento."


def test_a_transfer_taken_ends_the_call_and_the_contact_is_done(
    client, live_call, concluded, scripted
):
    post(client, "answer", live_call)
    turn(live_call, {"SpeechResult": "con una persona"})

    elements = verbs(post(client, "transfer-ended", live_call, {"DialCallStatus": "completed"}))

    assert [element.tag for element in elements] == ["Hangup"]
    live_call.refresh_from_db()
    assert live_call.outcome["transferred"] is True
    assert end_call(client, live_call).state == Contact.State.DONE
    assert concluded == [live_call.pk]


# --- Barge-in: the caller speaks over a reply's first line -----------------------------------


def interrupt(
    call: Call, params: dict[str, str], over: dict[str, str], *, before_recorded: bool = False
) -> tuple[list[ET.Element], list[ET.Element]]:
    """The turn webhook's first answer to ``params``, then what the caller saying ``over``
    during its first line (the <Gather> around it posts to its action) got, continuations
    followed. ``before_recorded``: the caller speaks before the reply is recorded."""

    async def post_following(client: AsyncClient, path: str, form: dict) -> list[ET.Element]:
        elements: list[ET.Element] = []
        while True:
            signature = telephony.sign_request(url=APP_URL + path, params=form)
            response = await client.post(path, form, headers={"x-twilio-signature": signature})
            elements += verbs(response)
            last = elements[-1]
            if last.tag != "Redirect" or "/continue?" not in (last.text or ""):
                return elements
            elements.pop()
            path = last.text.removeprefix(APP_URL)

    async def converse() -> tuple[list[ET.Element], list[ET.Element]]:
        client = AsyncClient()
        path = reverse("calls:turn", kwargs={"call_id": call.pk})
        form = {"CallSid": SID, "AccountSid": "AC" + "0" * 32, **params}
        signature = telephony.sign_request(url=APP_URL + path, params=form)
        first = verbs(await client.post(path, form, headers={"x-twilio-signature": signature}))
        assert [element.tag for element in first] == ["Gather", "Redirect"]
        if not before_recorded:
            # Twilio plays the first line meanwhile: the rest is made and recorded.
            token = first[0].get("action").rsplit("=", 1)[1]
            await asyncio.wait_for(streaming._BACKGROUND[token], timeout=5)
        action = first[0].get("action").removeprefix(APP_URL)
        rest = await post_following(client, action, {**form, **over})
        return first, rest

    return async_to_sync(converse)()


def transcript(call: Call) -> list[tuple[str, str]]:
    return list(call.turns.order_by("sequence").values_list("role", "text"))


@pytest.mark.parametrize("before_recorded", [False, True])
def test_a_caller_speaking_over_the_first_line_is_heard_and_the_reply_kept_as_heard(
    live_call, fake_openai, monkeypatch, before_recorded
) -> None:
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes. ¿Algo más?", chunk_delay=0)
    fake_openai.queue_reply("Claro, dígame.")
    if before_recorded:
        # The lines after the first take long to voice: the caller speaks before the
        # reply is recorded, and it records itself as heard.
        speech_for_call = streaming.speech_for_call

        def slow_rest(*, call, text, **options):
            if "martes" in text:
                time.sleep(0.5)
            return speech_for_call(call=call, text=text, **options)

        monkeypatch.setattr(streaming, "speech_for_call", slow_rest)
    else:
        slow_first_line(monkeypatch, seconds=0.2)

    first, answer = interrupt(
        live_call, {"SpeechResult": "Sí, iré"}, {"SpeechResult": "Espere, una pregunta"}
    )

    assert said(first) == ["Perfecto, Ana."]
    assert said(answer) == ["Claro, dígame."]
    assert answer[0].tag == "Gather"
    # Only what the caller heard is kept, before their words, and the model is told so.
    assert transcript(live_call)[1:] == [
        (Turn.Role.CALLER, "Sí, iré"),
        (Turn.Role.AGENT, "Perfecto, Ana."),
        (Turn.Role.CALLER, "Espere, una pregunta"),
        (Turn.Role.AGENT, "Claro, dígame."),
    ]
    assert fake_openai.chat_requests[-1]["messages"][-2:] == [
        {"role": "assistant", "content": "Perfecto, Ana."},
        {"role": "user", "content": "Espere, una pregunta"},
    ]


def test_a_goodbye_spoken_over_does_not_end_the_call(live_call, fake_openai, monkeypatch):
    post(Client(), "answer", live_call)
    fake_openai.queue_reply(
        "Perfecto, Ana. Hasta el martes, adiós.",
        chunk_delay=0,
        tool_calls=[("end_call", {"reason": "done"})],
    )
    fake_openai.queue_reply("Sí, dígame, ¿qué necesita?")
    slow_first_line(monkeypatch, seconds=0.2)

    _first, answer = interrupt(
        live_call, {"SpeechResult": "Sí, iré"}, {"SpeechResult": "¡Espere! Otra cosa"}
    )

    # The caller never heard the goodbye, nor was hung up on: the conversation goes on.
    assert answer[0].tag == "Gather" and answer[-1].tag == "Redirect"
    assert said(answer) == ["Sí, dígame, ¿qué necesita?"]
    live_call.refresh_from_db()
    assert "ended" not in live_call.dialogue and "closed" not in live_call.dialogue


def test_an_opt_out_spoken_over_still_opts_out_and_confirms(live_call, fake_openai) -> None:
    post(Client(), "answer", live_call)
    # The model still writes when the first line is ready: it leaves on its own.
    fake_openai.queue_reply(
        "Entendido, Ana. No la llamaremos más.", chunk_delay=0.1, tool_calls=[("opt_out", {})]
    )

    _first, answer = interrupt(
        live_call, {"SpeechResult": "Pues mire, ya veremos"}, {"SpeechResult": "¿Me oye?"}
    )

    assert answer[-1].tag == "Hangup"
    assert DoNotCall.objects.filter(phone=live_call.to_number).exists()


# --- Deadlines: Twilio gets an answer within WEBHOOK_DEADLINE_SECONDS -------------------------


def test_a_first_line_not_voiced_by_the_deadline_is_said_by_twilio(
    live_call, fake_openai, monkeypatch, settings
) -> None:
    settings.WEBHOOK_DEADLINE_SECONDS = 2.0
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana. Le esperamos el martes.", chunk_delay=0)
    speech_for_call = streaming.speech_for_call

    def stuck_first(*, call, text, **options):
        if "Perfecto" in text:
            time.sleep(4)  # a socket that never answers: the thread outlives the deadline
        return speech_for_call(call=call, text=text, **options)

    monkeypatch.setattr(streaming, "speech_for_call", stuck_first)
    took: list[float] = []

    first, _rest = first_answer_then_rest(live_call, {"SpeechResult": "Sí, iré"}, took=took)

    assert took[0] < 3.0
    assert [element.tag for element in first] == ["Gather", "Redirect"]
    assert [say.text for say in first[0].iter("Say")] == ["Perfecto, Ana."]
    live_call.refresh_from_db()
    assert live_call.speech_fallbacks >= 1


def test_a_model_with_no_first_line_by_the_deadline_gets_a_holding_line(
    live_call, fake_openai, settings
) -> None:
    settings.WEBHOOK_DEADLINE_SECONDS = 2.0
    settings.MODEL_TIMEOUT = 5.0  # the model answers at once, but never ends a sentence
    post(Client(), "answer", live_call)
    fake_openai.queue_reply("Perfecto Ana le esperamos " * 3, chunk_size=4, chunk_delay=0.3)
    started = time.monotonic()

    elements = turn(live_call, {"SpeechResult": "Sí, iré"})

    assert time.monotonic() - started < 3.5
    assert said(elements) == ["Un momento, por favor."]
    assert elements[-1].text.endswith("/turn?retry=1")


def test_template_lines_render_within_the_webhooks_deadline(
    client, live_call, fake_elevenlabs, bella_voice, settings
) -> None:
    # ElevenLabs hangs: the greeting falls back to <Say> by the deadline, not after the
    # four attempts of ten seconds each that Twilio would not wait for.
    settings.WEBHOOK_DEADLINE_SECONDS = 2.0
    settings.ELEVENLABS_TIMEOUT = 10.0
    fake_elevenlabs.delay = 30
    started = time.monotonic()

    gather, _redirect = verbs(post(client, "answer", live_call))

    assert time.monotonic() - started < 3.5
    assert [element.tag for element in gather] == ["Say", "Say", "Say"]


# --- What a call played and billed -------------------------------------------------------------


def test_each_turn_keeps_its_clips_and_tokens_and_the_call_its_clips_when_it_ends(
    client, live_call, fake_openai, fake_elevenlabs, bella_voice, concluded
) -> None:
    post(client, "answer", live_call)
    fake_openai.queue_reply("Perfecto, Ana. ¿Algo más?", usage=(120, 9))

    turn(live_call, {"SpeechResult": "Sí, iré"})

    # Each turn keeps the clips played for it, in order: template lines in the quality
    # model, the model's live lines in the fast one.
    def texts(clips: list[int]) -> list[tuple[str, str]]:
        by_id = SpeechClip.objects.in_bulk(clips)
        return [(by_id[pk].text, by_id[pk].model_id) for pk in clips]

    greeting, _caller, reply = live_call.turns.order_by("sequence")
    assert texts(greeting.clips) == [
        ("Hola Ana.", "eleven_multilingual_v2"),
        ("Le llamamos de Acme.", "eleven_multilingual_v2"),
        ("Soy un asistente automático.", "eleven_multilingual_v2"),
    ]
    assert texts(reply.clips) == [
        ("Perfecto, Ana.", "eleven_flash_v2_5"),
        ("¿Algo más?", "eleven_flash_v2_5"),
    ]
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == ("gpt-4o-mini", 120, 9)
    # None is written on the hot path: the call's clips are recorded when it ends.
    assert not live_call.clips.exists()
    end_call(client, live_call)
    assert live_call.clips.count() == 5


def test_a_goodbye_of_the_tool_alone_is_said_and_kept_with_its_tokens(
    client, live_call, fake_openai
) -> None:
    post(client, "answer", live_call)
    fake_openai.queue_reply("", tool_calls=[("end_call", {"reason": "done"})], usage=(80, 5))

    elements = turn(live_call, {"SpeechResult": "Nada más, gracias"})

    assert said(elements) == ["Gracias, adiós."]
    closing = live_call.turns.last()
    assert (closing.role, closing.text) == (Turn.Role.AGENT, "Gracias, adiós.")
    assert (closing.prompt_tokens, closing.completion_tokens) == (80, 5)
