"""The staff console's call templates: checked in place, written by the services, previewed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from campaigns.models import Campaign, Contact
from templates.models import CallTemplate
from tests.factories import CampaignFactory, ContactFactory, PartnerFactory, VoiceFactory
from tests.fakes.elevenlabs import BELLA_ID

pytestmark = pytest.mark.django_db

ENGLISH = {"accept-language": "en"}
ADD = reverse("admin:templates_calltemplate_add")


def change_url(template: CallTemplate) -> str:
    return reverse("admin:templates_calltemplate_change", args=[template.pk])


def preview_url(template: CallTemplate) -> str:
    return reverse("admin:templates_calltemplate_preview", args=[template.pk])


def form_data(template: CallTemplate, **changes: Any) -> dict[str, Any]:
    """What the change form posts for ``template`` with ``changes``."""
    values = {
        "partner": template.partner_id,
        "name": template.name,
        "language": template.language,
        "mode": template.mode,
        "variables": json.dumps(template.variables),
        "greeting": template.greeting,
        "instructions": template.instructions,
        "steps": json.dumps(template.steps),
        "voicemail_message": template.voicemail_message,
        "closing_line": template.closing_line,
        "opt_out_confirmation": template.opt_out_confirmation,
        "transfer_line": template.transfer_line,
        "outcome_schema": json.dumps(template.outcome_schema),
    }
    return {**values, **changes}


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def field_errors(response, name: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(name, []))


# --- Editing --------------------------------------------------------------------------------


def test_template_change_page_opens_with_a_link_to_its_preview(admin_client, call_template) -> None:
    page = admin_client.get(change_url(call_template), headers=ENGLISH).content.decode()

    assert f'<a id="template-preview-link" href="{preview_url(call_template)}">' in page
    assert 'id="template-lint"' not in page  # the fixture passes the lint


def test_template_change_page_shows_lint_warnings_under_their_fields(
    admin_client, call_template
) -> None:
    # given a stored draft that fails the lint
    CallTemplate.objects.filter(pk=call_template.pk).update(greeting="Hola.", voicemail_message="")

    page = admin_client.get(change_url(call_template), headers=ENGLISH).content.decode()

    assert 'id="template-lint"' in page
    greeting = re.search(r'<ul class="lint-warnings" id="lint-greeting">(.*?)</ul>', page).group(1)
    assert greeting.count('class="lint-warning"') == 2
    assert "The greeting must name the company" in greeting
    assert 'id="lint-voicemail_message"' in page


def test_template_admin_refuses_a_template_that_cannot_run(admin_client, call_template) -> None:
    response = admin_client.post(
        change_url(call_template),
        form_data(call_template, greeting="Hola {{ nombre }}."),
        headers=ENGLISH,
    )

    assert response.status_code == 200
    assert field_errors(response, "greeting")
    call_template.refresh_from_db()
    assert call_template.greeting.startswith("Hola {{ first_name }}.")


def test_template_admin_saves_a_draft_that_fails_the_lint_with_a_warning(
    admin_client, call_template
) -> None:
    # when staff save a greeting that does not say who calls
    response = admin_client.post(
        change_url(call_template), form_data(call_template, greeting="Hola."), headers=ENGLISH
    )

    # then it is saved, with a warning that no campaign can start with it
    assert response.status_code == 302
    call_template.refresh_from_db()
    assert call_template.greeting == "Hola."
    assert any("saved as a draft" in message for message in messages_of(response))


def test_template_admin_refuses_breaking_the_lint_while_a_campaign_calls(
    admin_client, call_template, partner
) -> None:
    # given a running campaign calling with the template
    CampaignFactory(
        partner=partner, name="Spring", template=call_template, state=Campaign.State.RUNNING
    )

    # when staff take the company out of the greeting
    response = admin_client.post(
        change_url(call_template), form_data(call_template, greeting="Hola."), headers=ENGLISH
    )

    # then the lint's messages are the greeting's errors, and nothing changes
    assert response.status_code == 200
    assert len(field_errors(response, "greeting")) == 2
    assert "Spring" in response.context["adminform"].form.non_field_errors()[0]
    call_template.refresh_from_db()
    assert call_template.greeting != "Hola."


def test_template_admin_adds_through_the_service(admin_client, call_template) -> None:
    response = admin_client.post(ADD, form_data(call_template, name="Otra"))

    assert response.status_code == 302
    added = CallTemplate.objects.get(name="Otra")
    assert added.greeting == call_template.greeting
    assert response.url == reverse("admin:templates_calltemplate_changelist")


# --- Preview --------------------------------------------------------------------------------


@pytest.fixture
def contact(campaign) -> Contact:
    return ContactFactory(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})


def preview_lines(response) -> dict[str, str]:
    page = response.content.decode()
    return dict(
        re.findall(
            r'<tr class="preview-line" data-field="([\w.]+)">.*?<p class="preview-text">(.*?)</p>',
            page,
            flags=re.S,
        )
    )


def test_template_preview_offers_its_campaigns_contacts_first(
    admin_client, call_template, contact, partner
) -> None:
    # given a contact of another campaign of the partner, and one of another partner
    earlier = CampaignFactory(partner=partner, name="Autumn", template=None)
    ContactFactory(campaign=earlier, phone="+34600000002")
    rival = CampaignFactory(partner=PartnerFactory(name="Rival"), name="Rival")
    ContactFactory(campaign=rival, phone="+34600000003")

    page = admin_client.get(preview_url(call_template), headers=ENGLISH).content.decode()

    # then the template's own campaign's contacts come first, and only the partner's
    assert 'id="template-preview-form"' in page
    assert re.findall(r'<option value="\d+">([^<]+)</option>', page) == [
        "+34600000001 · Spring",
        "+34600000002 · Autumn",
    ]


def test_template_preview_renders_for_a_chosen_contact(
    admin_client, call_template, contact
) -> None:
    response = admin_client.post(preview_url(call_template), {"contact": contact.pk})

    assert response.status_code == 200
    lines = preview_lines(response)
    assert lines["greeting"] == ("Hola Ana. Le llamamos de Acme. Soy un asistente autom\u00e1tico.")
    assert lines["closing_line"] == "Gracias, adiós."


def test_template_preview_finds_any_contact_of_the_partner_by_phone(
    admin_client, call_template, partner
) -> None:
    other = CampaignFactory(partner=partner, name="Other", template=None)
    ContactFactory(campaign=other, phone="+34600000009", variables={"first_name": "Eva"})

    response = admin_client.post(preview_url(call_template), {"phone": "600 000 009"})

    assert preview_lines(response)["greeting"].startswith("Hola Eva.")


def test_template_preview_with_samples_and_refusals(admin_client, call_template) -> None:
    samples = admin_client.post(preview_url(call_template), {})
    unknown = admin_client.post(preview_url(call_template), {"phone": "+34699999999"})

    assert preview_lines(samples)["greeting"].startswith("Hola Lucía.")
    assert unknown.context["form"].errors["phone"]
    assert 'id="template-preview"' not in unknown.content.decode()


def test_template_preview_says_when_speech_is_not_configured(
    admin_client, call_template, contact, settings
) -> None:
    settings.ELEVENLABS_API_KEY = ""

    response = admin_client.post(
        preview_url(call_template), {"contact": contact.pk, "audio": "on"}, headers=ENGLISH
    )

    page = response.content.decode()
    assert "Speech is not configured (no ElevenLabs API key)" in page
    assert 'class="preview-clip"' not in page
    assert preview_lines(response)["greeting"].startswith("Hola Ana.")


def test_template_preview_plays_each_sentence(
    admin_client, call_template, contact, fake_elevenlabs, settings
) -> None:
    # given the default voice in the catalogue
    VoiceFactory(provider_voice_id=BELLA_ID, name=settings.ELEVENLABS_DEFAULT_VOICE)

    # when staff ask to hear the template for the contact
    response = admin_client.post(
        preview_url(call_template), {"contact": contact.pk, "audio": "on"}, headers=ENGLISH
    )

    # then each sentence of each line has a player served by this site
    page = response.content.decode()
    greeting = re.search(r'data-field="greeting">(.*?)</tr>', page, flags=re.S).group(1)
    titles = re.findall(
        r'<audio class="preview-clip" controls preload="none" '
        r'src="/clips/[\w-]+\.mp3" title="([^"]+)"',
        greeting,
    )
    assert titles == ["Hola Ana.", "Le llamamos de Acme.", "Soy un asistente automático."]
    assert 'id="preview-voice"' in page


def test_template_preview_hears_only_for_staff_who_may_change_templates(
    client, django_user_model, call_template, contact, fake_elevenlabs
) -> None:
    # given staff who may only view templates
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_calltemplate"))
    client.force_login(user)

    # when they ask for audio anyway
    response = client.post(preview_url(call_template), {"contact": contact.pk, "audio": "on"})

    # then they get the text, and nothing is voiced
    assert preview_lines(response)["greeting"].startswith("Hola Ana.")
    assert 'name="audio"' not in response.content.decode()
    assert fake_elevenlabs.requests == []


def test_template_preview_needs_view_permission(client, django_user_model, call_template) -> None:
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(preview_url(call_template)).status_code == 403
