"""A template's lines cut into the sentences a call voices, and which of them are the same
for every contact."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.template.base import (
    BLOCK_TAG_START,
    tag_re,
)

from templates.rendering.fields import (
    ON_DEMAND_FIELDS,
    _spoken_texts,
    length_problem,
)
from templates.rendering.lines import render_line_to_fit
from templates.rendering.sandbox import CAMPAIGN_VARIABLES, _checked_scan

if TYPE_CHECKING:
    from templates.models import CallTemplate


def sentences(text: str) -> list[str]:
    """The source of ``text`` cut into its sentences, the units a call voices.

    Each sentence is rendered to audio on its own, so one that needs no contact data
    ("Le llamamos de Clínica Demo.") is rendered once for the whole campaign, and one that
    does ("Hola {{ first_name }}.") once per distinct value. A cut falls only after
    ., ?, ! or … followed by a space, in plain text outside any tag or {% if %} block.
    """
    pieces: list[str] = []
    current = ""
    depth = 0
    last_char = ""  # the last character of plain text seen, across {% %} tags
    for index, bit in enumerate(tag_re.split(text)):
        if index % 2:  # a tag: kept whole
            if bit.startswith(BLOCK_TAG_START):
                words = bit[2:-2].split()
                name = words[0] if words else ""
                depth += name == "if"
                depth -= name == "endif"
            else:
                last_char = ""  # a variable's value may end any way
            current += bit
            continue
        last_before, last_char = last_char, bit[-1:] or last_char
        if depth:
            current += bit
            continue
        if last_before in _SENTENCE_ENDS and bit[:1].isspace():
            # the sentence ended before a tag, and the space after it opens this bit
            pieces.append(current)
            current, bit = "", bit.lstrip()
        first, *others = _SENTENCE_END.split(bit)
        current += first
        for part in others:
            pieces.append(current)
            current = part
    pieces.append(current)
    return [piece.strip() for piece in pieces if piece.strip()]


_SENTENCE_ENDS = frozenset(".?!…")
_SENTENCE_END = re.compile(r"(?<=[.?!…])\s+")


def spoken_sentences(*, template: CallTemplate) -> Iterator[tuple[str, str]]:
    """(field, sentence source) for every sentence ``template`` may say, in field order."""
    for field_name, text in _spoken_texts(template):
        for sentence in sentences(text):
            yield field_name, sentence


def is_contact_independent(*, text: str, field: str = "text") -> bool:
    """True when ``text`` uses no variable but ``campaign`` and ``partner``: it sounds the
    same for every contact, so it can be voiced before the first dial."""
    return {use.name for use in _checked_scan(field, text).uses} <= CAMPAIGN_VARIABLES


def contact_independent_sentences(*, template: CallTemplate, campaign_name: str) -> list[str]:
    """The sentences of ``template`` that are the same for every contact, rendered, once."""
    context = {"campaign": campaign_name, "partner": template.partner.name}
    rendered = (
        render_line_to_fit(text=sentence, context=context, field=field_name)
        for field_name, sentence in _sentences_within_limits(template)
        if is_contact_independent(text=sentence, field=field_name)
    )
    return list(dict.fromkeys(line for line in rendered if line))


def contact_sentences(*, template: CallTemplate, context: dict[str, str]) -> list[str]:
    """The sentences of ``template`` that depend on the contact, rendered with ``context``
    (those of ON_DEMAND_FIELDS left out: few contacts hear them).

    MissingVariable when one needs a value the contact lacks.
    """
    rendered = (
        render_line_to_fit(text=sentence, context=context, field=field_name)
        for field_name, sentence in _sentences_within_limits(template)
        if field_name not in ON_DEMAND_FIELDS
        and not is_contact_independent(text=sentence, field=field_name)
    )
    return list(dict.fromkeys(line for line in rendered if line))


def _sentences_within_limits(template: CallTemplate) -> Iterator[tuple[str, str]]:
    # What is voiced ahead: a line saved before the limits is not said on calls either.
    for field_name, text in _spoken_texts(template):
        if length_problem(field_name, text) is None:
            for sentence in sentences(text):
                yield field_name, sentence
