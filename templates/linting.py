"""The disclosure lint: what a template must say before a campaign may call with it.

Separate from CallTemplate.clean(): a draft may be saved while it fails, a campaign may not
start with it. The rules, each with its legal source:

- the greeting (and the greeting for a contact who calls back, when the template has one)
  names the company: TRLGDCU art. 96.2 (Spain) and 47 CFR 64.1200(b)(1) (US) require the
  caller's identity at the start of the call;
- an AI call says it is automated: EU AI Act art. 50(1) requires telling people they talk
  to an AI system, and FCC 24-17 makes AI voices "artificial voices" under the TCPA, whose
  messages must identify themselves;
- the voicemail leaves a number to call back: 47 CFR 64.1200(b)(2).

A line longer than its limit (saved before the limit, or under a higher one) is a problem
too: calls would skip it, so no campaign starts with it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

from templates.rendering import TEXT_FIELDS, length_problem

if TYPE_CHECKING:
    from templates.models import CallTemplate

# Compared without accents or case, so "asistente automático" matches "Asistente Automatico".
DISCLOSURE_PHRASES = (
    "asistente automático",
    "asistente automatizado",
    "asistente virtual",
    "asistente de IA",
    "inteligencia artificial",
    "sistema automático",
    "sistema automatizado",
    "llamada automática",
    "llamada automatizada",
    "automated assistant",
    "virtual assistant",
    "AI assistant",
    "artificial intelligence",
    "automated system",
    "automated call",
)
PARTNER_VARIABLE_RE = re.compile(r"\{\{\s*partner\s*(\|[^}]*)?\}\}")
CALLBACK_VARIABLE_RE = re.compile(r"\{\{\s*callback_number\s*(\|[^}]*)?\}\}")
# At least 9 digits, each pair separated by at most one space, dot or dash.
PHONE_NUMBER_RE = re.compile(r"(?<![\d+])\+?\d(?:[ .\-]?\d){8,}")


def _folded(text: str) -> str:
    """``text`` without accents, case or repeated whitespace."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())


_DISCLOSURE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(_folded(phrase)) for phrase in DISCLOSURE_PHRASES) + r")\b"
)


def lint_template(*, template: CallTemplate) -> list[str]:
    """What ``template`` fails to disclose, one message per rule; empty when it passes."""
    return [
        message for messages in lint_problems(template=template).values() for message in messages
    ]


def _length_problems(template: CallTemplate) -> dict[str, list[str]]:
    texts = [(field, field, getattr(template, field)) for field in TEXT_FIELDS]
    for index, step in enumerate(template.steps if isinstance(template.steps, list) else []):
        for key in ("prompt", "retry_prompt"):
            text = step.get(key) if isinstance(step, dict) else None
            if isinstance(text, str):
                texts.append(("steps", f"steps.{index}.{key}", text))
    problems: dict[str, list[str]] = {}
    for name, field, text in texts:
        if (too_long := length_problem(field, text)) is not None:
            problems.setdefault(name, []).append(too_long.message)
    return problems


def lint_problems(*, template: CallTemplate) -> dict[str, list[str]]:
    """The lint's messages keyed by the field at fault (greeting, inbound_greeting,
    voicemail_message, and any line too long); empty when ``template`` passes."""
    problems = _length_problems(template)
    partner_name = template.partner.name
    # A contact ringing us back hears the inbound greeting instead (when there is one):
    # the same rules hold for it.
    for field in ("greeting", "inbound_greeting"):
        text = getattr(template, field)
        if field != "greeting" and not text.strip():
            continue
        if field in problems:
            continue  # too long to be worth reading
        greeting = _folded(text)
        if not (PARTNER_VARIABLE_RE.search(text) or _folded(partner_name) in greeting):
            problems.setdefault(field, []).append(
                _("The greeting must name the company: include {{ partner }} or “%(partner)s”.")
                % {"partner": partner_name}
            )
        if template.mode == "ai" and not _DISCLOSURE_RE.search(greeting):
            problems.setdefault(field, []).append(
                _(
                    "The greeting must say that the caller is an automated assistant (for "
                    "example “asistente virtual” or “automated assistant”)."
                )
            )
    voicemail = template.voicemail_message
    if "voicemail_message" in problems:
        return problems
    if not (PHONE_NUMBER_RE.search(voicemail) or CALLBACK_VARIABLE_RE.search(voicemail)):
        problems.setdefault("voicemail_message", []).append(
            _(
                "The voicemail message must leave a number to call back (at least 9 digits) "
                "or {{ callback_number }}."
            )
        )
    return problems
