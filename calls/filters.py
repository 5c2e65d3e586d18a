"""What the partner API's list of calls can be narrowed to."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework.request import Request

from callcenter.access import partner_of
from calls.models import AnsweredBy, Call, CallStatus
from campaigns.models import Campaign


def _campaigns(request: Request | None) -> QuerySet[Campaign]:
    """The campaigns a request may filter by: another partner's are unknown ids."""
    partner = partner_of(request) if request is not None else None
    campaigns = Campaign.objects.all()
    return campaigns if partner is None else campaigns.filter(partner=partner)


class CallFilter(django_filters.FilterSet):
    """Times filter as half-open ranges: ``…_after`` includes the moment, ``…_before`` does
    not, so consecutive ranges never count a call twice."""

    campaign = django_filters.ModelChoiceFilter(
        queryset=_campaigns, help_text=_("Only calls of this campaign.")
    )
    status = django_filters.MultipleChoiceFilter(
        choices=CallStatus.choices,
        help_text=_("Only calls in these statuses (repeat the parameter for several)."),
    )
    answered_by = django_filters.MultipleChoiceFilter(
        choices=AnsweredBy.choices,
        help_text=_("Only calls answered this way (human, machine_start…)."),
    )
    outcome = django_filters.CharFilter(
        method="filter_outcome",
        help_text=_(
            "Only calls whose outcome has this field set to true: opted_out, transferred, "
            "extraction_failed, or a boolean field of the template's outcome schema."
        ),
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text=_("Created at or after this moment (ISO 8601)."),
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        help_text=_("Created before this moment (ISO 8601)."),
    )
    started_after = django_filters.IsoDateTimeFilter(
        field_name="dialed_at",
        lookup_expr="gte",
        help_text=_("Dialled at or after this moment (ISO 8601)."),
    )
    started_before = django_filters.IsoDateTimeFilter(
        field_name="dialed_at",
        lookup_expr="lt",
        help_text=_("Dialled before this moment (ISO 8601)."),
    )

    class Meta:
        model = Call
        fields = ["campaign", "status", "answered_by", "outcome"]

    def filter_outcome(self, queryset: QuerySet[Call], name: str, value: Any) -> QuerySet[Call]:
        return queryset.with_outcome(value)
