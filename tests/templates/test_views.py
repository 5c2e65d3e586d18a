"""The partner API's call templates: each partner's own, checked, previewed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from campaigns.models import Campaign, Partner, PartnerMember
from templates.models import CallTemplate
from tests.factories import CampaignFactory, ContactFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID

pytestmark = pytest.mark.django_db

GREETING = "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."


def payload(**overrides: Any) -> dict[str, Any]:
    """A template that passes validation and the disclosure lint."""
    return {
        "name": "Recordatorio",
        "variables": {"first_name": "Lucía"},
        "greeting": GREETING,
        "instructions": "Confirma la cita de {{ first_name }}.",
        "voicemail_message": "Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
        "closing_line": "Gracias, adiós.",
        **overrides,
    }


def make_template(partner: Partner, **overrides: Any) -> CallTemplate:
    return CallTemplate.objects.create(partner=partner, **payload(**overrides))


@pytest.fixture
def template(api_partner: Partner) -> CallTemplate:
    return make_template(api_partner)


@pytest.fixture
def rival_template(other_api_partner: Partner) -> CallTemplate:
    return make_template(other_api_partner, name="Rival")


def errors_by_field(response) -> dict[str | None, list[str]]:
    found: dict[str | None, list[str]] = {}
    for error in response.json()["errors"]:
        found.setdefault(error["field"], []).append(error["message"])
    return found


def url(template: CallTemplate, suffix: str = "") -> str:
    return f"/api/v1/templates/{template.pk}/{suffix}"


# --- Reading -----------------------------------------------------------------------------


def test_templates_list_shows_the_partners_own(api_client, template, rival_template) -> None:
    response = api_client.get("/api/v1/templates/")

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [template.pk]
    assert response.json()["results"][0]["lint"] == []


def test_templates_list_with_the_partner_users_jwt(api_partner, template, rival_template) -> None:
    user = PartnerMember.objects.get(partner=api_partner).user
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")

    response = client.get("/api/v1/templates/")

    assert [row["id"] for row in response.json()["results"]] == [template.pk]


def test_staff_see_templates_across_partners(staff_api_client, template, rival_template) -> None:
    response = staff_api_client.get("/api/v1/templates/")

    assert {row["id"] for row in response.json()["results"]} == {template.pk, rival_template.pk}


def test_templates_list_takes_as_many_queries_for_one_as_for_many(
    api_client, api_partner, template, django_assert_num_queries
) -> None:
    api_client.get("/api/v1/templates/")
    with CaptureQueriesContext(connection) as few:
        api_client.get("/api/v1/templates/")
    for index in range(5):
        make_template(api_partner, name=f"Other {index}")

    with django_assert_num_queries(len(few)):
        response = api_client.get("/api/v1/templates/")

    assert response.json()["count"] == 6


# --- Writing -----------------------------------------------------------------------------


def test_partner_creates_a_template_of_its_own(api_client, api_partner) -> None:
    response = api_client.post("/api/v1/templates/", payload(), format="json")

    assert response.status_code == 201
    created = CallTemplate.objects.get(pk=response.json()["id"])
    assert created.partner == api_partner
    assert response.json()["partner"] == api_partner.pk
    assert response.json()["lint"] == []


def test_partner_cannot_create_a_template_for_another_partner(
    api_client, other_api_partner
) -> None:
    response = api_client.post(
        "/api/v1/templates/", payload(partner=other_api_partner.pk), format="json"
    )

    assert response.status_code == 400
    assert "partner" in errors_by_field(response)
    assert not CallTemplate.objects.exists()


def test_staff_create_a_template_for_the_partner_they_name(
    staff_api_client, other_api_partner
) -> None:
    refused = staff_api_client.post("/api/v1/templates/", payload(), format="json")
    created = staff_api_client.post(
        "/api/v1/templates/", payload(partner=other_api_partner.pk), format="json"
    )

    assert refused.status_code == 400
    assert "partner" in errors_by_field(refused)
    assert created.status_code == 201
    assert CallTemplate.objects.get().partner == other_api_partner


def test_template_that_could_not_run_is_refused_by_field(api_client) -> None:
    # given an AI template without instructions whose greeting speaks an undeclared variable
    body = payload(instructions="", greeting="Hola {{ nombre }}.", variables={"Bad Name": "x"})

    # when
    response = api_client.post("/api/v1/templates/", body, format="json")

    # then each problem is an error of its field, and nothing is saved
    assert response.status_code == 400
    errors = errors_by_field(response)
    assert {"instructions", "greeting", "variables"} <= set(errors)
    assert response.json()["code"] == "invalid"
    assert not CallTemplate.objects.exists()


def test_template_name_is_unique_for_the_partner(api_client, template, other_api_client) -> None:
    same_name = payload(name=template.name)

    refused = api_client.post("/api/v1/templates/", same_name, format="json")
    elsewhere = other_api_client.post("/api/v1/templates/", same_name, format="json")

    assert refused.status_code == 400
    assert list(errors_by_field(refused)) == ["name"]
    assert CallTemplate.objects.filter(name=template.name).count() == 2
    assert elsewhere.status_code == 201


def test_draft_template_failing_the_lint_is_saved_and_reports_it(api_client) -> None:
    body = payload(greeting="Hola {{ first_name }}.", voicemail_message="Adiós.")

    response = api_client.post("/api/v1/templates/", body, format="json")

    assert response.status_code == 201
    assert {problem["field"] for problem in response.json()["lint"]} == {
        "greeting",
        "voicemail_message",
    }
    assert len(response.json()["lint"]) == 3  # no company, no disclosure, no number


def test_template_cannot_be_renamed_to_a_name_the_partner_has(
    api_client, api_partner, template
) -> None:
    other = make_template(api_partner, name="Other")

    response = api_client.patch(url(other), {"name": template.name}, format="json")

    assert list(errors_by_field(response)) == ["name"]
    assert (
        api_client.patch(url(template), {"name": template.name}, format="json").status_code == 200
    )


def test_partner_updates_its_template(api_client, template) -> None:
    response = api_client.patch(url(template), {"closing_line": "Hasta pronto."}, format="json")

    assert response.status_code == 200
    template.refresh_from_db()
    assert template.closing_line == "Hasta pronto."


def test_update_that_breaks_the_template_is_refused_and_changes_nothing(
    api_client, template
) -> None:
    response = api_client.patch(url(template), {"greeting": "Hola {{ nombre }}."}, format="json")

    assert response.status_code == 400
    assert list(errors_by_field(response)) == ["greeting"]
    template.refresh_from_db()
    assert template.greeting == GREETING


def test_template_a_running_campaign_uses_must_keep_passing_the_lint(
    api_client, api_partner, template
) -> None:
    # given a running campaign calling with the template
    CampaignFactory(
        partner=api_partner, name="Spring", template=template, state=Campaign.State.RUNNING
    )

    # when the greeting is changed to one that no longer says who calls
    response = api_client.patch(
        url(template), {"greeting": "Hola {{ first_name }}."}, format="json"
    )

    # then the lint's messages are the greeting's errors, and nothing changes
    assert response.status_code == 400
    errors = errors_by_field(response)
    assert len(errors["greeting"]) == 2
    assert "Spring" in errors[None][0]
    template.refresh_from_db()
    assert template.greeting == GREETING


def test_template_of_draft_campaigns_only_may_fail_the_lint(
    api_client, api_partner, template
) -> None:
    CampaignFactory(partner=api_partner, name="Spring", template=template)

    response = api_client.patch(
        url(template), {"greeting": "Hola {{ first_name }}."}, format="json"
    )

    assert response.status_code == 200
    assert len(response.json()["lint"]) == 2


def test_another_partners_template_is_not_found_and_unchanged(api_client, rival_template) -> None:
    read = api_client.get(url(rival_template))
    changed = api_client.patch(url(rival_template), {"name": "Mine"}, format="json")
    deleted = api_client.delete(url(rival_template))
    previewed = api_client.post(url(rival_template, "preview/"), {}, format="json")

    assert [read.status_code, changed.status_code, deleted.status_code] == [404, 404, 404]
    assert previewed.status_code == 404
    rival_template.refresh_from_db()
    assert rival_template.name == "Rival"


def test_partner_deletes_an_unused_template(api_client, template) -> None:
    response = api_client.delete(url(template))

    assert response.status_code == 204
    assert not CallTemplate.objects.filter(pk=template.pk).exists()


def test_template_a_campaign_uses_is_not_deleted(api_client, api_partner, template) -> None:
    CampaignFactory(
        partner=api_partner, name="Spring", template=template, state=Campaign.State.COMPLETED
    )

    response = api_client.delete(url(template), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert "Spring" in response.json()["message"]
    assert CallTemplate.objects.filter(pk=template.pk).exists()


# --- Preview -----------------------------------------------------------------------------


def test_preview_renders_the_samples_without_speech(api_client, template, settings) -> None:
    # given no ElevenLabs key
    settings.ELEVENLABS_API_KEY = ""

    # when
    response = api_client.post(url(template, "preview/"), {}, format="json")

    # then the text comes, and the audio says why it does not
    assert response.status_code == 200
    preview = response.json()
    assert preview["lines"]["greeting"] == (
        "Hola Lucía. Le llamamos de Initech. Soy un asistente automático."
    )
    assert preview["audio"] is None
    assert preview["audio_status"] == "not_configured"
    assert preview["audio_message"]


def test_preview_lays_variables_over_the_samples(api_client, template) -> None:
    response = api_client.post(
        url(template, "preview/"),
        {"variables": {"first_name": "Javier"}, "audio": False},
        format="json",
    )

    assert response.json()["lines"]["greeting"].startswith("Hola Javier.")
    assert response.json()["audio_status"] == "not_requested"


def test_preview_renders_for_a_contact_of_the_partner(api_client, api_partner, template) -> None:
    campaign = CampaignFactory(partner=api_partner, name="Spring", template=template)
    contact = ContactFactory(
        campaign=campaign, phone="+34600000001", variables={"first_name": "Carmen"}
    )

    response = api_client.post(
        url(template, "preview/"), {"contact": contact.pk, "audio": False}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["lines"]["greeting"].startswith("Hola Carmen.")


def test_preview_for_another_partners_contact_is_refused(
    api_client, template, other_api_partner
) -> None:
    campaign = CampaignFactory(partner=other_api_partner, name="Rival")
    contact = ContactFactory(
        campaign=campaign, phone="+34600000001", variables={"first_name": "Carmen"}
    )

    response = api_client.post(url(template, "preview/"), {"contact": contact.pk}, format="json")

    assert response.status_code == 400
    assert list(errors_by_field(response)) == ["contact"]


def test_preview_by_staff_for_a_contact_of_another_partner_than_the_templates(
    staff_api_client, template, other_api_partner
) -> None:
    campaign = CampaignFactory(partner=other_api_partner, name="Rival")
    contact = ContactFactory(
        campaign=campaign, phone="+34600000001", variables={"first_name": "Carmen"}
    )

    response = staff_api_client.post(
        url(template, "preview/"), {"contact": contact.pk}, format="json"
    )

    assert response.status_code == 400
    assert list(errors_by_field(response)) == ["contact"]


def test_preview_refuses_a_blank_variable_the_template_speaks(api_client, template) -> None:
    response = api_client.post(
        url(template, "preview/"), {"variables": {"first_name": ""}}, format="json"
    )

    assert response.status_code == 400
    assert list(errors_by_field(response)) == ["variables"]


def test_preview_refuses_a_contact_and_variables_together(
    api_client, api_partner, template
) -> None:
    campaign = CampaignFactory(partner=api_partner, name="Spring")
    contact = ContactFactory(campaign=campaign, phone="+34600000001")

    response = api_client.post(
        url(template, "preview/"),
        {"contact": contact.pk, "variables": {"first_name": "Ana"}},
        format="json",
    )

    assert response.status_code == 400


def test_preview_voices_each_sentence_when_speech_is_configured(
    api_client, template, fake_elevenlabs, settings
) -> None:
    # given the default voice in the catalogue
    VoiceFactory(provider_voice_id=BELLA_ID, name=settings.ELEVENLABS_DEFAULT_VOICE)

    # when
    response = api_client.post(url(template, "preview/"), {}, format="json")

    # then each sentence comes with a clip to hear
    preview = response.json()
    assert preview["audio_status"] == "voiced"
    greeting = preview["audio"]["greeting"]
    assert [sentence["text"] for sentence in greeting] == [
        "Hola Lucía.",
        "Le llamamos de Initech.",
        "Soy un asistente automático.",
    ]
    assert all(s["audio_url"].startswith(settings.APP_URL + "/clips/") for s in greeting)


def test_preview_without_a_voice_says_so(api_client, template, fake_elevenlabs) -> None:
    response = api_client.post(url(template, "preview/"), {}, format="json")

    assert response.json()["audio"] is None
    assert response.json()["audio_status"] == "no_voice"
