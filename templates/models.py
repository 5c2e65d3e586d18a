"""Call templates: what is said on a call, in AI or scripted mode."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from templates.languages import validate_extra_languages, validate_gather_language
from templates.rendering import (
    RESERVED_VARIABLES,
    TEXT_FIELDS,
    TemplateRenderError,
    validate_text,
)

# A BCP-47 tag as Twilio and ElevenLabs take it: a language, then optional subtags.
bcp47_validator = RegexValidator(
    r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
    _("Enter a BCP-47 language tag such as es-ES or en-US."),
)


# Lowercase identifiers not starting with an underscore (the sandbox refuses those names).
VARIABLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Where a scripted answer may lead besides another step.
STEP_EXITS = frozenset({"end", "transfer", "opt_out"})
_STEP_KEYS = frozenset({"id", "prompt", "answers", "retry_prompt"})
_ANSWER_KEYS = frozenset({"keywords", "digit", "next", "outcome"})


class TemplateMode(models.TextChoices):
    AI = "ai", _("AI conversation")
    SCRIPTED = "scripted", _("Scripted")


class CallTemplate(models.Model):
    """The script of a campaign's calls, owned by one partner."""

    Mode = TemplateMode

    # Lazy reference: Partner lives in campaigns, which itself builds on templates.
    partner = models.ForeignKey(
        "campaigns.Partner",
        verbose_name=_("partner"),
        on_delete=models.CASCADE,
        related_name="call_templates",
    )
    name = models.CharField(_("name"), max_length=200)
    language = models.CharField(
        _("language"),
        max_length=35,
        default=settings.DEFAULT_CALL_LANGUAGE,
        validators=[bcp47_validator, validate_gather_language],
    )
    mode = models.CharField(_("mode"), max_length=16, choices=Mode, default=Mode.AI)
    extra_languages = models.CharField(
        _("other languages"),
        max_length=200,
        blank=True,
        validators=[validate_extra_languages],
        help_text=_(
            "Streamed calls only: other languages the callee may speak, comma-separated "
            "BCP-47 tags such as en-US, ca-ES. The call starts in the template's language."
        ),
    )
    hints = models.CharField(
        _("speech hints"),
        max_length=500,
        blank=True,
        help_text=_(
            "Comma-separated words or phrases the speech recognition should expect: names, "
            "products, places."
        ),
    )
    variables = models.JSONField(
        _("variables"),
        default=dict,
        blank=True,
        help_text=_(
            "The contact variables the template speaks, each with a sample value for "
            'previews, e.g. {"first_name": "Lucía"}.'
        ),
    )
    greeting = models.TextField(_("greeting"))
    inbound_greeting = models.TextField(
        _("greeting when called back"),
        blank=True,
        help_text=_(
            "Said instead of the greeting when a contact rings the campaign's number back. "
            "Empty: a standard line in the template's language that thanks them for calling "
            "back, names the company and says they are talking to an automated assistant."
        ),
    )
    instructions = models.TextField(
        _("AI instructions"),
        blank=True,
        help_text=_("The system prompt: persona, goal and rules of the conversation."),
    )
    steps = models.JSONField(
        _("scripted steps"),
        default=list,
        blank=True,
        help_text=_("For scripted mode: prompts, the answers each accepts and where they lead."),
    )
    voicemail_message = models.TextField(_("voicemail message"), blank=True)
    closing_line = models.TextField(_("closing line"), blank=True)
    opt_out_confirmation = models.TextField(_("opt-out confirmation"), blank=True)
    transfer_line = models.TextField(_("transfer line"), blank=True)
    transfer_failed_line = models.TextField(
        _("transfer failed line"),
        blank=True,
        help_text=_(
            "Said when nobody takes a transfer: an apology and an offer to call back. "
            "Empty: a standard line in the template's language."
        ),
    )
    outcome_schema = models.JSONField(
        _("outcome schema"),
        default=dict,
        blank=True,
        help_text=_("JSON Schema of the fields to extract after the call."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("call template")
        verbose_name_plural = _("call templates")
        ordering = ["partner", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "name"], name="calltemplate_unique_name_per_partner"
            ),
            models.CheckConstraint(
                condition=models.Q(mode__in=TemplateMode.values), name="calltemplate_mode_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(greeting=""), name="calltemplate_greeting_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a template that could not be rendered or run, naming the field at fault.

        The disclosure lint (templates.linting) is separate: a draft may fail it.
        """
        declared = set(self.variables) if isinstance(self.variables, dict) else set()
        # Too long to be worth reading further: said so, and not checked in depth.
        oversized = {
            name: message
            for name in ("variables", "steps", "outcome_schema")
            if (message := _json_length_error(getattr(self, name))) is not None
        }
        errors: dict[str, list[str]] = {
            "variables": [oversized["variables"]]
            if "variables" in oversized
            else _variables_errors(self.variables),
            "steps": [oversized["steps"]]
            if "steps" in oversized
            else _steps_errors(self.steps, allowed_variables=declared),
            "outcome_schema": [oversized["outcome_schema"]]
            if "outcome_schema" in oversized
            else _outcome_schema_errors(self.outcome_schema),
        }
        for field in TEXT_FIELDS:
            try:
                validate_text(field=field, text=getattr(self, field), allowed_variables=declared)
            except TemplateRenderError as error:
                errors[field] = [problem.message for problem in error.problems]
        if self.mode == TemplateMode.SCRIPTED and not self.steps:
            errors["steps"].append(gettext("A scripted template needs at least one step."))
        if self.mode == TemplateMode.AI and not self.instructions.strip():
            errors.setdefault("instructions", []).append(
                gettext(
                    "An AI template needs instructions: they are the assistant's system prompt."
                )
            )
        errors = {field: messages for field, messages in errors.items() if messages}
        if errors:
            raise ValidationError(errors)


def _json_length_error(value: Any) -> str | None:
    """Why ``value`` is too long as JSON (``TEMPLATE_JSON_MAX_CHARS``); None when it fits."""
    length = len(json.dumps(value, ensure_ascii=False, default=str))
    limit = settings.TEMPLATE_JSON_MAX_CHARS
    if length <= limit:
        return None
    return gettext("Too long: %(length)s characters as JSON, more than the limit of %(limit)s.") % {
        "length": length,
        "limit": limit,
    }


def _variables_errors(variables: Any) -> list[str]:
    if not isinstance(variables, dict):
        return [gettext("Variables must map each name to a sample value.")]
    errors = []
    for name, sample in variables.items():
        if not VARIABLE_NAME_RE.match(name):
            errors.append(
                gettext(
                    "“%(name)s” is not a valid variable name: use lowercase letters, digits "
                    "and underscores, starting with a letter."
                )
                % {"name": name}
            )
        elif name in RESERVED_VARIABLES:
            errors.append(
                gettext("“%(name)s” is filled in by the call itself (reserved: %(reserved)s).")
                % {"name": name, "reserved": ", ".join(sorted(RESERVED_VARIABLES))}
            )
        if not isinstance(sample, str):
            errors.append(gettext("The sample value of “%(name)s” must be text.") % {"name": name})
    return errors


def _steps_errors(steps: Any, *, allowed_variables: set[str]) -> list[str]:
    """Scripted steps are ``[{"id", "prompt", "answers": [{"keywords", "digit", "next",
    "outcome"}], "retry_prompt"}]``; an answer leads to a step id or one of STEP_EXITS."""
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        return [gettext("Steps must be a list of objects.")]
    errors = []
    targets = {step["id"] for step in steps if isinstance(step.get("id"), str)} | STEP_EXITS
    seen_ids: set[str] = set()
    for index, step in enumerate(steps):
        number = index + 1
        for key in sorted(set(step) - _STEP_KEYS):
            errors.append(
                gettext("Step %(number)s has an unknown key “%(key)s”.")
                % {"number": number, "key": key}
            )
        step_id = step.get("id")
        if not isinstance(step_id, str) or not step_id.strip():
            errors.append(gettext("Step %(number)s needs an id.") % {"number": number})
        elif step_id in STEP_EXITS:
            errors.append(
                gettext("Step %(number)s cannot be called “%(id)s”: answers use it to leave.")
                % {"number": number, "id": step_id}
            )
        elif step_id in seen_ids:
            errors.append(
                gettext("Step %(number)s repeats the id “%(id)s”.")
                % {"number": number, "id": step_id}
            )
        else:
            seen_ids.add(step_id)
        prompt = step.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            errors.append(gettext("Step %(number)s needs a prompt.") % {"number": number})
        if not isinstance(step.get("retry_prompt", ""), str):
            errors.append(
                gettext("The retry prompt of step %(number)s must be text.") % {"number": number}
            )
        for key in ("prompt", "retry_prompt"):
            text = step.get(key)
            if isinstance(text, str):
                try:
                    validate_text(
                        field=f"steps.{index}.{key}",
                        text=text,
                        allowed_variables=allowed_variables,
                    )
                except TemplateRenderError as error:
                    errors.extend(problem.message for problem in error.problems)
        errors.extend(_answers_errors(step.get("answers", []), number=number, targets=targets))
    return errors


def _answers_errors(answers: Any, *, number: int, targets: set[str]) -> list[str]:
    if not isinstance(answers, list) or not all(isinstance(answer, dict) for answer in answers):
        return [
            gettext("The answers of step %(number)s must be a list of objects.")
            % {"number": number}
        ]
    errors = []
    seen_digits: set[str] = set()
    for answer_index, answer in enumerate(answers):
        where = {"number": number, "answer": answer_index + 1}
        for key in sorted(set(answer) - _ANSWER_KEYS):
            errors.append(
                gettext("Step %(number)s, answer %(answer)s has an unknown key “%(key)s”.")
                % {**where, "key": key}
            )
        keywords = answer.get("keywords", [])
        if not isinstance(keywords, list) or not all(
            isinstance(keyword, str) and keyword.strip() for keyword in keywords
        ):
            errors.append(
                gettext("Step %(number)s, answer %(answer)s: keywords must be a list of words.")
                % where
            )
            keywords = []
        digit = answer.get("digit", "")
        if digit not in ("", *"0123456789"):
            errors.append(
                gettext(
                    'Step %(number)s, answer %(answer)s: the digit must be "0" to "9", or empty.'
                )
                % where
            )
        elif digit in seen_digits:
            errors.append(
                gettext("Step %(number)s, answer %(answer)s: digit %(digit)s is already taken.")
                % {**where, "digit": digit}
            )
        elif digit:
            seen_digits.add(digit)
        if not keywords and not digit:
            errors.append(
                gettext("Step %(number)s, answer %(answer)s needs keywords or a digit.") % where
            )
        target = answer.get("next")
        if not isinstance(target, str) or target not in targets:
            errors.append(
                gettext(
                    "Step %(number)s, answer %(answer)s leads to “%(next)s”, which is neither "
                    "a step id nor one of end, transfer, opt_out."
                )
                % {**where, "next": target}
            )
        if not isinstance(answer.get("outcome", {}), dict):
            errors.append(
                gettext("Step %(number)s, answer %(answer)s: the outcome must be an object.")
                % where
            )
    return errors


def _outcome_schema_errors(schema: Any) -> list[str]:
    if schema == {}:  # nothing to extract after the call
        return []
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        path = "/".join(str(part) for part in error.absolute_path)
        if path:
            message = gettext("outcome schema, at %(path)s: %(error)s")
        else:
            message = gettext("outcome schema: %(error)s")
        return [message % {"path": path, "error": error.message}]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return [gettext('The outcome schema must describe an object: give it "type": "object".')]
    return []
