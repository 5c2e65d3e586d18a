"""Services on call templates."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from templates.models import CallTemplate
from templates.rendering import ContactLike, contact_context, context_values, render_template

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
    if contact is not None and variables is not None:
        raise ValueError("Preview for a contact or for sample variables, not both.")
    if contact is not None:
        if contact.campaign.partner_id != template.partner_id:
            raise ValueError(_("The contact belongs to another partner than the template."))
        context = contact_context(contact=contact)
    else:
        samples = {**template.variables, **(variables or {})}
        context = {
            "phone": SAMPLE_PHONE,
            "external_id": SAMPLE_EXTERNAL_ID,
            "campaign": _("Sample campaign"),
            "partner": template.partner.name,
            **context_values(samples),
        }
    return render_template(template=template, context=context)
