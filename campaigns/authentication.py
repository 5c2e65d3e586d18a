"""Who a request to the partner API is: a partner's API key, or a user's JWT checked
against the records kept beside the Partner (keys, token versions).

Named in DRF's and simplejwt's settings (DEFAULT_AUTHENTICATION_CLASSES, the token
serializers), which DRF imports while its own views module loads: so this module imports
no DRF view. What every app's API shares (a request's partner, the permissions) is in
callcenter/access.py, which knows no app.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from callcenter.access import API_KEY_KEYWORD, ApiKeyUser
from callcenter.logins import forget_failures, lockout_message, lockout_wait
from campaigns.models import PartnerApiKey, TokenVersion

# The JWT claim holding the user's token version when the token was issued.
TOKEN_VERSION_CLAIM = "ver"  # noqa: S105 (a claim name, not a secret)
# How often a key's "last used" moment is written: not on every request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


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
            max_length=getattr(
                user_model._meta.get_field(user_model.USERNAME_FIELD), "max_length", None
            ),
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
        user: Any = self.user  # set by simplejwt's validate, which just succeeded
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
