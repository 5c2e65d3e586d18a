"""Services on call templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.utils.translation import gettext as _

from templates.linting import lint_problems
from templates.models import CallTemplate
from templates.rendering import (
    ContactLike,
    contact_context,
    context_values,
    render_line,
    render_template,
    spoken_sentences,
)
from voices.clips import ClipFailed, clip_url, render_clip
from voices.models import Voice

if TYPE_CHECKING:
    from campaigns.models import Partner

# Stand-ins for what only a real contact and campaign know, in sample previews.
SAMPLE_PHONE = "+34600000000"
SAMPLE_EXTERNAL_ID = "0001"


class TemplateInUse(Exception):
    """Campaigns call with the template, so it cannot be deleted."""


def create_template(*, partner: Partner, **fields: Any) -> CallTemplate:
    """A new template of ``partner``. Refused (ValidationError, by field) when it could not
    be rendered or run; it may still fail the disclosure lint, as a draft may."""
    template = CallTemplate(partner=partner, **fields)
    template.full_clean()
    template.save()
    return template


def update_template(*, template: CallTemplate, **fields: Any) -> CallTemplate:
    """Change ``template``'s ``fields``. Refused (ValidationError, by field) when it could
    not be rendered or run, and when it would fail the disclosure lint while a campaign
    calls with it (scheduled, running or paused: the lint is checked only at their start)."""
    for name, value in fields.items():
        setattr(template, name, value)
    template.full_clean()
    refusal = lint_refusal(template=template)
    if refusal:
        raise ValidationError(refusal)
    template.save(update_fields=[*fields, "updated_at"])
    return template


def lint_refusal(*, template: CallTemplate) -> dict[str, list[str]]:
    """Why ``template`` as it now stands may not be saved, by field: its disclosure lint
    problems, and a note naming the campaigns that call with it, when any is scheduled,
    running or paused (the lint is checked only at their start). Empty when it may."""
    if template.pk is None:
        return {}
    problems = lint_problems(template=template)
    if not problems:
        return {}
    state = template.campaigns.model.State
    calling = list(
        template.campaigns.filter(
            state__in=(state.SCHEDULED, state.RUNNING, state.PAUSED)
        ).values_list("name", flat=True)
    )
    if not calling:
        return {}
    return {
        "__all__": [
            _(
                "Campaigns call with this template (%(names)s): it must keep passing the "
                "disclosure rules."
            )
            % {"names": ", ".join(calling)}
        ],
        **problems,
    }


def delete_template(*, template: CallTemplate) -> None:
    """Delete ``template``; TemplateInUse while any campaign, even a finished one, has it
    (their calls and transcripts refer to it)."""
    try:
        template.delete()
    except ProtectedError as exc:
        names = sorted(str(campaign) for campaign in exc.protected_objects)
        raise TemplateInUse(
            _("Campaigns use this template: %(names)s.") % {"names": ", ".join(names)}
        ) from exc


def preview_template(
    *,
    template: CallTemplate,
    contact: ContactLike | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The spoken lines of ``template`` as a call would say them, keyed by field: for
    ``contact``, else for ``variables`` laid over the declared samples, else for the samples.

    Raises MissingVariable when a line needs a value that is absent or blank, and
    TemplateRenderError when a line breaks the sandbox rules.
    """
    return render_template(
        template=template, context=_preview_context(template, contact, variables)
    )


@dataclass(frozen=True)
class PreviewSentence:
    """One sentence of a previewed line and where to hear it ("" when it could not be
    voiced: ``error`` says why, and a call would speak it with <Say>)."""

    text: str
    audio_url: str = ""
    error: str = ""


def preview_template_audio(
    *,
    template: CallTemplate,
    voice: Voice,
    contact: ContactLike | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, list[PreviewSentence]]:
    """The spoken lines of ``template`` voiced as a call would voice them, sentence by
    sentence, keyed by field; for a contact or sample values as in preview_template."""
    context = _preview_context(template, contact, variables)
    lines: dict[str, list[PreviewSentence]] = {}
    for field_name, source in spoken_sentences(template=template):
        text = render_line(text=source, context=context, field=field_name)
        if not text:
            continue
        try:
            clip = render_clip(text=text, voice=voice)
        except ClipFailed as exc:
            sentence = PreviewSentence(text=text, error=exc.reason)
        else:
            sentence = PreviewSentence(text=text, audio_url=clip_url(clip))
        lines.setdefault(field_name, []).append(sentence)
    return lines


def _preview_context(
    template: CallTemplate, contact: ContactLike | None, variables: dict[str, Any] | None
) -> dict[str, str]:
    if contact is not None and variables is not None:
        raise ValueError("Preview for a contact or for sample variables, not both.")
    if contact is not None:
        if contact.campaign.partner_id != template.partner_id:
            raise ValueError(_("The contact belongs to another partner than the template."))
        return contact_context(contact=contact)
    samples = {**template.variables, **(variables or {})}
    return {
        "phone": SAMPLE_PHONE,
        "external_id": SAMPLE_EXTERNAL_ID,
        "campaign": _("Sample campaign"),
        "partner": template.partner.name,
        **context_values(samples),
    }
