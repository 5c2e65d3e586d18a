"""A row's legal basis: its columns read and checked, and the bases a batch saves audited.

A row that fills any basis column names its kind (``legal_basis``) and replaces the
contact's basis as a whole; an earlier withdrawal stands unless the new basis names its own
or was obtained after it (``keep_withdrawal``). Times are ISO 8601 dates or dates and
times; without an offset, in the project's time zone (``parse_moment``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils.translation import gettext as _

from audit import services as audit
from campaigns.imports.base import RowError, _clip
from campaigns.models import (
    BASIS_FIELDS,
    Campaign,
    Contact,
    LegalBasis,
    legal_basis_problems,
    parse_moment,
)
from campaigns.services.contacts import basis_change_event, blank_basis, keep_withdrawal

# How a basis kind may be written in a file (compared without case or accents).
_KINDS = {
    "consent": LegalBasis.CONSENT,
    "consentimiento": LegalBasis.CONSENT,
    "customer": LegalBasis.CUSTOMER,
    "cliente": LegalBasis.CUSTOMER,
    "service": LegalBasis.SERVICE,
    "servicio": LegalBasis.SERVICE,
}
_MOMENTS = frozenset({"basis_obtained_at", "basis_expires_at", "basis_withdrawn_at"})
_LIMITED = {"basis_source": 500, "basis_scope": 500}

# The CSV headers each basis field goes by (see decoding.COLUMN_ALIASES).
BASIS_ALIASES: dict[str, frozenset[str]] = {
    "legal_basis": frozenset({"legal_basis", "basis", "base_legal", "base_juridica"}),
    "basis_source": frozenset({"basis_source", "consent_source", "origen_consentimiento"}),
    "basis_obtained_at": frozenset(
        {"basis_obtained_at", "consent_at", "consent_obtained_at", "fecha_consentimiento"}
    ),
    "basis_wording": frozenset(
        {"basis_wording", "consent_text", "consent_wording", "texto_consentimiento"}
    ),
    "basis_scope": frozenset({"basis_scope", "consent_scope", "alcance_consentimiento"}),
    "basis_expires_at": frozenset(
        {"basis_expires_at", "consent_expires_at", "caducidad_consentimiento"}
    ),
    "basis_withdrawn_at": frozenset({"basis_withdrawn_at", "consent_withdrawn_at"}),
}


def read_basis(
    number: int, texts: Mapping[str, str]
) -> tuple[dict[str, Any] | None, list[RowError]]:
    """Row ``number``'s basis from its ``texts`` (by field; stripped): the values to save
    (None when every cell is empty) or the errors naming each field and value."""
    if not any(texts.get(name) for name in BASIS_FIELDS):
        return None, []
    errors: list[RowError] = []
    values: dict[str, Any] = blank_basis()
    for name in BASIS_FIELDS:
        text = texts.get(name, "")
        if not text:
            continue
        if "\x00" in text:
            errors.append(RowError(number, name, _clip(text), _nul()))
        elif name == "legal_basis":
            kind = _KINDS.get(_key(text))
            if kind is None:
                errors.append(RowError(number, name, _clip(text), _kind_error(text)))
            values[name] = kind or ""
        elif name in _MOMENTS:
            try:
                values[name] = parse_moment(text)
            except ValueError as exc:
                errors.append(RowError(number, name, _clip(text), str(exc)))
        elif name in _LIMITED and len(text) > _LIMITED[name]:
            errors.append(
                RowError(
                    number,
                    name,
                    _clip(text),
                    _("The %(field)s is longer than %(max)d characters.")
                    % {"field": name, "max": _LIMITED[name]},
                )
            )
        else:
            values[name] = text
    if errors:
        return None, errors
    for name, problems in legal_basis_problems(values).items():
        errors.extend(
            RowError(
                number,
                name,
                _clip(texts.get(name, "")),
                str(problem.message % (problem.params or {})),
            )
            for problem in problems
        )
    return (None, errors) if errors else (values, [])


def read_json_basis(
    number: int, row: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[RowError]]:
    """``read_basis`` for a JSON row: each basis key a text (or null)."""
    texts: dict[str, str] = {}
    errors = []
    for name in BASIS_FIELDS:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            texts[name] = value.strip()
        else:
            errors.append(
                RowError(
                    number,
                    name,
                    _clip(repr(value)),
                    _("The %(field)s must be text.") % {"field": name},
                )
            )
    if errors:
        return None, errors
    return read_basis(number, texts)


def save_bases(
    *,
    campaign: Campaign,
    existing: Iterable[tuple[int, dict[str, Any]]],
    created: Iterable[tuple[str, dict[str, Any]]],
) -> None:
    """Write the bases rows gave contacts that were there (``existing``: pk, basis) and
    audit them with those of the contacts just made (``created``: phone, basis), in one
    entry each, all under one lock of the trail (``audit.record_many``)."""
    bases = dict(existing)
    new_bases = dict(created)
    events = []
    if bases:
        contacts = Contact.objects.select_for_update().filter(pk__in=list(bases)).order_by("pk")
        changed = []
        for contact in contacts:
            contact.campaign = campaign
            before = contact.basis_snapshot()
            basis = keep_withdrawal(
                withdrawn_at=contact.basis_withdrawn_at, basis=bases[contact.pk]
            )
            for name, value in basis.items():
                setattr(contact, name, value)
            event = basis_change_event(contact=contact, before=before, via="import")
            if event is not None:
                changed.append(contact)
                events.append(event)
        Contact.objects.bulk_update(changed, list(BASIS_FIELDS), batch_size=500)
    if new_bases:
        for pk, phone in (
            Contact.objects.filter(campaign=campaign, phone__in=list(new_bases))
            .order_by("pk")
            .values_list("pk", "phone")
        ):
            contact = Contact(pk=pk, campaign=campaign, phone=phone, **new_bases[phone])
            event = basis_change_event(contact=contact, before=None, via="import")
            if event is not None:
                events.append(event)
    audit.record_many(events)


def _key(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold().strip())
    return "".join(char for char in text if not unicodedata.combining(char))


def _kind_error(text: str) -> str:
    return _("“%(value)s” is not a legal basis: use consent, customer or service.") % {
        "value": text
    }


def _nul() -> str:
    return _("The value contains a NUL character, which cannot be stored.")
