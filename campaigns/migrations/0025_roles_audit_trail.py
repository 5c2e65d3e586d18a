"""Staff roles again, now that there is an audit trail: an administrator reads it
(audit.view_auditentry, the only permission it has: nobody may change it). The roles are
otherwise those of 0024_roles_suppression_lists."""

import importlib

from django.contrib.auth.management import create_permissions
from django.db import migrations

_roles = importlib.import_module("campaigns.migrations.0009_staff_roles")
_previous = importlib.import_module("campaigns.migrations.0024_roles_suppression_lists")

VIEWER = _previous.VIEWER
OPERATOR_ALSO = _previous.OPERATOR_ALSO
ROLES = _roles.ROLES
delete_roles = _roles.delete_roles
ADMINISTRATOR = ROLES[-1]


def create_roles(apps, schema_editor):
    _roles.grant_roles(apps, schema_editor, viewer=VIEWER, operator_also=OPERATOR_ALSO)
    using = schema_editor.connection.alias
    app_config = apps.get_app_config("audit")
    # create_permissions skips app configs without models, as a migration's are.
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, using=using, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    Group.objects.using(using).get(name=ADMINISTRATOR).permissions.add(
        *Permission.objects.using(using).filter(content_type__app_label="audit")
    )


def restore_roles(apps, schema_editor):
    _previous.create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0024_roles_suppression_lists"),
        ("audit", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, restore_roles)]
