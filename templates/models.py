"""Call templates: what is said on a call, in AI or scripted mode."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

# A BCP-47 tag as Twilio and ElevenLabs take it: a language, then optional subtags.
bcp47_validator = RegexValidator(
    r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
    _("Enter a BCP-47 language tag such as es-ES or en-US."),
)


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
        validators=[bcp47_validator],
    )
    mode = models.CharField(_("mode"), max_length=16, choices=Mode, default=Mode.AI)
    greeting = models.TextField(_("greeting"))
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
