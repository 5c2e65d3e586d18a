"""Every feature that stores files, on a bucket of moto's S3 server through the real boto3
client: the object is where the feature puts it, read back from there, and gone when the
feature deletes it; private files are downloaded only through our authenticated views."""

from __future__ import annotations

import gzip
import io
import zipfile
from typing import Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEntry
from calls.retention import purge_expired
from campaigns.imports import run_import
from campaigns.models import ContactImport, SuppressionCopy
from campaigns.tasks import import_suppression_copy_task
from privacy.erasure import erase_subject
from privacy.models import DataSubjectRequest
from privacy.tasks import build_export_task, delete_recordings_task

# The fixtures of the features' own tests, imported as they are (`x as x`) to be used here.
from tests.calls.test_retention import NOW, finished_import
from tests.campaigns.test_suppression_lists import days_ago
from tests.campaigns.test_suppression_lists import robinson as robinson
from tests.campaigns.test_views import CSV, upload
from tests.campaigns.test_views import api_campaign as api_campaign
from tests.campaigns.test_views import api_template as api_template
from tests.factories import PartnerFactory
from tests.privacy.conftest import PHONE, Subject
from tests.privacy.conftest import media_root as media_root
from tests.privacy.conftest import subject as subject
from tests.s3 import S3Server

pytestmark = pytest.mark.django_db


def test_a_contact_file_uploaded_through_the_api_is_imported_from_the_bucket(
    s3: S3Server, api_client, api_campaign, settings, django_capture_on_commit_callbacks
) -> None:
    # given a file over the size imported at once
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = len(CSV) - 1

    # when it is uploaded, it is stored in the bucket and queued
    with django_capture_on_commit_callbacks():
        response = upload(api_client, api_campaign)
    assert response.status_code == 202, response.content
    contact_import = ContactImport.objects.get(pk=response.json()["id"])
    [key] = s3.keys()
    assert key == contact_import.file.name and key.startswith("imports/")
    assert s3.read(key) == CSV

    # when the worker's service runs, it reads the file from the bucket
    with django_capture_on_commit_callbacks(execute=True):
        run_import(contact_import_id=contact_import.pk)

    # then the contacts are in, and the ended import's upload is gone from the bucket
    done = api_client.get(response["Location"]).json()
    assert (done["state"], done["created_count"], done["error_count"]) == ("done", 2, 1)
    assert api_campaign.contacts.count() == 2
    assert s3.keys() == []


def test_a_suppression_upload_is_read_from_the_bucket(
    s3: S3Server, admin_client, robinson, django_capture_on_commit_callbacks
) -> None:
    content = gzip.compress(b"600000001\n600000002\nbad\n")
    with django_capture_on_commit_callbacks():
        response = admin_client.post(
            reverse("admin:campaigns_suppressioncopy_add"),
            {
                "suppression_list": robinson.pk,
                "refreshed_at": days_ago(2).isoformat(),
                "upload": SimpleUploadedFile("robinson.gz", content),
            },
        )
    assert response.status_code == 302
    copy = SuppressionCopy.objects.get()
    assert s3.keys() == [copy.file.name]
    assert s3.read(copy.file.name) == content

    result = import_suppression_copy_task(copy.pk)

    assert result == {"state": "done", "lines": 3, "entries": 2, "bad": 1}
    robinson.refresh_from_db()
    assert robinson.current_copy_id == copy.pk


def _export(client: Any, capture: Any, monkeypatch: Any) -> DataSubjectRequest:
    """POST an export, then build its file as the worker would."""
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(build_export_task, "delay", lambda *args: queued.append(args))
    with capture(execute=True):
        response = client.post("/api/v1/data-subjects/export/", {"phone": PHONE}, format="json")
    assert response.status_code == 202, response.content
    build_export_task(*queued[0])
    return DataSubjectRequest.objects.get(pk=response.json()["id"])


@pytest.fixture
def partner(api_partner):
    """The subject's data belongs to the API's partner."""
    return api_partner


def test_a_data_subject_export_is_stored_privately_and_downloaded_through_the_api(
    s3: S3Server,
    subject: Subject,
    api_client,
    other_api_client,
    django_capture_on_commit_callbacks,
    monkeypatch,
) -> None:
    # when the partner asks for the export of a number and the worker builds it
    request = _export(api_client, django_capture_on_commit_callbacks, monkeypatch)

    # then the ZIP file is an object of the bucket, under private/
    name = request.file.name
    assert name.startswith("private/subject-exports/") and name in s3.keys()
    stored = s3.read(name)
    with zipfile.ZipFile(io.BytesIO(stored)) as archive:
        assert "subject.json" in archive.namelist()
        # the clips played on the call were read from the bucket into it
        assert any(n.startswith("clips/") for n in archive.namelist())
    # downloaded through the API, byte for byte; another partner's 404
    download = api_client.get(f"/api/v1/data-subjects/{request.pk}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == stored
    theirs = other_api_client.get(f"/api/v1/data-subjects/{request.pk}/download/")
    assert theirs.status_code == 404
    # and the bucket itself never serves it without a signature
    unsigned = requests.get(f"{s3.endpoint_url}/{s3.bucket}/{name}", timeout=10)
    assert unsigned.status_code == 403


def test_an_erasure_deletes_the_persons_clips_from_the_bucket(
    s3: S3Server, subject: Subject, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given: the clips said to them, and the one shared with another person, in the bucket
    theirs = [subject.personal_clip.audio.name, subject.prerendered_clip.audio.name]
    shared = subject.shared_clip.audio.name
    assert set(theirs) | {shared} <= set(s3.keys())
    queued: list[int] = []
    monkeypatch.setattr(delete_recordings_task, "delay", queued.append)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        erase_subject(phone=PHONE, partner=subject.partner)

    # then their objects are gone; the shared clip's stays
    keys = s3.keys()
    assert not set(theirs) & set(keys)
    assert shared in keys
    assert AuditEntry.objects.filter(action="subject.erased").exists()


def test_retention_deletes_an_expired_upload_from_the_bucket(s3: S3Server) -> None:
    partner = PartnerFactory(uploads_retention_days=14)
    expired = finished_import(partner, 15)
    kept = finished_import(partner, 13)
    assert sorted([expired.file.name, kept.file.name]) == s3.keys()

    purge_expired(now=NOW)

    assert s3.keys() == [kept.file.name]
    expired.refresh_from_db()
    assert expired.file.name == ""


def test_retention_of_an_upload_already_gone_from_the_bucket_is_no_error(s3: S3Server) -> None:
    expired = finished_import(PartnerFactory(uploads_retention_days=1), 2)
    s3.client().delete_object(Bucket=s3.bucket, Key=expired.file.name)

    purge_expired(now=NOW)

    expired.refresh_from_db()
    assert expired.file.name == ""
