"""The partner's campaigns: settings, their life (start, pause, resume, cancel) and their
contacts."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.serializers import BaseSerializer

from audit import services as audit
from audit.admin_log import AuditedViewSetMixin
from callcenter.api import ScopedModelViewSet
from callcenter.filters import PartnerScopedFilterBackend
from callcenter.parsers import JSONParser, MultiPartParser
from campaigns import imports, services
from campaigns.models import BASIS_FIELDS, Campaign, Contact
from campaigns.reports import abandonment_of
from campaigns.serializers import (
    MAX_BATCH_ITEMS,
    CampaignMoveSerializer,
    CampaignSerializer,
    ContactImportSerializer,
    ContactInputSerializer,
    ContactSerializer,
    ContactUploadSerializer,
    ImportResultSerializer,
)
from campaigns.views.base import (
    ADDED,
    CONFLICT,
    NO_CONTENT,
    PhoneSearchFilter,
    acting_user,
    phone_errors,
    refused_as_conflict,
    scoped_campaigns,
)


def _lifecycle_schema(
    summary: str | Promise, answer: type[CampaignSerializer] = CampaignSerializer
) -> Any:
    return extend_schema(summary=summary, request=None, responses={200: answer, 409: CONFLICT})


@extend_schema_view(
    update=extend_schema(
        summary=_("Replace a campaign's settings (draft or paused only)"),
        responses={200: CampaignSerializer, 409: CONFLICT},
    ),
    partial_update=extend_schema(
        summary=_("Change some of a campaign's settings (draft or paused only)"),
        responses={200: CampaignSerializer, 409: CONFLICT},
    ),
    destroy=extend_schema(
        summary=_("Delete a draft campaign"), responses={204: NO_CONTENT, 409: CONFLICT}
    ),
)
class CampaignViewSet(AuditedViewSetMixin, ScopedModelViewSet):
    """The partner's campaigns. Settings change only while a campaign is a draft or
    paused; it moves through its life with the start, pause, resume and cancel actions.

    ``contacts``: its contacts, listed or added. Contacts may be added until the campaign
    is over (completed or cancelled): to a running one too, whose dispatcher picks them up
    on its next tick.
    """

    queryset = Campaign.objects.select_related("partner")
    staff_permissions = {
        "start": "campaigns.control_campaign",
        "pause": "campaigns.control_campaign",
        "resume": "campaigns.control_campaign",
        "cancel": "campaigns.control_campaign",
        "contacts": {"POST": "campaigns.add_contact"},
    }
    serializer_class = CampaignSerializer
    filter_backends = [PartnerScopedFilterBackend, OrderingFilter]
    filterset_fields = ["state"]
    ordering_fields = ["created_at", "updated_at", "name", "state", "starts_at"]
    ordering = ["-created_at"]

    def paginate_queryset(self, queryset: Any) -> Any:
        # A page of campaigns counts their abandoned calls in one more query, each call read
        # once: counted in the list's query (two subqueries a campaign, one for each count,
        # as the admin's sortable column has them) it read every call twice.
        page = super().paginate_queryset(queryset)
        if page is not None and self.action == "list":
            figures = abandonment_of(campaign.pk for campaign in page)
            for campaign in page:
                campaign.abandoned_calls = figures[campaign.pk].abandoned
                campaign.live_answered_calls = figures[campaign.pk].answered
        return page

    def perform_create(self, serializer: BaseSerializer[Campaign]) -> None:
        serializer.instance = services.create_campaign(**serializer.validated_data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # The state first: a running campaign answers 409 whatever the body holds.
        with refused_as_conflict(_("The campaign cannot be changed now.")):
            problems = services.edit_problems(campaign=self.get_object())
            if problems:
                raise services.CampaignStateError(*problems)
            return super().update(request, *args, **kwargs)

    def perform_update(self, serializer: BaseSerializer[Campaign]) -> None:
        serializer.instance = services.update_campaign(
            campaign=cast(Campaign, serializer.instance),  # an update has its campaign
            **serializer.validated_data,
        )

    def perform_destroy(self, instance: Campaign) -> None:
        with refused_as_conflict(_("The campaign cannot be deleted.")):
            services.delete_campaign(campaign=instance)

    def _answer(self, campaign: Campaign) -> Response:
        return Response(CampaignSerializer(campaign, context=self.get_serializer_context()).data)

    def _moved(self, campaign: Campaign) -> Response:
        # Read by CampaignMoveSerializer.warnings, never stored.
        campaign.warnings = services.start_warnings(campaign=campaign)  # type: ignore[attr-defined]
        return Response(
            CampaignMoveSerializer(campaign, context=self.get_serializer_context()).data
        )

    @_lifecycle_schema(
        _("Start a draft campaign (scheduled when its start is ahead)"), CampaignMoveSerializer
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot start.")):
            return self._moved(
                services.start_campaign(
                    campaign=self.get_object(), actor=audit.Actor.from_request(request)
                )
            )

    @_lifecycle_schema(_("Pause a running campaign: calls going on finish"))
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot be paused.")):
            return self._answer(
                services.pause_campaign(
                    campaign=self.get_object(), actor=audit.Actor.from_request(request)
                )
            )

    @_lifecycle_schema(_("Resume a paused campaign"), CampaignMoveSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot resume.")):
            return self._moved(
                services.resume_campaign(
                    campaign=self.get_object(), actor=audit.Actor.from_request(request)
                )
            )

    @_lifecycle_schema(_("Cancel a campaign for good"))
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot be cancelled.")):
            return self._answer(
                services.cancel_campaign(
                    campaign=self.get_object(), actor=audit.Actor.from_request(request)
                )
            )

    # --- Contacts --------------------------------------------------------------------

    @extend_schema(
        methods=["GET"],
        summary=_("The campaign's contacts"),
        responses=ContactSerializer(many=True),
        filters=True,
    )
    @extend_schema(
        methods=["POST"],
        summary=_("Add contacts: one (object), many (array, up to 10,000) or a CSV file"),
        description=_(
            "A JSON object adds one contact (201 created, 200 merged into an existing one). "
            "A JSON array adds each item like one object and answers the counts with every "
            "rejected item (row n: the n-th item); the good ones are added. A CSV file "
            "(multipart, field file) up to CONTACT_IMPORT_SYNC_MAX_BYTES is imported at once "
            "(answered like an array, rows numbered as lines); a larger one is imported in "
            "the background: 202 with the import, whose progress /api/v1/imports/{id}/ shows "
            "(its URL also in Location). A completed or cancelled campaign takes no contacts "
            "(409)."
        ),
        request={
            "application/json": PolymorphicProxySerializer(
                component_name="ContactAddition",
                serializers=[ContactInputSerializer, ContactInputSerializer(many=True)],
                resource_type_field_name=None,
                many=False,
            ),
            "multipart/form-data": ContactUploadSerializer,
        },
        responses={200: ADDED, 201: ADDED, 202: ContactImportSerializer, 409: CONFLICT},
    )
    @action(
        detail=True,
        methods=["get", "post"],
        parser_classes=[JSONParser, MultiPartParser],
        # This action's queryset, filters and serializer are the contacts'.
        queryset=Contact.objects.all(),
        partner_lookup="campaign__partner",
        serializer_class=ContactSerializer,
        filter_backends=[PartnerScopedFilterBackend, PhoneSearchFilter, OrderingFilter],
        filterset_fields=["state", "external_id"],
        ordering_fields=["id", "created_at", "updated_at", "next_attempt_at", "attempts"],
        ordering=["id"],
    )
    def contacts(self, request: Request, pk: str) -> Response:
        campaign = get_object_or_404(scoped_campaigns(request), pk=pk)
        self.check_object_permissions(request, campaign)
        self.search_region = campaign.phone_region
        if request.method == "GET":
            contacts = self.filter_queryset(self.get_queryset().filter(campaign=campaign))
            page = self.paginate_queryset(contacts)
            return self.get_paginated_response(ContactSerializer(page, many=True).data)
        with refused_as_conflict(_("The campaign takes no more contacts.")):
            services.check_accepts_contacts(campaign=campaign)
        if request.content_type.startswith("multipart/"):
            return self._upload(request, campaign)
        if isinstance(request.data, list):
            return self._add_many(request, request.data, campaign)
        if isinstance(request.data, dict):
            return self._add_one(request, request.data, campaign)
        raise ValidationError(
            _(
                "Send a contact (a JSON object), contacts (a JSON array) or a CSV file "
                "(multipart, field file)."
            )
        )

    def _add_one(self, request: Request, data: dict[str, Any], campaign: Campaign) -> Response:
        incoming = ContactInputSerializer(data=data)
        incoming.is_valid(raise_exception=True)
        fields = dict(incoming.validated_data)
        basis = {name: fields.pop(name) for name in BASIS_FIELDS if name in fields}
        with phone_errors():
            contact, created = services.add_contact(
                campaign=campaign, **fields, basis=basis, actor=audit.Actor.from_request(request)
            )
        return Response(
            ContactSerializer(contact).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def _add_many(self, request: Request, rows: list[Any], campaign: Campaign) -> Response:
        if len(rows) > MAX_BATCH_ITEMS:
            raise ValidationError(
                _(
                    "At most %(limit)s contacts per request, not %(count)s: send them in "
                    "parts, or upload a CSV file."
                )
                % {"limit": MAX_BATCH_ITEMS, "count": len(rows)}
            )
        result = imports.import_rows(campaign=campaign, rows=rows)
        return self._imported(request, campaign, result, via="json")

    def _upload(self, request: Request, campaign: Campaign) -> Response:
        incoming = ContactUploadSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        upload = incoming.validated_data["file"]
        if upload.size <= settings.CONTACT_IMPORT_SYNC_MAX_BYTES:
            try:
                result = imports.import_csv(campaign=campaign, file=upload)
            except imports.ImportFileError as exc:
                raise ValidationError({"file": [exc.message]}) from exc
            return self._imported(request, campaign, result, via="csv")
        contact_import = imports.create_import(
            campaign=campaign, file=upload, by=acting_user(request)
        )
        _record_import(request, campaign, contact_import.pk, {"via": "csv", "background": True})
        answer = ContactImportSerializer(contact_import, context=self.get_serializer_context())
        location = reverse(
            "contact-import-detail", kwargs={"pk": contact_import.pk}, request=request
        )
        return Response(
            answer.data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )

    def _imported(
        self, request: Request, campaign: Campaign, result: imports.ImportResult, *, via: str
    ) -> Response:
        _record_import(
            request,
            campaign,
            "",
            {
                "via": via,
                "rows": result.total_rows,
                "created": result.created,
                "merged": result.merged,
                "rejected": result.rejected,
            },
        )
        return Response(
            ImportResultSerializer(result).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


def _record_import(
    request: Request, campaign: Campaign, import_id: int | str, details: dict[str, Any]
) -> None:
    """A partner's import of contacts, in the audit trail: who sent it, from where, into
    which campaign, and what came of it (never a row's values)."""
    audit.record(
        audit.Action.OBJECT_CREATED,
        partner_id=campaign.partner_id,
        object_type="campaigns.contactimport",
        object_id=import_id,
        actor=audit.Actor.from_request(request),
        details={"campaign": campaign.pk, **details},
    )
