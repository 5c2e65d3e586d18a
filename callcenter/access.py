"""Who a request to the partner API acts for, and what it may do.

Kept apart from callcenter/api.py because DRF imports these classes from its settings
while its own views module loads (a module importing DRF's views could not be named there).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from callcenter.logins import client_address, forget_failures, lockout_message, lockout_wait
from campaigns.models import Partner, PartnerApiKey

API_KEY_KEYWORD = "Api-Key"
# How often a key's "last used" moment is written: not on every request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


class ApiKeyUser:
    """``request.user`` for a request made with a partner's API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: PartnerApiKey) -> None:
        self.api_key = api_key
        self.partner = api_key.partner

    def __str__(self) -> str:
        return f"{API_KEY_KEYWORD} {self.api_key.prefix}"

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False


class PartnerApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <key>``: a partner's hashed, revocable server key."""

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, PartnerApiKey] | None:
        scheme, _sep, key = get_authorization_header(request).decode("latin-1").partition(" ")
        if scheme.lower() != API_KEY_KEYWORD.lower():
            return None
        key = key.strip()
        prefix = key.partition(".")[0]
        api_key = (
            PartnerApiKey.objects.filter(prefix=prefix, revoked=False)
            .select_related("partner")
            .first()
            if prefix
            else None
        )
        if api_key is None or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed(_("The API key is not valid or was revoked."))
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed(_("The API key has expired."))
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            PartnerApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return API_KEY_KEYWORD


def partner_of(request: Request) -> Partner | None:
    """The partner ``request`` acts for; None for staff acting across partners (and for
    anonymous requests, which the permissions turn away)."""
    if not hasattr(request, "_callcenter_partner"):
        user = request.user
        if isinstance(user, ApiKeyUser):
            partner = user.partner
        else:
            membership = getattr(user, "partner_membership", None)
            partner = membership.partner if membership is not None else None
        request._callcenter_partner = partner
    return request._callcenter_partner


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
    declared = getattr(view, "staff_permissions", {}).get(getattr(view, "action", None))
    if isinstance(declared, dict):
        declared = declared.get(request.method)
    if declared:
        return declared
    if not hasattr(view, "get_queryset"):
        return None  # a view of no model (the schema): being staff is enough
    model = view.get_queryset().model
    if request.method == "POST":
        verb = "add" if view.action == "create" else "change"
    else:
        verb = _STAFF_ACTIONS.get(request.method, "change")
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


class IsStaff(BasePermission):
    """Staff acting across partners only."""

    message = _("Only staff may do this.")

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated and is_staff_request(request)):
            return False
        return staff_may(request, view)


class LoginLockedOut(exceptions.APIException):
    """Too many failed logins for this username or address: 429 with ``Retry-After``
    (DRF's exception handler sends ``wait`` as that header)."""

    status_code = 429
    default_code = "login_locked"

    def __init__(self, *, wait: int) -> None:
        self.wait = wait
        super().__init__(lockout_message(wait))


class TokenSerializer(TokenObtainPairSerializer):
    """A JWT pair for a user who acts for an active partner, or for staff; a username or
    address locked out by django-axes (callcenter/logins.py) gets 429 instead."""

    default_error_messages = {
        "no_partner": _("This user does not act for any partner."),
        "inactive_partner": _("This partner is deactivated."),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No longer than a username can be: refused here (400, naming the field) rather than
        # recorded as a failed login, whose column would not hold it.
        user_model = get_user_model()
        self.fields[self.username_field] = serializers.CharField(
            write_only=True,
            max_length=user_model._meta.get_field(user_model.USERNAME_FIELD).max_length,
        )

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        request = self.context["request"]
        try:
            data = super().validate(attrs)
        except exceptions.AuthenticationFailed:
            # Axes' backend refused (or this failure reached the limit): it flags the request.
            if getattr(request, "axes_locked_out", False):
                raise LoginLockedOut(wait=lockout_wait(request)) from None
            raise
        # The password was right: this username's failures are forgotten, as after an admin
        # login (simplejwt sends no user_logged_in signal for axes to see).
        forget_failures(username=self.user.get_username())
        membership = getattr(self.user, "partner_membership", None)
        if membership is None and not self.user.is_staff:
            raise exceptions.PermissionDenied(self.error_messages["no_partner"])
        if membership is not None and not membership.partner.is_active:
            raise exceptions.PermissionDenied(self.error_messages["inactive_partner"])
        return data


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
