"""A hostile partner cannot pick its own telephony limits: caller numbers, transfer
numbers, compliance profile and pacing stay within what staff set for it, in the API, in
the console and at dial time (campaigns/limits.py, docs/security.md, "telephony")."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from calls.dispatcher import dispatch
from calls.models import Call
from campaigns.eligibility import ReasonCode, evaluate
from campaigns.models import Campaign, Contact, Partner
from campaigns.services import CampaignStateError, create_api_key, start_campaign
from tests.calls import test_flow as flow_tests
from tests.calls.test_flow import live_call, scripted  # noqa: F401 - fixtures
from tests.factories import CallTemplateFactory, CampaignFactory, PartnerFactory

EN = {"Accept-Language": "en"}
# A Wednesday at noon in Madrid: inside every profile's calling window.
NOON = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)
OWN_NUMBER = "+34910000001"
TRANSFER_TO = "+34910000999"
# A number the partner was never given: say, a premium-rate line of its own.
PREMIUM = "+34803000000"


@pytest.fixture
def hostile(db: None) -> Partner:
    """A partner with the default limits, plus one caller and one transfer number."""
    return PartnerFactory(
        name="Hostil", caller_numbers=[OWN_NUMBER], transfer_numbers=[TRANSFER_TO]
    )


@pytest.fixture
def hostile_client(hostile: Partner) -> APIClient:
    _api_key, key = create_api_key(partner=hostile, name="Tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def hostile_campaign(hostile: Partner) -> Campaign:
    return CampaignFactory(partner=hostile, name="Otoño")


@pytest.fixture(autouse=True)
def full_buckets(settings, tmp_path) -> None:
    """Every test starts with full pacing buckets and a generous account."""
    settings.TWILIO_MAX_CPS = 100
    settings.DATA_DIR = tmp_path
    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        for key in redis.scan_iter("callcenter:pacing:*"):
            redis.delete(key)


def errors_of(response) -> dict[str, str]:
    assert response.status_code == 400, response.content
    return {error["field"]: error["message"] for error in response.json()["errors"]}


# Each setting beyond the default limits, and what the refusal must name.
BEYOND = [
    ("caller_number", PREMIUM, [PREMIUM, OWN_NUMBER]),
    ("transfer_number", PREMIUM, [PREMIUM, TRANSFER_TO]),
    ("compliance_profile", "none", ["“none”", "us, es"]),
    ("max_concurrent_calls", 500, ["500", "cap of 5"]),
    ("calls_per_second", "50.00", ["50", "cap of 1"]),
    ("max_attempts", 40, ["40", "cap of 3"]),
]


@pytest.mark.parametrize(("field", "value", "named"), BEYOND)
def test_partner_cannot_create_a_campaign_beyond_its_limits(
    hostile_client, field, value, named
) -> None:
    response = hostile_client.post(
        "/api/v1/campaigns/", {"name": "Ataque", field: value}, format="json", headers=EN
    )

    message = errors_of(response)[field]
    for word in named:
        assert word in message
    assert not Campaign.objects.filter(name="Ataque").exists()


@pytest.mark.parametrize(("field", "value", "named"), BEYOND)
def test_partner_cannot_patch_a_campaign_beyond_its_limits(
    hostile_client, hostile_campaign, field, value, named
) -> None:
    before = getattr(hostile_campaign, field)

    response = hostile_client.patch(
        f"/api/v1/campaigns/{hostile_campaign.pk}/", {field: value}, format="json", headers=EN
    )

    message = errors_of(response)[field]
    for word in named:
        assert word in message
    hostile_campaign.refresh_from_db()
    assert getattr(hostile_campaign, field) == before


def test_partner_may_use_what_staff_allow(hostile_client, hostile) -> None:
    # given staff allow "none" too
    hostile.compliance_profiles = ["us", "es", "none"]
    hostile.save()

    response = hostile_client.post(
        "/api/v1/campaigns/",
        {
            "name": "Permitida",
            "caller_number": "910 000 001",
            "transfer_number": TRANSFER_TO,
            "compliance_profile": "none",
            "max_concurrent_calls": 5,
            "calls_per_second": "1",
            "max_attempts": 3,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["caller_number"], body["transfer_number"]) == (OWN_NUMBER, TRANSFER_TO)
    assert body["limit_warnings"] == []


def test_an_empty_caller_number_is_the_deployments_own_and_allowed(
    hostile_client, settings
) -> None:
    settings.TWILIO_PHONE_NUMBER = "+34910000555"

    empty = hostile_client.post("/api/v1/campaigns/", {"name": "A"}, format="json")
    default = hostile_client.post(
        "/api/v1/campaigns/", {"name": "B", "caller_number": "+34910000555"}, format="json"
    )

    assert empty.status_code == default.status_code == 201


def test_partner_with_no_transfer_number_cannot_transfer(hostile_client, hostile) -> None:
    hostile.transfer_numbers = []
    hostile.save()

    response = hostile_client.post(
        "/api/v1/campaigns/",
        {"name": "Ataque", "transfer_number": TRANSFER_TO},
        format="json",
        headers=EN,
    )

    assert "no transfer number" in errors_of(response)["transfer_number"]


def test_partner_cannot_change_its_own_limits_through_the_api(
    hostile_client, hostile, hostile_campaign
) -> None:
    # when the partner tries the partners endpoint, and smuggles caps into a campaign
    partner_url = f"/api/v1/partners/{hostile.pk}/"
    patched = hostile_client.patch(
        partner_url, {"max_concurrent_calls_cap": 1000, "compliance_profiles": ["none"]}
    )
    put = hostile_client.put(partner_url, {"name": "Hostil", "caller_numbers": [PREMIUM]})
    smuggled = hostile_client.patch(
        f"/api/v1/campaigns/{hostile_campaign.pk}/",
        {"max_concurrent_calls_cap": 1000, "calls_per_second_cap": 999},
        format="json",
    )

    # then nothing of its limits changed
    assert patched.status_code in (403, 404, 405)
    assert put.status_code in (403, 404, 405)
    assert smuggled.status_code == 200  # fields that are none of a campaign's: ignored
    hostile.refresh_from_db()
    assert hostile.max_concurrent_calls_cap == 5
    assert hostile.calls_per_second_cap == Decimal("1")
    assert hostile.compliance_profiles == ["us", "es"]
    assert hostile.caller_numbers == [OWN_NUMBER]


def test_staff_through_the_api_are_held_to_the_partners_limits(staff_api_client, hostile) -> None:
    response = staff_api_client.post(
        "/api/v1/campaigns/",
        {"partner": hostile.pk, "name": "Ataque", "caller_number": PREMIUM},
        format="json",
        headers=EN,
    )

    assert "not one of this partner's numbers" in errors_of(response)["caller_number"]


# --- The console ----------------------------------------------------------------------------


def test_staff_set_a_partners_limits_in_the_console(admin_client, hostile) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_partner_change", args=[hostile.pk]),
        {
            "name": hostile.name,
            "is_active": "on",
            "caller_numbers": "910 000 001\n+34 910 000 002",
            "transfer_numbers": "",
            "compliance_profiles": ["es", "none"],
            "max_concurrent_calls_cap": "20",
            "calls_per_second_cap": "2.5",
            "max_attempts_cap": "4",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
            "_save": "Save",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    hostile.refresh_from_db()
    assert hostile.caller_numbers == [OWN_NUMBER, "+34910000002"]
    assert hostile.transfer_numbers == []
    assert hostile.compliance_profiles == ["es", "none"]
    assert (
        hostile.max_concurrent_calls_cap,
        hostile.calls_per_second_cap,
        hostile.max_attempts_cap,
    ) == (20, Decimal("2.5"), 4)


def test_the_console_refuses_a_number_that_is_no_number_in_a_partners_limits(
    admin_client, hostile
) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_partner_change", args=[hostile.pk]),
        {
            "name": hostile.name,
            "caller_numbers": "910 000 001\n12345",
            "compliance_profiles": ["es"],
            "max_concurrent_calls_cap": "5",
            "calls_per_second_cap": "1",
            "max_attempts_cap": "3",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
            "_save": "Save",
        },
        headers=EN,
    )

    assert response.status_code == 200
    assert "“12345” is not a valid phone number" in response.content.decode()
    hostile.refresh_from_db()
    assert hostile.caller_numbers == [OWN_NUMBER]


def test_staff_in_the_console_are_held_to_the_partners_limits(
    admin_client, hostile, hostile_campaign
) -> None:
    response = admin_client.post(
        reverse("admin:campaigns_campaign_change", args=[hostile_campaign.pk]),
        {
            "name": hostile_campaign.name,
            "caller_number": PREMIUM,
            "phone_region": "ES",
            "compliance_profile": "none",
            "calling_windows": "{}",
            "frequency_cap_calls": 3,
            "frequency_cap_hours": 24,
            "ring_timeout_seconds": 25,
            "time_limit_seconds": 600,
            "machine_action": "voicemail",
            "max_concurrent_calls": 50,
            "calls_per_second": 1,
            "max_attempts": 3,
            "retry_policy": '{"busy": {"delay_minutes": 30, "max_attempts": 3}, '
            '"no-answer": {"delay_minutes": 120, "max_attempts": 3}, '
            '"failed": {"delay_minutes": 240, "max_attempts": 2}, '
            '"voicemail": {"delay_minutes": 1440, "max_attempts": 2}}',
            "sandbox_personas": "{}",
            "_save": "Save",
        },
        headers=EN,
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert f"The caller number {PREMIUM} is not one of this partner&#x27;s numbers" in page
    assert "The compliance profile “none” is not allowed for this partner" in page
    assert "50 is above this partner&#x27;s cap of 5 for max_concurrent_calls" in page
    hostile_campaign.refresh_from_db()
    assert (hostile_campaign.caller_number, hostile_campaign.max_concurrent_calls) == ("", 5)


def test_the_campaign_page_says_when_the_dialer_clamps_its_pacing(
    admin_client, hostile, hostile_campaign
) -> None:
    Campaign.objects.filter(pk=hostile_campaign.pk).update(max_concurrent_calls=50)

    page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[hostile_campaign.pk]), headers=EN
    ).content.decode()

    assert (
        "The dialer uses 5 for max_concurrent_calls: the campaign&#x27;s 50 is above this "
        "partner&#x27;s cap."
    ) in page


# --- At dial time ---------------------------------------------------------------------------


@pytest.fixture
def running(hostile: Partner) -> Campaign:
    """A running campaign of ``hostile`` saved before its limits were lowered: far above
    its caps."""
    template = CallTemplateFactory(
        partner=hostile,
        name="Recordatorio",
        variables={"first_name": "Lucía"},
        greeting=(
            "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."
        ),
        instructions="Confirma la cita.",
        voicemail_message="Le llamamos de {{ partner }}.",
        closing_line="Adiós.",
    )
    campaign = CampaignFactory(
        partner=hostile,
        name="Rápida",
        template=template,
        state=Campaign.State.RUNNING,
        caller_number=OWN_NUMBER,
        max_concurrent_calls=100,
        calls_per_second=Decimal("100"),
        max_attempts=20,
    )
    Contact.objects.bulk_create(
        Contact(
            campaign=campaign,
            phone=f"+3491{index:07d}",
            time_zone="Europe/Madrid",
            variables={"first_name": f"Ana {index}"},
        )
        for index in range(1, 21)
    )
    return campaign


def test_dialer_clamps_concurrency_to_the_partners_cap(running, hostile) -> None:
    hostile.calls_per_second_cap = Decimal("100")
    hostile.max_concurrent_calls_cap = 3
    hostile.save()

    first = dispatch(now=NOON)
    second = dispatch(now=NOON + datetime.timedelta(seconds=4))

    assert len(first.created) == 3
    assert second.created == []  # the three are still going on
    assert Call.objects.live().filter(campaign=running).count() == 3


def test_dialer_caps_concurrency_across_the_partners_campaigns(running, hostile) -> None:
    # given a second campaign of the same partner, also far above the cap
    hostile.calls_per_second_cap = Decimal("100")
    hostile.max_concurrent_calls_cap = 4
    hostile.save()
    twin = Campaign.objects.get(pk=running.pk)
    twin.pk, twin.name = None, "Gemela"
    twin.save()
    Contact.objects.bulk_create(
        Contact(
            campaign=twin,
            phone=f"+3493{index:07d}",
            time_zone="Europe/Madrid",
            variables={"first_name": "Eva"},
        )
        for index in range(1, 21)
    )

    dispatch(now=NOON)
    dispatch(now=NOON + datetime.timedelta(seconds=4))

    assert Call.objects.live().filter(campaign__partner=hostile).count() == 4


def test_dialer_clamps_the_rate_to_the_partners_cap(running, hostile) -> None:
    # given a cap of 1 call a second: a bucket of one tick (2 s) holds 2 calls
    hostile.max_concurrent_calls_cap = 100
    hostile.save()

    assert len(dispatch(now=NOON).created) == 2


def test_dialer_clamps_attempts_to_the_partners_cap(running) -> None:
    contact = running.contacts.first()
    contact.attempts = 3  # the partner's cap; the campaign says 20
    contact.state = Contact.State.RETRY
    contact.next_attempt_at = NOON

    verdict = evaluate(
        contact=contact,
        campaign=running,
        now=NOON,
        history=[],
        blocked_by_dnc=False,
        live_call=False,
    )

    assert ReasonCode.ATTEMPTS_EXHAUSTED in verdict.codes


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"caller_numbers": []}, OWN_NUMBER),
        ({"compliance_profiles": ["us"]}, "“es”"),
    ],
)
def test_dialer_pauses_a_campaign_whose_number_or_profile_staff_withdrew(
    running, hostile, change, named
) -> None:
    # given staff withdraw what the running campaign uses
    for name, value in change.items():
        setattr(hostile, name, value)
    hostile.save()

    with translation.override("en"):
        result = dispatch(now=NOON)

    assert result.created == []
    running.refresh_from_db()
    assert running.state == Campaign.State.PAUSED
    assert named in running.state_reason
    assert not Call.objects.filter(campaign=running).exists()


def test_a_campaign_whose_profile_staff_withdrew_cannot_resume(running, hostile) -> None:
    Campaign.objects.filter(pk=running.pk).update(
        state=Campaign.State.DRAFT, compliance_profile="none"
    )
    running.refresh_from_db()

    with translation.override("en"), pytest.raises(CampaignStateError) as refused:
        start_campaign(campaign=running)

    assert any("“none” is not allowed for this partner" in r for r in refused.value.reasons)


def test_the_api_shows_what_the_dialer_clamps(hostile_client, running, hostile) -> None:
    response = hostile_client.get(f"/api/v1/campaigns/{running.pk}/", headers=EN)

    warnings = response.json()["limit_warnings"]
    assert warnings == [
        "The dialer uses 5 for max_concurrent_calls: the campaign's 100 is above this "
        "partner's cap.",
        "The dialer uses 1 for calls_per_second: the campaign's 100 is above this partner's cap.",
        "The dialer uses 3 for max_attempts: the campaign's 20 is above this partner's cap.",
    ]


# --- On a call ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_call_going_on_is_not_put_through_to_a_transfer_number_staff_withdrew(
    client,
    live_call,  # noqa: F811 - the fixture imported above
    scripted,  # noqa: F811 - the fixture imported above
    partner,
    settings,
) -> None:
    # given a call of a campaign whose transfer number staff withdrew meanwhile
    settings.APP_URL = flow_tests.APP_URL
    settings.TELEPHONY_BACKEND = "sandbox"
    partner.transfer_numbers = []
    partner.save()
    flow_tests.post(client, "answer", live_call)

    # when the callee asks for a person
    elements = flow_tests.turn(live_call, {"SpeechResult": "con una persona"})

    # then nobody is dialled
    assert "Dial" not in [element.tag for element in elements]
    live_call.refresh_from_db()
    assert not (live_call.outcome or {}).get("transferred")


# --- Upgrading ------------------------------------------------------------------------------

BEFORE_LIMITS = [("campaigns", "0017_roles_token_versions")]
WITH_LIMITS = [("campaigns", "0018_partner_telephony_limits")]


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_keeps_the_numbers_partners_use_but_not_the_none_profile() -> None:
    # given a partner whose campaigns use numbers and "none" before limits existed
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_LIMITS)
    try:
        old = executor.loader.project_state(BEFORE_LIMITS).apps
        partner = old.get_model("campaigns", "Partner").objects.create(name="Veterana")
        campaigns = old.get_model("campaigns", "Campaign").objects
        campaigns.create(
            partner=partner,
            name="A",
            caller_number=OWN_NUMBER,
            transfer_number=TRANSFER_TO,
            compliance_profile="none",
            max_concurrent_calls=50,
        )
        campaigns.create(partner=partner, name="B", caller_number=OWN_NUMBER)

        # when the limits arrive
        executor = MigrationExecutor(connection)
        executor.migrate(WITH_LIMITS)

        # then it keeps its numbers, gets the default caps, and "none" is staff's to grant
        new = executor.loader.project_state(WITH_LIMITS).apps
        upgraded = new.get_model("campaigns", "Partner").objects.get(pk=partner.pk)
        assert upgraded.caller_numbers == [OWN_NUMBER]
        assert upgraded.transfer_numbers == [TRANSFER_TO]
        assert upgraded.compliance_profiles == ["us", "es"]
        assert upgraded.max_concurrent_calls_cap == 5
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
