from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.phones import normalize_phone, time_zones_for


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("600 12 34 56", "ES", "+34600123456"),
        ("+34 600-12-34-56", "US", "+34600123456"),
        ("0034600123456", "ES", "+34600123456"),
        ("(415) 555-2671", "US", "+14155552671"),
        (" +1 415 555 2671 ", "ES", "+14155552671"),
    ],
)
def test_normalize_phone_gives_e164(raw, region, expected) -> None:
    assert normalize_phone(raw, region=region) == expected


@pytest.mark.parametrize("raw", ["", "hello", "123", "+34 123", "+999 1234567"])
def test_normalize_phone_refuses_invalid_numbers_naming_them(raw) -> None:
    with pytest.raises(ValidationError) as excinfo:
        normalize_phone(raw, region="ES")

    assert excinfo.value.code == "invalid_phone"
    assert excinfo.value.params["value"] == raw.strip()


def test_time_zones_for_single_and_multi_zone_numbers() -> None:
    assert time_zones_for("+34910000000") == ("Europe/Madrid",)
    assert time_zones_for("+34600123456") == ("Atlantic/Canary", "Europe/Madrid")
    assert time_zones_for("+14155552671") == ("America/Los_Angeles",)
    # a US toll-free number may ring anywhere in the country
    assert len(time_zones_for("+18005550100")) > 1
