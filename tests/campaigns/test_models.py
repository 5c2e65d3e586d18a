from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Contact, DoNotCall, Partner
from tests.database import violates

pytestmark = pytest.mark.django_db


def test_partner_name_is_unique(partner) -> None:
    assert violates(lambda: Partner.objects.create(name=partner.name))


def test_campaign_name_unique_per_partner_only(partner, campaign) -> None:
    other = Partner.objects.create(name="Other")

    assert violates(lambda: Campaign.objects.create(partner=partner, name=campaign.name))
    assert not violates(lambda: Campaign.objects.create(partner=other, name=campaign.name))


def test_campaign_state_must_be_known(partner) -> None:
    assert violates(lambda: Campaign.objects.create(partner=partner, name="x", state="dancing"))


def test_campaign_must_end_after_it_starts(partner) -> None:
    now = timezone.now()

    assert violates(
        lambda: Campaign.objects.create(partner=partner, name="x", starts_at=now, ends_at=now)
    )


def test_campaign_scheduled_needs_a_start(partner) -> None:
    assert violates(lambda: Campaign.objects.create(partner=partner, name="x", state="scheduled"))
    assert not violates(
        lambda: Campaign.objects.create(
            partner=partner, name="y", state="scheduled", starts_at=timezone.now()
        )
    )


def test_campaign_transitions_end_in_final_states() -> None:
    assert Campaign.TRANSITIONS[Campaign.State.COMPLETED] == frozenset()
    assert Campaign.TRANSITIONS[Campaign.State.CANCELLED] == frozenset()
    assert set(Campaign.TRANSITIONS) == set(Campaign.State.values)


def test_contact_phone_unique_per_campaign(campaign, partner) -> None:
    Contact.objects.create(campaign=campaign, phone="+34600000001")
    other = Campaign.objects.create(partner=partner, name="Other")

    assert violates(lambda: Contact.objects.create(campaign=campaign, phone="+34600000001"))
    assert not violates(lambda: Contact.objects.create(campaign=other, phone="+34600000001"))


def test_contact_external_id_unique_per_campaign_when_given(campaign) -> None:
    Contact.objects.create(campaign=campaign, phone="+34600000001", external_id="A-1")
    Contact.objects.create(campaign=campaign, phone="+34600000002")

    assert violates(
        lambda: Contact.objects.create(campaign=campaign, phone="+34600000003", external_id="A-1")
    )
    assert not violates(lambda: Contact.objects.create(campaign=campaign, phone="+34600000004"))


@pytest.mark.parametrize("phone", ["600000001", "+0034600000001", "+34 600 000 001", ""])
def test_contact_phone_must_be_e164(campaign, phone) -> None:
    assert violates(lambda: Contact.objects.create(campaign=campaign, phone=phone))


def test_contact_state_must_be_known(campaign) -> None:
    assert violates(
        lambda: Contact.objects.create(campaign=campaign, phone="+34600000001", state="lost")
    )


def test_contact_retry_needs_a_time(campaign) -> None:
    assert violates(
        lambda: Contact.objects.create(campaign=campaign, phone="+34600000001", state="retry")
    )
    assert not violates(
        lambda: Contact.objects.create(
            campaign=campaign, phone="+34600000002", state="retry", next_attempt_at=timezone.now()
        )
    )


def test_contact_due_returns_pending_and_ripe_retries(campaign) -> None:
    now = timezone.now()
    pending = Contact.objects.create(campaign=campaign, phone="+34600000001")
    ripe = Contact.objects.create(
        campaign=campaign,
        phone="+34600000002",
        state="retry",
        next_attempt_at=now - datetime.timedelta(minutes=1),
    )
    Contact.objects.create(
        campaign=campaign,
        phone="+34600000003",
        state="retry",
        next_attempt_at=now + datetime.timedelta(minutes=1),
    )
    Contact.objects.create(campaign=campaign, phone="+34600000004", state="done")

    assert set(Contact.objects.due(now)) == {pending, ripe}


def test_do_not_call_unique_per_partner_and_globally(partner) -> None:
    DoNotCall.objects.create(partner=partner, phone="+34600000001")
    DoNotCall.objects.create(partner=None, phone="+34600000002")

    assert violates(lambda: DoNotCall.objects.create(partner=partner, phone="+34600000001"))
    assert violates(lambda: DoNotCall.objects.create(partner=None, phone="+34600000002"))
    # a global entry and a partner entry for one number may coexist
    assert not violates(lambda: DoNotCall.objects.create(partner=None, phone="+34600000001"))


def test_do_not_call_phone_must_be_e164_and_source_known(partner) -> None:
    assert violates(lambda: DoNotCall.objects.create(partner=partner, phone="600000001"))
    assert violates(
        lambda: DoNotCall.objects.create(partner=partner, phone="+34600000001", source="rumour")
    )


def test_do_not_call_blocking_sees_own_and_global_entries_only(partner) -> None:
    other = Partner.objects.create(name="Other")
    own = DoNotCall.objects.create(partner=partner, phone="+34600000001")
    DoNotCall.objects.create(partner=other, phone="+34600000002")
    global_entry = DoNotCall.objects.create(partner=None, phone="+34600000003")

    assert list(DoNotCall.objects.blocking(partner=partner, phone="+34600000001")) == [own]
    assert not DoNotCall.objects.blocking(partner=partner, phone="+34600000002").exists()
    assert list(DoNotCall.objects.blocking(partner=partner, phone="+34600000003")) == [global_entry]
