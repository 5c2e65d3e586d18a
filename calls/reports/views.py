"""``GET /api/v1/campaigns/{id}/stats/``: a campaign's figures in the partner API.

The route sits under the campaign's (callcenter/urls.py registers this viewset on the
campaigns prefix) but lives here: the figures count calls, which campaigns may not import.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from callcenter.api import ScopedViewSet
from calls.reports.serializers import CampaignStatsSerializer
from calls.reports.stats import campaign_stats
from campaigns.models import Campaign


class CampaignStatsViewSet(ScopedViewSet):
    """The campaign's contacts by state, calls by status and outcome, answer rate,
    average talk time and cost so far; another partner's campaign answers 404."""

    queryset = Campaign.objects.select_related("partner")
    serializer_class = CampaignStatsSerializer

    @extend_schema(summary=_("The campaign's figures so far"), responses=CampaignStatsSerializer)
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk: str) -> Response:
        figures = campaign_stats(campaign=self.get_object())
        return Response(CampaignStatsSerializer(figures).data)
