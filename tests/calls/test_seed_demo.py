from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory
from rest_framework.test import APIClient

from calls.management.commands.seed_demo import DEMO_CAMPAIGN, DEMO_RELAY_CAMPAIGN
from campaigns.models import Campaign, Contact, Partner
from campaigns.services import start_problems
from templates.models import CallTemplate

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def printed_password(output: str) -> str:
    return re.search(r"Password: (\S+)", output).group(1)


def log_in(username: str, password: str):
    """The user these credentials log in, as a login request does (django-axes, which
    watches failed logins, needs the request)."""
    request = RequestFactory().post("/admin/login/")
    return authenticate(request, username=username, password=password)


def test_seed_demo_creates_staff_user_partner_template_campaign(monkeypatch) -> None:
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    output = seed()

    user = log_in("admin", password=printed_password(output))
    assert user is not None and user.is_staff and user.is_superuser
    campaign = Campaign.objects.get(name=DEMO_CAMPAIGN)
    # On the sandbox carrier (no Twilio credentials) the demo calls at once.
    assert campaign.state == "running"
    assert campaign.template.language == "es-ES"
    # Without a model, the scripted template leads the demo.
    assert campaign.template.mode == "scripted"
    assert campaign.contacts.count() == 8
    assert {c.variables["sandbox_persona"] for c in campaign.contacts.all()} >= {
        "interested",
        "opt_out",
        "voicemail",
    }


def test_seed_demo_gives_the_demo_partner_an_api_user(monkeypatch) -> None:
    # given
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    password = printed_password(seed())

    # when
    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "demo-partner", "password": password},
        format="json",
    )

    # then
    assert response.status_code == 200
    user = log_in("demo-partner", password=password)
    assert not user.is_staff
    assert user.partner_membership.partner == Campaign.objects.get(name=DEMO_CAMPAIGN).partner


def test_seed_demo_twice_changes_nothing_and_prints_same_credentials(monkeypatch) -> None:
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    first = printed_password(seed())

    second = printed_password(seed())

    assert first == second
    assert log_in("admin", password=second) is not None
    assert (Partner.objects.count(), CallTemplate.objects.count(), Campaign.objects.count()) == (
        1,
        2,
        2,
    )
    assert Contact.objects.count() == 8 + 6


def test_seed_demo_takes_password_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo-pass-123")

    assert printed_password(seed()) == "demo-pass-123"
    assert log_in("admin", password="demo-pass-123") is not None


def test_seed_demo_against_twilio_leaves_the_campaign_for_staff_to_start(settings) -> None:
    settings.ELEVENLABS_API_KEY = ""
    settings.TELEPHONY_BACKEND = "twilio"
    seed()

    for campaign in Campaign.objects.all():
        assert campaign.state == "draft"
        assert start_problems(campaign=campaign) == []


def test_seed_demo_with_a_model_leads_with_the_ai_template(settings) -> None:
    settings.OPENAI_API_KEY = "sk-test"
    seed()

    assert Campaign.objects.get(name=DEMO_CAMPAIGN).template.mode == "ai"


def test_seed_demo_adds_a_relay_campaign_that_calls_at_once() -> None:
    # given no model: the <Gather> demo is scripted, the relay one still an AI template
    seed()

    relay = Campaign.objects.get(name=DEMO_RELAY_CAMPAIGN)
    assert relay.transport == "relay"
    assert relay.template.mode == "ai"
    assert relay.state == "running"
    assert Campaign.objects.get(name=DEMO_CAMPAIGN).transport == "gather"
    personas = [contact.variables["sandbox_persona"] for contact in relay.contacts.all()]
    assert {"interested", "opt_out", "voicemail"} <= set(personas)
    # no number is called by both demo campaigns at once
    phones = list(Contact.objects.values_list("phone", flat=True))
    assert len(phones) == len(set(phones))
