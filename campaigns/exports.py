"""Contacts as a table for the CSV and XLSX exports (callcenter/exports.py).

One row a contact: its campaign, number and variables (one column each), its state and
why, its attempts and last call, and whether it may be called now: every reason why not
(as its page in the admin and the API's contact say) and when it may be.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter.exports import Table, in_chunks
from callcenter.queries import json_keys
from campaigns.eligibility import eligibilities
from campaigns.models import Campaign, Contact


def export_campaigns(queryset: QuerySet) -> dict[int, Campaign]:
    """The campaigns of the rows of ``queryset`` (calls or contacts), with their partner
    and template, by id: loaded once, rather than with every row."""
    ids = queryset.order_by().values("campaign_id")
    return Campaign.objects.filter(pk__in=ids).select_related("partner", "template").in_bulk()


def ordered_keys(declared: list[str], found: set[str]) -> list[str]:
    """``declared`` keys in their order, then the other ``found`` ones alphabetically."""
    declared = list(dict.fromkeys(declared))
    return declared + sorted(found - set(declared))


def variable_keys(contacts: QuerySet[Contact], campaigns: dict[int, Campaign]) -> list[str]:
    """The contact variables to give a column each: those the campaigns' templates
    speak, then any other the contacts have."""
    declared = [
        name
        for campaign in sorted(campaigns.values(), key=lambda campaign: campaign.pk)
        if campaign.template is not None and isinstance(campaign.template.variables, dict)
        for name in campaign.template.variables
    ]
    return ordered_keys(declared, json_keys(contacts, "variables"))


def contact_table(
    *, contacts: QuerySet[Contact], with_partner: bool, now: datetime.datetime | None = None
) -> Table:
    """``contacts`` (filtered and ordered as wanted) as a table: the headers now, in the
    active language; the rows as they are read, a chunk at a time, each chunk's last calls
    and the facts of its verdicts in the same few queries whatever its size. ``now``: the
    moment the verdicts are for (default: when the export starts)."""
    now = now or timezone.now()
    campaigns = export_campaigns(contacts)
    variables = variable_keys(contacts, campaigns)
    headers = [
        _("contact id"),
        *([_("partner")] if with_partner else []),
        _("campaign id"),
        _("campaign"),
        _("phone"),
        _("external id"),
        _("time zone"),
        *(_("variable: %(name)s") % {"name": name} for name in variables),
        _("state"),
        _("state reason"),
        _("attempts"),
        _("last call id"),
        _("last call status"),
        _("last call started at (UTC)"),
        _("next attempt at (UTC)"),
        _("may be called now"),
        _("why not"),
        _("why not (codes)"),
        _("next possible call (UTC)"),
        _("created at (UTC)"),
        _("updated at (UTC)"),
    ]
    rows = _rows(
        contacts.select_related(None),
        campaigns=campaigns,
        variables=variables,
        with_partner=with_partner,
        now=now,
    )
    return Table(title=_("Contacts"), headers=headers, rows=rows)


def _last_calls(contacts: list[Contact]) -> dict[int, tuple[int, str, datetime.datetime | None]]:
    """The last call of each of ``contacts`` that has one: (id, status, dialled at)."""
    from calls.models import Call  # calls builds on campaigns (see eligibility.py)

    last = {}
    for contact_id, pk, status, dialed_at in (
        Call.objects.filter(contact__in=contacts)
        .order_by("contact_id", "attempt")
        .values_list("contact_id", "pk", "status", "dialed_at")
    ):
        last[contact_id] = (pk, status, dialed_at)
    return last


def _rows(
    contacts: QuerySet[Contact],
    *,
    campaigns: dict[int, Campaign],
    variables: list[str],
    with_partner: bool,
    now: datetime.datetime,
) -> Iterator[list[Any]]:
    for chunk in in_chunks(contacts):
        for contact in chunk:
            contact.campaign = campaigns[contact.campaign_id]
        verdicts = eligibilities(contacts=chunk, now=now)
        last_calls = _last_calls(chunk)
        for contact in chunk:
            campaign = contact.campaign
            values = contact.variables if isinstance(contact.variables, dict) else {}
            verdict = verdicts[contact.pk]
            last_call_id, last_call_status, last_call_at = last_calls.get(
                contact.pk, (None, None, None)
            )
            yield [
                contact.pk,
                *([campaign.partner.name] if with_partner else []),
                campaign.pk,
                campaign.name,
                contact.phone,
                contact.external_id,
                contact.time_zone,
                *(values.get(name) for name in variables),
                contact.state,
                contact.state_reason,
                contact.attempts,
                last_call_id,
                last_call_status,
                last_call_at,
                contact.next_attempt_at,
                verdict.dialable,
                "; ".join(reason.message for reason in verdict.reasons),
                " ".join(verdict.codes),
                verdict.next_possible_at,
                contact.created_at,
                contact.updated_at,
            ]
