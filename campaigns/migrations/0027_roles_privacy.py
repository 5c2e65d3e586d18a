"""Staff roles again, now that there are erased numbers (campaigns.ErasedNumber) and
data-subject requests (privacy): an administrator has every permission of the
administered apps, and of privacy (export and erase a number's data). The roles are
otherwise those of 0025_roles_audit_trail."""

import importlib

from django.contrib.auth.management import create_permissions
from django.db import migrations

_roles = importlib.import_module("campaigns.migrations.0009_staff_roles")
_previous = importlib.import_module("campaigns.migrations.0025_roles_audit_trail")

VIEWER = _previous.VIEWER
OPERATOR_ALSO = _previous.OPERATOR_ALSO
ROLES = _roles.ROLES
delete_roles = _roles.delete_roles
# Administered here rather than in 0009's list: privacy comes after campaigns.
PRIVACY_APP = "privacy"


def create_roles(apps, schema_editor):
    # 0025's roles (its grant, and the audit trail for administrators), then privacy.
    _previous.create_roles(apps, schema_editor)
    using = schema_editor.connection.alias
    app_config = apps.get_app_config(PRIVACY_APP)
    # create_permissions skips app configs without models, as a migration's are.
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, using=using, apps=apps)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    administrator = Group.objects.using(using).get(name="administrator")
    administrator.permissions.add(
        *Permission.objects.using(using).filter(content_type__app_label=PRIVACY_APP)
    )


def restore_roles(apps, schema_editor):
    _previous.create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0026_contact_erasure_and_erased_numbers"),
        ("privacy", "0001_data_subject_requests"),
    ]

    operations = [migrations.RunPython(create_roles, restore_roles)]
