"""Staff roles again, now that imports keep the rows they flagged (ContactImportWarning):
a viewer (and so an operator) may read them with the import's report, an administrator has
all their permissions. The roles are otherwise those of 0012_roles_clips_played."""

import importlib

from django.db import migrations

_roles = importlib.import_module("campaigns.migrations.0009_staff_roles")
_previous = importlib.import_module("campaigns.migrations.0012_roles_clips_played")

VIEWER = {
    **_previous.VIEWER,
    "campaigns": [*_previous.VIEWER["campaigns"], "view_contactimportwarning"],
}
OPERATOR_ALSO = _previous.OPERATOR_ALSO
ROLES = _roles.ROLES
delete_roles = _roles.delete_roles


def create_roles(apps, schema_editor):
    _roles.grant_roles(apps, schema_editor, viewer=VIEWER, operator_also=OPERATOR_ALSO)


def restore_roles(apps, schema_editor):
    _previous.create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0014_import_row_warnings")]

    operations = [migrations.RunPython(create_roles, restore_roles)]
