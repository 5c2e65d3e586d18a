"""The API's request parsers (DEFAULT_PARSER_CLASSES): a module of their own, since DRF
reads that setting while its views load, before callcenter.api can be imported.

Every parser refuses text the database cannot store: a NUL character (PostgreSQL's text
and jsonb refuse it) or a lone surrogate (no encoding writes it), in any key or value of
the body, with a 400 naming where it is (``contacts.3.first_name``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, parsers

_NUL = "\x00"


def unstorable_text(value: Any, *, path: str = "") -> Iterator[tuple[str, str]]:
    """Each place in ``value`` (JSON-like data) holding text the database cannot store, as
    (the dotted path to it, why): a key is reported at the path it opens."""
    if isinstance(value, str):
        if reason := _unstorable(value):
            yield path, reason
    elif isinstance(value, Mapping):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (reason := _unstorable(key)):
                yield inner, reason
            yield from unstorable_text(item, path=inner)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from unstorable_text(item, path=f"{path}.{index}" if path else str(index))


def _unstorable(text: str) -> str:
    if _NUL in text:
        return str(_("A NUL character (\\u0000) is not allowed in text."))
    try:
        text.encode()
    except UnicodeEncodeError:
        return str(_("Text must be valid Unicode: a lone surrogate (\\ud800 to \\udfff) is not."))
    return ""


def refuse_unstorable_text(data: Any) -> Any:
    """``data``, or a 400 (ValidationError) naming each field holding text that cannot be
    stored."""
    errors: dict[str, list[str]] = {}
    for path, reason in unstorable_text(data):
        errors.setdefault(path or "body", []).append(reason)
        if len(errors) >= 20:  # enough to show what is wrong
            break
    if errors:
        raise exceptions.ValidationError(errors)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but a body nested deeper than Python's decoder can follow is a
    bad request (400) like any other unreadable JSON, not a server error; so is text the
    database cannot store."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(_("The JSON body is nested too deeply.")) from None
        return refuse_unstorable_text(data)


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing text the database cannot store in the form's
    fields (a file's content is read, and checked, by whoever imports it)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        refuse_unstorable_text(
            {key: values[0] if len(values) == 1 else values for key, values in parsed.data.lists()}
        )
        return parsed
