"""The admin site: Django's, with the operations overview as its home page.

Installed in place of django.contrib.admin (INSTALLED_APPS names ``AdminConfig`` below),
so ``django.contrib.admin.site``, where every app registers its models, is this site.
The site's titles and project-wide registrations are in callcenter/admin.py.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path


class AdminSite(admin.AdminSite):
    # The overview above Django's list of apps and models, which stays the way to every
    # list (admin/overview.html extends admin/index.html).
    index_template = "admin/overview.html"

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        # Imported here: this module is loaded with the apps, before models can be.
        from callcenter.overview import operations_overview

        context = {"overview": operations_overview(user=request.user), **(extra_context or {})}
        return super().index(request, context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("overview/", self.admin_view(self.overview_view), name="overview"),
            *super().get_urls(),
        ]

    def overview_view(self, request: HttpRequest) -> TemplateResponse:
        """The overview alone, as the open home page fetches it to refresh its figures."""
        from callcenter.overview import operations_overview

        return TemplateResponse(
            request,
            "admin/overview_figures.html",
            {"overview": operations_overview(user=request.user)},
        )


class AdminConfig(DjangoAdminConfig):
    default_site = "callcenter.adminsite.AdminSite"
