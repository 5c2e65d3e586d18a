from __future__ import annotations

import datetime
import gzip
import hashlib
import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone, translation

from audit.models import AuditEntry
from calls.dispatcher import dispatch
from calls.models import Call
from campaigns.eligibility import ReasonCode, count_blocked, eligibilities, eligibility_for
from campaigns.models import (
    Campaign,
    SuppressionCopy,
    SuppressionDigest,
    SuppressionList,
    SuppressionNumber,
)
from campaigns.services import CampaignStateError, add_contact, advance_campaigns, start_campaign
from campaigns.suppression import basis_exempts, import_files, listings
from campaigns.suppression.parsing import ReadReport, open_lines, parse_lines
from campaigns.tasks import import_suppression_copy_task

TODAY = timezone.localdate()


def days_ago(days: int) -> datetime.date:
    return TODAY - datetime.timedelta(days=days)


def write(tmp_path: Path, name: str, text: str, *, gz: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def robinson(db: None) -> SuppressionList:
    return SuppressionList.objects.create(name="Robinson", kind="robinson_es", country_code="34")


@pytest.fixture
def hashed_robinson(db: None) -> SuppressionList:
    return SuppressionList.objects.create(
        name="Robinson (hashed)", kind="robinson_es", country_code="34", file_format="sha256"
    )


@pytest.fixture
def us_registry(db: None) -> SuppressionList:
    return SuppressionList.objects.create(name="US DNC", kind="us_dnc", country_code="1")


@pytest.fixture
def marketing(campaign: Campaign) -> Campaign:
    """A Spanish marketing campaign ready to start but for its national list: Eva consented
    to be called (ES-3, ES-4), Ana has no legal basis, so a list is never what alone stops
    her (consent exempts a listed number, ES-5)."""
    campaign.purpose = Campaign.Purpose.MARKETING
    campaign.caller_number = "+34910000000"
    campaign.save(update_fields=["purpose", "caller_number"])
    add_contact(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})
    add_contact(
        campaign=campaign,
        phone="+34600000002",
        variables={"first_name": "Eva"},
        basis={
            "legal_basis": "consent",
            "basis_source": "web form example.com/alta",
            "basis_obtained_at": timezone.now() - datetime.timedelta(days=10),
            "basis_wording": "Acepto que me llamen con ofertas.",
        },
    )
    return campaign


def load(tmp_path: Path, suppression_list: SuppressionList, text: str, *, age: int = 1, **kw):
    path = write(tmp_path, kw.pop("name", "list.txt"), text, **kw)
    return import_files(suppression_list=suppression_list, refreshed_at=days_ago(age), paths=[path])


# Parsing


def test_parse_lines_keeps_good_lines_and_reports_bad_ones_with_line_and_value() -> None:
    # given the US registry's full-list forms, and lines that are none
    lines = [
        "212,5551234",  # area code and number, comma-separated
        "2125551235",  # ten digits
        "not a number",
        "212,5551236,2026-01-01,A",  # a change-list record
        "555123",  # too short
        "",
        "+12125551237",
    ]
    report = ReadReport()

    # when
    values = list(parse_lines(lines, hashed=False, country_code="1", report=report))

    # then
    assert values == [12125551234, 12125551235, 12125551237]
    assert (report.lines, report.good, report.bad) == (7, 3, 3)
    assert [(line, value) for _file, line, value, _reason in report.bad_samples] == [
        (3, "not a number"),
        (4, "212,5551236,2026-01-01,A"),
        (5, "555123"),
    ]


def test_parse_lines_reads_spanish_numbers_national_and_international() -> None:
    report = ReadReport()

    values = list(
        parse_lines(
            ["telefono", "600000001", "+34 600 000 002", "0034600000003"],
            hashed=False,
            country_code="34",
            report=report,
        )
    )

    assert values == [34600000001, 34600000002, 34600000003]
    assert report.bad == 0  # the header line is skipped, not bad


def test_parse_lines_reads_sha256_digests_and_refuses_other_text() -> None:
    digest = hashlib.sha256(b"600000001").hexdigest()
    report = ReadReport()

    values = list(
        parse_lines(
            [digest.upper(), f"{digest},x", "abc123"], hashed=True, country_code="34", report=report
        )
    )

    assert values == [bytes.fromhex(digest)] * 2
    assert report.bad == 1 and report.bad_samples[0][1] == 3


def test_open_lines_reads_gzip_and_plain_alike() -> None:
    text = "600000001\r\n600000002\n"

    plain = list(open_lines(io.BytesIO(text.encode())))
    gunzipped = list(open_lines(io.BytesIO(gzip.compress(text.encode()))))

    assert plain == gunzipped == ["600000001", "600000002"]


# Importing


def test_import_files_loads_a_gzip_file_and_records_the_import(tmp_path, robinson) -> None:
    # given a gzip file with a repeated number and a bad line
    text = "600000001\n600000002\n600000001\nnope\n"

    # when
    copy = load(tmp_path, robinson, text, gz=True, name="robinson.txt.gz", age=3)

    # then
    robinson.refresh_from_db()
    assert copy.state == SuppressionCopy.State.DONE
    assert (copy.lines_read, copy.good_lines, copy.bad_lines) == (4, 3, 1)
    assert copy.duplicate_lines == 1 and copy.entry_count == 2
    assert copy.bad_samples == [["", 4, "nope", copy.bad_samples[0][3]]]
    assert robinson.current_copy_id == copy.pk
    assert robinson.refreshed_at == days_ago(3) and robinson.entry_count == 2
    numbers = set(SuppressionNumber.objects.values_list("number", flat=True))
    assert numbers == {34600000001, 34600000002}
    entry = AuditEntry.objects.get(action="suppression.imported")
    assert entry.object_id == str(robinson.pk)
    assert entry.details["entries"] == 2 and entry.details["bad_lines"] == 1
    assert entry.details["refreshed_at"] == days_ago(3).isoformat()


def test_a_refresh_replaces_the_copy_and_deletes_the_old_entries(tmp_path, robinson) -> None:
    first = load(tmp_path, robinson, "600000001\n600000002\n", age=40)

    second = load(tmp_path, robinson, "600000003\n", age=1)

    robinson.refresh_from_db()
    first.refresh_from_db()
    assert robinson.current_copy_id == second.pk and robinson.entry_count == 1
    assert first.state == SuppressionCopy.State.REPLACED
    assert list(SuppressionNumber.objects.values_list("copy_id", "number")) == [
        (second.pk, 34600000003)
    ]


def test_a_file_without_a_good_line_fails_and_keeps_the_live_copy(tmp_path, robinson) -> None:
    live = load(tmp_path, robinson, "600000001\n")

    failed = load(tmp_path, robinson, "12ab\n34cd\n")

    robinson.refresh_from_db()
    assert failed.state == SuppressionCopy.State.FAILED and failed.failure_reason
    assert failed.bad_lines == 2
    assert robinson.current_copy_id == live.pk
    assert SuppressionNumber.objects.filter(copy_id=live.pk).count() == 1
    assert not SuppressionNumber.objects.filter(copy_id=failed.pk).exists()


def test_a_truncated_gzip_file_fails_without_touching_the_live_copy(tmp_path, robinson) -> None:
    live = load(tmp_path, robinson, "600000001\n")
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(b"600000002\n" * 1000)[:40])

    failed = import_files(suppression_list=robinson, refreshed_at=TODAY, paths=[path])

    robinson.refresh_from_db()
    assert failed.state == SuppressionCopy.State.FAILED
    assert robinson.current_copy_id == live.pk


def test_command_imports_and_reports_bad_lines(tmp_path, us_registry) -> None:
    path = write(tmp_path, "201.txt", "201,5550001\n2015550002\n201-555\n")
    out, err = io.StringIO(), io.StringIO()

    with translation.override("en"):
        call_command(
            "import_suppression_list",
            str(path),
            "--list",
            "US DNC",
            "--refreshed",
            days_ago(2).isoformat(),
            stdout=out,
            stderr=err,
        )

    us_registry.refresh_from_db()
    assert us_registry.entry_count == 2 and us_registry.refreshed_at == days_ago(2)
    assert "line 3: “201-555”" in err.getvalue()
    assert "2 entries" in out.getvalue()


def test_command_refuses_an_unknown_list(tmp_path, us_registry) -> None:
    path = write(tmp_path, "a.txt", "2015550001\n")

    with pytest.raises(CommandError, match="US DNC"):
        call_command(
            "import_suppression_list", str(path), "--list", "Nope", "--refreshed", "2026-01-01"
        )


# Starting


def test_a_stale_list_refuses_a_start_naming_the_list_and_its_age(
    tmp_path, robinson, marketing
) -> None:
    load(tmp_path, robinson, "699999999\n", age=45)

    with translation.override("en"), pytest.raises(CampaignStateError) as excinfo:
        start_campaign(campaign=marketing)

    assert "Lista Robinson copy (“Robinson”) is 45 days old; ES-5 allows 30" in str(excinfo.value)
    marketing.refresh_from_db()
    assert marketing.state == "draft"


def test_a_fresh_list_lets_a_marketing_campaign_start(tmp_path, robinson, marketing) -> None:
    load(tmp_path, robinson, "699999999\n", age=30)

    start_campaign(campaign=marketing)

    assert marketing.state == "running"


def test_the_robinson_age_is_a_policy_setting(tmp_path, robinson, marketing, settings) -> None:
    settings.SUPPRESSION_ROBINSON_MAX_AGE_DAYS = 10
    load(tmp_path, robinson, "699999999\n", age=11)

    with translation.override("en"), pytest.raises(CampaignStateError, match="allows 10"):
        start_campaign(campaign=marketing)


def test_a_missing_list_refuses_a_start(marketing) -> None:
    with translation.override("en"), pytest.raises(CampaignStateError, match="No Lista Robinson"):
        start_campaign(campaign=marketing)


def test_the_us_registry_allows_31_days(tmp_path, us_registry, marketing) -> None:
    marketing.compliance_profile = Campaign.ComplianceProfile.US
    marketing.save(update_fields=["compliance_profile"])
    load(tmp_path, us_registry, "2015550001\n", age=32)

    with translation.override("en"), pytest.raises(CampaignStateError, match="32 days old; US-9"):
        start_campaign(campaign=marketing)


def test_a_service_campaign_needs_no_list(campaign) -> None:
    campaign.caller_number = "+34910000000"
    campaign.save(update_fields=["caller_number"])
    add_contact(campaign=campaign, phone="+34600000001", variables={"first_name": "Ana"})

    start_campaign(campaign=campaign)

    assert campaign.state == "running"


def test_beat_does_not_start_a_scheduled_campaign_with_a_stale_list(
    tmp_path, robinson, marketing
) -> None:
    # given a marketing campaign scheduled while its list was fresh, now stale
    load(tmp_path, robinson, "699999999\n", age=1)
    marketing.starts_at = timezone.now() + datetime.timedelta(hours=1)
    marketing.save(update_fields=["starts_at"])
    start_campaign(campaign=marketing)
    SuppressionList.objects.filter(pk=robinson.pk).update(refreshed_at=days_ago(60))

    # when its start comes
    later = timezone.now() + datetime.timedelta(hours=2)
    with translation.override("en"):
        counts = advance_campaigns(now=later)

    # then it stays scheduled, saying why
    marketing.refresh_from_db()
    assert counts["started"] == 0
    assert marketing.state == "scheduled"
    age = (timezone.localdate(later) - days_ago(60)).days
    assert f"{age} days old; ES-5 allows 30" in marketing.state_reason


# Eligibility


def test_a_contact_on_the_list_is_not_dialled_and_the_reason_names_the_list(
    tmp_path, robinson, marketing
) -> None:
    load(tmp_path, robinson, "600000001\n")
    marketing.state = Campaign.State.RUNNING
    marketing.save(update_fields=["state"])
    listed, other = marketing.contacts.order_by("phone")

    with translation.override("en"):
        verdict = eligibility_for(contact=listed)
        batch = eligibilities(contacts=[listed, other])

    assert ReasonCode.SUPPRESSION_LIST in verdict.codes
    assert verdict.next_possible_at is None
    assert any(
        "Robinson" in reason.message and "ES-5" in reason.message for reason in verdict.reasons
    )
    assert ReasonCode.SUPPRESSION_LIST in batch[listed.pk].codes
    assert ReasonCode.SUPPRESSION_LIST not in batch[other.pk].codes


def test_a_hashed_list_matches_any_normalisation(tmp_path, hashed_robinson, marketing) -> None:
    # given digests of the national form of one number and the E.164 form of another
    national = hashlib.sha256(b"600000001").hexdigest()
    e164 = hashlib.sha256(b"+34600000002").hexdigest()
    load(tmp_path, hashed_robinson, f"{national}\n{e164}\n")
    first, second = marketing.contacts.order_by("phone")

    found = listings(contacts=[first, second])

    assert set(found) == {first.pk, second.pk}
    assert found[first.pk][0].list_name == "Robinson (hashed)"
    assert SuppressionDigest.objects.count() == 2


def test_a_hashed_list_with_a_set_normalisation_reads_only_that(
    tmp_path, hashed_robinson, marketing
) -> None:
    hashed_robinson.hash_input = "digits"
    hashed_robinson.save(update_fields=["hash_input"])
    load(tmp_path, hashed_robinson, hashlib.sha256(b"600000001").hexdigest() + "\n")

    assert listings(contacts=list(marketing.contacts.all())) == {}


def test_batch_lookups_take_a_fixed_number_of_queries(
    tmp_path, robinson, hashed_robinson, marketing, django_assert_num_queries
) -> None:
    load(tmp_path, robinson, "600000001\n")
    load(tmp_path, hashed_robinson, hashlib.sha256(b"600000002").hexdigest() + "\n")
    for index in range(3, 40):
        add_contact(campaign=marketing, phone=f"+346000000{index:02d}")
    contacts = list(marketing.contacts.select_related("campaign"))

    with django_assert_num_queries(3):  # the lists, their numbers, their digests
        found = listings(contacts=contacts)

    assert len(found) == 2


def test_consent_exempts_a_listed_contact(tmp_path, robinson, marketing) -> None:
    load(tmp_path, robinson, "600000001\n")
    contact = marketing.contacts.get(phone="+34600000001")
    now = timezone.now()
    # The basis fields come with the consent work; set here as that branch stores them.
    contact.legal_basis = "consent"
    contact.basis_withdrawn_at = None
    contact.basis_expires_at = now + datetime.timedelta(days=1)

    verdict = eligibility_for(contact=contact)

    assert ReasonCode.SUPPRESSION_LIST not in verdict.codes
    contact.basis_expires_at = now - datetime.timedelta(days=1)
    assert not basis_exempts(contact=contact, exempt_bases=("consent",), now=now)
    contact.basis_expires_at, contact.basis_withdrawn_at = None, now
    assert not basis_exempts(contact=contact, exempt_bases=("consent",), now=now)
    contact.legal_basis = "customer"
    contact.basis_withdrawn_at = None
    assert not basis_exempts(contact=contact, exempt_bases=("consent",), now=now)


def test_a_service_campaign_dials_listed_numbers(tmp_path, robinson, campaign) -> None:
    load(tmp_path, robinson, "600000001\n")
    contact, _created = add_contact(
        campaign=campaign, phone="+34600000001", variables={"first_name": "A"}
    )

    assert ReasonCode.SUPPRESSION_LIST not in eligibility_for(contact=contact).codes


@pytest.mark.parametrize("hashed", [False, True])
def test_count_blocked_counts_listed_contacts(tmp_path, robinson, marketing, hashed) -> None:
    if hashed:
        robinson.file_format = "sha256"
        robinson.save(update_fields=["file_format"])
        load(tmp_path, robinson, hashlib.sha256(b"600000001").hexdigest() + "\n")
    else:
        load(tmp_path, robinson, "600000001\n")

    blocked = count_blocked(campaign=marketing, contacts=marketing.contacts.all())

    assert (blocked.total, blocked.blocked, blocked.suppressed) == (2, 1, 1)
    with translation.override("en"):
        assert "1 is on a national suppression list" in blocked.describe()


# The staff console


def test_admin_upload_imports_in_the_background(
    admin_client, robinson, django_capture_on_commit_callbacks
) -> None:
    upload = SimpleUploadedFile("robinson.gz", gzip.compress(b"600000001\n600000002\nbad\n"))

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            reverse("admin:campaigns_suppressioncopy_add"),
            {
                "suppression_list": robinson.pk,
                "refreshed_at": days_ago(2).isoformat(),
                "upload": upload,
            },
        )

    # the upload is stored and queued, not yet live
    copy = SuppressionCopy.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:campaigns_suppressioncopy_change", args=[copy.pk])
    assert copy.state == SuppressionCopy.State.PENDING and len(callbacks) == 1
    robinson.refresh_from_db()
    assert robinson.current_copy_id is None

    # the task imports it (and a second run finds nothing to do)
    result = import_suppression_copy_task(copy.pk)
    again = import_suppression_copy_task(copy.pk)

    robinson.refresh_from_db()
    assert result == {"state": "done", "lines": 3, "entries": 2, "bad": 1}
    assert again["state"] == "done"
    assert robinson.current_copy_id == copy.pk and robinson.entry_count == 2
    page = admin_client.get(reverse("admin:campaigns_suppressioncopy_change", args=[copy.pk]))
    assert page.status_code == 200 and "bad" in page.content.decode()
    listing = admin_client.get(reverse("admin:campaigns_suppressionlist_changelist"))
    assert listing.status_code == 200


def test_admin_refuses_a_future_download_date(admin_client, robinson) -> None:
    upload = SimpleUploadedFile("robinson.txt", b"600000001\n")

    response = admin_client.post(
        reverse("admin:campaigns_suppressioncopy_add"),
        {
            "suppression_list": robinson.pk,
            "refreshed_at": (TODAY + datetime.timedelta(days=1)).isoformat(),
            "upload": upload,
        },
    )

    assert response.status_code == 200
    assert "refreshed_at" in response.context["adminform"].form.errors
    assert not SuppressionCopy.objects.exists()


def test_dispatch_closes_a_listed_contact_and_calls_the_others(
    tmp_path, robinson, marketing, settings
) -> None:
    # given a running marketing campaign, one of its contacts on the Lista Robinson
    settings.TWILIO_MAX_CPS = 100
    settings.DATA_DIR = tmp_path
    noon = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)  # a Wednesday
    load(tmp_path, robinson, "600000001\n")
    marketing.state = Campaign.State.RUNNING
    marketing.save(update_fields=["state"])
    marketing.contacts.update(time_zone="Europe/Madrid")
    SuppressionList.objects.filter(pk=robinson.pk).update(refreshed_at=noon.date())

    # when
    with translation.override("en"):
        result = dispatch(now=noon)

    # then the listed contact is closed with the list named, the other one called
    listed = marketing.contacts.get(phone="+34600000001")
    assert result.closed == 1 and len(result.created) == 1
    assert listed.state == "failed" and "Robinson" in listed.state_reason
    assert list(Call.objects.values_list("to_number", flat=True)) == ["+34600000002"]
