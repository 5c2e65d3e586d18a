"""Speech from call templates: a sandboxed subset of Django's template language.

Partner staff write the lines and contacts' data fills them in, so every line is parsed
against an allow-list before anything renders: text, plain variables,
{% if %}/{% elif %}/{% else %} and a few text filters. The output is speech, not HTML, so
nothing is escaped.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from django.conf import settings
from django.template import Context, Engine, Template, TemplateSyntaxError, VariableDoesNotExist
from django.template.base import (
    BLOCK_TAG_START,
    FilterExpression,
    Lexer,
    NodeList,
    Parser,
    TextNode,
    Token,
    TokenType,
    Variable,
    VariableNode,
    filter_re,
    tag_re,
)
from django.template.defaulttags import IfNode, TemplateLiteral
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from templates.models import CallTemplate

logger = logging.getLogger(__name__)

ALLOWED_TAGS = frozenset({"if", "elif", "else", "endif"})
ALLOWED_FILTERS = frozenset({"default", "upper", "lower", "capfirst", "title", "yesno", "cut"})
# Filled in by the call itself, for every contact; a template may not declare them.
RESERVED_VARIABLES = frozenset({"phone", "external_id", "campaign", "partner"})
# Known before the first dial: lines using only these can be rendered (and voiced) ahead.
CAMPAIGN_VARIABLES = frozenset({"campaign", "partner"})
# Django evaluates an {% if %} condition and a filter chain by recursion and loops over
# the value: these bounds keep both far from Python's recursion limit and cheap on a long
# value. Real lines use a handful of each.
MAX_CONDITION_WORDS = 60
MAX_FILTERS = 5

# The fields said aloud, in the order a call may say them.
SPOKEN_FIELDS = (
    "greeting",
    "voicemail_message",
    "closing_line",
    "opt_out_confirmation",
    "transfer_line",
    "transfer_failed_line",
)
# Spoken on few calls (a contact ringing us back): voiced ahead only when the same for
# every contact, else when said.
ON_DEMAND_FIELDS = ("inbound_greeting",)
# Every text field of a template that is rendered: the spoken ones and the AI instructions.
TEXT_FIELDS = (*SPOKEN_FIELDS, *ON_DEMAND_FIELDS, "instructions")
# Same msgids as the model's verbose names, so messages name fields as the admin does.
_FIELD_LABELS = {
    "greeting": gettext_lazy("greeting"),
    "inbound_greeting": gettext_lazy("greeting when called back"),
    "instructions": gettext_lazy("AI instructions"),
    "voicemail_message": gettext_lazy("voicemail message"),
    "closing_line": gettext_lazy("closing line"),
    "opt_out_confirmation": gettext_lazy("opt-out confirmation"),
    "transfer_line": gettext_lazy("transfer line"),
    "transfer_failed_line": gettext_lazy("transfer failed line"),
}


class ContactLike(Protocol):
    """What rendering reads from a ``campaigns.models.Contact`` (templates may not import
    campaigns, which builds on templates)."""

    phone: str
    external_id: str
    variables: dict[str, Any]
    campaign: Any


@dataclass(frozen=True)
class TemplateProblem:
    """One reason a template line is refused: the field, the line in it, what to change."""

    field: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message


class TemplateRenderError(ValueError):
    """A template line breaks the sandbox rules, uses an unknown variable or does not parse."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        super().__init__(" ".join(problem.message for problem in problems))
        self.problems = problems


class LineTooLong(TemplateRenderError):
    """A line longer than its field's limit once filled in. ``cut`` is the line cut at the
    last sentence end within the limit: what a call says rather than nothing."""

    def __init__(self, *, field: str, limit: int, cut: str) -> None:
        message = _(
            "Too long once filled in: more than the limit of %(limit)s characters (%(where)s)."
        ) % {"where": field_label(field), "limit": limit}
        super().__init__([TemplateProblem(field=field, line=None, message=message)])
        self.field = field
        self.limit = limit
        self.cut = cut


class MissingVariable(ValueError):
    """A contact lacks a variable that a line speaks: say nothing rather than a sentence
    with a hole in it."""

    def __init__(self, name: str) -> None:
        super().__init__(_("missing variable %(name)s") % {"name": name})
        self.name = name


def field_limit(field: str) -> int:
    """How many characters ``field`` may hold, as written and once filled in."""
    if field == "instructions":
        return settings.TEMPLATE_INSTRUCTIONS_MAX_CHARS
    return settings.TEMPLATE_LINE_MAX_CHARS


def length_problem(field: str, text: str) -> TemplateProblem | None:
    """Why ``text`` is too long for ``field``; None when it fits."""
    limit = field_limit(field)
    if len(text) <= limit:
        return None
    message = _(
        "Too long: %(length)s characters, more than the limit of %(limit)s (%(where)s)."
    ) % {"where": field_label(field), "length": len(text), "limit": limit}
    return TemplateProblem(field=field, line=None, message=message)


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
            if condition is None:  # else
                matched = True
            else:
                try:
                    matched = condition.eval(context)
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
                    match = True if condition is None else condition.eval(context)
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
            if name not in CAMPAIGN_VARIABLES and value.strip() and not chooses_words:
                data[name] = value
                parts.append(contact_reference(name))
                continue
        parts.append(node.render_annotated(context))
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


def _spoken_texts(template: CallTemplate) -> Iterator[tuple[str, str]]:
    for field_name in (*SPOKEN_FIELDS, *ON_DEMAND_FIELDS):
        text = getattr(template, field_name)
        if text.strip():
            yield field_name, text
    if template.mode != "scripted" or not isinstance(template.steps, list):
        return
    for index, step in enumerate(template.steps):
        if not isinstance(step, dict):
            continue
        for key in ("prompt", "retry_prompt"):
            text = step.get(key)
            if isinstance(text, str) and text.strip():
                yield f"steps.{index}.{key}", text


# The sandbox. A line is parsed once (and cached) by a parser that knows only the allowed
# tags and filters and refuses, by name, every other tag, filter and any variable that is
# not a plain top-level name; then its node tree is walked against the same allow-list,
# which also records each variable used and whether a call can do without it.


@dataclass(frozen=True)
class _Refusal:
    code: str
    params: dict[str, str]
    line: int | None


@dataclass(frozen=True)
class _Use:
    name: str
    line: int | None
    # True when the line reads fine without it: it has a default, is only tested by an
    # {% if %}, or is spoken only inside an {% if %} that tested it.
    optional: bool


@dataclass(frozen=True)
class _Scan:
    template: Template | None
    refusals: tuple[_Refusal, ...] = ()
    uses: tuple[_Use, ...] = ()


class _Refused(TemplateSyntaxError):
    """Raised while parsing or walking a line, for a construct outside the allow-list."""

    def __init__(self, code: str, *, token: Token | None = None, **params: str) -> None:
        super().__init__(code)
        self.code = code
        self.params = params
        if token is not None:  # else the parser attaches the token it was reading
            self.token = token


_REFUSAL_MESSAGES = {
    "tag": gettext_lazy(
        "Tag “%(tag)s” is not allowed (%(where)s). Only if, elif and else may be used."
    ),
    "filter": gettext_lazy(
        "Filter “%(filter)s” is not allowed (%(where)s). Use one of: %(allowed)s."
    ),
    "variable": gettext_lazy(
        "Variable “%(name)s” is not allowed (%(where)s). Use a plain name such as "
        "first_name, without dots or a leading underscore."
    ),
    "filter_argument": gettext_lazy(
        "Filter “%(filter)s” takes quoted text, not the variable “%(argument)s” (%(where)s)."
    ),
    "syntax": gettext_lazy("Syntax error in %(where)s: %(error)s"),
    "nesting": gettext_lazy("{%% if %%} blocks are nested deeper than %(limit)s (%(where)s)."),
    "condition": gettext_lazy(
        "The {%% if %%} condition has %(count)s words, more than the limit of %(limit)s "
        "(%(where)s)."
    ),
    "filters": gettext_lazy(
        "A variable has %(count)s filters, more than the limit of %(limit)s (%(where)s)."
    ),
}


def _where(field_name: str, line: int | None) -> str:
    label = field_label(field_name)
    if line is None:
        return label
    return _("%(field)s, line %(line)s") % {"field": label, "line": line}


def field_label(field_name: str) -> str:
    """How messages name a spoken field: its label, or "step 2 prompt" for a step's line."""
    if field_name in _FIELD_LABELS:
        return str(_FIELD_LABELS[field_name])
    parts = field_name.split(".")
    if len(parts) == 3 and parts[0] == "steps" and parts[1].isdigit():
        number = int(parts[1]) + 1
        if parts[2] == "prompt":
            return _("step %(number)s prompt") % {"number": number}
        if parts[2] == "retry_prompt":
            return _("step %(number)s retry prompt") % {"number": number}
    return field_name


def _problem(field_name: str, refusal: _Refusal) -> TemplateProblem:
    params = {
        **refusal.params,
        "where": _where(field_name, refusal.line),
        "allowed": ", ".join(sorted(ALLOWED_FILTERS)),
    }
    message = str(_REFUSAL_MESSAGES[refusal.code]) % params
    return TemplateProblem(field=field_name, line=refusal.line, message=message)


def _checked_scan(field_name: str, text: str) -> _Scan:
    # A line saved before the limits (or under a higher one) is refused unparsed.
    if (too_long := length_problem(field_name, text)) is not None:
        raise TemplateRenderError([too_long])
    scan = _scan(text)
    if scan.refusals:
        raise TemplateRenderError([_problem(field_name, refusal) for refusal in scan.refusals])
    return scan


@functools.cache
def _engine() -> Engine:
    # No loaders and no libraries: nothing can be included, extended or loaded.
    return Engine(loaders=[], libraries={}, autoescape=False, string_if_invalid="")


class _ScanCache:
    """Parsed lines by source, least recently used out first, bounded by the total length
    of the sources held (``TEMPLATE_CACHE_MAX_CHARS``, read at each insertion) rather
    than by their count: a parsed line costs memory in proportion to its source."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, int], _Scan] = OrderedDict()
        self._lock = threading.Lock()  # call webhooks render in threads
        self.chars = 0

    def get(self, key: tuple[str, int]) -> _Scan | None:
        with self._lock:
            scan = self._entries.get(key)
            if scan is not None:
                self._entries.move_to_end(key)
            return scan

    def put(self, key: tuple[str, int], scan: _Scan) -> None:
        budget = settings.TEMPLATE_CACHE_MAX_CHARS
        size = len(key[0])
        if size > budget:
            return  # would push out everything else
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = scan
            self.chars += size
            while self.chars > budget:
                (old_text, _nesting), _old = self._entries.popitem(last=False)
                self.chars -= len(old_text)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.chars = 0

    def __len__(self) -> int:
        return len(self._entries)


_scans = _ScanCache()


def _scan(text: str) -> _Scan:
    # The nesting limit is part of the key: a scan holds its verdict under that limit.
    key = (text, settings.TEMPLATE_MAX_NESTING)
    scan = _scans.get(key)
    if scan is None:
        scan = _parse(text, max_nesting=key[1])
        _scans.put(key, scan)
    return scan


def _parse(text: str, *, max_nesting: int) -> _Scan:
    try:
        template = _SandboxTemplate(text, engine=_engine(), max_nesting=max_nesting)
        uses = tuple(_walk(template.nodelist, guarded=frozenset()))
    except TemplateSyntaxError as error:
        token = getattr(error, "token", None)
        line = token.lineno if token is not None else None
        if isinstance(error, _Refused):
            refusal = _Refusal(error.code, error.params, line)
        else:
            refusal = _Refusal("syntax", {"error": str(error)}, line)
        return _Scan(template=None, refusals=(refusal,))
    return _Scan(template=template, uses=uses)


class _SandboxTemplate(Template):
    def __init__(self, *args: Any, max_nesting: int, **kwargs: Any) -> None:
        self.max_nesting = max_nesting
        super().__init__(*args, **kwargs)

    def compile_nodelist(self) -> NodeList:
        tokens = Lexer(self.source).tokenize()
        _check_shape(tokens, max_nesting=self.max_nesting)
        parser = _SandboxParser(
            tokens, self.engine.template_libraries, self.engine.template_builtins, self.origin
        )
        return parser.parse()


class _SandboxParser(Parser):
    """Django's parser knowing only the allowed tags and filters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tags = {name: tag for name, tag in self.tags.items() if name in ALLOWED_TAGS}
        self.filters = {name: f for name, f in self.filters.items() if name in ALLOWED_FILTERS}

    def invalid_block_tag(
        self, token: Token, command: str, parse_until: list[str] | None = None
    ) -> NoReturn:
        if command in ALLOWED_TAGS:  # an elif, else or endif out of place: a syntax error
            super().invalid_block_tag(token, command, parse_until)
        raise self.error(token, _Refused("tag", tag=command))

    def find_filter(self, filter_name: str) -> Any:
        if filter_name not in self.filters:
            raise _Refused("filter", filter=filter_name)
        return super().find_filter(filter_name)

    def compile_filter(self, token: str) -> FilterExpression:
        # Django refuses names with a leading underscore before any node exists; refuse
        # them first, in the sandbox's words.
        for match in filter_re.finditer(token):
            for name in (match["var"], match["var_arg"]):
                if name and (name.startswith("_") or "._" in name):
                    raise _Refused("variable", name=name)
        expression = super().compile_filter(token)
        _check_expression(expression)
        return expression


def _check_shape(tokens: list[Token], *, max_nesting: int) -> None:
    """Refuse, before Django's parser recurses into them, blocks nested deeper than
    ``max_nesting`` and {% if %} conditions longer than MAX_CONDITION_WORDS."""
    depth = 0
    for token in tokens:
        if token.token_type != TokenType.BLOCK:
            continue
        words = token.contents.split()
        command = words[0] if words else ""
        if command == "if":
            depth += 1
            if depth > max_nesting:
                raise _Refused("nesting", token=token, limit=str(max_nesting))
        elif command == "endif":
            depth = max(depth - 1, 0)  # an unmatched endif is the parser's to report
        if command in ("if", "elif"):
            count = len(token.split_contents()) - 1
            if count > MAX_CONDITION_WORDS:
                raise _Refused(
                    "condition", token=token, count=str(count), limit=str(MAX_CONDITION_WORDS)
                )


def _check_expression(expression: FilterExpression, token: Token | None = None) -> None:
    if len(expression.filters) > MAX_FILTERS:
        raise _Refused(
            "filters", token=token, count=str(len(expression.filters)), limit=str(MAX_FILTERS)
        )
    variable = expression.var
    if isinstance(variable, Variable) and variable.lookups is not None:
        if len(variable.lookups) > 1 or variable.var.startswith("_"):
            raise _Refused("variable", token=token, name=variable.var)
    for function, arguments in expression.filters:
        name = getattr(function, "_filter_name", function.__name__)
        if name not in ALLOWED_FILTERS:
            raise _Refused("filter", token=token, filter=name)
        for is_variable, argument in arguments:
            if is_variable:
                raise _Refused("filter_argument", token=token, filter=name, argument=argument.var)


def _walk(nodelist: NodeList, *, guarded: frozenset[str]) -> Iterator[_Use]:
    """The variables used in ``nodelist``, refusing any node outside the allow-list."""
    for node in nodelist:
        token = node.token
        if isinstance(node, TextNode):
            continue
        if isinstance(node, VariableNode):
            expression = node.filter_expression
            _check_expression(expression, token)
            if (name := _variable_name(expression)) is not None:
                optional = name in guarded or _has_default(expression)
                yield _Use(name, token.lineno, optional)
        elif isinstance(node, IfNode):
            for condition, branch in node.conditions_nodelists:
                tested: frozenset[str] = frozenset()
                if condition is not None:  # None is the else branch
                    for expression in _condition_expressions(condition):
                        _check_expression(expression, token)
                        if (name := _variable_name(expression)) is not None:
                            yield _Use(name, token.lineno, optional=True)
                    tested = _tested_names(condition)
                yield from _walk(branch, guarded=guarded | tested)
        else:
            raise _Refused("tag", token=token, tag=token.contents.split()[0])


def _variable_name(expression: FilterExpression) -> str | None:
    variable = expression.var
    if isinstance(variable, Variable) and variable.lookups is not None:
        return variable.var
    return None  # a literal


def _has_default(expression: FilterExpression) -> bool:
    return any(
        getattr(function, "_filter_name", None) == "default"
        for function, _arguments in expression.filters
    )


def _condition_expressions(condition: Any) -> Iterator[FilterExpression]:
    # An {% if %} condition is a tree of smartif operators (first, second) over literals.
    if isinstance(condition, TemplateLiteral):
        yield condition.value
        return
    for operand in (getattr(condition, "first", None), getattr(condition, "second", None)):
        if operand is not None:
            yield from _condition_expressions(operand)


def _tested_names(condition: Any) -> frozenset[str]:
    """Variables the branch runs only when non-empty: ``{% if a %}``, ``{% if a and b %}``."""
    if isinstance(condition, TemplateLiteral):
        name = _variable_name(condition.value)
        return frozenset({name}) if name and not condition.value.filters else frozenset()
    if getattr(condition, "id", None) == "and":
        return _tested_names(condition.first) | _tested_names(condition.second)
    return frozenset()
