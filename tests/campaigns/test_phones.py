from __future__ import annotations

import random

import phonenumbers
import pytest
from django.core.exceptions import ValidationError

from campaigns.phones import PhoneReader, normalize_phone, time_zones_for


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


def phone_inputs(seed: int, count: int) -> list[str]:
    """Numbers written every which way: right, wrong, national, international, with a
    national prefix or a leading zero, in many countries."""
    rng = random.Random(seed)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    shapes = ["{}", "+{}", "00{}", "+34{}", "34{}", "+1 {}", "+39 0{}", "+44 (0){}", "0{}"]
    inputs = []
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 14)))
        inputs.append(rng.choice(shapes).format(digits))
        inputs.append(rng.choice("6789") + "".join(rng.choice("0123456789") for _ in range(8)))
        code = rng.choice(codes)
        national = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 11)))
        inputs.append(f"+{code} {national[:3]}-{national[3:]}")
    return inputs


def answer(read, raw: str) -> tuple[str, tuple[str, ...]] | list[str]:
    """What ``read`` makes of ``raw``: the number and its zones, or the error's messages."""
    try:
        return read(raw)
    except ValidationError as exc:
        return exc.messages


@pytest.mark.parametrize("region", ["ES", "US", "GB", "IT", "MX", "DE", "BR", "FR", "PT", "SE"])
def test_phone_reader_answers_as_normalize_phone_and_time_zones_for(region) -> None:
    # given
    reader = PhoneReader(region=region)

    def slowly(raw: str) -> tuple[str, tuple[str, ...]]:
        phone = normalize_phone(raw, region=region)
        return phone, time_zones_for(phone)

    for raw in phone_inputs(seed=sum(map(ord, region)), count=700):
        # when
        fast = answer(reader.read, raw)

        # then
        assert fast == answer(slowly, raw), raw
