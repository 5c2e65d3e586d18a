"""What every endpoint of the partner REST API (/api/v1/) shares.

Who a request acts for: a partner user (JWT) or an API key acts for exactly one partner;
a staff user without a partner acts across partners. Viewsets scope their querysets with
``PartnerScopedMixin``, so another partner's object is simply not found (404).
Errors have one shape (``exception_handler``); each partner has its own request budget
(``PartnerRateThrottle``); a POST sent again with the same ``Idempotency-Key`` gets the
first answer back instead of creating twice (``IdempotencyMixin``).
The routes themselves are registered in callcenter/urls.py, the API's table of contents.

Every app's API builds on this module, so it imports no app: the app that keeps the
partners and the kept answers names their models (callcenter.access.use_models).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.defaults import page_not_found
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.pagination import BasePagination, PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from callcenter.access import model_of, partner_model, partner_of

router = DefaultRouter()

IDEMPOTENCY_HEADER = "Idempotency-Key"


# --- Scoping -----------------------------------------------------------------------------


class PartnerScopedMixin:
    """Viewsets see only the partner's own rows: ``partner_lookup`` is the path from the
    queryset's model to its partner (``"partner"``, ``"campaign__partner"``...)."""

    partner_lookup = "partner"

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()  # type: ignore[misc]
        partner = partner_of(self.request)  # type: ignore[attr-defined]
        if partner is None:
            return queryset  # staff (the permissions keep everyone else out)
        return queryset.filter(**{self.partner_lookup: partner})


class PartnerScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference to another object of the same partner: others' ids are unknown ids."""

    def __init__(self, *, partner_lookup: str = "partner", **kwargs: Any) -> None:
        self.partner_lookup = partner_lookup
        super().__init__(**kwargs)

    def get_queryset(self) -> Any:
        queryset: Any = super().get_queryset()  # given: the field is writable
        request = self.context.get("request")
        partner = partner_of(request) if request is not None else None
        if partner is None or queryset is None:
            return queryset
        return queryset.filter(**{self.partner_lookup: partner})


class OwnerField(serializers.PrimaryKeyRelatedField):
    """A partner, by id, among all partners."""

    def get_queryset(self) -> Any:
        return partner_model()._default_manager.all()


class PartnerOwnedSerializer(serializers.ModelSerializer):
    """For models with a ``partner``: partners write their own; staff name one on create.
    The partner of an existing object never changes."""

    partner = OwnerField(
        required=False,
        help_text=_("Staff only: the partner it belongs to. Partners always write their own."),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        partner = partner_of(self.context["request"])
        given = attrs.pop("partner", None)
        if self.instance is not None:
            return super().validate(attrs)
        if partner is not None:
            if given is not None and given != partner:
                raise serializers.ValidationError(
                    {"partner": _("You can only create objects of your own partner.")}
                )
            attrs["partner"] = partner
        elif given is None:
            raise serializers.ValidationError(
                {"partner": _("Staff must say which partner this belongs to.")}
            )
        else:
            attrs["partner"] = given
        return super().validate(attrs)


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


# --- Limits and errors -------------------------------------------------------------------


class Conflict(exceptions.APIException):
    """``reasons``: every why, each one entry of the error body's ``errors``."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The request conflicts with the current state.")
    default_code = "conflict"

    def __init__(
        self, detail: Any = None, code: str | None = None, *, reasons: Sequence[str] = ()
    ) -> None:
        super().__init__(detail, code)
        self.reasons = [str(reason) for reason in reasons]


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = _("The request cannot be processed.")
    default_code = "unprocessable"


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as ``{"code", "message", "errors": [{"field", "code", "message"}]}``:
    ``errors`` lists each invalid field (``contacts.3.phone``; ``null`` for the request as a
    whole)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = list(_field_errors(exc.detail, path=None))
        body = {
            "code": "invalid",
            "message": errors[0]["message"]
            if len(errors) == 1
            else str(_("The request has errors.")),
            "errors": errors,
        }
    else:
        detail = getattr(exc, "detail", response.data)
        if isinstance(detail, dict):
            detail = detail.get("detail", detail)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        errors = [
            {"field": None, "code": str(code), "message": reason}
            for reason in getattr(exc, "reasons", ())
        ]
        body = {"code": str(code), "message": str(detail), "errors": errors}
    response.data = body
    return response


def _field_errors(detail: Any, *, path: str | None) -> Iterator[dict[str, Any]]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                yield from _field_errors(value, path=path)
            else:
                yield from _field_errors(value, path=f"{path}.{key}" if path else str(key))
    elif isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail) for item in detail):
            for item in detail:
                yield {"field": path, "code": item.code, "message": str(item)}
        else:
            for index, item in enumerate(detail):
                if item:
                    yield from _field_errors(item, path=f"{path}.{index}" if path else str(index))
    else:
        yield {"field": path, "code": getattr(detail, "code", "invalid"), "message": str(detail)}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "errors"],
    "properties": {
        "code": {"type": "string", "description": "Machine-readable error code."},
        "message": {"type": "string", "description": "What went wrong, for a person."},
        "errors": {
            "type": "array",
            "description": "Each invalid field; field is null for the request as a whole.",
            "items": {
                "type": "object",
                "required": ["field", "code", "message"],
                "properties": {
                    "field": {"type": "string", "nullable": True},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
_ERROR_RESPONSES = {
    "400": _("Invalid request: see errors."),
    "401": _("Missing or invalid credentials."),
    "403": _("Not allowed for these credentials."),
    "404": _("No such object for this partner (or no such page)."),
    "406": _("No representation of the answer matches the Accept header."),
    "409": _("A request with this Idempotency-Key is still being processed."),
    "413": _("The request body is too large."),
    "422": _("The Idempotency-Key was used with a different request."),
    "429": _("Too many requests: wait the seconds in Retry-After."),
}


def add_error_responses(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the shared error body, declared on every
    operation for the errors it can answer with."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            # 406: an Accept header that JSON (or the endpoint's file types) cannot meet.
            codes = ["400", "401", "403", "406", "429"]
            if "{" in path or method == "get":  # an unknown object, or a page past the end
                codes.append("404")
            if method == "post":
                codes += ["409", "413", "422"]
            elif method in ("put", "patch"):
                codes.append("413")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code, {"description": str(_ERROR_RESPONSES[code]), "content": reference}
                )
    return result


# --- Idempotency -------------------------------------------------------------------------


class _Replay(Exception):
    def __init__(self, record: Any) -> None:
        self.record = record


class ApiViewMixin:
    """Limits on the body and ``Idempotency-Key`` on POST, for every API view.

    The first POST with a key is processed and its answer kept (for
    ``IDEMPOTENCY_KEY_HOURS``); the same key with the same request returns that answer
    again (header ``Idempotent-Replayed: true``); with a different request it is refused
    (422); while the first is still running, 409. An answer of 5xx is not kept, so the
    client can try again with the same key.
    """

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self._idempotency: Any = None  # the IdempotencyKey row of this POST, if it has one
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > _body_limit(request):
            raise RequestTooLarge(
                _("The request body has %(size)s bytes; the limit is %(limit)s.")
                % {"size": length, "limit": _body_limit(request)}
            )
        # Times in and out of the API are UTC (RFC 3339 with "Z"): unambiguous for
        # machines, and free of the local zone's historical offsets.
        timezone.activate(datetime.UTC)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        if request.method != "POST" or not key:
            return
        if len(key) > 255:
            raise exceptions.ValidationError(
                {IDEMPOTENCY_HEADER: _("Use a key of at most 255 characters.")}
            )
        scope = _idempotency_scope(request)
        fingerprint = _fingerprint(request)
        try:
            with transaction.atomic():
                self._idempotency = model_of("idempotency_key")._default_manager.create(
                    scope=scope, key=key, fingerprint=fingerprint
                )
        except IntegrityError:
            keys = model_of("idempotency_key")._default_manager
            record = keys.filter(scope=scope, key=key).first()
            if record is None:  # the first request just failed and let the key go
                raise Conflict(_("Retry the request.")) from None
            if record.fingerprint != fingerprint:
                raise UnprocessableEntity(
                    _("This Idempotency-Key was already used with a different request.")
                ) from None
            if record.response_status is None:
                raise Conflict(
                    _("A request with this Idempotency-Key is still being processed.")
                ) from None
            raise _Replay(record) from None

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Replay):
            record = exc.record
            return Response(
                record.response_body,
                status=record.response_status,
                headers={**record.response_headers, "Idempotent-Replayed": "true"},
            )
        try:
            return super().handle_exception(exc)  # type: ignore[misc]
        except Exception:
            # An unhandled error (a 500): let the key go, so that the client may retry.
            held, self._idempotency = getattr(self, "_idempotency", None), None
            if held is not None:
                held.delete()
            raise

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        timezone.deactivate()
        record = getattr(self, "_idempotency", None)
        if record is None:
            return response
        self._idempotency = None
        if response.status_code >= 500:
            record.delete()
            return response
        data = getattr(response, "data", None)
        record.response_status = response.status_code
        record.response_body = json.loads(JSONRenderer().render(data)) if data is not None else None
        record.response_headers = {
            name: response[name]
            for name in ("Location", "Retry-After")
            if response.has_header(name)
        }
        record.save(update_fields=["response_status", "response_body", "response_headers"])
        return response


def _body_limit(request: Request) -> int:
    if request.content_type.startswith("multipart/"):
        return settings.CONTACT_IMPORT_MAX_BYTES
    return settings.API_MAX_BODY_BYTES


def _idempotency_scope(request: Request) -> str:
    partner = partner_of(request)
    if partner is not None:
        return f"partner:{partner.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    if request.content_type.startswith("multipart/"):
        # Hashed as parsed: Django does not keep a multipart body in memory.
        data: Any = request.data  # a QueryDict, parsed from the multipart body
        for name in sorted(data.keys()):
            if name in request.FILES:
                continue
            digest.update(f"{name}={data.getlist(name)!r}\n".encode())
        for name in sorted(request.FILES.keys()):
            for upload in request.FILES.getlist(name):
                digest.update(f"{name}:{upload.name}:{upload.size}\n".encode())
                for chunk in upload.chunks():
                    digest.update(chunk)
                upload.seek(0)
    else:
        digest.update(request.body)
    return digest.hexdigest()


def purge_idempotency_keys(*, now: datetime.datetime | None = None) -> int:
    """Forget kept answers older than ``IDEMPOTENCY_KEY_HOURS``. Returns how many."""
    cutoff = (now or timezone.now()) - datetime.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    keys = model_of("idempotency_key")._default_manager
    deleted, _by_model = keys.filter(created_at__lt=cutoff).delete()
    return deleted


class ScopedViewSet(ApiViewMixin, PartnerScopedMixin, viewsets.GenericViewSet):
    """Base of the API's viewsets: scoped to the partner, idempotent POSTs, paginated.
    Add DRF's model mixins for the operations a resource offers."""

    pagination_class: type[BasePagination] | None = Pagination


class ScopedModelViewSet(ApiViewMixin, PartnerScopedMixin, viewsets.ModelViewSet):
    """A resource with every operation, scoped to the partner."""

    pagination_class = Pagination


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 for a URL no route matches: the API's error body under /api/, the
    usual page elsewhere."""
    if request.path.startswith("/api/"):
        body = {"code": "not_found", "message": str(_("No such resource.")), "errors": []}
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)
