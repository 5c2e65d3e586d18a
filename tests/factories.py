"""Test data factories (factory_boy): one per model the tests build, each filling in only
what the model needs and has no default for, so a factory call with the same fields as
an ``objects.create`` writes the same row.

Unique fields come from sequences in ranges the tests' own literals stay out of: phones
``+3469nnnnnnn`` (Spanish mobiles, E.164), Twilio call SIDs ``CAf...`` (34 characters).
A call in a given campaign: ``CallFactory(contact__campaign=campaign)``; a call of a
given contact: ``CallFactory(contact=contact)`` (its campaign follows the contact).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from factory.django import DjangoModelFactory

from calls.models import Call, CallClip, CallDirection, CallEvent, Turn
from campaigns.models import (
    Campaign,
    Contact,
    ContactImport,
    DoNotCall,
    Partner,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from templates.models import CallTemplate
from tests.partners import TRUSTED_LIMITS
from voices.models import SpeechClip, Voice

CALLER = "+34910000000"


def phone(number: int) -> str:
    """The ``number``-th phone of the factories' range: a Spanish mobile in E.164."""
    return f"+3469{number:07d}"


def call_sid(number: int) -> str:
    """The ``number``-th Twilio call SID of the factories' range (CA + 32 hex digits)."""
    return f"CAf{number:031x}"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        """Through ``create_user``, so that a given password is hashed."""
        return model_class.objects.create_user(*args, **kwargs)


class PartnerFactory(DjangoModelFactory):
    """A partner with the model's default limits; ``trusted=True`` gives it the suite's
    numbers, profiles and pacing (tests/partners.py)."""

    class Meta:
        model = Partner

    name = factory.Sequence(lambda n: f"Partner {n}")

    class Params:
        trusted = factory.Trait(**TRUSTED_LIMITS)


class VoiceFactory(DjangoModelFactory):
    class Meta:
        model = Voice

    provider_voice_id = factory.Sequence(lambda n: f"voice{n:015d}")
    name = factory.Sequence(lambda n: f"Voice {n}")


class SpeechClipFactory(DjangoModelFactory):
    """A clip being rendered; its key (normally SHA-256 of what it voices) from a sequence."""

    class Meta:
        model = SpeechClip

    key = factory.Sequence(lambda n: f"{n:064x}")
    text = factory.Sequence(lambda n: f"Línea {n}.")
    voice = factory.SubFactory(VoiceFactory)
    model_id = "eleven_multilingual_v2"
    output_format = "mp3_22050_32"


class CallTemplateFactory(DjangoModelFactory):
    """A call template with a greeting (the one field a template cannot be without)."""

    class Meta:
        model = CallTemplate

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Template {n}")
    greeting = "Hola. Le llamamos de {{ partner }}. Soy un asistente automático."


class CampaignFactory(DjangoModelFactory):
    """A draft campaign without a template, as the model has one."""

    class Meta:
        model = Campaign

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")


class ContactFactory(DjangoModelFactory):
    """A pending contact; ``from_crm=True`` gives it the partner's own id (``crm-<n>``)."""

    class Meta:
        model = Contact

    campaign = factory.SubFactory(CampaignFactory)
    phone = factory.Sequence(phone)

    class Params:
        from_crm = factory.Trait(external_id=factory.Sequence(lambda n: f"crm-{n}"))


class ContactImportFactory(DjangoModelFactory):
    """A queued import of a campaign's contacts."""

    class Meta:
        model = ContactImport

    campaign = factory.SubFactory(CampaignFactory)


class CallFactory(DjangoModelFactory):
    """An outbound call (attempt 1) from the suite's caller number to a new contact.

    ``placed=True`` gives it a provider SID, as once Twilio accepted it; ``dialing=True``
    makes it a call the dialer placed: dialing, its contact being called; ``created_at=``
    backdates it (the model sets the column itself on insert).
    """

    class Meta:
        model = Call
        skip_postgeneration_save = True

    contact = factory.SubFactory(ContactFactory)
    campaign = factory.SelfAttribute("contact.campaign")
    direction = CallDirection.OUTBOUND
    # An outbound call is one of the contact's attempts; an inbound one is none of them.
    attempt = factory.LazyAttribute(lambda o: 1 if o.direction == CallDirection.OUTBOUND else None)
    from_number = CALLER
    to_number = factory.SelfAttribute("contact.phone")

    class Params:
        placed = factory.Trait(provider_sid=factory.Sequence(call_sid))
        dialing = factory.Trait(status=Call.Status.DIALING, contact__state=Contact.State.CALLING)

    @factory.post_generation
    def created_at(obj: Call, create: bool, extracted: datetime.datetime | None, **_: Any) -> None:
        if create and extracted is not None:
            Call.objects.filter(pk=obj.pk).update(created_at=extracted)
            obj.created_at = extracted


class TurnFactory(DjangoModelFactory):
    class Meta:
        model = Turn

    call = factory.SubFactory(CallFactory)
    sequence = factory.Sequence(lambda n: n + 1)
    role = Turn.Role.AGENT
    started_at = factory.LazyFunction(timezone.now)


class CallClipFactory(DjangoModelFactory):
    """A clip played on a call."""

    class Meta:
        model = CallClip

    call = factory.SubFactory(CallFactory)
    clip = factory.SubFactory(SpeechClipFactory)


class CallEventFactory(DjangoModelFactory):
    class Meta:
        model = CallEvent

    call = factory.SubFactory(CallFactory, placed=True)
    provider_sid = factory.LazyAttribute(lambda o: o.call.provider_sid if o.call else "")
    kind = CallEvent.Kind.STATUS


class DoNotCallFactory(DjangoModelFactory):
    """A partner's do-not-call entry; ``partner=None`` makes it global."""

    class Meta:
        model = DoNotCall

    partner = factory.SubFactory(PartnerFactory)
    phone = factory.Sequence(phone)


class WebhookEndpointFactory(DjangoModelFactory):
    class Meta:
        model = WebhookEndpoint

    partner = factory.SubFactory(PartnerFactory)
    url = factory.Sequence(lambda n: f"https://hooks{n}.example.com/callcenter")


class WebhookDeliveryFactory(DjangoModelFactory):
    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    event_id = factory.LazyFunction(uuid.uuid4)
    event_type = WebhookEvent.CALL_COMPLETED
    payload = factory.LazyFunction(dict)
