"""The audit trail's record of each decision about a contact on its way to a call.

The dispatcher records which contacts it selected and which it put off and why; the
dialer records the re-check right before dialling (a contact skipped after all, or dialled
with the checks it passed). Each entry names the calling rules' version that decided it
(``campaigns.rules.RULES_VERSION``). Entries hold ids, codes, zones and moments only: the
number is the entry's keyed subject, never in its details.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from audit import services as audit
from calls.models import Call
from campaigns import rules
from campaigns.eligibility import Eligibility
from campaigns.models import Campaign, Contact
from campaigns.phones import time_zones_for

CONTACT = "campaigns.contact"


def selected(*, call: Call, campaign: Campaign, verdict: Eligibility) -> audit.Event:
    """The dispatcher picked the contact of ``call`` (just created) for a call."""
    return audit.Event(
        audit.Action.CONTACT_SELECTED,
        partner_id=campaign.partner_id,
        subject_phone=call.to_number,
        object_type=CONTACT,
        object_id=call.contact_id,
        details={"campaign_id": campaign.pk, "call_id": call.pk, "attempt": call.attempt},
        rules_version=verdict.rules_version,
    )


def skipped(
    *,
    contact: Contact,
    campaign: Campaign,
    verdict: Eligibility,
    stage: str,
    state: str,
    call_id: int | None = None,
) -> audit.Event:
    """``contact`` may not be called now (``verdict``): put off until ``next_possible_at``
    or closed, ending in ``state``. ``stage``: "dispatch" (not picked) or "pre_dial" (the
    re-check right before dialling ``call_id`` refused it)."""
    details: dict[str, object] = {
        "campaign_id": campaign.pk,
        "stage": stage,
        "reasons": [str(code) for code in verdict.codes],
        "next_possible_at": _instant(verdict.next_possible_at),
        "state": state,
    }
    if call_id is not None:
        details["call_id"] = call_id
    return audit.Event(
        audit.Action.CONTACT_SKIPPED,
        partner_id=campaign.partner_id,
        subject_phone=contact.phone,
        object_type=CONTACT,
        object_id=contact.pk,
        details=details,
        rules_version=verdict.rules_version,
    )


def dialed(
    *,
    call: Call,
    contact: Contact,
    campaign: Campaign,
    verdict: Eligibility,
    history: Sequence[datetime.datetime],
    now: datetime.datetime,
) -> audit.Event:
    """The carrier accepted ``call``, which the re-check at ``now`` allowed (``verdict``,
    with the call history it counted): the checks it passed, for an audit to read."""
    return audit.Event(
        audit.Action.CONTACT_DIALED,
        partner_id=campaign.partner_id,
        subject_phone=call.to_number,
        object_type=CONTACT,
        object_id=contact.pk,
        details={
            "campaign_id": campaign.pk,
            "call_id": call.pk,
            "attempt": call.attempt,
            "checked_at": _instant(now),
            "checks": checks_passed(contact=contact, campaign=campaign, history=history, now=now),
        },
        rules_version=verdict.rules_version,
    )


def adopted(*, call: Call) -> audit.Event:
    """Reconciliation found ``call`` at the carrier after the dial request's answer was
    lost: dialled under the rules version its re-check stored on it."""
    return audit.Event(
        audit.Action.CONTACT_DIALED,
        partner_id=call.campaign.partner_id,
        subject_phone=call.to_number,
        object_type=CONTACT,
        object_id=call.contact_id,
        details={
            "campaign_id": call.campaign_id,
            "call_id": call.pk,
            "attempt": call.attempt,
            "found_by": "reconciliation",
        },
        rules_version=call.rules_version,
    )


def checks_passed(
    *,
    contact: Contact,
    campaign: Campaign,
    history: Sequence[datetime.datetime],
    now: datetime.datetime,
) -> dict[str, object]:
    """What the dial was checked against: the profile and the zones whose windows were
    open, the do-not-call lists found clear, and each frequency cap with the calls it
    counted (as ``evaluate`` reads them)."""
    zones = (contact.time_zone,) if contact.time_zone else time_zones_for(contact.phone)
    caps = [("campaign", campaign.frequency_cap_calls, campaign.frequency_cap_hours)] + [
        (cap.rule, cap.calls, cap.hours)
        for cap in rules.frequency_caps(profile=campaign.compliance_profile, phone=contact.phone)
    ]
    return {
        "profile": campaign.compliance_profile,
        "window_zones": list(zones),
        "jurisdiction": _jurisdiction(contact.phone),
        "do_not_call": "clear",
        "frequency_caps": [
            {
                "rule": rule,
                "calls": calls,
                "hours": hours,
                "counted": sum(
                    1 for moment in history if now - datetime.timedelta(hours=hours) < moment <= now
                ),
            }
            for rule, calls, hours in caps
        ],
    }


def _jurisdiction(phone: str) -> str:
    where = rules.jurisdiction_for(phone)
    return "-".join(part for part in (where.region, where.subdivision) if part)


def _instant(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat()
