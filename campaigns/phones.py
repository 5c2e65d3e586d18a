"""Phone numbers: E.164 normalisation and the time zones a number may ring in."""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from phonenumbers import timezone as phonenumber_timezones

E164_REGEX = r"^\+[1-9][0-9]{6,14}$"
e164_validator = RegexValidator(
    E164_REGEX, _("Enter a phone number in E.164 form, e.g. +34600123456.")
)
# What a form or the API takes for a number before it is normalised: "+34 (910) 00-00-00".
PHONE_INPUT_MAX_LENGTH = 40


def validate_phone_number(value: str) -> None:
    """A stored number's check: a valid number written exactly as ``normalize_phone`` writes
    it (E.164). Forms, the API and services normalise what people type before it."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if (
        number is None
        or not phonenumbers.is_valid_number(number)
        or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != value
    ):
        raise ValidationError(
            _("“%(value)s” is not a valid phone number in E.164 form, e.g. +34910000000."),
            code="invalid_phone",
            params={"value": value},
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


# Separators people write inside numbers; parse() drops them too.
_SEPARATORS = str.maketrans("", "", " -.()/\u00a0")
# parse() refuses national numbers outside these lengths (phonenumbers' MIN/MAX_LENGTH_FOR_NSN).
_NSN_LENGTHS = range(2, 18)
_CACHE_SIZE = 65_536


class PhoneReader:
    """``normalize_phone`` and ``time_zones_for`` in one step, for the many numbers of one
    region that an import reads: the same answers, faster
    (docs/decisions/0006-contact-import-write-path.md).

    Numbers written as digits (with separators, ``+`` or the region's ``00``) of a country
    with one region and no national prefix, such as Spain, are typed against the metadata's
    patterns compiled once, as ``number_type`` would, without ``parse()``. Anything else, or
    anything that path does not find valid, goes through ``normalize_phone``.
    """

    def __init__(self, *, region: str) -> None:
        self.region = region
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        self._national_code = (metadata.country_code or 0) if metadata else 0
        # Where "00" dials abroad, "0034…" is "+34…" (unless a 0 follows: parse() knows).
        self._idd = "00" if metadata and metadata.international_prefix == "00" else "+"
        self._kinds: dict[int, _NumberKinds | None] = {}
        self._slow: dict[str, tuple[str, tuple[str, ...]] | ValidationError] = {}
        self._zones: dict[int, tuple[str, ...]] = {}  # by country, of non-geographical numbers

    def read(self, raw: str) -> tuple[str, tuple[str, ...]]:
        """``raw`` in E.164 and the zones it may ring in. Raises ValidationError as
        ``normalize_phone`` does."""
        value = raw.strip()
        digits = value.translate(_SEPARATORS)
        code = self._national_code
        if digits[:1] == "+":
            digits, code = digits[1:], -1
        elif digits[:2] == self._idd:
            digits, code = digits[2:], -1
        if digits.isascii() and digits.isdigit():
            if code == -1:
                code = self._country_code(digits)
                national = digits[len(str(code)) :]
            else:
                national = digits
            kinds = self._kinds_for(code)
            # A leading zero is part of some numbers (Italy's): parse() knows those.
            if kinds is not None and national[:1] != "0" and len(national) in _NSN_LENGTHS:
                kind = kinds.kind(national)
                if kind != phonenumbers.PhoneNumberType.UNKNOWN:
                    return f"+{code}{national}", self._zones_for(code, national, kind)
        return self._read_slowly(value)

    @staticmethod
    def _country_code(digits: str) -> int:
        # Country codes are prefix-free (and never start with 0): the first that matches is it.
        if digits[:1] != "0":
            for length in (1, 2, 3):
                code = int(digits[:length])
                if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                    return code
        return 0

    def _kinds_for(self, code: int) -> _NumberKinds | None:
        """How to type the numbers of ``code`` without parse(); None when parse() could
        read them otherwise than as written: several regions share the code, or it has
        a national prefix to strip."""
        if code not in self._kinds:
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
            metadata = (
                phonenumbers.PhoneMetadata.metadata_for_region(regions[0])
                if len(regions) == 1
                else None
            )
            self._kinds[code] = (
                _NumberKinds(metadata)
                if metadata is not None and not metadata.national_prefix_for_parsing
                else None
            )
        return self._kinds[code]

    def _zones_for(self, code: int, national: str, kind: int) -> tuple[str, ...]:
        # What time_zones_for_number does, knowing the type: a prefix's zones for a
        # geographical number, the country's for the others (cached).
        if phonenumbers.is_number_type_geographical(kind, code):
            number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
            return _known(phonenumber_timezones.time_zones_for_geographical_number(number))
        zones = self._zones.get(code)
        if zones is None:
            number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
            zones = self._zones[code] = _known(phonenumber_timezones.time_zones_for_number(number))
        return zones

    def _read_slowly(self, value: str) -> tuple[str, tuple[str, ...]]:
        answer = self._slow.get(value)
        if answer is None:
            if len(self._slow) >= _CACHE_SIZE:
                self._slow.clear()
            try:
                phone = normalize_phone(value, region=self.region)
            except ValidationError as exc:
                answer = exc
            else:
                answer = (phone, time_zones_for(phone))
            self._slow[value] = answer
        if isinstance(answer, ValidationError):
            # A new error each time: raising one instance again would grow its traceback.
            raise ValidationError(answer.message, code=answer.code, params=answer.params)
        return answer


def _known(zones: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(zone for zone in zones if zone != phonenumber_timezones.UNKNOWN_TIMEZONE)


_Desc = tuple[frozenset[int], Callable[[str], re.Match[str] | None]] | None


class _NumberKinds:
    """``phonenumbers.number_type`` for the national numbers of one region, with its
    patterns compiled once: the library's own steps, in its order."""

    _SPECIAL = (
        ("premium_rate", phonenumbers.PhoneNumberType.PREMIUM_RATE),
        ("toll_free", phonenumbers.PhoneNumberType.TOLL_FREE),
        ("shared_cost", phonenumbers.PhoneNumberType.SHARED_COST),
        ("voip", phonenumbers.PhoneNumberType.VOIP),
        ("personal_number", phonenumbers.PhoneNumberType.PERSONAL_NUMBER),
        ("pager", phonenumbers.PhoneNumberType.PAGER),
        ("uan", phonenumbers.PhoneNumberType.UAN),
        ("voicemail", phonenumbers.PhoneNumberType.VOICEMAIL),
    )

    def __init__(self, metadata: phonenumbers.PhoneMetadata) -> None:
        self._general = self._desc(metadata.general_desc)
        self._special = [
            (self._desc(getattr(metadata, name)), kind) for name, kind in self._SPECIAL
        ]
        # Most numbers are of none of the special kinds: one pattern says so at once.
        patterns = [
            f"(?:{desc.national_number_pattern})"
            for name, _kind in self._SPECIAL
            if (desc := getattr(metadata, name)) is not None and desc.national_number_pattern
        ]
        self._maybe_special = re.compile("|".join(patterns)).fullmatch if patterns else None
        self._fixed_line = self._desc(metadata.fixed_line)
        self._mobile = self._desc(metadata.mobile)
        self._same_fixed_and_mobile = metadata.same_mobile_and_fixed_line_pattern

    @staticmethod
    def _desc(desc: phonenumbers.PhoneNumberDesc | None) -> _Desc:
        if desc is None or not desc.national_number_pattern:
            return None
        return frozenset(desc.possible_length), re.compile(desc.national_number_pattern).fullmatch

    @staticmethod
    def _matches(desc: _Desc, national: str) -> bool:
        if desc is None:
            return False
        lengths, fullmatch = desc
        return (not lengths or len(national) in lengths) and fullmatch(national) is not None

    def kind(self, national: str) -> int:
        """The PhoneNumberType of ``national`` (digits, no leading zero)."""
        types = phonenumbers.PhoneNumberType
        if not self._matches(self._general, national):
            return types.UNKNOWN
        if self._maybe_special is not None and self._maybe_special(national):
            for desc, kind in self._special:
                if self._matches(desc, national):
                    return kind
        if self._matches(self._fixed_line, national):
            if self._same_fixed_and_mobile or self._matches(self._mobile, national):
                return types.FIXED_LINE_OR_MOBILE
            return types.FIXED_LINE
        if not self._same_fixed_and_mobile and self._matches(self._mobile, national):
            return types.MOBILE
        return types.UNKNOWN
