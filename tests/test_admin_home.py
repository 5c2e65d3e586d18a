"""The admin's home page: the operations overview (callcenter/overview.py) above Django's
list of apps: campaigns' progress, today's calls and cost, and what needs attention."""

from __future__ import annotations

import datetime
import hashlib
import re
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from callcenter import overview as overview_module
from callcenter.overview import operations_overview
from callcenter.tasks import HEARTBEAT_CACHE_KEY, heartbeat_task
from calls.models import Call, Turn
from campaigns.models import Campaign, Contact, Partner, WebhookDelivery, WebhookEndpoint
from campaigns.services import pause_campaign, transition_campaign
from tests.factories import (
    CallClipFactory,
    CallFactory,
    CampaignFactory,
    ContactFactory,
    SpeechClipFactory,
    TurnFactory,
    VoiceFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)

pytestmark = pytest.mark.django_db

ENGLISH = {"accept-language": "en"}
MADRID = ZoneInfo("Europe/Madrid")
# A Monday morning in Madrid (UTC+2): midnight there is 22:00 UTC the day before.
NOW = datetime.datetime(2025, 5, 12, 10, 0, tzinfo=MADRID)


@pytest.fixture(autouse=True)
def _madrid(settings) -> None:
    settings.TIME_ZONE = "Europe/Madrid"


def local(hour: int, minute: int = 0, *, day: int = 12) -> datetime.datetime:
    return datetime.datetime(2025, 5, day, hour, minute, tzinfo=MADRID)


def make_delivery(
    endpoint: WebhookEndpoint,
    *,
    state: str,
    attempts: int = 3,
    last_error: str = "The endpoint answered 500.",
    created_at: datetime.datetime | None = None,
) -> WebhookDelivery:
    delivery = WebhookDeliveryFactory(
        endpoint=endpoint,
        event_id=uuid.uuid4(),
        event_type="call.completed",
        payload={},
        state=state,
        attempts=attempts,
        last_error=last_error,
    )
    if created_at is not None:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            created_at=created_at, updated_at=created_at
        )
    return delivery


def run(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def attention_keys(overview) -> list[str]:
    return [item.key for item in overview.attention]


def item(overview, key: str):
    return next(entry for entry in overview.attention if entry.key == key)


def fragment(response) -> str:
    """The overview's part of the home page."""
    page = response.content.decode()
    start = page.index('<div id="operations-overview"')
    return page[start : page.index('id="overview-updated"', start)]


def links(html: str) -> list[str]:
    return [href.replace("&amp;", "&") for href in re.findall(r'href="([^"]+)"', html)]


@pytest.fixture
def as_role(client, django_user_model):
    """Logs the test client in as a new staff user of the role (None: no role)."""

    def log_in(role: str | None):
        user = django_user_model.objects.create_user(role or "nobody", is_staff=True)
        if role:
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return log_in


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def day(campaign, superuser):
    """A running campaign on 12 May 2025 at 10:00 in Madrid, with calls of today, of the
    night before (in UTC, today), of yesterday, and live ones."""
    campaign = run(campaign)
    done = ContactFactory(campaign=campaign, state=Contact.State.DONE)
    opted = ContactFactory(campaign=campaign, state=Contact.State.OPTED_OUT)
    waiting = ContactFactory(campaign=campaign, state=Contact.State.PENDING)
    calling = ContactFactory(campaign=campaign, state=Contact.State.CALLING)
    exhausted = ContactFactory(campaign=campaign, state=Contact.State.EXHAUSTED)
    queued = ContactFactory(campaign=campaign, state=Contact.State.CALLING)
    completed, known = Call.Status.COMPLETED, Call.PriceStatus.KNOWN
    calls = {
        # 00:30 in Madrid: today there, yesterday in UTC
        "answered": CallFactory(
            placed=True,
            contact=done,
            created_at=local(0, 30),
            status=completed,
            answered_by="human",
            price=Decimal("0.013"),
            price_unit="USD",
            price_status=known,
        ),
        "opted_out": CallFactory(
            placed=True,
            contact=opted,
            created_at=local(9),
            status=completed,
            answered_by="human",
            outcome={"opted_out": True},
        ),
        "busy": CallFactory(
            placed=True,
            contact=exhausted,
            created_at=local(8),
            status=Call.Status.BUSY,
            price_status=Call.PriceStatus.NOT_CHARGED,
        ),
        "voicemail": CallFactory(
            placed=True,
            contact=exhausted,
            attempt=2,
            created_at=local(9, 30),
            status=completed,
            answered_by="machine_end_beep",
            price=Decimal("0.02"),
            price_unit="USD",
            price_status=known,
        ),
        "live": CallFactory(
            placed=True, contact=calling, created_at=local(9, 59), status=Call.Status.IN_PROGRESS
        ),
        "not_placed": CallFactory(
            contact=waiting,
            created_at=local(9, 10),
            status=Call.Status.NOT_PLACED,
            price_status=Call.PriceStatus.NOT_CHARGED,
        ),
        # 23:30 in Madrid the day before: yesterday, whatever UTC says
        "yesterday": CallFactory(
            placed=True,
            contact=waiting,
            attempt=2,
            created_at=local(23, 30, day=11),
            status=completed,
            answered_by="human",
            price=Decimal("1.00"),
            price_unit="USD",
            price_status=known,
        ),
        "queued_yesterday": CallFactory(
            placed=True, contact=queued, created_at=local(20, day=11), status=Call.Status.QUEUED
        ),
    }
    TurnFactory(
        call=calls["answered"],
        sequence=0,
        role=Turn.Role.AGENT,
        text="Hola.",
        started_at=local(0, 31),
        model="gpt-4o-mini",
        prompt_tokens=100_000,
        completion_tokens=10_000,
    )
    voice = VoiceFactory(provider_voice_id="EXAVITQu4vr4xnSDxMaL", name="Sarah")
    shared = SpeechClipFactory(
        key=hashlib.sha256(b"shared").hexdigest(),
        text="x" * 30,
        voice=voice,
        model_id="eleven_multilingual_v2",
        output_format="mp3_22050_32",
        characters=30,
    )
    CallClipFactory(call=calls["answered"], clip=shared)
    CallClipFactory(call=calls["yesterday"], clip=shared)
    return calls


# --- Figures ------------------------------------------------------------------------------


def test_today_counts_placed_calls_from_midnight_in_time_zone(day, superuser) -> None:
    with translation.override("en"):
        today = operations_overview(user=superuser, now=NOW).today

    # placed today: answered, opted out, busy, voicemail, live (not the one never placed,
    # nor yesterday's, though 00:30 in Madrid is the day before in UTC)
    assert today.date == datetime.date(2025, 5, 12)
    assert today.calls == 5
    assert today.answered == 2
    assert today.answer_rate == "50%"  # of the four ended calls that reached the carrier
    assert today.opted_out == 1
    # live now: today's call in progress and yesterday's queued one
    assert today.live_calls == 2


def test_today_costs_its_calls_and_says_what_is_pending(day, superuser) -> None:
    with translation.override("en"):
        today = operations_overview(user=superuser, now=NOW).today

    # telephony 0.013 + 0.02; model 100,000 x 0.15 + 10,000 x 0.60 per million = 0.021;
    # speech: half of a 30-character clip (yesterday's call played it too) at 0.10 per 1,000
    assert today.cost_total == "0.0555 USD"
    assert today.cost_pending is True
    assert "telephony 0.033" in today.cost_detail
    assert "telephony price pending for 2 calls" in today.cost_detail


def test_cost_is_final_once_every_price_is_known(campaign, superuser) -> None:
    contact = ContactFactory(campaign=campaign, state=Contact.State.DONE)
    CallFactory(
        placed=True,
        contact=contact,
        created_at=local(9),
        status=Call.Status.COMPLETED,
        answered_by="human",
        price=Decimal("1.5"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
    )

    with translation.override("en"):
        today = operations_overview(user=superuser, now=NOW).today

    assert (today.cost_total, today.cost_pending) == ("1.50 USD", False)


def test_campaigns_running_first_then_paused_with_their_progress(day, campaign, superuser):
    # given a paused campaign, and others that are neither running nor paused
    paused = CampaignFactory(partner=campaign.partner, name="Autumn", state=Campaign.State.PAUSED)
    ContactFactory(campaign=paused, state=Contact.State.DONE)
    ContactFactory(campaign=paused)
    for name, state in [("Draft", "draft"), ("Over", "completed"), ("Ahead", "scheduled")]:
        CampaignFactory(partner=campaign.partner, name=name, state=state, starts_at=timezone.now())

    with translation.override("en"):
        campaigns = operations_overview(user=superuser, now=NOW).campaigns

    assert [row.name for row in campaigns.rows] == ["Spring", "Autumn"]
    spring, autumn = campaigns.rows
    assert (spring.done, spring.total, spring.percent_done) == (3, 6, 50)
    assert spring.live_calls == 2
    assert (autumn.done, autumn.total, autumn.live_calls) == (1, 2, 0)
    assert (campaigns.running, campaigns.paused, campaigns.more) == (1, 1, 0)


def test_campaigns_beyond_the_shown_are_counted(partner, superuser, monkeypatch) -> None:
    monkeypatch.setattr(overview_module, "SHOWN", 3)
    for index in range(5):
        CampaignFactory(partner=partner, name=f"C{index}", state=Campaign.State.RUNNING)

    campaigns = operations_overview(user=superuser).campaigns

    assert [row.name for row in campaigns.rows] == ["C0", "C1", "C2"]
    assert (campaigns.running, campaigns.more) == (5, 2)


def test_home_page_shows_the_figures(admin_client, campaign) -> None:
    # given a running campaign with a call placed now, priced
    run(campaign)
    contact = ContactFactory(campaign=campaign, state=Contact.State.DONE)
    CallFactory(
        placed=True,
        contact=contact,
        status=Call.Status.COMPLETED,
        answered_by="human",
        price=Decimal("0.013"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
    )
    ContactFactory(campaign=campaign)

    # when staff open the admin
    response = admin_client.get(reverse("admin:index"), headers=ENGLISH)

    # then the overview comes first, with the list of apps still below it
    page = response.content.decode()
    overview = fragment(response)
    assert response.status_code == 200
    assert page.index('id="operations-overview"') < page.index('class="app-campaigns module"')
    assert re.search(r'id="tile-calls-today">.*?>1</a>', overview)
    assert "0.013 USD" in overview
    assert 'class="pending"' not in overview  # its price is known, no call is live
    assert 'progress value="1" max="2"' in overview
    assert "1 / 2" in overview


# --- Needs attention ----------------------------------------------------------------------


def test_a_campaign_paused_by_a_fault_needs_attention_until_it_runs_again(
    campaign, superuser
) -> None:
    # given a campaign the dialer paused for Twilio's refusal, and one a person paused
    run(campaign)
    by_hand = run(CampaignFactory(partner=campaign.partner, name="Other"))
    pause_campaign(campaign=campaign, reason="Twilio refused the credentials (20003).")
    pause_campaign(campaign=by_hand)

    # when staff look
    paused = operations_overview(user=superuser).attention

    # then the fault's pause is listed with its reason and its page; the other is not
    assert [entry.key for entry in paused if entry.key.startswith("campaign-")] == [
        f"campaign-paused-{campaign.pk}"
    ]
    entry = paused[0]
    assert entry.detail.endswith(": Twilio refused the credentials (20003).")
    assert [link.url for link in entry.links] == [
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ]

    # when it runs again
    transition_campaign(campaign=campaign, to=Campaign.State.RUNNING)

    # then it needs attention no more
    assert not [
        key
        for key in attention_keys(operations_overview(user=superuser))
        if key.startswith("campaign-")
    ]


def test_a_default_voice_that_does_not_resolve_needs_attention_until_it_does(
    superuser, settings
) -> None:
    # given ElevenLabs configured and a default voice named that no voice answers to
    settings.ELEVENLABS_API_KEY = "sk-test"
    settings.ELEVENLABS_DEFAULT_VOICE = "Nadie"

    with translation.override("en"):
        warned = item(operations_overview(user=superuser), "default-voice")

    assert "ELEVENLABS_DEFAULT_VOICE" in warned.detail and "Nadie" in warned.detail
    assert [link.url for link in warned.links] == [reverse("admin:voices_voice_changelist")]

    # when a voice of that name is synced
    VoiceFactory(provider_voice_id="a" * 20, name="Nadie")

    # then the default voice resolves
    assert "default-voice" not in attention_keys(operations_overview(user=superuser))


def test_failing_webhook_deliveries_need_attention_until_delivered(
    partner, superuser, as_role
) -> None:
    # given an endpoint with two given-up deliveries and one waiting for a retry, another
    # whose deliveries all arrived, and an old failure (beyond 48 hours)
    now = timezone.now()
    failing = WebhookEndpointFactory(
        partner=partner, url="https://crm.example.com/hooks", events=["call.completed"]
    )
    healthy = WebhookEndpointFactory(
        partner=partner, url="https://ok.example.com/hooks", events=["call.completed"]
    )
    make_delivery(failing, state="failed", created_at=now - datetime.timedelta(hours=30))
    make_delivery(
        failing,
        state="failed",
        last_error="No answer within 10 seconds.",
        created_at=now - datetime.timedelta(hours=25),
    )
    make_delivery(
        failing,
        state="pending",
        attempts=2,
        last_error="The endpoint answered 503.",
        created_at=now - datetime.timedelta(minutes=5),
    )
    make_delivery(failing, state="failed", created_at=now - datetime.timedelta(hours=60))
    make_delivery(healthy, state="delivered", attempts=1, last_error="")
    make_delivery(healthy, state="pending", attempts=0, last_error="")

    # when staff look
    with translation.override("en"):
        overview = operations_overview(user=superuser)
    entry = item(overview, f"webhook-endpoint-{failing.pk}")

    # then the failing endpoint is listed with its counts and latest error, the other not
    assert not [key for key in attention_keys(overview) if key.endswith(f"-{healthy.pk}")]
    assert "https://crm.example.com/hooks" in entry.title
    assert "2 deliveries failed for good." in entry.detail
    assert "1 waits for a retry." in entry.detail
    assert "The endpoint answered 503." in entry.detail
    assert [link.url for link in entry.links] == [
        reverse("admin:campaigns_webhookdelivery_changelist")
        + f"?endpoint__id__exact={failing.pk}",
        reverse("admin:campaigns_webhookendpoint_change", args=[failing.pk]),
    ]

    # when they are sent again and arrive
    WebhookDelivery.objects.filter(endpoint=failing).update(state="delivered")

    # then it needs attention no more
    assert f"webhook-endpoint-{failing.pk}" not in attention_keys(
        operations_overview(user=superuser)
    )


def test_a_disabled_endpoint_says_so(partner, superuser) -> None:
    endpoint = WebhookEndpointFactory(
        partner=partner, url="https://gone.example.com/", events=["call.completed"], is_active=False
    )
    make_delivery(endpoint, state="failed", last_error="The endpoint answered 410 Gone.")

    with translation.override("en"):
        entry = item(operations_overview(user=superuser), f"webhook-endpoint-{endpoint.pk}")

    assert entry.detail.startswith("The endpoint is disabled.")


def test_silent_beat_or_worker_needs_attention_until_the_heartbeat_runs(
    superuser, settings
) -> None:
    # given no heartbeat ever
    with translation.override("en"):
        never = item(operations_overview(user=superuser), "heartbeat")
    assert never.title == "No worker has run beat's heartbeat tick"
    assert [link.url for link in never.links] == ["/health"]

    # when a worker runs the tick
    heartbeat_task()

    # then all is well
    assert "heartbeat" not in attention_keys(operations_overview(user=superuser))

    # when the last tick is three minutes old
    cache.set(
        HEARTBEAT_CACHE_KEY, (timezone.now() - datetime.timedelta(minutes=3)).isoformat(), None
    )

    # then beat or the worker is silent
    with translation.override("en"):
        silent = item(operations_overview(user=superuser), "heartbeat")
    assert silent.title == "Beat or the worker is silent: the last heartbeat was 3\xa0minutes ago"


def test_silent_heartbeat_advice_fits_redis_or_the_embedded_default(superuser, settings) -> None:
    with translation.override("en"):
        settings.REDIS_URL = "redis://redis:6379/0"
        production = item(operations_overview(user=superuser), "heartbeat").detail
        settings.REDIS_URL = ""
        embedded = item(operations_overview(user=superuser), "heartbeat").detail

    assert "docker compose ps redis worker beat" in production
    assert "make run" in embedded and "docker" not in embedded


def test_an_unreadable_cache_is_told_apart_from_a_silent_worker(superuser, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "get", broken)

    with translation.override("en"):
        entry = item(operations_overview(user=superuser), "heartbeat")

    assert entry.title.startswith("The cache cannot be read")


def test_nothing_needs_attention_says_so(admin_client) -> None:
    heartbeat_task()

    response = admin_client.get(reverse("admin:index"), headers=ENGLISH)

    assert 'class="attention-none"' in fragment(response)
    assert "attention-item" not in fragment(response)


# --- Roles --------------------------------------------------------------------------------


@pytest.fixture
def troubles(campaign, settings) -> dict[str, object]:
    """One of every kind of attention item, and a running campaign with a call."""
    settings.ELEVENLABS_API_KEY = "sk-test"
    settings.ELEVENLABS_DEFAULT_VOICE = "Nadie"
    run(campaign)
    CallFactory(
        placed=True,
        contact=ContactFactory(campaign=campaign, state=Contact.State.CALLING),
        status=Call.Status.RINGING,
    )
    faulty = run(CampaignFactory(partner=campaign.partner, name="Faulty"))
    pause_campaign(campaign=faulty, reason="Twilio refused the caller number (21210).")
    endpoint = WebhookEndpointFactory(
        partner=campaign.partner, url="https://crm.example.com/hooks", events=["call.completed"]
    )
    make_delivery(endpoint, state="failed")
    return {"campaign": campaign, "faulty": faulty, "endpoint": endpoint}


def test_viewer_sees_the_overview_with_nothing_to_act_on_and_every_link_opens(
    as_role, troubles
) -> None:
    # given a viewer
    client = as_role("viewer")

    # when they open the admin
    response = client.get(reverse("admin:index"), headers=ENGLISH)
    overview = fragment(response)

    # then they see campaigns, today's calls and what needs attention, with no form or
    # button, and no link to the endpoint (administrators only)
    assert response.status_code == 200
    assert 'id="overview-campaigns"' in overview and 'id="overview-today"' in overview
    assert overview.count('class="attention-item"') == 4
    assert "<form" not in overview and "<button" not in overview
    endpoint_url = reverse("admin:campaigns_webhookendpoint_change", args=[troubles["endpoint"].pk])
    assert endpoint_url not in overview
    # and every link opens for them (a filter the list refuses would redirect with ?e=1)
    opened = {url: client.get(url).status_code for url in links(overview)}
    assert len(opened) >= 8
    assert set(opened.values()) == {200}, opened


def test_administrator_is_linked_to_the_failing_endpoint(as_role, troubles) -> None:
    client = as_role("administrator")

    overview = fragment(client.get(reverse("admin:index")))

    url = reverse("admin:campaigns_webhookendpoint_change", args=[troubles["endpoint"].pk])
    assert url in links(overview)
    assert client.get(url).status_code == 200


def test_staff_without_a_role_see_only_the_heartbeat(as_role, troubles) -> None:
    client = as_role(None)

    overview = fragment(client.get(reverse("admin:index")))

    assert 'id="overview-campaigns"' not in overview
    assert 'id="overview-today"' not in overview
    assert re.findall(r'data-key="([^"]+)"', overview) == ["heartbeat"]
    assert links(overview) == ["/health"]


def test_overview_needs_a_staff_login(client, troubles) -> None:
    for url in (reverse("admin:index"), reverse("admin:overview")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_refresh_view_answers_the_overview_alone(admin_client, troubles) -> None:
    response = admin_client.get(reverse("admin:overview"), headers=ENGLISH)

    body = response.content.decode().strip()
    assert response.status_code == 200
    assert body.startswith('<div id="operations-overview"')
    assert "app-campaigns" not in body
    assert "Faulty" in body
    assert 'class="pending"' in body  # a call is ringing: its speech is still to come


# --- Languages ----------------------------------------------------------------------------


def test_overview_speaks_spanish_by_default_and_english_when_asked(admin_client, campaign):
    run(campaign)
    CallFactory(
        placed=True,
        contact=ContactFactory(campaign=campaign, state=Contact.State.DONE),
        status=Call.Status.COMPLETED,
        answered_by="human",
        price=Decimal("0.013"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
    )

    spanish = admin_client.get(reverse("admin:index"))
    english = admin_client.get(reverse("admin:index"), headers=ENGLISH)

    # Spanish: the page's language, Django's own words, Spanish numbers
    assert '<html lang="es"' in spanish.content.decode()
    assert "Acciones recientes" in spanish.content.decode()
    assert "0,013 USD" in fragment(spanish)
    assert '<html lang="en"' in english.content.decode()
    assert "Needs attention" in fragment(english)
    assert "Running and paused campaigns" in fragment(english)
    assert "0.013 USD" in fragment(english)


# --- Queries ------------------------------------------------------------------------------


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("admin:index")).status_code == 200
    return len(queries)


def _more_of_everything(partner: Partner, round_: int) -> None:
    for index in range(25):
        campaign = CampaignFactory(
            partner=partner, name=f"R{round_}-{index}", state=Campaign.State.RUNNING
        )
        for _call in range(4):
            contact = ContactFactory(campaign=campaign, state=Contact.State.DONE)
            CallFactory(
                placed=True, contact=contact, status=Call.Status.COMPLETED, answered_by="human"
            )
        CallFactory(
            placed=True,
            contact=ContactFactory(campaign=campaign, state=Contact.State.CALLING),
            status=Call.Status.RINGING,
        )
        if index % 5 == 0:
            pause_campaign(campaign=campaign, reason="Twilio refused the caller number.")
    for index in range(5):
        endpoint = WebhookEndpointFactory(
            partner=partner,
            url=f"https://e{round_}-{index}.example.com/",
            events=["call.completed"],
        )
        for _delivery in range(3):
            make_delivery(endpoint, state="failed")


@pytest.mark.parametrize("role", ["superuser", "viewer"])
def test_queries_do_not_grow_with_campaigns_calls_and_deliveries(
    role, client, superuser, as_role, troubles
) -> None:
    # given the home page as it is
    if role == "superuser":
        client.force_login(superuser)
    else:
        client = as_role(role)
    _queries(client)  # the first request of a session loads what later ones reuse
    before = _queries(client)

    # when there are 25 more running campaigns with calls, 5 of them paused by a fault,
    # and 5 more failing endpoints
    _more_of_everything(troubles["campaign"].partner, 1)
    after = _queries(client)

    # then the page asks the database as many times, and few
    assert after == before
    assert after <= 20
