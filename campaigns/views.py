"""The partner API over partners, keys, campaigns, contacts and do-not-call lists."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponseBase
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.filters import BaseFilterBackend, OrderingFilter
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework_simplejwt.views import TokenViewBase

from callcenter.access import (
    MANAGE_ACCESS_SCOPE,
    ApiKeyUser,
    CanManageAccess,
    IsPartner,
    IsPartnerOrStaff,
    IsStaff,
    is_staff_request,
    partner_of,
)
from callcenter.api import Conflict, ScopedModelViewSet, ScopedViewSet
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
from callcenter.parsers import JSONParser, MultiPartParser
from campaigns import deliveries, imports, services
from campaigns.authentication import LogoutSerializer
from campaigns.eligibility import eligibility_for
from campaigns.exports import contact_table
from campaigns.filters import ContactFilter
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    DoNotCall,
    Partner,
    PartnerApiKey,
    WebhookDelivery,
    WebhookEndpoint,
)
from campaigns.phones import normalize_phone
from campaigns.serializers import (
    MAX_BATCH_ITEMS,
    ApiKeySerializer,
    CampaignMoveSerializer,
    CampaignSerializer,
    ContactDetailSerializer,
    ContactImportDetailSerializer,
    ContactImportErrorSerializer,
    ContactImportSerializer,
    ContactImportWarningSerializer,
    ContactInputSerializer,
    ContactSerializer,
    ContactUpdateSerializer,
    ContactUploadSerializer,
    CreatedApiKeySerializer,
    DoNotCallBatchSerializer,
    DoNotCallBulkSerializer,
    DoNotCallInputSerializer,
    DoNotCallSerializer,
    ImportResultSerializer,
    OnboardedPartnerSerializer,
    PartnerOnboardingSerializer,
    PartnerSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
)

# --- Authentication ----------------------------------------------------------------------


class TokenScheme(SimpleJWTScheme):
    """Our JWT authentication is simplejwt's, checked further: the same bearer scheme."""

    target_class = "campaigns.authentication.TokenAuthentication"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "campaigns.authentication.PartnerApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Api-Key <key>",
        }


class LogoutView(TokenViewBase):
    """End a user's JWTs: the refresh token given, its access tokens, and every other
    token of the same user (on every device), at once."""

    serializer_class = LogoutSerializer

    @extend_schema(request=LogoutSerializer, responses={204: None})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.end_api_tokens(user=serializer.validated_data["user"])
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Partners and keys -------------------------------------------------------------------


class PartnerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Partners (staff only). Creating one also creates its first user and API key."""

    queryset = Partner.objects.all()
    serializer_class = PartnerSerializer
    permission_classes = [IsStaff]
    partner_lookup = "pk"

    @extend_schema(request=PartnerOnboardingSerializer, responses={201: OnboardedPartnerSerializer})
    def create(self, request: Request) -> Response:
        incoming = PartnerOnboardingSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        onboarding = services.onboard_partner(**incoming.validated_data)
        answer = OnboardedPartnerSerializer(
            {
                "partner": onboarding.partner,
                "username": onboarding.user.get_username(),
                "api_key": onboarding.api_key,
                "password": onboarding.password,
            }
        )
        return Response(answer.data, status=status.HTTP_201_CREATED)


class ApiKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    """The partner's API keys: a new key is shown once; revoking one is for good, and
    revokes every key it made. A partner user (logged in) or a key with the scope
    ``can_manage_access`` only; only a user grants that scope."""

    queryset = PartnerApiKey.objects.select_related("created_by_key")
    serializer_class = ApiKeySerializer
    # Staff manage keys in the admin; here each partner manages its own.
    permission_classes = [IsPartner, CanManageAccess]
    lookup_field = "prefix"

    @extend_schema(responses={201: CreatedApiKeySerializer})
    def create(self, request: Request) -> Response:
        incoming = ApiKeySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        by_key = request.user.api_key if isinstance(request.user, ApiKeyUser) else None
        if by_key is not None and incoming.validated_data.get("can_manage_access"):
            raise PermissionDenied(
                _("Only a partner user (logged in) may give a key the scope “%(scope)s”.")
                % {"scope": MANAGE_ACCESS_SCOPE},
                code="scope_required",
            )
        api_key, key = services.create_api_key(
            partner=partner_of(request), created_by_key=by_key, **incoming.validated_data
        )
        api_key.key = key
        return Response(CreatedApiKeySerializer(api_key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ApiKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, prefix: str) -> Response:
        api_key = services.revoke_api_key(api_key=self.get_object())
        return Response(ApiKeySerializer(api_key).data)


# --- Campaigns ---------------------------------------------------------------------------


@contextlib.contextmanager
def refused_as_conflict(message: str) -> Iterator[None]:
    """A service's Refusal becomes 409 with ``message`` and each of its reasons."""
    try:
        yield
    except services.Refusal as exc:
        raise Conflict(message, reasons=exc.reasons) from exc


def acting_user(request: Request) -> AbstractBaseUser | None:
    """The user to record as author: none for an API key, which acts for its partner."""
    return None if isinstance(request.user, ApiKeyUser) else request.user


@contextlib.contextmanager
def phone_errors() -> Iterator[None]:
    """normalize_phone's errors name no field: they are the phone's."""
    try:
        yield
    except DjangoValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise
        raise DjangoValidationError({"phone": exc.error_list}) from exc


def scoped_campaigns(request: Request) -> QuerySet[Campaign]:
    """The campaigns ``request`` may see."""
    partner = partner_of(request)
    campaigns = Campaign.objects.all()
    return campaigns if partner is None else campaigns.filter(partner=partner)


class PhoneSearchFilter(BaseFilterBackend):
    """``?search=``: a phone in any format (read in the view's ``search_region``), or else
    a part of one."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        search = request.query_params.get("search", "").strip()
        if not search:
            return queryset
        try:
            return queryset.filter(phone=normalize_phone(search, region=view.search_region))
        except DjangoValidationError:
            digits = re.sub(r"\D", "", search)
            return queryset.filter(phone__contains=digits or search)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "search",
                "required": False,
                "in": "query",
                "description": str(_("A phone number in any format, or part of one.")),
                "schema": {"type": "string"},
            }
        ]


CONFLICT = OpenApiResponse(
    response={"$ref": "#/components/schemas/Error"},
    description=_("Refused in the present state of things; errors lists every reason."),
)
NO_CONTENT = OpenApiResponse(description=_("Deleted."))
ADDED = PolymorphicProxySerializer(
    component_name="ContactsAdded",
    serializers=[ContactSerializer, ImportResultSerializer],
    resource_type_field_name=None,
    many=False,
)


def _lifecycle_schema(summary: str, answer: type[CampaignSerializer] = CampaignSerializer) -> Any:
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
class CampaignViewSet(ScopedModelViewSet):
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

    def perform_create(self, serializer: CampaignSerializer) -> None:
        serializer.instance = services.create_campaign(**serializer.validated_data)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # The state first: a running campaign answers 409 whatever the body holds.
        with refused_as_conflict(_("The campaign cannot be changed now.")):
            problems = services.edit_problems(campaign=self.get_object())
            if problems:
                raise services.CampaignStateError(*problems)
            return super().update(request, *args, **kwargs)

    def perform_update(self, serializer: CampaignSerializer) -> None:
        serializer.instance = services.update_campaign(
            campaign=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: Campaign) -> None:
        with refused_as_conflict(_("The campaign cannot be deleted.")):
            services.delete_campaign(campaign=instance)

    def _answer(self, campaign: Campaign) -> Response:
        return Response(CampaignSerializer(campaign, context=self.get_serializer_context()).data)

    def _moved(self, campaign: Campaign) -> Response:
        campaign.warnings = services.start_warnings(campaign=campaign)
        return Response(
            CampaignMoveSerializer(campaign, context=self.get_serializer_context()).data
        )

    @_lifecycle_schema(
        _("Start a draft campaign (scheduled when its start is ahead)"), CampaignMoveSerializer
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot start.")):
            return self._moved(services.start_campaign(campaign=self.get_object()))

    @_lifecycle_schema(_("Pause a running campaign: calls going on finish"))
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot be paused.")):
            return self._answer(services.pause_campaign(campaign=self.get_object()))

    @_lifecycle_schema(_("Resume a paused campaign"), CampaignMoveSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot resume.")):
            return self._moved(services.resume_campaign(campaign=self.get_object()))

    @_lifecycle_schema(_("Cancel a campaign for good"))
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        with refused_as_conflict(_("The campaign cannot be cancelled.")):
            return self._answer(services.cancel_campaign(campaign=self.get_object()))

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
            return self._add_many(request.data, campaign)
        if isinstance(request.data, dict):
            return self._add_one(request.data, campaign)
        raise ValidationError(
            _(
                "Send a contact (a JSON object), contacts (a JSON array) or a CSV file "
                "(multipart, field file)."
            )
        )

    def _add_one(self, data: dict[str, Any], campaign: Campaign) -> Response:
        incoming = ContactInputSerializer(data=data)
        incoming.is_valid(raise_exception=True)
        with phone_errors():
            contact, created = services.add_contact(campaign=campaign, **incoming.validated_data)
        return Response(
            ContactSerializer(contact).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def _add_many(self, rows: list[Any], campaign: Campaign) -> Response:
        if len(rows) > MAX_BATCH_ITEMS:
            raise ValidationError(
                _(
                    "At most %(limit)s contacts per request, not %(count)s: send them in "
                    "parts, or upload a CSV file."
                )
                % {"limit": MAX_BATCH_ITEMS, "count": len(rows)}
            )
        return self._imported(imports.import_rows(campaign=campaign, rows=rows))

    def _upload(self, request: Request, campaign: Campaign) -> Response:
        incoming = ContactUploadSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        upload = incoming.validated_data["file"]
        if upload.size <= settings.CONTACT_IMPORT_SYNC_MAX_BYTES:
            try:
                result = imports.import_csv(campaign=campaign, file=upload)
            except imports.ImportFileError as exc:
                raise ValidationError({"file": [exc.message]}) from exc
            return self._imported(result)
        contact_import = imports.create_import(
            campaign=campaign, file=upload, by=acting_user(request)
        )
        answer = ContactImportSerializer(contact_import, context=self.get_serializer_context())
        location = reverse(
            "contact-import-detail", kwargs={"pk": contact_import.pk}, request=request
        )
        return Response(
            answer.data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )

    def _imported(self, result: imports.ImportResult) -> Response:
        return Response(
            ImportResultSerializer(result).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
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
        with refused_as_conflict(_("The contact cannot be changed now.")):
            contact = services.update_contact(contact=contact, **incoming.validated_data)
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


# --- Do-not-call list --------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary=_("The do-not-call list")),
    retrieve=extend_schema(summary=_("A do-not-call entry")),
    destroy=extend_schema(
        summary=_("Allow calls to a number again"), responses={204: NO_CONTENT, 409: CONFLICT}
    ),
)
class DoNotCallViewSet(
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
        with phone_errors():
            entry, created = services.add_do_not_call(
                source=self._source(), by=acting_user(request), **incoming.validated_data
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
            source=self._source(), by=acting_user(request), **incoming.validated_data
        )
        return Response(DoNotCallBatchSerializer(batch).data)

    def perform_destroy(self, instance: DoNotCall) -> None:
        with refused_as_conflict(_("The number cannot be removed from the list.")):
            services.remove_do_not_call(entry=instance, by_staff=is_staff_request(self.request))


class WebhookEndpointViewSet(ScopedModelViewSet):
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
