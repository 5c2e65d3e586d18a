"""Services on call templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

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

# Stand-ins for what only a real contact and campaign know, in sample previews.
SAMPLE_PHONE = "+34600000000"
SAMPLE_EXTERNAL_ID = "0001"


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
