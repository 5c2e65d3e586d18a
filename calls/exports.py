"""Calls as a table for the CSV and XLSX exports (callcenter/exports.py).

One row a call: its campaign and contact (the contact's variables, one column each), when
it was dialled, answered and ended, its status, its outcome (one column per field: every
field the exported campaigns' templates ask for, and every field the calls have), its
cost in three parts and, on request, its transcript.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.utils.translation import gettext as _

from callcenter.exports import Table, in_chunks
from callcenter.queries import json_keys
from calls.costs import call_costs
from calls.models import Call, Turn
from calls.serializers import PRIVATE_OUTCOME_KEYS
from campaigns.exports import export_campaigns, ordered_keys, variable_keys
from campaigns.models import Campaign, Contact

# The outcome fields calls write themselves (calls.flow, calls.outcomes), in this order
# after the templates' own fields.
CALL_OUTCOME_KEYS = (
    "opted_out",
    "transferred",
    "transfer_failed",
    "callback",
    "callback_at",
    "callback_note",
    "extraction_failed",
    "extraction_error",
)


# What a row reads of a call and its contact (and call_costs of the call): each field
# left out is a column fewer to read and convert, a hundred thousand times over.
CALL_FIELDS = (
    "campaign_id",
    "contact__external_id",
    "contact__variables",
    "direction",
    "from_number",
    "to_number",
    "attempt",
    "status",
    "answered_by",
    "created_at",
    "dialed_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "answers",
    "flags",
    "summary",
    "price",
    "price_unit",
    "price_status",
    "error_code",
    "error_message",
    "extraction_model",
    "extraction_prompt_tokens",
    "extraction_completion_tokens",
)


def _schema_fields(campaign: Campaign) -> list[str]:
    schema = campaign.template.outcome_schema if campaign.template is not None else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return list(properties) if isinstance(properties, dict) else []


def outcome_keys(calls: QuerySet[Call], campaigns: dict[int, Campaign]) -> list[str]:
    """The outcome fields to give a column each: the templates' own, the ones calls
    write, then any other the calls have; never the private ones."""
    declared = [
        name
        for campaign in sorted(campaigns.values(), key=lambda campaign: campaign.pk)
        for name in _schema_fields(campaign)
    ]
    found = json_keys(calls, "answers") | json_keys(calls, "flags")
    declared += [key for key in CALL_OUTCOME_KEYS if key in found]
    return [key for key in ordered_keys(declared, found) if key not in PRIVATE_OUTCOME_KEYS]


def transcript_text(turns: list[Turn]) -> str:
    """A call's conversation as one text: a line per turn, ``speaker: words``."""
    lines = []
    for turn in turns:
        text = turn.text
        if not text and turn.digits:
            text = _("(pressed %(digits)s)") % {"digits": turn.digits}
        lines.append(f"{Turn.Role(turn.role).label}: {text}")
    return "\n".join(lines)


def call_table(*, calls: QuerySet[Call], transcript: bool, with_partner: bool) -> Table:
    """``calls`` (filtered and ordered as wanted) as a table: the headers now, in the
    active language; the rows as they are read, a chunk at a time, each chunk's costs and
    transcripts in the same few queries whatever its size."""
    campaigns = export_campaigns(calls)
    contacts = Contact.objects.filter(pk__in=calls.order_by().values("contact_id"))
    variables = variable_keys(contacts, campaigns)
    outcome = outcome_keys(calls, campaigns)
    headers = [
        _("call id"),
        *([_("partner")] if with_partner else []),
        _("campaign id"),
        _("campaign"),
        _("contact id"),
        _("external id"),
        _("phone"),
        *(_("variable: %(name)s") % {"name": name} for name in variables),
        _("direction"),
        _("our number"),
        _("attempt"),
        _("status"),
        _("answered by"),
        _("created at (UTC)"),
        _("started at (UTC)"),
        _("answered at (UTC)"),
        _("ended at (UTC)"),
        _("duration (s)"),
        *(_("outcome: %(field)s") % {"field": key} for key in outcome),
        _("summary"),
        _("telephony cost"),
        _("speech cost"),
        _("model cost"),
        _("total cost"),
        _("currency"),
        _("cost pending"),
        _("cost not counted"),
        _("error code"),
        _("error"),
        *([_("transcript")] if transcript else []),
    ]
    rows = _rows(
        calls.select_related(None).select_related("contact").only(*CALL_FIELDS),
        campaigns=campaigns,
        variables=variables,
        outcome=outcome,
        transcript=transcript,
        with_partner=with_partner,
    )
    return Table(title=_("Calls"), headers=headers, rows=rows)


def _rows(
    calls: QuerySet[Call],
    *,
    campaigns: dict[int, Campaign],
    variables: list[str],
    outcome: list[str],
    transcript: bool,
    with_partner: bool,
) -> Iterator[list[Any]]:
    turns = Prefetch("turns", queryset=Turn.objects.only("call", "role", "text", "digits"))
    for chunk in cast(Iterator[list[Call]], in_chunks(calls)):
        costs = call_costs(chunk)
        if transcript:
            prefetch_related_objects(chunk, turns)
        for call in chunk:
            campaign = campaigns[call.campaign_id]
            contact = call.contact
            values = contact.variables if isinstance(contact.variables, dict) else {}
            result = call.outcome
            cost = costs[call.pk]
            yield [
                call.pk,
                *([campaign.partner.name] if with_partner else []),
                campaign.pk,
                campaign.name,
                contact.pk,
                contact.external_id,
                call.contact_number,
                *(values.get(name) for name in variables),
                call.direction,
                call.our_number,
                call.attempt,
                call.status,
                call.answered_by,
                call.created_at,
                call.dialed_at,
                call.answered_at,
                call.ended_at,
                call.duration_seconds,
                *(result.get(key) for key in outcome),
                call.summary,
                cost.telephony,
                cost.speech,
                cost.model,
                cost.total,
                cost.currency,
                " ".join(cost.pending),
                " ".join(cost.unpriced),
                call.error_code,
                call.error_message,
                *([transcript_text(list(call.turns.all()))] if transcript else []),
            ]
