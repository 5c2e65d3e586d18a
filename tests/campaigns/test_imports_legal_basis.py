"""Legal basis columns in contact imports (CSV and JSON rows) and API fields: bad values
are rejected naming the row, field and value, good rows land with their basis, audited."""

from __future__ import annotations

import datetime
import io

import pytest
from django.db import connection

from audit.models import AuditEntry
from audit.services import subject_hash
from campaigns.imports import import_csv, import_rows
from campaigns.models import Contact
from campaigns.services import add_contact, opt_out_contact
from tests.factories import CampaignFactory, ContactFactory

pytestmark = pytest.mark.django_db

HEADER = (
    "phone,first_name,legal_basis,consent_source,consent_at,consent_text,consent_scope,"
    "basis_expires_at\n"
)


def csv_file(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action="contact.basis_changed").order_by("seq"))


@pytest.fixture
def madrid(settings) -> None:
    settings.TIME_ZONE = "Europe/Madrid"


def test_import_csv_keeps_good_bases_and_names_each_bad_value(campaign, madrid) -> None:
    text = HEADER + (
        # row 2: full consent, naive time read in Madrid
        "600000002,Ana,consent,web example.com/alta,2026-01-10T10:00,Acepto llamadas,fibra,"
        "2028-01-10\n"
        # row 3: Spanish kind, a date
        "600000003,Eva,Consentimiento,papel,2026-02-01,Acepto,,\n"
        # row 4: an unknown kind
        "600000004,Leo,maybe,,,,,\n"
        # row 5: consent without its time and wording
        "600000005,Sol,consent,web,,,,\n"
        # row 6: a time that is not one
        "600000006,Gil,consent,web,31/01/2026,Acepto,,\n"
        # row 7: expiring before it was obtained
        "600000007,Paz,consent,web,2026-01-10,Acepto,,2025-01-01\n"
        # row 8: no basis at all, kept without one
        "600000008,Rui,,,,,,\n"
        # row 9: a customer relationship
        "600000009,Teo,customer,CRM,,,,\n"
    )

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert (result.created, result.rejected) == (4, 4)
    errors = {(error.row, error.field, error.value) for error in result.errors}
    assert errors == {
        (4, "legal_basis", "maybe"),
        (5, "basis_obtained_at", ""),
        (5, "basis_wording", ""),
        (6, "basis_obtained_at", "31/01/2026"),
        (7, "basis_expires_at", "2025-01-01"),
    }
    contacts = {contact.phone: contact for contact in Contact.objects.all()}
    ana = contacts["+34600000002"]
    assert (ana.legal_basis, ana.basis_source, ana.basis_wording, ana.basis_scope) == (
        "consent",
        "web example.com/alta",
        "Acepto llamadas",
        "fibra",
    )
    assert ana.basis_obtained_at == datetime.datetime(2026, 1, 10, 9, 0, tzinfo=datetime.UTC)
    assert ana.basis_expires_at == datetime.datetime(2028, 1, 9, 23, 0, tzinfo=datetime.UTC)
    assert contacts["+34600000003"].legal_basis == "consent"
    assert contacts["+34600000008"].legal_basis == ""
    assert contacts["+34600000009"].legal_basis == "customer"
    # one audit entry per basis saved, none for the row without one
    audited = entries()
    assert {entry.subject for entry in audited} == {
        subject_hash(phone) for phone in ("+34600000002", "+34600000003", "+34600000009")
    }
    assert all(entry.details["via"] == "import" for entry in audited)
    assert all("Acepto" not in str(entry.details) for entry in audited)


def test_import_csv_basis_replaces_the_existing_one_and_keeps_a_withdrawal(campaign) -> None:
    kept, _ = add_contact(
        campaign=campaign,
        phone="+34600000002",
        basis={
            "legal_basis": "consent",
            "basis_source": "web",
            "basis_obtained_at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
            "basis_wording": "Acepto",
        },
    )
    now = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)
    opt_out_contact(contact=kept, reason="no", now=now)
    changed = ContactFactory(campaign=campaign, phone="+34600000003")
    before = len(entries())
    text = HEADER + (
        "600000002,Ana,customer,CRM,,,,\n"  # a customer basis: the withdrawal stands
        "600000003,Eva,consent,web,2026-02-01,Acepto,,\n"
    )

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert (result.created, result.merged, result.rejected) == (0, 2, 0)
    kept.refresh_from_db()
    changed.refresh_from_db()
    assert (kept.legal_basis, kept.basis_withdrawn_at) == ("customer", now)
    assert kept.variables["first_name"] == "Ana"
    assert changed.legal_basis == "consent"
    assert len(entries()) == before + 2


def test_import_csv_without_basis_columns_leaves_bases_alone(campaign) -> None:
    ContactFactory(
        campaign=campaign, phone="+34600000002", legal_basis="customer", basis_source="CRM"
    )

    import_csv(campaign=campaign, file=csv_file("phone,first_name\n600000002,Ana\n"))

    assert Contact.objects.get().legal_basis == "customer"
    assert entries() == []


def test_import_rows_json_basis(campaign) -> None:
    rows = [
        {
            "phone": "600000001",
            "legal_basis": "consent",
            "basis_source": "web",
            "basis_obtained_at": "2026-01-10T10:00:00+01:00",
            "basis_wording": "Acepto",
        },
        {"phone": "600000002", "legal_basis": 3},
        {"phone": "600000003", "basis_source": "web"},
    ]

    result = import_rows(campaign=campaign, rows=rows)

    assert result.created == 1
    assert {(error.row, error.field) for error in result.errors} == {
        (2, "legal_basis"),
        (3, "basis_source"),
    }
    contact = Contact.objects.get()
    assert contact.legal_basis == "consent"
    assert "legal_basis" not in contact.variables  # a field, not a variable
    assert len(entries()) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL insert path")
def test_import_csv_basis_through_the_set_based_insert(partner) -> None:
    # an empty campaign: rows go through the plain INSERT ... SELECT of the batch
    campaign = CampaignFactory(partner=partner, name="Empty")
    text = HEADER + "".join(
        f"6000000{index:02d},N,consent,web,2026-01-10,Acepto,,\n" for index in range(10)
    )

    result = import_csv(campaign=campaign, file=csv_file(text))

    assert result.created == 10
    assert set(Contact.objects.values_list("legal_basis", flat=True)) == {"consent"}
    assert len(entries()) == 10


# --- API -----------------------------------------------------------------------------------


@pytest.fixture
def api_campaign(api_partner):
    from tests.factories import CallTemplateFactory

    template = CallTemplateFactory(partner=api_partner, name="T")
    return CampaignFactory(partner=api_partner, name="Spring", template=template)


def test_api_add_contact_with_consent_and_refuse_a_bad_basis(api_client, api_campaign) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/contacts/"

    good = api_client.post(
        url,
        {
            "phone": "915000001",
            "legal_basis": "consent",
            "basis_source": "web",
            "basis_obtained_at": "2026-01-10",
            "basis_wording": "Acepto",
        },
        format="json",
    )
    bad = api_client.post(
        url,
        {"phone": "915000002", "legal_basis": "consent", "basis_obtained_at": "yesterday"},
        format="json",
    )
    incomplete = api_client.post(
        url, {"phone": "915000003", "legal_basis": "consent"}, format="json"
    )

    assert good.status_code == 201, good.content
    assert good.json()["legal_basis"] == "consent"
    assert good.json()["basis_obtained_at"].startswith("2026-01-")
    assert bad.status_code == 400
    assert {error["field"] for error in bad.json()["errors"]} == {"basis_obtained_at"}
    assert incomplete.status_code == 400
    assert {error["field"] for error in incomplete.json()["errors"]} == {
        "basis_obtained_at",
        "basis_source",
        "basis_wording",
    }
    assert Contact.objects.count() == 1
    (entry,) = entries()
    assert entry.actor_type == "partner"
    assert entry.partner_id == api_campaign.partner_id


def test_api_patch_withdraws_the_basis_and_detail_says_why_not(api_client, api_campaign) -> None:
    api_campaign.purpose = "marketing"
    api_campaign.save()
    contact = ContactFactory(
        campaign=api_campaign,
        phone="+34915000001",
        legal_basis="consent",
        basis_source="web",
        basis_obtained_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        basis_wording="Acepto",
    )

    patched = api_client.patch(
        f"/api/v1/contacts/{contact.pk}/",
        {"basis_withdrawn_at": "2026-02-01T00:00:00Z"},
        format="json",
    )
    refused = api_client.patch(
        f"/api/v1/contacts/{contact.pk}/", {"basis_expires_at": "2025-01-01"}, format="json"
    )

    assert patched.status_code == 200, patched.content
    codes = [reason["code"] for reason in patched.json()["eligibility"]["reasons"]]
    assert "basis_withdrawn" in codes
    assert refused.status_code == 400
    assert {error["field"] for error in refused.json()["errors"]} == {"basis_expires_at"}
    (entry,) = entries()
    assert entry.details["new"]["withdrawn_at"] == "2026-02-01T00:00:00+00:00"


def test_api_campaign_purpose_field(api_client, api_campaign) -> None:
    url = f"/api/v1/campaigns/{api_campaign.pk}/"

    shown = api_client.get(url)
    changed = api_client.patch(url, {"purpose": "marketing"}, format="json")
    refused = api_client.patch(url, {"purpose": "spam"}, format="json")

    assert shown.json()["purpose"] == "service"
    assert changed.status_code == 200, changed.content
    assert changed.json()["purpose"] == "marketing"
    assert refused.status_code == 400
    assert {error["field"] for error in refused.json()["errors"]} == {"purpose"}
