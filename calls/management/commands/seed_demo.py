"""Demo data for the embedded default: a staff user, a partner, its templates, and two
campaigns: one on `<Gather>`, one on Twilio's ConversationRelay (the relay transport).

Idempotent: a second run changes nothing and prints the same credentials.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from calls import conversation, telephony
from campaigns.models import (
    Campaign,
    ComplianceProfile,
    ConversationTransport,
    Partner,
    PartnerMember,
)
from campaigns.services import add_contact, start_campaign
from templates.models import CallTemplate

DEMO_USERNAME = "admin"
DEMO_PARTNER = "Demo"
DEMO_PARTNER_USERNAME = "demo-partner"
DEMO_TEMPLATE = "Recordatorio de cita"
DEMO_CAMPAIGN = "Demo: recordatorio de citas"
DEMO_SCRIPTED_TEMPLATE = "Recordatorio de cita (guion)"
# One callee of each kind the sandbox carrier plays (campaigns.models.SandboxPersona).
DEMO_CONTACTS = [
    ("+34600000001", "Lucía", "el martes a las 10:00", "interested"),
    ("+34600000002", "Javier", "el miércoles a las 12:30", "callback"),
    ("+34600000003", "Carmen", "el jueves a las 9:15", "voicemail"),
    ("+34600000004", "Pablo", "el viernes a las 17:00", "opt_out"),
    ("+34600000005", "Marta", "el lunes a las 11:45", "not_interested"),
    ("+34600000006", "Andrés", "el martes a las 16:30", "busy"),
    ("+34600000007", "Elena", "el miércoles a las 18:00", "no_answer"),
    ("+34600000008", "Diego", "el jueves a las 13:00", "silent"),
]
DEMO_RELAY_CAMPAIGN = "Demo: recordatorio de citas (ConversationRelay)"
# The relay campaign's callees: the ones who talk (the sandbox plays them over the
# WebSocket), and a voicemail, whose message keeps its clips.
DEMO_RELAY_CONTACTS = [
    ("+34600000011", "Sofía", "el martes a las 12:00", "interested"),
    ("+34600000012", "Raúl", "el miércoles a las 10:30", "callback"),
    ("+34600000013", "Nuria", "el jueves a las 17:15", "opt_out"),
    ("+34600000014", "Hugo", "el viernes a las 9:45", "not_interested"),
    ("+34600000015", "Irene", "el lunes a las 13:30", "silent"),
    ("+34600000016", "Óscar", "el martes a las 18:15", "voicemail"),
]
# Short retries, so that the demo campaign runs to its end in a few minutes.
DEMO_RETRY_POLICY = {
    outcome: {"delay_minutes": 1, "max_attempts": 2}
    for outcome in ("busy", "no-answer", "failed", "voicemail")
}
GREETING = (
    "Hola {{ first_name }}, le llamo de Clínica Demo. Soy un asistente automático. "
    "Le recuerdo su cita {{ appointment }}."
)
TEMPLATE_TEXTS = {
    "language": "es-ES",
    "variables": {"first_name": "Lucía", "appointment": "el martes a las 10:00"},
    "voicemail_message": (
        "Hola, le llamamos de Clínica Demo para recordarle su cita. "
        "Llámenos al 910 000 000. Gracias."
    ),
    "inbound_greeting": (
        "Hola {{ first_name }}, gracias por devolvernos la llamada. "
        "Le atiende el asistente automático de Clínica Demo. Le llamábamos por su cita "
        "{{ appointment }}."
    ),
    "closing_line": "Gracias, que tenga un buen día.",
    "opt_out_confirmation": "Entendido, no le volveremos a llamar. Adiós.",
    "transfer_line": "Le paso con una persona de la clínica.",
    "transfer_failed_line": (
        "Lo siento, ahora no hay nadie libre en la clínica. Le llamaremos más tarde. Adiós."
    ),
}
SCRIPTED_STEPS = [
    {
        "id": "confirm",
        "prompt": "¿Podrá venir? Diga sí o no.",
        "retry_prompt": "Perdone, no le he entendido. ¿Podrá venir a su cita? Diga sí o no.",
        "answers": [
            {
                "keywords": ["sí", "claro", "allí estaré", "de acuerdo"],
                "digit": "1",
                "next": "end",
                "outcome": {"attending": True},
            },
            {"keywords": ["no"], "digit": "2", "next": "end", "outcome": {"attending": False}},
            {
                "keywords": ["llámeme mañana", "llámenme mañana", "otro día", "más tarde"],
                "next": "end",
                "outcome": {"attending": False, "callback": True},
            },
        ],
    }
]


def credentials_path() -> Path:
    return Path(settings.DATA_DIR) / "demo-credentials.txt"


class Command(BaseCommand):
    help = "Create the demo staff user, partner, call templates and campaigns (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        with transaction.atomic():
            password = self._staff_user()
            # The demo calls at any hour from a number of its own: limits staff grant it.
            partner, _ = Partner.objects.get_or_create(
                name=DEMO_PARTNER,
                defaults={
                    "caller_numbers": ["+34910000000"],
                    "compliance_profiles": ComplianceProfile.values,
                },
            )
            self._partner_user(partner, password)
            ai_template, _ = CallTemplate.objects.get_or_create(
                partner=partner,
                name=DEMO_TEMPLATE,
                defaults={
                    **TEMPLATE_TEXTS,
                    "mode": CallTemplate.Mode.AI,
                    "greeting": GREETING + " ¿Podrá venir?",
                    "instructions": (
                        "Eres el asistente automático de Clínica Demo. Confirma si el paciente "
                        "acudirá a su cita; si no puede, ofrece llamar otro día. Sé breve y "
                        "amable. Si pide no recibir más llamadas, respétalo."
                    ),
                    "outcome_schema": {
                        "type": "object",
                        "properties": {
                            "attending": {"type": "boolean"},
                            "callback_at": {"type": "string", "format": "date-time"},
                        },
                    },
                },
            )
            scripted_template, _ = CallTemplate.objects.get_or_create(
                partner=partner,
                name=DEMO_SCRIPTED_TEMPLATE,
                defaults={
                    **TEMPLATE_TEXTS,
                    "mode": CallTemplate.Mode.SCRIPTED,
                    "greeting": GREETING,
                    "steps": SCRIPTED_STEPS,
                },
            )
            # The model leads the demo when one is configured; a script does otherwise.
            template = ai_template if conversation.is_configured() else scripted_template
            campaign, created = Campaign.objects.get_or_create(
                partner=partner,
                name=DEMO_CAMPAIGN,
                defaults={
                    "template": template,
                    # A made-up Madrid landline: Spanish rules forbid mobiles as caller ids.
                    "caller_number": "+34910000000",
                    # Calls at any hour, so that the demo runs whenever it is started.
                    "compliance_profile": ComplianceProfile.NONE,
                    "max_concurrent_calls": 3,
                    "max_attempts": 2,
                    "retry_policy": DEMO_RETRY_POLICY,
                },
            )
            # The same appointments over ConversationRelay: Twilio hears and speaks, the
            # model's words stream over a WebSocket (an AI template: relay is for those).
            relay_campaign, relay_created = Campaign.objects.get_or_create(
                partner=partner,
                name=DEMO_RELAY_CAMPAIGN,
                defaults={
                    "template": ai_template,
                    "transport": ConversationTransport.RELAY,
                    "caller_number": "+34910000000",
                    "compliance_profile": ComplianceProfile.NONE,
                    "max_concurrent_calls": 3,
                    "max_attempts": 2,
                    "retry_policy": DEMO_RETRY_POLICY,
                },
            )
            for contacts, demo in (
                (DEMO_CONTACTS, campaign),
                (DEMO_RELAY_CONTACTS, relay_campaign),
            ):
                for phone, name, appointment, persona in contacts:
                    variables = {
                        "first_name": name,
                        "appointment": appointment,
                        "sandbox_persona": persona,
                    }
                    add_contact(campaign=demo, phone=phone, variables=variables)
            if telephony.backend().simulated:
                # On a simulated carrier the demo calls at once; against Twilio, staff
                # start it (it would ring real numbers).
                for demo, new in ((campaign, created), (relay_campaign, relay_created)):
                    if new:
                        start_campaign(campaign=demo)

        url = f"{settings.APP_URL}/admin/"
        self.stdout.write(
            self.style.SUCCESS("Demo data ready.")
            + f"\n  Admin:    {url}\n  User:     {DEMO_USERNAME}\n  Password: {password}\n"
            + f"  API:      {settings.APP_URL}/api/docs/ as {DEMO_PARTNER_USERNAME} "
            + "(same password)\n"
            + "".join(
                f"  Campaign: {demo.name} ({demo.contacts.count()} contacts, "
                f"{demo.get_state_display()})\n"
                for demo in (campaign, relay_campaign)
            )
        )

    def _partner_user(self, partner: Partner, password: str) -> None:
        """The demo partner's API user (README's curl walk-through), with the staff
        user's password."""
        user, _ = get_user_model().objects.get_or_create(username=DEMO_PARTNER_USERNAME)
        if not user.check_password(password):
            user.set_password(password)
            user.save()
        PartnerMember.objects.update_or_create(user=user, defaults={"partner": partner})

    def _staff_user(self) -> str:
        """Create or reuse the demo superuser; returns the password that logs it in.

        The password comes from DEMO_ADMIN_PASSWORD, else the one saved by an earlier
        run (in DATA_DIR, readable by its owner only), else a new random one.
        """
        path = credentials_path()
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "")
        if not password and path.exists():
            password = path.read_text().strip()
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        if not password:
            password = secrets.token_urlsafe(12)
        if created or not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(password + "\n")
        path.chmod(0o600)
        return password
