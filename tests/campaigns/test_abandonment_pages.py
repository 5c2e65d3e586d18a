"""A campaign's abandonment rate where staff and partners read it: the admin's list and
campaign page, and the API's campaign (calls/abandonment.py counts it)."""

from __future__ import annotations

import datetime
import re
from itertools import count

import pytest
from django.urls import reverse
from django.utils import timezone

from calls.models import AnsweredBy, Call
from campaigns.models import Campaign
from tests.factories import CallFactory, CampaignFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:campaigns_campaign_changelist")
ENGLISH = {"accept-language": "en"}
SIDS = count(1)


def answered(campaign: Campaign, first_audio_ms: int | None, **fields: object) -> Call:
    fields = {
        "status": Call.Status.COMPLETED,
        "answered_by": AnsweredBy.HUMAN,
        "answered_at": timezone.now() - datetime.timedelta(hours=2),
        **fields,
    }
    return CallFactory(
        contact__campaign=campaign,
        provider_sid=f"CA{next(SIDS):032d}",
        first_audio_ms=first_audio_ms,
        **fields,
    )


def calls_of(campaign: Campaign, *, good: int, abandoned: int) -> None:
    for _ in range(good):
        answered(campaign, 500)
    for _ in range(abandoned):
        answered(campaign, 2_500)


def row_of(page: str, campaign: Campaign) -> str:
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    return next(row for row in rows if f'value="{campaign.pk}"' in row)


# --- The admin ------------------------------------------------------------------------------


def test_changelist_shows_the_abandonment_rate_in_its_last_column(admin_client, campaign) -> None:
    calls_of(campaign, good=39, abandoned=1)

    page = admin_client.get(CHANGELIST, headers=ENGLISH).content.decode()

    row = row_of(page, campaign)
    cells = re.findall(r'<td class="field-([a-z_]+)', row)
    assert cells[-1] == "abandonment"
    assert '<td class="field-abandonment">2.5 % (1 of 40)</td>' in row
    assert ">Abandoned (30 days)</a>" in page


def test_changelist_shows_no_rate_without_live_answered_calls(admin_client, campaign) -> None:
    answered(campaign, None, answered_by=AnsweredBy.MACHINE_END_BEEP)

    row = row_of(admin_client.get(CHANGELIST, headers=ENGLISH).content.decode(), campaign)

    assert '<td class="field-abandonment">—</td>' in row


def test_changelist_sorts_by_abandonment_rate(admin_client, campaign, partner) -> None:
    worse = CampaignFactory(partner=partner, name="Worse", template=campaign.template)
    none = CampaignFactory(partner=partner, name="None yet", template=campaign.template)
    calls_of(campaign, good=9, abandoned=1)
    calls_of(worse, good=1, abandoned=1)
    column = 7  # the last one, after the checkbox

    page = admin_client.get(f"{CHANGELIST}?o={column}", headers=ENGLISH).content.decode()

    names = re.findall(r'class="field-name"><a [^>]*>([^<]+)</a>', page)
    assert names == [none.name, "Spring", "Worse"]


def test_campaign_page_shows_the_rate_with_its_counts(admin_client, campaign) -> None:
    calls_of(campaign, good=247, abandoned=3)

    page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]), headers=ENGLISH
    ).content.decode()

    field = re.search(r'<div class="[^"]*field-abandonment_rate.*?</div>\s*</div>', page, re.S)
    assert field is not None
    assert "1.2 % — 3 of 250 live-answered calls in 30 days" in field.group(0)


def test_campaign_add_page_opens_with_the_rate_field(admin_client) -> None:
    response = admin_client.get(reverse("admin:campaigns_campaign_add"), headers=ENGLISH)

    assert response.status_code == 200
    assert "No live-answered calls in 30 days" in response.content.decode()


# --- The API --------------------------------------------------------------------------------


def test_api_campaign_gives_its_abandonment(api_client, api_partner) -> None:
    campaign = CampaignFactory(partner=api_partner, name="Autumn")
    calls_of(campaign, good=97, abandoned=3)
    answered(campaign, None, answered_by=AnsweredBy.MACHINE_START)  # not counted

    body = api_client.get(f"/api/v1/campaigns/{campaign.pk}/").json()

    assert body["abandonment"] == {
        "rate": pytest.approx(0.03),
        "abandoned": 3,
        "answered": 100,
        "window_days": 30,
    }


def test_api_campaign_without_answered_calls_has_a_null_rate(api_client, api_partner) -> None:
    campaign = CampaignFactory(partner=api_partner, name="Autumn")

    body = api_client.get(f"/api/v1/campaigns/{campaign.pk}/").json()

    assert body["abandonment"] == {"rate": None, "abandoned": 0, "answered": 0, "window_days": 30}


def test_api_campaign_list_counts_each_campaigns_abandonment(api_client, api_partner) -> None:
    first = CampaignFactory(partner=api_partner, name="First")
    second = CampaignFactory(partner=api_partner, name="Second")
    calls_of(first, good=3, abandoned=1)

    rows = {row["id"]: row for row in api_client.get("/api/v1/campaigns/").json()["results"]}

    assert rows[first.pk]["abandonment"]["abandoned"] == 1
    assert rows[first.pk]["abandonment"]["rate"] == 0.25
    assert rows[second.pk]["abandonment"]["rate"] is None


def test_api_campaign_list_reads_the_same_queries_whatever_its_campaigns(
    api_client, api_partner, django_assert_num_queries
) -> None:
    for name in ("First", "Second"):
        calls_of(CampaignFactory(partner=api_partner, name=name), good=2, abandoned=1)
    api_client.get("/api/v1/campaigns/")  # the key's "last used" written
    with django_assert_num_queries(4) as few:
        api_client.get("/api/v1/campaigns/")
    for name in ("Third", "Fourth", "Fifth"):
        calls_of(CampaignFactory(partner=api_partner, name=name), good=1, abandoned=1)

    with django_assert_num_queries(len(few.captured_queries)):
        body = api_client.get("/api/v1/campaigns/").json()

    assert {row["abandonment"]["abandoned"] for row in body["results"]} == {1}
