"""The vendors as they really are, end to end, for each family of OpenAI model.

A partner sets up and starts a campaign through the API; the real web server (uvicorn), a
Celery worker and beat run it on PostgreSQL and Redis through the sandbox carrier, which
behaves as Twilio does: no price in its callbacks, the price on the Call resource some
seconds after the end. The model is the fake OpenAI answering as the family named does
(gpt-4 has no JSON mode; o4-mini refuses max_tokens and temperature), speech the fake
ElevenLabs with today's voice names, and the default voice is left as the deployment guide
has it, "Bella". Every completed call must have its outcome fields, its audio and its
telephony price within a minute of its end, and the campaign's cost must be the sum of
its calls'.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from calls.models import Call
from campaigns.models import Contact
from campaigns.services import onboard_partner
from tests.fakes.elevenlabs import SARAH_ID, FakeElevenLabs
from tests.fakes.openai import FakeOpenAI
from tests.partners import trust
from tests.processes import other_redis_database, running_system

PERSONAS = ["interested", "not_interested", "callback", "opt_out", "voicemail", "busy"]
SETTLE_SECONDS = 240
PRICE_SECONDS = 60  # the longest a completed call may wait for its price after its end
OUTCOME = '{"outcome": {"attending": true}, "summary": "Confirma que irá a su cita."}'

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not (settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")),
        reason="runs on PostgreSQL and Redis, as in production (.ci/run starts them)",
    ),
]


@pytest.fixture
def vendors() -> Iterator[tuple[FakeOpenAI, FakeElevenLabs]]:
    with (
        FakeOpenAI(api_key="e2e-openai", default_outcome=OUTCOME) as openai,
        FakeElevenLabs(api_key="e2e-elevenlabs") as elevenlabs,
    ):
        yield openai, elevenlabs


def system(tmp_path, vendors, model: str):
    openai, elevenlabs = vendors
    return running_system(
        tmp_path,
        REDIS_URL=other_redis_database(settings.REDIS_URL),
        TELEPHONY_BACKEND="sandbox",
        SANDBOX_SPEED="20",
        TWILIO_MAX_CPS="10",
        # The vendors' keys reach the processes (tests/settings.py drops them otherwise).
        CALLCENTER_LOCAL_FAKES="1",
        OPENAI_API_KEY="e2e-openai",
        OPENAI_BASE_URL=f"{openai.url}/v1",
        DEFAULT_MODEL=model,
        ELEVENLABS_API_KEY="e2e-elevenlabs",
        ELEVENLABS_BASE_URL=elevenlabs.url,
        ELEVENLABS_CONCURRENCY="5",
        # ELEVENLABS_DEFAULT_VOICE unset: the deployment guide's "Bella".
    )


def api(url: str, key: str):
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {key}"

    def call(method: str, path: str, **kwargs) -> dict:
        response = session.request(method, f"{url}/api/v1/{path}", timeout=30, **kwargs)
        assert response.status_code < 400, (path, response.status_code, response.text)
        return response.json() if response.content else {}

    return call


def set_up_campaign(call) -> int:
    template = call(
        "POST",
        "templates/",
        json={
            "name": "Recordatorio",
            "language": "es-ES",
            "mode": "ai",
            "variables": {"first_name": "Lucía"},
            "greeting": (
                "Hola {{ first_name }}. Le llamamos de {{ partner }} para recordarle su cita. "
                "Soy un asistente automático."
            ),
            "instructions": "Confirma si {{ first_name }} vendrá a su cita del martes.",
            "voicemail_message": "Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
            "closing_line": "Gracias, adiós.",
            "outcome_schema": {
                "type": "object",
                "properties": {"attending": {"type": "boolean"}},
                "required": ["attending"],
            },
        },
    )
    campaign = call(
        "POST",
        "campaigns/",
        json={
            "name": "Citas",
            "template": template["id"],
            "caller_number": "+34910000000",
            "compliance_profile": "none",
            "max_concurrent_calls": 10,
            "calls_per_second": 10,
            "max_attempts": 1,
        },
    )
    for index, persona in enumerate(PERSONAS):
        call(
            "POST",
            f"campaigns/{campaign['id']}/contacts/",
            json={
                "phone": f"+3461000{index:04d}",
                "variables": {"first_name": f"Persona {index}", "sandbox_persona": persona},
            },
        )
    call("POST", f"campaigns/{campaign['id']}/start/")
    return campaign["id"]


def settled(campaign_id: int) -> bool:
    waiting = Contact.objects.filter(
        campaign_id=campaign_id, state__in=[Contact.State.PENDING, Contact.State.CALLING]
    ).exists()
    return not waiting and not Call.objects.live().filter(campaign_id=campaign_id).exists()


@pytest.mark.parametrize("model", ["gpt-4", "o4-mini"])
def test_a_campaign_from_the_api_is_whole_with_each_model_family(tmp_path, vendors, model):
    openai, _elevenlabs = vendors
    onboarding = onboard_partner(name="Clínica Demo", username="clinica", password="pw-e2e")
    trust(onboarding.partner)
    key = onboarding.api_key
    with system(tmp_path, vendors, model) as url:
        call = api(url, key)
        campaign_id = set_up_campaign(call)

        deadline = time.monotonic() + SETTLE_SECONDS
        while not settled(campaign_id) and time.monotonic() < deadline:
            time.sleep(1)
        assert settled(campaign_id), list(Contact.objects.values_list("state", flat=True))

        # Each completed call's price, as the system keeps it, watched as it arrives.
        completed = Call.objects.filter(campaign_id=campaign_id, status=Call.Status.COMPLETED)
        priced_at: dict[int, datetime.datetime] = {}
        deadline = time.monotonic() + PRICE_SECONDS + 30
        while len(priced_at) < completed.count() and time.monotonic() < deadline:
            for pk in completed.filter(price_status=Call.PriceStatus.KNOWN).values_list(
                "pk", flat=True
            ):
                priced_at.setdefault(pk, timezone.now())
            time.sleep(0.5)

        calls = call("GET", f"calls/?campaign={campaign_id}&page_size=100")["results"]
        stats = call("GET", f"campaigns/{campaign_id}/stats/")

    # The model was asked as its family takes it, and never refused.
    requests_sent = openai.chat_requests
    assert requests_sent, "the model was never asked"
    turns = [body for body in requests_sent if body.get("tools")]
    extractions = [body for body in requests_sent if not body.get("tools")]
    assert turns and extractions
    for body in requests_sent:
        assert "max_tokens" not in body and "max_completion_tokens" in body
        if model == "o4-mini":
            assert "temperature" not in body
    if model == "gpt-4":
        assert all("response_format" not in body for body in extractions)
    assert openai.refusals == [], openai.refusals

    # Every completed call: its outcome fields, its audio in the guide's default voice, and
    # its telephony price within a minute of its end.
    completed_calls = list(completed.select_related("voice"))
    assert len(completed_calls) >= 4  # the people and the voicemail; not the busy line
    for done in completed_calls:
        assert done.voice is not None and done.voice.provider_voice_id == SARAH_ID
        assert done.speech_fallbacks == 0, done.pk
        assert done.clips.exists(), done.pk
        if done.answered_by == "human":
            assert "attending" in done.outcome, (done.pk, done.outcome)
        assert done.pk in priced_at, f"call {done.pk} has no price"
        assert priced_at[done.pk] - done.ended_at <= datetime.timedelta(seconds=PRICE_SECONDS)
        assert done.price > 0 and done.price_unit == "USD"

    # The campaign's cost is the sum of its calls', as the API tells both.
    by_call = [item["cost"] for item in calls]
    assert len(by_call) == Call.objects.filter(campaign_id=campaign_id).count()
    assert stats["cost"]["pending"] == [] and stats["cost"]["unpriced"] == []
    for part in ("telephony", "speech", "model", "total"):
        summed = sum(Decimal(cost[part]) for cost in by_call)
        assert abs(Decimal(stats["cost"][part]) - summed) <= Decimal("0.000001") * len(by_call)
    assert Decimal(stats["cost"]["telephony"]) > 0
    assert Decimal(stats["cost"]["speech"]) > 0
    assert Decimal(stats["cost"]["model"]) > 0
    assert model in stats["cost"]["tokens"]
