from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from campaigns.models import Campaign, Contact, DoNotCall, Partner, default_retry_policy
from tests.database import violates
from tests.factories import CampaignFactory, ContactFactory, DoNotCallFactory, PartnerFactory

pytestmark = pytest.mark.django_db


def test_partner_name_is_unique(partner) -> None:
    assert violates(lambda: Partner.objects.create(name=partner.name))


def test_campaign_name_unique_per_partner_only(partner, campaign) -> None:
    other = PartnerFactory(name="Other")

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
    ContactFactory(campaign=campaign, phone="+34600000001")
    other = CampaignFactory(partner=partner, name="Other")

    assert violates(lambda: Contact.objects.create(campaign=campaign, phone="+34600000001"))
    assert not violates(lambda: Contact.objects.create(campaign=other, phone="+34600000001"))


def test_contact_external_id_unique_per_campaign_when_given(campaign) -> None:
    ContactFactory(campaign=campaign, phone="+34600000001", external_id="A-1")
    ContactFactory(campaign=campaign, phone="+34600000002")

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
    pending = ContactFactory(campaign=campaign, phone="+34600000001")
    ripe = ContactFactory(
        campaign=campaign,
        phone="+34600000002",
        state="retry",
        next_attempt_at=now - datetime.timedelta(minutes=1),
    )
    ContactFactory(
        campaign=campaign,
        phone="+34600000003",
        state="retry",
        next_attempt_at=now + datetime.timedelta(minutes=1),
    )
    ContactFactory(campaign=campaign, phone="+34600000004", state="done")

    assert set(Contact.objects.due(now)) == {pending, ripe}


def test_do_not_call_unique_per_partner_and_globally(partner) -> None:
    DoNotCallFactory(partner=partner, phone="+34600000001")
    DoNotCallFactory(partner=None, phone="+34600000002")

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
    other = PartnerFactory(name="Other")
    own = DoNotCallFactory(partner=partner, phone="+34600000001")
    DoNotCallFactory(partner=other, phone="+34600000002")
    global_entry = DoNotCallFactory(partner=None, phone="+34600000003")

    assert list(DoNotCall.objects.blocking(partner=partner, phone="+34600000001")) == [own]
    assert not DoNotCall.objects.blocking(partner=partner, phone="+34600000002").exists()
    assert list(DoNotCall.objects.blocking(partner=partner, phone="+34600000003")) == [global_entry]


def test_campaign_calling_settings_defaults(partner) -> None:
    campaign = CampaignFactory(partner=partner, name="x")

    assert campaign.compliance_profile == "es"
    assert campaign.calling_windows == {}
    assert (campaign.ring_timeout_seconds, campaign.time_limit_seconds) == (25, 600)
    assert (campaign.max_concurrent_calls, campaign.calls_per_second) == (5, Decimal("1"))
    assert (campaign.frequency_cap_calls, campaign.frequency_cap_hours) == (3, 24)
    assert campaign.max_attempts == 3
    assert campaign.retry_policy["no-answer"] == {"delay_minutes": 120, "max_attempts": 3}
    assert (campaign.record_calls, campaign.machine_action) == (False, "voicemail")
    campaign.full_clean()


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("ring_timeout_seconds", 14, 15),  # US-4
        ("ring_timeout_seconds", 601, 600),
        ("time_limit_seconds", 59, 60),
        ("time_limit_seconds", 14401, 14400),
        ("max_concurrent_calls", 0, 1),
        ("calls_per_second", Decimal("0"), Decimal("0.5")),
        ("max_attempts", 0, 1),
        ("frequency_cap_calls", 0, 1),
        ("frequency_cap_hours", 0, 1),
        ("compliance_profile", "mars", "us"),
        ("machine_action", "sing", "hangup"),
    ],
)
def test_campaign_calling_settings_constraints(partner, field, bad, good) -> None:
    assert violates(lambda: Campaign.objects.create(partner=partner, name="bad", **{field: bad}))
    assert not violates(
        lambda: Campaign.objects.create(partner=partner, name="good", **{field: good})
    )


def clean_errors(campaign: Campaign) -> dict[str, list[str]]:
    with translation.override("en"):
        try:
            campaign.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            return error.message_dict
    return {}


def test_campaign_clean_names_the_weekday_and_value_of_a_bad_window(partner) -> None:
    campaign = Campaign(
        partner=partner,
        name="x",
        calling_windows={"mon": [["25:00", "26:00"]], "sat": [["10:00", "12:00"]]},
    )

    assert clean_errors(campaign) == {
        "calling_windows": [
            "Calling window “25:00-26:00” on mon is not a valid HH:MM-HH:MM interval.",
            "Calling window “10:00-12:00” on sat is not allowed: the Spain rules allow no calls "
            "on sat.",
        ]
    }


def test_campaign_clean_refuses_windows_wider_than_the_profile(partner) -> None:
    campaign = Campaign(
        partner=partner,
        name="x",
        compliance_profile="us",
        calling_windows={"sun": [["07:30", "12:00"]]},
    )

    assert clean_errors(campaign) == {
        "calling_windows": [
            "Calling window “07:30-12:00” on sun reaches outside 08:00-21:00, the hours the "
            "United States rules allow; campaign windows can only narrow them."
        ]
    }
    campaign.calling_windows = {"sun": [["08:00", "12:00"]]}
    assert clean_errors(campaign) == {}


def test_campaign_clean_names_the_outcome_and_value_of_a_bad_retry_policy(partner) -> None:
    policy = default_retry_policy()
    policy["busy"] = {"delay_minutes": 0, "max_attempts": "3"}
    policy["voicemail"] = {"delay_minutes": 10}
    del policy["failed"]
    policy["hung-up"] = {"delay_minutes": 1, "max_attempts": 1}
    campaign = Campaign(partner=partner, name="x", retry_policy=policy)

    assert clean_errors(campaign) == {
        "retry_policy": [
            "“hung-up” is not a retry outcome; use busy, no-answer, failed or voicemail.",
            "The retry policy's delay_minutes for busy must be a whole number of at least 1, "
            "not “0”.",
            "The retry policy's max_attempts for busy must be a whole number of at least 1, "
            "not “3”.",
            "The retry policy has no entry for failed.",
            'The retry policy for voicemail must be {"delay_minutes": …, "max_attempts": …}, '
            'not {"delay_minutes": 10}.',
        ]
    }


def test_campaign_clean_refuses_a_retry_policy_that_is_not_an_object(partner) -> None:
    campaign = Campaign(partner=partner, name="x", retry_policy=[1, 2])

    assert list(clean_errors(campaign)) == ["retry_policy"]


def test_campaign_clean_field_validators_explain_the_ranges(partner) -> None:
    campaign = Campaign(partner=partner, name="x", ring_timeout_seconds=10)

    assert clean_errors(campaign) == {
        "ring_timeout_seconds": ["Ensure this value is greater than or equal to 15."]
    }


def test_contact_with_campaign_loads_what_eligibility_reads(
    campaign, django_assert_num_queries
) -> None:
    ContactFactory(campaign=campaign, phone="+34600000001")

    contact = Contact.objects.with_campaign().get()

    with django_assert_num_queries(0):
        assert contact.campaign.partner.name and contact.campaign.template.greeting


@pytest.mark.parametrize(
    "number", ["910000000", "+34 910 000 000", "+3491000000", "+1555123456", "+34910000000\n"]
)
def test_campaign_caller_number_must_be_a_valid_number_in_e164(partner, number) -> None:
    campaign = Campaign(partner=partner, name="x", caller_number=number)

    with translation.override("en"):
        with pytest.raises(ValidationError) as excinfo:
            campaign.full_clean()

        assert excinfo.value.message_dict["caller_number"] == [
            f"“{number}” is not a valid phone number in E.164 form, e.g. +34910000000."
        ]


def test_campaign_caller_and_transfer_numbers_in_e164_pass(partner) -> None:
    Campaign(
        partner=partner, name="x", caller_number="+34910000000", transfer_number="+15005550006"
    ).full_clean()
