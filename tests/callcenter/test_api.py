"""What every endpoint of the partner API shares: idempotent POSTs, limits, errors."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from callcenter.api import purge_idempotency_keys
from campaigns.models import IdempotencyKey, PartnerApiKey
from campaigns.services import onboard_partner

PASSWORD = "a-long-test-password-1"


def onboard_with_access_scope():
    """A partner whose first key may manage keys: the endpoint these tests post to."""
    onboarded = onboard_partner(name="Acme", username="acme", password=PASSWORD)
    PartnerApiKey.objects.filter(partner=onboarded.partner).update(can_manage_access=True)
    return onboarded


@pytest.fixture
def onboarded(db: None):
    return onboard_with_access_scope()


@pytest.fixture
def client(onboarded) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {onboarded.api_key}")
    return client


def test_same_idempotency_key_returns_the_first_answer_without_creating_twice(client, onboarded):
    # given
    first = client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="create-crm"
    )

    # when
    again = client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="create-crm"
    )

    # then
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert PartnerApiKey.objects.filter(partner=onboarded.partner, name="CRM").count() == 1


def test_idempotency_key_with_a_different_body_is_refused(client, onboarded):
    # given
    client.post("/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    # when
    response = client.post(
        "/api/v1/api-keys/", {"name": "ERP"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    # then
    assert response.status_code == 422
    assert response.json()["message"] == (
        "This Idempotency-Key was already used with a different request."
    )
    assert not PartnerApiKey.objects.filter(name="ERP").exists()


def test_idempotency_keys_belong_to_one_partner(client):
    # given
    other = onboard_partner(name="Other", username="other", password=PASSWORD)
    PartnerApiKey.objects.filter(partner=other.partner).update(can_manage_access=True)
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {other.api_key}")
    client.post("/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    # when
    response = other_client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    # then
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert PartnerApiKey.objects.get(partner=other.partner, name="CRM")


def test_idempotency_key_still_in_flight_answers_409(client, onboarded):
    # given: the first request holds the key but has no answer yet
    IdempotencyKey.objects.create(
        scope=f"partner:{onboarded.partner.pk}",
        key="k",
        fingerprint=_fingerprint_of_first_request(client),
    )

    # when
    response = client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    # then
    assert response.status_code == 409
    assert not PartnerApiKey.objects.filter(name="CRM").exists()


def _fingerprint_of_first_request(client: APIClient) -> str:
    """The fingerprint a POST {"name": "CRM"} to /api/v1/api-keys/ gets, read off a real one."""
    client.post("/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="probe")
    record = IdempotencyKey.objects.get(key="probe")
    PartnerApiKey.objects.filter(name="CRM").delete()
    return record.fingerprint


def test_refused_request_keeps_its_answer_too(client):
    # given: a request that fails validation
    first = client.post("/api/v1/api-keys/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    # when
    again = client.post("/api/v1/api-keys/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    # then
    assert first.status_code == again.status_code == 400
    assert again.json() == first.json()


def test_idempotency_key_too_long_is_refused(client):
    response = client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_once():
    # given
    onboarded = onboard_with_access_scope()
    answers: list[int] = []

    def send() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {onboarded.api_key}")
        try:
            answers.append(
                client.post(
                    "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
                ).status_code
            )
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: one created; the others got its answer, or were told it was still running
    assert PartnerApiKey.objects.filter(name="CRM").count() == 1
    assert answers.count(201) >= 1
    assert set(answers) <= {201, 409}


def test_old_idempotency_keys_are_purged(client, settings):
    # given
    client.post("/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    later = timezone.now() + datetime.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS, minutes=1)

    # when
    purged = purge_idempotency_keys(now=later)

    # then
    assert purged == 1
    assert not IdempotencyKey.objects.exists()


def test_each_partner_has_its_own_request_budget(client, settings):
    # given
    settings.API_THROTTLE_RATE = "3/minute"
    other = onboard_partner(name="Other", username="other", password=PASSWORD)
    PartnerApiKey.objects.filter(partner=other.partner).update(can_manage_access=True)
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {other.api_key}")
    for _ in range(3):
        assert client.get("/api/v1/api-keys/").status_code == 200

    # when
    over = client.get("/api/v1/api-keys/")

    # then
    assert over.status_code == 429
    assert 0 < int(over["Retry-After"]) <= 60
    assert over.json()["code"] == "throttled"
    assert other_client.get("/api/v1/api-keys/").status_code == 200


def test_oversized_body_is_refused_before_it_is_read(client, settings):
    # given
    settings.API_MAX_BODY_BYTES = 1024

    # when
    response = client.post(
        "/api/v1/api-keys/", {"name": "x" * 2000}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    # then
    assert response.status_code == 413
    assert "the limit is 1024" in response.json()["message"]
    assert not IdempotencyKey.objects.exists()


def test_validation_errors_name_each_field(client):
    response = client.post("/api/v1/api-keys/", {"name": "x" * 51}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "Ensure this field has no more than 50 characters.",
        "errors": [
            {
                "field": "name",
                "code": "max_length",
                "message": "Ensure this field has no more than 50 characters.",
            }
        ],
    }


def test_errors_are_in_spanish_by_default(onboarded):
    # given
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {onboarded.api_key}")

    # when
    response = client.post("/api/v1/api-keys/", {}, format="json")

    # then
    assert response.json()["errors"][0]["message"] == "Este campo es requerido."


def test_an_accept_header_no_answer_meets_is_refused_with_406_in_the_error_body(api_client):
    # when: a media type the API cannot answer in (schemathesis found it documented nowhere)
    response = api_client.get("/api/v1/campaigns/", HTTP_ACCEPT="dy\tOK")

    # then
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_acceptable"


def test_schema_declares_the_error_body_on_every_operation(db):
    # when
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    # then
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "message", "errors"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"], (method, path)
            assert "429" in operation["responses"], (method, path)
            assert "406" in operation["responses"], (method, path)
    security = schema["components"]["securitySchemes"]
    assert security["ApiKey"]["name"] == "Authorization"
    assert security["jwtAuth"]["scheme"] == "bearer"


def test_swagger_ui_is_served_from_our_own_static_files(db):
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in response.content


def test_a_crash_lets_the_idempotency_key_go(client, monkeypatch):
    # given: the first request crashes
    def crash(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("campaigns.services.create_api_key", crash)
    client.raise_request_exception = False
    first = client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    monkeypatch.undo()

    # when
    again = client.post(
        "/api/v1/api-keys/", {"name": "CRM"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    # then
    assert first.status_code == 500
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again


def test_times_are_given_in_utc(client):
    created = client.get("/api/v1/api-keys/").json()["results"][0]["created"]

    assert created.endswith("Z")


def test_unknown_api_urls_answer_the_error_body(client):
    response = client.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No such resource.", "errors": []}
