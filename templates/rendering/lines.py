"""Template lines checked and rendered: for speech (cut to fit), for the AI's
instructions (contact values as references), and a contact's context."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.template import Context, VariableDoesNotExist
from django.template.base import (
    NodeList,
    VariableNode,
)
from django.template.defaulttags import IfNode
from django.utils.translation import gettext as _

from templates.rendering.fields import (
    ContactLike,
    LineTooLong,
    MissingVariable,
    TemplateProblem,
    TemplateRenderError,
    _spoken_texts,
    _where,
    field_limit,
    length_problem,
)
from templates.rendering.sandbox import (
    CAMPAIGN_VARIABLES,
    RESERVED_VARIABLES,
    _checked_scan,
    _problem,
    _scan,
    _variable_name,
)

if TYPE_CHECKING:
    from templates.models import CallTemplate

logger = logging.getLogger(__name__)


def validate_text(*, field: str, text: str, allowed_variables: set[str]) -> set[str]:
    """The variables ``text`` uses; TemplateRenderError when it is longer than the field's
    limit (checked before anything parses it), breaks the sandbox rules or uses a variable
    outside ``allowed_variables`` and the reserved names."""
    if (too_long := length_problem(field, text)) is not None:
        raise TemplateRenderError([too_long])
    scan = _scan(text)
    problems = [_problem(field, refusal) for refusal in scan.refusals]
    known = allowed_variables | RESERVED_VARIABLES
    unknown: set[str] = set()
    for use in scan.uses:
        if use.name not in known and use.name not in unknown:
            unknown.add(use.name)
            message = _(
                "Unknown variable “%(name)s” in %(where)s. Declare it in the template's variables."
            ) % {"name": use.name, "where": _where(field, use.line)}
            problems.append(TemplateProblem(field=field, line=use.line, message=message))
    if problems:
        raise TemplateRenderError(problems)
    return {use.name for use in scan.uses}


def required_variables(*, template: CallTemplate) -> set[str]:
    """The contact variables a call cannot do without: spoken (or, for AI, put in the
    instructions) without a ``default`` and outside an ``{% if %}`` that tests them."""
    texts = list(_spoken_texts(template))
    if template.mode == "ai":
        texts.append(("instructions", template.instructions))
    return {
        use.name
        for field_name, text in texts
        for use in _checked_scan(field_name, text).uses
        if not use.optional and use.name not in RESERVED_VARIABLES
    }


def render_line(*, text: str, context: dict[str, str], field: str = "text") -> str:
    """``text`` rendered with ``context``, whitespace collapsed. MissingVariable when a
    variable it needs is absent or blank; TemplateRenderError when it breaks the rules;
    LineTooLong (holding the line cut to fit) when it comes out longer than the field's
    limit: rendering stops there, so a long value costs no more than the limit."""
    scan = _checked_scan(field, text)
    for use in scan.uses:
        if not use.optional and not context.get(use.name, "").strip():
            raise MissingVariable(use.name)
    assert scan.template is not None  # a scan without refusals holds its template
    spoken = _Spoken(limit=field_limit(field))
    rendering = Context(context, autoescape=False)
    # What Template.render sets up: filters read the engine through context.template.
    with rendering.render_context.push_state(scan.template), rendering.bind_template(scan.template):
        try:
            _render_into(spoken, scan.template.nodelist, rendering)
        except _Overflow:
            raise LineTooLong(
                field=field, limit=spoken.limit, cut=cut_at_sentence(spoken.text(), spoken.limit)
            ) from None
    return spoken.text()


def render_line_to_fit(*, text: str, context: dict[str, str], field: str = "text") -> str:
    """render_line for a call in progress: a line too long once filled in is cut at the
    last sentence end within the limit (and logged) rather than refused."""
    try:
        return render_line(text=text, context=context, field=field)
    except LineTooLong as error:
        logger.warning(
            "%s is longer than %s characters once filled in: cut to %s.",
            field,
            error.limit,
            len(error.cut),
        )
        return error.cut


def cut_at_sentence(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its longest start that ends a
    sentence (else a word) within the limit."""
    if len(text) <= limit:
        return text
    ends = [match.end() for match in _SENTENCE_STOP.finditer(text, 0, limit + 1)]
    ends = [end for end in ends if end <= limit]
    if ends:
        return text[: ends[-1]]
    head = text[:limit]
    space = head.rfind(" ") if not text[limit].isspace() else limit
    return (head[:space] if space > 0 else head).rstrip()


_SENTENCE_STOP = re.compile(r"[.?!…](?=\s|$)")


class _Overflow(Exception):
    """The rendered line grew past its limit."""


class _Spoken:
    """A line's rendered pieces with whitespace collapsed as they come (as
    ``" ".join(text.split())`` would), refusing to grow past ``limit`` characters."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.length = 0
        self._chunks: list[str] = []
        self._gap = False  # whitespace seen since the last word

    def add(self, piece: str) -> None:
        words = piece.split()
        for index, word in enumerate(words):
            if self._chunks and (index or self._gap or piece[0].isspace()):
                self._chunks.append(" ")
                self.length += 1
            self._chunks.append(word)
            self.length += len(word)
            if self.length > self.limit:
                raise _Overflow
        if piece:
            self._gap = piece[-1].isspace()

    def text(self) -> str:
        return "".join(self._chunks)


def _render_into(spoken: _Spoken, nodelist: NodeList, context: Context) -> None:
    # IfNode.render, walked here so that output stops at the limit.
    for node in nodelist:
        if not isinstance(node, IfNode):
            spoken.add(str(node.render(context)))  # a TextNode or VariableNode
            continue
        for condition, branch in node.conditions_nodelists:
            matched: Any
            if condition is None:  # else
                matched = True
            else:
                try:
                    # django-stubs types eval's context as a dict; IfNode.render passes a Context.
                    matched = condition.eval(context)  # type: ignore[arg-type]
                except VariableDoesNotExist:
                    matched = None
            if matched:
                _render_into(spoken, branch, context)
                break


@dataclass(frozen=True)
class Instructions:
    """A template's AI instructions rendered for a call: the text, in which each contact
    value is a reference such as ``[contact.first_name]``, and the values referred to."""

    text: str
    data: dict[str, str]


def contact_reference(name: str) -> str:
    """How the AI instructions refer to the contact value ``name`` (see render_instructions)."""
    return f"[contact.{name}]"


def render_instructions(
    *, text: str, context: dict[str, str], field: str = "instructions"
) -> Instructions:
    """``text`` rendered as ``render_line`` does, but a contact's value never enters it:
    each variable that would print one prints its reference (``contact_reference``), and
    the value goes in ``data``, for the model to read as data apart from the instructions.

    Contact values are every variable but ``campaign`` and ``partner`` (staff's own).
    They still decide {% if %} branches, a ``default`` for a blank value and ``yesno``,
    whose output is the template's own words; other filters do not apply to a reference.
    """
    scan = _checked_scan(field, text)
    for use in scan.uses:
        if not use.optional and not context.get(use.name, "").strip():
            raise MissingVariable(use.name)
    assert scan.template is not None  # a scan without refusals holds its template
    data: dict[str, str] = {}
    rendered = _render_referring(scan.template.nodelist, Context(context, autoescape=False), data)
    return Instructions(text=" ".join(rendered.split()), data=data)


def _render_referring(nodelist: NodeList, context: Context, data: dict[str, str]) -> str:
    # The sandbox lets through text, variables and {% if %} alone (see _walk).
    parts: list[str] = []
    for node in nodelist:
        if isinstance(node, IfNode):
            # As IfNode.render: the first branch whose condition holds (None: else).
            for condition, branch in node.conditions_nodelists:
                try:
                    # As above: IfNode.render passes a Context too.
                    match = True if condition is None else condition.eval(context)  # type: ignore[arg-type]
                except VariableDoesNotExist:
                    match = None
                if match:
                    parts.append(_render_referring(branch, context, data))
                    break
            continue
        if isinstance(node, VariableNode):
            expression = node.filter_expression
            name = _variable_name(expression)
            value = str(context.get(name, "")) if name is not None else ""
            chooses_words = any(
                getattr(function, "_filter_name", None) == "yesno"
                for function, _arguments in expression.filters
            )
            if (
                name is not None
                and name not in CAMPAIGN_VARIABLES
                and value.strip()
                and not chooses_words
            ):
                data[name] = value
                parts.append(contact_reference(name))
                continue
        parts.append(str(node.render_annotated(context)))
    return "".join(parts)


def contact_context(*, contact: ContactLike) -> dict[str, str]:
    """What a template may speak for ``contact``: its variables, then the reserved names."""
    campaign = contact.campaign
    # Reserved names come last: a contact variable called "phone" cannot mask the number.
    return {
        **context_values(contact.variables or {}),
        "phone": contact.phone,
        "external_id": contact.external_id,
        "campaign": campaign.name,
        "partner": campaign.partner.name,
    }


def context_values(values: Mapping[str, Any]) -> dict[str, str]:
    """``values`` as the plain strings a template speaks; None is blank."""
    return {name: "" if value is None else str(value) for name, value in values.items()}


def render_template(*, template: CallTemplate, context: dict[str, str]) -> dict[str, str]:
    """Every spoken line of ``template`` rendered with ``context``, keyed by field name
    (``steps.<index>.prompt`` and ``steps.<index>.retry_prompt`` for scripted steps)."""
    return {
        field_name: render_line(text=text, context=context, field=field_name)
        for field_name, text in _spoken_texts(template)
    }
