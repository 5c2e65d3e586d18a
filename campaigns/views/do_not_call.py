"""The do-not-call list: a partner's own entries and, for staff, the global ones."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit import services as audit
from audit.admin_log import AuditedViewSetMixin, record_object
from audit.models import Action
from callcenter.access import is_staff_request
from callcenter.api import ScopedViewSet
from callcenter.filters import PartnerScopedFilterBackend
from campaigns import services
from campaigns.models import DoNotCall
from campaigns.serializers import (
    DoNotCallBatchSerializer,
    DoNotCallBulkSerializer,
    DoNotCallInputSerializer,
    DoNotCallSerializer,
)
from campaigns.views.base import (
    CONFLICT,
    NO_CONTENT,
    PhoneSearchFilter,
    acting_user,
    phone_errors,
    refused_as_conflict,
)

# --- Do-not-call list --------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("The do-not-call list")),
    retrieve=extend_schema(summary=_("A do-not-call entry")),
    destroy=extend_schema(
        summary=_("Allow calls to a number again"), responses={204: NO_CONTENT, 409: CONFLICT}
    ),
)
class DoNotCallViewSet(
    AuditedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    ScopedViewSet,
):
    """Numbers that must not be called. A partner sees and manages its own list; staff see
    every list and the global one, and add to a partner's (``partner``) or the global list
    (``"global": true``). An opt-out recorded during a call can be removed by staff only."""

    queryset = DoNotCall.objects.all()
    staff_permissions = {"bulk": "campaigns.add_donotcall"}
    serializer_class = DoNotCallSerializer
    filter_backends = [PartnerScopedFilterBackend, PhoneSearchFilter]
    filterset_fields = {"source": ["exact"], "partner": ["exact", "isnull"]}

    @property
    def search_region(self) -> str:
        return settings.DEFAULT_PHONE_REGION

    def _source(self) -> str:
        if is_staff_request(self.request):
            return DoNotCall.Source.STAFF
        return DoNotCall.Source.PARTNER_API

    @extend_schema(
        summary=_("Put a number on a do-not-call list"),
        request=DoNotCallInputSerializer,
        responses={201: DoNotCallSerializer, 200: DoNotCallSerializer},
    )
    def create(self, request: Request) -> Response:
        incoming = DoNotCallInputSerializer(data=request.data, context={"request": request})
        incoming.is_valid(raise_exception=True)
        with phone_errors(), transaction.atomic():
            entry, created = services.add_do_not_call(
                source=self._source(),
                by=acting_user(request),
                **incoming.validated_data,
            )
            if created:
                record_object(
                    Action.OBJECT_CREATED, entry, request=request, changed=incoming.validated_data
                )
        return Response(
            DoNotCallSerializer(entry).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary=_("Put many numbers on a do-not-call list (up to 10,000)"),
        description=_(
            "The body is an object with phones (and reason, region; staff: partner or "
            "global), or just a JSON array of numbers. Numbers that cannot be read are "
            "listed by index; the others are added."
        ),
        request=DoNotCallBulkSerializer,
        responses={200: DoNotCallBatchSerializer},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        data = {"phones": request.data} if isinstance(request.data, list) else request.data
        incoming = DoNotCallBulkSerializer(data=data, context={"request": request})
        incoming.is_valid(raise_exception=True)
        batch = services.add_do_not_call_numbers(
            source=self._source(),
            by=acting_user(request),
            actor=audit.Actor.from_request(request),
            **incoming.validated_data,
        )
        return Response(DoNotCallBatchSerializer(batch).data)

    def perform_destroy(self, instance: DoNotCall) -> None:
        with refused_as_conflict(_("The number cannot be removed from the list.")):
            services.remove_do_not_call(entry=instance, by_staff=is_staff_request(self.request))
