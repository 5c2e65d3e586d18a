"""The staff console's call templates: edited with the service's checks shown in place,
and previewed for a contact as text and as the audio a call would play."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, Value, When
from django.forms.models import construct_instance
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.admin_log import AuditedAdminMixin
from campaigns.models import Contact
from campaigns.phones import normalize_phone
from templates import services
from templates.linting import lint_problems
from templates.models import CallTemplate
from templates.rendering import (
    TEXT_FIELDS,
    MissingVariable,
    TemplateRenderError,
    field_label,
    length_problem,
)
from voices import speech
from voices.models import Voice
from voices.services import resolve_default_voice, voice_for_campaign

# Contacts offered by name in the preview's chooser; any other is found by its number.
CONTACT_CHOICES = 50


class CallTemplateForm(forms.ModelForm):
    """A template checked as the template services check it. The disclosure lint's
    problems are warnings under their fields on a draft, and errors while a campaign
    calls with the template (as ``update_template`` refuses them)."""

    class Meta:
        model = CallTemplate
        fields = [
            "partner",
            "name",
            "language",
            "mode",
            "extra_languages",
            "hints",
            "variables",
            "greeting",
            "inbound_greeting",
            "instructions",
            "steps",
            "voicemail_message",
            "closing_line",
            "opt_out_confirmation",
            "transfer_line",
            "transfer_failed_line",
            "outcome_schema",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lint_warnings: dict[str, list[str]] = {}
        if self.instance.pk is not None and not self.is_bound:
            self._warn(lint_problems(template=self.instance))

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what clean() returns (the stubs allow None)
        if cleaned.get("partner") is None:
            return cleaned  # the lint names the partner: nothing to check yet
        draft = construct_instance(self, copy.copy(self.instance), self._meta.fields)
        if any(length_problem(name, getattr(draft, name)) for name in TEXT_FIELDS):
            return cleaned  # the model's checks refuse it by field: the lint would repeat them
        refusal = services.lint_refusal(template=draft)
        for name, problems in refusal.items():
            for problem in problems:
                self.add_error(None if name == "__all__" else name, problem)
        if not refusal:
            self._warn(lint_problems(template=draft))
        return cleaned

    def _warn(self, problems: dict[str, list[str]]) -> None:
        """Keep the lint's ``problems`` and show each under its field."""
        self.lint_warnings = problems
        for name, warnings in problems.items():
            if name not in self.fields:
                continue
            self.fields[name].help_text = format_html(
                '{}<ul class="lint-warnings" id="lint-{}">{}</ul>',
                self.fields[name].help_text,
                name,
                format_html_join("", '<li class="lint-warning">{}</li>', ((w,) for w in warnings)),
            )


@admin.register(CallTemplate)
class CallTemplateAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = CallTemplateForm
    list_display = ["name", "partner", "language", "mode", "updated_at"]
    list_filter = ["mode", "language", "partner"]
    list_select_related = ["partner"]
    search_fields = ["name", "partner__name"]
    autocomplete_fields = ["partner"]
    readonly_fields = ["created_at", "updated_at"]
    change_form_template = "admin/templates/calltemplate/change_form.html"
    fieldsets = [
        (None, {"fields": ["partner", "name", ("language", "mode"), "variables"]}),
        (
            _("Speech recognition"),
            {"fields": ["extra_languages", "hints"], "classes": ["collapse"]},
        ),
        (
            _("What the call says"),
            {
                "fields": [
                    "greeting",
                    "inbound_greeting",
                    "instructions",
                    "steps",
                    "voicemail_message",
                    "closing_line",
                    "opt_out_confirmation",
                    "transfer_line",
                    "transfer_failed_line",
                ]
            },
        ),
        (_("After the call"), {"fields": ["outcome_schema"]}),
        (_("History"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def save_model(
        self, request: HttpRequest, obj: CallTemplate, form: CallTemplateForm, change: bool
    ) -> None:
        # Written through the template services, as the partner API writes templates.
        if change:
            changed = {name: form.cleaned_data[name] for name in form.changed_data}
            services.update_template(template=obj, **changed)
        else:
            obj.pk = services.create_template(**form.cleaned_data).pk
        if form.lint_warnings:
            self.message_user(
                request,
                gettext(
                    "The template was saved as a draft: it fails the disclosure rules, so no "
                    "campaign can start with it until they pass (see the warnings on its page)."
                ),
                messages.WARNING,
            )

    def get_urls(self) -> list:
        # The preview is a page of its own beside the template's change page.
        preview = path(
            "<path:object_id>/preview/",
            self.admin_site.admin_view(self.preview_view),
            name="templates_calltemplate_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The template's lines for a contact (or its sample values), as text and, for
        staff who may change templates, as the audio a call would play."""
        template = self.get_object(request, unquote(object_id))
        if template is None:
            # The admin's own answer for a missing object (private: not in the stubs).
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id
            )
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        can_voice = self.has_change_permission(request, template)
        form = TemplatePreviewForm(
            request.POST if request.method == "POST" else None,
            template=template,
            can_voice=can_voice,
        )
        preview = form.preview() if request.method == "POST" and form.is_valid() else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": template,
            "title": gettext("Preview of “%(name)s”") % {"name": template.name},
            "subtitle": None,
            "form": form,
            "preview": preview,
            "can_voice": can_voice,
            "speech_configured": speech.is_configured(),
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/templates/calltemplate/preview.html", context)


# --- Preview ------------------------------------------------------------------------------


@dataclass
class PreviewLine:
    """One spoken field, rendered, and its sentences voiced (when asked)."""

    field: str
    label: str
    text: str
    # dataclasses.field: the class's own `field` shadows it here
    sentences: list[services.PreviewSentence] = dataclasses.field(default_factory=list)


@dataclass
class Preview:
    """What the preview page shows under its form."""

    lines: list[PreviewLine]
    contact: Contact | None
    voice: Voice | None = None
    audio_message: str = ""


def _contact_label(contact: Contact) -> str:
    parts = [contact.phone, contact.campaign.name, contact.external_id]
    return " · ".join(part for part in parts if part)


class TemplatePreviewForm(forms.Form):
    """Who to preview the template for, and whether to hear it."""

    # A few contacts to choose from; any contact id of the partner is taken.
    contact = forms.IntegerField(label=_("Contact"), required=False, widget=forms.Select)
    phone = forms.CharField(
        label=_("Or a contact's phone number"),
        required=False,
        max_length=32,
        help_text=_("Any contact of the template's partner, by its number."),
    )
    audio = forms.BooleanField(
        label=_("Also as audio"),
        required=False,
        help_text=_("Renders each sentence with ElevenLabs, as a call would play it."),
    )
    voice = forms.ModelChoiceField(
        label=_("Voice"),
        queryset=Voice.objects.all(),
        required=False,
        empty_label=_("The contact's campaign voice, or the default voice"),
    )

    def __init__(self, *args: Any, template: CallTemplate, can_voice: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.template = template
        # The contacts of the campaigns calling with the template first, then the
        # partner's others.
        offered = (
            Contact.objects.filter(campaign__partner_id=template.partner_id)
            .select_related("campaign")
            .order_by(
                Case(When(campaign__template=template, then=Value(0)), default=Value(1)),
                "campaign__name",
                "pk",
            )[:CONTACT_CHOICES]
        )
        self.fields["contact"].widget.choices = [
            ("", gettext("Sample values of the template")),
            *((contact.pk, _contact_label(contact)) for contact in offered),
        ]
        if not can_voice:
            del self.fields["audio"], self.fields["voice"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what clean() returns (the stubs allow None)
        partner = self.template.partner
        contacts = Contact.objects.filter(campaign__partner_id=partner.pk).select_related(
            "campaign__partner"
        )
        phone = (cleaned.get("phone") or "").strip()
        if phone:
            try:
                number = normalize_phone(phone, region=settings.DEFAULT_PHONE_REGION)
            except ValidationError as error:
                self.add_error("phone", error)
                return cleaned
            cleaned["found"] = contacts.filter(phone=number).order_by("-created_at").first()
            if cleaned["found"] is None:
                self.add_error(
                    "phone",
                    gettext("No contact of %(partner)s has this number.")
                    % {"partner": partner.name},
                )
        elif cleaned.get("contact") is not None:
            cleaned["found"] = contacts.filter(pk=cleaned["contact"]).first()
            if cleaned["found"] is None:
                self.add_error(
                    "contact",
                    gettext("Choose a contact of %(partner)s.") % {"partner": partner.name},
                )
        return cleaned

    def preview(self) -> Preview | None:
        """The preview for the valid form; None (with the reason as a form error) when
        the template cannot be rendered for the contact."""
        contact = self.cleaned_data.get("found")
        where = "phone" if self.cleaned_data.get("phone") else "contact"
        try:
            rendered = services.preview_template(template=self.template, contact=contact)
        except MissingVariable as exc:
            self.add_error(
                where if contact is not None else None,
                gettext("The contact has no value for “%(name)s”, which the template speaks.")
                % {"name": exc.name}
                if contact is not None
                else gettext("“%(name)s” has no sample value to speak.") % {"name": exc.name},
            )
            return None
        except TemplateRenderError as exc:
            for problem in exc.problems:
                self.add_error(None, problem.message)
            return None
        preview = Preview(
            lines=[
                PreviewLine(field=name, label=field_label(name), text=text)
                for name, text in rendered.items()
                if text
            ],
            contact=contact,
        )
        if self.cleaned_data.get("audio"):
            self._voice(preview)
        return preview

    def _voice(self, preview: Preview) -> None:
        contact = preview.contact
        voice = self.cleaned_data.get("voice") or (
            voice_for_campaign(campaign=contact.campaign)
            if contact is not None
            else resolve_default_voice()
        )
        if not speech.is_configured():
            preview.audio_message = gettext(
                "Speech is not configured (no ElevenLabs API key): the lines are text only."
            )
            return
        if voice is None:
            preview.audio_message = gettext(
                "No voice to speak with: choose one, or sync the default voice (%(voice)s)."
            ) % {"voice": settings.ELEVENLABS_DEFAULT_VOICE}
            return
        preview.voice = voice
        voiced = services.preview_template_audio(
            template=self.template, voice=voice, contact=contact
        )
        for line in preview.lines:
            line.sentences = [
                # Played from this site, whatever address Twilio is given (APP_URL).
                services.PreviewSentence(
                    text=sentence.text,
                    audio_url=sentence.audio_url.removeprefix(settings.APP_URL),
                    error=sentence.error,
                )
                for sentence in voiced.get(line.field, [])
            ]
