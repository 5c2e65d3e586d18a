"""Exporting a phone number's data (privacy.export): one ZIP with everything held."""

from __future__ import annotations

import io
import json
import zipfile
from decimal import Decimal
from typing import Any

import pytest

from audit.models import AuditEntry
from campaigns.models import Contact
from privacy.export import build_export, request_export
from privacy.models import DataSubjectRequest
from privacy.tasks import build_export_task
from tests.factories import ContactFactory
from tests.privacy.conftest import FIRST_NAME, PHONE, Subject

pytestmark = pytest.mark.django_db


def exported(request: DataSubjectRequest) -> tuple[dict[str, Any], dict[str, bytes]]:
    with request.file.open("rb") as stored, zipfile.ZipFile(io.BytesIO(stored.read())) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("subject.json")), files


@pytest.fixture
def make_export(monkeypatch, django_capture_on_commit_callbacks):
    """Ask for an export and run the task it queues after commit, as a worker would."""

    def make(partner: Any) -> DataSubjectRequest:
        queued: list[tuple[Any, ...]] = []
        monkeypatch.setattr(build_export_task, "delay", lambda *args: queued.append(args))
        with django_capture_on_commit_callbacks(execute=True):
            request = request_export(phone=PHONE, partner=partner)
        assert queued == [(request.pk, PHONE)]
        build_export_task(*queued[0])
        request.refresh_from_db()
        return request

    return make


def test_export_holds_everything_about_the_number(subject: Subject, make_export) -> None:
    request = make_export(subject.partner)

    document, files = exported(request)
    assert request.status == DataSubjectRequest.Status.DONE
    assert document["phone"] == PHONE
    contacts = document["contacts"]
    assert len(contacts) == 2
    assert contacts[0]["variables"]["first_name"] == FIRST_NAME
    call = document["calls"][0]
    assert call["id"] == subject.call.pk
    assert call["status"] == "completed"
    assert call["summary"].startswith(FIRST_NAME)
    assert call["outcome"]["attending"] is True
    assert Decimal(call["cost"]["telephony"]) == Decimal("0.03")
    assert [turn["sequence"] for turn in document["transcripts"]] == [1, 2]
    assert document["call_events"][0]["payload"]["To"] == PHONE
    assert len(document["webhook_deliveries"]) == 1
    assert document["do_not_call"][0]["phone"] == PHONE
    assert {entry["action"] for entry in document["audit"]} >= {"contact.dialed"}
    # the recording, fetched from the carrier, and the clips played on the call
    assert document["recordings"] == [
        {
            "call": subject.call.pk,
            "file": f"recordings/call-{subject.call.pk}.mp3",
            "content_type": "audio/mpeg",
        }
    ]
    assert files[f"recordings/call-{subject.call.pk}.mp3"] == b"ID3-their-voice"
    clip_files = {clip["id"]: clip["file"] for clip in document["clips"]}
    assert set(clip_files) == {subject.personal_clip.pk, subject.shared_clip.pk}
    assert files[clip_files[subject.personal_clip.pk]].startswith(b"ID3 Perfecto")
    assert document["recordings_unavailable"] == []
    assert request.counts["calls"] == 1
    # recorded in the trail, with the hash only
    entry = AuditEntry.objects.get(action="subject.exported")
    assert entry.partner_id == subject.partner.pk
    assert PHONE not in json.dumps(entry.details)


def test_export_of_a_recording_the_carrier_cannot_give_says_so(
    subject: Subject, make_export, fake_twilio, settings
) -> None:
    settings.TWILIO_MAX_RETRIES = 0
    fake_twilio.fail_next(503, times=5)

    request = make_export(subject.partner)

    document, files = exported(request)
    assert document["recordings"] == []
    assert [item["call"] for item in document["recordings_unavailable"]] == [subject.call.pk]
    assert document["recordings_unavailable"][0]["reason"]
    assert not any(name.startswith("recordings/") for name in files)
    assert request.status == DataSubjectRequest.Status.DONE


def test_a_partners_export_holds_its_own_data_only(subject: Subject, make_export) -> None:
    elsewhere = ContactFactory(phone=PHONE, variables={"first_name": "Otra"})
    own = set(
        Contact.objects.filter(campaign__partner=subject.partner, phone=PHONE).values_list(
            "pk", flat=True
        )
    )

    mine = make_export(subject.partner)
    everyone = make_export(None)

    assert {c["id"] for c in exported(mine)[0]["contacts"]} == own
    assert {c["id"] for c in exported(everyone)[0]["contacts"]} == own | {elsewhere.pk}


def test_build_export_refuses_another_number(subject: Subject) -> None:
    request = DataSubjectRequest.objects.create(
        kind="export", subject="0" * 64, actor_type="system"
    )

    with pytest.raises(ValueError, match="not the one"):
        build_export(request_id=request.pk, phone=PHONE)
