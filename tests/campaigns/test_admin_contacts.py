"""The staff console's contacts, contact imports and do-not-call list: importing a CSV file
from a campaign, a contact's page (why it may not be called now), finding contacts by any
spelling of their number, and adding numbers to a do-not-call list in bulk."""

from __future__ import annotations

import csv
import datetime
import io
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls.models import Call
from campaigns.models import (
    Campaign,
    ComplianceProfile,
    Contact,
    ContactImport,
    ContactImportError,
    DoNotCall,
)
from campaigns.tasks import import_contacts_task
from tests.factories import (
    CallFactory,
    CampaignFactory,
    ContactFactory,
    ContactImportFactory,
    DoNotCallFactory,
    PartnerFactory,
)

pytestmark = pytest.mark.django_db

ENGLISH = {"accept-language": "en"}
SPANISH = {"accept-language": "es"}
GOOD_AND_BAD = b"phone,first_name\n612 345 678,Ana\nnot-a-phone,Eva\n+34 699 000 111,Luis\n"
IMPORT_ADD = reverse("admin:campaigns_contactimport_add")
CONTACTS = reverse("admin:campaigns_contact_changelist")
DNC_LIST = reverse("admin:campaigns_donotcall_changelist")
DNC_BULK = reverse("admin:campaigns_donotcall_bulk_add")


def csv_file(content: bytes, name: str = "contacts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def staff_with(django_user_model, username: str, *codenames: str):
    """A staff user holding only the campaigns permissions named."""
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="campaigns", codename__in=codenames)
    )
    return user


def report_url(contact_import: ContactImport) -> str:
    return reverse("admin:campaigns_contactimport_change", args=[contact_import.pk])


def upload(client, campaign: Campaign, content: bytes, name: str = "contacts.csv", **extra):
    return client.post(
        f"{IMPORT_ADD}?campaign={campaign.pk}",
        {"campaign": campaign.pk, "upload": csv_file(content, name)},
        headers=ENGLISH,
        **extra,
    )


# --- Imports ------------------------------------------------------------------------------


def test_import_page_preselects_the_campaign_of_the_link(admin_client, campaign) -> None:
    response = admin_client.get(f"{IMPORT_ADD}?campaign={campaign.pk}", headers=ENGLISH)

    page = response.content.decode()
    assert response.status_code == 200
    assert re.search(rf'<option value="{campaign.pk}" selected>Spring</option>', page)
    assert 'type="file" name="upload"' in page
    assert 'enctype="multipart/form-data"' in page


def test_import_page_ignores_a_campaign_that_is_no_key(admin_client) -> None:
    response = admin_client.get(f"{IMPORT_ADD}?campaign=spring")

    assert response.status_code == 200
    assert " selected>" not in response.content.decode()


def test_import_of_a_small_file_is_done_when_its_report_opens(
    admin_client, admin_user, campaign, django_capture_on_commit_callbacks
) -> None:
    # given
    ContactFactory(campaign=campaign, phone="+34699000111", variables={"plan": "gold"})

    # when staff upload a file with a bad row among good ones
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_client, campaign, GOOD_AND_BAD)

    # then it is imported at once, and its page is the report
    contact_import = ContactImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == report_url(contact_import)
    assert (contact_import.state, contact_import.file_name) == ("done", "contacts.csv")
    assert contact_import.created_by == admin_user
    assert set(campaign.contacts.values_list("phone", flat=True)) == {
        "+34612345678",
        "+34699000111",
    }
    assert campaign.contacts.get(phone="+34699000111").variables == {
        "plan": "gold",
        "first_name": "Luis",
    }
    report = admin_client.get(response["Location"], headers=ENGLISH)
    page = report.content.decode()
    assert report.status_code == 200
    assert '<strong data-progress="rows_read">3</strong>' in page
    assert '<strong data-progress="imported">2</strong>' in page
    assert '<strong data-progress="rejected">1</strong>' in page
    row = re.search(r'<tr class="import-rejected-row" data-row="3">(.*?)</tr>', page, re.S)
    cells = [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    assert cells[:3] == ["3", "phone", "not-a-phone"]
    assert "not a valid phone number" in cells[3]
    assert 'http-equiv="refresh"' not in page  # it is over: nothing to follow
    assert 'name="_save"' not in page  # a report, not a form


def test_import_of_a_large_file_runs_in_the_background_and_its_page_follows_it(
    admin_client, campaign, settings, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # given files over the limit of what is imported during the request
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 10
    queued: list[int] = []
    monkeypatch.setattr(import_contacts_task, "delay", queued.append)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_client, campaign, GOOD_AND_BAD)

    # then the worker is asked to import it, and its page shows it waiting, refreshing
    contact_import = ContactImport.objects.get()
    assert queued == [contact_import.pk]
    assert campaign.contacts.count() == 0
    page = admin_client.get(response["Location"], headers=ENGLISH).content.decode()
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page
    assert '<progress id="import-running"' in page
    assert "Queued" in page
    progress_url = reverse("admin:campaigns_contactimport_progress", args=[contact_import.pk])
    assert f'data-url="{progress_url}"' in page

    # when the worker runs it, the progress view says so
    import_contacts_task(contact_import.pk)
    progress = admin_client.get(progress_url, headers=ENGLISH).json()

    # then
    assert progress == {
        "state": "done",
        "state_label": "Done",
        "finished": True,
        "failure_reason": "",
        "rows_read": 3,
        "total_rows": 3,
        "imported": 2,
        "created": 2,
        "merged": 0,
        "rejected": 1,
        "flagged": 0,
        "imported_percent": 66.7,
        "rejected_percent": 33.3,
    }


def test_import_report_lists_the_rows_kept_without_a_variable_the_template_needs(
    admin_client, campaign, django_capture_on_commit_callbacks
) -> None:
    # given a file whose second and third contacts have no first name, which the template
    # speaks
    content = b"phone,first_name,plan\n612345678,Ana,gold\n612345679,,gold\n612345670\n"

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_client, campaign, content)

    # then they are imported, counted apart, and listed with the variable they lack
    page = admin_client.get(response["Location"], headers=ENGLISH).content.decode()
    assert campaign.contacts.count() == 3
    assert '<strong data-progress="imported">3</strong>' in page
    assert '<strong data-progress="flagged">2</strong>' in page
    assert '<li data-variable="first_name">first_name: 2 rows without it</li>' in page
    rows = re.findall(r'<tr class="import-flagged-row" data-row="(\d+)">(.*?)</tr>', page, re.S)
    assert [row for row, _cells in rows] == ["3", "4"]
    cells = [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", rows[0][1], re.S)]
    assert cells[:2] == ["3", "first_name"]
    assert cells[2].startswith("Missing variable first_name, which the call template needs")


def test_import_report_of_rows_with_every_variable_lists_none_kept_apart(
    admin_client, campaign, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_client, campaign, GOOD_AND_BAD)

    page = admin_client.get(response["Location"], headers=ENGLISH).content.decode()
    assert '<strong data-progress="flagged">0</strong>' in page
    assert 'id="import-flagged"' not in page


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("contacts.xlsx", GOOD_AND_BAD, "is not a CSV file"),
        ("contacts.csv", b"", "The submitted file is empty."),
        ("contacts.csv", b"   \n\n", "The file is empty."),
        ("contacts.csv", b"name,email\nAna,ana@example.com\n", "one of them the phone"),
        ("contacts.csv", b"phone,first_name\n", "no contacts in them"),
        ("contacts.csv", b"PK\x03\x04" + b"\x00" * 40, "spreadsheet workbook"),
    ],
    ids=["not-csv", "no-bytes", "blank", "wrong-columns", "header-only", "workbook"],
)
def test_import_refuses_a_file_that_cannot_be_imported(
    admin_client, campaign, name, content, message
) -> None:
    response = upload(admin_client, campaign, content, name)

    assert response.status_code == 200  # the form again, with the reason
    errors = " ".join(response.context["adminform"].form.errors["upload"])
    assert message in errors
    assert ContactImport.objects.count() == 0


def test_import_refuses_a_file_over_the_size_limit(admin_client, campaign, settings) -> None:
    settings.CONTACT_IMPORT_MAX_BYTES = 1024

    response = upload(admin_client, campaign, b"phone\n" + b"612345678\n" * 200)

    errors = response.context["adminform"].form.errors["upload"]
    assert errors == [
        "The file is 2.0\xa0KB; at most 1.0\xa0KB can be imported: split it in parts."
    ]
    assert ContactImport.objects.count() == 0


def test_import_refuses_a_campaign_that_is_over(admin_client, campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.COMPLETED)

    response = upload(admin_client, campaign, GOOD_AND_BAD)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["campaign"]
    assert ContactImport.objects.count() == 0


def test_import_needs_the_add_permission(client, django_user_model, campaign) -> None:
    # given staff who may see imports but not make one
    client.force_login(staff_with(django_user_model, "viewer", "view_contactimport"))

    # when
    page = client.get(f"{IMPORT_ADD}?campaign={campaign.pk}")
    post = upload(client, campaign, GOOD_AND_BAD)

    # then
    assert (page.status_code, post.status_code) == (403, 403)
    assert ContactImport.objects.count() == 0


def test_import_report_needs_the_view_permission(
    client, django_user_model, campaign, admin_user
) -> None:
    contact_import = ContactImportFactory(campaign=campaign, file_name="a.csv")
    urls = [
        report_url(contact_import),
        reverse("admin:campaigns_contactimport_progress", args=[contact_import.pk]),
        reverse("admin:campaigns_contactimport_rejected_rows", args=[contact_import.pk]),
    ]

    client.force_login(staff_with(django_user_model, "nobody"))
    refused = [client.get(url).status_code for url in urls]
    client.force_login(staff_with(django_user_model, "viewer", "view_contactimport"))
    allowed = [client.get(url).status_code for url in urls]

    assert refused == [403, 403, 403]
    assert allowed == [200, 200, 200]


def test_import_cannot_be_edited_nor_deleted_while_it_runs(admin_client, campaign) -> None:
    contact_import = ContactImportFactory(
        campaign=campaign, file_name="a.csv", state=ContactImport.State.RUNNING
    )
    delete_url = reverse("admin:campaigns_contactimport_delete", args=[contact_import.pk])

    edit = admin_client.post(report_url(contact_import), {"campaign": campaign.pk})
    delete = admin_client.post(delete_url, {"post": "yes"})

    assert (edit.status_code, delete.status_code) == (403, 403)
    assert ContactImport.objects.filter(pk=contact_import.pk).exists()


def test_rejected_rows_download_cannot_start_a_spreadsheet_formula(admin_client, campaign) -> None:
    # given rejected values a spreadsheet would run
    contact_import = ContactImportFactory(
        campaign=campaign, file_name="Lista de mayo.csv", state=ContactImport.State.DONE
    )
    for row, value in enumerate(['=HYPERLINK("http://x")', "+34 1", "-2+3", "@SUM(A1)", "ok"]):
        ContactImportError.objects.create(
            contact_import=contact_import, row=row + 2, field="phone", value=value, message="bad"
        )
    url = reverse("admin:campaigns_contactimport_rejected_rows", args=[contact_import.pk])

    # when
    response = admin_client.get(url, headers=ENGLISH)

    # then each such cell starts with a quote; the file opens in Excel as UTF-8
    text = response.content.decode("utf-8")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="rejected-rows-Lista de mayo.csv"' in response["Content-Disposition"]
    assert text.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(text.removeprefix("\ufeff")))) == [
        ["row", "field", "value", "message"],
        ["2", "phone", '\'=HYPERLINK("http://x")', "bad"],
        ["3", "phone", "'+34 1", "bad"],
        ["4", "phone", "'-2+3", "bad"],
        ["5", "phone", "'@SUM(A1)", "bad"],
        ["6", "phone", "ok", "bad"],
    ]


def test_import_report_of_a_failed_import_says_why(admin_client, campaign) -> None:
    contact_import = ContactImportFactory(
        campaign=campaign,
        file_name="a.csv",
        state=ContactImport.State.FAILED,
        failure_reason="Row 7 cannot be read as CSV.",
    )

    page = admin_client.get(report_url(contact_import), headers=ENGLISH).content.decode()

    assert '<p class="errornote" id="import-failure">Row 7 cannot be read as CSV.</p>' in page
    assert "No row was rejected." in page


def test_import_list_is_a_constant_number_of_queries(admin_client, campaign, admin_user) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert (
                admin_client.get(reverse("admin:campaigns_contactimport_changelist")).status_code
                == 200
            )
        return len(queries)

    ContactImportFactory(campaign=campaign, file_name="1.csv", created_by=admin_user)
    one = count_queries()
    for number in range(2, 7):
        ContactImportFactory(campaign=campaign, file_name=f"{number}.csv", created_by=admin_user)

    assert count_queries() == one


# --- Contacts -----------------------------------------------------------------------------


@pytest.fixture
def spanish_contacts(campaign) -> dict[str, Contact]:
    return {
        phone: ContactFactory(campaign=campaign, phone=phone, external_id=external_id)
        for phone, external_id in [("+34612345678", "CRM-1"), ("+34699000111", "CRM-2")]
    }


def listed(response) -> set[str]:
    return set(re.findall(r'class="field-phone"><a [^>]*>(\+\d+)</a>', response.content.decode()))


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("612 345 678", {"+34612345678"}),
        ("612345678", {"+34612345678"}),
        ("0034 612 345 678", {"+34612345678"}),
        ("+34612345678", {"+34612345678"}),
        ("+34 612-345-678", {"+34612345678"}),
        ("(+34) 612.345.678", {"+34612345678"}),
        ("0034 699", {"+34699000111"}),
        ("CRM-2", {"+34699000111"}),
        ("+34 6", {"+34612345678", "+34699000111"}),
        ("+44 20 7946 0000", set()),
    ],
)
def test_contact_search_finds_a_number_written_any_way(
    admin_client, spanish_contacts, term, expected
) -> None:
    response = admin_client.get(CONTACTS, {"q": term})

    assert response.status_code == 200
    assert listed(response) == expected


def test_contact_search_reads_a_number_in_its_campaign_region(
    admin_client, partner, call_template, spanish_contacts
) -> None:
    # given a French campaign, whose contacts' numbers staff write the French way
    french = CampaignFactory(
        partner=partner, name="Paris", template=call_template, phone_region="FR"
    )
    ContactFactory(campaign=french, phone="+33612345678")

    # when
    french_way = admin_client.get(CONTACTS, {"q": "06 12 34 56 78"})
    international = admin_client.get(CONTACTS, {"q": "+34 612 345 678"})

    # then the French way reads as the French number only (it is no Spanish number)
    assert listed(french_way) == {"+33612345678"}
    assert listed(international) == {"+34612345678"}


def test_contact_list_is_a_constant_number_of_queries(
    admin_client, partner, call_template, campaign
) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(CONTACTS).status_code == 200
        return len(queries)

    ContactFactory(campaign=campaign, phone="+34600000001")
    one = count_queries()
    for number in range(2, 8):
        other = CampaignFactory(
            partner=PartnerFactory(name=f"P{number}"),
            name=f"C{number}",
            template=call_template,
        )
        ContactFactory(campaign=other, phone=f"+3460000000{number}")

    assert count_queries() == one


def test_contact_page_says_in_spanish_why_it_cannot_be_called_now(admin_client, campaign) -> None:
    # given a contact of a draft campaign, whose number is on the do-not-call list
    contact = ContactFactory(
        campaign=campaign, phone="+34612345678", variables={"first_name": "Ana"}
    )
    DoNotCallFactory(partner=None, phone="+34612345678")

    # when
    response = admin_client.get(
        reverse("admin:campaigns_contact_change", args=[contact.pk]), headers=SPANISH
    )

    # then every reason is listed, in Spanish, and no time alone clears them
    page = response.content.decode()
    reasons = re.findall(r'<li data-code="([a-z_]+)">(.*?)</li>', page)
    assert ("campaign_not_running", "la campaña no está en curso (Borrador)") in reasons
    assert (
        "do_not_call",
        "el número +34612345678 está en una lista de exclusión",
    ) in reasons
    assert "No, porque:" in page
    assert "No solo con el tiempo" in page


def test_contact_page_gives_the_next_possible_call_in_the_contact_zone(
    admin_client, campaign
) -> None:
    # given a running campaign and a contact in New York whose retry is due later
    Campaign.objects.filter(pk=campaign.pk).update(
        state=Campaign.State.RUNNING, compliance_profile=ComplianceProfile.NONE
    )
    retry_at = datetime.datetime(2099, 1, 5, 15, 0, tzinfo=datetime.UTC)
    contact = ContactFactory(
        campaign=campaign,
        phone="+13055550123",
        time_zone="America/New_York",
        state=Contact.State.RETRY,
        next_attempt_at=retry_at,
        variables={"first_name": "Ana"},
    )

    # when
    response = admin_client.get(
        reverse("admin:campaigns_contact_change", args=[contact.pk]), headers=ENGLISH
    )

    # then the reason, and when it clears: in New York time, and in the console's
    page = response.content.decode()
    assert re.findall(r'<li data-code="([a-z_]+)">', page) == ["retry_not_due"]
    next_call = re.search(r'<ul id="contact-next-call">(.*?)</ul>', page, re.S).group(1)
    assert re.findall(r"<li>(.*?)</li>", next_call) == [
        "2099-01-05 10:00 EST (America/New_York)",
        "2099-01-05 16:00 CET (Europe/Madrid)",
    ]


def test_contact_page_of_a_dialable_contact(admin_client, campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(
        state=Campaign.State.RUNNING, compliance_profile=ComplianceProfile.NONE
    )
    contact = ContactFactory(
        campaign=campaign, phone="+34612345678", variables={"first_name": "Ana"}
    )

    response = admin_client.get(
        reverse("admin:campaigns_contact_change", args=[contact.pk]), headers=ENGLISH
    )

    page = response.content.decode()
    assert "Yes: nothing stands in the way of calling now." in page
    assert 'id="contact-reasons"' not in page


def test_contact_page_lists_its_calls_ours_and_theirs(admin_client, campaign) -> None:
    # given: we called the contact twice, and it rang us back in between
    contact = ContactFactory(campaign=campaign, phone="+34612345678")
    first = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        status=Call.Status.NO_ANSWER,
        from_number="+34910000000",
        to_number=contact.phone,
    )
    back = CallFactory(
        campaign=campaign,
        contact=contact,
        direction=Call.Direction.INBOUND,
        status=Call.Status.COMPLETED,
        from_number=contact.phone,
        to_number="+34910000000",
        duration_seconds=42,
    )

    # when
    response = admin_client.get(
        reverse("admin:campaigns_contact_change", args=[contact.pk]), headers=ENGLISH
    )

    # then both, newest first, each linked to its page
    table = re.search(r'<table id="contact-calls">(.*?)</table>', response.content.decode(), re.S)
    rows = re.findall(r'<tr data-direction="(\w+)"><td><a href="([^"]+)">', table.group(1))
    assert rows == [
        ("inbound", reverse("admin:calls_call_change", args=[back.pk])),
        ("outbound", reverse("admin:calls_call_change", args=[first.pk])),
    ]
    assert "<td>Inbound</td><td>-</td><td>Completed</td><td>42</td>" in table.group(1)


def test_contact_page_links_to_all_its_calls_past_the_last_ones(
    admin_client, campaign, monkeypatch
) -> None:
    from campaigns.admin import ContactAdmin

    monkeypatch.setattr(ContactAdmin, "HISTORY_CALLS", 1)
    contact = ContactFactory(campaign=campaign, phone="+34612345678")
    for attempt in (1, 2):
        CallFactory(
            campaign=campaign,
            contact=contact,
            attempt=attempt,
            from_number="+34910000000",
            to_number=contact.phone,
            status=Call.Status.BUSY,
        )

    page = admin_client.get(
        reverse("admin:campaigns_contact_change", args=[contact.pk]), headers=ENGLISH
    ).content.decode()

    assert page.count('<tr data-direction="outbound">') == 1
    link = f"{reverse('admin:calls_call_changelist')}?contact__id__exact={contact.pk}"
    assert link in page
    assert admin_client.get(link).status_code == 200


def test_sandbox_contacts_ring_their_campaigns_number_back_from_the_list(
    admin_client, campaign, settings, monkeypatch
) -> None:
    # given
    from django.core.cache import cache

    from calls.telephony.sandbox import carrier

    settings.TELEPHONY_BACKEND = "sandbox"
    queued: list[str] = []
    monkeypatch.setattr(carrier, "_queue", queued.append)
    Campaign.objects.filter(pk=campaign.pk).update(caller_number="+34910000000")
    contact = ContactFactory(
        campaign=campaign, phone="+34612345678", variables={"sandbox_persona": "opt_out"}
    )

    # when
    response = admin_client.post(
        CONTACTS,
        {"action": "sandbox_call_back", "_selected_action": [contact.pk]},
        headers=ENGLISH,
        follow=True,
    )

    # then the call is queued, from the contact to the campaign's number, as its persona
    [sid] = queued
    state = cache.get(f"sandbox:call:{sid}")
    assert (state["params"]["From"], state["params"]["To"]) == ("+34612345678", "+34910000000")
    assert (state["direction"], state["persona"]) == ("inbound", "opt_out")
    assert "1 sandbox call to our number queued" in response.content.decode()


def test_the_call_back_action_is_only_offered_with_the_sandbox_carrier(
    admin_client, campaign, settings
) -> None:
    ContactFactory(campaign=campaign, phone="+34612345678")

    settings.TELEPHONY_BACKEND = "sandbox"
    sandboxed = admin_client.get(CONTACTS).content.decode()
    settings.TELEPHONY_BACKEND = "twilio"
    real = admin_client.get(CONTACTS).content.decode()

    assert 'value="sandbox_call_back"' in sandboxed
    assert 'value="sandbox_call_back"' not in real


def test_contact_add_page_asks_nothing_about_calling_now(admin_client) -> None:
    response = admin_client.get(reverse("admin:campaigns_contact_add"), headers=ENGLISH)

    assert response.status_code == 200
    assert "may be called now" not in response.content.decode()


# --- Do-not-call list ---------------------------------------------------------------------


def bulk_add(client, **data):
    fields = {"numbers": "", "scope": "global", "partner": "", "reason": "", "region": "ES"}
    return client.post(DNC_BULK, {**fields, **data}, headers=ENGLISH)


def test_dnc_bulk_add_reports_added_listed_and_every_unreadable_line(
    admin_client, admin_user
) -> None:
    # given one number already on the global list
    DoNotCallFactory(partner=None, phone="+34699000111", source=DoNotCall.Source.PARTNER_API)
    numbers = "\n".join(
        [
            "612 345 678",
            "0034 699 000 111",
            "",
            "hello",
            "+34 611 222 333, asked by email",
            "612345678",
            "12",
        ]
    )

    # when staff paste the numbers for the global list
    response = bulk_add(admin_client, numbers=numbers, reason="Complaint")

    # then
    page = response.content.decode()
    assert response.status_code == 200
    addition = response.context["addition"]
    assert (addition.created, addition.existing) == (2, 2)
    assert [(line.line, line.value) for line in addition.invalid] == [(4, "hello"), (7, "12")]
    assert '<strong id="dnc-created">2</strong>' in page
    assert '<tr class="dnc-invalid-line" data-source="pasted" data-line="4">' in page
    assert "Added: 2. Already on the list: 2. Lines not read: 2." in page
    added = DoNotCall.objects.filter(source=DoNotCall.Source.STAFF).order_by("phone")
    assert [(e.phone, e.partner, e.reason, e.created_by) for e in added] == [
        ("+34611222333", None, "asked by email", admin_user),
        ("+34612345678", None, "Complaint", admin_user),
    ]


def test_dnc_bulk_add_to_a_partner_list_from_a_file(admin_client, partner) -> None:
    # given a file exported from a spreadsheet: a header, Windows-1252, a reason column
    content = "Teléfono;Motivo\r\n612 345 678;Pidió la baja\r\n699000111\r\nabc\r\n"

    # when
    response = admin_client.post(
        DNC_BULK,
        {
            "numbers": "",
            "file": SimpleUploadedFile("bajas.csv", content.encode("cp1252")),
            "scope": "partner",
            "partner": partner.pk,
            "reason": "",
            "region": "ES",
        },
        headers=ENGLISH,
    )

    # then
    addition = response.context["addition"]
    assert (addition.created, addition.existing) == (2, 0)
    assert [(line.source, line.line, line.value) for line in addition.invalid] == [
        ("file", 4, "abc")
    ]
    assert set(DoNotCall.objects.values_list("phone", "partner", "reason")) == {
        ("+34612345678", partner.pk, "Pidió la baja"),
        ("+34699000111", partner.pk, ""),
    }


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"numbers": "612345678", "scope": "partner"}, "partner", "Choose the partner"),
        ({"numbers": " \n "}, None, "Paste at least one number"),
    ],
)
def test_dnc_bulk_add_refuses_an_incomplete_form(admin_client, data, field, message) -> None:
    response = bulk_add(admin_client, **data)

    errors = response.context["form"].errors
    assert message in " ".join(errors[field or "__all__"])
    assert DoNotCall.objects.count() == 0


def test_dnc_bulk_add_refuses_too_many_numbers(admin_client, monkeypatch) -> None:
    from campaigns import forms

    monkeypatch.setattr(forms, "MAX_BATCH_ITEMS", 3)

    response = bulk_add(admin_client, numbers="612345671\n612345672\n612345673\n612345674")

    assert "4 numbers is too many: add at most 3 at a time." in response.content.decode()
    assert DoNotCall.objects.count() == 0


def test_dnc_bulk_add_needs_the_add_permission(client, django_user_model) -> None:
    # given staff who may see the list but not add to it
    client.force_login(staff_with(django_user_model, "viewer", "view_donotcall"))

    # when
    listing = client.get(DNC_LIST)
    page = client.get(DNC_BULK)
    post = bulk_add(client, numbers="612345678")

    # then
    assert listing.status_code == 200
    assert 'id="dnc-bulk-add-link"' not in listing.content.decode()
    assert (page.status_code, post.status_code) == (403, 403)
    assert DoNotCall.objects.count() == 0


def test_dnc_list_offers_the_bulk_page_to_staff_who_may_add(client, django_user_model) -> None:
    client.force_login(staff_with(django_user_model, "adder", "view_donotcall", "add_donotcall"))

    listing = client.get(DNC_LIST, headers=ENGLISH)
    page = client.get(DNC_BULK, headers=ENGLISH)

    assert f'<a id="dnc-bulk-add-link" href="{DNC_BULK}">' in listing.content.decode()
    assert page.status_code == 200


def test_dnc_list_shows_where_each_entry_came_from(
    admin_client, admin_user, campaign, partner
) -> None:
    # given an opt-out during a call, a partner's API entry and a staff entry
    contact = ContactFactory(campaign=campaign, phone="+34612345678")
    call = CallFactory(
        campaign=campaign,
        contact=contact,
        attempt=1,
        from_number="+34910000000",
        to_number=contact.phone,
    )
    DoNotCallFactory(
        partner=partner,
        phone=contact.phone,
        source=DoNotCall.Source.OPT_OUT,
        reason=f"call {call.pk} (Spring): said so",
    )
    DoNotCallFactory(partner=partner, phone="+34699000111", source=DoNotCall.Source.PARTNER_API)
    DoNotCallFactory(partner=None, phone="+34611222333", created_by=admin_user)

    # when
    page = admin_client.get(DNC_LIST, headers=ENGLISH).content.decode()

    # then
    call_url = reverse("admin:calls_call_change", args=[call.pk])
    partner_url = reverse("admin:campaigns_partner_change", args=[partner.pk])
    assert f'<td class="field-origin"><a href="{call_url}">Call {call.pk}</a></td>' in page
    assert f'<td class="field-origin"><a href="{partner_url}">API of Acme</a></td>' in page
    assert '<td class="field-origin">admin</td>' in page
    assert f'<td class="field-scope"><a href="{partner_url}">Acme</a></td>' in page
    assert "Opt-out during a call" in page


def test_dnc_add_form_reads_any_format_and_records_staff(admin_client, admin_user) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_donotcall_add"),
        {"partner": "", "phone": "0034 612 345 678", "reason": "Asked by phone", "_save": "1"},
    )

    assert response.status_code == 302
    entry = DoNotCall.objects.get()
    assert (entry.phone, entry.source, entry.created_by) == ("+34612345678", "staff", admin_user)


def test_dnc_add_form_refuses_a_number_it_cannot_read(admin_client) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_donotcall_add"),
        {"partner": "", "phone": "612 34", "reason": "", "_save": "1"},
        headers=ENGLISH,
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["phone"] == [
        "“612 34” is not a valid phone number (region ES)."
    ]
    assert DoNotCall.objects.count() == 0


@pytest.mark.parametrize("term", ["612 345 678", "0034612345678", "+34 612 345 678"])
def test_dnc_search_finds_a_number_written_any_way(admin_client, term) -> None:
    DoNotCallFactory(partner=None, phone="+34612345678")
    DoNotCallFactory(partner=None, phone="+34699000111")

    page = admin_client.get(DNC_LIST, {"q": term}).content.decode()

    assert re.findall(r'class="field-phone"><a [^>]*>(\+\d+)</a>', page) == ["+34612345678"]
