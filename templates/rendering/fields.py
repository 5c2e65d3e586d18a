"""The fields of a template that render, their limits and labels, and the errors that
name them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from templates.models import CallTemplate


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
