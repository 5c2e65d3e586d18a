from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from calls.models import Call, CallEvent, Turn
from campaigns.models import Contact
from tests.database import violates
from tests.factories import CallEventFactory, CallFactory, ContactFactory, TurnFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact(campaign) -> Contact:
    return ContactFactory(campaign=campaign, phone="+34600000001")


@pytest.mark.parametrize("live", ["pending", "dialing", "queued", "ringing", "in-progress"])
def test_call_one_live_call_per_contact(contact, live) -> None:
    CallFactory(contact=contact, status=live, attempt=1)

    assert violates(lambda: CallFactory(contact=contact, status="pending", attempt=2))


def test_call_ended_calls_do_not_block_a_new_attempt(contact) -> None:
    CallFactory(contact=contact, status="no-answer", attempt=1)
    CallFactory(contact=contact, status="busy", attempt=2)

    assert not violates(lambda: CallFactory(contact=contact, status="pending", attempt=3))


def test_call_attempt_number_is_unique_per_contact(contact) -> None:
    CallFactory(contact=contact, status="completed", attempt=1)

    assert violates(lambda: CallFactory(contact=contact, status="completed", attempt=1))


def test_call_attempt_starts_at_one(contact) -> None:
    assert violates(lambda: CallFactory(contact=contact, attempt=0))


def test_call_provider_sid_unique_but_many_may_lack_one(contact, campaign) -> None:
    other = ContactFactory(campaign=campaign, phone="+34600000002")
    CallFactory(contact=contact, status="completed", attempt=1, provider_sid="CA1")
    CallFactory(contact=contact, status="failed", attempt=2)
    CallFactory(contact=other, status="failed", attempt=1)

    assert violates(
        lambda: CallFactory(contact=other, status="completed", attempt=2, provider_sid="CA1")
    )


def test_call_status_and_answered_by_must_be_known(contact) -> None:
    assert violates(lambda: CallFactory(contact=contact, status="ringing-loudly"))
    assert violates(lambda: CallFactory(contact=contact, status="completed", answered_by="robot"))
    assert not violates(
        lambda: CallFactory(contact=contact, status="completed", answered_by="machine_end_beep")
    )


def test_call_price_not_negative(contact) -> None:
    assert violates(lambda: CallFactory(contact=contact, status="completed", price=-1))


def test_call_cannot_end_before_it_was_dialed(contact) -> None:
    now = timezone.now()

    assert violates(
        lambda: CallFactory(
            contact=contact,
            status="completed",
            dialed_at=now,
            ended_at=now - datetime.timedelta(seconds=1),
        )
    )


def test_call_outcome_is_kept_as_answers_apart_from_flags(contact) -> None:
    # given one dict mixing a template's answer with the platform's flags
    call = CallFactory(
        contact=contact, outcome={"attending": True, "opted_out": True, "callback_at": None}
    )

    call.refresh_from_db()

    assert call.answers == {"attending": True}
    assert call.flags == {"opted_out": True, "callback_at": None}
    assert call.outcome == {"attending": True, "opted_out": True, "callback_at": None}


def test_call_with_outcome_looks_for_a_flag_in_flags_and_an_answer_in_answers(contact) -> None:
    ended = {"status": Call.Status.COMPLETED}
    opted_out = CallFactory(contact=contact, attempt=1, flags={"opted_out": True}, **ended)
    attending = CallFactory(contact=contact, attempt=2, answers={"attending": True}, **ended)
    CallFactory(
        contact=contact,
        attempt=3,
        answers={"attending": False},
        flags={"opted_out": False},
        **ended,
    )

    assert list(Call.objects.with_outcome("opted_out")) == [opted_out]
    assert list(Call.objects.with_outcome("attending")) == [attending]


def test_call_querysets_live_and_stale(contact, campaign) -> None:
    ended = CallFactory(contact=contact, status="completed", attempt=1)
    live = CallFactory(contact=contact, status="ringing", attempt=2)
    later = timezone.now() + datetime.timedelta(minutes=1)

    assert list(Call.objects.live()) == [live]
    assert list(Call.objects.stale(later)) == [live]
    assert list(Call.objects.stale(timezone.now() - datetime.timedelta(minutes=1))) == []
    assert ended.is_live is False and live.is_live is True


def test_turn_sequence_unique_per_call(contact) -> None:
    call = CallFactory(contact=contact, status="in-progress")
    now = timezone.now()
    TurnFactory(call=call, sequence=1, role="agent", text="Hola", started_at=now)

    assert violates(
        lambda: Turn.objects.create(call=call, sequence=1, role="caller", text="Sí", started_at=now)
    )


def test_turn_role_timings_and_confidence_checked(contact) -> None:
    call = CallFactory(contact=contact, status="in-progress")
    now = timezone.now()

    assert violates(
        lambda: Turn.objects.create(call=call, sequence=1, role="narrator", started_at=now)
    )
    assert violates(
        lambda: Turn.objects.create(
            call=call,
            sequence=2,
            role="agent",
            started_at=now,
            ended_at=now - datetime.timedelta(seconds=1),
        )
    )
    assert violates(
        lambda: Turn.objects.create(
            call=call, sequence=3, role="caller", started_at=now, confidence=1.5
        )
    )


def test_call_event_stored_once_per_sid_kind_and_sequence(contact) -> None:
    call = CallFactory(contact=contact, status="in-progress", provider_sid="CA1")
    CallEventFactory(call=call, provider_sid="CA1", kind="status", sequence_number=0, payload={})

    assert violates(
        lambda: CallEvent.objects.create(
            call=call, provider_sid="CA1", kind="status", sequence_number=0, payload={}
        )
    )
    assert not violates(
        lambda: CallEvent.objects.create(
            call=call, provider_sid="CA1", kind="amd", sequence_number=0, payload={}
        )
    )
    # events without a sequence number (AMD, recordings) are never merged
    CallEvent.objects.create(provider_sid="CA1", kind="recording", payload={})
    assert not violates(
        lambda: CallEvent.objects.create(provider_sid="CA1", kind="recording", payload={})
    )


def test_call_event_kind_must_be_known() -> None:
    assert violates(lambda: CallEvent.objects.create(provider_sid="CA1", kind="gossip", payload={}))
