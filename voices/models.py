"""The ElevenLabs voice catalogue and the speech clips rendered with it."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Voice(models.Model):
    """A voice of the ElevenLabs account, upserted by its provider id."""

    provider_voice_id = models.CharField(_("provider voice id"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    language = models.CharField(_("language"), max_length=35, blank=True)
    labels = models.JSONField(_("labels"), default=dict, blank=True)
    preview_url = models.URLField(_("preview URL"), max_length=500, blank=True)
    settings = models.JSONField(
        _("default voice settings"),
        default=dict,
        blank=True,
        help_text=_("Stability, similarity boost and style as ElevenLabs names them."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("voice")
        verbose_name_plural = _("voices")
        ordering = ["name"]
        indexes = [models.Index(fields=["name"], name="voice_name_idx")]

    def __str__(self) -> str:
        return self.name


class SpeechClip(models.Model):
    """One line rendered to audio, content-addressed by a hash of what produced it."""

    key = models.CharField(
        _("key"),
        max_length=64,
        unique=True,
        help_text=_("SHA-256 of text, voice, model, settings and format."),
    )
    text = models.TextField(_("text"))
    voice = models.ForeignKey(
        Voice, verbose_name=_("voice"), on_delete=models.PROTECT, related_name="clips"
    )
    model_id = models.CharField(_("model"), max_length=100)
    voice_settings = models.JSONField(_("voice settings"), default=dict, blank=True)
    output_format = models.CharField(_("output format"), max_length=40)
    audio = models.FileField(_("audio"), upload_to="clips/%Y/%m/", blank=True)
    content_type = models.CharField(_("content type"), max_length=100, blank=True)
    size_bytes = models.PositiveIntegerField(_("size in bytes"), default=0)
    characters = models.PositiveIntegerField(_("characters billed"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("speech clip")
        verbose_name_plural = _("speech clips")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(text=""), name="speechclip_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text[:60]
