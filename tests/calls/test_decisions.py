"""Each decision about a contact lands in the audit trail: selected, skipped and why,
dialled under which rules and checks, opted out; and the chain still verifies."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from audit import services as audit
from audit.models import AuditEntry
from calls import inbound, outcomes
from calls.dialing import Dialed, place_call, reconcile_calls
from calls.dispatcher import dispatch
from calls.models import Call
from campaigns.models import Campaign, Contact, DoNotCall
from campaigns.rules import RULES_VERSION
from tests.factories import CallFactory, CampaignFactory, DoNotCallFactory

# A Wednesday at noon in Madrid; a Saturday at 11:00 there (outside ES-1).
NOON = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)
SATURDAY = datetime.datetime(2026, 11, 28, 10, 0, tzinfo=datetime.UTC)
PHONE = "+34910000001"


@pytest.fixture(autouse=True)
def dial_settings(settings, tmp_path) -> Iterator[None]:
    settings.APP_URL = "https://calls.example.com"
    settings.TWILIO_MAX_CPS = 100
    settings.DATA_DIR = tmp_path
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        for key in redis.scan_iter("callcenter:pacing:*"):
            redis.delete(key)
    with translation.override("en"):
        yield


@pytest.fixture
def running(campaign) -> Campaign:
    campaign.state = Campaign.State.RUNNING
    campaign.compliance_profile = "es"
    campaign.caller_number = "+34910000000"
    campaign.max_concurrent_calls = 10
    campaign.calls_per_second = 10
    campaign.save()
    return campaign


def add_contact(campaign: Campaign, phone: str = PHONE) -> Contact:
    return Contact.objects.create(
        campaign=campaign, phone=phone, time_zone="", variables={"first_name": "Ana"}
    )


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def assert_chain_whole() -> None:
    count, problems = audit.verify()
    assert count == AuditEntry.objects.count() and count > 0
    assert problems == []


def assert_names_nobody(entry: AuditEntry) -> None:
    assert entry.subject == audit.subject_hash(PHONE)
    assert PHONE not in str(entry.details) and "Ana" not in str(entry.details)


def test_dispatch_and_dial_record_selected_and_dialed_with_the_rules_version(
    running, fake_twilio, monkeypatch
) -> None:
    # given: a Madrid number without a stored zone, dispatched at noon
    contact = add_contact(running)
    [call_id] = dispatch(now=NOON).created
    monkeypatch.setattr("calls.dialing.timezone.now", lambda: NOON)

    # when
    assert place_call(call_id=call_id) == Dialed.PLACED

    # then
    [selected] = entries("contact.selected")
    assert (selected.object_type, selected.object_id) == ("campaigns.contact", str(contact.pk))
    assert selected.partner_id == running.partner_id
    assert selected.rules_version == RULES_VERSION
    assert selected.details == {"campaign_id": running.pk, "call_id": call_id, "attempt": 1}
    assert_names_nobody(selected)
    [dialed] = entries("contact.dialed")
    assert dialed.rules_version == RULES_VERSION
    assert dialed.object_id == str(contact.pk)
    assert dialed.details["call_id"] == call_id
    assert dialed.details["checked_at"] == NOON.isoformat()
    assert dialed.details["checks"] == {
        "profile": "es",
        "window_zones": ["Europe/Madrid"],
        "jurisdiction": "ES-MD",
        "do_not_call": "clear",
        "frequency_caps": [{"rule": "campaign", "calls": 3, "hours": 24, "counted": 0}],
    }
    assert_names_nobody(dialed)
    assert Call.objects.get(pk=call_id).rules_version == RULES_VERSION
    assert entries("contact.skipped") == []
    assert_chain_whole()


def test_dispatch_records_a_contact_skipped_outside_its_window(running) -> None:
    contact = add_contact(running)

    result = dispatch(now=SATURDAY)

    assert result.deferred == 1
    [skipped] = entries("contact.skipped")
    assert skipped.object_id == str(contact.pk)
    assert skipped.rules_version == RULES_VERSION
    assert skipped.details == {
        "campaign_id": running.pk,
        "stage": "dispatch",
        "reasons": ["outside_window"],
        # Monday 30 November 2026, 09:00 in Madrid
        "next_possible_at": "2026-11-30T08:00:00+00:00",
        "state": "pending",
    }
    assert_names_nobody(skipped)
    assert entries("contact.selected") == []
    assert_chain_whole()


def test_dispatch_records_a_contact_closed_with_every_reason_code(running) -> None:
    contact = add_contact(running)
    DoNotCallFactory(partner=None, phone=PHONE)

    dispatch(now=SATURDAY)

    [skipped] = entries("contact.skipped")
    assert skipped.object_id == str(contact.pk)
    assert skipped.details["reasons"] == ["do_not_call", "outside_window"]
    assert skipped.details["next_possible_at"] is None
    assert skipped.details["state"] == "failed"


def test_place_call_records_the_contact_skipped_by_the_recheck_before_dialling(
    running, fake_twilio
) -> None:
    # given: selected at noon, then put on a do-not-call list before its call is dialled
    running.compliance_profile = "none"
    running.save()
    contact = add_contact(running)
    [call_id] = dispatch().created
    DoNotCallFactory(partner=running.partner, phone=PHONE)

    # when
    assert place_call(call_id=call_id) == Dialed.RELEASED

    # then
    [skipped] = entries("contact.skipped")
    assert skipped.object_id == str(contact.pk)
    assert skipped.details == {
        "campaign_id": running.pk,
        "stage": "pre_dial",
        "reasons": ["do_not_call"],
        "next_possible_at": None,
        "state": "failed",
        "call_id": call_id,
    }
    assert entries("contact.dialed") == []
    assert Call.objects.get(pk=call_id).rules_version == ""
    assert fake_twilio.requests_to("POST", "/Calls.json") == []
    assert_chain_whole()


def test_opt_out_records_the_callee_opting_out(running, fake_twilio) -> None:
    running.compliance_profile = "none"
    running.save()
    contact = add_contact(running)
    [call_id] = dispatch().created
    place_call(call_id=call_id)
    call = Call.objects.select_related("campaign__partner", "campaign__template", "contact").get(
        pk=call_id
    )

    outcomes.opt_out(call=call, how="no me llame más, soy Ana")

    [opted_out] = entries("contact.opted_out")
    assert (opted_out.object_type, opted_out.object_id) == ("campaigns.contact", str(contact.pk))
    assert opted_out.actor_type == "callee"
    assert opted_out.details == {
        "campaign_id": running.pk,
        "call_id": call_id,
        "how": "spoken",
        "do_not_call": "added",
    }
    assert_names_nobody(opted_out)
    assert_chain_whole()


def test_reconcile_records_a_call_found_at_twilio_as_dialed_under_its_rules_version(
    running, fake_twilio
) -> None:
    # given: the dial request reached Twilio but its answer was lost
    running.compliance_profile = "none"
    running.save()
    contact = add_contact(running)
    [call_id] = dispatch().created
    fake_twilio.lose_next_creation()
    assert place_call(call_id=call_id) == Dialed.UNCERTAIN
    assert Call.objects.get(pk=call_id).rules_version == RULES_VERSION
    assert entries("contact.dialed") == []

    # when: reconciliation finds it at Twilio
    later = timezone.now() + datetime.timedelta(minutes=10)
    assert reconcile_calls(now=later).adopted == [call_id]

    # then
    [dialed] = entries("contact.dialed")
    assert dialed.object_id == str(contact.pk)
    assert dialed.rules_version == RULES_VERSION
    assert dialed.details == {
        "campaign_id": running.pk,
        "call_id": call_id,
        "attempt": 1,
        "found_by": "reconciliation",
    }
    assert_chain_whole()


def test_call_rules_version_is_in_the_api_detail_and_the_admin_page(
    api_client, api_partner, admin_client
) -> None:
    call = CallFactory(
        contact__campaign=CampaignFactory(partner=api_partner, name="Spring"),
        status=Call.Status.COMPLETED,
        rules_version=RULES_VERSION,
    )

    detail = api_client.get(f"/api/v1/calls/{call.pk}/").json()
    page = admin_client.get(reverse("admin:calls_call_change", args=[call.pk]))

    assert detail["rules_version"] == RULES_VERSION
    assert RULES_VERSION in page.content.decode()


def test_a_stranger_opting_out_by_key_is_recorded_once_per_list(running, settings) -> None:
    # given: a caller we do not know rings the number the campaign calls from
    settings.TELEPHONY_BACKEND = "sandbox"
    stranger = "+34699000111"
    params = {"CallSid": "CA" + "5" * 32, "From": stranger, "To": "+34910000000", "Digits": "9"}
    settings.OPT_OUT_DIGIT = "9"

    # when
    inbound.opt_out(params=params)

    # then
    [opted_out] = entries("contact.opted_out")
    entry = DoNotCall.objects.get(phone=stranger)
    assert (opted_out.object_type, opted_out.object_id) == ("campaigns.donotcall", str(entry.pk))
    assert opted_out.partner_id == running.partner_id
    assert opted_out.subject == audit.subject_hash(stranger)
    assert opted_out.actor_type == "callee"
    assert opted_out.details == {"how": "key", "inbound": True, "do_not_call": "added"}
    assert_chain_whole()
