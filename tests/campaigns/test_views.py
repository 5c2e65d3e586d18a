"""The partner API over campaigns, contacts, imports and the do-not-call list."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone, translation
from rest_framework.test import APIClient

from campaigns import services
from campaigns.imports import run_import
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    ContactImportError,
    ContactImportWarning,
    DoNotCall,
    IdempotencyKey,
    Partner,
)
from templates.models import CallTemplate
from tests.factories import (
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    DoNotCallFactory,
)

pytestmark = pytest.mark.django_db

EN = {"Accept-Language": "en"}


def make_template(partner: Partner, name: str = "Recordatorio") -> CallTemplate:
    """A template that passes the disclosure lint."""
    return CallTemplateFactory(
        partner=partner,
        name=name,
        greeting="Hola. Le llamamos de {{ partner }}. Soy un asistente automático.",
        instructions="Confirma la cita.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
        closing_line="Gracias, adiós.",
    )


@pytest.fixture
def api_template(api_partner: Partner) -> CallTemplate:
    return make_template(api_partner)


@pytest.fixture
def api_campaign(api_partner: Partner, api_template: CallTemplate) -> Campaign:
    return CampaignFactory(partner=api_partner, name="Spring", template=api_template)


@pytest.fixture
def other_campaign(other_api_partner: Partner) -> Campaign:
    template = make_template(other_api_partner, name="Theirs")
    return CampaignFactory(partner=other_api_partner, name="Theirs", template=template)


@pytest.fixture
def jwt_client(api_partner: Partner) -> APIClient:
    """An API client acting for ``api_partner`` as its user, with a JWT."""
    client = APIClient()
    answer = client.post(
        "/api/v1/auth/token/", {"username": "initech", "password": "initech-pw"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {answer.json()['access']}")
    return client


@pytest.fixture
def can_call(settings) -> None:
    """A caller number (a landline) and no ElevenLabs: what a start needs besides contacts."""
    settings.TWILIO_PHONE_NUMBER = "+34910000000"
    settings.ELEVENLABS_API_KEY = ""


def in_state(campaign: Campaign, state: str) -> Campaign:
    starts_at = timezone.now() + datetime.timedelta(days=1) if state == "scheduled" else None
    Campaign.objects.filter(pk=campaign.pk).update(state=state, starts_at=starts_at)
    campaign.refresh_from_db()
    return campaign


def list_rows(client: APIClient, url: str, django_assert_num_queries, queries: int) -> list:
    """The rows ``url`` lists, read in exactly ``queries`` queries (after a first request,
    which also writes the API key's first use)."""
    client.get(url)
    with django_assert_num_queries(queries):
        response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- Campaigns ---------------------------------------------------------------------------


def test_campaign_create_as_partner_with_api_key(api_client, api_partner, api_template) -> None:
    response = api_client.post(
        "/api/v1/campaigns/",
        {"name": "Autumn", "template": api_template.pk, "max_attempts": 2},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["partner"] == api_partner.pk
    assert body["state"] == "draft"
    assert body["max_attempts"] == 2
    assert Campaign.objects.get(pk=body["id"]).partner == api_partner


def test_campaign_create_and_list_as_partner_with_jwt(jwt_client, api_partner) -> None:
    created = jwt_client.post("/api/v1/campaigns/", {"name": "Autumn"}, format="json")
    listed = jwt_client.get("/api/v1/campaigns/")

    assert created.status_code == 201, created.content
    assert created.json()["partner"] == api_partner.pk
    assert [row["name"] for row in listed.json()["results"]] == ["Autumn"]


def test_campaign_create_as_staff_must_name_the_partner(staff_api_client, api_partner) -> None:
    # when
    unnamed = staff_api_client.post("/api/v1/campaigns/", {"name": "Ops"}, format="json")
    named = staff_api_client.post(
        "/api/v1/campaigns/", {"name": "Ops", "partner": api_partner.pk}, format="json"
    )

    # then
    assert unnamed.status_code == 400
    assert [error["field"] for error in unnamed.json()["errors"]] == ["partner"]
    assert named.status_code == 201, named.content
    assert Campaign.objects.get(name="Ops").partner == api_partner


def test_campaign_partner_cannot_create_for_another_partner(api_client, other_api_partner) -> None:
    response = api_client.post(
        "/api/v1/campaigns/", {"name": "Ops", "partner": other_api_partner.pk}, format="json"
    )

    assert response.status_code == 400
    assert not Campaign.objects.filter(partner=other_api_partner).exists()


def test_campaign_create_refuses_another_partners_template(
    api_client, staff_api_client, api_partner, other_campaign
) -> None:
    # when a partner names another's template, and staff mix two partners
    theirs = other_campaign.template.pk
    as_partner = api_client.post(
        "/api/v1/campaigns/", {"name": "X", "template": theirs}, format="json"
    )
    as_staff = staff_api_client.post(
        "/api/v1/campaigns/",
        {"name": "X", "template": theirs, "partner": api_partner.pk},
        format="json",
    )

    # then both are told about the template, and nothing is created
    assert as_partner.status_code == as_staff.status_code == 400
    assert [error["field"] for error in as_partner.json()["errors"]] == ["template"]
    assert [error["field"] for error in as_staff.json()["errors"]] == ["template"]
    assert not Campaign.objects.filter(name="X").exists()


def test_campaign_create_reports_json_settings_on_their_fields(api_client) -> None:
    response = api_client.post(
        "/api/v1/campaigns/",
        {
            "name": "Bad",
            "retry_policy": {"busy": {"delay_minutes": 0, "max_attempts": 1}},
            "calling_windows": {"mon": [["07:00", "23:30"]]},
            "sandbox_personas": {"ghost": 1},
        },
        format="json",
        headers=EN,
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {error["field"] for error in errors} == {
        "retry_policy",
        "calling_windows",
        "sandbox_personas",
    }
    assert any("no entry for voicemail" in error["message"] for error in errors)
    assert not Campaign.objects.filter(name="Bad").exists()


def test_campaign_caller_number_is_kept_in_e164_as_contacts_are(api_client, api_campaign) -> None:
    # when a partner writes the numbers as people do, on create and on change
    created = api_client.post(
        "/api/v1/campaigns/",
        {"name": "Autumn", "caller_number": "+34 910 00 00 00", "transfer_number": "910000999"},
        format="json",
    )
    changed = api_client.patch(
        f"/api/v1/campaigns/{api_campaign.pk}/",
        {"caller_number": "0034 910-000-001"},
        format="json",
    )

    # then they are answered, and kept, in E.164
    assert created.status_code == 201, created.content
    assert (created.json()["caller_number"], created.json()["transfer_number"]) == (
        "+34910000000",
        "+34910000999",
    )
    assert changed.status_code == 200, changed.content
    api_campaign.refresh_from_db()
    assert api_campaign.caller_number == changed.json()["caller_number"] == "+34910000001"


def test_campaign_caller_number_refused_on_save_naming_field_and_value(
    api_client, api_campaign
) -> None:
    created = api_client.post(
        "/api/v1/campaigns/", {"name": "Bad", "caller_number": "12345"}, format="json", headers=EN
    )
    changed = api_client.patch(
        f"/api/v1/campaigns/{api_campaign.pk}/",
        {"caller_number": "not a number"},
        format="json",
        headers=EN,
    )

    assert created.status_code == changed.status_code == 400
    assert created.json()["errors"] == [
        {
            "field": "caller_number",
            "code": "invalid",
            "message": "“12345” is not a valid phone number (region ES).",
        }
    ]
    assert changed.json()["errors"][0]["field"] == "caller_number"
    assert "“not a number”" in changed.json()["errors"][0]["message"]
    assert not Campaign.objects.filter(name="Bad").exists()
    api_campaign.refresh_from_db()
    assert api_campaign.caller_number == ""


def test_campaign_create_refuses_a_name_the_partner_already_uses(api_client, api_campaign) -> None:
    response = api_client.post("/api/v1/campaigns/", {"name": api_campaign.name}, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["name"]


def test_campaign_list_filters_by_state_and_orders(api_client, api_partner) -> None:
    # given
    for name, state in [("B", "draft"), ("A", "paused"), ("C", "draft")]:
        CampaignFactory(partner=api_partner, name=name, state=state)

    # when
    drafts = api_client.get("/api/v1/campaigns/?state=draft&ordering=name")
    by_name_desc = api_client.get("/api/v1/campaigns/?ordering=-name")

    # then
    assert [row["name"] for row in drafts.json()["results"]] == ["B", "C"]
    assert [row["name"] for row in by_name_desc.json()["results"]] == ["C", "B", "A"]


def test_campaign_list_shows_own_to_partners_and_all_to_staff(
    api_client, staff_api_client, api_campaign, other_campaign
) -> None:
    own = api_client.get("/api/v1/campaigns/").json()
    every = staff_api_client.get("/api/v1/campaigns/").json()

    assert [row["id"] for row in own["results"]] == [api_campaign.pk]
    assert {row["id"] for row in every["results"]} == {api_campaign.pk, other_campaign.pk}


def test_another_partners_campaign_answers_404_and_changes_nothing(
    api_client, other_campaign
) -> None:
    # given
    ContactFactory(campaign=other_campaign, phone="+34600000001")
    url = f"/api/v1/campaigns/{other_campaign.pk}/"

    # when
    answers = [
        api_client.get(url),
        api_client.patch(url, {"name": "Mine"}, format="json"),
        api_client.put(url, {"name": "Mine"}, format="json"),
        api_client.delete(url),
        api_client.post(f"{url}start/"),
        api_client.post(f"{url}cancel/"),
        api_client.get(f"{url}stats/"),
        api_client.get(f"{url}contacts/"),
        api_client.post(f"{url}contacts/", {"phone": "+34600000002"}, format="json"),
    ]

    # then
    assert [answer.status_code for answer in answers] == [404] * len(answers)
    other_campaign.refresh_from_db()
    assert other_campaign.name == "Theirs"
    assert other_campaign.state == "draft"
    assert other_campaign.contacts.count() == 1


@pytest.mark.parametrize("state", ["draft", "paused"])
def test_campaign_update_while_draft_or_paused(api_client, api_campaign, state) -> None:
    in_state(api_campaign, state)

    response = api_client.patch(
        f"/api/v1/campaigns/{api_campaign.pk}/",
        {"max_concurrent_calls": 9, "calling_windows": {"mon": [["10:00", "12:00"]]}},
        format="json",
    )

    assert response.status_code == 200, response.content
    api_campaign.refresh_from_db()
    assert api_campaign.max_concurrent_calls == 9
    assert api_campaign.calling_windows == {"mon": [["10:00", "12:00"]]}
    assert api_campaign.state == state


def test_campaign_put_needs_the_name(api_client, api_campaign) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/"

    nameless = api_client.put(url, {"max_attempts": 2}, format="json")
    named = api_client.put(url, {"name": "Renamed", "max_attempts": 2}, format="json")

    assert nameless.status_code == 400
    assert named.status_code == 200, named.content
    assert (named.json()["name"], named.json()["max_attempts"]) == ("Renamed", 2)


@pytest.mark.parametrize("state", ["running", "scheduled", "completed", "cancelled"])
def test_campaign_update_is_refused_unless_draft_or_paused(api_client, api_campaign, state):
    # given
    in_state(api_campaign, state)

    # when (even an invalid body is answered with the state first)
    response = api_client.patch(
        f"/api/v1/campaigns/{api_campaign.pk}/",
        {"max_concurrent_calls": 0, "name": "Renamed"},
        format="json",
        headers=EN,
    )

    # then
    assert response.status_code == 409
    body = response.json()
    assert body["message"] == "The campaign cannot be changed now."
    assert len(body["errors"]) == 1
    assert state in body["errors"][0]["message"]
    api_campaign.refresh_from_db()
    assert api_campaign.name == "Spring"


def test_campaign_delete_only_while_draft(api_client, api_partner) -> None:
    # given
    draft = CampaignFactory(partner=api_partner, name="Draft")
    ContactFactory(campaign=draft, phone="+34600000001")
    running = CampaignFactory(partner=api_partner, name="Running", state="running")

    # when
    deleted = api_client.delete(f"/api/v1/campaigns/{draft.pk}/")
    refused = api_client.delete(f"/api/v1/campaigns/{running.pk}/", headers=EN)

    # then
    assert deleted.status_code == 204
    assert not Campaign.objects.filter(pk=draft.pk).exists()
    assert refused.status_code == 409
    assert "Cancel it instead" in refused.json()["errors"][0]["message"]
    assert Campaign.objects.filter(pk=running.pk).exists()


def test_campaign_start_refusal_lists_every_reason(api_client, api_partner, settings) -> None:
    # given a campaign without a template, caller number or contacts
    settings.TWILIO_PHONE_NUMBER = ""
    settings.ELEVENLABS_API_KEY = ""
    campaign = CampaignFactory(partner=api_partner, name="Empty")
    with translation.override("en"):
        reasons = services.start_problems(campaign=campaign)
    assert len(reasons) >= 3

    # when
    response = api_client.post(f"/api/v1/campaigns/{campaign.pk}/start/", headers=EN)

    # then
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "conflict"
    assert body["message"] == "The campaign cannot start."
    assert [error["message"] for error in body["errors"]] == reasons
    campaign.refresh_from_db()
    assert campaign.state == "draft"


def test_campaign_start_refused_naming_what_contacts_lack(
    api_client, api_campaign, api_template, can_call
) -> None:
    # given a template that speaks the first name, and contacts without one
    api_template.variables = {"first_name": "Lucía"}
    api_template.instructions = "Confirma la cita de {{ first_name }}."
    api_template.save()
    ContactFactory(campaign=api_campaign, phone="+34600000001")
    ContactFactory(campaign=api_campaign, phone="+34600000002", variables={"x": "y"})

    response = api_client.post(f"/api/v1/campaigns/{api_campaign.pk}/start/", headers=EN)

    assert response.status_code == 409
    [error] = response.json()["errors"]
    assert error["message"].startswith(
        "None of the 2 contacts waiting can be called: 2 lack first_name."
    )
    api_campaign.refresh_from_db()
    assert api_campaign.state == "draft"


def test_campaign_start_answers_the_contacts_it_cannot_call_as_warnings(
    api_client, api_campaign, api_partner, can_call
) -> None:
    # given two contacts waiting, one of them on the partner's do-not-call list
    ContactFactory(campaign=api_campaign, phone="+34600000001")
    ContactFactory(campaign=api_campaign, phone="+34600000002")
    DoNotCallFactory(partner=api_partner, phone="+34600000002")
    url = f"/api/v1/campaigns/{api_campaign.pk}"

    started = api_client.post(f"{url}/start/", headers=EN)
    api_client.post(f"{url}/pause/")
    DoNotCall.objects.all().delete()
    resumed = api_client.post(f"{url}/resume/", headers=EN)

    assert started.status_code == 200, started.content
    assert started.json()["state"] == "running"
    assert started.json()["warnings"] == [
        "1 of the 2 contacts waiting cannot be called: 1 is on a do-not-call list."
    ]
    assert resumed.json()["warnings"] == []


def test_campaign_lifecycle_through_the_actions(api_client, api_campaign, can_call) -> None:
    # given
    ContactFactory(campaign=api_campaign, phone="+34600000001")
    url = f"/api/v1/campaigns/{api_campaign.pk}"

    # when
    states = [
        api_client.post(f"{url}/{move}/").json()["state"]
        for move in ("start", "pause", "resume", "cancel")
    ]
    again = api_client.post(f"{url}/pause/", headers=EN)

    # then
    assert states == ["running", "paused", "running", "cancelled"]
    assert again.status_code == 409
    assert again.json()["message"] == "The campaign cannot be paused."
    assert again.json()["errors"][0]["message"] == ("A Cancelled campaign cannot become Paused.")


def test_a_campaign_completed_without_a_call_says_why_in_the_api(
    api_client, api_campaign, api_partner
) -> None:
    # given a running campaign whose only contact is on the do-not-call list
    ContactFactory(campaign=api_campaign, phone="+34600000001", state="failed")
    DoNotCallFactory(partner=api_partner, phone="+34600000001")
    in_state(api_campaign, "running")
    with translation.override("en"):
        services.advance_campaigns()

    response = api_client.get(f"/api/v1/campaigns/{api_campaign.pk}/")

    assert response.json()["state"] == "completed"
    assert response.json()["state_reason"] == (
        "No call was made: of its 1 contact, 1 is on a do-not-call list."
    )


def test_campaign_lifecycle_as_staff_across_partners(
    staff_api_client, api_campaign, can_call
) -> None:
    ContactFactory(campaign=api_campaign, phone="+34600000001")

    response = staff_api_client.post(f"/api/v1/campaigns/{api_campaign.pk}/start/")

    assert response.status_code == 200, response.content
    api_campaign.refresh_from_db()
    assert api_campaign.state == "running"


def test_campaign_stats_counts_with_aggregates(
    api_client, api_campaign, django_assert_num_queries
) -> None:
    # given two contacts (one done, one pending) and their calls
    done = ContactFactory(campaign=api_campaign, phone="+34600000001", state="done")
    waiting = ContactFactory(campaign=api_campaign, phone="+34600000002")
    now = timezone.now()
    calls = [
        # (contact, status, answered_by, seconds, price, sid)
        (done, "busy", "", None, None, "CA1"),
        (done, "completed", "human", 60, Decimal("0.02000"), "CA2"),
        (done, "completed", "machine_end_beep", 20, Decimal("0.01000"), "CA3"),
        (waiting, "no-answer", "", None, None, "CA4"),
        (waiting, "completed", "human", 30, Decimal("0.50000"), "CA5"),
    ]
    for attempt, (contact, status, answered_by, seconds, price, sid) in enumerate(calls, 1):
        CallFactory(
            campaign=api_campaign,
            contact=contact,
            attempt=attempt,
            status=status,
            answered_by=answered_by,
            duration_seconds=seconds,
            price=price,
            price_unit="USD" if sid != "CA5" else "EUR",
            price_status="known" if price else "not-charged",
            provider_sid=sid,
            from_number="+34910000000",
            to_number=contact.phone,
            outcome={"opted_out": True} if sid == "CA5" else {},
            ended_at=now,
        )
    api_client.get("/api/v1/campaigns/")  # the key's first use is written once

    # when
    # key, campaign, three aggregates of calls, and the cost's three (telephony with the
    # extractions' tokens, the turns' tokens, the clips' characters)
    with django_assert_num_queries(8):
        response = api_client.get(f"/api/v1/campaigns/{api_campaign.pk}/stats/")

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["contacts"]["total"] == 2
    assert body["contacts"]["by_state"]["done"] == 1
    assert body["contacts"]["by_state"]["pending"] == 1
    assert body["contacts"]["by_state"]["opted_out"] == 0
    assert body["calls"]["total"] == 5
    assert body["calls"]["by_status"]["completed"] == 3
    assert body["calls"]["by_status"]["in-progress"] == 0
    assert body["calls"]["by_outcome"] == {
        "answered": 2,
        "voicemail": 1,
        "busy": 1,
        "no-answer": 1,
        "failed": 0,
        "canceled": 0,
    }
    assert body["calls"]["opted_out"] == 1
    assert body["calls"]["answer_rate"] == pytest.approx(2 / 5)
    assert body["calls"]["average_answered_seconds"] == pytest.approx(45.0)
    # Twilio's prices in the cost's currency are summed; one in another is named, not added.
    assert body["cost"] == {
        "currency": "USD",
        "telephony": "0.030000",
        "speech": "0.000000",
        "model": "0.000000",
        "total": "0.030000",
        "pending": [],
        "unpriced": ["telephony:EUR"],
        "calls_pending": 0,
        "tokens": {},
        "characters": {},
    }


def test_campaign_stats_of_a_new_campaign_are_zero(api_client, api_campaign) -> None:
    body = api_client.get(f"/api/v1/campaigns/{api_campaign.pk}/stats/").json()

    assert body["contacts"]["total"] == 0
    assert body["calls"]["answer_rate"] is None
    assert body["calls"]["average_answered_seconds"] is None
    assert body["cost"]["total"] == "0.000000"
    assert body["cost"]["pending"] == []


def test_campaign_create_with_idempotency_key_creates_once(api_client, api_partner) -> None:
    # given
    first = api_client.post(
        "/api/v1/campaigns/", {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1"
    )

    # when
    again = api_client.post(
        "/api/v1/campaigns/", {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1"
    )

    # then
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Campaign.objects.filter(partner=api_partner, name="Once").count() == 1
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.parametrize("size", [3, 30])
def test_campaign_list_queries_do_not_grow_with_rows(
    api_client, api_partner, size, django_assert_num_queries
):
    template = make_template(api_partner)
    for index in range(size):
        CampaignFactory(partner=api_partner, name=f"C{index}", template=template)
    # the key, the count, the page, the page's abandoned calls
    rows = list_rows(api_client, "/api/v1/campaigns/", django_assert_num_queries, 4)

    assert len(rows) == size


# --- Contacts ----------------------------------------------------------------------------


def test_contact_add_one_then_merge_the_same_number(api_client, api_campaign) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"

    # when the same number comes twice, written differently
    first = api_client.post(
        url, {"phone": "915 000 001", "variables": {"first_name": "Ana"}}, format="json"
    )
    again = api_client.post(
        url, {"phone": "+34 915-000-001", "variables": {"city": "Vigo"}}, format="json"
    )

    # then
    assert first.status_code == 201, first.content
    assert first.json()["phone"] == "+34915000001"
    assert first.json()["time_zone"] == "Europe/Madrid"
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    contact = Contact.objects.get()
    assert contact.variables == {"first_name": "Ana", "city": "Vigo"}


def test_contact_add_one_refuses_an_invalid_number(api_client, api_campaign) -> None:
    response = api_client.post(
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/", {"phone": "12"}, format="json"
    )

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["phone"]
    assert not Contact.objects.exists()


def test_contact_add_as_staff_and_jwt(staff_api_client, jwt_client, api_campaign) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"

    by_staff = staff_api_client.post(url, {"phone": "+34600000001"}, format="json")
    by_user = jwt_client.post(url, {"phone": "+34600000002"}, format="json")

    assert by_staff.status_code == by_user.status_code == 201
    assert api_campaign.contacts.count() == 2


@pytest.mark.parametrize("state", ["completed", "cancelled"])
def test_contact_add_refused_once_the_campaign_is_over(api_client, api_campaign, state) -> None:
    in_state(api_campaign, state)

    response = api_client.post(
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/",
        [{"phone": "+34600000001"}],
        format="json",
        headers=EN,
    )

    assert response.status_code == 409
    assert response.json()["message"] == "The campaign takes no more contacts."
    assert not Contact.objects.exists()


def test_contact_add_to_a_running_campaign(api_client, api_campaign) -> None:
    in_state(api_campaign, "running")

    response = api_client.post(
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/", {"phone": "+34600000001"}, format="json"
    )

    assert response.status_code == 201


def test_contact_add_refuses_a_body_that_is_neither_object_nor_list(
    api_client, api_campaign
) -> None:
    response = api_client.post(
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/", "600000001", format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] is None
    assert not Contact.objects.exists()


def test_contact_bulk_refuses_more_than_the_limit(api_client, api_campaign) -> None:
    rows = [{"phone": f"+346{index:08d}"} for index in range(10_001)]

    response = api_client.post(
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/", rows, format="json", headers=EN
    )

    assert response.status_code == 400
    assert "At most 10000 contacts per request" in response.json()["message"]
    assert not Contact.objects.exists()


def test_contact_list_filters_by_state_and_searches_by_phone(api_client, api_campaign) -> None:
    # given
    ContactFactory(campaign=api_campaign, phone="+34600000001", state="done")
    ContactFactory(campaign=api_campaign, phone="+34600000002")
    ContactFactory(campaign=api_campaign, phone="+34911000003")
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"

    def phones(query: str) -> list[str]:
        response = api_client.get(url + query)
        assert response.status_code == 200, response.content
        return [row["phone"] for row in response.json()["results"]]

    # when / then
    assert phones("?state=pending") == ["+34600000002", "+34911000003"]
    assert phones("?search=600 00 00 02") == ["+34600000002"]  # national, spaced
    assert phones("?search=%2B34-600-000-001") == ["+34600000001"]
    assert phones("?search=6000000") == ["+34600000001", "+34600000002"]  # a part of one
    assert phones("?search=911") == ["+34911000003"]


@pytest.mark.parametrize("size", [3, 30])
def test_contact_list_queries_do_not_grow_with_rows(
    api_client, api_campaign, size, django_assert_num_queries
):
    Contact.objects.bulk_create(
        Contact(campaign=api_campaign, phone=f"+346000{index:05d}") for index in range(size)
    )
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"
    # the key, the campaign, the count, the page
    rows = list_rows(api_client, url, django_assert_num_queries, 4)

    assert len(rows) == size


def test_contact_detail_explains_why_it_cannot_be_called(api_client, api_campaign) -> None:
    contact = ContactFactory(campaign=api_campaign, phone="+34600000001")
    DoNotCallFactory(partner=api_campaign.partner, phone=contact.phone)

    response = api_client.get(f"/api/v1/contacts/{contact.pk}/", headers=EN)

    assert response.status_code == 200, response.content
    eligibility = response.json()["eligibility"]
    assert eligibility["dialable"] is False
    codes = [reason["code"] for reason in eligibility["reasons"]]
    assert "campaign_not_running" in codes
    assert "do_not_call" in codes
    assert eligibility["next_possible_at"] is None
    assert all(reason["message"] for reason in eligibility["reasons"])


def test_contact_detail_of_another_partner_answers_404(api_client, other_campaign) -> None:
    contact = ContactFactory(campaign=other_campaign, phone="+34600000001")

    answers = [
        api_client.get(f"/api/v1/contacts/{contact.pk}/"),
        api_client.patch(f"/api/v1/contacts/{contact.pk}/", {"variables": {}}, format="json"),
        api_client.delete(f"/api/v1/contacts/{contact.pk}/"),
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 404]
    assert Contact.objects.filter(pk=contact.pk).exists()


def test_contact_patch_changes_variables_and_time_zone(jwt_client, api_campaign) -> None:
    contact = ContactFactory(campaign=api_campaign, phone="+34600000001", variables={"a": "1"})

    response = jwt_client.patch(
        f"/api/v1/contacts/{contact.pk}/",
        {"variables": {"b": "2"}, "time_zone": "Atlantic/Canary"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["variables"] == {"b": "2"}
    assert "eligibility" in response.json()
    contact.refresh_from_db()
    assert contact.time_zone == "Atlantic/Canary"


def test_contact_patch_refuses_an_unknown_time_zone(api_client, api_campaign) -> None:
    contact = ContactFactory(campaign=api_campaign, phone="+34600000001")

    response = api_client.patch(
        f"/api/v1/contacts/{contact.pk}/", {"time_zone": "Europe/Atlantis"}, format="json"
    )

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["time_zone"]


def test_contact_delete_only_if_never_called(api_client, api_campaign) -> None:
    # given
    fresh = ContactFactory(campaign=api_campaign, phone="+34600000001")
    called = ContactFactory(campaign=api_campaign, phone="+34600000002", attempts=1)
    CallFactory(
        campaign=api_campaign,
        contact=called,
        attempt=1,
        status="busy",
        from_number="+34910000000",
        to_number=called.phone,
    )

    # when
    deleted = api_client.delete(f"/api/v1/contacts/{fresh.pk}/")
    refused = api_client.delete(f"/api/v1/contacts/{called.pk}/", headers=EN)

    # then
    assert deleted.status_code == 204
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["message"] == (
        "The contact was already called; its calls are kept."
    )
    assert list(Contact.objects.values_list("pk", flat=True)) == [called.pk]


def test_contact_bulk_json_merges_duplicates_and_reports_bad_rows(api_client, api_campaign) -> None:
    # given a list that names one person twice and has a bad number
    rows = [
        {"phone": "600000001", "first_name": "Ana"},
        {"phone": "+34 600 000 001", "variables": {"city": "Vigo"}},
        {"phone": "600000002"},
        {"phone": "bad"},
    ]

    # when
    response = api_client.post(
        f"/api/v1/campaigns/{api_campaign.pk}/contacts/", rows, format="json"
    )

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["total_rows"], body["created"], body["merged"], body["rejected"]) == (4, 2, 1, 1)
    assert [(e["row"], e["field"], e["value"]) for e in body["errors"]] == [(4, "phone", "bad")]
    assert body["errors"][0]["message"]
    ana = api_campaign.contacts.get(phone="+34600000001")
    assert ana.variables == {"first_name": "Ana", "city": "Vigo"}
    assert api_campaign.contacts.count() == 2


CSV = (
    b"phone;first_name;external_id\n"
    b"600000001;Ana;crm-1\n"
    b"not a phone;Bea;crm-2\n"
    b"600000003;Carla;crm-3\n"
)


def upload(client: APIClient, campaign: Campaign, content: bytes = CSV, **extra):
    return client.post(
        f"/api/v1/campaigns/{campaign.pk}/contacts/",
        {"file": SimpleUploadedFile("contacts.csv", content, content_type="text/csv")},
        format="multipart",
        **extra,
    )


def test_contact_csv_upload_imports_good_rows_and_reports_the_bad_one(
    api_client, api_campaign
) -> None:
    response = upload(api_client, api_campaign)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["total_rows"], body["created"], body["merged"], body["rejected"]) == (3, 2, 0, 1)
    assert [(e["row"], e["field"], e["value"]) for e in body["errors"]] == [
        (3, "phone", "not a phone")
    ]
    contacts = api_campaign.contacts.order_by("phone")
    assert [(c.phone, c.external_id, c.variables) for c in contacts] == [
        ("+34600000001", "crm-1", {"first_name": "Ana"}),
        ("+34600000003", "crm-3", {"first_name": "Carla"}),
    ]


def test_contact_csv_upload_keeps_rows_without_a_needed_variable_and_names_them(
    api_client, api_campaign, api_template
) -> None:
    # given a template that speaks the first name, and a file where one row lacks it
    api_template.variables = {"first_name": "Lucía"}
    api_template.instructions = "Confirma la cita de {{ first_name }}."
    api_template.save()
    content = b"phone;first_name\n600000001;Ana\n600000002;\nbad;Eva\n"

    response = upload(api_client, api_campaign, content, headers=EN)

    # then it is kept, counted and named apart from the rejected row
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["created"], body["rejected"], body["flagged"]) == (2, 1, 1)
    assert body["missing_variables"] == {"first_name": 1}
    assert body["warnings"] == [
        {
            "row": 3,
            "field": "first_name",
            "value": "",
            "message": "Missing variable first_name, which the call template needs: the "
            "contact is kept, but it will not be called until it has a value.",
        }
    ]
    assert api_campaign.contacts.filter(phone="+34600000002").exists()


def test_contact_csv_uploaded_again_imports_nothing_twice(jwt_client, api_campaign) -> None:
    # given
    upload(jwt_client, api_campaign)

    # when
    again = upload(jwt_client, api_campaign)

    # then
    assert again.status_code == 200, again.content
    body = again.json()
    assert (body["created"], body["merged"], body["rejected"]) == (0, 2, 1)
    assert api_campaign.contacts.count() == 2


def test_contact_upload_needs_a_readable_file(api_client, api_campaign) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"

    missing = api_client.post(url, {"other": "x"}, format="multipart")
    empty = upload(api_client, api_campaign, content=b"")

    assert missing.status_code == empty.status_code == 400
    assert [error["field"] for error in missing.json()["errors"]] == ["file"]
    assert [error["field"] for error in empty.json()["errors"]] == ["file"]
    assert not Contact.objects.exists()


def test_contact_large_upload_is_imported_in_the_background(
    api_client, api_campaign, settings, django_capture_on_commit_callbacks
) -> None:
    # given a file over the size imported at once
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = len(CSV) - 1

    # when it is uploaded
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(api_client, api_campaign)

    # then it is queued, and the imports endpoint shows it
    assert response.status_code == 202, response.content
    queued = response.json()
    assert queued["state"] == "queued"
    assert queued["progress"] is None
    assert response["Location"].endswith(f"/api/v1/imports/{queued['id']}/")
    assert len(callbacks) == 1  # the task, queued once the upload committed
    assert not Contact.objects.exists()

    # when the task's service runs
    run_import(contact_import_id=queued["id"])

    # then the import is done, with its counts and rejected row
    done = api_client.get(response["Location"]).json()
    assert done["state"] == "done"
    assert done["progress"] == 1.0
    assert (done["total_rows"], done["processed_rows"]) == (3, 3)
    assert (done["created_count"], done["merged_count"], done["error_count"]) == (2, 0, 1)
    assert [(e["row"], e["field"]) for e in done["errors"]] == [(3, "phone")]
    assert api_campaign.contacts.count() == 2
    listed = api_client.get("/api/v1/imports/").json()["results"]
    assert [row["id"] for row in listed] == [queued["id"]]


def test_contact_upload_with_idempotency_key_imports_once(api_client, api_campaign) -> None:
    first = upload(api_client, api_campaign, HTTP_IDEMPOTENCY_KEY="upload-1")
    again = upload(api_client, api_campaign, HTTP_IDEMPOTENCY_KEY="upload-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert api_campaign.contacts.count() == 2


# --- Imports -----------------------------------------------------------------------------


def make_import(campaign: Campaign, *, errors: int = 0, **fields) -> ContactImport:
    contact_import = ContactImport.objects.create(campaign=campaign, file_name="c.csv", **fields)
    ContactImportError.objects.bulk_create(
        ContactImportError(
            contact_import=contact_import, row=row, field="phone", value="x", message="bad"
        )
        for row in range(2, errors + 2)
    )
    return contact_import


def test_import_detail_shows_progress_counts_and_first_errors(api_client, api_campaign) -> None:
    # given an import half way through, with more rejected rows than the detail shows
    contact_import = make_import(
        api_campaign,
        errors=25,
        state=ContactImport.State.RUNNING,
        total_rows=200,
        processed_rows=100,
        created_count=70,
        merged_count=5,
        error_count=25,
    )

    # when
    detail = api_client.get(f"/api/v1/imports/{contact_import.pk}/").json()
    errors = api_client.get(detail["errors_url"] + "?page_size=10&page=3").json()

    # then
    assert detail["state"] == "running"
    assert detail["progress"] == 0.5
    assert (detail["created_count"], detail["merged_count"], detail["error_count"]) == (70, 5, 25)
    assert len(detail["errors"]) == 20
    assert detail["errors"][0] == {"row": 2, "field": "phone", "value": "x", "message": "bad"}
    assert errors["count"] == 25
    assert [row["row"] for row in errors["results"]] == [22, 23, 24, 25, 26]


def test_import_detail_shows_the_rows_kept_with_a_warning(api_client, api_campaign) -> None:
    # given a finished import that kept 25 rows without the first name
    contact_import = make_import(
        api_campaign,
        state=ContactImport.State.DONE,
        flagged_count=25,
        missing_variables={"first_name": 25},
    )
    ContactImportWarning.objects.bulk_create(
        ContactImportWarning(
            contact_import=contact_import, row=row, field="first_name", message="missing"
        )
        for row in range(2, 27)
    )

    # when
    detail = api_client.get(f"/api/v1/imports/{contact_import.pk}/").json()
    warnings = api_client.get(detail["warnings_url"] + "?page_size=10&page=3").json()

    # then
    assert (detail["flagged_count"], detail["missing_variables"]) == (25, {"first_name": 25})
    assert len(detail["warnings"]) == 20
    assert detail["warnings"][0] == {
        "row": 2,
        "field": "first_name",
        "value": "",
        "message": "missing",
    }
    assert warnings["count"] == 25
    assert [row["row"] for row in warnings["results"]] == [22, 23, 24, 25, 26]


def test_import_progress_is_unknown_until_the_rows_are_counted(api_client, api_campaign) -> None:
    contact_import = make_import(api_campaign)

    detail = api_client.get(f"/api/v1/imports/{contact_import.pk}/").json()

    assert detail["state"] == "queued"
    assert detail["progress"] is None


def test_imports_of_another_partner_answer_404(
    api_client, staff_api_client, api_campaign, other_campaign
) -> None:
    own = make_import(api_campaign)
    theirs = make_import(other_campaign, errors=1)

    listed = api_client.get("/api/v1/imports/").json()["results"]
    by_staff = staff_api_client.get("/api/v1/imports/").json()["results"]
    answers = [
        api_client.get(f"/api/v1/imports/{theirs.pk}/"),
        api_client.get(f"/api/v1/imports/{theirs.pk}/errors/"),
        api_client.get(f"/api/v1/imports/{theirs.pk}/warnings/"),
    ]

    assert [row["id"] for row in listed] == [own.pk]
    assert {row["id"] for row in by_staff} == {own.pk, theirs.pk}
    assert [answer.status_code for answer in answers] == [404, 404, 404]


def test_imports_filter_by_campaign(api_client, api_partner, api_campaign) -> None:
    other = CampaignFactory(partner=api_partner, name="Other")
    make_import(api_campaign)
    wanted = make_import(other)

    listed = api_client.get(f"/api/v1/imports/?campaign={other.pk}").json()["results"]

    assert [row["id"] for row in listed] == [wanted.pk]


@pytest.mark.parametrize("size", [3, 30])
def test_import_list_queries_do_not_grow_with_rows(
    api_client, api_campaign, size, django_assert_num_queries
):
    for _ in range(size):
        make_import(api_campaign, errors=2)
    # the key, the count, the page
    rows = list_rows(api_client, "/api/v1/imports/", django_assert_num_queries, 3)

    assert len(rows) == size


# --- Do-not-call list --------------------------------------------------------------------


def test_dnc_add_one_as_partner(api_client, api_partner) -> None:
    # when
    first = api_client.post(
        "/api/v1/dnc/", {"phone": "600 000 001", "reason": "CRM"}, format="json"
    )
    again = api_client.post("/api/v1/dnc/", {"phone": "+34600000001"}, format="json")

    # then
    assert first.status_code == 201, first.content
    assert first.json()["phone"] == "+34600000001"
    assert first.json()["partner"] == api_partner.pk
    assert first.json()["source"] == "partner_api"
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert DoNotCall.objects.count() == 1


def test_dnc_partner_cannot_add_global_entries(api_client) -> None:
    response = api_client.post(
        "/api/v1/dnc/", {"phone": "+34600000001", "global": True}, format="json"
    )

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["global"]
    assert not DoNotCall.objects.exists()


def test_dnc_staff_name_a_partner_or_say_global(staff_api_client, api_partner) -> None:
    # when
    neither = staff_api_client.post("/api/v1/dnc/", {"phone": "+34600000001"}, format="json")
    both = staff_api_client.post(
        "/api/v1/dnc/",
        {"phone": "+34600000001", "partner": api_partner.pk, "global": True},
        format="json",
    )
    global_entry = staff_api_client.post(
        "/api/v1/dnc/", {"phone": "+34600000001", "global": True}, format="json"
    )
    partner_entry = staff_api_client.post(
        "/api/v1/dnc/", {"phone": "+34600000001", "partner": api_partner.pk}, format="json"
    )

    # then
    assert neither.status_code == both.status_code == 400
    assert global_entry.status_code == partner_entry.status_code == 201
    assert global_entry.json()["partner"] is None
    assert global_entry.json()["source"] == "staff"
    assert partner_entry.json()["partner"] == api_partner.pk
    assert DoNotCall.objects.count() == 2


def test_dnc_list_shows_partners_their_own_and_staff_everything(
    api_client, staff_api_client, api_partner, other_api_partner
) -> None:
    # given
    own = DoNotCallFactory(partner=api_partner, phone="+34600000001")
    theirs = DoNotCallFactory(partner=other_api_partner, phone="+34600000002")
    everyone = DoNotCallFactory(partner=None, phone="+34600000003")

    # when
    as_partner = api_client.get("/api/v1/dnc/").json()["results"]
    as_staff = staff_api_client.get("/api/v1/dnc/").json()["results"]
    global_only = staff_api_client.get("/api/v1/dnc/?partner__isnull=true").json()["results"]

    # then
    assert [row["id"] for row in as_partner] == [own.pk]
    assert {row["id"] for row in as_staff} == {own.pk, theirs.pk, everyone.pk}
    assert [row["id"] for row in global_only] == [everyone.pk]


def test_dnc_list_searches_by_phone(api_client, api_partner) -> None:
    DoNotCallFactory(partner=api_partner, phone="+34600000001")
    DoNotCallFactory(partner=api_partner, phone="+34911000002")

    national = api_client.get("/api/v1/dnc/?search=911 00 00 02").json()["results"]
    part = api_client.get("/api/v1/dnc/?search=60000").json()["results"]

    assert [row["phone"] for row in national] == ["+34911000002"]
    assert [row["phone"] for row in part] == ["+34600000001"]


def test_dnc_bulk_counts_created_existing_and_errors(api_client, api_partner) -> None:
    # given one number already listed
    DoNotCallFactory(partner=api_partner, phone="+34600000001")

    # when a list repeats a number, holds a listed one and a bad one
    response = api_client.post(
        "/api/v1/dnc/bulk/",
        ["600000001", "600000002", "+34 600 000 002", "nope", "600000003"],
        format="json",
    )

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["created"] == 2
    assert body["existing"] == 2
    assert [(error["index"], error["value"]) for error in body["errors"]] == [(3, "nope")]
    assert set(DoNotCall.objects.values_list("phone", flat=True)) == {
        "+34600000001",
        "+34600000002",
        "+34600000003",
    }
    created = DoNotCall.objects.exclude(phone="+34600000001")
    assert set(created.values_list("source", flat=True)) == {"partner_api"}


def test_dnc_bulk_as_staff_names_the_partner(staff_api_client, api_partner) -> None:
    unnamed = staff_api_client.post("/api/v1/dnc/bulk/", ["600000001"], format="json")
    named = staff_api_client.post(
        "/api/v1/dnc/bulk/",
        {"phones": ["600000001"], "partner": api_partner.pk, "reason": "Complaint"},
        format="json",
    )

    assert unnamed.status_code == 400
    assert named.status_code == 200
    entry = DoNotCall.objects.get()
    assert (entry.partner, entry.reason, entry.source) == (api_partner, "Complaint", "staff")


def test_dnc_bulk_refuses_more_than_the_limit(api_client) -> None:
    phones = [f"+346{index:08d}" for index in range(10_001)]

    response = api_client.post("/api/v1/dnc/bulk/", phones, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "phones"
    assert not DoNotCall.objects.exists()


def test_dnc_remove_own_entries_only(api_client, api_partner, other_api_partner) -> None:
    own = DoNotCallFactory(partner=api_partner, phone="+34600000001")
    theirs = DoNotCallFactory(partner=other_api_partner, phone="+34600000001")
    everyone = DoNotCallFactory(partner=None, phone="+34600000001")

    answers = [
        api_client.delete(f"/api/v1/dnc/{theirs.pk}/"),
        api_client.delete(f"/api/v1/dnc/{everyone.pk}/"),
        api_client.delete(f"/api/v1/dnc/{own.pk}/"),
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 204]
    assert set(DoNotCall.objects.values_list("pk", flat=True)) == {theirs.pk, everyone.pk}


def test_dnc_opt_out_is_removed_by_staff_only(api_client, staff_api_client, api_partner) -> None:
    entry = DoNotCallFactory(
        partner=api_partner, phone="+34600000001", source=DoNotCall.Source.OPT_OUT
    )

    by_partner = api_client.delete(f"/api/v1/dnc/{entry.pk}/", headers=EN)
    by_staff = staff_api_client.delete(f"/api/v1/dnc/{entry.pk}/")

    assert by_partner.status_code == 409
    assert "only staff can remove" in by_partner.json()["errors"][0]["message"]
    assert by_staff.status_code == 204
    assert not DoNotCall.objects.exists()


@pytest.mark.parametrize("size", [3, 30])
def test_dnc_list_queries_do_not_grow_with_rows(
    api_client, api_partner, size, django_assert_num_queries
):
    DoNotCall.objects.bulk_create(
        DoNotCall(partner=api_partner, phone=f"+346000{index:05d}") for index in range(size)
    )
    # the key, the count, the page
    rows = list_rows(api_client, "/api/v1/dnc/", django_assert_num_queries, 3)

    assert len(rows) == size


def test_dnc_create_with_idempotency_key_creates_once(api_client) -> None:
    answers = [
        api_client.post(
            "/api/v1/dnc/bulk/", ["600000001"], format="json", HTTP_IDEMPOTENCY_KEY="dnc-1"
        )
        for _ in range(2)
    ]

    assert [answer.json()["created"] for answer in answers] == [1, 1]  # the first, replayed
    assert answers[1]["Idempotent-Replayed"] == "true"
    assert DoNotCall.objects.count() == 1
