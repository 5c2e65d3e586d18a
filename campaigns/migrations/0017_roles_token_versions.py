"""Staff roles again, now that users have token versions (TokenVersion): an administrator
has all their permissions, as of every model of the administered apps. The roles are
otherwise those of 0015_roles_import_warnings."""

import importlib

from django.db import migrations

_roles = importlib.import_module("campaigns.migrations.0009_staff_roles")
_previous = importlib.import_module("campaigns.migrations.0015_roles_import_warnings")

VIEWER = _previous.VIEWER
OPERATOR_ALSO = _previous.OPERATOR_ALSO
ROLES = _roles.ROLES
delete_roles = _roles.delete_roles


def create_roles(apps, schema_editor):
    _roles.grant_roles(apps, schema_editor, viewer=VIEWER, operator_also=OPERATOR_ALSO)


def restore_roles(apps, schema_editor):
    _previous.create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0016_api_key_scope_and_token_version")]

    operations = [migrations.RunPython(create_roles, restore_roles)]
