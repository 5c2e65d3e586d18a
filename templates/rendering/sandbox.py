"""The sandbox: the allow-list a template line is parsed and walked against, and the
cache of parsed lines."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from django.conf import settings
from django.template import Engine, Template, TemplateSyntaxError
from django.template.base import (
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
)
from django.template.defaulttags import IfNode, TemplateLiteral
from django.utils.translation import gettext_lazy

from templates.rendering.fields import TemplateProblem, TemplateRenderError, _where, length_problem

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
        self, token: Token, command: str, parse_until: Iterable[str] | None = None
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
        name = cast(str, variable.var)  # a str once it has lookups
        if len(variable.lookups) > 1 or name.startswith("_"):
            raise _Refused("variable", token=token, name=name)
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
        token = cast(Token, node.token)  # the parser gives every node its token
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
        return cast(str, variable.var)
    return None  # a literal


def _has_default(expression: FilterExpression) -> bool:
    return any(
        getattr(function, "_filter_name", None) == "default"
        for function, _arguments in expression.filters
    )


def _condition_expressions(condition: Any) -> Iterator[FilterExpression]:
    # An {% if %} condition is a tree of smartif operators (first, second) over literals.
    if isinstance(condition, TemplateLiteral):
        # A FilterExpression, whatever django-stubs says of TemplateLiteral.value.
        yield cast(FilterExpression, condition.value)
        return
    for operand in (getattr(condition, "first", None), getattr(condition, "second", None)):
        if operand is not None:
            yield from _condition_expressions(operand)


def _tested_names(condition: Any) -> frozenset[str]:
    """Variables the branch runs only when non-empty: ``{% if a %}``, ``{% if a and b %}``."""
    if isinstance(condition, TemplateLiteral):
        value = cast(FilterExpression, condition.value)  # as in _condition_expressions
        name = _variable_name(value)
        return frozenset({name}) if name and not value.filters else frozenset()
    if getattr(condition, "id", None) == "and":
        return _tested_names(condition.first) | _tested_names(condition.second)
    return frozenset()
