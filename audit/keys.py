"""The audit trail's keyed hashes: of a phone number (an entry's subject, an erased
number's suppression) and of an entry (its place in the chain).

Both use AUDIT_KEY (a secret from the environment; by default one derived from
SECRET_KEY). Without the key nobody can tell which number a subject hash stands for, nor
forge the chain after editing an entry. Changing the key breaks both: an erased person's
hash no longer matches their number, and verification fails on every old entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import phonenumbers
from django.conf import settings


def _key(purpose: str) -> bytes:
    # One secret, one key per purpose: a subject hash can never pass for an entry's.
    return hmac.new(settings.AUDIT_KEY.encode(), purpose.encode(), hashlib.sha256).digest()


def subject_hash(phone: str) -> str:
    """The keyed hash (HMAC-SHA256, hex) that stands for the E.164 number ``phone``."""
    return hmac.new(_key("subject"), phone.strip().encode(), hashlib.sha256).hexdigest()


def entry_hash(*, prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of an entry: its fields (as canonical JSON) chained to ``prev_hash``."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    message = prev_hash.encode() + b"\n" + body.encode()
    return hmac.new(_key("chain"), message, hashlib.sha256).hexdigest()


def typed_subject(raw: str, *, region: str) -> str | None:
    """The subject hash of a phone number typed in any format (read in ``region`` when it
    has no country code), to find a person's entries; None when ``raw`` is no valid number.
    (audit knows no app, so it reads the number with phonenumbers itself, as
    campaigns.phones.normalize_phone does.)"""
    try:
        number = phonenumbers.parse((raw or "").strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return subject_hash(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
