from __future__ import annotations

import datetime
import re
from collections import Counter

import pytest
from django.utils import translation

from campaigns import rules
from campaigns.rules import Jurisdiction

LOS_ANGELES = "+12135550100"
NEW_YORK = "+12125550123"
MIAMI = "+13055550123"
ATLANTA = "+14045550123"
BIRMINGHAM_AL = "+12055550123"
MADRID = "+34912345678"
BARCELONA = "+34932123456"
LAS_PALMAS = "+34928123456"
SPANISH_MOBILE = "+34612345678"


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def allows(moment: str, *, zone: str, phone: str, profile: str = "us", windows=None) -> bool:
    return rules.window_allows(
        profile=profile, campaign_windows=windows, zone=zone, phone=phone, moment=utc(moment)
    )


def opening(after: str, *, zone: str, phone: str, profile: str = "us", windows=None):
    return rules.next_opening(
        profile=profile, campaign_windows=windows, zone=zone, phone=phone, after=utc(after)
    )


def test_window_allows_us_calls_until_2100_local_time() -> None:
    # US-1: 04:59Z is 20:59 PST, 05:00Z is 21:00 PST
    assert allows("2025-01-10T04:59", zone="America/Los_Angeles", phone=LOS_ANGELES)
    assert not allows("2025-01-10T05:00", zone="America/Los_Angeles", phone=LOS_ANGELES)
    assert not allows("2025-01-10T15:59", zone="America/Los_Angeles", phone=LOS_ANGELES)
    assert allows("2025-01-10T16:00", zone="America/Los_Angeles", phone=LOS_ANGELES)


def test_window_allows_us_edges_on_spring_forward_day() -> None:
    # 2025-03-09: clocks go from 02:00 PST to 03:00 PDT; 08:00 PDT is 15:00Z
    zone = "America/Los_Angeles"

    assert not allows("2025-03-09T14:59", zone=zone, phone=LOS_ANGELES)
    assert allows("2025-03-09T15:00", zone=zone, phone=LOS_ANGELES)
    assert allows("2025-03-10T03:59", zone=zone, phone=LOS_ANGELES)
    assert not allows("2025-03-10T04:00", zone=zone, phone=LOS_ANGELES)
    assert opening("2025-03-09T05:00", zone=zone, phone=LOS_ANGELES) == utc("2025-03-09T15:00")


def test_window_allows_us_edges_on_fall_back_day() -> None:
    # 2025-11-02: clocks go from 02:00 PDT back to 01:00 PST; 08:00 PST is 16:00Z
    zone = "America/Los_Angeles"

    assert not allows("2025-11-02T15:59", zone=zone, phone=LOS_ANGELES)
    assert allows("2025-11-02T16:00", zone=zone, phone=LOS_ANGELES)
    assert allows("2025-11-03T04:59", zone=zone, phone=LOS_ANGELES)
    assert not allows("2025-11-03T05:00", zone=zone, phone=LOS_ANGELES)
    assert opening("2025-11-02T05:00", zone=zone, phone=LOS_ANGELES) == utc("2025-11-02T16:00")


def test_next_opening_of_a_window_starting_in_the_spring_forward_gap_is_the_change() -> None:
    # 02:30 does not exist in New York on 2025-03-09: the window opens at 03:00 EDT (07:00Z)
    windows = {"sun": [["02:30", "04:00"]]}
    kwargs = {"zone": "America/New_York", "phone": NEW_YORK, "profile": "none"}

    assert opening("2025-03-09T05:00", windows=windows, **kwargs) == utc("2025-03-09T07:00")
    assert not allows("2025-03-09T06:59", windows=windows, **kwargs)
    assert allows("2025-03-09T07:59", windows=windows, **kwargs)
    assert not allows("2025-03-09T08:00", windows=windows, **kwargs)


def test_next_opening_finds_both_occurrences_of_a_repeated_hour() -> None:
    # 01:30-02:00 happens twice in New York on 2025-11-02: at 05:30Z (EDT) and 06:30Z (EST)
    windows = {"sun": [["01:30", "02:00"]]}
    kwargs = {"zone": "America/New_York", "phone": NEW_YORK, "profile": "none"}

    assert opening("2025-11-02T05:00", windows=windows, **kwargs) == utc("2025-11-02T05:30")
    assert not allows("2025-11-02T06:15", windows=windows, **kwargs)  # 01:15 EST
    assert opening("2025-11-02T06:00", windows=windows, **kwargs) == utc("2025-11-02T06:30")
    assert opening("2025-11-02T07:00", windows=windows, **kwargs) == utc("2025-11-09T06:30")


def test_window_allows_florida_until_2000_while_georgia_until_2100() -> None:
    # 2025-01-11T01:30Z is 20:30 EST in both states
    assert rules.jurisdiction_for(MIAMI) == Jurisdiction("US", "FL")

    assert not allows("2025-01-11T01:30", zone="America/New_York", phone=MIAMI)
    assert allows("2025-01-11T01:30", zone="America/New_York", phone=ATLANTA)


def test_window_allows_alabama_no_calls_on_sunday() -> None:
    # Sunday 2025-01-12 12:00 CST, Monday 12:00 CST
    assert not allows("2025-01-12T18:00", zone="America/Chicago", phone=BIRMINGHAM_AL)
    assert allows("2025-01-13T18:00", zone="America/Chicago", phone=BIRMINGHAM_AL)
    assert opening("2025-01-12T18:00", zone="America/Chicago", phone=BIRMINGHAM_AL) == utc(
        "2025-01-13T14:00"
    )


def test_next_common_opening_of_unknown_us_zone_is_8am_pacific_to_9pm_eastern() -> None:
    zones = ["America/New_York", "America/Los_Angeles"]

    def common(after: str):
        return rules.next_common_opening(
            profile="us", campaign_windows=None, zones=zones, phone=NEW_YORK, after=utc(after)
        )

    assert common("2025-01-10T14:00") == utc("2025-01-10T16:00")  # 08:00 PST
    assert common("2025-01-11T01:59") == utc("2025-01-11T01:59")  # 20:59 EST
    assert common("2025-01-11T02:00") == utc("2025-01-11T16:00")  # 21:00 EST: next morning


@pytest.mark.parametrize(
    ("moment", "allowed"),
    [
        ("2025-03-08T09:00", False),  # Saturday 10:00
        ("2025-03-09T11:00", False),  # Sunday 12:00
        ("2025-03-10T07:59", False),  # Monday 08:59
        ("2025-03-10T08:00", True),  # Monday 09:00
        ("2025-03-10T19:59", True),  # Monday 20:59
        ("2025-03-10T20:00", False),  # Monday 21:00
    ],
)
def test_window_allows_spain_monday_to_friday_0900_to_2100(moment, allowed) -> None:
    # ES-1
    assert allows(moment, zone="Europe/Madrid", phone=MADRID, profile="es") is allowed


def test_window_allows_no_calls_on_a_spanish_national_holiday() -> None:
    # Monday 2025-12-08, Immaculate Conception: next opening is Tuesday 09:00 CET
    kwargs = {"zone": "Europe/Madrid", "phone": SPANISH_MOBILE, "profile": "es"}

    assert rules.is_holiday(profile="es", phone=SPANISH_MOBILE, day=datetime.date(2025, 12, 8))
    assert not allows("2025-12-08T09:00", **kwargs)
    assert opening("2025-12-05T20:00", **kwargs) == utc("2025-12-09T08:00")
    assert opening("2025-12-08T09:00", **kwargs) == utc("2025-12-09T08:00")


def test_window_allows_regional_holiday_only_in_its_community() -> None:
    # Thursday 2025-09-11, National Day of Catalonia, 10:00 CEST
    assert rules.jurisdiction_for(BARCELONA) == Jurisdiction("ES", "CT")

    assert not allows("2025-09-11T08:00", zone="Europe/Madrid", phone=BARCELONA, profile="es")
    assert allows("2025-09-11T08:00", zone="Europe/Madrid", phone=MADRID, profile="es")


def test_next_opening_spain_across_the_spring_forward_weekend() -> None:
    # Friday 2025-03-28 21:00 CET is closed; Monday 09:00 is CEST (07:00Z) after 2025-03-30
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "es"}

    assert opening("2025-03-28T20:00", **kwargs) == utc("2025-03-31T07:00")
    assert not allows("2025-03-31T06:59", **kwargs)


def test_next_opening_spain_across_the_fall_back_weekend() -> None:
    # Friday 2025-10-24 21:00 CEST is closed; Monday 09:00 is CET (08:00Z) after 2025-10-26
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "es"}

    assert opening("2025-10-24T19:00", **kwargs) == utc("2025-10-27T08:00")
    assert not allows("2025-10-27T07:59", **kwargs)


def test_next_opening_spain_dst_gap_and_repeated_hour() -> None:
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "none"}

    # 2025-03-30: 02:00 CET jumps to 03:00 CEST at 01:00Z
    gap = {"sun": [["02:30", "03:30"]]}
    assert opening("2025-03-30T00:00", windows=gap, **kwargs) == utc("2025-03-30T01:00")
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:15 happens twice
    repeated = {"sun": [["02:15", "02:45"]]}
    assert opening("2025-10-26T00:00", windows=repeated, **kwargs) == utc("2025-10-26T00:15")
    assert opening("2025-10-26T00:45", windows=repeated, **kwargs) == utc("2025-10-26T01:15")


def test_window_allows_canary_number_an_hour_after_madrid() -> None:
    # 2025-03-10T08:00Z is 09:00 in Madrid but 08:00 in Las Palmas
    assert rules.jurisdiction_for(LAS_PALMAS) == Jurisdiction("ES", "CN")

    assert not allows("2025-03-10T08:00", zone="Atlantic/Canary", phone=LAS_PALMAS, profile="es")
    assert allows("2025-03-10T09:00", zone="Atlantic/Canary", phone=LAS_PALMAS, profile="es")


def test_next_common_opening_waits_for_every_candidate_zone() -> None:
    # a Spanish mobile may be on the Canaries: 09:00 Madrid is too early there
    result = rules.next_common_opening(
        profile="es",
        campaign_windows=None,
        zones=["Atlantic/Canary", "Europe/Madrid"],
        phone=SPANISH_MOBILE,
        after=utc("2025-03-10T08:00"),
    )

    assert result == utc("2025-03-10T09:00")  # 10:00 Madrid, 09:00 Canary


def test_window_allows_campaign_windows_narrow_the_profile() -> None:
    windows = {"mon": [["10:00", "12:00"]], "wed": [["16:00", "18:00"]]}
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "es", "windows": windows}

    assert not allows("2025-03-10T08:30", **kwargs)  # Monday 09:30
    assert allows("2025-03-10T09:00", **kwargs)  # Monday 10:00
    assert not allows("2025-03-10T11:00", **kwargs)  # Monday 12:00
    assert not allows("2025-03-11T09:00", **kwargs)  # Tuesday: not named
    assert opening("2025-03-10T11:00", **kwargs) == utc("2025-03-12T15:00")  # Wednesday 16:00


def test_window_allows_campaign_window_cannot_widen_the_profile_at_run_time() -> None:
    # saved without validation: Saturday stays closed under ES-1
    windows = {"sat": [["10:00", "12:00"]]}

    assert not allows(
        "2025-03-08T09:30", zone="Europe/Madrid", phone=MADRID, profile="es", windows=windows
    )
    assert (
        opening(
            "2025-03-08T09:30", zone="Europe/Madrid", phone=MADRID, profile="es", windows=windows
        )
        is None
    )


def test_window_allows_profile_none_at_any_time() -> None:
    assert allows("2025-12-25T03:00", zone="Europe/Madrid", phone=MADRID, profile="none")


def test_next_opening_is_minute_precise() -> None:
    kwargs = {"zone": "Europe/Madrid", "phone": MADRID, "profile": "es"}
    inside = utc("2025-03-10T10:15").replace(second=42)

    assert opening("2025-03-10T07:59:30", **kwargs) == utc("2025-03-10T08:00")
    assert (
        rules.next_opening(
            profile="es", campaign_windows=None, zone="Europe/Madrid", phone=MADRID, after=inside
        )
        == inside
    )


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        (MIAMI, Jurisdiction("US", "FL")),
        ("+17865550123", Jurisdiction("US", "FL")),
        ("+18505550123", Jurisdiction("US", "FL")),  # the panhandle, partly Central time
        (ATLANTA, Jurisdiction("US", "GA")),
        (LOS_ANGELES, Jurisdiction("US", "CA")),
        ("+12015550123", Jurisdiction("US", "NJ")),
        ("+15045551234", Jurisdiction("US", "LA")),
        ("+18005550123", Jurisdiction("US", None)),  # toll-free: no state
        ("+16475550123", Jurisdiction("CA", None)),  # Ontario, Canada
    ],
)
def test_jurisdiction_for_reads_the_us_state_from_the_area_code(phone, expected) -> None:
    assert rules.jurisdiction_for(phone) == expected


@pytest.mark.parametrize(
    ("phone", "community"),
    [(MADRID, "MD"), (BARCELONA, "CT"), (LAS_PALMAS, "CN"), ("+34954123456", "AN")],
)
def test_jurisdiction_for_reads_the_spanish_community_from_the_province(phone, community) -> None:
    assert rules.jurisdiction_for(phone) == Jurisdiction("ES", community)


def test_jurisdiction_for_spanish_mobile_has_no_community() -> None:
    assert rules.jurisdiction_for(SPANISH_MOBILE) == Jurisdiction("ES", None)


def test_frequency_caps_florida_three_calls_in_24_hours() -> None:
    assert [(cap.calls, cap.hours) for cap in rules.frequency_caps(profile="us", phone=MIAMI)] == [
        (3, 24)
    ]
    assert rules.frequency_caps(profile="us", phone=ATLANTA) == ()
    assert rules.frequency_caps(profile="es", phone=MIAMI) == ()


@translation.override("en")
def test_calling_window_problems_name_the_day_and_the_value() -> None:
    problems = rules.calling_window_problems(
        profile="es",
        calling_windows={
            "mon": [["25:00", "26:00"], ["08:00", "10:00"], ["12:00", "11:00"]],
            "sat": [["10:00", "12:00"]],
            "someday": [],
            "tue": "09:00-10:00",
        },
    )

    assert [problem.messages[0] for problem in problems] == [
        "Calling window “25:00-26:00” on mon is not a valid HH:MM-HH:MM interval.",
        "Calling window “08:00-10:00” on mon reaches outside 09:00-21:00, the hours the Spain "
        "rules allow; campaign windows can only narrow them.",
        "Calling window “12:00-11:00” on mon is not a valid HH:MM-HH:MM interval.",
        "Calling window “10:00-12:00” on sat is not allowed: the Spain rules allow no calls on "
        "sat.",
        "“someday” is not a weekday; use mon, tue, wed, thu, fri, sat or sun.",
        'Calling windows on tue must be a list of ["HH:MM", "HH:MM"] intervals.',
    ]


def test_calling_window_problems_accept_narrowing_windows_and_empty() -> None:
    windows = {"mon": [["09:00", "14:00"], ["16:00", "21:00"]], "fri": [["09:00", "13:00"]]}

    assert rules.calling_window_problems(profile="es", calling_windows=windows) == []
    assert rules.calling_window_problems(profile="es", calling_windows={}) == []
    assert (
        rules.calling_window_problems(profile="none", calling_windows={"sun": [["00:00", "24:00"]]})
        == []
    )


def test_calling_window_problems_refuse_windows_without_any_time() -> None:
    problems = rules.calling_window_problems(profile="es", calling_windows={"mon": []})

    assert [problem.code for problem in problems] == ["closed_calling_windows"]


def test_rules_version_names_the_data_and_the_libraries() -> None:
    assert rules.RULES_VERSION.startswith(rules.RULES_DATA_VERSION)
    assert "+holidays-" in rules.RULES_VERSION
    assert "+phonenumbers-" in rules.RULES_VERSION


# The numbering tables in rules.py are generated from phonenumbers' geocoding data (too big
# to load in every process); these tests say when an upgrade of phonenumbers disagrees.

# fmt: off
US_STATE_NAMES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "Washington State": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC",
}
SPANISH_PROVINCE_COMMUNITIES = {
    "Almería": "AN", "Cádiz": "AN", "Cordova": "AN", "Granada": "AN", "Huelva": "AN",
    "Jaén": "AN", "Málaga": "AN", "Seville": "AN", "Huesca": "AR", "Teruel": "AR",
    "Zaragoza": "AR", "Asturias": "AS", "Balearic Islands": "IB", "Las Palmas": "CN",
    "Tenerife": "CN", "Cantabria": "CB", "Ávila": "CL", "Burgos": "CL", "León": "CL",
    "Palencia": "CL", "Salamanca": "CL", "Segovia": "CL", "Soria": "CL", "Valladolid": "CL",
    "Zamora": "CL", "Albacete": "CM", "Ciudad Real": "CM", "Cuenca": "CM", "Guadalajara": "CM",
    "Toledo": "CM", "Barcelona": "CT", "Girona": "CT", "Lleida": "CT", "Tarragona": "CT",
    "Badajoz": "EX", "Cáceres": "EX", "A Coruña": "GA", "Lugo": "GA", "Ourense": "GA",
    "Pontevedra": "GA", "Madrid": "MD", "Murcia": "MC", "Navarre": "NC", "Araba": "PV",
    "Bizkaia": "PV", "Guipúzcoa": "PV", "La Rioja": "RI", "Alicante": "VC", "Castellón": "VC",
    "Valencia": "VC",
}
# fmt: on


def test_us_area_code_table_agrees_with_phonenumbers_data() -> None:
    from phonenumbers.geodata import GEOCODE_DATA

    # every listed prefix of an area code votes for the state it names ("Florida", "Miami, FL")
    votes: dict[str, Counter] = {}
    for prefix, names in GEOCODE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4:
            name = names.get("en", "")
            state = name[-2:] if re.fullmatch(r".+, [A-Z]{2}", name) else US_STATE_NAMES.get(name)
            if state in US_STATE_NAMES.values():
                votes.setdefault(prefix[1:4], Counter())[state] += 1
    derived = {area: counts.most_common(1)[0][0] for area, counts in votes.items()}

    assert derived == rules._US_AREA_CODE_STATES


def test_spanish_prefix_table_agrees_with_phonenumbers_data() -> None:
    from phonenumbers.geodata import GEOCODE_DATA

    listed = {
        prefix[2:]: SPANISH_PROVINCE_COMMUNITIES[names["en"]]
        for prefix, names in GEOCODE_DATA.items()
        if prefix.startswith("34")
    }

    for prefix, community in listed.items():
        found = (
            rules._ES_PREFIX_COMMUNITIES.get(prefix[:3]) or rules._ES_PREFIX_COMMUNITIES[prefix[:2]]
        )
        assert found == community, prefix
    assert all(
        any(listed_prefix.startswith(prefix) for listed_prefix in listed)
        for prefix in rules._ES_PREFIX_COMMUNITIES
    )
