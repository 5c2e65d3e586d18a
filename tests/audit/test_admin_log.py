"""Staff and API actions in the audit trail: who created, changed or deleted what, when,
from where (the address the trusted proxies saw), and which fields, never a person's
name or number."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEntry
from audit.services import Action, subject_hash
from campaigns.models import Campaign, DoNotCall
from tests.campaigns.test_admin_campaigns import form_data as campaign_form
from tests.campaigns.test_admin_campaigns import ready, run_action
from tests.factories import CampaignFactory, ContactFactory, DoNotCallFactory
from tests.templates.test_admin import form_data as template_form
from tests.templates.test_views import payload as template_payload

pytestmark = pytest.mark.django_db

# The client's address as the load balancer appends it, after one the client made up.
FORWARDED = {"HTTP_X_FORWARDED_FOR": "198.51.100.66, 203.0.113.7", "REMOTE_ADDR": "10.0.0.2"}


@pytest.fixture(autouse=True)
def _one_proxy(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 1


@pytest.fixture
def staff(admin_client, django_user_model):
    return admin_client, django_user_model.objects.get(username="admin")


def _last(action: str, object_type: str) -> AuditEntry:
    return AuditEntry.objects.filter(action=action, object_type=object_type).latest("seq")


def test_a_staff_edit_of_a_campaign_records_who_from_where_and_what(staff, campaign) -> None:
    client, user = staff

    response = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        campaign_form(campaign, calls_per_second=2, max_attempts=2),
        **FORWARDED,
    )

    assert response.status_code == 302
    entry = _last(Action.OBJECT_CHANGED, "campaigns.campaign")
    assert (entry.object_id, entry.partner_id) == (str(campaign.pk), campaign.partner_id)
    assert (entry.actor_type, entry.actor_id, entry.actor_name) == (
        "staff",
        f"user:{user.pk}",
        "admin",
    )
    assert entry.ip == "203.0.113.7"  # never the address the client wrote itself
    # What the form reports changed (as Django's own admin log): field names, nothing else.
    assert {"calls_per_second", "max_attempts"} <= set(entry.details["changed"])
    assert not {"name", "caller_number"} & set(entry.details["changed"])


def test_a_staff_edit_of_a_template_records_its_fields(staff, call_template) -> None:
    client, _user = staff

    response = client.post(
        reverse("admin:templates_calltemplate_change", args=[call_template.pk]),
        template_form(call_template, name="Otoño"),
        **FORWARDED,
    )

    assert response.status_code == 302, response.content.decode()[:1500]
    entry = _last(Action.OBJECT_CHANGED, "templates.calltemplate")
    assert "name" in entry.details["changed"] and "greeting" not in entry.details["changed"]
    assert entry.partner_id == call_template.partner_id


def test_a_staff_deletion_of_a_do_not_call_entry_names_no_number(staff, partner) -> None:
    client, user = staff
    entry = DoNotCallFactory(partner=partner, phone="+34612345678", reason="Ana Pérez asked")

    response = client.post(
        reverse("admin:campaigns_donotcall_delete", args=[entry.pk]), {"post": "yes"}, **FORWARDED
    )

    assert response.status_code == 302 and not DoNotCall.objects.exists()
    logged = _last(Action.OBJECT_DELETED, "campaigns.donotcall")
    assert (logged.object_id, logged.partner_id) == (str(entry.pk), partner.pk)
    assert logged.actor_id == f"user:{user.pk}" and logged.ip == "203.0.113.7"
    # the number only as the entry's subject, so that the person's export finds it
    assert logged.subject == subject_hash("+34612345678")
    text = str(AuditEntry.objects.values().get(pk=logged.pk))
    assert "612345678" not in text and "Ana" not in text


def test_a_staff_change_to_a_user_is_recorded(staff, django_user_model) -> None:
    client, _user = staff
    clerk = django_user_model.objects.create_user("clerk", password="pw")

    response = client.post(
        reverse("admin:auth_user_change", args=[clerk.pk]),
        {
            "username": "clerk",
            "is_active": "on",
            "is_staff": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00",
        },
        **FORWARDED,
    )

    assert response.status_code == 302, response.content.decode()[:1500]
    assert User.objects.get(pk=clerk.pk).is_staff
    entry = _last(Action.OBJECT_CHANGED, "auth.user")
    assert entry.object_id == str(clerk.pk) and entry.partner_id is None
    assert "is_staff" in entry.details["changed"]


def test_a_deletion_from_the_list_records_each_object(staff, partner) -> None:
    client, _user = staff
    entries = [DoNotCallFactory(partner=partner, phone=f"+3461234567{n}") for n in range(2)]

    client.post(
        reverse("admin:campaigns_donotcall_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [entry.pk for entry in entries],
            "post": "yes",
        },
    )

    logged = AuditEntry.objects.filter(action=Action.OBJECT_DELETED)
    assert sorted(logged.values_list("object_id", flat=True)) == sorted(
        str(entry.pk) for entry in entries
    )


def test_campaign_start_and_pause_from_the_admin_are_recorded_as_staffs(staff, campaign) -> None:
    client, user = staff
    ready(campaign)

    run_action(client, "start_campaigns", campaign)
    run_action(client, "pause_campaigns", campaign)

    started = _last(Action.CAMPAIGN_STARTED, "campaigns.campaign")
    paused = _last(Action.CAMPAIGN_PAUSED, "campaigns.campaign")
    assert started.actor_id == paused.actor_id == f"user:{user.pk}"
    assert started.details == {"from": "draft", "to": "running", "reason": ""}
    assert paused.details["from"] == "running" and paused.partner_id == campaign.partner_id


def test_a_move_by_the_platform_is_recorded_as_the_platforms(campaign) -> None:
    from campaigns.services import pause_campaign

    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()

    pause_campaign(campaign=campaign, reason="Twilio refused the credentials")

    entry = _last(Action.CAMPAIGN_PAUSED, "campaigns.campaign")
    assert entry.actor_type == "system"
    assert entry.details["reason"] == "Twilio refused the credentials"


# --- The API --------------------------------------------------------------------------------


def test_api_create_update_and_delete_of_a_template_are_recorded(api_client, api_partner):
    created = api_client.post("/api/v1/templates/", template_payload(), format="json", **FORWARDED)
    url = f"/api/v1/templates/{created.json()['id']}/"
    changed = api_client.patch(url, {"name": "Otro"}, format="json", **FORWARDED)
    deleted = api_client.delete(url, **FORWARDED)

    assert (created.status_code, changed.status_code, deleted.status_code) == (201, 200, 204)
    entries = list(AuditEntry.objects.filter(object_type="templates.calltemplate").order_by("seq"))
    assert [entry.action for entry in entries] == [
        Action.OBJECT_CREATED,
        Action.OBJECT_CHANGED,
        Action.OBJECT_DELETED,
    ]
    assert {entry.object_id for entry in entries} == {str(created.json()["id"])}
    assert {entry.partner_id for entry in entries} == {api_partner.pk}
    assert {entry.actor_type for entry in entries} == {"partner"}
    assert entries[0].actor_id.startswith("key:") and entries[0].ip == "203.0.113.7"
    assert entries[1].details == {"changed": ["name"]}
    assert "name" in entries[0].details["changed"]


def test_a_refused_api_deletion_leaves_no_entry(api_client, api_partner) -> None:
    from tests.factories import CallTemplateFactory, CampaignFactory

    template = CallTemplateFactory(partner=api_partner)
    CampaignFactory(partner=api_partner, template=template)

    response = api_client.delete(f"/api/v1/templates/{template.pk}/")

    assert response.status_code == 409
    assert not AuditEntry.objects.filter(action=Action.OBJECT_DELETED).exists()


def test_api_campaign_start_and_pause_are_recorded_with_the_key(
    api_client, api_partner, call_template, settings
) -> None:
    from tests.factories import CampaignFactory

    settings.TWILIO_PHONE_NUMBER = "+34910000000"
    settings.ELEVENLABS_API_KEY = ""
    call_template.partner = api_partner
    call_template.save()
    campaign = CampaignFactory(partner=api_partner, template=call_template)
    ContactFactory(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})

    started = api_client.post(f"/api/v1/campaigns/{campaign.pk}/start/", **FORWARDED)
    paused = api_client.post(f"/api/v1/campaigns/{campaign.pk}/pause/", **FORWARDED)

    assert (started.status_code, paused.status_code) == (200, 200), started.content
    moves = AuditEntry.objects.filter(object_type="campaigns.campaign").order_by("seq")
    assert [entry.action for entry in moves] == [Action.CAMPAIGN_STARTED, Action.CAMPAIGN_PAUSED]
    assert {entry.actor_type for entry in moves} == {"partner"}
    assert {entry.ip for entry in moves} == {"203.0.113.7"}


def test_api_do_not_call_add_and_contact_change_are_recorded(api_client, api_partner):
    added = api_client.post("/api/v1/dnc/", {"phone": "+34612345678"}, format="json")

    assert added.status_code == 201, added.content
    entry = _last(Action.OBJECT_CREATED, "campaigns.donotcall")
    assert entry.object_id == str(added.json()["id"]) and entry.partner_id == api_partner.pk
    assert "612345678" not in str(AuditEntry.objects.values().get(pk=entry.pk))


@pytest.fixture
def partner_user(api_partner):
    """An API client of the partner's user (only a user makes keys), with a JWT."""
    from rest_framework.test import APIClient

    client = APIClient()
    answer = client.post(
        "/api/v1/auth/token/", {"username": "initech", "password": "initech-pw"}, format="json"
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {answer.json()['access']}")
    return client


def test_an_api_key_is_recorded_by_its_prefix_never_its_hash(partner_user) -> None:
    created = partner_user.post("/api/v1/api-keys/", {"name": "CRM"}, format="json")

    assert created.status_code == 201, created.content
    entry = _last(Action.OBJECT_CREATED, "campaigns.partnerapikey")
    assert entry.object_id == created.json()["prefix"]
    assert created.json()["key"].partition(".")[2] not in str(
        AuditEntry.objects.values().get(pk=entry.pk)
    )


def test_bulk_do_not_call_adds_record_each_number_by_its_hash_with_the_actor(
    staff, api_client, api_partner
) -> None:
    client, user = staff
    # from the admin's bulk form, onto the global list
    client.post(
        reverse("admin:campaigns_donotcall_bulk_add"),
        {"numbers": "612 345 678\n611 222 333", "scope": "global", "partner": "", "region": "ES"},
        **FORWARDED,
    )
    # and from the partner API's bulk endpoint
    answer = api_client.post("/api/v1/dnc/bulk/", ["+34699000111"], format="json")
    assert answer.status_code == 200, answer.content

    entries = AuditEntry.objects.filter(
        action=Action.OBJECT_CREATED, object_type="campaigns.donotcall"
    ).order_by("seq")
    assert [(e.subject, e.actor_type, e.partner_id) for e in entries] == [
        (subject_hash("+34612345678"), "staff", None),
        (subject_hash("+34611222333"), "staff", None),
        (subject_hash("+34699000111"), "partner", api_partner.pk),
    ]
    assert entries[0].actor_id == f"user:{user.pk}" and entries[0].ip == "203.0.113.7"
    assert all(
        entry.details == {"source": entry.details["source"], "bulk": True} for entry in entries
    )
    assert "612345678" not in str(list(AuditEntry.objects.values()))


def test_partner_imports_of_contacts_are_recorded_with_their_counts(
    api_client, api_partner, call_template
) -> None:
    campaign = CampaignFactory(partner=api_partner, template=call_template)
    url = f"/api/v1/campaigns/{campaign.pk}/contacts/"
    # JSON rows, then a CSV file (small enough to be read during the request)
    rows = [{"phone": "+34612345678", "variables": {"first_name": "Ana"}}, {"phone": "bad"}]
    assert api_client.post(url, rows, format="json").status_code == 201
    upload = SimpleUploadedFile("c.csv", b"phone,first_name\n611222333,Eva\n")
    assert api_client.post(url, {"file": upload}, format="multipart").status_code == 201

    entries = AuditEntry.objects.filter(object_type="campaigns.contactimport").order_by("seq")
    assert [(e.action, e.actor_type, e.partner_id) for e in entries] == [
        (Action.OBJECT_CREATED, "partner", api_partner.pk),
        (Action.OBJECT_CREATED, "partner", api_partner.pk),
    ]
    assert [e.details for e in entries] == [
        {
            "campaign": campaign.pk,
            "via": "json",
            "rows": 2,
            "created": 1,
            "merged": 0,
            "rejected": 1,
        },
        {
            "campaign": campaign.pk,
            "via": "csv",
            "rows": 1,
            "created": 1,
            "merged": 0,
            "rejected": 0,
        },
    ]
    assert "612345678" not in str(list(AuditEntry.objects.values()))
