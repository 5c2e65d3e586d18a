from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TemplatesConfig(AppConfig):
    """Call scripts (not HTML templates: project HTML lives in callcenter/templates/)."""

    name = "templates"
    verbose_name = _("Call templates")
