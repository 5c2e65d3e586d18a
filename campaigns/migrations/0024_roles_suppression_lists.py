"""Staff roles again, now that there are national suppression lists: a viewer (and so an
operator) may read the lists and their imports, an administrator has all their permissions
(creates lists and uploads copies). The roles are otherwise those of 0017_roles_token_versions."""

import importlib

from django.db import migrations

_roles = importlib.import_module("campaigns.migrations.0009_staff_roles")
_previous = importlib.import_module("campaigns.migrations.0017_roles_token_versions")

VIEWER = {
    **_previous.VIEWER,
    "campaigns": [
        *_previous.VIEWER["campaigns"],
        "view_suppressionlist",
        "view_suppressioncopy",
    ],
}
OPERATOR_ALSO = _previous.OPERATOR_ALSO
ROLES = _roles.ROLES
delete_roles = _roles.delete_roles


def create_roles(apps, schema_editor):
    _roles.grant_roles(apps, schema_editor, viewer=VIEWER, operator_also=OPERATOR_ALSO)


def restore_roles(apps, schema_editor):
    _previous.create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0023_suppression_lists")]

    operations = [migrations.RunPython(create_roles, restore_roles)]
