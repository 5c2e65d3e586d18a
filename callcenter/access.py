"""Who a request to the partner API acts for, and what it may do.

Kept apart from callcenter/api.py because DRF imports these classes from its settings
while its own views module loads (a module importing DRF's views could not be named there).
Every app's API uses these, so they know no app: a request's partner is read from its user
(an API key's, or a partner member's), and the records that prove who a request is (API
keys, token versions) are checked in campaigns/authentication.py, beside the Partner.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from callcenter.logins import client_address

API_KEY_KEYWORD = "Api-Key"


class ApiKey(Protocol):
    """What the shared checks read of a partner's API key (campaigns.models.PartnerApiKey)."""

    prefix: str
    partner: Any
    can_manage_access: bool


# --- The models of the app that keeps partners -------------------------------------------

_models: dict[str, Any] = {}


def use_models(*, partner: type[Model], idempotency_key: type[Model]) -> None:
    """The partner model (whose objects own the API's rows) and the model that keeps the
    answers of POSTs sent with an ``Idempotency-Key``: named by the app that has them."""
    _models.update(partner=partner, idempotency_key=idempotency_key)


def model_of(role: str) -> Any:
    """The model named for ``role`` ("partner", "idempotency_key"); refused loudly when no
    app named one."""
    try:
        return _models[role]
    except KeyError:
        raise ImproperlyConfigured(
            f"No app named the API's {role} model (callcenter.access.use_models): is campaigns "
            "in INSTALLED_APPS?"
        ) from None


def partner_model() -> type[Model]:
    """The model whose objects own the API's rows (campaigns.models.Partner)."""
    return model_of("partner")


class ApiKeyUser:
    """``request.user`` for a request made with a partner's API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.partner = api_key.partner

    def __str__(self) -> str:
        return f"{API_KEY_KEYWORD} {self.api_key.prefix}"

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False


def partner_of(request: Request) -> Any:
    """The partner (campaigns.models.Partner) ``request`` acts for; None for staff acting
    across partners (and for anonymous requests, which the permissions turn away)."""
    # Worked out once per request, and kept on it (DRF's Request takes any attribute).
    cached: Any = request
    if not hasattr(cached, "_callcenter_partner"):
        user = request.user
        if isinstance(user, ApiKeyUser):
            partner = user.partner
        else:
            membership = getattr(user, "partner_membership", None)
            partner = membership.partner if membership is not None else None
        cached._callcenter_partner = partner
    return cached._callcenter_partner


def is_staff_request(request: Request) -> bool:
    """A staff user acting across partners."""
    return bool(request.user and request.user.is_staff) and partner_of(request) is None


# What a request needs by default, by method: staff roles (the viewer, operator and
# administrator groups) hold the same Django permissions in the API as in the admin.
_STAFF_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


def staff_permission(request: Request, view: Any) -> str | None:
    """The Django permission a staff request needs: the view's ``staff_permissions``
    entry for its action (a permission, or one per method), else the model's view, add,
    change or delete permission by method ("add" for creating, "change" for other POSTs)."""
    declared = getattr(view, "staff_permissions", {}).get(getattr(view, "action", ""))
    if isinstance(declared, dict):
        declared = declared.get(request.method or "")
    if declared:
        return declared
    if not hasattr(view, "get_queryset"):
        return None  # a view of no model (the schema): being staff is enough
    model = view.get_queryset().model
    if request.method == "POST":
        verb = "add" if view.action == "create" else "change"
    else:
        verb = _STAFF_ACTIONS.get(request.method or "", "change")
    return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"


def staff_may(request: Request, view: Any) -> bool:
    """Whether a staff user's role allows this request; a refusal names the permission."""
    needed = staff_permission(request, view)
    if needed is None or request.user.has_perm(needed):
        return True
    raise exceptions.PermissionDenied(
        _("Your staff role does not allow this (it needs the permission “%(permission)s”).")
        % {"permission": needed}
    )


class IsPartnerOrStaff(BasePermission):
    """Partner users and keys of an active partner, and staff."""

    message = _("This account does not act for any partner.")

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if is_staff_request(request):
            return staff_may(request, view)
        partner = partner_of(request)
        if partner is not None and not partner.is_active:
            raise exceptions.PermissionDenied(_("This partner is deactivated."))
        return partner is not None


class IsPartner(IsPartnerOrStaff):
    """Partner users and keys only: what staff do in the admin instead."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_staff_request(request):
            raise exceptions.PermissionDenied(_("Only a partner's users and keys may do this."))
        return super().has_permission(request, view)


MANAGE_ACCESS_SCOPE = "can_manage_access"


def scope_refusal() -> exceptions.PermissionDenied:
    """403 naming the scope an API key lacks to manage access."""
    return exceptions.PermissionDenied(
        _(
            "This API key lacks the scope “%(scope)s”: API keys and webhook endpoints are "
            "managed by a partner user (logged in) or a key given that scope."
        )
        % {"scope": MANAGE_ACCESS_SCOPE},
        code="scope_required",
    )


class CanManageAccess(BasePermission):
    """Users, and API keys given the ``can_manage_access`` scope: a leaked ordinary key
    cannot make keys, revoke the partner's others, or read and redirect its webhooks."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, ApiKeyUser) and not user.api_key.can_manage_access:
            raise scope_refusal()
        return True


class IsStaff(BasePermission):
    """Staff acting across partners only."""

    message = _("Only staff may do this.")

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated and is_staff_request(request)):
            return False
        return staff_may(request, view)


class PartnerRateThrottle(SimpleRateThrottle):
    """Each partner (or staff user, or anonymous address) has its own request budget,
    ``API_THROTTLE_RATE``, shared by every web process through the cache."""

    scope = "partner"

    def get_rate(self) -> str:
        return settings.API_THROTTLE_RATE

    def get_ident(self, request: Request) -> str:
        # Never DRF's own, which keys anonymous callers on X-Forwarded-For as sent.
        return client_address(request) or "unknown"

    def get_cache_key(self, request: Request, view: Any) -> str:
        partner = partner_of(request) if request.user.is_authenticated else None
        if partner is not None:
            ident = f"partner-{partner.pk}"
        elif request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"address-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
