"""What the partner API's export of contacts can be narrowed to."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework.request import Request

from callcenter.access import partner_of
from campaigns.models import Campaign, Contact, ContactState


def _campaigns(request: Request | None) -> QuerySet[Campaign]:
    """The campaigns a request may filter by: another partner's are unknown ids."""
    partner = partner_of(request) if request is not None else None
    campaigns = Campaign.objects.all()
    return campaigns if partner is None else campaigns.filter(partner=partner)


class ContactFilter(django_filters.FilterSet):
    """As a campaign's list of contacts filters them, and by campaign."""

    campaign = django_filters.ModelChoiceFilter(
        queryset=_campaigns, help_text=_("Only contacts of this campaign.")
    )
    state = django_filters.MultipleChoiceFilter(
        choices=ContactState.choices,
        help_text=_("Only contacts in these states (repeat the parameter for several)."),
    )

    class Meta:
        model = Contact
        fields = ["campaign", "state", "external_id"]
