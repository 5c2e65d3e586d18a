"""API keys mint API keys: a leaked ordinary key must not make keys, revoke the partner's
others or take over its webhooks, and revoking a key must end the keys it made."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.models import PartnerApiKey, WebhookEndpoint, WebhookEvent
from campaigns.services import create_api_key, onboard_partner
from tests.factories import WebhookEndpointFactory

PASSWORD = "a-long-test-password-1"
HOOK = "https://hooks.example.com/callcenter"


@pytest.fixture
def onboarded(db: None):
    """A partner with its user and its first key, an ordinary one."""
    return onboard_partner(name="Acme", username="acme", password=PASSWORD)


def key_client(key: str) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def user_client() -> APIClient:
    """The partner user, logged in with a JWT."""
    access = (
        APIClient()
        .post("/api/v1/auth/token/", {"username": "acme", "password": PASSWORD}, format="json")
        .json()["access"]
    )
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def prefix_of(key: str) -> str:
    return key.partition(".")[0]


def assert_scope_refused(response) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "scope_required"
    assert "“can_manage_access”" in response.json()["message"]


def test_ordinary_key_cannot_create_keys(onboarded):
    # when
    response = key_client(onboarded.api_key).post(
        "/api/v1/api-keys/", {"name": "Backdoor"}, format="json"
    )

    # then
    assert_scope_refused(response)
    assert not PartnerApiKey.objects.filter(name="Backdoor").exists()


def test_ordinary_key_cannot_list_or_revoke_the_partners_other_keys(onboarded):
    # given
    other, _key = create_api_key(partner=onboarded.partner, name="CRM")
    client = key_client(onboarded.api_key)

    # when
    listing = client.get("/api/v1/api-keys/")
    revoke = client.post(f"/api/v1/api-keys/{other.prefix}/revoke/")

    # then
    assert_scope_refused(listing)
    assert_scope_refused(revoke)
    other.refresh_from_db()
    assert not other.revoked


def test_ordinary_key_cannot_read_or_redirect_webhook_endpoints(onboarded):
    # given
    endpoint = WebhookEndpointFactory(
        partner=onboarded.partner, url=HOOK, events=[WebhookEvent.CALL_COMPLETED]
    )
    client = key_client(onboarded.api_key)
    elsewhere = "https://attacker.example.net/hook"

    # when
    answers = [
        client.get("/api/v1/webhooks/"),
        client.get(f"/api/v1/webhooks/{endpoint.pk}/"),
        client.post(
            "/api/v1/webhooks/",
            {"url": elsewhere, "events": [WebhookEvent.CALL_COMPLETED]},
            format="json",
        ),
        client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"url": elsewhere}, format="json"),
        client.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/"),
        client.delete(f"/api/v1/webhooks/{endpoint.pk}/"),
    ]

    # then
    for answer in answers:
        assert_scope_refused(answer)
    assert list(WebhookEndpoint.objects.values_list("url", "secret")) == [(HOOK, endpoint.secret)]


def test_partner_user_grants_the_scope_and_that_key_manages_access(onboarded):
    # given
    created = user_client().post(
        "/api/v1/api-keys/", {"name": "Ops", "can_manage_access": True}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["can_manage_access"] is True
    client = key_client(created.json()["key"])

    # when
    made = client.post("/api/v1/api-keys/", {"name": "CRM"}, format="json")
    hook = client.post(
        "/api/v1/webhooks/", {"url": HOOK, "events": [WebhookEvent.CALL_COMPLETED]}, format="json"
    )

    # then
    assert made.status_code == 201
    assert made.json()["created_by_key"] == created.json()["prefix"]
    assert made.json()["can_manage_access"] is False
    assert hook.status_code == 201


def test_key_with_the_scope_cannot_hand_it_on(onboarded):
    # given
    _scoped, key = create_api_key(partner=onboarded.partner, name="Ops", can_manage_access=True)

    # when
    response = key_client(key).post(
        "/api/v1/api-keys/", {"name": "Heir", "can_manage_access": True}, format="json"
    )

    # then
    assert_scope_refused(response)
    assert not PartnerApiKey.objects.filter(name="Heir").exists()


def test_revoking_a_key_revokes_every_key_it_made_down_the_line(onboarded):
    # given: a leaked key with the scope made a child, which staff also gave the scope,
    # and that child made a grandchild
    leaked, leaked_key = create_api_key(
        partner=onboarded.partner, name="Leaked", can_manage_access=True
    )
    child = key_client(leaked_key).post("/api/v1/api-keys/", {"name": "Child"}, format="json")
    PartnerApiKey.objects.filter(prefix=child.json()["prefix"]).update(can_manage_access=True)
    grandchild = key_client(child.json()["key"]).post(
        "/api/v1/api-keys/", {"name": "Grandchild"}, format="json"
    )
    assert grandchild.status_code == 201

    # when
    revoked = user_client().post(f"/api/v1/api-keys/{leaked.prefix}/revoke/")

    # then
    assert revoked.status_code == 200
    for made in (leaked_key, child.json()["key"], grandchild.json()["key"]):
        assert key_client(made).get("/api/v1/campaigns/").status_code == 401
    # the partner's first key, made by staff, keeps working
    assert key_client(onboarded.api_key).get("/api/v1/campaigns/").status_code == 200


def test_revoking_a_key_in_the_admin_revokes_the_keys_it_made(onboarded, admin_client):
    # given
    parent, parent_key = create_api_key(
        partner=onboarded.partner, name="Parent", can_manage_access=True
    )
    made = key_client(parent_key).post("/api/v1/api-keys/", {"name": "Made"}, format="json")
    assert made.status_code == 201

    # when
    response = admin_client.post(
        reverse("admin:campaigns_partnerapikey_change", args=[parent.pk]),
        {
            "name": "Parent",
            "can_manage_access": "on",
            "expiry_date_0": "",
            "expiry_date_1": "",
            "revoked": "on",
        },
    )

    # then
    assert response.status_code == 302
    assert key_client(made.json()["key"]).get("/api/v1/campaigns/").status_code == 401


def test_staff_give_a_key_the_scope_in_the_admin(onboarded, admin_client):
    # when
    admin_client.post(
        reverse("admin:campaigns_partnerapikey_add"),
        {
            "partner": onboarded.partner.pk,
            "name": "Ops",
            "can_manage_access": "on",
            "expiry_date_0": "",
            "expiry_date_1": "",
        },
    )

    # then
    assert PartnerApiKey.objects.get(name="Ops").can_manage_access is True
