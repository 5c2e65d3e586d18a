"""The pure eligibility function: ``evaluate`` and its checks, each a list of reasons
(no query: the facts it needs are given)."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns import rules
from campaigns.models import Campaign, CampaignPurpose, Contact
from campaigns.phones import time_zones_for
from campaigns.suppression.lookups import Listing, basis_exempts
from templates.rendering import context_values, required_variables


class ReasonCode(enum.StrEnum):
    CAMPAIGN_NOT_RUNNING = "campaign_not_running"
    CAMPAIGN_NOT_STARTED = "campaign_not_started"
    CAMPAIGN_ENDED = "campaign_ended"
    CONTACT_STATE = "contact_state"
    DO_NOT_CALL = "do_not_call"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    LIVE_CALL = "live_call"
    RETRY_NOT_DUE = "retry_not_due"
    FREQUENCY_CAP = "frequency_cap"
    NO_TIME_ZONE = "no_time_zone"
    OUTSIDE_WINDOW = "outside_window"
    MISSING_VARIABLE = "missing_variable"
    # A marketing campaign's contact without a valid legal basis (US-5, ES-3/ES-4).
    NO_LEGAL_BASIS = "no_legal_basis"
    BASIS_NOT_ACCEPTED = "basis_not_accepted"
    BASIS_EXPIRED = "basis_expired"
    BASIS_WITHDRAWN = "basis_withdrawn"
    SUPPRESSION_LIST = "suppression_list"
    ERASED = "erased"


@dataclass(frozen=True)
class Reason:
    """One reason a contact cannot be called now. ``until``: when this reason alone clears;
    None when time alone will not clear it (a do-not-call entry, a paused campaign)."""

    code: ReasonCode
    message: str
    until: datetime.datetime | None = None


@dataclass(frozen=True)
class Eligibility:
    """The verdict on one contact at one moment.

    ``reasons`` lists every reason against calling (one per fact: each missing variable,
    each zone outside its window). ``next_possible_at`` is the earliest moment every reason
    clears by itself: ``now`` when dialable; None when a reason never clears with time.
    """

    dialable: bool
    reasons: list[Reason] = field(default_factory=list)
    next_possible_at: datetime.datetime | None = None
    rules_version: str = rules.RULES_VERSION

    @property
    def codes(self) -> list[ReasonCode]:
        """The reasons' codes, each once, in order."""
        return list(dict.fromkeys(reason.code for reason in self.reasons))


class EligibilityFacts(TypedDict):
    """What ``evaluate`` needs from the database besides the contact and its campaign."""

    history: list[datetime.datetime]
    blocked_by_dnc: bool
    live_call: bool
    listings: list[Listing]
    erased: bool


_WAITING_STATES = frozenset({Contact.State.PENDING, Contact.State.RETRY})
_FINAL_CAMPAIGN_STATES = frozenset({Campaign.State.COMPLETED, Campaign.State.CANCELLED})


def evaluate(
    *,
    contact: Contact,
    campaign: Campaign,
    now: datetime.datetime,
    history: Sequence[datetime.datetime],
    blocked_by_dnc: bool,
    live_call: bool,
    listings: Sequence[Listing] = (),
    erased: bool = False,
) -> Eligibility:
    """Whether ``contact`` of ``campaign`` may be dialled at ``now``, every reason why not,
    and when it may be.

    ``history``: when each call to the contact's number was created, across all of the
    partner's campaigns, covering at least the longest frequency-cap period
    (``history_hours``). ``blocked_by_dnc``: a partner or global do-not-call entry exists for
    the number. ``live_call``: the contact has a call in a live status. ``listings``: the
    national suppression lists the campaign requires that hold the number
    (``campaigns.suppression.listings``). ``erased``: the contact, or its number for the
    partner, was erased at the person's request. Reads nothing else
    from the database once the campaign's template is loaded (``Contact.objects.with_campaign``).
    """
    reasons = [
        *_campaign_reasons(campaign, now),
        *_contact_reasons(contact, campaign, now),
        *_erased_reasons(contact, erased),
    ]
    if blocked_by_dnc:  # US-7, US-8
        reasons.append(
            Reason(
                ReasonCode.DO_NOT_CALL,
                _("the number %(phone)s is on a do-not-call list") % {"phone": contact.phone},
            )
        )
    reasons.extend(_suppression_reasons(contact, now, listings))
    if live_call:
        reasons.append(Reason(ReasonCode.LIVE_CALL, _("the contact already has a call going on")))
    reasons.extend(_frequency_reasons(contact, campaign, now, history))
    zones = _zones(contact)
    if zones:
        reasons.extend(_window_reasons(contact, campaign, now, zones))
    else:
        reasons.append(
            Reason(
                ReasonCode.NO_TIME_ZONE,
                _("no time zone is known for %(phone)s") % {"phone": contact.phone},
            )
        )
    reasons.extend(_missing_variable_reasons(contact, campaign))
    reasons.extend(legal_basis_reasons(contact, campaign, now))
    if not reasons:
        return Eligibility(dialable=True, next_possible_at=now)
    return Eligibility(
        dialable=False,
        reasons=reasons,
        next_possible_at=_next_possible_at(contact, campaign, now, zones, reasons),
    )


def history_hours(*, contact: Contact, campaign: Campaign) -> int:
    """How many hours of call history the frequency caps on ``contact`` look back."""
    return max(cap.hours for cap in _frequency_caps(contact, campaign))


# The checks, each a list of reasons.


def _campaign_reasons(campaign: Campaign, now: datetime.datetime) -> list[Reason]:
    state = Campaign.State(campaign.state)
    if state in _FINAL_CAMPAIGN_STATES:
        message = _("the campaign is over (%(state)s)") % {"state": state.label}
        return [Reason(ReasonCode.CAMPAIGN_ENDED, message)]
    if campaign.ends_at is not None and campaign.ends_at <= now:
        message = _("the campaign ended at %(time)s") % {"time": _show(campaign.ends_at)}
        return [Reason(ReasonCode.CAMPAIGN_ENDED, message)]
    reasons = []
    not_started = campaign.starts_at is not None and campaign.starts_at > now
    if not_started and campaign.starts_at is not None:  # the second test is for mypy
        # A scheduled (or running) campaign calls from its start; a draft or paused one
        # waits for staff as well.
        until = campaign.starts_at if state in (state.SCHEDULED, state.RUNNING) else None
        message = _("the campaign starts at %(time)s") % {"time": _show(campaign.starts_at)}
        reasons.append(Reason(ReasonCode.CAMPAIGN_NOT_STARTED, message, until))
    if state in (state.DRAFT, state.PAUSED) or (state == state.SCHEDULED and not not_started):
        message = _("the campaign is not running (%(state)s)") % {"state": state.label}
        reasons.append(Reason(ReasonCode.CAMPAIGN_NOT_RUNNING, message))
    return reasons


def _contact_reasons(contact: Contact, campaign: Campaign, now: datetime.datetime) -> list[Reason]:
    reasons = []
    exhausted = (
        contact.state == Contact.State.EXHAUSTED
        or contact.attempts >= campaign.effective_max_attempts
    )
    if exhausted:
        reasons.append(
            Reason(
                ReasonCode.ATTEMPTS_EXHAUSTED,
                _("all attempts are used (%(attempts)s of %(max)s)")
                % {"attempts": contact.attempts, "max": campaign.effective_max_attempts},
            )
        )
    if contact.state not in _WAITING_STATES and contact.state != Contact.State.EXHAUSTED:
        reasons.append(
            Reason(
                ReasonCode.CONTACT_STATE,
                _("the contact is not waiting for a call (%(state)s)")
                % {"state": Contact.State(contact.state).label},
            )
        )
    if (
        contact.state == Contact.State.RETRY
        and contact.next_attempt_at is not None
        and contact.next_attempt_at > now
    ):
        reasons.append(
            Reason(
                ReasonCode.RETRY_NOT_DUE,
                _("the next attempt is due at %(time)s") % {"time": _show(contact.next_attempt_at)},
                contact.next_attempt_at,
            )
        )
    return reasons


def _suppression_reasons(
    contact: Contact, now: datetime.datetime, listings: Sequence[Listing]
) -> list[Reason]:
    # US-9, ES-5: a marketing campaign does not call a number on a national list, unless the
    # contact's legal basis is one the rule exempts (express consent to this company).
    return [
        Reason(
            ReasonCode.SUPPRESSION_LIST,
            _("the number %(phone)s is on %(list)s (%(rule)s)")
            % {"phone": contact.phone, "list": listing.list_name, "rule": listing.rule},
        )
        for listing in listings
        if not basis_exempts(contact=contact, exempt_bases=listing.exempt_bases, now=now)
    ]


def _erased_reasons(contact: Contact, erased: bool) -> list[Reason]:
    """An erased number is never called again (privacy.erasure): no time clears it."""
    if not erased and contact.erased_at is None:
        return []
    return [Reason(ReasonCode.ERASED, _("the number was erased at the person's request"))]


@dataclass(frozen=True)
class _Cap:
    calls: int
    hours: int
    rule: str  # empty: the campaign's own cap


def _frequency_caps(contact: Contact, campaign: Campaign) -> list[_Cap]:
    caps = [_Cap(campaign.frequency_cap_calls, campaign.frequency_cap_hours, "")]
    # Law caps (US-1 Florida: 3 calls in 24 h "regardless of the number used"); all the
    # partner's campaigns count as the same subject, the safe reading.
    caps.extend(
        _Cap(cap.calls, cap.hours, cap.rule)
        for cap in rules.frequency_caps(profile=campaign.compliance_profile, phone=contact.phone)
    )
    return caps


def _frequency_reasons(
    contact: Contact,
    campaign: Campaign,
    now: datetime.datetime,
    history: Sequence[datetime.datetime],
) -> list[Reason]:
    reasons = []
    for cap in _frequency_caps(contact, campaign):
        period = datetime.timedelta(hours=cap.hours)
        recent = sorted(moment for moment in history if now - period < moment <= now)
        if len(recent) < cap.calls:
            continue
        # Calling is possible again once enough of these calls leave the period.
        until = recent[len(recent) - cap.calls] + period
        params = {
            "count": len(recent),
            "phone": contact.phone,
            "hours": cap.hours,
            "limit": cap.calls,
            "rule": cap.rule,
        }
        if cap.rule:
            message = (
                _(
                    "%(count)s calls to %(phone)s in the last %(hours)s hours; %(rule)s allows "
                    "%(limit)s"
                )
                % params
            )
        else:
            message = (
                _(
                    "%(count)s calls to %(phone)s in the last %(hours)s hours across the "
                    "partner's campaigns; the campaign allows %(limit)s"
                )
                % params
            )
        reasons.append(Reason(ReasonCode.FREQUENCY_CAP, message, until))
    return reasons


def _zones(contact: Contact) -> tuple[str, ...]:
    # A number may ring in several zones (a Spanish mobile on the Canaries): call only when
    # every candidate zone allows it, the most restrictive reading (US-1).
    if contact.time_zone:
        return (contact.time_zone,)
    return time_zones_for(contact.phone)


def _window_reasons(
    contact: Contact, campaign: Campaign, now: datetime.datetime, zones: Sequence[str]
) -> list[Reason]:
    reasons = []
    where = {
        "profile": campaign.compliance_profile,
        "campaign_windows": campaign.calling_windows,
        "phone": contact.phone,
    }
    for zone in zones:
        if rules.window_allows(zone=zone, moment=now, **where):
            continue
        local = now.astimezone(ZoneInfo(zone))
        params = {"zone": zone, "local_time": local.strftime("%Y-%m-%d %H:%M")}
        if rules.is_holiday(
            profile=campaign.compliance_profile, phone=contact.phone, day=local.date()
        ):
            message = (
                _("outside the calling window in %(zone)s (%(local_time)s there, a holiday)")
                % params
            )
        else:
            message = _("outside the calling window in %(zone)s (%(local_time)s there)") % params
        until = rules.next_opening(zone=zone, after=now, **where)
        reasons.append(Reason(ReasonCode.OUTSIDE_WINDOW, message, until))
    return reasons


def _missing_variable_reasons(contact: Contact, campaign: Campaign) -> list[Reason]:
    if campaign.template is None:
        return []
    values = context_values(contact.variables or {})
    missing = sorted(
        name
        for name in required_variables(template=campaign.template)
        if not values.get(name, "").strip()
    )
    # Same words as templates.rendering.MissingVariable, which refuses to speak the line.
    return [
        Reason(ReasonCode.MISSING_VARIABLE, _("missing variable %(name)s") % {"name": name})
        for name in missing
    ]


def legal_basis_reasons(
    contact: Contact, campaign: Campaign, now: datetime.datetime
) -> list[Reason]:
    """Why a marketing campaign may not call ``contact`` on its recorded legal basis: none,
    one its compliance profile does not accept, withdrawn or expired. A service campaign
    needs none. Time clears none of them (a new basis must be recorded)."""
    if campaign.purpose != CampaignPurpose.MARKETING:
        return []
    basis_rule = rules.PROFILES[campaign.compliance_profile].marketing_basis
    rule = basis_rule.rule or _("the campaign's profile")
    accepted = ", ".join(sorted(basis_rule.accepted))
    params = {"rule": rule, "accepted": accepted}
    if not contact.legal_basis:
        message = _(
            "a marketing call needs a legal basis (%(accepted)s under %(rule)s); none is recorded"
        )
        return [Reason(ReasonCode.NO_LEGAL_BASIS, message % params)]
    if contact.legal_basis not in basis_rule.accepted:
        message = _(
            "a marketing call needs %(accepted)s under %(rule)s; the contact's basis is %(basis)s"
        )
        return [
            Reason(
                ReasonCode.BASIS_NOT_ACCEPTED, message % {**params, "basis": contact.legal_basis}
            )
        ]
    reasons = []
    if contact.basis_withdrawn_at is not None:
        message = _("the legal basis was withdrawn at %(time)s (%(rule)s)")
        reasons.append(
            Reason(
                ReasonCode.BASIS_WITHDRAWN,
                message % {"time": _show(contact.basis_withdrawn_at), "rule": rule},
            )
        )
    if contact.basis_expires_at is not None and contact.basis_expires_at <= now:
        message = _("the legal basis expired at %(time)s (%(rule)s)")
        reasons.append(
            Reason(
                ReasonCode.BASIS_EXPIRED,
                message % {"time": _show(contact.basis_expires_at), "rule": rule},
            )
        )
    return reasons


def _next_possible_at(
    contact: Contact,
    campaign: Campaign,
    now: datetime.datetime,
    zones: Sequence[str],
    reasons: Sequence[Reason],
) -> datetime.datetime | None:
    if any(reason.until is None for reason in reasons):
        return None
    # The window is checked last: the first moment every zone is open once the campaign has
    # started, the retry is due and the caps have room.
    earliest = max(
        [now]
        + [
            reason.until
            for reason in reasons
            if reason.until is not None and reason.code != ReasonCode.OUTSIDE_WINDOW
        ]
    )
    opening = rules.next_common_opening(
        profile=campaign.compliance_profile,
        campaign_windows=campaign.calling_windows,
        zones=zones,
        phone=contact.phone,
        after=earliest,
    )
    if opening is None or (campaign.ends_at is not None and opening >= campaign.ends_at):
        return None
    return opening


def _show(moment: datetime.datetime) -> str:
    """A moment for a message, in the project's time zone with its abbreviation."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")
