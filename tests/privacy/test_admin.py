"""The staff console's data-subject requests: the form and the history."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from campaigns.models import Contact
from privacy.models import DataSubjectRequest
from privacy.tasks import build_export_task, delete_recordings_task
from tests.privacy.conftest import NATIONAL, PHONE, Subject

pytestmark = pytest.mark.django_db

NEW = reverse("admin:privacy_datasubjectrequest_new")


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch) -> None:
    monkeypatch.setattr(delete_recordings_task, "delay", lambda *args: None)


def test_the_history_links_to_the_form(admin_client) -> None:
    response = admin_client.get(reverse("admin:privacy_datasubjectrequest_changelist"))

    assert response.status_code == 200
    assert NEW.encode() in response.content


def test_an_erasure_without_confirmation_changes_nothing(subject: Subject, admin_client) -> None:
    response = admin_client.post(NEW, {"phone": NATIONAL, "kind": "erase"})

    assert response.status_code == 200
    assert "confirm" in response.context["form"].errors
    assert Contact.objects.filter(phone=PHONE).count() == 2


def test_staff_erase_a_number_for_every_partner(subject: Subject, admin_client) -> None:
    response = admin_client.post(NEW, {"phone": NATIONAL, "kind": "erase", "confirm": "on"})

    made = DataSubjectRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:privacy_datasubjectrequest_change", args=[made.pk]
    )
    assert (made.kind, made.partner) == ("erase", None)
    assert not Contact.objects.filter(phone=PHONE).exists()
    assert AuditEntry.objects.get(action="subject.erased").actor_type == "staff"
    assert admin_client.get(response["Location"]).status_code == 200


def test_staff_export_and_download_their_file(
    subject: Subject, admin_client, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    queued: list[tuple[object, ...]] = []
    monkeypatch.setattr(build_export_task, "delay", lambda *args: queued.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(NEW, {"phone": PHONE, "kind": "export", "partner": subject.partner.pk})
    build_export_task(*queued[0])

    made = DataSubjectRequest.objects.get()
    assert made.partner == subject.partner
    download = reverse("admin:privacy_datasubjectrequest_download", args=[made.pk])
    history = admin_client.get(reverse("admin:privacy_datasubjectrequest_changelist"))
    assert download.encode() in history.content
    response = admin_client.get(download)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:2] == b"PK"


def test_another_staff_user_cannot_download_the_file(
    subject: Subject, admin_client, client, django_user_model, monkeypatch
) -> None:
    monkeypatch.setattr(build_export_task, "delay", lambda *args: None)
    admin_client.post(NEW, {"phone": PHONE, "kind": "export"})
    made = DataSubjectRequest.objects.get()
    build_export_task(made.pk, PHONE)
    other = django_user_model.objects.create_superuser("other", password="pw")
    client.force_login(other)

    response = client.get(reverse("admin:privacy_datasubjectrequest_download", args=[made.pk]))

    assert response.status_code == 404
