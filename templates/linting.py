"""The disclosure lint: what a template must say before a campaign may call with it.

Separate from CallTemplate.clean(): a draft may be saved while it fails, a campaign may not
start with it. The rules, each with its legal source:

- the greeting (and the greeting for a contact who calls back, when the template has one)
  names the company: TRLGDCU art. 96.2 (Spain) and 47 CFR 64.1200(b)(1) (US) require the
  caller's identity at the start of the call;
- an AI call says it is automated: EU AI Act art. 50(1) requires telling people they talk
  to an AI system, and FCC 24-17 makes AI voices "artificial voices" under the TCPA, whose
  messages must identify themselves;
- the voicemail leaves a number to call back: 47 CFR 64.1200(b)(2);
- a campaign that records its calls announces it before recording starts
  (`recording_problems`): GDPR art. 13 (information at the time of collection), and in the
  US the all-party consent states (Cal. Penal Code 632). Recording starts once the
  answer's lines have been played (calls.recording), so the announcement belongs in the
  greeting or, in a scripted template, in its first step's prompt, said with the greeting.

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


# Words that announce a recording, by the language (its primary subtag) they are said in;
# compared folded like the disclosure phrases. A language without a list takes any of them.
RECORDING_WORDS: dict[str, tuple[str, ...]] = {
    "es": (
        "grabada",
        "grabadas",
        "grabado",
        "grabados",
        "grabación",
        "grabaciones",
        "se graba",
        "grabamos",
        "grabando",
        "vamos a grabar",
        "será grabada",
    ),
    "en": (
        "recorded",
        "recording",
        "we record",
        "being recorded",
    ),
}


def _recording_re(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(_folded(word)) for word in words) + r")\b")


_RECORDING_RES = {language: _recording_re(words) for language, words in RECORDING_WORDS.items()}
_ANY_RECORDING_RE = _recording_re(tuple(w for words in RECORDING_WORDS.values() for w in words))


def announces_recording(text: str, *, language: str) -> bool:
    """Whether `text` says, in `language` (a BCP-47 tag), that the call is recorded."""
    pattern = _RECORDING_RES.get(language.split("-")[0].lower(), _ANY_RECORDING_RE)
    return bool(pattern.search(_folded(text)))


def recording_announcement(template: CallTemplate) -> str | None:
    """The field of `template` that announces the recording among the lines said before
    recording starts (the greeting; a scripted template's first step's prompt, said with
    it); None when none does."""
    fields = [("greeting", template.greeting)]
    steps = template.steps if isinstance(template.steps, list) else []
    if template.mode == "scripted" and steps and isinstance(steps[0], dict):
        prompt = steps[0].get("prompt")
        if isinstance(prompt, str):
            fields.append(("steps.0.prompt", prompt))
    for field, text in fields:
        if announces_recording(text, language=template.language):
            return field
    return None


def recording_problems(*, template: CallTemplate, records: bool) -> list[str]:
    """What `template` lacks to be used by a campaign that records its calls (`records`):
    the announcement, in the template's language, before recording starts. Empty when
    the campaign does not record."""
    if not records or recording_announcement(template) is not None:
        return []
    if template.mode == "scripted":
        message = _(
            "The campaign records its calls: the greeting or the first step's prompt must "
            "say so in the template's language (for example “esta llamada será grabada” or "
            "“this call is recorded”)."
        )
    else:
        message = _(
            "The campaign records its calls: the greeting must say so in the template's "
            "language (for example “esta llamada será grabada” or “this call is recorded”)."
        )
    return [message]


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
