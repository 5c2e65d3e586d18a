"""The compliance profiles as versioned data: each jurisdiction's calling hours, holiday
country, local overrides and the legal bases a marketing campaign may call on, with their
rule ids and sources (bump RULES_DATA_VERSION on any change here)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import holidays
import phonenumbers
from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

RULES_DATA_VERSION = "2026.12.1"
RULES_VERSION = (
    f"{RULES_DATA_VERSION}+holidays-{holidays.__version__}+phonenumbers-{phonenumbers.__version__}"
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead next_opening looks before saying "never" (a year plus slack for holidays).
HORIZON = datetime.timedelta(days=400)

PROFILE_US = "us"
PROFILE_ES = "es"
PROFILE_NONE = "none"

# The kinds of legal basis for calling a contact (campaigns.models.contacts.LegalBasis
# spells the same values): consent, an existing customer relationship, a service call.
BASIS_CONSENT = "consent"
BASIS_CUSTOMER = "customer"
BASIS_SERVICE = "service"

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
class BasisRule:
    """The legal bases a marketing campaign may call a contact on (a service campaign needs
    none), and the rule that says so."""

    accepted: frozenset[str]
    rule: str
    source: str


@dataclass(frozen=True)
class ListRequirement:
    """A national suppression list a marketing campaign must be scrubbed against
    (``campaigns.models.SuppressionKind`` value ``kind``), with a copy at most
    ``max_age_days`` old (None: ``max_age_setting`` names the policy setting that says), and
    the legal bases that exempt a contact on it (``exempt_bases``)."""

    kind: str
    name: StrOrPromise
    rule: str
    source: str
    max_age_days: int | None = None
    max_age_setting: str = ""
    exempt_bases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """A jurisdiction's calling hours, holidays and local overrides, and the national
    suppression lists its marketing campaigns need."""

    code: str
    name: StrOrPromise  # translated when shown
    rule: str
    source: str
    hours: Week
    marketing_basis: BasisRule
    holiday_country: str | None = None
    local_rules: Mapping[str, LocalRule] = field(default_factory=dict)
    suppression_lists: tuple[ListRequirement, ...] = ()


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
        # An AI voice is an "artificial voice": a telemarketing call needs prior express
        # written consent; an existing business relationship does not exempt it.
        marketing_basis=BasisRule(
            accepted=frozenset({BASIS_CONSENT}),
            rule="US-5",
            source=(
                "FCC 24-17 Declaratory Ruling (2024-02-08): AI voices are artificial voices, "
                "prior express written consent for telemarketing; 47 CFR 64.1200(a)(2)"
            ),
        ),
        suppression_lists=(
            # "required to search the registry every 31 days"; a seller may call a number on
            # it with the consumer's written permission (prior express written consent).
            ListRequirement(
                kind="us_dnc",
                name=gettext_lazy("US National Do Not Call Registry"),
                rule="US-9",
                source=(
                    "16 CFR 310.4(b)(3)(iv); consumer.ftc.gov/articles/0198-telemarketing-"
                    "sales-rule; telemarketing.donotcall.gov/faq/faqbusiness.aspx"
                ),
                max_age_days=31,
                exempt_bases=("consent",),
            ),
        ),
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
        # Opt-in since 2023-06-29 (ES-3); an AI voice agent calls "sin intervención humana",
        # which needs prior consent whatever the relationship (ES-4, the safe reading).
        marketing_basis=BasisRule(
            accepted=frozenset({BASIS_CONSENT}),
            rule="ES-3, ES-4",
            source=(
                "Ley 11/2022 General de Telecomunicaciones art. 66.1.a (llamadas automáticas "
                "sin intervención humana) and 66.1.b; AEPD Circular 1/2023"
            ),
        ),
        holiday_country="ES",
        suppression_lists=(
            # Consult the advertising exclusion lists before a direct-marketing campaign,
            # unless the person gave this company express consent; how old a copy may be is
            # the operator's policy (SUPPRESSION_ROBINSON_MAX_AGE_DAYS, 30 by default).
            ListRequirement(
                kind="robinson_es",
                name=gettext_lazy("Lista Robinson"),
                rule="ES-5",
                source="LOPDGDD (LO 3/2018) art. 23.4; AEPD + Adigital (listarobinson.es)",
                max_age_setting="SUPPRESSION_ROBINSON_MAX_AGE_DAYS",
                exempt_bases=("consent",),
            ),
        ),
    ),
    PROFILE_NONE: Profile(
        code=PROFILE_NONE,
        name=gettext_lazy("No calling-hour rules"),
        rule="",
        source="no calling-hour rules",
        hours=_week("00:00-24:00"),
        marketing_basis=BasisRule(
            accepted=frozenset({BASIS_CONSENT, BASIS_CUSTOMER}),
            rule="",
            source="no legal-basis rules: consent or an existing customer relationship",
        ),
    ),
}
