"""Campaigns the fault suite runs through the product's processes, and what it reads of
them: whether they settled, how many calls were live at once."""

from __future__ import annotations

import datetime

from django.db.models import Q
from django.utils import timezone

from calls import dialing
from calls.dialing import Reconciled
from calls.models import Call
from campaigns.models import Campaign, ComplianceProfile, Contact
from campaigns.services import add_contact
from tests.factories import CallTemplateFactory, PartnerFactory
from tests.reliability.carrier import Carrier, ScriptedTwilio
from tests.reliability.servers import RedisServer
from tests.reliability.system import ProductSystem

CALLER = "+34910000000"


def product_env(redis: RedisServer, twilio: ScriptedTwilio, **extra: str) -> dict[str, str]:
    """The environment of the product's processes: this Redis, this fake Twilio."""
    return {
        "REDIS_URL": redis.url,
        "CALLCENTER_LOCAL_FAKES": "1",  # keep the fakes' keys (tests/settings.py)
        **twilio_env(twilio),
        "TWILIO_MAX_CPS": "50",
        **extra,
    }


def twilio_env(twilio: ScriptedTwilio) -> dict[str, str]:
    """Settings for ``twilio``; the product's processes may reach it another way (a proxy
    in between: TWILIO_API_BASE_URL in ``product_env``'s ``extra``)."""
    return {
        "TELEPHONY_BACKEND": "twilio",
        "TWILIO_API_BASE_URL": twilio.url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_PHONE_NUMBER": CALLER,
        "TWILIO_TIMEOUT": "1.0",
        "TWILIO_MAX_RETRIES": "2",
    }


def use_twilio(settings, twilio: ScriptedTwilio) -> None:
    """This process's settings as the system's, for the Twilio calls it makes itself."""
    for name, value in twilio_env(twilio).items():
        setattr(settings, name, value)
    settings.TWILIO_TIMEOUT = float(settings.TWILIO_TIMEOUT)
    settings.TWILIO_MAX_RETRIES = int(settings.TWILIO_MAX_RETRIES)


def make_campaign(outcomes: dict[str, str], **fields: object) -> Campaign:
    """A running-ready campaign calling each number of ``outcomes``."""
    partner = PartnerFactory(name="Carrera", trusted=True)
    template = CallTemplateFactory(
        partner=partner,
        name="Aviso",
        variables={"first_name": "Ana"},
        greeting=(
            "Hola {{ first_name }}. Le llamamos de {{ partner }}. Soy un asistente automático."
        ),
        instructions="Confirma la cita de {{ first_name }}.",
        voicemail_message="Le llamamos de {{ partner }}. Llámenos al 910 000 000.",
        closing_line="Gracias, adiós.",
    )
    campaign = Campaign.objects.create(
        partner=partner,
        name="Carrera",
        template=template,
        caller_number=CALLER,
        compliance_profile=ComplianceProfile.NONE,
        frequency_cap_calls=10,  # the retry policy, not the cap, limits the calls
        **fields,
    )
    for index, phone in enumerate(outcomes):
        add_contact(campaign=campaign, phone=phone, variables={"first_name": f"Persona {index}"})
    return campaign


def numbers(outcomes: list[str], per_outcome: int) -> dict[str, str]:
    """Phone number to outcome, ``per_outcome`` numbers of each."""
    return {
        f"+3461{index:02d}{serial:05d}": outcome
        for index, outcome in enumerate(outcomes)
        for serial in range(per_outcome)
    }


def settled(campaign: Campaign, carrier: Carrier) -> bool:
    """Every contact at its end, no call live, every call played out."""
    open_states = [Contact.State.PENDING, Contact.State.CALLING, Contact.State.RETRY]
    return (
        not campaign.contacts.filter(state__in=open_states).exists()
        and not Call.objects.live().filter(campaign=campaign).exists()
        and carrier.idle
    )


def most_live_at_once(campaign: Campaign) -> int:
    """The most calls of ``campaign`` live at one moment, from each call's creation to
    its end."""
    moments = []
    for created, ended in Call.objects.filter(campaign=campaign).values_list(
        "created_at", "ended_at"
    ):
        moments += [(created, 1), (ended, -1)]
    live = most = 0
    for _moment, change in sorted(moments):
        live += change
        most = max(most, live)
    return most


def time_passes(campaign: Campaign) -> None:
    """Contacts waiting for their retry delay are due now: the hours between attempts pass
    in a moment (the dispatchers and dialer see nothing else changed)."""
    campaign.contacts.filter(state=Contact.State.RETRY, next_attempt_at__gt=timezone.now()).update(
        next_attempt_at=timezone.now() - datetime.timedelta(seconds=1)
    )


def reconcile(system: ProductSystem, *, dials_older_than: float = 15.0) -> Reconciled:
    """Beat's reconciliation tick, as it runs once the dial requests that started more
    than ``dials_older_than`` seconds ago have surely ended, retries and all (it waits for
    that long: ``dialing._longest_dial``, a minute and a half here). Run in the test's
    process, whose Twilio settings must be the system's; pending calls it finds are
    queued for the system's workers."""
    now = timezone.now() - datetime.timedelta(seconds=dials_older_than) + dialing._longest_dial()
    result = dialing.reconcile_calls(now=now)
    for call_id in result.requeued:
        system.send_task("calls.tasks.place_call_task", call_id)
    return result


def at_rest(campaign: Campaign, carrier: Carrier) -> bool:
    """Every contact done with, or waiting for an attempt at a set time; no call live;
    every call played out. What a campaign looks like once nothing more can happen now."""
    now = timezone.now()
    calling = campaign.contacts.filter(state=Contact.State.CALLING).exists()
    due = campaign.contacts.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        state__in=[Contact.State.PENDING, Contact.State.RETRY],
    ).exists()
    live = Call.objects.live().filter(campaign=campaign).exists()
    return not (calling or due or live) and carrier.idle
