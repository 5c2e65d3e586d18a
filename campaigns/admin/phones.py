"""Search terms read as phone numbers, for the contact and do-not-call lists."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db.models import Q

from campaigns.phones import normalize_phone


def _phone_in(term: str, region: str) -> str | None:
    """``term`` as an E.164 number read in ``region``; None when it is not one."""
    try:
        return normalize_phone(term, region=region)
    except ValidationError:
        return None


def _phone_part(term: str) -> Q:
    """Numbers that contain ``term``'s digits when it is written like part of a number
    ("0034 612 34" finds +3461234…); an empty Q when it is not."""
    if not term.strip() or not re.fullmatch(r"[\d\s+().\-/]+", term):
        return Q()
    digits = re.sub(r"\D", "", term)
    digits = digits.removeprefix("00") if term.strip().startswith("00") else digits
    return Q(phone__contains=digits) if len(digits) >= 3 else Q()
