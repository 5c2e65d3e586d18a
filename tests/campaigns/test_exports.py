"""Contacts out as CSV and XLSX, with their state and every reason they may not be called
now: from the partner API (filtered, each partner its own, streamed) and the admin's list."""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

import openpyxl
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from callcenter import exports
from calls.models import Call
from campaigns.eligibility import ReasonCode, eligibility_for
from campaigns.models import Campaign, ComplianceProfile, Contact, Partner
from tests.factories import CallFactory, CallTemplateFactory, ContactFactory, DoNotCallFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/contacts/export/"
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def campaign_of(partner: Partner, name: str, **fields: Any) -> Campaign:
    template = CallTemplateFactory(
        partner=partner,
        name=f"Guion {name}",
        greeting="Hola {{ first_name }}. Le llamamos de {{ partner }}.",
        variables={"first_name": "Lucía"},
    )
    # No calling hours: the verdicts do not hang on the time of day the tests run.
    fields.setdefault("compliance_profile", ComplianceProfile.NONE)
    return Campaign.objects.create(partner=partner, name=name, template=template, **fields)


@pytest.fixture
def spring(api_partner: Partner) -> Campaign:
    return campaign_of(api_partner, "Spring")


@pytest.fixture
def rival(other_api_partner: Partner) -> Campaign:
    return campaign_of(other_api_partner, "Rival")


def call(contact: Contact, attempt: int, status: str, **fields: Any) -> Call:
    return CallFactory(contact=contact, attempt=attempt, status=status, **fields)


def body(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(body(response).decode())))


def verdict_words(contact: Contact) -> str:
    """What the contact's page in the API says against calling it, as the export joins it."""
    with translation.override("en"), timezone.override(datetime.UTC):
        eligibility = eligibility_for(contact=Contact.objects.with_campaign().get(pk=contact.pk))
    return "; ".join(reason.message for reason in eligibility.reasons)


def test_contact_export_has_each_contacts_state_last_call_and_why_it_is_not_called(
    api_client, spring
) -> None:
    # given a contact waiting for a retry after two calls, one missing its name and on the
    # do-not-call list, and one that was done with; the campaign is a draft
    retry_at = timezone.now() + datetime.timedelta(hours=2)
    waiting = ContactFactory(
        campaign=spring,
        phone="+34600000001",
        external_id="crm-1",
        variables={"first_name": "Ana", "city": "Soria"},
        state=Contact.State.RETRY,
        attempts=2,
        next_attempt_at=retry_at,
        state_reason="no answer",
    )
    call(waiting, 1, Call.Status.BUSY)
    last = call(waiting, 2, Call.Status.NO_ANSWER, dialed_at=timezone.now())
    nameless = ContactFactory(campaign=spring, phone="+34600000002")
    DoNotCallFactory(partner=spring.partner, phone=nameless.phone)
    done = ContactFactory(
        campaign=spring, phone="+34600000003", state=Contact.State.DONE, attempts=1
    )

    # when the partner exports its contacts
    rows = csv_rows(api_client.get(URL, **ENGLISH))

    # then a row per contact by id, with its variables, state, last call and verdict
    assert [row["contact id"] for row in rows] == [str(c.pk) for c in (waiting, nameless, done)]
    assert list(rows[0]).index("variable: first_name") < list(rows[0]).index("variable: city")
    first = rows[0]
    assert first["campaign id"] == str(spring.pk)
    assert first["campaign"] == "Spring"
    assert first["phone"] == "'+34600000001"
    assert first["external id"] == "crm-1"
    assert first["variable: first_name"] == "Ana"
    assert first["state"] == "retry"
    assert first["state reason"] == "no answer"
    assert first["attempts"] == "2"
    assert first["last call id"] == str(last.pk)
    assert first["last call status"] == "no-answer"
    assert first["next attempt at (UTC)"] == retry_at.isoformat().replace("+00:00", "Z")
    assert first["may be called now"] == "false"
    assert first["why not (codes)"].split() == [
        ReasonCode.CAMPAIGN_NOT_RUNNING,
        ReasonCode.RETRY_NOT_DUE,
    ]
    assert first["why not"] == verdict_words(waiting)
    assert first["next possible call (UTC)"] == ""  # a draft waits for staff
    second = rows[1]
    assert second["variable: first_name"] == ""
    assert second["last call id"] == ""
    assert second["why not (codes)"].split() == [
        ReasonCode.CAMPAIGN_NOT_RUNNING,
        ReasonCode.DO_NOT_CALL,
        ReasonCode.MISSING_VARIABLE,
    ]
    assert second["why not"] == verdict_words(nameless)
    assert rows[2]["state"] == "done"
    assert ReasonCode.CONTACT_STATE in rows[2]["why not (codes)"].split()


def test_contact_export_says_when_a_contact_may_be_called(api_client, spring) -> None:
    Campaign.objects.filter(pk=spring.pk).update(state=Campaign.State.RUNNING)
    ContactFactory(campaign=spring, phone="+34600000001", variables={"first_name": "A"})

    [row] = csv_rows(api_client.get(URL, **ENGLISH))

    assert row["may be called now"] == "true"
    assert row["why not"] == row["why not (codes)"] == ""
    assert row["next possible call (UTC)"].endswith("Z")


def test_contact_export_takes_campaign_state_search_and_ordering(api_client, api_partner):
    # given contacts of two campaigns
    spring = campaign_of(api_partner, "Spring")
    autumn = campaign_of(api_partner, "Autumn")
    ana = ContactFactory(campaign=spring, phone="+34600000001", attempts=2)
    bea = ContactFactory(
        campaign=spring, phone="+34600000002", state=Contact.State.DONE, external_id="b-1"
    )
    eva = ContactFactory(campaign=autumn, phone="+34600000003", attempts=1)

    def exported(**query: Any) -> list[int]:
        return [int(row["contact id"]) for row in csv_rows(api_client.get(URL, query, **ENGLISH))]

    assert exported() == [ana.pk, bea.pk, eva.pk]
    assert exported(campaign=spring.pk) == [ana.pk, bea.pk]
    assert exported(state="done") == [bea.pk]
    assert exported(state=["done", "pending"], campaign=autumn.pk) == [eva.pk]
    assert exported(external_id="b-1") == [bea.pk]
    assert exported(search="600 000 003") == [eva.pk]
    assert exported(ordering="-attempts") == [ana.pk, eva.pk, bea.pk]


def test_contact_export_gives_each_partner_only_its_own_contacts(
    api_client, other_api_client, spring, rival
) -> None:
    own = ContactFactory(campaign=spring, phone="+34600000001")
    theirs = ContactFactory(campaign=rival, phone="+34600000001", variables={"their_secret": "x"})

    ours = csv_rows(api_client.get(URL, **ENGLISH))
    others = csv_rows(other_api_client.get(URL, **ENGLISH))

    assert [row["contact id"] for row in ours] == [str(own.pk)]
    assert [row["contact id"] for row in others] == [str(theirs.pk)]
    assert "variable: their_secret" not in ours[0]
    refused = api_client.get(URL, {"campaign": rival.pk})
    assert refused.status_code == 400
    assert [error["field"] for error in refused.json()["errors"]] == ["campaign"]


def test_contact_export_for_staff_names_each_partner(staff_api_client, spring, rival) -> None:
    ContactFactory(campaign=spring, phone="+34600000001")
    ContactFactory(campaign=rival, phone="+34600000002")

    rows = csv_rows(staff_api_client.get(URL, **ENGLISH))

    assert [row["partner"] for row in rows] == ["Initech", "Umbrella"]


def test_contact_export_makes_hostile_cells_harmless(api_client, spring) -> None:
    # given a contact whose data was written to attack a spreadsheet
    ContactFactory(
        campaign=spring,
        phone="+34600000001",
        external_id="=cmd|' /C calc'!A0",
        variables={"first_name": "@SUM(A1:A9)", "note": "-1+1", "tab": "\t=1"},
        state_reason="+HYPERLINK(1)",
    )

    csv_response = api_client.get(URL, **ENGLISH)
    xlsx_response = api_client.get(URL, {"format": "xlsx"}, **ENGLISH)

    # then no CSV cell starts as a formula, and every XLSX text is a text cell
    lines = list(csv.reader(io.StringIO(body(csv_response).decode())))
    assert not [cell for line in lines for cell in line if cell.startswith(FORMULA_STARTS)]
    row = dict(zip(lines[0], lines[1], strict=True))
    assert row["external id"] == "'=cmd|' /C calc'!A0"
    assert row["variable: first_name"] == "'@SUM(A1:A9)"
    assert row["state reason"] == "'+HYPERLINK(1)"
    assert xlsx_response["Content-Type"] == XLSX
    sheet = openpyxl.load_workbook(io.BytesIO(body(xlsx_response))).active
    cells = {header.value: cell for header, cell in zip(*sheet.iter_rows(), strict=True)}
    assert cells["external id"].value == "=cmd|' /C calc'!A0"
    assert cells["external id"].data_type == "s"
    assert cells["phone"].value == "+34600000001"
    assert cells["may be called now"].value is False


def test_contact_export_reads_contacts_in_chunks_of_a_few_queries_each(
    api_client, spring, monkeypatch
) -> None:
    monkeypatch.setattr(exports, "CHUNK_ROWS", 3)
    numbers = iter(range(1, 100))

    def add_contacts(count: int) -> None:
        for _n in range(count):
            contact = ContactFactory(campaign=spring, phone=f"+346000000{next(numbers):02d}")
            call(contact, 1, Call.Status.NO_ANSWER, dialed_at=timezone.now())

    def queries() -> int:
        api_client.get(URL)  # the key's "last used" moment is written once a minute
        with CaptureQueriesContext(connection) as captured:
            body(api_client.get(URL))
        return len(captured.captured_queries)

    add_contacts(3)
    one_chunk = queries()
    add_contacts(6)
    three_chunks = queries()

    # its verdicts' facts (three) and its last calls (one), whatever its contacts
    assert three_chunks == one_chunk + 2 * 4


def test_contact_export_is_named_for_its_partner_campaign_and_day(api_client, spring) -> None:
    response = api_client.get(URL, {"campaign": spring.pk, "format": "xlsx"})
    body(response)

    day = timezone.now().astimezone(datetime.UTC).date().isoformat()
    assert response["Content-Disposition"] == (
        f'attachment; filename="contacts-initech-campaign-{spring.pk}-{day}.xlsx"'
    )


# --- The admin ------------------------------------------------------------------------------


@pytest.fixture
def viewer(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    return client


ADMIN_EXPORT = "/admin/campaigns/contact/export/"


def test_admin_contact_list_offers_the_export_without_transcripts(viewer, spring) -> None:
    page = viewer.get(reverse("admin:campaigns_contact_changelist"), {"state__exact": "done"})

    content = page.content.decode()
    assert f'action="{ADMIN_EXPORT}"' in content
    assert '<input type="hidden" name="state__exact" value="done">' in content
    assert 'name="transcript"' not in content


def test_admin_contact_export_takes_the_lists_filters_and_search(viewer, spring, rival) -> None:
    ana = ContactFactory(campaign=spring, phone="+34600000001", state=Contact.State.DONE)
    bea = ContactFactory(campaign=spring, phone="+34600000002")
    eva = ContactFactory(campaign=rival, phone="+34600000003", state=Contact.State.DONE)

    def exported(query: dict[str, Any]) -> list[int]:
        response = viewer.get(ADMIN_EXPORT, query, **ENGLISH)
        return [int(row["contact id"]) for row in csv_rows(response)]

    # in the list's order: by campaign, the newest first (as campaigns are ordered)
    assert exported({"state__exact": "done"}) == [eva.pk, ana.pk]
    assert exported({"state__exact": "done", "o": "0"}) == [ana.pk, eva.pk]  # by phone
    assert exported({"q": "600 000 003"}) == [eva.pk]
    assert exported({"campaign__partner__id__exact": spring.partner_id}) == [ana.pk, bea.pk]


def test_admin_contact_export_as_xlsx_names_the_partner(viewer, spring) -> None:
    ContactFactory(campaign=spring, phone="+34600000001")

    response = viewer.get(ADMIN_EXPORT, {"format": "xlsx"}, **ENGLISH)

    assert response["Content-Type"] == XLSX
    sheet = openpyxl.load_workbook(io.BytesIO(body(response))).active
    row = {header.value: cell.value for header, cell in zip(*sheet.iter_rows(), strict=True)}
    assert row["partner"] == "Initech"
    assert row["phone"] == "+34600000001"


def test_admin_contact_export_refuses_a_format_it_does_not_write(viewer) -> None:
    assert viewer.get(ADMIN_EXPORT, {"format": "pdf"}).status_code == 400
