"""Staff roles again, now that calls record the clips they played (calls.CallClip): a
viewer (and so an operator) may read them, an administrator has all their permissions.
The roles are otherwise those of 0009_staff_roles."""

import importlib

from django.db import migrations

_roles = importlib.import_module("campaigns.migrations.0009_staff_roles")

VIEWER = {**_roles.VIEWER, "calls": [*_roles.VIEWER["calls"], "view_callclip"]}
OPERATOR_ALSO = _roles.OPERATOR_ALSO
ROLES = _roles.ROLES
delete_roles = _roles.delete_roles


def create_roles(apps, schema_editor):
    _roles.grant_roles(apps, schema_editor, viewer=VIEWER, operator_also=OPERATOR_ALSO)


def restore_roles(apps, schema_editor):
    _roles.create_roles(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0011_webhook_call_priced"),
        ("calls", "0009_price_and_usage"),
    ]

    operations = [migrations.RunPython(create_roles, restore_roles)]
