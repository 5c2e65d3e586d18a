"""Writes on partners, their users and API keys."""

from __future__ import annotations

import dataclasses
import datetime
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Partner, PartnerApiKey, PartnerMember, TokenVersion


def create_partner(*, name: str) -> Partner:
    """A new, active partner."""
    partner = Partner(name=name.strip())
    partner.full_clean()
    partner.save()
    return partner


@dataclasses.dataclass(frozen=True)
class Onboarding:
    """A new partner with its first user and API key. ``api_key`` (and ``password`` when
    one was generated) exist only here: they are stored hashed."""

    partner: Partner
    user: AbstractBaseUser
    api_key: str
    password: str | None


@transaction.atomic
def onboard_partner(
    *, name: str, username: str, email: str = "", password: str | None = None
) -> Onboarding:
    """Create a partner with its first user (who acts for it in the API) and API key.
    Without ``password`` a strong one is generated and returned once."""
    partner = create_partner(name=name)
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ValidationError(
            {"username": _("A user named “%(name)s” already exists.") % {"name": username}}
        )
    generated = None if password else secrets.token_urlsafe(18)
    user = user_model(username=username, email=email)
    user.set_password(password or generated)
    user.full_clean()
    user.save()
    PartnerMember.objects.create(user=user, partner=partner)
    _key, api_key = create_api_key(partner=partner, name=_("First key"))
    return Onboarding(partner=partner, user=user, api_key=api_key, password=generated)


def create_api_key(
    *,
    partner: Partner,
    name: str,
    expiry_date: datetime.datetime | None = None,
    can_manage_access: bool = False,
    created_by_key: PartnerApiKey | None = None,
) -> tuple[PartnerApiKey, str]:
    """A new API key for ``partner``: the stored row and the key itself, which is shown
    once and never stored. ``created_by_key`` is the key that asked for it, if any:
    revoking that key revokes this one too."""
    fields = {
        "partner": partner,
        "name": name,
        "expiry_date": expiry_date,
        "can_manage_access": can_manage_access,
        "created_by_key": created_by_key,
    }
    PartnerApiKey(**fields).full_clean(exclude=["id", "prefix", "hashed_key"])
    # The library's manager is typed for its abstract model; it makes a PartnerApiKey.
    return PartnerApiKey.objects.create_key(**fields)  # type: ignore[return-value]


def revoke_api_key(*, api_key: PartnerApiKey) -> PartnerApiKey:
    """Revoke ``api_key`` for good, and every key it made (and they made, on down):
    requests made with any of them are refused from now on."""
    with transaction.atomic():
        ids = {api_key.pk}
        generation = {api_key.pk}
        while generation:
            generation = set(
                PartnerApiKey.objects.filter(created_by_key__in=generation)
                .exclude(pk__in=ids)
                .values_list("pk", flat=True)
            )
            ids |= generation
        PartnerApiKey.objects.filter(pk__in=ids, revoked=False).update(revoked=True)
    api_key.revoked = True
    return api_key


def end_api_tokens(*, user: User) -> None:
    """End every JWT (access and refresh) issued to ``user`` so far, on every device:
    the API refuses them from now on. A password change does this by itself."""
    TokenVersion.objects.get_or_create(user=user)
    TokenVersion.objects.filter(user=user).update(
        version=F("version") + 1, updated_at=timezone.now()
    )
