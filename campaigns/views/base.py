"""What the campaign API's viewsets share: conflicts, phone errors, the phone search and
the schema's common answers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer
from rest_framework.filters import BaseFilterBackend
from rest_framework.request import Request

from callcenter.access import ApiKeyUser, partner_of
from callcenter.api import Conflict
from campaigns import services
from campaigns.models import Campaign
from campaigns.phones import normalize_phone
from campaigns.serializers import ContactSerializer, ImportResultSerializer

# --- Campaigns ---------------------------------------------------------------------------


@contextlib.contextmanager
def refused_as_conflict(message: str | Promise) -> Iterator[None]:
    """A service's Refusal becomes 409 with ``message`` and each of its reasons."""
    try:
        yield
    except services.Refusal as exc:
        raise Conflict(message, reasons=exc.reasons) from exc


def acting_user(request: Request) -> User | None:
    """The user to record as author: none for an API key, which acts for its partner."""
    # The permissions let no anonymous request this far, and the project's users are
    # Django's own (no AUTH_USER_MODEL of its own).
    return None if isinstance(request.user, ApiKeyUser) else cast(User, request.user)


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
