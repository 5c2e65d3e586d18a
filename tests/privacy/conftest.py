"""A person with everything the product may hold about them: contacts in two campaigns,
a call with its transcript, recording (at the fake Twilio), clips, events and cost, a
webhook delivery, a stored API answer, a do-not-call entry, an import's rejected row, the
admin's history and the audit trail; and another person, whose data must stay."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.utils import timezone

from audit import services as audit
from calls.models import Call, CallClip, CallEvent, Turn
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    ContactImportError,
    DoNotCall,
    IdempotencyKey,
    Partner,
)
from tests.factories import (
    CallFactory,
    CampaignFactory,
    ContactFactory,
    SpeechClipFactory,
    UserFactory,
    VoiceFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
)
from tests.fakes.twilio import ACCOUNT_SID, FakeTwilio
from voices.models import SpeechClip

PHONE = "+34600123456"
NATIONAL = "600123456"
FIRST_NAME = "Zacarías"
LAST_NAME = "Quintanilla"
OTHER_PHONE = "+34600999888"
CALL_SID = "CA" + "cd" * 16


@dataclass
class Subject:
    partner: Partner
    campaigns: list[Campaign]
    contact: Contact
    call: Call
    recording_sid: str
    personal_clip: SpeechClip
    prerendered_clip: SpeechClip
    shared_clip: SpeechClip
    other_contact: Contact


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


def _clip(voice, text: str) -> SpeechClip:
    clip = SpeechClipFactory(voice=voice, text=text, content_type="audio/mpeg")
    clip.audio.save(f"clip-{clip.pk}.mp3", ContentFile(b"ID3 " + text.encode()), save=False)
    clip.status = "ready"
    clip.save()
    return clip


@pytest.fixture
def subject(campaign: Campaign, fake_twilio: FakeTwilio, media_root: Path) -> Subject:
    partner = campaign.partner
    second = CampaignFactory(partner=partner, name="Autumn", template=campaign.template)
    variables = {"first_name": FIRST_NAME, "last_name": LAST_NAME}
    contact = ContactFactory(
        campaign=campaign,
        phone=PHONE,
        variables=variables,
        external_id="crm-zq-77",
        time_zone="Europe/Madrid",
        state=Contact.State.DONE,
        attempts=1,
    )
    ContactFactory(campaign=second, phone=PHONE, variables=variables)
    other = ContactFactory(campaign=campaign, phone=OTHER_PHONE, variables={"first_name": "Ana"})
    recording = fake_twilio.add_recording(CALL_SID, audio=b"ID3-their-voice")
    now = timezone.now()
    call = CallFactory(
        contact=contact,
        provider_sid=CALL_SID,
        status=Call.Status.COMPLETED,
        dialed_at=now - datetime.timedelta(minutes=3),
        answered_at=now - datetime.timedelta(minutes=2),
        ended_at=now,
        duration_seconds=120,
        price=Decimal("0.03000"),
        price_unit="USD",
        price_status=Call.PriceStatus.KNOWN,
        summary=f"{FIRST_NAME} {LAST_NAME} confirms the appointment.",
        answers={"attending": True, "note": f"Call {FIRST_NAME} at {NATIONAL}"},
        flags={"callback_note": f"{LAST_NAME} prefers mornings"},
        dialogue={"heard": FIRST_NAME},
        recording_sid=recording["sid"],
        recording_url=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"
        + recording["sid"],
        recording_seconds=7,
    )
    other_call = CallFactory(contact=other, status=Call.Status.COMPLETED, price=Decimal("0.02"))
    voice = VoiceFactory()
    # A line the model said to them, and the greeting voiced ahead (never played).
    personal = _clip(voice, f"Perfecto, {FIRST_NAME}, le esperamos.")
    prerendered = _clip(voice, f"Hola {FIRST_NAME}.")
    shared = _clip(voice, "Gracias, adiós.")
    personal.characters = shared.characters = 20
    personal.save(update_fields=["characters"])
    shared.save(update_fields=["characters"])
    CallClip.objects.create(call=call, clip=personal)
    CallClip.objects.create(call=call, clip=shared)
    CallClip.objects.create(call=other_call, clip=shared)
    Turn.objects.create(
        call=call,
        sequence=1,
        role="agent",
        text=f"Hola {FIRST_NAME}.",
        started_at=now,
        clips=[personal.pk],
    )
    Turn.objects.create(
        call=call,
        sequence=2,
        role="caller",
        text=f"Sí, soy {FIRST_NAME} {LAST_NAME}, el {NATIONAL}.",
        started_at=now,
    )
    CallEvent.objects.create(
        call=call,
        provider_sid=CALL_SID,
        kind="status",
        sequence_number=0,
        payload={"CallSid": CALL_SID, "To": PHONE, "CallStatus": "completed"},
    )
    endpoint = WebhookEndpointFactory(partner=partner)
    WebhookDeliveryFactory(
        endpoint=endpoint,
        payload={"data": {"contact": {"phone": PHONE, "variables": variables}}},
    )
    IdempotencyKey.objects.create(
        scope=f"partner:{partner.pk}",
        key="k1",
        fingerprint="f",
        response_status=201,
        response_body={"phone": PHONE, "variables": variables},
    )
    DoNotCall.objects.create(partner=partner, phone=PHONE, reason="asked")
    contact_import = ContactImport.objects.create(
        campaign=campaign,
        state=ContactImport.State.DONE,
        total_rows=2,
        error_count=1,
        file_name="contacts.csv",
    )
    ContactImportError.objects.create(
        contact_import=contact_import,
        row=2,
        field="time_zone",
        value=f"{NATIONAL} Mars/Olympus",
        message="not a zone",
    )
    staff = UserFactory(username="editor", is_staff=True)
    LogEntry.objects.create(
        user=staff,
        content_type=ContentType.objects.get_for_model(Contact),
        object_id=str(contact.pk),
        object_repr=str(contact),
        action_flag=ADDITION,
    )
    audit.record(audit.Action.CONTACT_DIALED, partner_id=partner.pk, subject_phone=PHONE)
    return Subject(
        partner=partner,
        campaigns=[campaign, second],
        contact=contact,
        call=call,
        recording_sid=recording["sid"],
        personal_clip=personal,
        prerendered_clip=prerendered,
        shared_clip=shared,
        other_contact=other,
    )
