"""Partners (staff), a partner's API keys, and logging out; the schema's authentication
schemes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenViewBase

from audit.admin_log import record_object
from audit.models import Action
from callcenter.access import (
    MANAGE_ACCESS_SCOPE,
    ApiKeyUser,
    CanManageAccess,
    IsPartner,
    IsStaff,
    partner_of,
)
from callcenter.api import ScopedViewSet
from campaigns import services
from campaigns.authentication import LogoutSerializer
from campaigns.models import Partner, PartnerApiKey
from campaigns.serializers import (
    ApiKeySerializer,
    CreatedApiKeySerializer,
    OnboardedPartnerSerializer,
    PartnerOnboardingSerializer,
    PartnerSerializer,
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
        with transaction.atomic():
            api_key, key = services.create_api_key(
                partner=partner_of(request), created_by_key=by_key, **incoming.validated_data
            )
            record_object(
                Action.OBJECT_CREATED, api_key, request=request, changed=incoming.validated_data
            )
        # Shown once, in this answer: carried on the row for the serializer, never stored.
        api_key.key = key  # type: ignore[attr-defined]
        return Response(CreatedApiKeySerializer(api_key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ApiKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, prefix: str) -> Response:
        with transaction.atomic():
            api_key = services.revoke_api_key(api_key=self.get_object())
            record_object(Action.OBJECT_CHANGED, api_key, request=request, changed=["revoked"])
        return Response(ApiKeySerializer(api_key).data)
