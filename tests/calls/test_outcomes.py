"""After the call: outcome extraction, summary, the contact's follow-up, the signal."""

from __future__ import annotations

import datetime
import json

import pytest
from django.db import OperationalError
from django.utils import timezone

from calls import outcomes, tasks
from calls.models import Call
from calls.outcomes import Concluded, call_concluded, conclude_call
from campaigns.models import Contact
from tests.factories import CallFactory, ContactFactory, TurnFactory, WebhookEndpointFactory

SCHEMA = {
    "type": "object",
    "properties": {
        "attending": {"type": "boolean"},
        "callback_at": {"type": "string"},
    },
    "required": ["attending"],
}


@pytest.fixture
def ended_call(campaign, call_template) -> Call:
    call_template.outcome_schema = SCHEMA
    call_template.save()
    contact = ContactFactory(
        campaign=campaign,
        phone="+34600000001",
        time_zone="Europe/Madrid",
        variables={"first_name": "Ana"},
        state=Contact.State.DONE,
        attempts=1,
    )
    ended = timezone.now() - datetime.timedelta(seconds=5)
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.COMPLETED,
        provider_sid="CA" + "c" * 32,
        from_number="+34910000000",
        to_number=contact.phone,
        ended_at=ended,
        outcome={"live": "kept"},
    )
    for sequence, (role, text) in enumerate(
        [("agent", "Hola Ana, ¿vendrá el martes?"), ("caller", "No puedo, llámeme el jueves")]
    ):
        TurnFactory(call=call, sequence=sequence, role=role, text=text, started_at=ended)
    return call


@pytest.fixture
def concluded() -> list[dict]:
    received: list[dict] = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    call_concluded.connect(receiver, weak=False)
    yield received
    call_concluded.disconnect(receiver)


def answer(outcome: dict, summary: str = "No vendrá; llamar el jueves.") -> str:
    return json.dumps({"outcome": outcome, "summary": summary})


def test_the_outcome_and_summary_are_extracted_and_listeners_told(
    ended_call, fake_openai, concluded, django_capture_on_commit_callbacks
) -> None:
    fake_openai.queue_reply(answer({"attending": False, "live": "overwritten?"}))

    with django_capture_on_commit_callbacks(execute=True):
        assert conclude_call(call_id=ended_call.pk) == "extracted"

    ended_call.refresh_from_db()
    assert ended_call.outcome == {"attending": False, "live": "kept"}
    assert ended_call.summary == "No vendrá; llamar el jueves."
    assert concluded == [
        {"signal": call_concluded, "call_id": ended_call.pk, "result": "extracted"}
    ]
    [request] = fake_openai.chat_requests
    assert request["response_format"] == {"type": "json_object"}
    assert "No puedo, llámeme el jueves" in json.dumps(request["messages"], ensure_ascii=False)


def test_a_callback_found_by_the_model_becomes_the_next_attempt(ended_call, fake_openai) -> None:
    fake_openai.queue_reply(answer({"attending": False, "callback_at": "2030-01-03T17:00:00"}))

    conclude_call(call_id=ended_call.pk)

    contact = Contact.objects.get(pk=ended_call.contact_id)
    assert contact.state == Contact.State.RETRY
    # 17:00 in Madrid (UTC+1 in January).
    assert contact.next_attempt_at == datetime.datetime(2030, 1, 3, 16, 0, tzinfo=datetime.UTC)


def test_the_extraction_keeps_the_partners_answers_apart_from_the_platforms_flags(
    ended_call, fake_openai
) -> None:
    # given a model that answers the schema's field and a callback time (a flag)
    fake_openai.queue_reply(answer({"attending": False, "callback_at": "2030-01-03T17:00:00"}))

    # when the call is concluded
    result = conclude_call(call_id=ended_call.pk)

    # then each kind lands in its own field, and the outcome shows both
    assert result is Concluded.EXTRACTED
    ended_call.refresh_from_db()
    assert ended_call.answers == {"attending": False, "live": "kept"}
    assert ended_call.flags == {"callback_at": "2030-01-03T17:00:00"}
    assert ended_call.outcome == {
        "attending": False,
        "live": "kept",
        "callback_at": "2030-01-03T17:00:00",
    }


def test_a_failed_extraction_is_a_flag_and_leaves_the_answers_alone(
    ended_call, fake_openai
) -> None:
    fake_openai.queue_reply("not json")
    fake_openai.queue_reply("not json at all")

    assert conclude_call(call_id=ended_call.pk) is Concluded.FAILED

    ended_call.refresh_from_db()
    assert ended_call.answers == {"live": "kept"}
    assert ended_call.flags["extraction_failed"] is True
    assert ended_call.flags["extraction_raw"] == "not json at all"


def test_an_invalid_answer_twice_is_kept_as_extraction_failed(ended_call, fake_openai) -> None:
    fake_openai.queue_reply(answer({"attending": "maybe"}))
    fake_openai.queue_reply("not json at all")

    assert conclude_call(call_id=ended_call.pk) == "failed"

    ended_call.refresh_from_db()
    assert ended_call.outcome["extraction_failed"] is True
    assert ended_call.outcome["extraction_raw"] == "not json at all"
    assert ended_call.outcome["live"] == "kept"
    assert Contact.objects.get(pk=ended_call.contact_id).state == Contact.State.DONE


def test_a_call_nobody_spoke_on_asks_no_model(ended_call, fake_openai) -> None:
    ended_call.turns.filter(role="caller").delete()

    assert conclude_call(call_id=ended_call.pk) == "no_conversation"

    assert fake_openai.chat_requests == []


def test_without_a_model_the_scripts_outcome_stands(ended_call, settings) -> None:
    settings.OPENAI_API_KEY = ""

    assert conclude_call(call_id=ended_call.pk) == "not_configured"

    ended_call.refresh_from_db()
    assert ended_call.outcome == {"live": "kept"}


def test_the_task_retries_an_unreachable_model_then_records_why(
    ended_call, fake_openai, concluded, django_capture_on_commit_callbacks
) -> None:
    fake_openai.fail_next(503, times=tasks.conclude_call_task.max_retries + 1)

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.conclude_call_task.apply(args=(ended_call.pk,)).get() == "unavailable"

    ended_call.refresh_from_db()
    assert ended_call.outcome["extraction_failed"] is True
    assert ended_call.outcome["extraction_error"]
    assert len(fake_openai.chat_requests) == tasks.conclude_call_task.max_retries + 1
    assert concluded[-1]["result"] == "failed"


def test_the_task_concludes_again_when_the_database_went_away(
    ended_call, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    # given: the first run loses its database connection (a restart, a network cut)
    runs: list[int] = []

    def conclude(*, call_id: int) -> str:
        runs.append(call_id)
        if len(runs) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return "no_conversation"

    monkeypatch.setattr(outcomes, "conclude_call", conclude)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.conclude_call_task.apply(args=(ended_call.pk,)).get()

    # then it ran again rather than leave the call unconcluded (and the partner untold)
    assert (result, runs) == ("no_conversation", [ended_call.pk, ended_call.pk])


@pytest.mark.django_db
def test_the_partner_is_told_which_way_a_call_went(ended_call, settings, monkeypatch) -> None:
    # given: the contact rang us back; the partner listens for concluded calls
    from campaigns import tasks as campaign_tasks
    from campaigns.models import WebhookDelivery

    settings.OPENAI_API_KEY = ""  # no model: the conclusion tells the partner at once
    monkeypatch.setattr(campaign_tasks.deliver_webhook_task, "delay_on_commit", lambda _id: None)
    endpoint = WebhookEndpointFactory(
        partner=ended_call.campaign.partner,
        url="https://partner.example.com/hooks",
        events=["call.completed"],
    )
    Call.objects.filter(pk=ended_call.pk).update(
        direction=Call.Direction.INBOUND,
        attempt=None,
        from_number=ended_call.to_number,
        to_number=ended_call.from_number,
    )

    conclude_call(call_id=ended_call.pk)

    data = WebhookDelivery.objects.get(endpoint=endpoint).payload["data"]
    assert (data["call_id"], data["direction"], data["attempt"]) == (
        ended_call.pk,
        "inbound",
        None,
    )
    assert data["contact"]["phone"] == "+34600000001"
