"""Every registered model's admin pages open for staff."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_data(admin_user, monkeypatch) -> None:
    # seed_demo's staff user is pytest-django's admin_user: keep its password
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "password")
    call_command("seed_demo", stdout=io.StringIO())


@pytest.mark.parametrize(
    "model",
    [
        m
        for m in admin.site._registry
        if m._meta.app_label in {"campaigns", "calls", "voices", "templates"}
    ],
    ids=lambda m: m._meta.label,
)
def test_admin_changelist_and_add_pages_open(admin_client, demo_data, model) -> None:
    opts = model._meta
    changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200

    add = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    assert add.status_code in (200, 403)  # calls and their events are never added by hand


def test_admin_change_page_opens_for_demo_campaign(admin_client, demo_data) -> None:
    from calls.management.commands.seed_demo import DEMO_CAMPAIGN, DEMO_RELAY_CAMPAIGN
    from campaigns.models import Campaign

    for name in (DEMO_CAMPAIGN, DEMO_RELAY_CAMPAIGN):
        campaign = Campaign.objects.get(name=name)
        response = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

        assert response.status_code == 200
        assert campaign.name in response.content.decode()


def test_admin_creates_a_partner_key_and_shows_it_once(admin_client, partner) -> None:
    from campaigns.models import PartnerApiKey

    # when
    response = admin_client.post(
        reverse("admin:campaigns_partnerapikey_add"),
        {"partner": partner.pk, "name": "CRM", "expiry_date_0": "", "expiry_date_1": ""},
        follow=True,
    )

    # then
    api_key = PartnerApiKey.objects.get(partner=partner, name="CRM")
    shown = [str(message) for message in response.context["messages"]]
    assert len(shown) == 2  # the key, then Django's "added" message
    key = re.search(rf"{api_key.prefix}\.\w+", shown[0]).group()
    assert api_key.is_valid(key)
