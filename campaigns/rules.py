"""Calling rules as versioned data: when a number may be called under a compliance profile.

Each profile and local override below names its rule id (the table in
``docs/architecture.md``, *Calling rules and eligibility*) and its source. Hours are local
wall-clock intervals ``[start, end)`` in the callee's time zone ("21:00" ends before
21:00:00; "24:00" is the end of the day). A state or campaign window only ever narrows a
profile: every applicable set of hours is intersected, and a holiday closes the whole day.

Any change to the data below bumps ``RULES_DATA_VERSION``; ``RULES_VERSION`` also names the
versions of the holiday calendars and the numbering plan data that decisions depend on, so an
audit can tell exactly which rules allowed a call.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

RULES_DATA_VERSION = "2026.11.1"
RULES_VERSION = (
    f"{RULES_DATA_VERSION}+holidays-{holidays.__version__}+phonenumbers-{phonenumbers.__version__}"
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead next_opening looks before saying "never" (a year plus slack for holidays).
HORIZON = datetime.timedelta(days=400)

PROFILE_US = "us"
PROFILE_ES = "es"
PROFILE_NONE = "none"

Interval = tuple[int, int]  # minutes since local midnight, [start, end)
Week = Mapping[str, tuple[Interval, ...]]  # weekday -> sorted, disjoint intervals


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``calls`` calls to one number in any ``hours`` hours."""

    calls: int
    hours: int
    rule: str


@dataclass(frozen=True)
class LocalRule:
    """A stricter rule for part of a profile's territory (a US state)."""

    rule: str
    source: str
    hours: Week | None = None
    frequency_cap: FrequencyCap | None = None
    verified: bool = True  # False: copied from a secondary source, re-check before relying on it


@dataclass(frozen=True)
class Profile:
    """A jurisdiction's calling hours, holidays and local overrides."""

    code: str
    name: str
    rule: str
    source: str
    hours: Week
    holiday_country: str | None = None
    local_rules: Mapping[str, LocalRule] = field(default_factory=dict)


def _minutes(value: str, *, end: bool = False) -> int | None:
    """Minutes since midnight for "HH:MM" ("24:00" only as an end); None when invalid."""
    if not isinstance(value, str):
        return None
    if end and value == "24:00":
        return 24 * 60
    match = _HH_MM.fullmatch(value)
    if match is None:
        return None
    return int(match[1]) * 60 + int(match[2])


_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _interval(text: str) -> Interval:
    start, end = (_minutes(part, end=index == 1) for index, part in enumerate(text.split("-")))
    assert start is not None and end is not None and start < end, text
    return start, end


def _week(hours: str | None, **days: str | None) -> dict[str, tuple[Interval, ...]]:
    """Every day ``hours`` ("HH:MM-HH:MM"; None: closed), except the ``days`` named."""
    unknown = set(days) - set(WEEKDAYS)
    assert not unknown, unknown
    spec = {day: days.get(day, hours) for day in WEEKDAYS}
    return {day: (_interval(text),) if text else () for day, text in spec.items()}


# VICIdial's shipped state defaults (vicidial_state_call_times, 2019 data), as quoted in
# calling-rules.md §1 "State examples". Marked unverified there: each only narrows federal
# hours, so a stale entry can cost calls but never allow an unlawful one.
_VICIDIAL = "VICIdial extras/MySQL_AST_CREATE_tables.sql, vicidial_state_call_times (2019)"

PROFILES: dict[str, Profile] = {
    PROFILE_US: Profile(
        code=PROFILE_US,
        name=gettext_lazy("United States"),
        rule="US-1",
        source="47 CFR 64.1200(c)(1); FTC TSR 16 CFR 310.4(c)",
        hours=_week("08:00-21:00"),
        local_rules={
            "FL": LocalRule(
                rule="US-1 (Florida)",
                source="Fla. Stat. 501.616(6) as amended by SB 1120 (2021, ch. 2021-185)",
                hours=_week("08:00-20:00"),
                # "no more than 3 calls in 24 h ... regardless of the number used"
                frequency_cap=FrequencyCap(calls=3, hours=24, rule="US-1 (Florida)"),
            ),
            "AL": LocalRule(
                "US-1 (Alabama)", _VICIDIAL, _week("08:00-20:00", sun=None), verified=False
            ),
            "LA": LocalRule(
                "US-1 (Louisiana)", _VICIDIAL, _week("08:00-20:00", sun=None), verified=False
            ),
            "MS": LocalRule(
                "US-1 (Mississippi)", _VICIDIAL, _week("08:00-20:00", sun=None), verified=False
            ),
            "IN": LocalRule("US-1 (Indiana)", _VICIDIAL, _week("09:00-20:00"), verified=False),
            "NV": LocalRule("US-1 (Nevada)", _VICIDIAL, _week("09:00-20:00"), verified=False),
            "KY": LocalRule("US-1 (Kentucky)", _VICIDIAL, _week("10:00-21:00"), verified=False),
            "RI": LocalRule(
                "US-1 (Rhode Island)",
                _VICIDIAL,
                _week("09:00-18:00", sat="10:00-17:00", sun=None),
                verified=False,
            ),
            "TX": LocalRule(
                "US-1 (Texas)", _VICIDIAL, _week("08:00-21:00", sun="12:00-21:00"), verified=False
            ),
            "PA": LocalRule(
                "US-1 (Pennsylvania)",
                _VICIDIAL,
                _week("08:00-21:00", sun="13:30-21:00"),
                verified=False,
            ),
            "SD": LocalRule(
                "US-1 (South Dakota)", _VICIDIAL, _week("08:00-21:00", sun=None), verified=False
            ),
        },
    ),
    PROFILE_ES: Profile(
        code=PROFILE_ES,
        name=gettext_lazy("Spain"),
        rule="ES-1",
        source="TRLGDCU (Real Decreto Legislativo 1/2007) art. 96.2",
        hours=_week("09:00-21:00", sat=None, sun=None),
        holiday_country="ES",
    ),
    PROFILE_NONE: Profile(
        code=PROFILE_NONE,
        name=gettext_lazy("No calling-hour rules"),
        rule="",
        source="no calling-hour rules",
        hours=_week("00:00-24:00"),
    ),
}


# Where a number is: its country and, where rules differ inside it, its US state or Spanish
# autonomous community.


@dataclass(frozen=True)
class Jurisdiction:
    region: str | None  # ISO 3166 of the number
    subdivision: str | None = None  # US state ("FL") or Spanish community ("CT")


@functools.lru_cache(maxsize=4096)
def jurisdiction_for(phone: str) -> Jurisdiction:
    """The country of an E.164 number and, when the numbering plan tells, its subdivision:
    the US state of its area code, or the Spanish community of a geographic number's
    province. Spanish mobiles carry none (only national holidays apply to them)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return Jurisdiction(region=None)
    region = phonenumbers.region_code_for_number(number)
    national = phonenumbers.national_significant_number(number)
    subdivision = None
    if region == "US":
        subdivision = _US_AREA_CODE_STATES.get(national[:3])
    elif region == "ES":
        subdivision = _ES_PREFIX_COMMUNITIES.get(national[:3]) or _ES_PREFIX_COMMUNITIES.get(
            national[:2]
        )
    return Jurisdiction(region=region, subdivision=subdivision)


# US area codes by state. The area code decides the state: a NANP geographic area code never
# crosses a state line, and neither the carrier nor number portability moves it. (Asking
# phonenumbers' geocoder about one number answers "Florida" or "Miami, FL" or nothing, at
# whatever depth its data has; and loading that data costs each process about 100 MB.)
# Generated from the geocoding data of phonenumbers 9.0.43, every prefix of an area code
# voting for the state it names; tests/campaigns/test_rules.py checks that it still agrees
# with the installed data. Area codes newer than the data have no state: federal rules only.
_US_AREA_CODES = {
    "AK": "907",
    "AL": "205 251 256 334 659 938",
    "AR": "327 479 501 870",
    "AZ": "480 520 602 623 928",
    "CA": "209 213 279 310 323 341 350 369 408 415 424 442 510 530 559 562 619 626 628 650 "
    "657 661 669 707 714 738 747 760 805 818 820 831 840 858 909 916 925 949 951",
    "CO": "303 719 720 748 970 983",
    "CT": "203 475 860 959",
    "DC": "202 771",
    "DE": "302",
    "FL": "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 "
    "904 941 954",
    "GA": "229 404 470 478 678 706 762 770 912 943",
    "HI": "808",
    "IA": "319 515 563 641 712",
    "ID": "208 986",
    "IL": "217 224 309 312 331 447 464 618 630 708 730 773 779 815 847 872",
    "IN": "219 260 317 463 574 765 812 930",
    "KS": "316 620 785 913",
    "KY": "270 364 502 606 859",
    "LA": "225 318 337 504 985",
    "MA": "339 351 413 508 617 774 781 857 978",
    "MD": "227 240 301 410 443 667",
    "ME": "207",
    "MI": "231 248 269 313 517 586 616 734 810 906 947 989",
    "MN": "218 320 507 612 651 763 952",
    "MO": "235 314 417 557 573 636 660 816 975",
    "MS": "228 601 662 769",
    "MT": "406",
    "NC": "252 336 472 704 743 828 910 919 980 984",
    "ND": "701",
    "NE": "308 402 531",
    "NH": "603",
    "NJ": "201 551 609 640 732 848 856 862 908 973",
    "NM": "505 575",
    "NV": "702 725 775",
    "NY": "212 315 329 332 347 363 516 518 585 607 631 646 680 716 718 838 845 914 917 929 934",
    "OH": "216 220 234 283 326 330 380 419 440 513 567 614 740 937",
    "OK": "405 539 572 580 918",
    "OR": "458 503 541 971",
    "PA": "215 223 267 272 412 445 484 570 582 610 717 724 814 835 878",
    "RI": "401",
    "SC": "803 821 839 843 854 864",
    "SD": "605",
    "TN": "423 615 629 731 865 901 931",
    "TX": "210 214 254 281 325 346 361 409 430 432 469 512 682 713 726 737 806 817 830 832 "
    "903 915 936 940 945 956 972 979",
    "UT": "385 435 801",
    "VA": "276 434 540 571 686 703 757 804 826 948",
    "VT": "802",
    "WA": "206 253 360 425 509 564",
    "WI": "262 274 353 414 534 608 715 920",
    "WV": "304 681",
    "WY": "307",
}
_US_AREA_CODE_STATES = {
    area_code: state for state, codes in _US_AREA_CODES.items() for area_code in codes.split()
}

# Spanish geographic prefixes (8x and 9x: one per province) by autonomous community, spelled
# as ISO 3166-2:ES and the holidays library's subdivisions. From phonenumbers 9.0.43's
# geocoding data (checked by the tests like the US table). Ceuta and Melilla share the Cádiz
# and Málaga prefixes, so their own holidays are not known from the number.
_ES_PREFIXES = {
    "AN": "850 851 852 853 854 855 856 857 858 859 950 951 952 953 954 955 956 957 958 959",
    "AR": "874 876 878 974 976 978",
    "AS": "884 885 984 985",
    "CB": "842 942",
    "CL": "820 821 823 847 875 879 880 883 887 920 921 923 947 975 979 980 983 987",
    "CM": "825 826 849 867 869 925 926 949 967 969",
    "CN": "822 828 922 928",
    "CT": "83 872 873 877 93 972 973 977",
    "EX": "824 827 924 927",
    "GA": "881 882 886 888 981 982 986 988",
    "IB": "871 971",
    "MC": "868 968",
    "MD": "81 91",
    "NC": "848 948",
    "PV": "843 844 845 846 943 944 945 946",
    "RI": "841 941",
    "VC": "860 861 862 863 864 865 866 960 961 962 963 964 965 966",
}
_ES_PREFIX_COMMUNITIES = {
    prefix: community for community, prefixes in _ES_PREFIXES.items() for prefix in prefixes.split()
}


@functools.cache
def _holiday_calendar(country: str, subdivision: str | None) -> holidays.HolidayBase:
    # A subdivision's calendar includes the national holidays. Years beyond those filled in
    # here are added on demand by the library.
    this_year = datetime.date.today().year
    return holidays.country_holidays(
        country, subdiv=subdivision, years=range(this_year - 1, this_year + 3)
    )


def is_holiday(*, profile: str, phone: str, day: datetime.date) -> bool:
    """True when ``day`` is a public holiday where ``phone`` is, under ``profile`` (ES-1)."""
    calendar = _calendar_for(PROFILES[profile], phone)
    return calendar is not None and day in calendar


def _calendar_for(profile: Profile, phone: str) -> holidays.HolidayBase | None:
    if profile.holiday_country is None:
        return None
    jurisdiction = jurisdiction_for(phone)
    # A community's holidays only for a number of the profile's own country.
    in_country = jurisdiction.region == profile.holiday_country
    return _holiday_calendar(
        profile.holiday_country, jurisdiction.subdivision if in_country else None
    )


def frequency_caps(*, profile: str, phone: str) -> tuple[FrequencyCap, ...]:
    """The frequency caps the law puts on calls to ``phone`` (the campaign adds its own)."""
    local_rule = _local_rule(PROFILES[profile], phone)
    if local_rule is None or local_rule.frequency_cap is None:
        return ()
    return (local_rule.frequency_cap,)


# Campaign windows: JSON from the campaign, validated in Campaign.clean() and read here.


def parse_calling_windows(value: Any) -> dict[str, tuple[Interval, ...]] | None:
    """A campaign's ``calling_windows`` as intervals per weekday; None when empty (the
    profile's hours apply). Unreadable entries are dropped, so a campaign that skipped
    validation calls less, never more; a weekday not named is closed."""
    if not value:
        return None
    if not isinstance(value, Mapping):
        return {day: () for day in WEEKDAYS}
    week: dict[str, tuple[Interval, ...]] = {}
    for day in WEEKDAYS:
        intervals = []
        entries = value.get(day) or []
        for entry in entries if isinstance(entries, list) else []:
            interval = _parse_window(entry)
            if interval is not None:
                intervals.append(interval)
        week[day] = _normalise(intervals)
    return week


def calling_window_problems(*, profile: str, calling_windows: Any) -> list[ValidationError]:
    """Why ``calling_windows`` cannot be saved on a campaign with ``profile`` (empty: it can).

    Each weekday ("mon".."sun") maps to a list of ["HH:MM", "HH:MM"] intervals, and every
    interval lies inside the profile's hours for that day: a campaign can only narrow them.
    """
    if calling_windows in (None, {}):
        return []
    if not isinstance(calling_windows, dict):
        return [
            ValidationError(
                _(
                    "Calling windows must map weekdays (mon to sun) to lists of "
                    '["HH:MM", "HH:MM"] intervals.'
                ),
                code="invalid_calling_windows",
            )
        ]
    problems: list[ValidationError] = []
    base = PROFILES[profile].hours if profile in PROFILES else None
    for day, entries in calling_windows.items():
        if day not in WEEKDAYS:
            problems.append(
                ValidationError(
                    _("“%(day)s” is not a weekday; use mon, tue, wed, thu, fri, sat or sun."),
                    code="invalid_weekday",
                    params={"day": day},
                )
            )
            continue
        if not isinstance(entries, list):
            problems.append(
                ValidationError(
                    _('Calling windows on %(day)s must be a list of ["HH:MM", "HH:MM"] intervals.'),
                    code="invalid_calling_windows",
                    params={"day": day},
                )
            )
            continue
        for entry in entries:
            shown = _show_window(entry)
            interval = _parse_window(entry)
            if interval is None:
                problems.append(
                    ValidationError(
                        _(
                            "Calling window “%(window)s” on %(day)s is not a valid "
                            "HH:MM-HH:MM interval."
                        ),
                        code="invalid_calling_window",
                        params={"window": shown, "day": day},
                    )
                )
            elif base is not None and not _covers(base[day], interval):
                problems.append(_outside_profile(profile, base[day], day, shown))
    if not problems and not any(parse_calling_windows(calling_windows).values()):
        problems.append(
            ValidationError(
                _("The calling windows leave no time to call. Leave them empty to use the rules."),
                code="closed_calling_windows",
            )
        )
    return problems


def _outside_profile(
    profile: str, allowed: tuple[Interval, ...], day: str, shown: str
) -> ValidationError:
    if not allowed:
        return ValidationError(
            _(
                "Calling window “%(window)s” on %(day)s is not allowed: the %(profile)s rules "
                "allow no calls on %(day)s."
            ),
            code="calling_window_outside_rules",
            params={"window": shown, "day": day, "profile": PROFILES[profile].name},
        )
    return ValidationError(
        _(
            "Calling window “%(window)s” on %(day)s reaches outside %(allowed)s, the hours the "
            "%(profile)s rules allow; campaign windows can only narrow them."
        ),
        code="calling_window_outside_rules",
        params={
            "window": shown,
            "day": day,
            "profile": PROFILES[profile].name,
            "allowed": ", ".join(_show_interval(interval) for interval in allowed),
        },
    )


def _parse_window(entry: Any) -> Interval | None:
    if not isinstance(entry, list | tuple) or len(entry) != 2:
        return None
    start, end = _minutes(entry[0]), _minutes(entry[1], end=True)
    if start is None or end is None or start >= end:
        return None
    return start, end


def _show_window(entry: Any) -> str:
    if isinstance(entry, list | tuple) and len(entry) == 2:
        return f"{entry[0]}-{entry[1]}"
    return str(entry)


def _show_interval(interval: Interval) -> str:
    return "-".join(f"{minute // 60:02d}:{minute % 60:02d}" for minute in interval)


def _covers(intervals: Iterable[Interval], inner: Interval) -> bool:
    return any(start <= inner[0] and inner[1] <= end for start, end in intervals)


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _intersect(left: Iterable[Interval], right: Iterable[Interval]) -> tuple[Interval, ...]:
    return _normalise(
        (max(a, c), min(b, d)) for a, b in left for c, d in right if max(a, c) < min(b, d)
    )


# The window of one zone and the search for its next opening.


def window_allows(
    *,
    profile: str,
    campaign_windows: Mapping[str, Any] | None,
    zone: str,
    phone: str,
    moment: datetime.datetime,
) -> bool:
    """True when ``profile``, the local rules for ``phone`` and the campaign's windows all
    allow calling at ``moment`` (aware) by the wall clock in ``zone`` (US-1, ES-1)."""
    return _window(profile, _windows_key(campaign_windows), zone, phone).allows(moment)


def next_opening(
    *,
    profile: str,
    campaign_windows: Mapping[str, Any] | None,
    zone: str,
    phone: str,
    after: datetime.datetime,
) -> datetime.datetime | None:
    """The earliest moment at or after ``after`` that ``window_allows``; None when the
    window stays shut for ``HORIZON``. Exact to the minute across DST changes."""
    window = _window(profile, _windows_key(campaign_windows), zone, phone)
    return window.next_opening(after, until=after + HORIZON)


def next_common_opening(
    *,
    profile: str,
    campaign_windows: Mapping[str, Any] | None,
    zones: Iterable[str],
    phone: str,
    after: datetime.datetime,
) -> datetime.datetime | None:
    """The earliest moment at or after ``after`` when every zone in ``zones`` allows a call
    (a number whose zone is uncertain is called only when all candidates are open, US-1)."""
    key = _windows_key(campaign_windows)
    windows = [_window(profile, key, zone, phone) for zone in zones]
    until = after + HORIZON
    moment = after
    # Each round moves to the latest of the zones' next openings; when no zone moves, all
    # are open. Moments only grow, so this ends by the horizon.
    while moment <= until:
        latest = moment
        for window in windows:
            opening = window.next_opening(moment, until=until)
            if opening is None:
                return None
            latest = max(latest, opening)
        if latest == moment:
            return moment
        moment = latest
    return None


def _windows_key(campaign_windows: Mapping[str, Any] | None) -> tuple | None:
    week = parse_calling_windows(campaign_windows)
    return None if week is None else tuple(week[day] for day in WEEKDAYS)


def _local_rule(profile: Profile, phone: str) -> LocalRule | None:
    if not profile.local_rules:
        return None
    return profile.local_rules.get(jurisdiction_for(phone).subdivision or "")


@functools.lru_cache(maxsize=1024)
def _window(profile_code: str, campaign_key: tuple | None, zone: str, phone: str) -> _Window:
    profile = PROFILES[profile_code]
    local_rule = _local_rule(profile, phone)
    week: dict[str, tuple[Interval, ...]] = {}
    for index, day in enumerate(WEEKDAYS):
        intervals = profile.hours[day]
        if local_rule is not None and local_rule.hours is not None:
            intervals = _intersect(intervals, local_rule.hours[day])
        if campaign_key is not None:
            intervals = _intersect(intervals, campaign_key[index])
        week[day] = intervals
    return _Window(week=week, calendar=_calendar_for(profile, phone), zone=ZoneInfo(zone))


@dataclass(frozen=True)
class _Window:
    """The calling hours of one number in one zone: a weekly pattern minus holidays."""

    week: Mapping[str, tuple[Interval, ...]]
    calendar: holidays.HolidayBase | None
    zone: ZoneInfo

    def intervals(self, day: datetime.date) -> tuple[Interval, ...]:
        if self.calendar is not None and day in self.calendar:
            return ()
        return self.week[WEEKDAYS[day.weekday()]]

    def allows(self, moment: datetime.datetime) -> bool:
        local = moment.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.intervals(local.date()))

    def next_opening(
        self, after: datetime.datetime, *, until: datetime.datetime
    ) -> datetime.datetime | None:
        if self.allows(after):
            return after
        # The window can only open when the wall clock reaches an interval's start, or jumps
        # at a DST change; those instants are the candidates, checked day by day.
        first_day = after.astimezone(self.zone).date()
        best: datetime.datetime | None = None
        last_day = first_day + datetime.timedelta(days=(until - after).days + 1)
        day = first_day
        while day <= last_day:
            for candidate in self._candidates(day):
                if (
                    after <= candidate <= until
                    and (best is None or candidate < best)
                    and self.allows(candidate)
                ):
                    best = candidate
            # Wall-clock days can overlap at a DST change: look one day past the first hit.
            if best is not None and best.astimezone(self.zone).date() < day:
                return best
            day += datetime.timedelta(days=1)
        return best

    def _candidates(self, day: datetime.date) -> Iterator[datetime.datetime]:
        for start, _end in self.intervals(day):
            local = datetime.datetime.combine(
                day, datetime.time(start // 60, start % 60), tzinfo=self.zone
            )
            # An ambiguous start happens twice (fold 0 and 1); a nonexistent one (in a
            # spring-forward gap) maps to instants either side of the gap, and the gap's
            # end is the transition below.
            yield local.astimezone(datetime.UTC)
            yield local.replace(fold=1).astimezone(datetime.UTC)
        transition = self._transition(day)
        if transition is not None:
            yield transition

    def _transition(self, day: datetime.date) -> datetime.datetime | None:
        """The instant the zone's UTC offset changes on ``day``, if it does."""
        start = datetime.datetime.combine(day, datetime.time(), tzinfo=self.zone)
        end = start + datetime.timedelta(days=1)  # wall-clock arithmetic: next midnight
        low, high = start.astimezone(datetime.UTC), end.astimezone(datetime.UTC)
        offset = low.astimezone(self.zone).utcoffset()
        if offset == high.astimezone(self.zone).utcoffset():
            return None
        while high - low > datetime.timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.zone).utcoffset() == offset:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0)
