"""The Callcenter project: settings, URLs, Celery app and operations endpoints."""

from __future__ import annotations

from callcenter.celery import app as celery_app

__all__ = ["celery_app"]
