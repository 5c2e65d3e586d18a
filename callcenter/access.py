"""Who a request to the partner API acts for, and what it may do.

Kept apart from callcenter/api.py because DRF imports these classes from its settings
while its own views module loads (a module importing DRF's views could not be named there).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import get_md5_hash_password

if TYPE_CHECKING:
    from django.db.models import Field

from callcenter.logins import client_address, forget_failures, lockout_message, lockout_wait
from campaigns.models import Partner, PartnerApiKey, TokenVersion

API_KEY_KEYWORD = "Api-Key"
# The JWT claim holding the user's token version when the token was issued.
TOKEN_VERSION_CLAIM = "ver"  # noqa: S105 (a claim name, not a secret)
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
        request._callcenter_partner = partner  # type: ignore[attr-defined]  # ours: memoised
    return request._callcenter_partner  # type: ignore[attr-defined]


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


# --- JWTs ---------------------------------------------------------------------------------
#
# A JWT is refused, access and refresh alike, once its user is deactivated (simplejwt's
# CHECK_USER_IS_ACTIVE), changed password (CHECK_REVOKE_TOKEN: the token carries a hash of
# the stored password hash, so every way of changing it counts, the admin's form and
# `changepassword` included) or logged out (the token version below).


def token_version_of(user: Any) -> int:
    """The user's current token version: tokens issued under an older one are ended."""
    return TokenVersion.objects.filter(user=user).values_list("version", flat=True).first() or 0


def check_token_is_current(token: Token, user: Any) -> None:
    """Refuse ``token`` (401) unless it was issued to ``user`` as it is now: active,
    with the same password, and not logged out since."""
    if not user.is_active:
        raise exceptions.AuthenticationFailed(_("This user is deactivated."), code="user_inactive")
    if token.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        raise exceptions.AuthenticationFailed(
            _("The user's password has changed since this token was issued: log in again."),
            code="password_changed",
        )
    # A token without the claim was issued before the user's first logout, at version 0.
    if token.get(TOKEN_VERSION_CLAIM, 0) != token_version_of(user):
        raise exceptions.AuthenticationFailed(
            _("This token was ended by a logout: log in again."), code="token_ended"
        )


def user_of_token(token: Token) -> Any:
    """The user ``token`` was issued to, if it is still current (else 401)."""
    user = (
        get_user_model()
        .objects.filter(**{jwt_settings.USER_ID_FIELD: token.get(jwt_settings.USER_ID_CLAIM)})
        .first()
    )
    if user is None:
        raise exceptions.AuthenticationFailed(
            _("This token's user no longer exists."), code="user_not_found"
        )
    check_token_is_current(token, user)
    return user


class TokenAuthentication(JWTAuthentication):
    """``Authorization: Bearer <access>``: simplejwt's JWT, refused at once (not at its
    expiry) after a logout, a password change or a deactivation."""

    def get_user(self, validated_token: Token) -> Any:
        user = super().get_user(validated_token)
        check_token_is_current(validated_token, user)
        return user


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

    @classmethod
    def get_token(cls, user: Any) -> Token:
        token = super().get_token(user)
        # Copied into every access token the refresh token gives.
        token[TOKEN_VERSION_CLAIM] = token_version_of(user)
        return token

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No longer than a username can be: refused here (400, naming the field) rather than
        # recorded as a failed login, whose column would not hold it.
        user_model = get_user_model()
        self.fields[self.username_field] = serializers.CharField(
            write_only=True,
            max_length=cast(  # USERNAME_FIELD names a concrete field, not a relation
                "Field[Any, Any]", user_model._meta.get_field(user_model.USERNAME_FIELD)
            ).max_length,
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
        user = self.user
        assert user is not None  # super().validate() sets it when the password is right
        forget_failures(username=user.get_username())
        membership = getattr(user, "partner_membership", None)
        if membership is None and not user.is_staff:
            raise exceptions.PermissionDenied(self.error_messages["no_partner"])
        if membership is not None and not membership.partner.is_active:
            raise exceptions.PermissionDenied(self.error_messages["inactive_partner"])
        return data


class RefreshSerializer(TokenRefreshSerializer):
    """A new access token from a refresh token that is still current: simplejwt's own
    refresh checks neither the password nor a logout."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        user_of_token(RefreshToken(attrs["refresh"]))
        return super().validate(attrs)


class LogoutSerializer(serializers.Serializer):
    """A refresh token to end, with every other token of its user."""

    refresh = serializers.CharField(
        help_text=_("The refresh token from /api/v1/auth/token/."), write_only=True
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            token = RefreshToken(attrs["refresh"])
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return {"user": user_of_token(token)}


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
