"""Which national lists a campaign needs, whether their copies are fresh enough to start,
and which contacts' numbers are on them (many at once, in at most three queries)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Exists, F, Func, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat, Substr, Upper
from django.db.models.functions.text import SHA256
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns import rules
from campaigns.models import (
    Campaign,
    CampaignPurpose,
    Contact,
    HashInput,
    SuppressionDigest,
    SuppressionFormat,
    SuppressionList,
    SuppressionNumber,
)


def required_lists(*, campaign: Campaign) -> tuple[rules.ListRequirement, ...]:
    """The national lists ``campaign`` must be scrubbed against: its profile's, for a
    marketing campaign; none for a service one."""
    if campaign.purpose != CampaignPurpose.MARKETING:
        return ()
    profile = rules.PROFILES.get(campaign.compliance_profile)
    return profile.suppression_lists if profile is not None else ()


def max_age_days(requirement: rules.ListRequirement) -> int:
    """How many days old a copy the rule accepts (a policy setting when it names one)."""
    if requirement.max_age_setting:
        return int(getattr(settings, requirement.max_age_setting))
    assert requirement.max_age_days is not None, requirement
    return requirement.max_age_days


def live_lists(kinds: Iterable[str]) -> list[SuppressionList]:
    """The lists of ``kinds`` that bind every partner and have a copy imported."""
    return list(
        SuppressionList.objects.filter(
            kind__in=set(kinds), is_global=True, current_copy__isnull=False
        ).order_by("pk")
    )


def list_problems(*, campaign: Campaign, today: datetime.date | None = None) -> list[str]:
    """Why ``campaign`` may not start as to its national lists: one it needs has no copy
    imported, or its copy is older than the rule allows (naming the list and its age)."""
    requirements = required_lists(campaign=campaign)
    if not requirements:
        return []
    today = today or timezone.localdate()
    lists = live_lists(requirement.kind for requirement in requirements)
    problems = []
    for requirement in requirements:
        params = {"list": requirement.name, "rule": requirement.rule}
        of_kind = [item for item in lists if item.kind == requirement.kind]
        if not of_kind:
            problems.append(
                _(
                    "No %(list)s copy is imported; %(rule)s requires one for marketing "
                    "campaigns. Import it under National suppression lists."
                )
                % params
            )
            continue
        allowed = max_age_days(requirement)
        for item in of_kind:
            assert item.refreshed_at is not None  # set with the live copy
            age = (today - item.refreshed_at).days
            if age > allowed:
                problems.append(
                    _(
                        "%(list)s copy (“%(name)s”) is %(age)s days old; %(rule)s allows "
                        "%(allowed)s. Import a newer copy."
                    )
                    % {**params, "name": item.name, "age": age, "allowed": allowed}
                )
    return problems


@dataclass(frozen=True)
class Listing:
    """A contact's number is on ``list_name``, which ``rule`` requires; ``exempt_bases``:
    the legal bases that let it be called all the same."""

    list_name: str
    rule: str
    exempt_bases: tuple[str, ...]


def phone_forms(phone: str, country_code: str) -> dict[str, str]:
    """The forms of an E.164 number a hashed list may have hashed, by ``HashInput``."""
    forms = {HashInput.E164.value: phone, HashInput.DIGITS.value: phone[1:]}
    if phone.startswith("+" + country_code):
        forms[HashInput.NATIONAL.value] = phone[1 + len(country_code) :]
    return forms


def _digests(phone: str, item: SuppressionList) -> list[bytes]:
    forms = phone_forms(phone, item.country_code)
    chosen = list(forms.values()) if item.hash_input == HashInput.ANY else []
    if item.hash_input in forms:
        chosen = [forms[item.hash_input]]
    return [hashlib.sha256(form.encode()).digest() for form in chosen]


def listings(*, contacts: Sequence[Contact]) -> dict[int, list[Listing]]:
    """The required lists each of ``contacts`` (campaigns loaded) is on, by contact id
    (contacts on none are left out): one query for the lists, one for the plain ones'
    numbers and one for the hashed ones' digests, however many contacts."""
    requirements = {contact.pk: required_lists(campaign=contact.campaign) for contact in contacts}
    kinds = {requirement.kind for needed in requirements.values() for requirement in needed}
    if not kinds:
        return {}
    lists = live_lists(kinds)
    plain = {item.current_copy_id: item for item in lists if item.file_format == "plain"}
    hashed = {item.current_copy_id: item for item in lists if item.file_format != "plain"}
    found: set[tuple[int | None, int | bytes]] = set()
    numbers = {int(contact.phone[1:]) for contact in contacts if requirements[contact.pk]}
    if plain and numbers:
        found.update(
            SuppressionNumber.objects.filter(copy_id__in=plain, number__in=numbers)
            .order_by()
            .values_list("copy_id", "number")
        )
    if hashed:
        digests = {
            digest
            for contact in contacts
            if requirements[contact.pk]
            for item in hashed.values()
            for digest in _digests(contact.phone, item)
        }
        found.update(
            (copy_id, bytes(digest))
            for copy_id, digest in SuppressionDigest.objects.filter(
                copy_id__in=hashed, digest__in=digests
            )
            .order_by()
            .values_list("copy_id", "digest")
        )
    result: dict[int, list[Listing]] = {}
    for contact in contacts:
        for requirement in requirements[contact.pk]:
            for item in lists:
                if item.kind != requirement.kind:
                    continue
                if item.file_format == SuppressionFormat.PLAIN:
                    on = (item.current_copy_id, int(contact.phone[1:])) in found
                else:
                    on = any(
                        (item.current_copy_id, digest) in found
                        for digest in _digests(contact.phone, item)
                    )
                if on:
                    result.setdefault(contact.pk, []).append(
                        Listing(item.name, requirement.rule, requirement.exempt_bases)
                    )
    return result


def basis_exempts(*, contact: Contact, exempt_bases: Sequence[str], now: datetime.datetime) -> bool:
    """Whether ``contact``'s legal basis lets it be called though its number is on a list
    (ES-5: express consent to this company; US-9: prior express written consent). The
    basis fields come with the consent work (``legal_basis``, ``basis_expires_at``,
    ``basis_withdrawn_at``), read defensively: without them nobody is exempt."""
    basis = getattr(contact, "legal_basis", "")
    if not basis or basis not in exempt_bases:
        return False
    if getattr(contact, "basis_withdrawn_at", None) is not None:
        return False
    expires = getattr(contact, "basis_expires_at", None)
    return expires is None or expires > now


def exempt_condition(*, exempt_bases: Sequence[str], now: datetime.datetime) -> Q:
    """``basis_exempts`` as a filter on contacts (matches nobody without the basis fields)."""
    fields = {field.name for field in Contact._meta.get_fields()}
    if not exempt_bases or not {"legal_basis", "basis_withdrawn_at"} <= fields:
        return Q(pk__in=[])
    condition = Q(legal_basis__in=exempt_bases, basis_withdrawn_at__isnull=True)
    if "basis_expires_at" in fields:
        condition &= Q(basis_expires_at__isnull=True) | Q(basis_expires_at__gt=now)
    return condition


class _Sha256Bytes(Func):
    """The SHA-256 digest's bytes of a text expression, on PostgreSQL."""

    template = "sha256(convert_to(%(expressions)s, 'UTF8'))"


def listed_condition(*, campaign: Campaign, now: datetime.datetime | None = None) -> Q:
    """The contacts of ``campaign`` on a list it requires and not exempt, as a filter (for
    counting, ``campaigns.eligibility.blocked``); matches nobody when it requires none."""
    requirements = required_lists(campaign=campaign)
    if not requirements:
        return Q(pk__in=[])
    now = now or timezone.now()
    lists = live_lists(requirement.kind for requirement in requirements)
    condition = Q(pk__in=[])
    for requirement in requirements:
        of_kind = [item for item in lists if item.kind == requirement.kind]
        on_list = Q(pk__in=[])
        for item in of_kind:
            on_list |= _on_list(item)
        condition |= on_list & ~exempt_condition(exempt_bases=requirement.exempt_bases, now=now)
    return condition


def _on_list(item: SuppressionList) -> Q:
    if item.file_format == SuppressionFormat.PLAIN:
        number = Cast(Substr(OuterRef("phone"), 2), output_field=SuppressionNumber.number.field)
        return Q(
            Exists(SuppressionNumber.objects.filter(copy_id=item.current_copy_id, number=number))
        )
    forms = {
        HashInput.E164.value: OuterRef("phone"),
        HashInput.DIGITS.value: Substr(OuterRef("phone"), 2),
        HashInput.NATIONAL.value: Substr(OuterRef("phone"), 2 + len(item.country_code)),
    }
    chosen = list(forms) if item.hash_input == HashInput.ANY else [item.hash_input]
    entries = SuppressionDigest.objects.filter(copy_id=item.current_copy_id)
    matches = Q(pk__in=[])
    for form in chosen:
        expression = forms[form]
        if connection.vendor == "postgresql":
            match = Q(Exists(entries.filter(digest=_Sha256Bytes(expression))))
        else:
            # SQLite (the embedded default) has no unhex() before 3.41: compare in hex.
            hex_digest = Func(F("digest"), function="hex")
            digest = Upper(SHA256(Concat(expression, Value(""))))
            match = Q(Exists(entries.alias(hex_digest=hex_digest).filter(hex_digest=digest)))
        if form == HashInput.NATIONAL:
            # Only numbers of the list's country have a national form.
            match &= Q(phone__startswith="+" + item.country_code)
        matches |= match
    return matches
