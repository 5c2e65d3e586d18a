"""Contacts no time will make callable as things stand (a do-not-call entry, a national
suppression list, a missing variable, every attempt used, no valid legal basis for a
marketing call), counted and filtered by the database."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import ngettext

from campaigns import rules
from campaigns.models import Campaign, CampaignPurpose, Contact, DoNotCall, lacks_variable
from campaigns.suppression.lookups import listed_condition
from templates.rendering import TemplateRenderError, required_variables


@dataclass(frozen=True)
class Blocked:
    """Contacts that no time will make callable as things stand, counted by the database:
    ``blocked`` of ``total`` have at least one of the reasons, each counted on its own
    (``missing``: contacts lacking each variable the template needs)."""

    total: int
    blocked: int
    missing: dict[str, int]
    do_not_call: int
    exhausted: int
    no_legal_basis: int = 0
    suppressed: int = 0  # on a national list the campaign requires, not exempt

    def describe(self) -> str:
        """The reasons with their counts: "42 lack first_name, 3 are on a do-not-call list"."""
        parts = [
            ngettext("%(count)s lacks %(name)s", "%(count)s lack %(name)s", count)
            % {"count": count, "name": name}
            for name, count in self.missing.items()
            if count
        ]
        if self.do_not_call:
            parts.append(
                ngettext(
                    "%(count)s is on a do-not-call list",
                    "%(count)s are on a do-not-call list",
                    self.do_not_call,
                )
                % {"count": self.do_not_call}
            )
        if self.suppressed:
            parts.append(
                ngettext(
                    "%(count)s is on a national suppression list",
                    "%(count)s are on a national suppression list",
                    self.suppressed,
                )
                % {"count": self.suppressed}
            )
        if self.exhausted:
            parts.append(
                ngettext(
                    "%(count)s has used all its attempts",
                    "%(count)s have used all their attempts",
                    self.exhausted,
                )
                % {"count": self.exhausted}
            )
        if self.no_legal_basis:
            parts.append(
                ngettext(
                    "%(count)s has no valid legal basis for a marketing call",
                    "%(count)s have no valid legal basis for a marketing call",
                    self.no_legal_basis,
                )
                % {"count": self.no_legal_basis}
            )
        return ", ".join(parts)


def count_blocked(*, campaign: Campaign, contacts: QuerySet[Contact]) -> Blocked:
    """How many of ``contacts`` (of ``campaign``) ``evaluate`` would refuse for good, in one
    query however many they are: a do-not-call entry, a variable the campaign's template
    (as it is now) needs, every attempt used, no valid legal basis for a marketing
    campaign (``no_legal_basis_condition``). Reasons of time, and a number without a time
    zone, are not counted here."""
    conditions = _BlockingConditions.of(campaign)
    lacking = list(conditions.lacking.values())
    counts = contacts.order_by().aggregate(
        total=Count("pk"),
        blocked=Count("pk", filter=conditions.any()),
        do_not_call=Count("pk", filter=conditions.do_not_call),
        exhausted=Count("pk", filter=conditions.exhausted),
        no_legal_basis=Count("pk", filter=conditions.no_legal_basis),
        suppressed=Count("pk", filter=conditions.suppressed),
        **{f"missing_{index}": Count("pk", filter=q) for index, q in enumerate(lacking)},
    )
    return Blocked(
        total=counts["total"],
        blocked=counts["blocked"],
        missing={name: counts[f"missing_{index}"] for index, name in enumerate(conditions.lacking)},
        do_not_call=counts["do_not_call"],
        exhausted=counts["exhausted"],
        no_legal_basis=counts["no_legal_basis"],
        suppressed=counts["suppressed"],
    )


def blocked_for_good(*, campaign: Campaign) -> Q:
    """The contacts of ``campaign`` that ``count_blocked`` counts as blocked, to filter by."""
    return _BlockingConditions.of(campaign).any()


@dataclass(frozen=True)
class _BlockingConditions:
    do_not_call: Q
    exhausted: Q
    lacking: dict[str, Q]  # by variable the template needs, in name order
    no_legal_basis: Q
    suppressed: Q

    @classmethod
    def of(cls, campaign: Campaign) -> _BlockingConditions:
        entries = DoNotCall.objects.filter(
            Q(partner_id=campaign.partner_id) | Q(partner__isnull=True), phone=OuterRef("phone")
        )
        return cls(
            do_not_call=Q(Exists(entries)),
            exhausted=Q(attempts__gte=campaign.effective_max_attempts),
            lacking={name: lacks_variable(name) for name in needed_variables(campaign=campaign)},
            no_legal_basis=no_legal_basis_condition(campaign=campaign),
            suppressed=listed_condition(campaign=campaign),
        )

    def any(self) -> Q:
        return functools.reduce(
            operator.or_,
            [
                self.do_not_call,
                self.exhausted,
                self.no_legal_basis,
                self.suppressed,
                *self.lacking.values(),
                self.erased,
            ],
        )

    @property
    def erased(self) -> Q:
        """Contacts erased at the person's request (privacy.erasure): never called again."""
        return Q(erased_at__isnull=False)


def no_legal_basis_condition(*, campaign: Campaign) -> Q:
    """The contacts ``campaign`` may not call on their legal basis (what
    ``verdict.legal_basis_reasons`` refuses): for a marketing campaign, none or one its
    profile does not accept, withdrawn, or expired by now; for a service campaign, none."""
    if campaign.purpose != CampaignPurpose.MARKETING:
        return Q(pk__isnull=True)  # none: a row always has its key
    accepted = rules.PROFILES[campaign.compliance_profile].marketing_basis.accepted
    return (
        ~Q(legal_basis__in=sorted(accepted))
        | Q(basis_withdrawn_at__isnull=False)
        | Q(basis_expires_at__lte=timezone.now())
    )


def needed_variables(*, campaign: Campaign) -> list[str]:
    """The contact variables ``campaign``'s template needs as it is now, by name; none
    without a template, or with one that does not parse (its lint refuses the start)."""
    if campaign.template is None:
        return []
    try:
        return sorted(required_variables(template=campaign.template))
    except TemplateRenderError:
        return []
