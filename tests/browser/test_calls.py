"""A campaign started from the admin, on the sandbox carrier, in a real browser: its calls
appear in the call list, a call's page shows what was said, and the admin's home counts
them among today's.

The real web server (uvicorn), a Celery worker and beat run as processes on PostgreSQL and
Redis, as in tests/e2e/; the sandbox carrier plays each call through the web server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.conf import settings

from calls.management.commands.seed_demo import GREETING, SCRIPTED_STEPS, TEMPLATE_TEXTS
from calls.models import Call
from campaigns.models import Campaign, ComplianceProfile
from campaigns.services import add_contact
from templates.models import CallTemplate
from tests.browser.conftest import log_in, needs_chromium
from tests.factories import CampaignFactory, PartnerFactory
from tests.processes import other_redis_database, running_system

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    needs_chromium,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")),
        reason="needs a worker and beat: runs on PostgreSQL and Redis (.ci/run starts them)",
    ),
]
PERSONAS = {"+34610000001": "interested", "+34610000002": "not_interested", "+34610000003": "busy"}
DEADLINE_SECONDS = 90


@pytest.fixture
def system(tmp_path) -> Iterator[str]:
    with running_system(
        tmp_path,
        REDIS_URL=other_redis_database(settings.REDIS_URL),
        TELEPHONY_BACKEND="sandbox",
        SANDBOX_SPEED="40",
        TWILIO_MAX_CPS="10",
    ) as url:
        yield url


@pytest.fixture
def ready_campaign(transactional_db) -> Campaign:
    """A draft campaign of three contacts, each answering as its sandbox persona says."""
    partner = PartnerFactory(name="Clínica Demo", trusted=True)
    template = CallTemplate.objects.create(
        partner=partner,
        name="Guion",
        mode=CallTemplate.Mode.SCRIPTED,
        greeting=GREETING,
        steps=SCRIPTED_STEPS,
        **TEMPLATE_TEXTS,
    )
    campaign = CampaignFactory(
        partner=partner,
        name="Citas de mayo",
        template=template,
        caller_number="+34910000000",
        compliance_profile=ComplianceProfile.NONE,
        max_attempts=1,
    )
    for phone, persona in PERSONAS.items():
        add_contact(
            campaign=campaign,
            phone=phone,
            variables={
                "first_name": "Ana",
                "appointment": "el martes a las 10:00",
                "sandbox_persona": persona,
            },
        )
    return campaign


def start_in_admin(tab: Page, base_url: str, campaign: Campaign) -> None:
    """Starts ``campaign`` as staff do: the list's "start" action on its row, or the start
    button of its page."""
    tab.goto(f"{base_url}/admin/campaigns/campaign/")
    action = tab.locator("select[name=action] option[value*=start]")
    if action.count():
        tab.locator(f"#result_list input[name=_selected_action][value='{campaign.pk}']").check()
        tab.select_option("select[name=action]", action.first.get_attribute("value"))
        tab.locator("button[name=index], input[name=index]").first.click()
    else:
        tab.goto(f"{base_url}/admin/campaigns/campaign/{campaign.pk}/change/")
        button = tab.get_by_role("button", name=re.compile(r"^\s*start", re.IGNORECASE))
        if not button.count():
            pytest.skip("the campaign admin offers no start action or button yet")
        button.first.click()
    # The click only sends the form: the answer (and its message) says the start is done.
    tab.locator(".messagelist .success, .messagelist .error").first.wait_for()


def test_staff_start_a_campaign_and_read_a_call(
    page, system, staff_user, ready_campaign, screenshot
) -> None:
    # given staff on the campaign list
    log_in(page, system, "staff")

    # when they start the campaign
    start_in_admin(page, system, ready_campaign)

    # then it runs, and its calls appear in the call list
    ready_campaign.refresh_from_db()
    assert ready_campaign.state == Campaign.State.RUNNING
    page.goto(f"{system}/admin/campaigns/campaign/{ready_campaign.pk}/change/")
    screenshot(page, "03-campaign-page-running")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while Call.objects.filter(campaign=ready_campaign).count() < len(PERSONAS):
        assert time.monotonic() < deadline, "the calls were not placed"
        time.sleep(0.5)
    page.goto(f"{system}/admin/calls/call/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == len(PERSONAS)
    listed = rows.all_inner_texts()
    assert all(any(phone in row for row in listed) for phone in PERSONAS)

    # when the interested callee's call has ended and staff open it
    call = Call.objects.get(campaign=ready_campaign, to_number="+34610000001")
    while not (call.ended_at and call.turns.count() >= 2):
        assert time.monotonic() < deadline, (call.status, call.turns.count())
        time.sleep(0.5)
        call.refresh_from_db()
    page.reload()
    screenshot(page, "05-call-list")
    page.locator("#result_list tbody tr", has_text="+34610000001").locator("a").first.click()
    page.wait_for_url(re.compile(rf"/admin/calls/call/{call.pk}/change/"))

    # then the page shows what the agent and the callee said, in order
    transcript = page.locator("#content").inner_text()
    screenshot(page, "06-call-transcript")
    said = [turn.text for turn in call.turns.order_by("sequence") if turn.text]
    assert said
    positions = [transcript.find(text[:60]) for text in said]
    assert -1 not in positions, said
    assert positions == sorted(positions)

    # when staff go back to the campaign's page
    page.goto(f"{system}/admin/campaigns/campaign/{ready_campaign.pk}/change/")

    # then its figures and charts count the calls made
    completed = page.locator("#campaign-calls-by-status tr[data-key=completed] td.count")
    assert int(completed.inner_text()) >= 1
    hourly = page.locator("#chart-calls-per-hour desc").text_content()
    assert f"{len(PERSONAS)} calls in all" in hourly
    screenshot(page, "08-campaign-page-with-calls")

    # when staff go to the admin's home
    page.goto(f"{system}/admin/")

    # then today's figures count the calls placed
    assert int(page.locator("#tile-calls-today .figure").inner_text()) == len(PERSONAS)
    assert int(page.locator("#tile-answered-today .figure").inner_text()) >= 1
    screenshot(page, "09-admin-home-after-calls")
