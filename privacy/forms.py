"""The staff console's data-subject request form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from campaigns.models import Partner
from campaigns.phones import normalize_phone


class SubjectRequestForm(forms.Form):
    """A number, whose data (a partner's, or every partner's), and what to do with it."""

    EXPORT = "export"
    ERASE = "erase"

    phone = forms.CharField(
        label=_("phone number"),
        max_length=64,
        help_text=_("In any usual format; without a country code, read as a Spanish number."),
    )
    partner = forms.ModelChoiceField(
        label=_("partner"),
        queryset=Partner.objects.order_by("name"),
        required=False,
        empty_label=_("Every partner"),
    )
    kind = forms.ChoiceField(
        label=_("request"),
        choices=[(EXPORT, _("Export everything held")), (ERASE, _("Erase everything held"))],
        widget=forms.RadioSelect,
        initial=EXPORT,
    )
    confirm = forms.BooleanField(
        label=_("I confirm the erasure"),
        required=False,
        help_text=_("An erasure cannot be undone: the number is never called again."),
    )

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"], region=settings.DEFAULT_PHONE_REGION)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("kind") == self.ERASE and not cleaned.get("confirm"):
            raise ValidationError(
                {"confirm": _("Tick the confirmation: an erasure cannot be undone.")}
            )
        return cleaned
