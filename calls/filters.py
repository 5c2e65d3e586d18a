"""What the partner API's list of calls can be narrowed to."""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework.request import Request

from callcenter.access import partner_of
from callcenter.filters import UtcDateTimeFilter
from calls.models import AnsweredBy, Call, CallDirection, CallQuerySet, CallStatus
from campaigns.models import Campaign, Contact


def _campaigns(request: Request | None) -> QuerySet[Campaign]:
    """The campaigns a request may filter by: another partner's are unknown ids."""
    partner = partner_of(request) if request is not None else None
    campaigns = Campaign.objects.all()
    return campaigns if partner is None else campaigns.filter(partner=partner)


def _contacts(request: Request | None) -> QuerySet[Contact]:
    """The contacts a request may filter by: another partner's are unknown ids."""
    partner = partner_of(request) if request is not None else None
    contacts = Contact.objects.all()
    return contacts if partner is None else contacts.filter(campaign__partner=partner)


class CallFilter(django_filters.FilterSet):
    """Times filter as half-open ranges: ``…_after`` includes the moment, ``…_before`` does
    not, so consecutive ranges never count a call twice."""

    campaign = django_filters.ModelChoiceFilter(
        queryset=_campaigns, help_text=_("Only calls of this campaign.")
    )
    contact = django_filters.ModelChoiceFilter(
        queryset=_contacts,
        help_text=_("Only calls of this contact (its history): ours and those it made to us."),
    )
    direction = django_filters.ChoiceFilter(
        choices=CallDirection.choices,
        help_text=_("Only outbound calls (we called) or inbound ones (the contact rang us)."),
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
        max_length=100,
        # A field's name, never an array index: PostgreSQL reads a key of digits as one.
        validators=[
            RegexValidator(
                r"\A[A-Za-z_][A-Za-z0-9_]*\Z",
                _("An outcome field's name: letters, digits and _, not starting with a digit."),
            )
        ],
        help_text=_(
            "Only calls whose outcome has this field set to true: opted_out, transferred, "
            "extraction_failed, or a boolean field of the template's outcome schema."
        ),
    )
    created_after = UtcDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text=_("Created at or after this moment (ISO 8601)."),
    )
    created_before = UtcDateTimeFilter(
        field_name="created_at",
        lookup_expr="lt",
        help_text=_("Created before this moment (ISO 8601)."),
    )
    started_after = UtcDateTimeFilter(
        field_name="dialed_at",
        lookup_expr="gte",
        help_text=_("Dialled at or after this moment (ISO 8601)."),
    )
    started_before = UtcDateTimeFilter(
        field_name="dialed_at",
        lookup_expr="lt",
        help_text=_("Dialled before this moment (ISO 8601)."),
    )

    class Meta:
        model = Call
        fields = ["campaign", "contact", "direction", "status", "answered_by", "outcome"]

    def filter_outcome(self, queryset: CallQuerySet, name: str, value: Any) -> CallQuerySet:
        return queryset.with_outcome(value)
