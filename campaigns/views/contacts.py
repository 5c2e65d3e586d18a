"""Contacts across campaigns (with eligibility and export) and contact imports."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponseBase
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from audit import services as audit
from audit.admin_log import AuditedViewSetMixin, record_object
from audit.models import Action
from callcenter.access import partner_of
from callcenter.api import ScopedViewSet
from callcenter.exports import (
    EXPORT_ACTION,
    EXPORT_FORMAT_PARAMETER,
    ExportViewMixin,
    export_filename,
    export_response,
    export_responses,
    negotiated_format,
)
from callcenter.filters import PartnerScopedFilterBackend
from campaigns import services
from campaigns.eligibility import eligibility_for
from campaigns.exports import contact_table
from campaigns.filters import ContactFilter
from campaigns.models import Contact, ContactImport
from campaigns.serializers import (
    ContactDetailSerializer,
    ContactImportDetailSerializer,
    ContactImportErrorSerializer,
    ContactImportSerializer,
    ContactImportWarningSerializer,
    ContactUpdateSerializer,
)
from campaigns.views.base import (
    CONFLICT,
    NO_CONTENT,
    PhoneSearchFilter,
    refused_as_conflict,
    scoped_campaigns,
)

# --- Contacts ----------------------------------------------------------------------------


CONTACT_EXPORT_DESCRIPTION = _(
    "Every contact the filters select (of every campaign, or of one), by id, as a CSV or "
    "XLSX file: a row a contact with its number, variables (a column each), state and "
    "its reason, attempts, last call, whether it may be called now, every reason why not "
    "(words and codes) and when it may be. Filters, format, headers, times and formula "
    "safety as for the calls' export (GET /api/v1/calls/export/)."
)


@extend_schema_view(
    retrieve=extend_schema(
        summary=_("A contact, with whether it may be called now, why not and when"),
        responses=ContactDetailSerializer,
    ),
    partial_update=extend_schema(
        summary=_("Change a contact's variables or time zone"),
        request=ContactUpdateSerializer,
        responses={200: ContactDetailSerializer, 409: CONFLICT},
    ),
    destroy=extend_schema(
        summary=_("Delete a contact that was never called"),
        responses={204: NO_CONTENT, 409: CONFLICT},
    ),
)
class ContactViewSet(
    AuditedViewSetMixin,
    ExportViewMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ScopedViewSet,
):
    """``/api/v1/contacts/{id}/``: one contact of the partner's campaigns;
    ``/api/v1/contacts/export/``: the partner's contacts as a file."""

    queryset = Contact.objects.with_campaign()
    serializer_class = ContactDetailSerializer
    partner_lookup = "campaign__partner"
    http_method_names = ["get", "patch", "delete", "head", "options"]
    # Only the export lists contacts here: its action sets what filters and orders them.
    filterset_class = None
    ordering_fields: list[str] = []
    ordering: list[str] = []

    @property
    def search_region(self) -> str:
        """Where a searched number without its country code is read: in the filtered
        campaign's region, else the default one."""
        campaign_id = self.request.query_params.get("campaign", "")
        campaign = (
            scoped_campaigns(self.request).filter(pk=campaign_id).first()
            if campaign_id.isdigit()
            else None
        )
        return campaign.phone_region if campaign else settings.DEFAULT_PHONE_REGION

    @extend_schema(
        summary=_("Export contacts as CSV or XLSX"),
        description=CONTACT_EXPORT_DESCRIPTION,
        parameters=[EXPORT_FORMAT_PARAMETER],
        responses=export_responses(CONTACT_EXPORT_DESCRIPTION),
        filters=True,
    )
    @action(
        detail=False,
        methods=["get"],
        filter_backends=[PartnerScopedFilterBackend, PhoneSearchFilter, OrderingFilter],
        filterset_class=ContactFilter,
        ordering_fields=["id", "created_at", "updated_at", "next_attempt_at", "attempts"],
        ordering=["id"],
        **EXPORT_ACTION,
    )
    def export(self, request: Request, format: str | None = None) -> HttpResponseBase:
        # format: a suffix (export.xlsx), already taken by the content negotiation.
        contacts = self.filter_queryset(self.get_queryset())
        partner = partner_of(request)
        file_format = negotiated_format(request)
        table = contact_table(contacts=contacts, with_partner=partner is None)
        campaign = request.query_params.get("campaign", "")
        scope = [partner.name if partner else "", f"campaign-{campaign}" if campaign else ""]
        filename = export_filename(subject="contacts", scope=scope, file_format=file_format)
        return export_response(request, table=table, file_format=file_format, filename=filename)

    def get_object(self) -> Contact:
        contact = super().get_object()
        if self.request.method == "GET":
            contact.eligibility = eligibility_for(contact=contact)
        return contact

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        contact = self.get_object()
        incoming = ContactUpdateSerializer(contact, data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        with refused_as_conflict(_("The contact cannot be changed now.")), transaction.atomic():
            contact = services.update_contact(
                contact=contact,
                actor=audit.Actor.from_request(request),
                **incoming.validated_data,
            )
            record_object(
                Action.OBJECT_CHANGED, contact, request=request, changed=incoming.validated_data
            )
        contact = self.get_queryset().get(pk=contact.pk)
        contact.eligibility = eligibility_for(contact=contact)
        return Response(ContactDetailSerializer(contact).data)

    def perform_destroy(self, instance: Contact) -> None:
        with refused_as_conflict(_("The contact cannot be deleted.")):
            services.delete_contact(contact=instance)


# --- Imports -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("Contact imports of the partner's campaigns")),
    retrieve=extend_schema(
        summary=_("An import's state, progress, counts and first rejected rows"),
        responses=ContactImportDetailSerializer,
    ),
)
class ContactImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Uploads imported in the background (``POST /api/v1/campaigns/{id}/contacts/`` with
    a large file): progress, counts, each rejected row and each row kept with a warning."""

    queryset = ContactImport.objects.all()
    serializer_class = ContactImportSerializer
    partner_lookup = "campaign__partner"
    filter_backends = [PartnerScopedFilterBackend]
    filterset_fields = ["campaign", "state"]

    def get_serializer_class(self) -> type[ContactImportSerializer]:
        if self.action == "retrieve":
            return ContactImportDetailSerializer
        return ContactImportSerializer

    @extend_schema(
        summary=_("Every rejected row of an import, paged"),
        responses=ContactImportErrorSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def errors(self, request: Request, pk: str) -> Response:
        rows = self.get_object().row_errors.all()
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ContactImportErrorSerializer(page, many=True).data)

    @extend_schema(
        summary=_("Every row an import kept that lacks a variable the template needs, paged"),
        responses=ContactImportWarningSerializer(many=True),
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def warnings(self, request: Request, pk: str) -> Response:
        rows = self.get_object().row_warnings.all()
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ContactImportWarningSerializer(page, many=True).data)
