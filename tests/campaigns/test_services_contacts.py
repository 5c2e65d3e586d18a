"""The contact state machine (Contact.TRANSITIONS) and the services that move contacts."""

from __future__ import annotations

import datetime

import pytest
from django.db import transaction
from django.utils import timezone, translation

from campaigns.eligibility import Eligibility, Reason, ReasonCode
from campaigns.models import Campaign, Contact
from campaigns.services import ContactStateError
from campaigns.services.contacts import (
    PutOff,
    finish_contact_attempt,
    mark_contacts_calling,
    opt_out_contact,
    put_off,
    put_off_contacts,
    release_contact,
    schedule_contact_callback,
)

pytestmark = pytest.mark.django_db

State = Contact.State
WAITING = [State.PENDING, State.RETRY]
ENDED = [State.DONE, State.FAILED, State.EXHAUSTED]
HOUR = datetime.timedelta(hours=1)


def make_contact(campaign: Campaign, state: str = State.PENDING, **fields: object) -> Contact:
    number = Contact.objects.count() + 1
    if state == State.RETRY:
        fields.setdefault("next_attempt_at", timezone.now())
    return Contact.objects.create(
        campaign=campaign, phone=f"+346000{number:05d}", state=state, **fields
    )


def stored(contact: Contact) -> tuple[str, str, int, datetime.datetime | None]:
    contact.refresh_from_db()
    return contact.state, contact.state_reason, contact.attempts, contact.next_attempt_at


# --- The table -------------------------------------------------------------------------------


def test_the_table_has_a_row_for_every_state_and_names_only_states() -> None:
    assert set(Contact.TRANSITIONS) == set(State.values)
    assert all(targets <= set(State.values) for targets in Contact.TRANSITIONS.values())


def test_only_a_waiting_contact_may_be_called() -> None:
    assert Contact.states_moving_to(State.CALLING) == WAITING


@pytest.mark.parametrize("state", [s for s in State.values if s != State.OPTED_OUT])
def test_an_opt_out_stands_whatever_comes_after_it(state) -> None:
    assert not Contact(state=State.OPTED_OUT).can_move_to(state)
    assert Contact(state=state).can_move_to(State.OPTED_OUT)


@pytest.mark.parametrize("state", ENDED)
def test_an_ended_contact_neither_waits_again_nor_ends_another_way(state) -> None:
    contact = Contact(state=state)

    assert not contact.can_move_to(State.PENDING)
    assert not contact.can_move_to(State.CALLING)
    assert {s for s in ENDED if contact.can_move_to(s)} == {State.DONE}


# --- Claims by the dispatcher ----------------------------------------------------------------


def test_mark_contacts_calling_claims_waiting_contacts(campaign) -> None:
    pending, retry = make_contact(campaign), make_contact(campaign, State.RETRY, attempts=1)
    now = timezone.now()

    mark_contacts_calling(contact_ids=[pending.pk, retry.pk], now=now)

    assert stored(pending) == (State.CALLING, "", 1, None)
    assert stored(retry) == (State.CALLING, "", 2, None)


@pytest.mark.parametrize("state", [State.CALLING, *ENDED, State.OPTED_OUT])
def test_mark_contacts_calling_refuses_a_batch_with_a_contact_not_waiting(campaign, state) -> None:
    waiting, other = make_contact(campaign), make_contact(campaign, state)

    with pytest.raises(ContactStateError), transaction.atomic():
        mark_contacts_calling(contact_ids=[waiting.pk, other.pk], now=timezone.now())

    assert stored(waiting)[0] == State.PENDING
    assert stored(other)[0] == state


def test_put_off_contacts_writes_the_move_on_contacts_in_their_state(campaign) -> None:
    contacts = [make_contact(campaign), make_contact(campaign)]
    later = timezone.now() + HOUR
    move = PutOff(state=State.PENDING, next_attempt_at=later, reason="window closed")

    put_off_contacts(
        contact_ids=[c.pk for c in contacts], origin=State.PENDING, put_off=move, now=later
    )

    assert [stored(c) for c in contacts] == [(State.PENDING, "window closed", 0, later)] * 2


def test_put_off_contacts_refuses_a_move_the_table_forbids(campaign) -> None:
    contact = make_contact(campaign, State.RETRY)
    move = PutOff(state=State.PENDING, next_attempt_at=timezone.now(), reason="")

    with translation.override("en"), pytest.raises(ContactStateError, match="cannot become"):
        put_off_contacts(
            contact_ids=[contact.pk], origin=State.RETRY, put_off=move, now=timezone.now()
        )

    assert stored(contact)[0] == State.RETRY


def test_put_off_contacts_refuses_a_contact_no_longer_in_its_state(campaign) -> None:
    contact = make_contact(campaign, State.DONE)
    move = PutOff(state=State.FAILED, next_attempt_at=None, reason="on a do-not-call list")

    with pytest.raises(ContactStateError), transaction.atomic():
        put_off_contacts(
            contact_ids=[contact.pk], origin=State.PENDING, put_off=move, now=timezone.now()
        )

    assert stored(contact) == (State.DONE, "", 0, None)


@pytest.mark.parametrize(
    ("codes", "state"),
    [([ReasonCode.ATTEMPTS_EXHAUSTED], State.EXHAUSTED), ([ReasonCode.DO_NOT_CALL], State.FAILED)],
)
def test_put_off_closes_a_contact_time_will_not_clear(codes, state) -> None:
    verdict = Eligibility(
        dialable=False, reasons=[Reason(code=code, message=str(code)) for code in codes]
    )

    assert put_off(verdict=verdict, waiting=State.RETRY) == PutOff(
        state=state, next_attempt_at=None, reason="; ".join(codes)
    )


# --- Release, finish, opt-out, callback ------------------------------------------------------


def test_release_contact_gives_back_the_attempt(campaign) -> None:
    contact = make_contact(campaign, State.CALLING, attempts=1)
    now = timezone.now()

    assert release_contact(contact_id=contact.pk, reason="not placed", now=now)

    assert stored(contact) == (State.PENDING, "not placed", 0, None)


def test_release_contact_leaves_a_contact_no_longer_calling(campaign) -> None:
    contact = make_contact(campaign, State.OPTED_OUT, state_reason="asked", attempts=1)

    assert not release_contact(contact_id=contact.pk, reason="not placed", now=timezone.now())

    assert stored(contact) == (State.OPTED_OUT, "asked", 1, None)


def test_finish_contact_attempt_refuses_a_move_the_table_forbids(campaign) -> None:
    contact = make_contact(campaign, State.CALLING, attempts=1)

    with pytest.raises(ContactStateError):
        finish_contact_attempt(
            contact=contact, to=State.CALLING, reason="", next_attempt_at=None, now=timezone.now()
        )

    assert stored(contact)[0] == State.CALLING


@pytest.mark.parametrize("state", [*WAITING, *ENDED, State.OPTED_OUT])
def test_finish_contact_attempt_moves_on_only_from_calling(campaign, state) -> None:
    contact = make_contact(campaign, state)
    before = stored(contact)

    moved = finish_contact_attempt(
        contact=contact, to=State.DONE, reason="Answered.", next_attempt_at=None, now=timezone.now()
    )

    assert (moved, stored(contact)) == (False, before)


@pytest.mark.parametrize("state", [*WAITING, State.CALLING, *ENDED])
def test_finish_contact_attempt_after_an_inbound_call_moves_on_from_any_state_but_opted_out(
    campaign, state
) -> None:
    contact = make_contact(campaign, state)
    opted_out = make_contact(campaign, State.OPTED_OUT)

    for each in (contact, opted_out):
        finish_contact_attempt(
            contact=each,
            to=State.DONE,
            reason="talked",
            next_attempt_at=None,
            inbound=True,
            now=timezone.now(),
        )

    assert stored(contact)[:2] == (State.DONE, "talked")
    assert stored(opted_out)[0] == State.OPTED_OUT


@pytest.mark.parametrize("state", State.values)
def test_opt_out_contact_closes_any_contact(campaign, state) -> None:
    contact = make_contact(campaign, state)

    assert opt_out_contact(contact=contact, reason="stop", now=timezone.now())

    assert stored(contact)[:2] + stored(contact)[3:] == (State.OPTED_OUT, "stop", None)


def test_schedule_contact_callback_reopens_a_done_contact_not_written_since(campaign) -> None:
    contact = make_contact(campaign, State.DONE)
    ended, at = contact.updated_at, timezone.now() + HOUR

    moved = schedule_contact_callback(
        contact_id=contact.pk, at=at, reason="call me", unchanged_since=ended, now=timezone.now()
    )

    assert moved
    assert stored(contact) == (State.RETRY, "call me", 0, at)


@pytest.mark.parametrize("state", [State.PENDING, State.FAILED, State.OPTED_OUT])
def test_schedule_contact_callback_leaves_a_contact_that_is_not_done(campaign, state) -> None:
    contact = make_contact(campaign, state)
    before = stored(contact)

    moved = schedule_contact_callback(
        contact_id=contact.pk,
        at=timezone.now() + HOUR,
        reason="call me",
        unchanged_since=contact.updated_at,
        now=timezone.now(),
    )

    assert (moved, stored(contact)) == (False, before)


def test_schedule_contact_callback_leaves_a_contact_written_since_the_call(campaign) -> None:
    contact = make_contact(campaign, State.DONE)

    moved = schedule_contact_callback(
        contact_id=contact.pk,
        at=timezone.now() + HOUR,
        reason="call me",
        unchanged_since=contact.updated_at + datetime.timedelta(seconds=1),
        now=timezone.now(),
    )

    assert (moved, stored(contact)[0]) == (False, State.DONE)
