"""A partner's webhook endpoints and their deliveries."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit.admin_log import AuditedViewSetMixin
from callcenter.access import CanManageAccess, IsPartnerOrStaff
from callcenter.api import ScopedModelViewSet, ScopedViewSet
from campaigns import deliveries
from campaigns.models import WebhookDelivery, WebhookEndpoint
from campaigns.serializers import WebhookDeliverySerializer, WebhookEndpointSerializer


class WebhookEndpointViewSet(AuditedViewSetMixin, ScopedModelViewSet):
    """URLs that receive the partner's events, signed with their secret. Reading one
    shows its secret, so all of it is for a partner user, staff or a key with the scope
    ``can_manage_access``."""

    queryset = WebhookEndpoint.objects.all()
    permission_classes = [IsPartnerOrStaff, CanManageAccess]
    serializer_class = WebhookEndpointSerializer
    lookup_value_regex = r"\d+"
    filterset_fields = ["is_active"]

    @extend_schema(request=None, responses={200: WebhookEndpointSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """A new secret signs every delivery from now on; the old one stops at once."""
        endpoint = deliveries.rotate_webhook_secret(endpoint=self.get_object())
        return Response(self.get_serializer(endpoint).data)


class WebhookDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Every event sent (or to be sent) to the partner's endpoints, with each attempt."""

    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    partner_lookup = "endpoint__partner"
    lookup_value_regex = r"\d+"
    filterset_fields = ["endpoint", "event_type", "state"]

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str) -> Response:
        delivery = deliveries.redeliver(delivery=self.get_object())
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
