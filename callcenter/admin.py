"""The admin site itself: its titles, and the schedules' admin of django-celery-beat with
its actions kept to staff who may change the schedules.

Imported by callcenter/urls.py before the admin's URLs are built (this package is not an
installed app, so the admin's autodiscovery does not find it).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask


def _app_name() -> str:
    return settings.APP_NAME


# Read on each page rather than once at start-up, so the page shows the setting in force.
admin.site.site_header = lazy(_app_name, str)()
admin.site.site_title = lazy(_app_name, str)()
admin.site.index_title = _("Operations")


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    def get_actions(self, request: HttpRequest) -> dict:
        # django-celery-beat's actions (enable, disable, toggle, run now) name no
        # permission, so Django would offer them to whoever may only view the schedules.
        actions = super().get_actions(request)
        if not self.has_change_permission(request):
            for name in beat_admin.PeriodicTaskAdmin.actions:
                actions.pop(name, None)
        return actions


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
