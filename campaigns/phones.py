"""Phone numbers: E.164 normalisation and the time zones a number may ring in."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from phonenumbers import timezone as phonenumber_timezones

E164_REGEX = r"^\+[1-9][0-9]{6,14}$"
e164_validator = RegexValidator(
    E164_REGEX, _("Enter a phone number in E.164 form, e.g. +34600123456.")
)


def normalize_phone(raw: str, *, region: str) -> str:
    """``raw`` in E.164, read in ``region`` when it has no country code.

    Raises ValidationError (code ``invalid_phone``) naming the value when it is not a
    valid, dialable number.
    """
    value = (raw or "").strip()
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _("“%(value)s” is not a valid phone number (region %(region)s)."),
            code="invalid_phone",
            params={"value": value, "region": region},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def time_zones_for(phone: str) -> tuple[str, ...]:
    """The IANA zones an E.164 number may be in; empty when the library cannot tell."""
    number = phonenumbers.parse(phone, None)
    zones = phonenumber_timezones.time_zones_for_number(number)
    return tuple(zone for zone in zones if zone != phonenumber_timezones.UNKNOWN_TIMEZONE)
