"""The partner API's data-subjects resource: export and erase, scoped to the partner."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from calls.models import Call
from campaigns.models import Contact, ErasedNumber, Partner
from privacy.models import DataSubjectRequest
from privacy.tasks import build_export_task, delete_recordings_task
from tests.factories import CallFactory, ContactFactory
from tests.privacy.conftest import NATIONAL, PHONE, Subject

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/data-subjects/export/"
ERASE = "/api/v1/data-subjects/erase/"


@pytest.fixture
def partner(api_partner: Partner) -> Partner:
    """The subject's data belongs to the API's partner."""
    return api_partner


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch) -> None:
    monkeypatch.setattr(build_export_task, "delay", lambda *args: None)
    monkeypatch.setattr(delete_recordings_task, "delay", lambda *args: None)


def export(client: APIClient, capture: Any, **data: Any) -> dict[str, Any]:
    """POST an export, then build its file as the worker would."""
    queued: list[tuple[Any, ...]] = []
    build_export_task.delay = lambda *args: queued.append(args)  # type: ignore[method-assign]
    with capture(execute=True):
        response = client.post(EXPORT, {"phone": NATIONAL, **data}, format="json")
    assert response.status_code == 202, response.json()
    for args in queued:
        build_export_task(*args)
    body: dict[str, Any] = response.json()
    return body


def test_a_partner_exports_and_downloads_its_own_data(
    subject: Subject, api_client, other_api_client, django_capture_on_commit_callbacks
) -> None:
    body = export(api_client, django_capture_on_commit_callbacks)

    assert body["kind"] == "export"
    assert body["partner"] == subject.partner.pk
    detail = api_client.get(f"/api/v1/data-subjects/{body['id']}/").json()
    assert detail["status"] == "done"
    download = api_client.get(f"/api/v1/data-subjects/{body['id']}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert b"".join(download.streaming_content)[:2] == b"PK"
    entry = AuditEntry.objects.get(action="subject.exported")
    assert entry.actor_type == "partner"
    # another partner sees neither the request nor its file
    assert other_api_client.get(f"/api/v1/data-subjects/{body['id']}/").status_code == 404
    assert other_api_client.get(f"/api/v1/data-subjects/{body['id']}/download/").status_code == 404


def test_only_the_requester_downloads_an_export(
    subject: Subject, api_client, staff_api_client, django_capture_on_commit_callbacks
) -> None:
    body = export(api_client, django_capture_on_commit_callbacks)

    response = staff_api_client.get(f"/api/v1/data-subjects/{body['id']}/download/")

    assert response.status_code == 404


def test_a_partner_cannot_act_on_another_partners_data(
    subject: Subject, api_client, other_api_partner
) -> None:
    response = api_client.post(
        ERASE, {"phone": PHONE, "partner": other_api_partner.pk, "confirm": True}, format="json"
    )

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["partner"]


def test_an_erasure_needs_confirmation(subject: Subject, api_client) -> None:
    for data in ({"phone": PHONE}, {"phone": PHONE, "confirm": False}):
        response = api_client.post(ERASE, data, format="json")

        assert response.status_code == 400
        assert [error["field"] for error in response.json()["errors"]] == ["confirm"]
    assert Contact.objects.filter(phone=PHONE).count() == 2


def test_a_bad_number_is_refused_naming_the_field(api_client) -> None:
    response = api_client.post(ERASE, {"phone": "12", "confirm": True}, format="json")

    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["phone"]


def test_a_partner_erases_its_own_data_only(
    subject: Subject, api_client, other_api_partner
) -> None:
    elsewhere = ContactFactory(campaign__partner=other_api_partner, phone=PHONE)

    response = api_client.post(ERASE, {"phone": NATIONAL, "confirm": True}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["kind"], body["status"]) == ("erase", "recordings_pending")
    assert body["counts"]["contacts"] == 2
    assert body["pending_recordings"] == [subject.call.pk]
    assert not Contact.objects.filter(campaign__partner=subject.partner, phone=PHONE).exists()
    assert Contact.objects.get(pk=elsewhere.pk).phone == PHONE
    assert ErasedNumber.objects.get().partner == subject.partner
    entry = AuditEntry.objects.get(action="subject.erased")
    assert (entry.partner_id, entry.actor_type) == (subject.partner.pk, "partner")


def test_staff_erase_for_every_partner(subject: Subject, staff_api_client) -> None:
    elsewhere = ContactFactory(phone=PHONE)

    response = staff_api_client.post(ERASE, {"phone": PHONE, "confirm": True}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["partner"] is None
    assert Contact.objects.get(pk=elsewhere.pk).erased_at is not None
    assert ErasedNumber.objects.get().partner is None
    assert DataSubjectRequest.objects.get().actor_type == "staff"


def test_an_erasure_during_a_call_is_a_conflict(subject: Subject, api_client) -> None:
    CallFactory(contact=subject.contact, attempt=2, status=Call.Status.RINGING)

    response = api_client.post(ERASE, {"phone": PHONE, "confirm": True}, format="json")

    assert response.status_code == 409
    assert Contact.objects.get(pk=subject.contact.pk).phone == PHONE


def test_the_schema_documents_the_data_subject_endpoints() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert {"post"} <= set(schema["paths"]["/api/v1/data-subjects/export/"])
    erase = schema["paths"]["/api/v1/data-subjects/erase/"]["post"]
    assert {"200", "409"} <= set(erase["responses"])
    assert "/api/v1/data-subjects/{id}/download/" in schema["paths"]


def test_an_erasure_with_nothing_left_to_do_ends_when_it_is_recorded(
    api_client, api_partner
) -> None:
    ContactFactory(campaign__partner=api_partner, phone="+34611000999")

    response = api_client.post(ERASE, {"phone": "+34611000999", "confirm": True}, format="json")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "done" and body["counts"]["contacts"] == 1
    assert body["finished_at"] == body["created_at"]
