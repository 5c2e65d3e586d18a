"""The OpenAI checks: a conversation turn and an outcome extraction, each with the model
and parameters calls use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from callcenter.preflight.base import DIALLING_STATES, Finding, Status, _check
from calls import conversation
from campaigns.models import Campaign
from templates.models import CallTemplate

# --- OpenAI ----------------------------------------------------------------------------


@_check(gettext_noop("OpenAI turn"))
def check_model_turn(*, timeout: float) -> Finding:
    """DEFAULT_MODEL takes a turn's request as calls send it (streamed, with the tools)."""
    return _model_result(kind="turn", timeout=timeout)


@_check(gettext_noop("OpenAI extraction"))
def check_model_extraction(*, timeout: float) -> Finding:
    """DEFAULT_MODEL takes an extraction's request as calls send it (JSON mode)."""
    return _model_result(kind="extraction", timeout=timeout)


def _model_result(*, kind: str, timeout: float) -> Finding:
    try:
        probe = conversation.probe_model(kind=kind, timeout=timeout)
    except conversation.ConversationNotConfigured:
        return _no_model(kind=kind)
    except conversation.ConversationRejected as exc:
        return _model_refused(exc)
    except conversation.ConversationUnavailable as exc:
        return Finding(
            Status.FAIL,
            exc.reason,
            _(
                "Run the preflight again; if it persists, check OPENAI_BASE_URL (%(url)s) and "
                "the provider's status page."
            )
            % {"url": settings.OPENAI_BASE_URL},
        )
    sent = _parameters_text(probe.parameters, kind=kind)
    if kind == "turn":
        detail = _("%(model)s takes a turn's request (%(sent)s): started answering in %(s)s s.")
    else:
        detail = _("%(model)s takes an extraction's request (%(sent)s): answered in %(s)s s.")
    detail = detail % {"model": probe.model, "sent": sent, "s": f"{probe.seconds:.1f}"}
    failures, warnings = [], []
    for refusal in probe.refused:
        refused = _("%(model)s refused %(parameter)s=%(value)s (“%(message)s”).") % {
            "model": probe.model,
            "parameter": refusal.name,
            "value": refusal.value,
            "message": refusal.message,
        }
        fix = _parameter_fix(refusal.name, probe.parameters)
        if fix:
            failures.append((refused, fix))
        else:
            warnings.append((refused, _adaptation_note(refusal.name)))
    if kind == "turn" and probe.seconds > settings.MODEL_TIMEOUT:
        warnings.append(
            (
                _(
                    "It started answering later than MODEL_TIMEOUT (%(timeout)s s) allows: "
                    "callers would hear the holding line."
                )
                % {"timeout": settings.MODEL_TIMEOUT},
                _("Choose a faster DEFAULT_MODEL, or raise MODEL_TIMEOUT."),
            )
        )
    found = failures + warnings
    if not found:
        return Finding(Status.OK, detail)
    return Finding(
        Status.FAIL if failures else Status.WARN,
        " ".join([detail, *(problem for problem, _fix in found)]),
        " ".join(fix for _problem, fix in found),
    )


def _no_model(*, kind: str) -> Finding:
    """No OPENAI_API_KEY: a failure when a campaign that may dial has an AI template."""
    if kind == "extraction":
        return Finding(Status.SKIP, _("No OPENAI_API_KEY (see the line above)."))
    try:
        ai_campaigns = Campaign.objects.filter(
            state__in=DIALLING_STATES, template__mode=CallTemplate.Mode.AI
        ).count()
    except DatabaseError:
        ai_campaigns = 0  # unknown: the Database line says why
    action = _("Set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible server).")
    if ai_campaigns:
        return Finding(
            Status.FAIL,
            _("No OPENAI_API_KEY, but %(count)s campaign(s) that may dial have an AI template.")
            % {"count": ai_campaigns},
            action,
        )
    return Finding(
        Status.WARN,
        _("No OPENAI_API_KEY: AI templates cannot converse; scripted ones work."),
        action,
    )


def _model_refused(exc: conversation.ConversationRejected) -> Finding:
    model = settings.DEFAULT_MODEL
    if exc.parameter in conversation.TOKEN_PARAMETERS:
        # The first refusal of a token bound is adapted to: this is the second name refused.
        return Finding(
            Status.FAIL,
            _("%(model)s takes neither max_completion_tokens nor max_tokens (“%(message)s”).")
            % {"model": model, "message": exc.provider_message},
            _("Set DEFAULT_MODEL to a model this server serves with one of them."),
        )
    if exc.parameter:
        return Finding(
            Status.FAIL,
            _("%(model)s refused %(parameter)s (“%(message)s”).")
            % {"model": model, "parameter": exc.parameter, "message": exc.provider_message},
            _parameter_fix(exc.parameter, {}) or _("Set DEFAULT_MODEL to another model."),
        )
    if exc.status in (401, 403):
        return Finding(
            Status.FAIL,
            exc.reason,
            _("Set OPENAI_API_KEY to a key that works (platform.openai.com, API keys)."),
        )
    if exc.status == 404:
        return Finding(
            Status.FAIL,
            exc.reason,
            _(
                "Set DEFAULT_MODEL (now %(model)s) to a model that %(url)s serves and the key "
                "may use."
            )
            % {"model": model, "url": settings.OPENAI_BASE_URL},
        )
    return Finding(
        Status.FAIL,
        exc.reason,
        _("Check DEFAULT_MODEL (%(model)s) and OPENAI_BASE_URL (%(url)s).")
        % {"model": model, "url": settings.OPENAI_BASE_URL},
    )


def _parameter_fix(parameter: str, accepted: dict[str, Any]) -> str:
    """The setting that makes calls send what the model takes from the start; empty for a
    parameter no setting controls (calls adapt to its refusal instead)."""
    if parameter in conversation.TOKEN_PARAMETERS:
        other = next(name for name in conversation.TOKEN_PARAMETERS if name != parameter)
        return _("Set OPENAI_TOKEN_PARAMETER=%(name)s.") % {"name": other}
    if parameter == "reasoning_effort" and accepted.get("reasoning_effort"):
        return _("Set OPENAI_REASONING_EFFORT=%(value)s.") % {"value": accepted["reasoning_effort"]}
    if parameter == "reasoning_effort" and not accepted:
        return _("Set OPENAI_REASONING_EFFORT to a value the model lists.")
    return ""


def _adaptation_note(parameter: str) -> str:
    if parameter == "response_format":
        return _(
            "Nothing to set: the model has no JSON mode, and outcomes are read from its text "
            "after its first refusal in each process."
        )
    return _(
        "Nothing to set: calls leave %(parameter)s out after the model's first refusal in "
        "each process (one refused request each)."
    ) % {"parameter": parameter}


def _parameters_text(parameters: dict[str, Any], *, kind: str) -> str:
    parts = []
    for name, value in parameters.items():
        if name == "response_format":
            parts.append(_("JSON mode"))
        elif name in conversation.TOKEN_PARAMETERS:
            parts.append(name)
        else:
            parts.append(f"{name} {value}")
    if kind == "turn":
        parts += [_("tools"), _("streamed")]
    return ", ".join(parts)
