"""The ElevenLabs voice catalogue and the speech clips rendered with it."""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


def new_clip_token() -> str:
    return secrets.token_urlsafe(32)


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
    is_default = models.BooleanField(
        _("default voice"),
        default=False,
        help_text=_(
            "The voice of campaigns that name none. With no default chosen here, the voice "
            "named by ELEVENLABS_DEFAULT_VOICE."
        ),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("voice")
        verbose_name_plural = _("voices")
        ordering = ["name"]
        indexes = [models.Index(fields=["name"], name="voice_name_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="voice_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ClipStatus(models.TextChoices):
    RENDERING = "rendering", _("Rendering")
    READY = "ready", _("Ready")
    FAILED = "failed", _("Failed")


class SpeechClip(models.Model):
    """One line rendered to audio, content-addressed by a hash of what produced it.

    The row is inserted (status ``rendering``) before the provider is asked, so the unique
    key is the claim: whoever inserts it renders, everyone else waits for the result.
    """

    Status = ClipStatus

    key = models.CharField(
        _("key"),
        max_length=64,
        unique=True,
        help_text=_("SHA-256 of text, voice, model, settings and format."),
    )
    # The key can be recomputed by anyone who knows the text; the URL uses this instead.
    token = models.CharField(_("token"), max_length=64, unique=True, default=new_clip_token)
    status = models.CharField(
        _("status"), max_length=16, choices=ClipStatus, default=ClipStatus.RENDERING
    )
    text = models.TextField(_("text"))
    voice = models.ForeignKey(
        Voice, verbose_name=_("voice"), on_delete=models.PROTECT, related_name="clips"
    )
    model_id = models.CharField(_("model"), max_length=100)
    voice_settings = models.JSONField(_("voice settings"), default=dict, blank=True)
    output_format = models.CharField(_("output format"), max_length=40)
    audio = models.FileField(_("audio"), upload_to="clips/", blank=True)
    content_type = models.CharField(_("content type"), max_length=100, blank=True)
    size_bytes = models.PositiveIntegerField(_("size in bytes"), default=0)
    characters = models.PositiveIntegerField(_("characters billed"), default=0)
    error_message = models.CharField(_("error"), max_length=500, blank=True)
    rendering_started_at = models.DateTimeField(_("rendering started at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("speech clip")
        verbose_name_plural = _("speech clips")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="speechclip_text_not_empty"),
            models.CheckConstraint(
                condition=Q(status__in=ClipStatus.values), name="speechclip_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=ClipStatus.READY) | ~Q(audio=""),
                name="speechclip_ready_has_audio",
            ),
        ]

    def __str__(self) -> str:
        return self.text[:60]
