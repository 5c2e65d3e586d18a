"""Demo data for the embedded default: a staff user, a partner, a template, a campaign.

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

from campaigns.models import Campaign, Partner
from campaigns.services import add_contact
from templates.models import CallTemplate

DEMO_USERNAME = "admin"
DEMO_PARTNER = "Demo"
DEMO_TEMPLATE = "Recordatorio de cita"
DEMO_CAMPAIGN = "Demo: recordatorio de citas"
DEMO_CONTACTS = [
    ("+34600000001", {"first_name": "Lucía", "appointment": "el martes a las 10:00"}),
    ("+34600000002", {"first_name": "Javier", "appointment": "el miércoles a las 12:30"}),
    ("+34600000003", {"first_name": "Carmen", "appointment": "el jueves a las 9:15"}),
    ("+34600000004", {"first_name": "Pablo", "appointment": "el viernes a las 17:00"}),
    ("+34600000005", {"first_name": "Marta", "appointment": "el lunes a las 11:45"}),
]


def credentials_path() -> Path:
    return Path(settings.DATA_DIR) / "demo-credentials.txt"


class Command(BaseCommand):
    help = "Create the demo staff user, partner, call template and campaign (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        with transaction.atomic():
            password = self._staff_user()
            partner, _ = Partner.objects.get_or_create(name=DEMO_PARTNER)
            template, _ = CallTemplate.objects.get_or_create(
                partner=partner,
                name=DEMO_TEMPLATE,
                defaults={
                    "language": "es-ES",
                    "mode": CallTemplate.Mode.AI,
                    "variables": {
                        "first_name": "Lucía",
                        "appointment": "el martes a las 10:00",
                    },
                    "greeting": (
                        "Hola {{ first_name }}, le llamo de Clínica Demo. Soy un asistente "
                        "automático. Le recuerdo su cita {{ appointment }}. ¿Podrá venir?"
                    ),
                    "instructions": (
                        "Eres el asistente automático de Clínica Demo. Confirma si el paciente "
                        "acudirá a su cita; si no puede, ofrece llamar otro día. Sé breve y "
                        "amable. Si pide no recibir más llamadas, respétalo."
                    ),
                    "voicemail_message": (
                        "Hola, le llamamos de Clínica Demo para recordarle su cita. "
                        "Llámenos al 910 000 000. Gracias."
                    ),
                    "closing_line": "Gracias, que tenga un buen día.",
                    "opt_out_confirmation": "Entendido, no le volveremos a llamar. Adiós.",
                    "transfer_line": "Le paso con una persona de la clínica.",
                    "outcome_schema": {
                        "type": "object",
                        "properties": {
                            "attending": {"type": "boolean"},
                            "callback_at": {"type": "string", "format": "date-time"},
                        },
                    },
                },
            )
            campaign, _ = Campaign.objects.get_or_create(
                partner=partner,
                name=DEMO_CAMPAIGN,
                # A made-up Madrid landline: Spanish rules forbid mobiles as caller ids.
                defaults={"template": template, "caller_number": "+34910000000"},
            )
            for phone, variables in DEMO_CONTACTS:
                add_contact(campaign=campaign, phone=phone, variables=variables)

        url = f"{settings.APP_URL}/admin/"
        self.stdout.write(
            self.style.SUCCESS("Demo data ready.")
            + f"\n  Admin:    {url}\n  User:     {DEMO_USERNAME}\n  Password: {password}\n"
            + f"  Campaign: {campaign.name} ({campaign.contacts.count()} contacts)\n"
        )

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
