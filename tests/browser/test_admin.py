"""Staff at work in the admin, in a real browser: log in and land on the operations
overview, write a call script, set up a campaign, import contacts, and what each role may
not do.

The pages are served by pytest-django's live server (the WSGI app in a thread) on the test
database, so these run on the embedded default and on PostgreSQL alike.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from calls.models import Call
from campaigns.models import (
    Campaign,
    Partner,
    PartnerApiKey,
)
from templates.models import CallTemplate
from tests.browser.conftest import PASSWORD, log_in, needs_chromium
from tests.factories import (
    CallFactory,
    CallTemplateFactory,
    CampaignFactory,
    ContactFactory,
    PartnerFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

# serialized_rollback: the groups and periodic tasks that migrations create come back
# after each test's flush (the live server sees only committed rows).
pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

GREETING = "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."


def choose(tab: Page, field: str, text: str) -> None:
    """Picks ``text`` in the admin's autocomplete (select2) widget of ``field``."""
    tab.click(f"[aria-labelledby=select2-id_{field}-container]")
    tab.fill(".select2-container--open .select2-search__field", text)
    tab.locator(".select2-results__option", has_text=text).first.click()


def success_message(tab: Page) -> str:
    return tab.locator(".messagelist .success").first.inner_text()


@pytest.fixture
def clinic(transactional_db) -> Partner:
    return PartnerFactory(name="Clínica Sur", trusted=True)


@pytest.fixture
def call_script(clinic: Partner) -> CallTemplate:
    return CallTemplateFactory(
        partner=clinic,
        name="Recordatorio",
        variables={"first_name": "Lucía"},
        greeting=GREETING,
        instructions="Confirma la cita de {{ first_name }}.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
    )


def test_staff_log_in_after_a_wrong_password(live_server, page, staff_user, screenshot) -> None:
    # given the login page
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_url(re.compile(r"/admin/login/"))
    screenshot(page, "01-login")

    # when a wrong password, then the right one
    page.fill("#id_username", "staff")
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")
    refused = page.locator(".errornote").inner_text()
    log_in(page, live_server.url, "staff")

    # then the first is refused and the second opens the admin
    assert "correct username and password" in refused
    assert page.locator("#site-name").is_visible()
    assert page.get_by_role("link", name="Campaigns").first.is_visible()


def test_staff_write_a_call_template_and_preview_it(
    live_server, page, staff_user, clinic, screenshot
) -> None:
    # given
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/templates/calltemplate/add/")

    # when the form is filled in and saved
    choose(page, "partner", "Clínica Sur")
    page.fill("#id_name", "Recordatorio de cita")
    page.fill("#id_variables", '{"first_name": "Lucía"}')
    page.fill("#id_greeting", GREETING)
    page.fill("#id_instructions", "Confirma la cita de {{ first_name }}. Sé breve.")
    page.fill("#id_voicemail_message", "Le llamamos de {{ partner }}. Llámenos al 910 000 000.")
    page.fill("#id_closing_line", "Gracias, adiós.")
    page.click("input[name=_continue]")

    # then it is kept, passing the disclosure rules
    assert "was added successfully" in success_message(page)
    template = CallTemplate.objects.get(name="Recordatorio de cita")
    assert template.partner == clinic
    assert template.variables == {"first_name": "Lucía"}
    assert page.url.endswith(f"/admin/templates/calltemplate/{template.pk}/change/")
    assert page.locator(".lint-warning").count() == 0

    # when staff preview it with its sample values
    page.click("#template-preview-link")
    if not page.locator("#template-preview").count():
        page.click("#template-preview-submit")

    # then they read what a call would say
    greeting = page.locator(".preview-line[data-field=greeting]").inner_text()
    assert "Hola Lucía. Le llamamos de Clínica Sur. Soy un asistente automático." in greeting
    screenshot(page, "07-template-preview")


def test_staff_set_up_a_campaign(live_server, page, staff_user, call_script, screenshot) -> None:
    # given
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/campaigns/campaign/add/")

    # when the add form is filled in and saved
    choose(page, "partner", "Clínica Sur")
    page.fill("#id_name", "Citas de mayo")
    choose(page, "template", "Recordatorio")
    page.fill("#id_caller_number", "+34910000000")
    page.select_option("#id_compliance_profile", "none")
    page.click("input[name=_save]")

    # then the list shows it, a draft, and its page opens
    assert "was added successfully" in success_message(page)
    campaign = Campaign.objects.get(name="Citas de mayo")
    assert (campaign.partner, campaign.template) == (call_script.partner, call_script)
    assert campaign.state == Campaign.State.DRAFT
    row = page.locator("#result_list tbody tr", has_text="Citas de mayo")
    assert row.count() == 1
    screenshot(page, "02-campaign-list")
    row.get_by_role("link", name="Citas de mayo").click()
    page.wait_for_url(re.compile(rf"/admin/campaigns/campaign/{campaign.pk}/change/"))
    assert page.input_value("#id_name") == "Citas de mayo"
    screenshot(page, "03-campaign-page")


def test_staff_import_contacts_and_see_the_rejected_row(
    live_server, page, staff_user, call_script, screenshot
) -> None:
    # given a draft campaign and a file with one bad row among good ones
    campaign = CampaignFactory(partner=call_script.partner, name="Citas", template=call_script)
    contacts = b"phone,first_name\n612 345 678,Ana\nnot-a-phone,Eva\n+34 699 000 111,Luis\n"
    log_in(page, live_server.url, "staff")
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    open_import = page.locator("#content").get_by_role(
        "link", name=re.compile("import", re.IGNORECASE)
    )
    if not open_import.count():
        pytest.skip("the campaign admin offers no contact import on the campaign page yet")

    # when staff import it from the campaign's page
    open_import.first.click()
    page.set_input_files(
        "input[type=file]",
        files=[{"name": "contacts.csv", "mimeType": "text/csv", "buffer": contacts}],
    )
    page.locator("form:has(input[type=file]) [type=submit]").first.click()

    # then the report names the rejected row, and the good rows are contacts
    page.get_by_text("not-a-phone").first.wait_for()
    screenshot(page, "04-import-report")
    phones = set(campaign.contacts.values_list("phone", flat=True))
    assert phones == {"+34612345678", "+34699000111"}


def test_operator_cannot_reach_the_partner_keys(live_server, page, role_user, call_script) -> None:
    # given an operator, and a partner with a key
    role_user("operator")
    PartnerApiKey.objects.create_key(partner=call_script.partner, name="CRM")

    # when they log in and go to the keys
    log_in(page, live_server.url, "operator")
    index = page.locator("#content-main").inner_text()
    response = page.goto(f"{live_server.url}/admin/campaigns/partnerapikey/")

    # then the admin neither lists nor opens them (but campaigns are theirs to run)
    assert "Campaigns" in index
    assert "API keys" not in index
    assert response.status == 403


def test_viewer_cannot_start_a_campaign(live_server, page, role_user, call_script) -> None:
    # given a viewer and a campaign ready to start
    role_user("viewer")
    campaign = CampaignFactory(partner=call_script.partner, name="Citas", template=call_script)

    # when they look at the campaigns and the campaign's page
    log_in(page, live_server.url, "viewer", PASSWORD)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/")
    actions = page.locator("select[name=action] option").all_inner_texts()
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")

    # then nothing offers to start it, and the page is read-only
    assert not any("start" in action.lower() for action in actions)
    assert page.get_by_role("button", name=re.compile("start", re.IGNORECASE)).count() == 0
    assert page.locator("input[name=_save]").count() == 0
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.DRAFT


@pytest.fixture
def operations(call_script) -> dict[str, Campaign]:
    """A running campaign halfway through with a call going on, one the dialer paused for
    a fault, and an endpoint whose deliveries fail."""
    partner = call_script.partner
    running = CampaignFactory(
        partner=partner, name="Citas de mayo", template=call_script, state="running"
    )
    for index, state in enumerate(["done", "done", "calling", "pending"]):
        contact = ContactFactory(campaign=running, phone=f"+3461000000{index}", state=state)
        if state == "calling":
            CallFactory(
                campaign=running,
                contact=contact,
                attempt=1,
                from_number="+34910000000",
                to_number=contact.phone,
                status=Call.Status.IN_PROGRESS,
                provider_sid="CA" + "7" * 32,
            )
    faulty = CampaignFactory(
        partner=partner,
        name="Recordatorios",
        template=call_script,
        state="paused",
        state_reason="Twilio refused the caller number +34910000000 (21210).",
    )
    endpoint = WebhookEndpointFactory(
        partner=partner, url="https://crm.example.com/hooks", events=["call.completed"]
    )
    WebhookDeliveryFactory(
        endpoint=endpoint,
        event_id="6f1c1f8e-2b7a-4c55-9a43-52cf4c1d0b9e",
        event_type="call.completed",
        payload={},
        state="failed",
        attempts=12,
        last_error="The endpoint answered 500. Given up after 12 attempts over 24 hours.",
    )
    return {"running": running, "faulty": faulty}


def test_staff_land_on_the_operations_overview(
    live_server, page, staff_user, operations, screenshot
) -> None:
    # when staff log in
    log_in(page, live_server.url, "staff")

    # then the overview comes first: what needs attention, today's calls, the campaigns
    attention = page.locator("#overview-attention").inner_text()
    assert "Twilio refused the caller number" in attention
    assert "https://crm.example.com/hooks" in attention
    assert page.locator("#tile-live-calls .figure").inner_text() == "1"
    row = page.locator("#overview-campaigns tr", has_text="Citas de mayo")
    assert "2 / 4" in row.inner_text()
    assert page.locator("#overview-campaigns progress").first.get_attribute("value") == "2"
    # and the list of apps is still there, below it
    assert page.locator(".app-campaigns").is_visible()
    screenshot(page, "13-admin-home")

    # when they follow the faulty campaign's link
    page.locator(".attention-item", has_text="Recordatorios").get_by_role(
        "link", name="Open the campaign"
    ).click()

    # then its page opens, where they resume it
    page.wait_for_url(re.compile(rf"/admin/campaigns/campaign/{operations['faulty'].pk}/change/"))


def test_viewer_sees_the_overview_without_buttons(live_server, page, role_user, operations) -> None:
    role_user("viewer")

    log_in(page, live_server.url, "viewer")

    overview = page.locator("#operations-overview")
    assert "Citas de mayo" in overview.inner_text()
    assert overview.locator("button, form, input").count() == 0
    assert overview.locator("a[href*='webhookendpoint']").count() == 0
