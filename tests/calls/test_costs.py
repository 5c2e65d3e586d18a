"""What calls cost: telephony, speech and the model, by call and by campaign."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from django.utils import timezone

from calls.costs import call_cost, call_costs, campaign_cost, model_price
from calls.models import Call, Turn
from campaigns.deliveries import create_webhook_endpoint
from campaigns.models import Campaign, WebhookDelivery
from tests.factories import (
    CallClipFactory,
    CallFactory,
    CampaignFactory,
    SpeechClipFactory,
    TurnFactory,
    VoiceFactory,
)
from voices.models import SpeechClip, Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def voice(db) -> Voice:
    return VoiceFactory(provider_voice_id="EXAVITQu4vr4xnSDxMaL", name="Sarah")


def completed_call(campaign: Campaign, **fields) -> Call:
    """A completed call Twilio accepted, to a new contact of ``campaign``."""
    return CallFactory(
        contact__campaign=campaign, placed=True, **{"status": Call.Status.COMPLETED, **fields}
    )


def clip(voice: Voice, text: str, model_id: str) -> SpeechClip:
    return SpeechClipFactory(
        key=hashlib.sha256(f"{model_id}:{text}".encode()).hexdigest(),
        text=text,
        voice=voice,
        model_id=model_id,
        output_format="mp3_22050_32",
        characters=len(text),
        status=SpeechClip.Status.RENDERING,
    )


def agent_turn(call: Call, sequence: int, model: str, prompt: int, completion: int) -> Turn:
    return TurnFactory(
        call=call,
        sequence=sequence,
        role=Turn.Role.AGENT,
        text="Perfecto.",
        started_at=timezone.now(),
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
    )


def test_a_calls_cost_adds_twilios_price_its_clips_share_and_its_tokens(
    campaign, voice, settings
) -> None:
    settings.COST_CURRENCY = "USD"
    # given a call Twilio priced at 0.026 USD, which played a greeting clip shared with
    # one other call and a live line of its own, and whose turns and extraction billed
    # tokens of two models
    call = completed_call(
        campaign,
        price=Decimal("0.02600"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
        extraction_model="gpt-4o-mini",
        extraction_prompt_tokens=1000,
        extraction_completion_tokens=100,
    )
    other = completed_call(campaign)
    greeting = clip(voice, "x" * 1000, "eleven_multilingual_v2")  # 0.10 per thousand
    line = clip(voice, "y" * 200, "eleven_flash_v2_5")  # 0.05 per thousand
    CallClipFactory(call=call, clip=greeting)
    CallClipFactory(call=call, clip=line)
    CallClipFactory(call=other, clip=greeting)
    agent_turn(call, 0, "gpt-4o-mini", 2000, 50)  # 0.15 / 0.60 per million
    agent_turn(call, 1, "o4-mini-2025-04-16", 1000, 500)  # 1.10 / 4.40, its snapshot

    cost = call_cost(call)

    assert cost.telephony == Decimal("0.026")
    # half the greeting's 1000 characters, and all the line's 200
    assert cost.characters == {"eleven_multilingual_v2": 500, "eleven_flash_v2_5": 200}
    assert cost.speech == Decimal("0.05") + Decimal("0.01")
    assert cost.tokens == {"gpt-4o-mini": (3000, 150), "o4-mini-2025-04-16": (1000, 500)}
    gpt = (3000 * Decimal("0.15") + 150 * Decimal("0.60")) / 1_000_000
    o4 = (1000 * Decimal("1.10") + 500 * Decimal("4.40")) / 1_000_000
    assert cost.model == (gpt + o4).quantize(Decimal("0.000001"))
    assert cost.total == cost.telephony + cost.speech + cost.model
    assert (cost.pending, cost.unpriced) == ((), ())


def test_a_cost_says_what_is_pending_and_what_has_no_price(campaign, settings) -> None:
    settings.OPENAI_PRICES = {}
    pending = completed_call(campaign)  # ended: Twilio has not priced it yet
    euros = completed_call(
        campaign, price=Decimal("0.01"), price_unit="EUR", price_status=Call.PriceStatus.KNOWN
    )
    never = completed_call(campaign, price_status=Call.PriceStatus.UNAVAILABLE)
    agent_turn(pending, 0, "my-local-llama", 10, 10)

    costs = call_costs([pending, euros, never])

    assert costs[pending.pk].pending == ("telephony",)
    assert costs[pending.pk].unpriced == ("model:my-local-llama",)
    assert costs[pending.pk].tokens == {"my-local-llama": (10, 10)}
    assert costs[euros.pk].unpriced == ("telephony:EUR",)
    assert costs[euros.pk].telephony == 0
    assert costs[never.pk].unpriced == ("telephony:unavailable",)


def test_a_call_twilio_does_not_charge_costs_nothing_and_nothing_is_pending(campaign) -> None:
    busy = completed_call(
        campaign, status=Call.Status.BUSY, price_status=Call.PriceStatus.NOT_CHARGED
    )

    cost = call_cost(busy)

    assert (cost.total, cost.pending, cost.is_final) == (0, (), True)


def test_a_campaigns_cost_is_the_sum_of_its_calls(campaign, voice, partner) -> None:
    # given calls sharing clips with each other and with another campaign's call
    elsewhere = CampaignFactory(partner=partner, name="Elsewhere")
    shared = clip(voice, "Le llamamos de Acme.", "eleven_multilingual_v2")
    calls = []
    for index in range(5):
        call = completed_call(
            campaign,
            price=Decimal("0.0130") * (index + 1),
            price_unit="USD",
            price_status=Call.PriceStatus.KNOWN,
            extraction_model="gpt-4",
            extraction_prompt_tokens=300,
            extraction_completion_tokens=40,
        )
        CallClipFactory(call=call, clip=shared)
        CallClipFactory(call=call, clip=clip(voice, f"Línea {index}.", "eleven_flash_v2_5"))
        agent_turn(call, 0, "gpt-4", 700 + index, 30)
        calls.append(call)
    CallClipFactory(call=completed_call(elsewhere), clip=shared)
    calls.append(completed_call(campaign))  # a call whose price is still to come

    total = campaign_cost(campaign_id=campaign.pk)
    each = call_costs(Call.objects.filter(campaign=campaign))

    for part in ("telephony", "speech", "model"):
        summed = sum(getattr(cost, part) for cost in each.values())
        assert abs(getattr(total, part) - summed) <= Decimal("0.000001") * len(each), part
    assert total.telephony == Decimal("0.195")
    assert total.tokens == {"gpt-4": (5 * 300 + sum(700 + i for i in range(5)), 5 * 70)}
    # the shared clip's characters: five of its six plays were this campaign's
    assert float(total.characters["eleven_multilingual_v2"]) == pytest.approx(20 * 5 / 6)
    assert (total.pending, total.calls_pending) == (("telephony",), 1)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o-mini", (Decimal("0.15"), Decimal("0.60"))),
        ("gpt-4o-mini-2024-07-18", (Decimal("0.15"), Decimal("0.60"))),
        ("openai/gpt-5-mini", (Decimal("0.25"), Decimal("2.00"))),
        ("gpt-4-0613", (Decimal("30.00"), Decimal("60.00"))),
        ("llama3", None),
    ],
)
def test_model_price_finds_a_snapshot_by_its_models_name(model, price) -> None:
    assert model_price(model) == price


def test_a_price_found_tells_partners_what_the_call_cost(campaign, settings) -> None:
    from calls.callbacks import record_price

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    endpoint = create_webhook_endpoint(
        partner=campaign.partner, url="http://127.0.0.1:9/hooks", events=["call.priced"]
    )
    call = completed_call(campaign)

    assert record_price(call_id=call.pk, price="-0.01300", price_unit="USD")
    assert not record_price(call_id=call.pk, price="-0.01300", price_unit="USD")  # once

    [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
    data = delivery.payload["data"]
    assert delivery.event_type == "call.priced"
    assert (data["call_id"], data["price"], data["price_status"]) == (call.pk, "0.01300", "known")
    assert data["cost"]["telephony"] == "0.013000"
    assert data["cost"]["pending"] == []
