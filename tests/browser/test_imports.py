"""Staff import contacts and add numbers to the do-not-call list in a real browser: the
import page (as the campaign page links to it), its report while the import runs and once
it is over, and the do-not-call list's bulk page.

The pages are served by pytest-django's live server (the WSGI app in a thread of this
process) on the test database, so these run on the embedded default and on PostgreSQL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from django.urls import reverse

from campaigns.models import Campaign, ContactImport, DoNotCall
from campaigns.tasks import import_contacts_task
from tests.browser.conftest import log_in, needs_chromium
from tests.factories import CallTemplateFactory, CampaignFactory, DoNotCallFactory, PartnerFactory

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

GREETING = "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."
CONTACTS = b"phone,first_name\n612 345 678,Ana\nnot-a-phone,Eva\n+34 699 000 111,Luis\n"


@pytest.fixture
def campaign(transactional_db) -> Campaign:
    partner = PartnerFactory(name="Clínica Sur", trusted=True)
    template = CallTemplateFactory(
        partner=partner,
        name="Recordatorio",
        variables={"first_name": "Lucía"},
        greeting=GREETING,
        instructions="Confirma la cita de {{ first_name }}.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
    )
    return CampaignFactory(partner=partner, name="Citas", template=template)


def choose_file(tab: Page, content: bytes, name: str = "contacts.csv") -> None:
    tab.set_input_files(
        "input[type=file]", files=[{"name": name, "mimeType": "text/csv", "buffer": content}]
    )


def submit_import(tab: Page) -> None:
    tab.locator("form:has(input[type=file]) [type=submit]").first.click()


# First in the module: the roles' groups come from a migration, and after an earlier
# browser test they are gone (its flush is not undone while Playwright's loop runs), so
# role_user skips.
def test_operator_imports_and_viewer_only_reads_the_report(
    live_server, page, role_user, campaign
) -> None:
    # given an operator and a viewer
    role_user("operator")
    role_user("viewer")
    add_url = f"{live_server.url}{reverse('admin:campaigns_contactimport_add')}"

    # when the operator imports a file
    log_in(page, live_server.url, "operator")
    page.goto(f"{add_url}?campaign={campaign.pk}")
    choose_file(page, CONTACTS)
    submit_import(page)
    page.get_by_text("not-a-phone").first.wait_for()
    report = page.url

    # then the viewer reads its report but may not import
    page.context.clear_cookies()
    log_in(page, live_server.url, "viewer")
    page.goto(report)
    page.get_by_text("not-a-phone").first.wait_for()
    assert page.goto(f"{add_url}?campaign={campaign.pk}").status == 403
    assert campaign.contacts.count() == 2


def test_staff_import_a_file_and_read_the_rejected_rows(
    live_server, page, staff_user, campaign, screenshot
) -> None:
    # given the import page as the campaign's page links to it
    log_in(page, live_server.url, "staff")
    page.goto(
        f"{live_server.url}{reverse('admin:campaigns_contactimport_add')}?campaign={campaign.pk}"
    )
    assert page.locator("#select2-id_campaign-container").inner_text().endswith("Citas")

    # when staff choose a file and import it
    choose_file(page, CONTACTS)
    submit_import(page)

    # then the report lists the rejected row, and the good rows are contacts
    page.get_by_text("not-a-phone").first.wait_for()
    contact_import = ContactImport.objects.get()
    assert page.url.endswith(f"/admin/campaigns/contactimport/{contact_import.pk}/change/")
    row = page.locator("#import-rejected-rows tbody tr")
    assert row.count() == 1
    assert row.locator("td").all_inner_texts()[:3] == ["3", "phone", "not-a-phone"]
    assert page.locator("[data-progress=imported]").inner_text() == "2"
    assert page.locator("[data-progress=rejected]").inner_text() == "1"
    assert set(campaign.contacts.values_list("phone", flat=True)) == {
        "+34612345678",
        "+34699000111",
    }
    screenshot(page, "10-import-report")

    # when they download the rejected rows
    with page.expect_download() as download:
        page.click("#import-rejected-download")

    # then the file has the row
    text = download.value.path().read_text(encoding="utf-8-sig")
    assert text.splitlines()[1].startswith("3,phone,not-a-phone,")


def test_staff_see_a_file_refused_with_the_reason(live_server, page, staff_user, campaign) -> None:
    log_in(page, live_server.url, "staff")
    page.goto(
        f"{live_server.url}{reverse('admin:campaigns_contactimport_add')}?campaign={campaign.pk}"
    )

    choose_file(page, b"name,email\nAna,ana@example.com\n")
    submit_import(page)

    error = page.locator(".field-upload .errorlist").inner_text()
    assert "one of them the phone" in error
    assert ContactImport.objects.count() == 0


def test_staff_follow_an_import_that_runs_in_the_background(
    live_server, page, staff_user, campaign, settings, monkeypatch, screenshot
) -> None:
    # given files this size go to the worker (queued here, run by the test)
    settings.CONTACT_IMPORT_SYNC_MAX_BYTES = 10
    queued: list[int] = []
    monkeypatch.setattr(import_contacts_task, "delay", queued.append)
    log_in(page, live_server.url, "staff")
    page.goto(
        f"{live_server.url}{reverse('admin:campaigns_contactimport_add')}?campaign={campaign.pk}"
    )

    # when staff import a file
    choose_file(page, CONTACTS)
    submit_import(page)

    # then its page shows it waiting for the worker
    page.wait_for_url(re.compile(r"/admin/campaigns/contactimport/\d+/change/$"))
    assert page.locator("[data-progress=state_label]").inner_text() == "Queued"
    assert page.locator("progress#import-running").is_visible()
    screenshot(page, "11-import-queued")

    # when the worker imports it
    (contact_import_id,) = queued
    import_contacts_task(contact_import_id)

    # then the page, which follows the import, shows the report by itself
    page.get_by_text("not-a-phone").first.wait_for()
    assert page.locator("[data-progress=state_label]").inner_text() == "Done"
    assert campaign.contacts.count() == 2


def test_staff_add_numbers_to_a_partner_list_in_bulk(
    live_server, page, staff_user, campaign, screenshot
) -> None:
    # given one number already on the partner's list
    partner = campaign.partner
    DoNotCallFactory(partner=partner, phone="+34699000111")
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}{reverse('admin:campaigns_donotcall_changelist')}")

    # when staff paste numbers for the partner's list from the list's bulk page
    page.click("#dnc-bulk-add-link")
    page.fill("#id_numbers", "612 345 678\n0034 699 000 111\nhello\n611 222 333; asked by email")
    page.check("#id_scope_1")
    page.select_option("#id_partner", label="Clínica Sur")
    page.fill("#id_reason", "Complaint")
    page.click("#dnc-bulk-submit")

    # then the page counts what happened and names the unreadable line
    page.locator("#dnc-report").wait_for()
    assert page.locator("#dnc-created").inner_text() == "2"
    assert page.locator("#dnc-existing").inner_text() == "1"
    invalid = page.locator("#dnc-invalid-lines tbody tr")
    assert invalid.count() == 1
    assert invalid.locator("td").all_inner_texts()[1:3] == ["3", "hello"]
    screenshot(page, "12-do-not-call-bulk-add")
    added = DoNotCall.objects.filter(source=DoNotCall.Source.STAFF, created_by=staff_user)
    assert set(added.values_list("phone", "partner", "reason")) == {
        ("+34612345678", partner.pk, "Complaint"),
        ("+34611222333", partner.pk, "asked by email"),
    }

    # when they go back to the list
    page.goto(f"{live_server.url}{reverse('admin:campaigns_donotcall_changelist')}")

    # then the new entries show they came from staff
    row = page.locator("#result_list tbody tr", has_text="+34612345678")
    assert row.locator("td.field-source").inner_text() == "Staff"
    assert row.locator("td.field-origin").inner_text() == "staff"
