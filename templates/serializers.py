"""The partner API's view of call templates and their previews."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from callcenter.api import PartnerOwnedSerializer, PartnerScopedRelatedField
from campaigns.models import Contact
from templates.linting import lint_problems
from templates.models import CallTemplate
from voices.models import Voice


class LintProblemSerializer(serializers.Serializer):
    field = serializers.CharField()
    message = serializers.CharField()


class CallTemplateSerializer(PartnerOwnedSerializer):
    lint = serializers.SerializerMethodField(
        help_text=_(
            "What the template fails to disclose (naming the company, saying the call is "
            "automated, a number to call back), by field. A campaign cannot start with the "
            "template until it is empty; a draft may be saved with it."
        )
    )

    class Meta:
        model = CallTemplate
        fields = [
            "id",
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
            "lint",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "lint", "created_at", "updated_at"]
        # DRF's check of the unique name would need the partner, which partners never
        # send: validate() checks it once the partner is known.
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        partner = self.instance.partner if self.instance is not None else attrs["partner"]
        name = attrs.get("name", getattr(self.instance, "name", None))
        taken = CallTemplate.objects.filter(partner=partner, name=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError(
                {
                    "name": _("This partner already has a template called “%(name)s”.")
                    % {"name": name}
                }
            )
        return attrs

    @extend_schema_field(LintProblemSerializer(many=True))
    def get_lint(self, template: CallTemplate) -> list[dict[str, str]]:
        return [
            {"field": field, "message": message}
            for field, messages in lint_problems(template=template).items()
            for message in messages
        ]


class TemplatePreviewSerializer(serializers.Serializer):
    """Input of ``POST /api/v1/templates/{id}/preview/``: whom to preview for, if anyone."""

    contact = PartnerScopedRelatedField(
        queryset=Contact.objects.select_related("campaign__partner", "campaign__voice"),
        partner_lookup="campaign__partner",
        required=False,
        allow_null=True,
        help_text=_("Preview for this contact (of the template's partner): its variables."),
    )
    variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text=_("Or: values laid over the template's sample variables."),
    )
    voice = serializers.PrimaryKeyRelatedField(
        queryset=Voice.objects.all(),
        required=False,
        allow_null=True,
        help_text=_("The voice to hear; default: the contact's campaign's, else the default."),
    )
    audio = serializers.BooleanField(
        default=True,
        help_text=_("Voice the lines too (rendered once, then reused); false: text only."),
    )

    def validate_variables(self, variables: dict[str, str]) -> dict[str, str]:
        limit = settings.TEMPLATE_LINE_MAX_CHARS
        for name, value in variables.items():
            if len(value) > limit:
                raise serializers.ValidationError(
                    _("“%(name)s” is %(length)s characters long, more than the limit of %(limit)s.")
                    % {"name": name, "length": len(value), "limit": limit}
                )
        return variables

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("contact") is not None and attrs.get("variables") is not None:
            raise serializers.ValidationError(
                {"variables": _("Preview for a contact or for variables, not both.")}
            )
        return attrs


class PreviewSentenceSerializer(serializers.Serializer):
    text = serializers.CharField()
    audio_url = serializers.CharField(help_text=_("Empty when it could not be voiced."))
    error = serializers.CharField(
        help_text=_("Why it could not be voiced (a call would <Say> it).")
    )


class TemplatePreviewResultSerializer(serializers.Serializer):
    """Answer of the preview: each spoken line as text and, when speech is available, as
    clips sentence by sentence."""

    lines = serializers.DictField(
        child=serializers.CharField(),
        help_text=_("Each spoken field (greeting, voicemail_message…) as a call would say it."),
    )
    audio = serializers.DictField(
        child=PreviewSentenceSerializer(many=True),
        allow_null=True,
        help_text=_("The same lines voiced, sentence by sentence; null when not voiced."),
    )
    audio_status = serializers.ChoiceField(
        choices=["voiced", "not_requested", "not_configured", "no_voice"],
        help_text=_("Whether the lines were voiced, and if not, why."),
    )
    audio_message = serializers.CharField(help_text=_("Why not voiced, for a person."))
