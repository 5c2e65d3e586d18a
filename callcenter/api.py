"""The partner REST API router, mounted at /api/v1/. Apps register their viewsets here."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

router = DefaultRouter()
