"""Staff roles: the groups the roles migration makes, and what each may do in the admin."""

from __future__ import annotations

import importlib
import uuid
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask, SolarSchedule

from audit.services import Action, record
from calls.models import Call
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    DoNotCall,
    Partner,
    PartnerApiKey,
    PartnerMember,
    SuppressionCopy,
    SuppressionList,
    WebhookDelivery,
    WebhookEndpoint,
)
from privacy.models import DataSubjectRequest
from tests.factories import (
    CallEventFactory,
    CallFactory,
    ContactFactory,
    ContactImportFactory,
    DoNotCallFactory,
    SpeechClipFactory,
    VoiceFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)
from tests.fakes.elevenlabs import BELLA_ID
from voices.models import Voice

pytestmark = pytest.mark.django_db

ENGLISH = {"accept-language": "en"}
# The latest migration that sets the roles' permissions.
MIGRATION = ("campaigns", "0027_roles_privacy")
roles_migration = importlib.import_module("campaigns.migrations.0027_roles_privacy")

VIEWER = {
    "campaigns.view_partner",
    "campaigns.view_campaign",
    "campaigns.view_contact",
    "campaigns.view_donotcall",
    "campaigns.view_contactimport",
    "campaigns.view_contactimporterror",
    "campaigns.view_contactimportwarning",
    "campaigns.view_suppressionlist",
    "campaigns.view_suppressioncopy",
    "campaigns.view_webhookdelivery",
    "calls.view_call",
    "calls.view_turn",
    "calls.view_callevent",
    "calls.view_callclip",
    "templates.view_calltemplate",
    "voices.view_voice",
    "voices.view_speechclip",
    "django_celery_beat.view_periodictask",
    "django_celery_beat.view_crontabschedule",
    "django_celery_beat.view_intervalschedule",
    "django_celery_beat.view_solarschedule",
    "django_celery_beat.view_clockedschedule",
}
OPERATOR = VIEWER | {
    "campaigns.control_campaign",
    "campaigns.add_contact",
    "campaigns.change_contact",
    "campaigns.delete_contact",
    "campaigns.add_contactimport",
    "campaigns.add_donotcall",
    "campaigns.change_donotcall",
    "campaigns.delete_donotcall",
}
ADMINISTERED_APPS = [
    "audit",
    "campaigns",
    "calls",
    "templates",
    "voices",
    "django_celery_beat",
    "privacy",
]
# Held by secrets, or by whoever may grant themselves anything: administrators only.
ADMINISTRATORS_ONLY = {
    "partnerapikey": PartnerApiKey,
    "webhookendpoint": WebhookEndpoint,
    "user": User,
    "group": Group,
}


def model_permissions(*models) -> set[str]:
    """Every permission the models have: Django's defaults and their own."""
    return {
        f"{model._meta.app_label}.{codename}"
        for model in models
        for codename in [
            *(f"{action}_{model._meta.model_name}" for action in model._meta.default_permissions),
            *(codename for codename, _name in model._meta.permissions),
        ]
    }


ADMINISTRATOR = model_permissions(
    *(model for label in ADMINISTERED_APPS for model in apps.get_app_config(label).get_models()),
    User,
    Group,
)


def granted(role: str) -> set[str]:
    return {
        f"{permission.content_type.app_label}.{permission.codename}"
        for permission in Group.objects.get(name=role).permissions.select_related("content_type")
    }


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


# Every model in the admin that a viewer may read, each with its own test.
VIEWED = sorted(
    (
        model
        for model in admin.site._registry
        if f"{model._meta.app_label}.view_{model._meta.model_name}" in VIEWER
    ),
    key=lambda model: model._meta.label,
)


@pytest.fixture
def as_role(client, django_user_model):
    """Logs the test client in as a new staff user whose only permissions are the role's."""

    def log_in(role: str):
        user = django_user_model.objects.create_user(role, password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return log_in


@pytest.fixture
def rows(campaign) -> dict[str, object]:
    """A row of every model in the admin (the periodic tasks come from the migrations)."""
    contact = ContactFactory(campaign=campaign, phone="+34600000001")
    endpoint = WebhookEndpointFactory(
        partner=campaign.partner, url="https://example.com/hooks", events=["call.completed"]
    )
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        from_number="+34910000000",
        to_number=contact.phone,
        status=Call.Status.COMPLETED,
        provider_sid="CA" + "1" * 32,
    )
    voice = VoiceFactory(provider_voice_id=BELLA_ID, name="Bella")
    PartnerApiKey.objects.create_key(partner=campaign.partner, name="CRM")
    created = {
        "contact": contact,
        "call": call,
        "voice": voice,
        "do_not_call": DoNotCallFactory(partner=None, phone="+34600000002", reason="Asked"),
        "import": ContactImportFactory(campaign=campaign, file_name="contacts.csv"),
        "delivery": WebhookDeliveryFactory(
            endpoint=endpoint,
            event_id=uuid.uuid4(),
            event_type="call.completed",
            payload={},
            state=WebhookDelivery.State.FAILED,
            attempts=3,
        ),
        "event": CallEventFactory(
            call=call, provider_sid=call.provider_sid, kind="status", payload={}
        ),
        "clip": SpeechClipFactory(
            key="k" * 64, text="Hola.", voice=voice, model_id="m", output_format="mp3"
        ),
        "solar": SolarSchedule.objects.create(event="sunrise", latitude=40.4, longitude=-3.7),
        "clocked": ClockedSchedule.objects.create(clocked_time=timezone.now()),
        "suppression_copy": SuppressionCopy.objects.create(
            suppression_list=SuppressionList.objects.create(
                name="Robinson", kind="robinson_es", country_code="34"
            ),
            refreshed_at=timezone.localdate(),
            file_name="robinson.txt",
        ),
        "audit": record(Action.OBJECT_CREATED, partner_id=campaign.partner_id, object_id=1),
        "subject_request": DataSubjectRequest.objects.create(
            kind="export", subject="0" * 64, actor_type="staff"
        ),
    }
    for model in admin.site._registry:
        # Users and groups: the test's own, and the roles.
        if model._meta.app_label != "auth":
            assert model._default_manager.exists(), f"no {model._meta.label} to open"
    return created


def action_names(response) -> list[str]:
    """The actions a changelist offers (none: no action form at all)."""
    form = response.context["action_form"]
    return [name for name, _label in form.fields["action"].choices if name] if form else []


def listed_models(response) -> set[str]:
    """The models the admin index lists, as app_label.model_name."""
    return {
        f"{app['app_label']}.{model['object_name'].lower()}"
        for app in response.context["app_list"]
        for model in app["models"]
    }


def post_action(client, model, action: str, *rows) -> None:
    client.post(
        admin_url(model, "changelist"),
        {"action": action, "index": "0", "_selected_action": [str(row.pk) for row in rows]},
    )


# --- The groups ---------------------------------------------------------------------------


def test_roles_exist_after_migrate_with_exactly_their_permissions() -> None:
    assert granted("viewer") == VIEWER
    assert granted("operator") == OPERATOR
    assert granted("administrator") == ADMINISTRATOR
    assert "campaigns.add_partnerapikey" in ADMINISTRATOR
    assert "auth.change_user" in ADMINISTRATOR


def test_roles_migration_makes_the_permissions_it_grants_and_runs_again() -> None:
    # given a database as fresh as migrate leaves it before post_migrate: no permissions
    # of the apps yet, and no roles
    state = MigrationExecutor(connection).loader.project_state(MIGRATION, at_end=True)
    schema_editor = SimpleNamespace(connection=connection)
    roles_migration.delete_roles(state.apps, schema_editor)
    Permission.objects.filter(content_type__app_label__in=[*ADMINISTERED_APPS, "auth"]).delete()
    assert not Group.objects.filter(name__in=roles_migration.ROLES).exists()

    # when the migration runs, and runs again on the database it left
    roles_migration.create_roles(state.apps, schema_editor)
    first = {role: granted(role) for role in roles_migration.ROLES}
    roles_migration.create_roles(state.apps, schema_editor)

    # then the roles have their permissions both times
    assert first == {"viewer": VIEWER, "operator": OPERATOR, "administrator": ADMINISTRATOR}
    assert {role: granted(role) for role in roles_migration.ROLES} == first
    assert Group.objects.filter(name__in=roles_migration.ROLES).count() == 3


def test_roles_migration_reversed_removes_the_roles() -> None:
    state = MigrationExecutor(connection).loader.project_state(MIGRATION, at_end=True)

    roles_migration.delete_roles(state.apps, SimpleNamespace(connection=connection))

    assert not Group.objects.filter(name__in=roles_migration.ROLES).exists()


# --- Viewer -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", VIEWED, ids=lambda model: model._meta.label)
def test_viewer_opens_every_list_and_page_but_changes_nothing(as_role, rows, model) -> None:
    # given a viewer
    client = as_role("viewer")
    row = model._default_manager.first()

    # when they open the list and a row's page, and try to change, add and delete
    changelist = client.get(admin_url(model, "changelist"))
    page = client.get(admin_url(model, "change", row.pk))
    change = client.post(admin_url(model, "change", row.pk), {})
    add = client.get(admin_url(model, "add"))
    delete = client.post(admin_url(model, "delete", row.pk), {"post": "yes"})

    # then they read both, with no action and no Save button, and the rest is refused
    assert changelist.status_code == 200
    assert action_names(changelist) == []
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert (change.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert model._default_manager.filter(pk=row.pk).exists()


def test_viewer_neither_sees_nor_opens_secrets_and_users(
    as_role, admin_client, rows, partner, django_user_model
) -> None:
    # given a partner with a user of its own
    member = django_user_model.objects.create_user("acme-crm")
    PartnerMember.objects.create(user=member, partner=partner)
    client = as_role("viewer")

    # when a viewer opens the admin, what only administrators may, and the partner
    index = client.get(reverse("admin:index"))
    opened = {
        name: client.get(admin_url(model, "changelist")).status_code
        for name, model in ADMINISTRATORS_ONLY.items()
    }
    page = client.get(admin_url(Partner, "change", partner.pk)).content.decode()

    # then none is listed or opened, and the partner's page leaves out its users
    assert opened == dict.fromkeys(ADMINISTRATORS_ONLY, 403)
    listed = {name.split(".")[1] for name in listed_models(index)}
    assert not listed & {*ADMINISTRATORS_ONLY, "partnermember"}
    assert {"campaign", "call", "contact", "calltemplate", "voice"} <= listed
    assert "acme-crm" not in page
    assert "acme-crm" in admin_client.get(admin_url(Partner, "change", partner.pk)).content.decode()


def test_viewer_runs_no_action_even_when_posting_one(as_role, rows) -> None:
    # given a viewer, a failed delivery, a voice, a draft campaign and an enabled schedule
    client = as_role("viewer")
    task = PeriodicTask.objects.filter(enabled=True).first()
    campaign = Campaign.objects.get()

    # when they post each action as if it were offered
    post_action(client, WebhookDelivery, "redeliver", rows["delivery"])
    post_action(client, Voice, "make_default", rows["voice"])
    post_action(client, PeriodicTask, "disable_tasks", task)
    post_action(client, PeriodicTask, "run_tasks", task)
    post_action(client, Campaign, "start_campaigns", campaign)

    # then none ran
    rows["delivery"].refresh_from_db()
    rows["voice"].refresh_from_db()
    task.refresh_from_db()
    campaign.refresh_from_db()
    assert rows["delivery"].state == WebhookDelivery.State.FAILED
    assert rows["voice"].is_default is False
    assert task.enabled is True
    assert campaign.state == Campaign.State.DRAFT


def test_viewer_cannot_sync_voices(as_role, fake_elevenlabs) -> None:
    client = as_role("viewer")

    page = client.get(admin_url(Voice, "changelist"))
    client.post(admin_url(Voice, "changelist"), {"action": "sync_voices", "index": "0"})

    assert page.context["can_sync_voices"] is False
    assert fake_elevenlabs.requests == []
    assert not Voice.objects.exists()


def test_viewer_previews_a_template_as_text_only(as_role, rows, call_template, fake_elevenlabs):
    client = as_role("viewer")
    url = reverse("admin:templates_calltemplate_preview", args=[call_template.pk])

    response = client.post(url, {"audio": "on"}, headers=ENGLISH)

    assert response.status_code == 200
    assert 'id="template-preview"' in response.content.decode()
    assert 'name="audio"' not in response.content.decode()
    assert fake_elevenlabs.requests == []


def test_staff_without_a_role_open_no_page_of_a_call(client, django_user_model, rows) -> None:
    # given staff in no role, and a viewer
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(nobody)
    call = rows["call"]
    template = Campaign.objects.get().template

    # when they open a call, its recording, and a template's preview
    pages = [
        client.get(admin_url(Call, "change", call.pk)),
        client.get(reverse("calls:recording-audio", kwargs={"call_id": call.pk})),
        client.get(reverse("admin:templates_calltemplate_preview", args=[template.pk])),
    ]

    # then each is refused
    assert [page.status_code for page in pages] == [403, 403, 403]


def test_viewer_may_hear_recordings(as_role, rows) -> None:
    client = as_role("viewer")

    # the call has no recording: answered as such, past the permission check
    response = client.get(reverse("calls:recording-audio", kwargs={"call_id": rows["call"].pk}))

    assert response.status_code == 404


# --- Operator -----------------------------------------------------------------------------


def test_operator_cannot_reach_keys_webhooks_or_users(as_role, rows) -> None:
    client = as_role("operator")
    key = PartnerApiKey.objects.get()

    index = client.get(reverse("admin:index"))
    responses = [
        client.get(admin_url(PartnerApiKey, "changelist")),
        client.get(admin_url(PartnerApiKey, "change", key.pk)),
        client.get(admin_url(PartnerApiKey, "add")),
        client.get(admin_url(WebhookEndpoint, "changelist")),
        client.get(reverse("admin:auth_user_changelist")),
        client.get(reverse("admin:auth_group_changelist")),
    ]

    assert [response.status_code for response in responses] == [403] * 6
    assert not {name.split(".")[1] for name in listed_models(index)} & {
        *ADMINISTRATORS_ONLY,
        "partnermember",
    }
    assert "campaigns.campaign" in listed_models(index)


def test_operator_adds_a_contact_and_a_do_not_call_entry(as_role, rows, campaign) -> None:
    client = as_role("operator")

    contact = client.post(
        admin_url(Contact, "add"),
        {
            "campaign": campaign.pk,
            "phone": "+34600000077",
            "time_zone": "",
            "variables": "{}",
            "external_id": "",
            "state": Contact.State.PENDING,
            "state_reason": "",
            "next_attempt_at_0": "",
            "next_attempt_at_1": "",
        },
    )
    entry = client.post(
        admin_url(DoNotCall, "add"),
        {"partner": "", "phone": "+34600000088", "source": "staff", "reason": "Asked"},
    )

    assert (contact.status_code, entry.status_code) == (302, 302)
    assert campaign.contacts.filter(phone="+34600000077").exists()
    assert DoNotCall.objects.filter(phone="+34600000088", partner=None).exists()


def test_operator_runs_campaigns_but_does_not_edit_them(as_role, rows, campaign) -> None:
    client = as_role("operator")

    changelist = client.get(admin_url(Campaign, "changelist"))
    change = client.post(admin_url(Campaign, "change", campaign.pk), {})
    imports = client.get(admin_url(ContactImport, "add"))

    assert "start_campaigns" in action_names(changelist)
    assert change.status_code == 403
    assert imports.status_code == 200


def test_operator_cannot_send_a_delivery_again(as_role, rows) -> None:
    client = as_role("operator")

    changelist = client.get(admin_url(WebhookDelivery, "changelist"))
    post_action(client, WebhookDelivery, "redeliver", rows["delivery"])

    rows["delivery"].refresh_from_db()
    assert "redeliver" not in action_names(changelist)
    assert rows["delivery"].state == WebhookDelivery.State.FAILED


# --- Administrator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    sorted(admin.site._registry, key=lambda model: model._meta.label),
    ids=lambda model: model._meta.label,
)
def test_administrator_does_in_the_admin_what_a_superuser_does(
    as_role, admin_client, rows, model
) -> None:
    # given the same pages for an administrator and for a superuser
    def visit(client) -> tuple:
        changelist = client.get(admin_url(model, "changelist"))
        row = model._default_manager.first()
        return (
            changelist.status_code,
            action_names(changelist),
            client.get(admin_url(model, "add")).status_code,
            client.get(admin_url(model, "change", row.pk)).status_code,
            client.get(admin_url(model, "delete", row.pk)).status_code,
        )

    administrator = visit(as_role("administrator"))
    superuser = visit(admin_client)

    # then they get the same answers and actions
    assert administrator == superuser


def test_administrator_sends_a_delivery_again(
    as_role, rows, django_capture_on_commit_callbacks
) -> None:
    client = as_role("administrator")

    with django_capture_on_commit_callbacks():
        post_action(client, WebhookDelivery, "redeliver", rows["delivery"])

    rows["delivery"].refresh_from_db()
    assert rows["delivery"].state == WebhookDelivery.State.PENDING
