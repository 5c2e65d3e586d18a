"""Erasing a phone number's data (privacy.erasure): nothing is left but its keyed hash,
the campaign's counts and costs stay, and the number is never called again."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEntry
from calls.costs import campaign_cost
from calls.models import Call
from campaigns.eligibility import ReasonCode, eligibility_for
from campaigns.imports import import_rows
from campaigns.models import Campaign, Contact, ErasedNumber
from campaigns.services import add_contact
from privacy import recordings
from privacy.erasure import ErasureRefused, erase_subject
from privacy.models import DataSubjectRequest
from privacy.tasks import delete_recordings_task
from tests.factories import CallFactory, ContactFactory, ContactImportFactory
from tests.privacy.conftest import FIRST_NAME, LAST_NAME, NATIONAL, OTHER_PHONE, PHONE, Subject

pytestmark = pytest.mark.django_db(transaction=False)

NEEDLES = [PHONE, NATIONAL, FIRST_NAME, LAST_NAME, "crm-zq-77"]


def rows_holding(needle: str) -> list[tuple[str, str]]:
    """Every row of every table whose text (the whole row cast to text) holds ``needle``."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(
                f'SELECT t::text FROM "{table}" t WHERE t::text ILIKE %s',  # noqa: S608
                [f"%{needle}%"],
            )
            found.extend((table, row[0]) for row in cursor.fetchall())
    return found


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose bytes (or, gzip or zip, whose contents) hold it."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            for content in _contents(path.read_bytes()):
                if needle.encode() in content or needle.encode("utf-16-le") in content:
                    found.append(str(path))
    return found


def _contents(data: bytes) -> list[bytes]:
    contents = [data]
    if data[:2] == b"\x1f\x8b":
        contents.append(gzip.decompress(data))
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            contents.extend(archive.read(name) for name in archive.namelist())
    return contents


def campaign_figures(campaigns: list[Campaign]) -> list[object]:
    return [
        (
            dict(
                Contact.objects.filter(campaign=campaign)
                .values_list("state")
                .annotate(n=Count("pk"))
                .order_by("state")
            ),
            Call.objects.filter(campaign=campaign).count(),
            campaign_cost(campaign_id=campaign.pk).as_dict(),
        )
        for campaign in campaigns
    ]


def test_erase_subject_leaves_nothing_but_the_hash(
    subject: Subject, media_root: Path, django_capture_on_commit_callbacks, monkeypatch, fake_twilio
) -> None:
    # given: every kind of data about them, in the tables and the media storage
    assert all(rows_holding(needle) for needle in [PHONE, FIRST_NAME, LAST_NAME])
    assert files_holding(media_root, FIRST_NAME)
    figures = campaign_figures(subject.campaigns)
    queued: list[int] = []
    monkeypatch.setattr(delete_recordings_task, "delay", queued.append)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        request = erase_subject(phone=PHONE, partner=subject.partner)
    delete_recordings_task(queued[0])

    # then: the number, its national digits, the name and the CRM id are nowhere
    for needle in NEEDLES:
        assert rows_holding(needle) == [], needle
        assert files_holding(media_root, needle) == [], needle
    # but the keyed hash, in the suppression and the trail
    digest = audit.subject_hash(PHONE)
    assert ErasedNumber.objects.filter(partner=subject.partner, digest=digest).exists()
    erased = AuditEntry.objects.get(action=audit.Action.SUBJECT_ERASED)
    assert (erased.subject, erased.partner_id) == (digest, subject.partner.pk)
    assert erased.details["contacts"] == 2
    assert erased.details["turns"] == 2
    assert erased.details["clips"] == 2
    # the campaigns' counts and costs are unchanged
    assert campaign_figures(subject.campaigns) == figures
    # the recording is gone at the carrier, and the request is done
    assert subject.recording_sid not in fake_twilio.recordings
    request.refresh_from_db()
    assert request.status == DataSubjectRequest.Status.DONE
    assert request.pending_recordings == []
    # the other person's data and the clip shared with them stay
    subject.other_contact.refresh_from_db()
    assert subject.other_contact.phone == OTHER_PHONE
    subject.shared_clip.refresh_from_db()
    assert subject.shared_clip.text == "Gracias, adiós."
    assert subject.shared_clip.audio.name


def test_erase_subject_keeps_the_contacts_as_anonymous_rows(subject: Subject) -> None:
    erase_subject(phone=PHONE, partner=subject.partner)

    contact = Contact.objects.get(pk=subject.contact.pk)
    assert contact.erased_at is not None
    assert (contact.phone, contact.variables, contact.external_id, contact.time_zone) == (
        "",
        {},
        "",
        "",
    )
    assert (contact.state, contact.attempts) == (Contact.State.DONE, 1)
    call = Call.objects.get(pk=subject.call.pk)
    assert (call.to_number, call.summary, call.answers, call.flags) == ("", "", {}, {})
    assert call.from_number  # ours stays
    assert call.turns.count() == 0


def test_an_erased_number_is_never_called_again(subject: Subject) -> None:
    campaign = subject.campaigns[0]
    erase_subject(phone=PHONE, partner=subject.partner)

    # re-imported: the row is refused, naming the field, without the number
    result = import_rows(campaign=campaign, rows=[{"phone": NATIONAL, "first_name": "Z"}])
    assert result.created == 0
    assert [(error.row, error.field, error.value) for error in result.errors] == [(1, "phone", "")]
    # added through the API's service: refused, naming the field
    with pytest.raises(ValidationError) as refused:
        add_contact(campaign=campaign, phone=PHONE)
    assert refused.value.error_dict["phone"][0].code == "erased"
    # the erased contact, and any contact with the number made behind the services' back
    assert ReasonCode.ERASED in eligibility_for(contact=subject.contact).codes
    sneaked = ContactFactory(campaign=campaign, phone=PHONE)
    verdict = eligibility_for(contact=sneaked)
    assert ReasonCode.ERASED in verdict.codes
    assert verdict.next_possible_at is None  # no time clears it


def test_a_partners_erasure_leaves_other_partners_data(subject: Subject) -> None:
    elsewhere = ContactFactory(phone=PHONE, variables={"first_name": FIRST_NAME})

    erase_subject(phone=PHONE, partner=subject.partner)

    elsewhere.refresh_from_db()
    assert (elsewhere.phone, elsewhere.erased_at) == (PHONE, None)
    assert ReasonCode.ERASED not in eligibility_for(contact=elsewhere).codes
    add_contact(campaign=elsewhere.campaign, phone=PHONE)  # not refused


def test_an_erasure_for_every_partner_refuses_the_number_to_all(subject: Subject) -> None:
    elsewhere = ContactFactory(phone=PHONE)

    erase_subject(phone=PHONE, partner=None)

    elsewhere.refresh_from_db()
    assert elsewhere.erased_at is not None
    assert ErasedNumber.objects.filter(partner=None).count() == 1
    with pytest.raises(ValidationError):
        add_contact(campaign=elsewhere.campaign, phone=PHONE)


def test_erase_subject_during_a_call_is_refused(subject: Subject) -> None:
    CallFactory(contact=subject.contact, attempt=2, status=Call.Status.IN_PROGRESS)

    with pytest.raises(ErasureRefused):
        erase_subject(phone=PHONE, partner=subject.partner)
    assert Contact.objects.get(pk=subject.contact.pk).phone == PHONE


def test_erase_subject_during_an_import_is_refused(subject: Subject) -> None:
    ContactImportFactory(campaign=subject.campaigns[0], state="running")

    with pytest.raises(ErasureRefused):
        erase_subject(phone=PHONE, partner=subject.partner)


def test_recording_deletion_is_retried_until_the_carrier_answers(
    subject: Subject, fake_twilio, settings, monkeypatch
) -> None:
    settings.TWILIO_MAX_RETRIES = 0
    monkeypatch.setattr(delete_recordings_task, "delay", lambda *args: None)
    request = erase_subject(phone=PHONE, partner=subject.partner)
    assert request.status == DataSubjectRequest.Status.RECORDINGS_PENDING
    fake_twilio.fail_next(503, times=2)

    # the carrier is unavailable: the call stays listed, the request pending
    for _attempt in range(2):
        with pytest.raises(recordings.RecordingUnavailable):
            recordings.delete_pending_recordings(request_id=request.pk)
    request.refresh_from_db()
    assert request.status == DataSubjectRequest.Status.RECORDINGS_PENDING
    assert request.pending_recordings == [subject.call.pk]
    assert subject.recording_sid in fake_twilio.recordings

    # the beat's tick leaves it until its time to try again, then queues it: it goes
    queued: list[int] = []
    monkeypatch.setattr(delete_recordings_task, "delay", queued.append)
    from privacy.tasks import retry_erasure_recordings_task

    assert request.recordings_retry_at > timezone.now()
    assert retry_erasure_recordings_task() == 0
    DataSubjectRequest.objects.filter(pk=request.pk).update(recordings_retry_at=timezone.now())
    assert retry_erasure_recordings_task() == 1
    assert delete_recordings_task(queued[0]) == 0
    request.refresh_from_db()
    assert (request.status, request.recording_attempts) == (DataSubjectRequest.Status.DONE, 3)
    assert subject.recording_sid not in fake_twilio.recordings
    call = Call.objects.get(pk=subject.call.pk)
    assert (call.recording_sid, call.recording_url) == ("", "")


def test_recording_refused_for_good_fails_the_request_with_the_reason(
    subject: Subject, fake_twilio, monkeypatch
) -> None:
    monkeypatch.setattr(delete_recordings_task, "delay", lambda *args: None)
    request = erase_subject(phone=PHONE, partner=subject.partner)
    fake_twilio.fail_next(403, code=20403, message="Forbidden")

    assert recordings.delete_pending_recordings(request_id=request.pk) == 1

    request.refresh_from_db()
    assert request.status == DataSubjectRequest.Status.FAILED
    assert "Forbidden" in request.error
    assert request.pending_recordings == [subject.call.pk]
