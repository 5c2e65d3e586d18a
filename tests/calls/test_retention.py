"""Retention: each partner's expired transcripts, outcomes, recordings and uploads go, in
batches, each batch recorded in the audit trail; nothing else is touched."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from audit.models import Action, AuditEntry
from callcenter.celery import app as celery_app
from calls.models import Call, Turn
from calls.retention import purge_expired
from calls.tasks import purge_expired_data_task
from campaigns.models import ContactImport, ContactImportError, ContactImportWarning, Partner
from campaigns.retention import Kind
from tests.factories import (
    CallFactory,
    CampaignFactory,
    ContactFactory,
    ContactImportFactory,
    PartnerFactory,
    TurnFactory,
)

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 6, 15, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def ended_call(
    partner: Partner, ended_days_ago: float, *, now: datetime.datetime = NOW, **fields
) -> Call:
    """A completed call of ``partner`` that ended so many days before ``now``, with an
    outcome."""
    campaign = CampaignFactory(partner=partner)
    ended_at = now - datetime.timedelta(days=ended_days_ago)
    defaults = {
        "status": Call.Status.COMPLETED,
        "dialed_at": ended_at - datetime.timedelta(minutes=2),
        "answered_at": ended_at - datetime.timedelta(minutes=1),
        "ended_at": ended_at,
        "duration_seconds": 60,
        "answers": {"interested": True},
        "flags": {"opted_out": False},
        "summary": "Quiere la cita el martes.",
        "dialogue": {"step": "done"},
    }
    return CallFactory(contact=ContactFactory(campaign=campaign), **{**defaults, **fields})


def with_turns(call: Call, count: int = 2) -> Call:
    for _ in range(count):
        TurnFactory(call=call, text="Hola, ¿me oye?")
    return call


def purges(kind: Kind) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(
            action=Action.RETENTION_PURGED, details__kind=kind.value
        ).order_by("pk")
    )


# --- The partner's periods ----------------------------------------------------------------


def test_retention_periods_are_empty_by_default_and_at_least_one_day() -> None:
    partner = PartnerFactory()
    assert all(getattr(partner, kind.days_field) is None for kind in Kind)

    partner.transcripts_retention_days = 0
    with pytest.raises(ValidationError) as error:
        partner.full_clean()
    assert "transcripts_retention_days" in error.value.error_dict

    with pytest.raises(IntegrityError), transaction.atomic():
        Partner.objects.filter(pk=partner.pk).update(uploads_retention_days=0)


def test_staff_set_retention_in_the_console(admin_client) -> None:
    partner = PartnerFactory()
    response = admin_client.post(
        reverse("admin:campaigns_partner_change", args=[partner.pk]),
        {
            "name": partner.name,
            "is_active": "on",
            "caller_numbers": "",
            "transfer_numbers": "",
            "compliance_profiles": ["es"],
            "max_concurrent_calls_cap": "5",
            "calls_per_second_cap": "1",
            "max_attempts_cap": "3",
            "transcripts_retention_days": "30",
            "recordings_retention_days": "",
            "outcomes_retention_days": "365",
            "uploads_retention_days": "0",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
            "_save": "Save",
        },
    )

    # a period of 0 days is refused, naming the field; nothing is saved
    assert response.status_code == 200
    assert "uploads_retention_days" in response.context["adminform"].form.errors
    partner.refresh_from_db()
    assert partner.transcripts_retention_days is None


def test_staff_save_retention_periods_in_the_console(admin_client) -> None:
    partner = PartnerFactory()
    response = admin_client.post(
        reverse("admin:campaigns_partner_change", args=[partner.pk]),
        {
            "name": partner.name,
            "is_active": "on",
            "compliance_profiles": ["es"],
            "max_concurrent_calls_cap": "5",
            "calls_per_second_cap": "1",
            "max_attempts_cap": "3",
            "transcripts_retention_days": "30",
            "outcomes_retention_days": "365",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    partner.refresh_from_db()
    assert (partner.transcripts_retention_days, partner.outcomes_retention_days) == (30, 365)
    assert partner.recordings_retention_days is partner.uploads_retention_days is None


def test_staff_api_shows_a_partners_retention(staff_api_client) -> None:
    partner = PartnerFactory(transcripts_retention_days=30, uploads_retention_days=7)

    body = staff_api_client.get(f"/api/v1/partners/{partner.pk}/").json()

    assert body["transcripts_retention_days"] == 30
    assert body["uploads_retention_days"] == 7
    assert body["recordings_retention_days"] is None
    assert body["outcomes_retention_days"] is None


# --- Transcripts and outcomes ---------------------------------------------------------------


def test_transcripts_expire_on_their_edge() -> None:
    partner = PartnerFactory(transcripts_retention_days=30)
    expired = with_turns(ended_call(partner, 31))
    kept = with_turns(ended_call(partner, 29))
    live = with_turns(ended_call(partner, 40, status=Call.Status.IN_PROGRESS, ended_at=None))

    result = purge_expired(now=NOW)

    assert not Turn.objects.filter(call=expired).exists()
    assert Turn.objects.filter(call=kept).count() == 2
    assert Turn.objects.filter(call=live).count() == 2
    assert result.total(Kind.TRANSCRIPTS) == 2
    # the call itself stays, with its outcome (another period) and its facts
    expired.refresh_from_db()
    assert expired.summary and expired.duration_seconds == 60


def test_outcomes_expire_on_their_edge_and_the_call_stays() -> None:
    partner = PartnerFactory(outcomes_retention_days=90)
    expired = with_turns(ended_call(partner, 91))
    kept = ended_call(partner, 89)

    result = purge_expired(now=NOW)

    expired.refresh_from_db()
    kept.refresh_from_db()
    assert (expired.answers, expired.flags, expired.summary, expired.dialogue) == ({}, {}, "", {})
    assert (expired.status, expired.duration_seconds) == (Call.Status.COMPLETED, 60)
    assert Turn.objects.filter(call=expired).count() == 2  # transcripts have no period
    assert kept.answers == {"interested": True} and kept.summary
    assert result.total(Kind.OUTCOMES) == 1


def test_another_partner_and_a_partner_without_a_policy_are_untouched() -> None:
    keeping = PartnerFactory(transcripts_retention_days=1, outcomes_retention_days=1)
    other = PartnerFactory(transcripts_retention_days=400, outcomes_retention_days=400)
    forever = PartnerFactory()
    mine = with_turns(ended_call(keeping, 300))
    others = with_turns(ended_call(other, 300))
    kept_forever = with_turns(ended_call(forever, 3000))

    purge_expired(now=NOW)

    assert not Turn.objects.filter(call=mine).exists()
    for call in (others, kept_forever):
        assert Turn.objects.filter(call=call).count() == 2
        call.refresh_from_db()
        assert call.answers == {"interested": True}
    assert {entry.partner_id for entry in AuditEntry.objects.all()} == {keeping.pk}


def test_each_purge_is_in_the_audit_trail_with_partner_kind_count_and_cutoff() -> None:
    partner = PartnerFactory(transcripts_retention_days=30, outcomes_retention_days=60)
    with_turns(ended_call(partner, 100), count=3)

    purge_expired(now=NOW)

    [transcripts] = purges(Kind.TRANSCRIPTS)
    [outcomes] = purges(Kind.OUTCOMES)
    assert transcripts.partner_id == partner.pk
    assert transcripts.actor_type == "system"
    assert transcripts.details == {
        "partner": partner.pk,
        "kind": "transcripts",
        "count": 3,
        "cutoff": (NOW - 30 * DAY).isoformat(),
        "days": 30,
    }
    assert outcomes.details["count"] == 1
    assert outcomes.details["cutoff"] == (NOW - 60 * DAY).isoformat()


def test_nothing_expired_records_nothing_and_a_second_run_finds_nothing() -> None:
    partner = PartnerFactory(transcripts_retention_days=30, outcomes_retention_days=30)
    with_turns(ended_call(partner, 10))
    with_turns(ended_call(partner, 50))

    first = purge_expired(now=NOW)
    entries = AuditEntry.objects.count()
    second = purge_expired(now=NOW)

    assert first.total() == 3  # two turns and one outcome
    assert second.total() == 0
    assert AuditEntry.objects.count() == entries == 2


def test_a_purge_goes_in_bounded_batches_each_recorded() -> None:
    partner = PartnerFactory(transcripts_retention_days=30, outcomes_retention_days=30)
    for _ in range(5):
        with_turns(ended_call(partner, 31), count=1)

    result = purge_expired(now=NOW, batch_size=2)

    assert not Turn.objects.exists()
    assert result.total(Kind.TRANSCRIPTS) == 5
    assert [e.details["count"] for e in purges(Kind.TRANSCRIPTS)] == [2, 2, 1]
    assert [e.details["count"] for e in purges(Kind.OUTCOMES)] == [2, 2, 1]


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_share_the_work_and_never_count_a_row_twice() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL")
    partner = PartnerFactory(transcripts_retention_days=30)
    for _ in range(40):
        with_turns(ended_call(partner, 31), count=5)
    results = []

    def run() -> None:
        try:
            results.append(purge_expired(now=NOW, batch_size=7).total(Kind.TRANSCRIPTS))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not Turn.objects.exists()
    assert sum(results) == 200
    assert sum(e.details["count"] for e in purges(Kind.TRANSCRIPTS)) == 200


# --- Recordings ------------------------------------------------------------------------------


def recorded(fake, partner: Partner, ended_days_ago: float) -> tuple[Call, str]:
    """An ended call of ``partner`` whose recording the fake Twilio holds; its SID."""
    call = ended_call(partner, ended_days_ago, provider_sid=None)
    call.provider_sid = f"CA{call.pk:032x}"
    recording = fake.add_recording(call.provider_sid, audio=b"ID3-audio")
    call.recording_sid = recording["sid"]
    call.recording_url = f"https://api.twilio.com/2010-04-01/Recordings/{recording['sid']}"
    call.recording_seconds = 7
    call.save()
    return call, str(recording["sid"])


def test_recordings_expire_on_their_edge_at_the_carrier(fake_twilio) -> None:
    partner = PartnerFactory(recordings_retention_days=30)
    other = PartnerFactory()
    expired, _expired_sid = recorded(fake_twilio, partner, 31)
    kept, kept_sid = recorded(fake_twilio, partner, 29)
    others, others_sid = recorded(fake_twilio, other, 400)

    result = purge_expired(now=NOW)

    assert set(fake_twilio.recordings) == {kept_sid, others_sid}
    expired.refresh_from_db()
    assert (expired.recording_sid, expired.recording_url, expired.recording_seconds) == (
        "",
        "",
        None,
    )
    kept.refresh_from_db()
    others.refresh_from_db()
    assert (kept.recording_sid, others.recording_sid) == (kept_sid, others_sid)
    assert result.total(Kind.RECORDINGS) == 1
    [entry] = purges(Kind.RECORDINGS)
    assert entry.details["count"] == 1 and entry.details["left"] == 0
    assert entry.partner_id == partner.pk


def test_a_recording_the_carrier_cannot_delete_now_is_left_for_the_next_run(
    fake_twilio, settings
) -> None:
    settings.TWILIO_MAX_RETRIES = 0
    partner = PartnerFactory(recordings_retention_days=30)
    first, first_sid = recorded(fake_twilio, partner, 40)
    second, _second_sid = recorded(fake_twilio, partner, 40)
    # Twilio answers the first deletion 503 (and only that one)
    fake_twilio.fail_next(503, when=lambda r: r.method == "DELETE" and first_sid in r.path, times=1)

    result = purge_expired(now=NOW)

    assert set(fake_twilio.recordings) == {first_sid}
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.recording_sid == first_sid  # kept, to try again
    assert second.recording_sid == ""
    assert (result.total(Kind.RECORDINGS), result.total_left(Kind.RECORDINGS)) == (1, 1)
    [entry] = purges(Kind.RECORDINGS)
    assert (entry.details["count"], entry.details["left"]) == (1, 1)

    # the next run deletes it
    again = purge_expired(now=NOW)

    assert fake_twilio.recordings == {}
    assert (again.total(Kind.RECORDINGS), again.total_left(Kind.RECORDINGS)) == (1, 0)


def test_recordings_go_in_batches(fake_twilio) -> None:
    partner = PartnerFactory(recordings_retention_days=30)
    for _ in range(5):
        recorded(fake_twilio, partner, 31)

    purge_expired(now=NOW, recording_batch_size=2)

    assert fake_twilio.recordings == {}
    assert [e.details["count"] for e in purges(Kind.RECORDINGS)] == [2, 2, 1]


# --- Uploads --------------------------------------------------------------------------------


@pytest.fixture
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def finished_import(partner: Partner, days_ago: float, **fields) -> ContactImport:
    contact_import = ContactImportFactory(
        campaign=CampaignFactory(partner=partner),
        **{
            "state": ContactImport.State.DONE,
            "total_rows": 3,
            "processed_rows": 3,
            "created_count": 1,
            "error_count": 1,
            "flagged_count": 1,
            **fields,
        },
    )
    contact_import.file.save("contacts.csv", ContentFile(b"phone\n+34600000001\n"))
    ContactImportError.objects.create(
        contact_import=contact_import, row=2, field="phone", value="12345", message="Bad."
    )
    ContactImportWarning.objects.create(
        contact_import=contact_import, row=3, field="first_name", value="", message="Missing."
    )
    ContactImport.objects.filter(pk=contact_import.pk).update(
        created_at=NOW - datetime.timedelta(days=days_ago)
    )
    return contact_import


def test_uploads_expire_on_their_edge_and_the_counts_stay(media) -> None:
    partner = PartnerFactory(uploads_retention_days=14)
    expired = finished_import(partner, 15)
    kept = finished_import(partner, 13)
    running = finished_import(partner, 20, state=ContactImport.State.RUNNING)
    expired_path = Path(expired.file.path)

    result = purge_expired(now=NOW)

    expired.refresh_from_db()
    assert not expired_path.exists()
    assert expired.file.name == ""
    assert not expired.row_errors.exists() and not expired.row_warnings.exists()
    assert (expired.total_rows, expired.created_count, expired.error_count) == (3, 1, 1)
    for untouched in (kept, running):
        untouched.refresh_from_db()
        assert Path(untouched.file.path).read_bytes() == b"phone\n+34600000001\n"
        assert untouched.row_errors.count() == untouched.row_warnings.count() == 1
    assert result.total(Kind.UPLOADS) == 1
    [entry] = purges(Kind.UPLOADS)
    assert entry.details["count"] == 1
    assert (entry.details["imports"], entry.details["rows"]) == (1, 2)


def test_an_uploads_many_noted_rows_go_in_batches(media) -> None:
    partner = PartnerFactory(uploads_retention_days=14)
    expired = finished_import(partner, 30)
    ContactImportError.objects.bulk_create(
        ContactImportError(contact_import=expired, row=n, message="Bad.") for n in range(10, 15)
    )

    purge_expired(now=NOW, batch_size=3)

    assert not ContactImportError.objects.exists()
    assert not ContactImportWarning.objects.exists()
    entries = purges(Kind.UPLOADS)
    assert [e.details["rows"] for e in entries] == [3, 3, 1]
    assert [e.details["count"] for e in entries] == [0, 0, 1]


def test_a_file_already_missing_from_storage_is_no_error(media) -> None:
    partner = PartnerFactory(uploads_retention_days=1)
    expired = finished_import(partner, 2)
    Path(expired.file.path).unlink()

    purge_expired(now=NOW)

    expired.refresh_from_db()
    assert expired.file.name == ""


# --- The schedule ---------------------------------------------------------------------------


def test_the_nightly_purge_is_a_periodic_task_operators_may_retime(settings) -> None:
    task = PeriodicTask.objects.get(name="purge-expired-data")

    assert task.task == "calls.tasks.purge_expired_data_task"
    assert task.task in celery_app.tasks
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour) == ("0", "4")
    assert str(task.crontab.timezone) == settings.TIME_ZONE


def test_the_task_purges_and_says_how_much(media) -> None:
    partner = PartnerFactory(transcripts_retention_days=1, uploads_retention_days=1)
    with_turns(ended_call(partner, 5, now=timezone.now()), count=3)
    old = finished_import(partner, 0)
    ContactImport.objects.filter(pk=old.pk).update(created_at=timezone.now() - 3 * DAY)

    counts = purge_expired_data_task()

    assert counts == {
        "transcripts": 3,
        "recordings": 0,
        "outcomes": 0,
        "uploads": 1,
        "recordings_left": 0,
    }
