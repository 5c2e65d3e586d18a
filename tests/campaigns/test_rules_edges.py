"""The calling rules on their edges in 2026: DST changes (Madrid, New York, Los Angeles), a
window edge in a skipped or repeated hour, national and regional holidays, Canary time,
numbers whose zone is uncertain or unknown, and Florida's 8 p.m. end and 3 calls in 24 h.

What tests/campaigns/test_rules.py and test_eligibility.py already cover (2025 dates): US
edges on both DST days in Los Angeles, a window starting in New York's gap, a repeated hour
found twice, Madrid DST weekends, the 2025-12-08 and 2025-09-11 holidays, a Canary number
at 09:00 Madrid, next_common_opening of two zones, the Florida cap across campaigns (its
until an hour on) and a third call allowed. These add what they leave out.
"""

from __future__ import annotations

import datetime

import pytest
from django.utils import translation

from calls.models import Call
from campaigns import rules
from campaigns.eligibility import ReasonCode, eligibility_for, evaluate
from campaigns.models import Campaign, Contact, Partner
from campaigns.rules import Jurisdiction
from templates.models import CallTemplate
from tests.factories import CallFactory, CampaignFactory

MADRID = "+34912345678"
BARCELONA = "+34932123456"
LAS_PALMAS = "+34928123456"
SPANISH_MOBILE = "+34612345678"
NEW_YORK = "+12125550123"
LOS_ANGELES = "+12135550100"
MIAMI = "+13055550123"
ATLANTA = "+14045550123"
# An Idaho number whose prefix rings in Mountain (Boise) or Pacific time.
IDAHO = "+12082000123"
# International freephone: no country, no zone.
FREEPHONE = "+80012345678"


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def allows(
    moment: str | datetime.datetime, *, zone: str, phone: str, profile: str = "none", windows=None
) -> bool:
    at = utc(moment) if isinstance(moment, str) else moment
    return rules.window_allows(
        profile=profile, campaign_windows=windows, zone=zone, phone=phone, moment=at
    )


def opening(after: str, *, zone: str, phone: str, profile: str = "none", windows=None):
    return rules.next_opening(
        profile=profile, campaign_windows=windows, zone=zone, phone=phone, after=utc(after)
    )


@pytest.fixture(autouse=True)
def _english_in_madrid(settings):
    settings.TIME_ZONE = "Europe/Madrid"
    with translation.override("en"):
        yield


def build(*, phone: str, time_zone: str = "", profile: str = "es", **campaign_fields) -> Contact:
    """An unsaved contact of an unsaved running campaign (evaluate reads no database)."""
    partner = Partner(name="Acme")
    template = CallTemplate(partner=partner, name="T", greeting="Hola.", instructions="Hola.")
    campaign = Campaign(
        partner=partner,
        name="Edges",
        template=template,
        state=Campaign.State.RUNNING,
        compliance_profile=profile,
        **campaign_fields,
    )
    return Contact(campaign=campaign, phone=phone, time_zone=time_zone, variables={})


def check(contact: Contact, now: datetime.datetime, history=()):
    return evaluate(
        contact=contact,
        campaign=contact.campaign,
        now=now,
        history=list(history),
        blocked_by_dnc=False,
        live_call=False,
    )


# --- DST in Madrid: 2026-03-29 02:00 CET -> 03:00 CEST, 2026-10-25 03:00 CEST -> 02:00 CET


def test_window_allows_madrid_spring_forward_skipped_hour_never_opens_a_window_inside_it() -> None:
    # 02:15-02:45 does not exist on 2026-03-29: at 01:00Z the clock jumps from 02:00 CET to
    # 03:00 CEST, already past the window's end, so it does not open that day.
    inside_gap = {"sun": [["02:15", "02:45"]]}
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "windows": inside_gap}

    assert not allows("2026-03-29T00:59", **kwargs)  # 01:59 CET
    assert not allows("2026-03-29T01:00", **kwargs)  # 03:00 CEST
    assert opening("2026-03-29T00:00", **kwargs) == utc("2026-04-05T00:15")  # next Sunday, CEST


def test_window_allows_madrid_window_ending_inside_the_skipped_hour_closes_at_the_jump() -> None:
    ends_in_gap = {"sun": [["00:00", "02:30"]]}
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "windows": ends_in_gap}

    assert allows("2026-03-29T00:59", **kwargs)  # 01:59 CET
    assert not allows("2026-03-29T01:00", **kwargs)  # 03:00 CEST: past 02:30


def test_next_opening_madrid_window_starting_inside_the_skipped_hour_opens_at_the_jump() -> None:
    starts_in_gap = {"sun": [["02:30", "04:00"]]}
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "windows": starts_in_gap}

    assert opening("2026-03-28T23:00", **kwargs) == utc("2026-03-29T01:00")  # 03:00 CEST
    assert allows("2026-03-29T01:59", **kwargs)  # 03:59 CEST
    assert not allows("2026-03-29T02:00", **kwargs)  # 04:00 CEST


def test_window_allows_madrid_repeated_hour_opens_a_window_twice_by_the_wall_clock() -> None:
    # 02:00-03:00 happens twice on 2026-10-25: 00:00-01:00Z (CEST) and 01:00-02:00Z (CET)
    starts_in_repeat = {"sun": [["02:30", "04:00"]]}
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "windows": starts_in_repeat}

    assert not allows("2026-10-25T00:29", **kwargs)  # 02:29 CEST
    assert allows("2026-10-25T00:30", **kwargs)  # 02:30 CEST
    assert not allows("2026-10-25T01:00", **kwargs)  # 02:00 CET again: before 02:30
    assert not allows("2026-10-25T01:29", **kwargs)
    assert allows("2026-10-25T01:30", **kwargs)  # 02:30 CET
    assert allows("2026-10-25T02:59", **kwargs)  # 03:59 CET
    assert not allows("2026-10-25T03:00", **kwargs)  # 04:00 CET
    assert opening("2026-10-25T00:00", **kwargs) == utc("2026-10-25T00:30")
    assert opening("2026-10-25T01:00", **kwargs) == utc("2026-10-25T01:30")


def test_window_allows_madrid_window_ending_inside_the_repeated_hour() -> None:
    ends_in_repeat = {"sun": [["01:00", "02:30"]]}
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "windows": ends_in_repeat}

    assert allows("2026-10-25T00:29", **kwargs)  # 02:29 CEST
    assert not allows("2026-10-25T00:30", **kwargs)  # 02:30 CEST
    # The wall clock reads 02:00 again at 01:00Z: inside 01:00-02:30 once more.
    assert allows("2026-10-25T01:00", **kwargs)
    assert not allows("2026-10-25T01:30", **kwargs)  # 02:30 CET
    assert opening("2026-10-25T00:30", **kwargs) == utc("2026-10-25T01:00")


def test_next_opening_spain_across_the_2026_spring_forward_weekend() -> None:
    # Friday 2026-03-27 21:00 CET closes; Monday 30 March 09:00 is CEST (07:00Z)
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "es"}

    assert allows("2026-03-27T19:59", **kwargs)  # 20:59 CET
    assert not allows("2026-03-27T20:00", **kwargs)  # 21:00 CET
    assert opening("2026-03-27T20:00", **kwargs) == utc("2026-03-30T07:00")
    assert not allows("2026-03-30T06:59", **kwargs)
    assert allows("2026-03-30T18:59", **kwargs)  # 20:59 CEST
    assert not allows("2026-03-30T19:00", **kwargs)  # 21:00 CEST


def test_next_opening_spain_across_the_2026_fall_back_weekend() -> None:
    # Friday 2026-10-23 21:00 CEST closes; Monday 26 October 09:00 is CET (08:00Z)
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "es"}

    assert opening("2026-10-23T19:00", **kwargs) == utc("2026-10-26T08:00")
    assert not allows("2026-10-26T07:59", **kwargs)
    assert allows("2026-10-26T19:59", **kwargs)  # 20:59 CET
    assert not allows("2026-10-26T20:00", **kwargs)


# --- DST in the US: 2026-03-08 and 2026-11-01


@pytest.mark.parametrize(
    ("zone", "phone", "opens", "closes"),
    [
        # spring forward: 08:00 EDT = 12:00Z, 21:00 EDT = 01:00Z
        ("America/New_York", NEW_YORK, "2026-03-08T12:00", "2026-03-09T01:00"),
        # 08:00 PDT = 15:00Z, 21:00 PDT = 04:00Z
        ("America/Los_Angeles", LOS_ANGELES, "2026-03-08T15:00", "2026-03-09T04:00"),
        # fall back: 08:00 EST = 13:00Z, 21:00 EST = 02:00Z
        ("America/New_York", NEW_YORK, "2026-11-01T13:00", "2026-11-02T02:00"),
        # 08:00 PST = 16:00Z, 21:00 PST = 05:00Z
        ("America/Los_Angeles", LOS_ANGELES, "2026-11-01T16:00", "2026-11-02T05:00"),
    ],
)
def test_window_allows_us_edges_on_the_2026_dst_days(zone, phone, opens, closes) -> None:
    # US-1: 08:00-21:00 local on the day the clocks change
    kwargs = {"zone": zone, "phone": phone, "profile": "us"}
    minute = datetime.timedelta(minutes=1)

    assert not allows(utc(opens) - minute, **kwargs)
    assert allows(opens, **kwargs)
    assert allows(utc(closes) - minute, **kwargs)
    assert not allows(closes, **kwargs)
    # from the middle of the night before, in the hour that is skipped or repeated
    night = opens[:10] + "T06:30" if zone == "America/New_York" else opens[:10] + "T09:30"
    assert opening(night, **kwargs) == utc(opens)


def test_next_opening_us_from_the_evening_before_a_dst_change() -> None:
    # Saturday 2026-10-31 21:00 EDT (01:00Z) closes; Sunday opens at 08:00 EST (13:00Z)
    kwargs = {"zone": "America/New_York", "phone": NEW_YORK, "profile": "us"}

    assert opening("2026-11-01T01:00", **kwargs) == utc("2026-11-01T13:00")
    # Saturday 2026-03-07 21:00 EST (02:00Z); Sunday opens at 08:00 EDT (12:00Z)
    assert opening("2026-03-08T02:00", **kwargs) == utc("2026-03-08T12:00")


def test_window_allows_new_york_window_ending_inside_the_skipped_hour() -> None:
    # 02:00 EST jumps to 03:00 EDT at 07:00Z on 2026-03-08; the window ends at 02:30
    ends_in_gap = {"sun": [["01:00", "02:30"]]}
    kwargs = {"zone": "America/New_York", "phone": NEW_YORK, "windows": ends_in_gap}

    assert allows("2026-03-08T06:59", **kwargs)  # 01:59 EST
    assert not allows("2026-03-08T07:00", **kwargs)  # 03:00 EDT


def test_next_opening_los_angeles_window_starting_inside_the_repeated_hour() -> None:
    # 01:00-02:00 happens twice on 2026-11-01: 08:00-09:00Z (PDT) and 09:00-10:00Z (PST)
    starts_in_repeat = {"sun": [["01:30", "03:00"]]}
    kwargs = {"zone": "America/Los_Angeles", "phone": LOS_ANGELES, "windows": starts_in_repeat}

    assert opening("2026-11-01T07:00", **kwargs) == utc("2026-11-01T08:30")  # 01:30 PDT
    assert not allows("2026-11-01T09:15", **kwargs)  # 01:15 PST
    assert opening("2026-11-01T09:00", **kwargs) == utc("2026-11-01T09:30")  # 01:30 PST
    assert not allows("2026-11-01T11:00", **kwargs)  # 03:00 PST


# --- Holidays


def test_evaluate_spanish_national_holiday_2026_12_08_blocks_every_number() -> None:
    # Tuesday 2026-12-08, Immaculate Conception, 10:00 CET
    now = utc("2026-12-08T09:00")

    for phone, zone in ((MADRID, ""), (BARCELONA, ""), (SPANISH_MOBILE, "Europe/Madrid")):
        result = check(build(phone=phone, time_zone=zone), now)
        assert result.codes == [ReasonCode.OUTSIDE_WINDOW], phone
        assert result.reasons[0].message == (
            "outside the calling window in Europe/Madrid (2026-12-08 10:00 there, a holiday)"
        )
        assert result.next_possible_at == utc("2026-12-09T08:00")  # Wednesday 09:00


def test_evaluate_catalan_holiday_2026_09_11_blocks_barcelona_not_madrid() -> None:
    # Friday 2026-09-11, National Day of Catalonia: the community comes from the province
    now = utc("2026-09-11T08:00")  # 10:00 CEST
    assert rules.jurisdiction_for(BARCELONA) == Jurisdiction("ES", "CT")
    assert rules.jurisdiction_for(MADRID) == Jurisdiction("ES", "MD")

    barcelona = check(build(phone=BARCELONA), now)
    madrid = check(build(phone=MADRID), now)

    assert barcelona.codes == [ReasonCode.OUTSIDE_WINDOW]
    assert "a holiday" in barcelona.reasons[0].message
    # the weekend follows: Monday 14 September 09:00 CEST
    assert barcelona.next_possible_at == utc("2026-09-14T07:00")
    assert madrid.dialable


def test_evaluate_madrid_holiday_monday_after_constitution_day_2026() -> None:
    # 2026-12-06 is a Sunday: Madrid (not Catalonia) moves it to Monday 7 December
    now = utc("2026-12-07T09:00")

    madrid = check(build(phone=MADRID), now)

    assert madrid.codes == [ReasonCode.OUTSIDE_WINDOW]
    # Tuesday 8 is the national holiday: Wednesday 9 at 09:00 CET
    assert madrid.next_possible_at == utc("2026-12-09T08:00")
    assert check(build(phone=BARCELONA), now).dialable
    # a mobile's community is not known: only national holidays apply to it
    assert check(build(phone=SPANISH_MOBILE, time_zone="Europe/Madrid"), now).dialable


def test_is_holiday_ignores_a_spanish_community_for_a_foreign_number() -> None:
    # a Spanish-profile campaign calling New York: Spain's national calendar, no community
    assert rules.is_holiday(profile="es", phone=NEW_YORK, day=datetime.date(2026, 12, 8))
    assert not rules.is_holiday(profile="es", phone=NEW_YORK, day=datetime.date(2026, 9, 11))
    assert not rules.is_holiday(profile="us", phone=NEW_YORK, day=datetime.date(2026, 12, 25))


# --- Canary Islands time


def test_evaluate_las_palmas_contact_at_0900_madrid_is_0800_local_blocked() -> None:
    # Monday 2026-03-30, after both zones moved to summer time: 07:00Z = 09:00 CEST = 08:00 WEST
    contact = build(phone=LAS_PALMAS)

    result = check(contact, utc("2026-03-30T07:00"))

    assert [r.message for r in result.reasons] == [
        "outside the calling window in Atlantic/Canary (2026-03-30 08:00 there)"
    ]
    assert result.next_possible_at == utc("2026-03-30T08:00")  # 09:00 in Las Palmas
    assert check(contact, utc("2026-03-30T19:59")).dialable  # 20:59 WEST (21:59 Madrid)
    assert not check(contact, utc("2026-03-30T20:00")).dialable


def test_evaluate_spanish_mobile_without_zone_is_called_only_when_madrid_and_canary_allow() -> None:
    contact = build(phone=SPANISH_MOBILE)
    assert rules.jurisdiction_for(SPANISH_MOBILE) == Jurisdiction("ES", None)

    morning = check(contact, utc("2026-11-30T08:30"))  # 09:30 Madrid, 08:30 Canary
    evening = check(contact, utc("2026-11-30T20:30"))  # 21:30 Madrid, 20:30 Canary

    assert [r.message for r in morning.reasons] == [
        "outside the calling window in Atlantic/Canary (2026-11-30 08:30 there)"
    ]
    assert morning.next_possible_at == utc("2026-11-30T09:00")
    assert [r.message for r in evening.reasons] == [
        "outside the calling window in Europe/Madrid (2026-11-30 21:30 there)"
    ]
    # Tuesday 1 December: 09:00 in Las Palmas, 10:00 in Madrid
    assert evening.next_possible_at == utc("2026-12-01T09:00")
    assert check(contact, utc("2026-11-30T09:00")).dialable
    assert check(contact, utc("2026-11-30T19:59")).dialable


def test_evaluate_canary_holiday_blocks_las_palmas_only() -> None:
    # Day of the Canary Islands is Saturday 2026-05-30 (a weekend anyway); the table's
    # community is what decides: a Canary number reads the CN calendar
    assert rules.is_holiday(profile="es", phone=LAS_PALMAS, day=datetime.date(2026, 5, 30))
    assert not rules.is_holiday(profile="es", phone=MADRID, day=datetime.date(2026, 5, 30))


# --- Uncertain and unknown zones


def test_evaluate_us_number_ringing_in_two_zones_keeps_to_both_windows() -> None:
    # Idaho's 208-200 rings in Mountain or Pacific time: 08:00 Pacific to 21:00 Mountain
    contact = build(phone=IDAHO, profile="us")

    early = check(contact, utc("2026-01-12T15:30"))  # 08:30 MST, 07:30 PST
    late = check(contact, utc("2026-01-13T04:30"))  # 21:30 MST, 20:30 PST

    assert [r.message for r in early.reasons] == [
        "outside the calling window in America/Los_Angeles (2026-01-12 07:30 there)"
    ]
    assert early.next_possible_at == utc("2026-01-12T16:00")  # 08:00 PST
    assert [r.message for r in late.reasons] == [
        "outside the calling window in America/Boise (2026-01-12 21:30 there)"
    ]
    assert late.next_possible_at == utc("2026-01-13T16:00")
    assert check(contact, utc("2026-01-12T16:00")).dialable
    assert check(contact, utc("2026-01-13T03:59")).dialable  # 20:59 MST


def test_evaluate_number_with_no_zone_at_all_is_never_called() -> None:
    result = check(build(phone=FREEPHONE, profile="us"), utc("2026-01-12T18:00"))

    assert result.codes == [ReasonCode.NO_TIME_ZONE]
    assert result.dialable is False and result.next_possible_at is None


# --- Florida: 8 p.m. end, and 3 calls in 24 hours


def test_evaluate_florida_ends_at_2000_local_across_dst() -> None:
    florida = build(phone=MIAMI, profile="us")
    georgia = build(phone=ATLANTA, profile="us")

    # Sunday 2026-03-08, after spring forward: 20:00 EDT is 00:00Z
    assert check(florida, utc("2026-03-08T23:59")).dialable
    late = check(florida, utc("2026-03-09T00:00"))
    assert late.codes == [ReasonCode.OUTSIDE_WINDOW]
    assert late.next_possible_at == utc("2026-03-09T12:00")  # 08:00 EDT
    assert check(georgia, utc("2026-03-09T00:00")).dialable  # federal 21:00
    # Sunday 2026-11-01, after fall back: 20:00 EST is 01:00Z
    assert check(florida, utc("2026-11-02T00:59")).dialable
    assert not check(florida, utc("2026-11-02T01:00")).dialable


def test_evaluate_florida_cap_counts_calls_from_any_caller_number_and_reopens_at_24_hours() -> None:
    # three calls, the first at 10:00 EST on Monday 2026-01-12
    first = utc("2026-01-12T15:00")
    history = [first, first + datetime.timedelta(hours=1), first + datetime.timedelta(hours=2)]
    contact = build(phone=MIAMI, profile="us", frequency_cap_calls=10)

    blocked = check(contact, first + datetime.timedelta(hours=23, minutes=59), history)
    at_24_hours = check(contact, first + datetime.timedelta(hours=24), history)

    assert blocked.codes == [ReasonCode.FREQUENCY_CAP]
    assert [r.until for r in blocked.reasons] == [first + datetime.timedelta(hours=24)]
    assert blocked.next_possible_at == first + datetime.timedelta(hours=24)
    assert at_24_hours.dialable
    # the fourth within 24 h of the second is blocked again until 24 h after the second
    fourth = [*history, first + datetime.timedelta(hours=24)]
    again = check(contact, first + datetime.timedelta(hours=24, minutes=1), fourth)
    assert again.next_possible_at == first + datetime.timedelta(hours=25)


def test_evaluate_florida_cap_until_waits_for_the_window_when_it_clears_at_night() -> None:
    # three calls from 19:00 EST: the cap clears at 19:00 the next day, 30 min before 20:00
    first = utc("2026-01-13T00:00")  # Monday 19:00 EST
    history = [first + datetime.timedelta(minutes=minutes) for minutes in (0, 20, 40)]
    contact = build(phone=MIAMI, profile="us", frequency_cap_calls=10)

    result = check(contact, first + datetime.timedelta(hours=2), history)  # 21:00 EST

    assert result.codes == [ReasonCode.FREQUENCY_CAP, ReasonCode.OUTSIDE_WINDOW]
    assert result.next_possible_at == first + datetime.timedelta(hours=24)


@pytest.fixture
def florida_campaigns(partner, call_template) -> tuple[Campaign, Campaign]:
    def make(name: str, caller: str) -> Campaign:
        return CampaignFactory(
            partner=partner,
            name=name,
            template=call_template,
            state="running",
            compliance_profile="us",
            frequency_cap_calls=10,
            caller_number=caller,
        )

    return make("Florida A", "+13055550100"), make("Florida B", "+13055550199")


def placed_call(contact: Contact, *, at: datetime.datetime, from_number: str) -> Call:
    call = CallFactory(
        campaign=contact.campaign,
        contact=contact,
        attempt=contact.calls.count() + 1,
        status="completed",
        from_number=from_number,
        to_number=contact.phone,
    )
    Call.objects.filter(pk=call.pk).update(created_at=at)
    return call


@pytest.mark.django_db
def test_eligibility_for_florida_fourth_call_blocked_regardless_of_the_number_used(
    florida_campaigns,
) -> None:
    # given: three calls in 24 h to one Miami number, from two caller numbers, in two of
    # the partner's campaigns; the first at 10:00 EST on Monday 2026-01-12
    first_campaign, second_campaign = florida_campaigns
    first_at = utc("2026-01-12T15:00")
    one = Contact.objects.create(
        campaign=first_campaign, phone=MIAMI, time_zone="", variables={"first_name": "Ana"}
    )
    two = Contact.objects.create(
        campaign=second_campaign, phone=MIAMI, time_zone="", variables={"first_name": "Ana"}
    )
    placed_call(one, at=first_at, from_number="+13055550100")
    placed_call(one, at=first_at + datetime.timedelta(hours=4), from_number="+13055550100")
    placed_call(two, at=first_at + datetime.timedelta(hours=8), from_number="+13055550199")

    # when: the fourth attempt, from the second campaign's number
    just_before = eligibility_for(contact=two, now=first_at + datetime.timedelta(hours=23))
    at_24_hours = eligibility_for(contact=two, now=first_at + datetime.timedelta(hours=24))

    # then
    assert just_before.codes == [ReasonCode.FREQUENCY_CAP]
    assert just_before.reasons[0].message == (
        "3 calls to +13055550123 in the last 24 hours; US-1 (Florida) allows 3"
    )
    assert just_before.reasons[0].until == first_at + datetime.timedelta(hours=24)
    assert just_before.next_possible_at == first_at + datetime.timedelta(hours=24)
    assert at_24_hours.dialable
