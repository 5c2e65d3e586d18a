"""``manage.py sandbox_call_in``: a contact (or anyone) rings one of our numbers."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.utils import translation

from calls.telephony.sandbox import carrier
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(settings, monkeypatch) -> list[str]:
    settings.TELEPHONY_BACKEND = "sandbox"
    sids: list[str] = []
    monkeypatch.setattr(carrier, "_queue", sids.append)
    return sids


def run(*args: str) -> str:
    out = io.StringIO()
    with translation.override("en"):
        call_command("sandbox_call_in", *args, stdout=out)
    return out.getvalue()


def test_a_contact_rings_its_campaigns_number_back(queued, campaign) -> None:
    campaign.caller_number = "+34910000000"
    campaign.save()
    contact = ContactFactory(campaign=campaign, phone="+34600000001")

    out = run("--contact", str(contact.pk), "--persona", "callback")

    [sid] = queued
    assert out == f"Call {sid} queued for the worker.\n"
    state = cache.get(f"sandbox:call:{sid}")
    assert (state["params"]["From"], state["params"]["To"]) == ("+34600000001", "+34910000000")
    assert (state["direction"], state["persona"]) == ("inbound", "callback")


def test_anyone_may_ring_any_number(queued) -> None:
    run("--from", "+34699000111", "--to", "+34910000000")

    [sid] = queued
    state = cache.get(f"sandbox:call:{sid}")
    assert (state["params"]["From"], state["persona"]) == ("+34699000111", "interested")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "Give either --contact, or --from and --to."),
        (("--contact", "1", "--from", "+34699000111"), "Give either --contact, or --from"),
        (("--from", "+34699000111"), "Give both --from and --to."),
        (("--contact", "999999"), "No contact has the id 999999."),
        (("--from", "699000111", "--to", "+34910000000"), "The From number “699000111”"),
    ],
)
def test_what_cannot_ring_is_refused_saying_why(queued, args, problem) -> None:
    with pytest.raises(CommandError, match=problem):
        run(*args)
    assert queued == []


def test_the_command_needs_the_sandbox_carrier(settings) -> None:
    settings.TELEPHONY_BACKEND = "twilio"

    with pytest.raises(CommandError, match="TELEPHONY_BACKEND is not sandbox"):
        run("--from", "+34699000111", "--to", "+34910000000")
