"""Staff roles as auth groups: "viewer" reads, "operator" runs campaigns and keeps their
contact and do-not-call lists, "administrator" does everything (keys, webhooks, users).

A staff user is given a role by joining its group. The permissions are named here, as this
migration grants them, not read from the models: a role changes only by a new migration.
Permissions are made by post_migrate, after every migration has run, so this one makes
those of the apps it grants from first (on a database migrated before, they are there).
Running it again sets each group's permissions back to these.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# What a viewer may read: the business models, not the secrets (partners' API keys and
# users, webhook endpoints and their signing secrets) nor the internal idempotency keys.
VIEWER = {
    "campaigns": [
        "view_partner",
        "view_campaign",
        "view_contact",
        "view_donotcall",
        "view_contactimport",
        "view_contactimporterror",
        "view_webhookdelivery",
    ],
    "calls": ["view_call", "view_turn", "view_callevent"],
    "templates": ["view_calltemplate"],
    "voices": ["view_voice", "view_speechclip"],
    "django_celery_beat": [
        "view_periodictask",
        "view_crontabschedule",
        "view_intervalschedule",
        "view_solarschedule",
        "view_clockedschedule",
    ],
}
# An operator also runs campaigns and keeps who is called (and who must not be).
OPERATOR_ALSO = {
    "campaigns": [
        "control_campaign",
        "add_contact",
        "change_contact",
        "delete_contact",
        "add_contactimport",
        "add_donotcall",
        "change_donotcall",
        "delete_donotcall",
    ],
}
# An administrator has every permission of these apps, and of these models of auth.
ADMINISTRATOR_APPS = ["campaigns", "calls", "templates", "voices", "django_celery_beat"]
ADMINISTRATOR_AUTH_MODELS = ["user", "group"]

ROLES = ["viewer", "operator", "administrator"]


def _permissions(Permission, using: str, granted: dict[str, list[str]]) -> list:
    wanted = {(app, codename) for app, codenames in granted.items() for codename in codenames}
    found = [
        permission
        for permission in Permission.objects.using(using)
        .filter(content_type__app_label__in=list(granted))
        .select_related("content_type")
        if (permission.content_type.app_label, permission.codename) in wanted
    ]
    missing = wanted - {(p.content_type.app_label, p.codename) for p in found}
    if missing:
        raise LookupError(f"Permissions not found: {sorted(missing)}")
    return found


def create_roles(apps, schema_editor):
    grant_roles(apps, schema_editor, viewer=VIEWER, operator_also=OPERATOR_ALSO)


def grant_roles(apps, schema_editor, *, viewer, operator_also):
    """Set each role's permissions: ``viewer``'s, those plus ``operator_also``, and every
    permission of the administered apps (later roles migrations call this with theirs)."""
    using = schema_editor.connection.alias
    for label in ["auth", *ADMINISTRATOR_APPS]:
        app_config = apps.get_app_config(label)
        # create_permissions skips app configs without models, as a migration's are.
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    viewer = _permissions(Permission, using, viewer)
    operator = viewer + _permissions(Permission, using, operator_also)
    administrator = list(
        Permission.objects.using(using).filter(content_type__app_label__in=ADMINISTRATOR_APPS)
    ) + list(
        Permission.objects.using(using).filter(
            content_type__app_label="auth", content_type__model__in=ADMINISTRATOR_AUTH_MODELS
        )
    )
    for name, permissions in zip(ROLES, [viewer, operator, administrator], strict=True):
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(permissions)


def delete_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("campaigns", "0008_campaign_control_permission"),
        ("calls", "0007_callevent_received_index"),
        ("templates", "0002_calltemplate_variables"),
        ("voices", "0004_voice_is_default"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
