from __future__ import annotations

import datetime

import pytest
from django.utils import translation

from calls.models import Call
from campaigns.eligibility import (
    Blocked,
    Eligibility,
    ReasonCode,
    count_blocked,
    eligibilities,
    eligibility_for,
    evaluate,
    load_eligibility_facts,
)
from campaigns.models import Campaign, Contact, Partner
from campaigns.rules import RULES_VERSION
from templates.models import CallTemplate
from tests.factories import (
    CallFactory,
    CampaignFactory,
    ContactFactory,
    DoNotCallFactory,
    PartnerFactory,
)

MADRID = "+34912345678"
SPANISH_MOBILE = "+34612345678"
MIAMI = "+13055550123"
ATLANTA = "+14045550123"


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


# A Monday, 10:00 in Madrid: inside the Spanish window.
MONDAY_10_MADRID = utc("2025-03-10T09:00")


@pytest.fixture(autouse=True)
def _english_in_madrid(settings):
    # messages show times in the project's zone
    settings.TIME_ZONE = "Europe/Madrid"
    with translation.override("en"):
        yield


def build(
    *,
    phone: str = MADRID,
    time_zone: str = "Europe/Madrid",
    variables: dict | None = None,
    contact_fields: dict | None = None,
    **campaign_fields,
) -> Contact:
    """An unsaved contact of an unsaved running campaign: evaluate needs no database."""
    partner = Partner(name="Acme")
    template = CallTemplate(
        partner=partner,
        name="Recordatorio",
        greeting="Hola {{ first_name }}. Le llamamos de {{ partner }}.",
        instructions="Confirma la cita de {{ first_name }} el {{ day|default:'lunes' }}.",
    )
    campaign_fields.setdefault("state", Campaign.State.RUNNING)
    campaign = Campaign(partner=partner, name="Spring", template=template, **campaign_fields)
    return Contact(
        campaign=campaign,
        phone=phone,
        time_zone=time_zone,
        variables={"first_name": "Lucía"} if variables is None else variables,
        **(contact_fields or {}),
    )


def check(
    contact: Contact,
    now: datetime.datetime = MONDAY_10_MADRID,
    *,
    history: list[datetime.datetime] | None = None,
    blocked_by_dnc: bool = False,
    live_call: bool = False,
) -> Eligibility:
    return evaluate(
        contact=contact,
        campaign=contact.campaign,
        now=now,
        history=history or [],
        blocked_by_dnc=blocked_by_dnc,
        live_call=live_call,
    )


def test_evaluate_dialable_inside_the_window() -> None:
    result = check(build())

    assert result.dialable
    assert result.reasons == []
    assert result.next_possible_at == MONDAY_10_MADRID
    assert result.rules_version == RULES_VERSION


def test_evaluate_outside_window_names_the_zone_and_when_it_opens() -> None:
    saturday = utc("2025-03-08T09:00")

    result = check(build(), saturday)

    assert not result.dialable
    assert [(r.code, r.message) for r in result.reasons] == [
        (
            ReasonCode.OUTSIDE_WINDOW,
            "outside the calling window in Europe/Madrid (2025-03-08 10:00 there)",
        )
    ]
    assert result.next_possible_at == utc("2025-03-10T08:00")  # Monday 09:00


def test_evaluate_outside_window_on_a_holiday_says_so() -> None:
    result = check(build(), utc("2025-12-08T09:00"))

    assert result.reasons[0].message == (
        "outside the calling window in Europe/Madrid (2025-12-08 10:00 there, a holiday)"
    )
    assert result.next_possible_at == utc("2025-12-09T08:00")


def test_evaluate_mobile_that_may_be_on_the_canaries_waits_for_both_zones() -> None:
    # no stored zone: +346… may ring in Atlantic/Canary or Europe/Madrid
    contact = build(phone=SPANISH_MOBILE, time_zone="")

    result = check(contact, utc("2025-03-10T08:00"))  # 09:00 Madrid, 08:00 Canary

    assert [r.message for r in result.reasons] == [
        "outside the calling window in Atlantic/Canary (2025-03-10 08:00 there)"
    ]
    assert result.next_possible_at == utc("2025-03-10T09:00")  # 10:00 Madrid


def test_evaluate_stored_time_zone_wins_over_the_number() -> None:
    contact = build(phone=SPANISH_MOBILE, time_zone="Europe/Madrid")

    assert check(contact, utc("2025-03-10T08:00")).dialable


def test_evaluate_no_time_zone_for_the_number() -> None:
    contact = build(phone="+80012345678", time_zone="")

    result = check(contact)

    assert result.codes == [ReasonCode.NO_TIME_ZONE]
    assert result.reasons[0].message == "no time zone is known for +80012345678"
    assert result.next_possible_at is None


def test_evaluate_collects_every_reason_at_once() -> None:
    contact = build(
        variables={"first_name": "  "},
        state=Campaign.State.PAUSED,
        contact_fields={"state": Contact.State.DONE, "attempts": 3},
    )
    saturday = utc("2025-03-08T09:00")

    result = check(contact, saturday, blocked_by_dnc=True, live_call=True)

    assert [(r.code, r.message) for r in result.reasons] == [
        (ReasonCode.CAMPAIGN_NOT_RUNNING, "the campaign is not running (Paused)"),
        (ReasonCode.ATTEMPTS_EXHAUSTED, "all attempts are used (3 of 3)"),
        (ReasonCode.CONTACT_STATE, "the contact is not waiting for a call (Done)"),
        (ReasonCode.DO_NOT_CALL, "the number +34912345678 is on a do-not-call list"),
        (ReasonCode.LIVE_CALL, "the contact already has a call going on"),
        (
            ReasonCode.OUTSIDE_WINDOW,
            "outside the calling window in Europe/Madrid (2025-03-08 10:00 there)",
        ),
        (ReasonCode.MISSING_VARIABLE, "missing variable first_name"),
    ]
    assert result.next_possible_at is None


def test_evaluate_missing_variables_one_reason_each_and_defaults_are_optional() -> None:
    template_fields = {"greeting": "Hola {{ first_name }} {{ last_name }}. {{ partner }}."}
    contact = build(variables={"day": ""})
    for name, value in template_fields.items():
        setattr(contact.campaign.template, name, value)

    result = check(contact)

    # "day" has a default; "partner" is filled in by the call itself
    assert [r.message for r in result.reasons] == [
        "missing variable first_name",
        "missing variable last_name",
    ]
    assert result.next_possible_at is None


def test_evaluate_do_not_call_blocks_for_good() -> None:
    result = check(build(), blocked_by_dnc=True)

    assert result.codes == [ReasonCode.DO_NOT_CALL]
    assert result.next_possible_at is None


@pytest.mark.parametrize(
    "contact_fields",
    [{"attempts": 3}, {"attempts": 1, "state": Contact.State.EXHAUSTED}],
)
def test_evaluate_attempts_exhausted(contact_fields) -> None:
    result = check(build(contact_fields=contact_fields))

    assert result.codes == [ReasonCode.ATTEMPTS_EXHAUSTED]
    assert result.next_possible_at is None


def test_evaluate_max_attempts_comes_from_the_campaign() -> None:
    contact = build(max_attempts=5, contact_fields={"attempts": 3})
    contact.campaign.partner.max_attempts_cap = 5  # within the partner's cap (default 3)

    assert check(contact).dialable


def test_evaluate_retry_not_due_gives_the_retry_time() -> None:
    retry_at = MONDAY_10_MADRID + datetime.timedelta(hours=2)
    contact = build(contact_fields={"state": Contact.State.RETRY, "next_attempt_at": retry_at})

    result = check(contact)

    assert [(r.code, r.until) for r in result.reasons] == [(ReasonCode.RETRY_NOT_DUE, retry_at)]
    assert result.reasons[0].message == "the next attempt is due at 2025-03-10 12:00 CET"
    assert result.next_possible_at == retry_at
    assert check(contact, retry_at).dialable


def test_evaluate_retry_due_outside_the_window_waits_for_the_opening() -> None:
    friday_2030_madrid = utc("2025-03-14T19:30")
    contact = build(
        contact_fields={
            "state": Contact.State.RETRY,
            "next_attempt_at": friday_2030_madrid + datetime.timedelta(hours=1),
        }
    )

    result = check(contact, friday_2030_madrid)

    assert result.codes == [ReasonCode.RETRY_NOT_DUE]
    assert result.next_possible_at == utc("2025-03-17T08:00")  # Monday 09:00


@pytest.mark.parametrize(
    ("state", "code", "message"),
    [
        ("paused", ReasonCode.CAMPAIGN_NOT_RUNNING, "the campaign is not running (Paused)"),
        ("draft", ReasonCode.CAMPAIGN_NOT_RUNNING, "the campaign is not running (Draft)"),
        ("completed", ReasonCode.CAMPAIGN_ENDED, "the campaign is over (Completed)"),
        ("cancelled", ReasonCode.CAMPAIGN_ENDED, "the campaign is over (Cancelled)"),
    ],
)
def test_evaluate_campaign_that_is_not_running(state, code, message) -> None:
    result = check(build(state=state))

    assert [(r.code, r.message) for r in result.reasons] == [(code, message)]
    assert result.next_possible_at is None


def test_evaluate_scheduled_campaign_can_call_from_its_start() -> None:
    # starts at 07:00 Madrid; the window opens at 09:00
    contact = build(state="scheduled", starts_at=utc("2025-03-11T06:00"))

    result = check(contact)

    assert [(r.code, r.message) for r in result.reasons] == [
        (ReasonCode.CAMPAIGN_NOT_STARTED, "the campaign starts at 2025-03-11 07:00 CET")
    ]
    assert result.next_possible_at == utc("2025-03-11T08:00")


def test_evaluate_campaign_past_its_end() -> None:
    result = check(build(ends_at=MONDAY_10_MADRID))

    assert result.codes == [ReasonCode.CAMPAIGN_ENDED]
    assert result.reasons[0].message == "the campaign ended at 2025-03-10 10:00 CET"
    assert result.next_possible_at is None


def test_evaluate_no_next_time_when_the_window_opens_after_the_campaign_ends() -> None:
    saturday = utc("2025-03-08T09:00")
    contact = build(ends_at=utc("2025-03-09T12:00"))

    result = check(contact, saturday)

    assert result.codes == [ReasonCode.OUTSIDE_WINDOW]
    assert result.next_possible_at is None


def test_evaluate_campaign_windows_narrow_the_profile() -> None:
    contact = build(calling_windows={"mon": [["16:00", "18:00"]]})

    result = check(contact)

    assert result.codes == [ReasonCode.OUTSIDE_WINDOW]
    assert result.next_possible_at == utc("2025-03-10T15:00")


def test_evaluate_campaign_frequency_cap_clears_when_the_oldest_call_leaves_the_period() -> None:
    now = MONDAY_10_MADRID
    history = [now - datetime.timedelta(hours=hours) for hours in (20, 5, 1)]
    contact = build(frequency_cap_calls=3, frequency_cap_hours=24)

    result = check(contact, now, history=history)

    assert [(r.code, r.message) for r in result.reasons] == [
        (
            ReasonCode.FREQUENCY_CAP,
            "3 calls to +34912345678 in the last 24 hours across the partner's campaigns; "
            "the campaign allows 3",
        )
    ]
    assert result.next_possible_at == now + datetime.timedelta(hours=4)
    assert check(contact, now, history=history[1:]).dialable


def test_evaluate_florida_cap_applies_even_when_the_campaign_allows_more() -> None:
    # 15:00Z is 10:00 EST
    now = utc("2025-01-10T15:00")
    history = [now - datetime.timedelta(hours=hours) for hours in (3, 2, 1)]

    settings = {"time_zone": "America/New_York", "compliance_profile": "us"}

    florida = check(build(phone=MIAMI, frequency_cap_calls=10, **settings), now, history=history)
    georgia = check(build(phone=ATLANTA, frequency_cap_calls=10, **settings), now, history=history)

    assert [r.message for r in florida.reasons] == [
        "3 calls to +13055550123 in the last 24 hours; US-1 (Florida) allows 3"
    ]
    # the oldest call leaves the period at 07:00 EST; Florida calls from 08:00
    assert florida.next_possible_at == utc("2025-01-11T13:00")
    assert georgia.dialable


# With the database: the facts and the convenience that loads them.


@pytest.fixture
def running(partner, call_template) -> Campaign:
    return CampaignFactory(
        partner=partner,
        name="Florida A",
        template=call_template,
        state="running",
        compliance_profile="us",
        frequency_cap_calls=10,
    )


def add_contact(campaign: Campaign, phone: str = MIAMI, **fields) -> Contact:
    fields.setdefault("variables", {"first_name": "Ana"})
    return Contact.objects.create(
        campaign=campaign, phone=phone, time_zone="America/New_York", **fields
    )


def add_call(contact: Contact, *, at: datetime.datetime, status: str = "completed") -> Call:
    call = CallFactory(
        campaign=contact.campaign,
        contact=contact,
        attempt=contact.calls.count() + 1,
        status=status,
        from_number="+13055550100",
        to_number=contact.phone,
    )
    Call.objects.filter(pk=call.pk).update(created_at=at)
    return call


FLORIDA_MORNING = utc("2025-01-10T15:00")  # 10:00 EST


@pytest.mark.django_db
def test_eligibility_for_florida_fourth_call_blocked_across_the_partners_campaigns(
    partner, call_template, running
) -> None:
    # given: three calls to the number in 24 h, in two of the partner's campaigns
    other_campaign = CampaignFactory(
        partner=partner,
        name="Florida B",
        template=call_template,
        state="running",
        compliance_profile="us",
        frequency_cap_calls=10,
    )
    first = add_contact(running)
    second = add_contact(other_campaign)
    add_call(first, at=FLORIDA_MORNING - datetime.timedelta(hours=23))
    add_call(first, at=FLORIDA_MORNING - datetime.timedelta(hours=2))
    add_call(second, at=FLORIDA_MORNING - datetime.timedelta(hours=1))
    # another partner's calls to the same number do not count
    stranger = PartnerFactory(name="Stranger")
    stranger_campaign = CampaignFactory(partner=stranger, name="S", state="running")
    stranger_contact = add_contact(stranger_campaign)
    for hours in (1, 2, 3):
        add_call(stranger_contact, at=FLORIDA_MORNING - datetime.timedelta(hours=hours))

    # when
    result = eligibility_for(contact=second, now=FLORIDA_MORNING)

    # then
    assert result.codes == [ReasonCode.FREQUENCY_CAP]
    assert result.reasons[0].message == (
        "3 calls to +13055550123 in the last 24 hours; US-1 (Florida) allows 3"
    )
    assert result.next_possible_at == FLORIDA_MORNING + datetime.timedelta(hours=1)


@pytest.mark.django_db
def test_eligibility_for_third_call_in_florida_allowed(running) -> None:
    contact = add_contact(running)
    add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=25))  # outside the period
    add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=3))
    add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=2))

    assert eligibility_for(contact=contact, now=FLORIDA_MORNING).dialable


@pytest.mark.django_db
def test_load_eligibility_facts_reads_history_dnc_and_live_call(running) -> None:
    contact = add_contact(running)
    old = add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=30))
    recent = add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=1), status="ringing")

    facts = load_eligibility_facts(contact=contact, now=FLORIDA_MORNING)

    assert old.pk and facts["history"] == [FLORIDA_MORNING - datetime.timedelta(hours=1)]
    assert recent.is_live and facts["live_call"] is True
    assert facts["blocked_by_dnc"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["partner", "global"])
def test_eligibility_for_do_not_call_entries_of_the_partner_and_global(
    running, partner, scope
) -> None:
    contact = add_contact(running)
    DoNotCallFactory(partner=partner if scope == "partner" else None, phone=MIAMI)

    result = eligibility_for(contact=contact, now=FLORIDA_MORNING)

    assert result.codes == [ReasonCode.DO_NOT_CALL]
    assert result.next_possible_at is None


@pytest.mark.django_db
def test_eligibility_for_ignores_another_partners_do_not_call_entry(running) -> None:
    contact = add_contact(running)
    DoNotCallFactory(partner=PartnerFactory(name="Other"), phone=MIAMI)

    assert eligibility_for(contact=contact, now=FLORIDA_MORNING).dialable


@pytest.mark.django_db
def test_eligibility_for_live_call(running) -> None:
    contact = add_contact(running)
    add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(minutes=1), status="in-progress")

    result = eligibility_for(contact=contact, now=FLORIDA_MORNING)

    assert result.codes == [ReasonCode.LIVE_CALL]
    assert result.next_possible_at is None


@pytest.mark.django_db
def test_eligibility_for_reads_in_three_queries(running, django_assert_num_queries) -> None:
    add_contact(running)
    contact = Contact.objects.with_campaign().get()

    with django_assert_num_queries(3):
        eligibility_for(contact=contact, now=FLORIDA_MORNING)


@pytest.mark.django_db
def test_eligibility_for_before_dialling_leaves_out_the_call_being_placed(running) -> None:
    # given: the dispatcher created the third call in 24 h and the worker re-checks it
    contact = add_contact(running)
    add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=3))
    add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=2))
    placing = add_call(contact, at=FLORIDA_MORNING, status="dialing")

    # when
    recheck = eligibility_for(contact=contact, now=FLORIDA_MORNING, exclude_call_id=placing.pk)
    other = eligibility_for(contact=contact, now=FLORIDA_MORNING)

    # then
    assert recheck.dialable
    assert other.codes == [ReasonCode.LIVE_CALL, ReasonCode.FREQUENCY_CAP]


# --- Contacts blocked for good, counted by the database ---------------------------------

# Values of a variable, and whether a line that speaks it can be said with them.
VALUES = [
    ({}, False),
    ({"first_name": None}, False),
    ({"first_name": ""}, False),
    ({"first_name": "   "}, False),
    ({"first_name": "\t\n"}, False),
    ({"first_name": "Ana"}, True),
    ({"first_name": 0}, True),
    ({"first_name": False}, True),
    ({"first_name": "0"}, True),
    ({"other": "Ana"}, False),
]


@pytest.mark.django_db
def test_count_blocked_lacks_a_variable_exactly_when_evaluate_says_so(
    campaign, call_template
) -> None:
    # given contacts with every kind of value of a variable the template speaks
    contacts = [
        ContactFactory(campaign=campaign, phone=f"+3491234560{index}", variables=variables)
        for index, (variables, _speakable) in enumerate(VALUES)
    ]
    campaign.state = Campaign.State.RUNNING

    # when the database counts them, and evaluate looks at each
    blocked = count_blocked(campaign=campaign, contacts=campaign.contacts.all())
    verdicts = [ReasonCode.MISSING_VARIABLE in check(contact).codes for contact in contacts]

    # then both agree on each
    assert verdicts == [not speakable for _variables, speakable in VALUES]
    assert blocked == Blocked(
        total=len(VALUES),
        blocked=sum(verdicts),
        missing={"first_name": sum(verdicts)},
        do_not_call=0,
        exhausted=0,
    )


@pytest.mark.django_db
def test_count_blocked_counts_each_reason_and_a_contact_once(campaign, partner) -> None:
    # given a template that needs two variables, one of them with "__" in its name
    template = campaign.template
    template.variables = {"first_name": "Ana", "hora__cita": "10:00"}
    template.greeting = (
        "Hola {{ first_name }}, a las {{ hora__cita }}. Le llamamos de {{ partner }}."
    )
    template.instructions = "Confirma la cita."
    template.save()
    other = PartnerFactory(name="Other")
    both = {"first_name": "Ana", "hora__cita": "10:00"}
    rows = [
        ("+34912345601", {}, 0),  # lacks both
        ("+34912345602", {"first_name": "Ana"}, 0),  # lacks the hour
        ("+34912345603", both, 0),  # on the partner's list
        ("+34912345604", both, 3),  # attempts used, and on the global list
        ("+34912345605", both, 0),  # on another partner's list only: callable
    ]
    for phone, variables, attempts in rows:
        ContactFactory(campaign=campaign, phone=phone, variables=variables, attempts=attempts)
    DoNotCallFactory(partner=partner, phone="+34912345603")
    DoNotCallFactory(partner=None, phone="+34912345604")
    DoNotCallFactory(partner=other, phone="+34912345605")

    # when
    blocked = count_blocked(campaign=campaign, contacts=campaign.contacts.all())

    # then
    assert blocked == Blocked(
        total=5,
        blocked=4,
        missing={"first_name": 1, "hora__cita": 2},
        do_not_call=2,
        exhausted=1,
    )
    assert blocked.describe() == (
        "1 lacks first_name, 2 lack hora__cita, 2 are on a do-not-call list, "
        "1 has used all its attempts"
    )


@pytest.mark.django_db
def test_count_blocked_reads_the_template_as_it_is_now(campaign, call_template) -> None:
    # given contacts imported for a template that needed first_name only
    ContactFactory(campaign=campaign, phone=MADRID, variables={"first_name": "Ana"})
    # when the template comes to need the appointment's day too
    call_template.variables = {"first_name": "Ana", "day": "lunes"}
    call_template.instructions = "Confirma la cita de {{ first_name }} el {{ day }}."
    call_template.save()

    blocked = count_blocked(campaign=campaign, contacts=campaign.contacts.all())

    assert (blocked.blocked, blocked.missing) == (1, {"day": 1, "first_name": 0})


@pytest.mark.django_db
def test_eligibilities_agree_with_eligibility_for_in_three_queries_for_any_number(
    partner, call_template, running, django_assert_num_queries
) -> None:
    # given contacts of two partners sharing numbers: one with three calls in 24 h across
    # its partner's campaigns (Florida's cap), one with a live call, one on its partner's
    # list, one on the global list, and another partner's contact of the capped number
    other_campaign = CampaignFactory(
        partner=partner, name="Florida B", template=call_template, state="running"
    )
    capped = add_contact(running)
    sibling = add_contact(other_campaign)
    for contact, hours in ((capped, 23), (capped, 2), (sibling, 1)):
        add_call(contact, at=FLORIDA_MORNING - datetime.timedelta(hours=hours))
    live = add_contact(running, phone=ATLANTA)
    add_call(live, at=FLORIDA_MORNING - datetime.timedelta(minutes=1), status="in-progress")
    listed = add_contact(running, phone="+13055550124")
    DoNotCallFactory(partner=partner, phone=listed.phone)
    everyone = add_contact(running, phone="+13055550125")
    DoNotCallFactory(partner=None, phone=everyone.phone)
    stranger = PartnerFactory(name="Stranger")
    strangers_campaign = CampaignFactory(
        partner=stranger, name="S", template=call_template, state="running"
    )
    unrelated = add_contact(strangers_campaign)
    DoNotCallFactory(partner=stranger, phone=ATLANTA)
    contacts = list(Contact.objects.with_campaign().order_by("pk"))

    # when the verdicts are given for all of them at once
    with django_assert_num_queries(3):
        verdicts = eligibilities(contacts=contacts, now=FLORIDA_MORNING)

    # then each is the one a contact's own check gives
    for contact in contacts:
        assert verdicts[contact.pk] == eligibility_for(contact=contact, now=FLORIDA_MORNING)
    assert ReasonCode.FREQUENCY_CAP in verdicts[sibling.pk].codes
    assert verdicts[live.pk].codes == [ReasonCode.LIVE_CALL]
    assert verdicts[listed.pk].codes == verdicts[everyone.pk].codes == [ReasonCode.DO_NOT_CALL]
    assert verdicts[unrelated.pk].dialable
