"""Typed readers for the environment that settings.py is built from.

Every reader records a malformed value instead of raising at once, so that a bad
deployment learns about all of its mistakes in one start-up, each naming its variable.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class Environment:
    """Reads variables from a mapping (``os.environ`` by default) and collects errors."""

    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self.source = os.environ if source is None else source
        self.errors: list[str] = []

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when the variable is unset or blank."""
        value = self.source.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def error(self, name: str, message: str, value: str | None = None) -> None:
        """Record a problem with ``name``; ``value`` is echoed unless it is None."""
        got = "" if value is None else f" (got {value!r})"
        self.errors.append(f"{name}: {message}{got}")

    # The readers below are named after the builtins, which they shadow in the class's
    # annotations from here on: those spell the types builtins.str, builtins.int...
    def str(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int | None = None,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.error(name, "must be a whole number", value)
            return default
        if not self._in_range(name, number, value, minimum, maximum):
            return default
        return number

    def float(
        self,
        name: builtins.str,
        default: builtins.float,
        *,
        minimum: builtins.float | None = None,
        maximum: builtins.float | None = None,
    ) -> builtins.float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.error(name, "must be a number", value)
            return default
        if number != number or number in (float("inf"), float("-inf")):
            self.error(name, "must be a finite number", value)
            return default
        if not self._in_range(name, number, value, minimum, maximum):
            return default
        return number

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self.raw(name)
        if value is None:
            return default
        word = value.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        self.error(name, "must be true or false", value)
        return default

    def choice(
        self, name: builtins.str, default: builtins.str, choices: Iterable[builtins.str]
    ) -> builtins.str:
        value = self.raw(name)
        if value is None:
            return default
        allowed = tuple(choices)
        if value not in allowed:
            self.error(name, f"must be one of {', '.join(allowed)}", value)
            return default
        return value

    def url(
        self,
        name: builtins.str,
        default: builtins.str,
        *,
        schemes: Iterable[builtins.str] = ("http", "https"),
    ) -> builtins.str:
        """An absolute URL with one of ``schemes`` and a host; a trailing slash is dropped."""
        value = self.raw(name)
        if value is None:
            return default
        allowed = tuple(schemes)
        parts = urlsplit(value)
        if parts.scheme not in allowed or not parts.hostname:
            self.error(name, f"must be an absolute {'/'.join(allowed)} URL with a host", value)
            return default
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            self.error(name, "has an invalid port", value)
            return default
        if "_" in parts.hostname:
            # Twilio rejects callback URLs whose host contains an underscore.
            self.error(name, "must not have an underscore in its host name", value)
            return default
        return value.rstrip("/")

    def mapping(
        self, name: builtins.str, default: Mapping[builtins.str, builtins.str]
    ) -> dict[builtins.str, builtins.str]:
        """``default`` updated with the value's ``key=value`` pairs, comma-separated
        (``es-ES=Polly.Lucia-Neural,en-US=Polly.Joanna-Neural``); a pair without ``=``,
        or with an empty key or value, is an error."""
        result = dict(default)
        value = self.raw(name)
        if value is None:
            return result
        for pair in value.split(","):
            key, separator, item = (part.strip() for part in pair.partition("="))
            if not pair.strip():
                continue
            if not separator or not key or not item:
                self.error(name, "must be comma-separated key=value pairs", pair.strip())
                return dict(default)
            result[key] = item
        return result

    def check(self) -> None:
        """Raise ImproperlyConfigured listing every error recorded so far."""
        if self.errors:
            lines = "\n  ".join(self.errors)
            raise ImproperlyConfigured(f"Invalid environment configuration:\n  {lines}")

    def _in_range(
        self,
        name: builtins.str,
        number: builtins.float,
        value: builtins.str,
        minimum: builtins.float | None,
        maximum: builtins.float | None,
    ) -> builtins.bool:
        if minimum is not None and number < minimum:
            self.error(name, f"must be at least {minimum}", value)
            return False
        if maximum is not None and number > maximum:
            self.error(name, f"must be at most {maximum}", value)
            return False
        return True
