from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns")

    def ready(self) -> None:
        # The API every app shares (callcenter/access.py, api.py, filters.py) knows no app:
        # the partners owning its rows, and the answers kept for Idempotency-Key, are ours.
        from callcenter.access import use_models
        from campaigns.models import IdempotencyKey, Partner

        use_models(partner=Partner, idempotency_key=IdempotencyKey)
