"""Idempotency keys: the first answer to an API POST, replayed for repeats."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class IdempotencyKey(models.Model):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed for repeats."""

    scope = models.CharField(_("scope"), max_length=64)
    key = models.CharField(_("key"), max_length=255)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True)
    response_body = models.JSONField(_("response body"), null=True)
    response_headers = models.JSONField(_("response headers"), default=dict)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotencykey_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotencykey_created_idx")]

    def __str__(self) -> str:
        return self.key
