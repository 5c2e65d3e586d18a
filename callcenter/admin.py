"""The admin site itself: its titles, the schedules' admin of django-celery-beat with
its actions kept to staff who may change the schedules, and the users' and groups' admins
recording their changes in the audit trail.

Imported by callcenter/urls.py before the admin's URLs are built (this package is not an
installed app, so the admin's autodiscovery does not find it).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask

from audit.admin_log import AuditedAdminMixin


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


# Staff accounts and roles: who may do what is itself recorded in the audit trail.
class UserAdmin(AuditedAdminMixin, auth_admin.UserAdmin):
    pass


class GroupAdmin(AuditedAdminMixin, auth_admin.GroupAdmin):
    pass


admin.site.unregister(User)
admin.site.register(User, UserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, GroupAdmin)
