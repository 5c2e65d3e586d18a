"""When a number may be called: holidays, frequency caps, a campaign's own windows
checked against its profile, and the window arithmetic (open now, next opening)."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from campaigns.rules.jurisdictions import jurisdiction_for
from campaigns.rules.profiles import (
    HORIZON,
    PROFILES,
    WEEKDAYS,
    FrequencyCap,
    Interval,
    LocalRule,
    Profile,
    _minutes,
)


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
    if not problems and not any((parse_calling_windows(calling_windows) or {}).values()):
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
