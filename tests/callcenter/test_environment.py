from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from callcenter.environment import Environment


def test_environment_int_reads_and_range_checks() -> None:
    env = Environment({"A": " 42 ", "B": "abc", "C": "0"})

    assert env.int("A", 1) == 42
    assert env.int("B", 7) == 7
    assert env.int("C", 5, minimum=1) == 5
    assert env.int("MISSING", 3) == 3
    assert env.errors == [
        "B: must be a whole number (got 'abc')",
        "C: must be at least 1 (got '0')",
    ]


def test_environment_float_refuses_nan_and_out_of_range() -> None:
    env = Environment({"T": "nan", "U": "2.5", "V": "0.3"})

    assert env.float("T", 0.7) == 0.7
    assert env.float("U", 0.7, maximum=2.0) == 0.7
    assert env.float("V", 0.7, maximum=2.0) == 0.3
    assert [error.split(":")[0] for error in env.errors] == ["T", "U"]


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("ON", True), ("0", False), ("no", False)]
)
def test_environment_bool_accepts_common_words(raw: str, expected: bool) -> None:
    assert Environment({"X": raw}).bool("X", not expected) is expected


def test_environment_bool_refuses_other_words() -> None:
    env = Environment({"DEBUG": "maybe"})

    assert env.bool("DEBUG", False) is False
    assert env.errors == ["DEBUG: must be true or false (got 'maybe')"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("example.com", "must be an absolute http/https URL with a host"),
        ("ftp://example.com", "must be an absolute http/https URL with a host"),
        ("http://", "must be an absolute http/https URL with a host"),
        ("http://example.com:99999", "has an invalid port"),
        ("https://my_host.example.com", "must not have an underscore in its host name"),
    ],
)
def test_environment_url_refuses_malformed_urls(raw: str, message: str) -> None:
    env = Environment({"APP_URL": raw})

    assert env.url("APP_URL", "http://localhost") == "http://localhost"
    assert env.errors == [f"APP_URL: {message} (got {raw!r})"]


def test_environment_url_drops_trailing_slash() -> None:
    assert (
        Environment({"U": "https://calls.example.com/"}).url("U", "") == "https://calls.example.com"
    )


def test_environment_choice_lists_allowed_values() -> None:
    env = Environment({"ALGORITHM": "RS256"})

    assert env.choice("ALGORITHM", "HS256", ("HS256", "HS512")) == "HS256"
    assert env.errors == ["ALGORITHM: must be one of HS256, HS512 (got 'RS256')"]


def test_environment_check_raises_every_error_at_once() -> None:
    env = Environment({"A": "x", "B": "y"})
    env.int("A", 0)
    env.float("B", 0.0)

    with pytest.raises(ImproperlyConfigured) as excinfo:
        env.check()

    assert "A: must be a whole number" in str(excinfo.value)
    assert "B: must be a number" in str(excinfo.value)


def test_environment_mapping_updates_the_default_with_pairs() -> None:
    env = Environment({"VOICES": " en-US = Polly.Matthew-Neural , fr-FR=Polly.Remi-Neural,"})

    voices = env.mapping("VOICES", {"es-ES": "Polly.Lucia-Neural", "en-US": "Polly.Joanna"})

    assert voices == {
        "es-ES": "Polly.Lucia-Neural",
        "en-US": "Polly.Matthew-Neural",
        "fr-FR": "Polly.Remi-Neural",
    }
    assert env.errors == []


def test_environment_mapping_refuses_a_pair_without_a_value() -> None:
    env = Environment({"VOICES": "es-ES=Polly.Lucia-Neural,en-US"})

    assert env.mapping("VOICES", {"a": "b"}) == {"a": "b"}
    assert env.errors == ["VOICES: must be comma-separated key=value pairs (got 'en-US')"]
