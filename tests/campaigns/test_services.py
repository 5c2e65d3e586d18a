from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from campaigns.models import Campaign, DoNotCall
from campaigns.services import (
    CampaignStateError,
    add_contact,
    add_do_not_call,
    create_partner,
    transition_campaign,
)

pytestmark = pytest.mark.django_db


def test_create_partner_refuses_duplicate_names(partner) -> None:
    with pytest.raises(ValidationError) as excinfo:
        create_partner(name=f"  {partner.name} ")

    assert "name" in excinfo.value.message_dict


def test_transition_campaign_follows_the_state_machine(campaign) -> None:
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.PAUSED)
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.COMPLETED)

    campaign.refresh_from_db()
    assert campaign.state == "completed"
    assert campaign.state_changed_at is not None


@pytest.mark.parametrize(
    ("start", "target"),
    [("draft", "paused"), ("draft", "completed"), ("completed", "running"), ("cancelled", "draft")],
)
def test_transition_campaign_refuses_moves_the_machine_forbids(campaign, start, target) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(state=start)
    campaign.refresh_from_db()

    with pytest.raises(CampaignStateError) as excinfo:
        transition_campaign(campaign=campaign, to=target)

    assert "no puede pasar" in str(excinfo.value)  # Spanish first
    campaign.refresh_from_db()
    assert campaign.state == start


def test_transition_campaign_loses_to_a_concurrent_move(campaign) -> None:
    # given a stale copy of a campaign that someone else already started and cancelled
    stale = Campaign.objects.get(pk=campaign.pk)
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)
    transition_campaign(campaign=campaign, to=Campaign.State.CANCELLED)

    # when the stale copy tries to schedule it
    with translation.override("en"), pytest.raises(CampaignStateError, match="meanwhile"):
        transition_campaign(campaign=stale, to=Campaign.State.RUNNING)

    # then nothing was written and the copy now knows the real state
    assert stale.state == "cancelled"
    campaign.refresh_from_db()
    assert campaign.state == "cancelled"


def test_add_contact_normalises_and_derives_time_zone(campaign) -> None:
    contact, created = add_contact(
        campaign=campaign, phone="91 000 00 00", variables={"name": "Ana"}
    )

    assert created
    assert contact.phone == "+34910000000"
    assert contact.time_zone == "Europe/Madrid"
    assert contact.variables == {"name": "Ana"}


@pytest.mark.parametrize("phone", ["+1 800 555 0100", "600 12 34 56"])
def test_add_contact_leaves_zone_empty_when_number_spans_several(campaign, phone) -> None:
    # toll-free US numbers ring anywhere; Spanish mobiles may be on the Canaries (an
    # hour behind the mainland): eligibility then checks every candidate zone
    contact, _ = add_contact(campaign=campaign, phone=phone)

    assert contact.time_zone == ""


def test_add_contact_merges_duplicate_phone(campaign) -> None:
    first, _ = add_contact(campaign=campaign, phone="+34600123456", variables={"name": "Ana"})

    second, created = add_contact(
        campaign=campaign, phone="600123456", variables={"city": "Madrid"}
    )

    assert not created
    assert second.pk == first.pk
    assert second.variables == {"name": "Ana", "city": "Madrid"}
    assert campaign.contacts.count() == 1


def test_add_contact_reimport_by_external_id_is_idempotent(campaign) -> None:
    first, _ = add_contact(campaign=campaign, phone="+34600123456", external_id="crm-7")

    again, created = add_contact(campaign=campaign, phone="+34600999999", external_id="crm-7")

    assert not created and again.pk == first.pk
    assert campaign.contacts.count() == 1


def test_add_contact_refuses_invalid_phone_and_zone(campaign) -> None:
    with pytest.raises(ValidationError) as excinfo:
        add_contact(campaign=campaign, phone="12")
    assert excinfo.value.code == "invalid_phone"

    with pytest.raises(ValidationError) as excinfo:
        add_contact(campaign=campaign, phone="+34600123456", time_zone="Europe/Atlantis")
    assert "time_zone" in excinfo.value.message_dict
    assert campaign.contacts.count() == 0


def test_add_do_not_call_is_idempotent_and_scoped(partner, admin_user) -> None:
    entry, created = add_do_not_call(
        phone="600 12 34 56", partner=partner, source=DoNotCall.Source.STAFF, by=admin_user
    )
    again, created_again = add_do_not_call(phone="+34600123456", partner=partner, source="opt_out")
    global_entry, global_created = add_do_not_call(
        phone="+34600123456", partner=None, source="staff"
    )

    assert created and not created_again and global_created
    assert again.pk == entry.pk
    assert again.source == "staff" and again.created_by == admin_user
    assert global_entry.partner is None
    assert DoNotCall.objects.count() == 2


def test_add_do_not_call_refuses_unknown_source(partner) -> None:
    with pytest.raises(ValidationError) as excinfo:
        add_do_not_call(phone="+34600123456", partner=partner, source="rumour")

    assert "source" in excinfo.value.message_dict


def test_transition_campaign_refuses_to_run_without_template_listing_reasons(campaign) -> None:
    campaign.template = None
    campaign.save(update_fields=["template"])

    with translation.override("en"), pytest.raises(CampaignStateError, match="no call template"):
        transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)


def test_transition_campaign_refuses_a_template_failing_the_lint(campaign, call_template) -> None:
    # given a greeting that neither names the company nor discloses the automation
    call_template.greeting = "Hola {{ first_name }}."
    call_template.voicemail_message = "Llámenos."
    call_template.save()

    # when
    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)

    # then every reason is given at once, and the campaign stays a draft
    message = str(excinfo.value)
    assert "name the company" in message
    assert "automated assistant" in message
    assert "number to call back" in message
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_transition_campaign_to_running_queues_voicing_after_commit(
    campaign, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    queued: list[int] = []
    monkeypatch.setattr("campaigns.services.prerender_campaign_speech_task.delay", queued.append)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)

    assert queued == []  # nothing is queued before the transaction commits
    for callback in callbacks:
        callback()
    assert queued == [campaign.pk]
