"""The partner API over webhook endpoints and their deliveries."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from campaigns.deliveries import emit_event
from campaigns.models import Partner, WebhookDelivery, WebhookEndpoint, WebhookEvent
from campaigns.services import create_api_key
from tests.factories import WebhookEndpointFactory

HOOK = "https://hooks.example.com/callcenter"


@pytest.fixture
def api_client(api_partner: Partner) -> APIClient:
    """A key of ``api_partner`` with the scope that manages webhook endpoints (an
    ordinary key is refused: tests/security/test_api_keys.py)."""
    _api_key, key = create_api_key(partner=api_partner, name="Hooks", can_manage_access=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def endpoint_of(partner: Partner, events: list[str] | None = None) -> WebhookEndpoint:
    return WebhookEndpointFactory(
        partner=partner, url=HOOK, events=events or [WebhookEvent.CALL_COMPLETED]
    )


def delivery_of(partner: Partner) -> WebhookDelivery:
    endpoint_of(partner)
    emit_event(partner=partner, event_type=WebhookEvent.CALL_COMPLETED, payload={"call_id": 1})
    return WebhookDelivery.objects.get(endpoint__partner=partner)


def test_register_an_endpoint_returns_its_secret(api_client: APIClient, api_partner: Partner):
    # when
    response = api_client.post(
        "/api/v1/webhooks/",
        {"url": HOOK, "events": ["call.completed", "contact.opted_out", "call.completed"]},
        format="json",
    )

    # then
    assert response.status_code == 201
    body = response.json()
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert endpoint.partner == api_partner
    assert endpoint.events == ["call.completed", "contact.opted_out"]
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert body["is_active"] is True


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "ftp://example.com/x", "events": ["call.completed"]}, "url"),
        ({"url": HOOK, "events": []}, "events"),
        ({"url": HOOK, "events": ["call.started"]}, "events.0"),
        ({"events": ["call.completed"]}, "url"),
    ],
)
def test_register_an_endpoint_refuses_bad_input(api_client: APIClient, payload, field):
    response = api_client.post("/api/v1/webhooks/", payload, format="json")

    assert response.status_code == 400
    assert field in {error["field"] for error in response.json()["errors"]}
    assert not WebhookEndpoint.objects.exists()


def test_update_and_deactivate_an_endpoint(api_client: APIClient, api_partner: Partner):
    # given
    endpoint = endpoint_of(api_partner)

    # when
    response = api_client.patch(
        f"/api/v1/webhooks/{endpoint.pk}/",
        {"events": ["campaign.completed"], "is_active": False},
        format="json",
    )

    # then
    assert response.status_code == 200
    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.is_active) == (["campaign.completed"], False)


def test_rotate_secret(api_client: APIClient, api_partner: Partner):
    # given
    endpoint = endpoint_of(api_partner)
    old = endpoint.secret

    # when
    response = api_client.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/")

    # then
    endpoint.refresh_from_db()
    assert response.status_code == 200
    assert response.json()["secret"] == endpoint.secret != old


def test_delete_an_endpoint(api_client: APIClient, api_partner: Partner):
    endpoint = endpoint_of(api_partner)

    assert api_client.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_staff_must_name_the_partner(staff_api_client: APIClient, api_partner: Partner):
    # when
    unnamed = staff_api_client.post(
        "/api/v1/webhooks/", {"url": HOOK, "events": ["call.completed"]}, format="json"
    )
    named = staff_api_client.post(
        "/api/v1/webhooks/",
        {"url": HOOK, "events": ["call.completed"], "partner": api_partner.pk},
        format="json",
    )

    # then
    assert unnamed.status_code == 400
    assert unnamed.json()["errors"][0]["field"] == "partner"
    assert named.status_code == 201
    assert WebhookEndpoint.objects.get().partner == api_partner


def test_deliveries_list_the_partners_own_with_their_attempts(
    api_client: APIClient, api_partner: Partner, other_api_partner: Partner
):
    # given
    mine = delivery_of(api_partner)
    delivery_of(other_api_partner)

    # when
    response = api_client.get("/api/v1/webhooks/deliveries/", {"state": "pending"})

    # then
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [mine.pk]
    assert rows[0]["event_type"] == "call.completed"
    assert rows[0]["payload"]["data"] == {"call_id": 1}


def test_redeliver_a_failed_delivery(api_client: APIClient, api_partner: Partner):
    # given
    delivery = delivery_of(api_partner)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        state=WebhookDelivery.State.FAILED, next_attempt_at=None, attempts=9
    )

    # when
    response = api_client.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/redeliver/")

    # then
    assert response.status_code == 202
    delivery.refresh_from_db()
    assert delivery.state == WebhookDelivery.State.PENDING
    assert delivery.next_attempt_at is not None


def test_another_partners_endpoints_and_deliveries_are_not_found(
    api_client: APIClient, other_api_partner: Partner
):
    # given
    delivery = delivery_of(other_api_partner)
    endpoint = delivery.endpoint

    # when
    answers = [
        api_client.get(f"/api/v1/webhooks/{endpoint.pk}/").status_code,
        api_client.patch(
            f"/api/v1/webhooks/{endpoint.pk}/", {"url": HOOK}, format="json"
        ).status_code,
        api_client.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code,
        api_client.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/").status_code,
        api_client.get(f"/api/v1/webhooks/deliveries/{delivery.pk}/").status_code,
        api_client.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/redeliver/").status_code,
    ]

    # then
    assert answers == [404] * 6
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret


@pytest.mark.parametrize("size", [3, 30])
def test_lists_use_a_constant_number_of_queries(
    api_client: APIClient, api_partner: Partner, django_assert_num_queries, size
):
    # given
    endpoint = endpoint_of(api_partner)
    for number in range(size):
        emit_event(
            partner=api_partner,
            event_type=WebhookEvent.CALL_COMPLETED,
            payload={"call_id": number},
        )
        endpoint_of(api_partner)

    api_client.get("/api/v1/webhooks/")  # records the key's first use

    # then: key, count, page (and the endpoint filter's check); the same at any size
    with django_assert_num_queries(3):
        assert api_client.get("/api/v1/webhooks/").status_code == 200
    with django_assert_num_queries(4):
        assert (
            api_client.get("/api/v1/webhooks/deliveries/", {"endpoint": endpoint.pk}).status_code
            == 200
        )
