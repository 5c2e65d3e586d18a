"""Project URLs: admin, API, operations endpoints."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

from callcenter.api import router
from callcenter.health import health
from callcenter.metrics import export_metrics

admin.site.site_header = settings.APP_NAME
admin.site.site_title = settings.APP_NAME
admin.site.index_title = _("Operations")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("metrics", export_metrics, name="metrics"),
    path("api/v1/", include(router.urls)),
    path("", include("voices.urls")),
    path("", include("calls.urls")),
]
