"""Speech cost: characters sent to ElevenLabs for a 1,000-contact scripted campaign.

Peer: rendering every line of the template for every call, as a per-call TTS pipeline
does. Ours: each sentence is voiced once per distinct text (common sentences once for the
campaign, personal ones once per distinct value), through the real SDK and clip cache
against the local fake ElevenLabs, which counts the characters it was sent.
"""

from __future__ import annotations

import random
import time

from bench.harness import Figure, fake_elevenlabs
from campaigns.models import Campaign, Contact, Partner
from campaigns.prerendering import prerender_campaign_speech, prerender_contact_speech
from templates.models import CallTemplate
from templates.rendering import contact_context, render_template
from tests.partners import TRUSTED_LIMITS
from voices.models import Voice

CONTACTS = 1_000
FIRST_NAMES = (
    "Lucía Sofía Martina María Julia Paula Valeria Emma Daniela Carla Alba Noa Alma Sara "
    "Carmen Vega Lara Mía Valentina Olivia Hugo Martín Lucas Mateo Leo Daniel Alejandro "
    "Pablo Manuel Álvaro Adrián Enzo Mario Diego David Oliver Marcos Thiago Marco Javier"
).split()
DAYS = ("el lunes", "el martes", "el miércoles", "el jueves", "el viernes")
TIMES = ("a las 9:00", "a las 9:30", "a las 10:00", "a las 11:15", "a las 12:30", "a las 16:00")

SCRIPTED_DEMO = {
    "name": "Confirmación de cita (guion)",
    "language": "es-ES",
    "mode": "scripted",
    "variables": {"first_name": "Lucía", "appointment": "el martes a las 10:00"},
    "greeting": (
        "Hola {{ first_name }}. Le llamamos de Clínica Demo. "
        "Soy un asistente automático y esta llamada puede grabarse."
    ),
    "steps": [
        {
            "id": "confirm",
            "prompt": (
                "Tiene una cita {{ appointment }}. ¿Podrá venir? "
                "Diga sí o pulse 1 para confirmarla, o diga no o pulse 2 para cambiarla."
            ),
            "retry_prompt": (
                "Perdone, no le he entendido. Diga sí o pulse 1 para confirmar la cita, "
                "o diga no o pulse 2 para cambiarla."
            ),
            "answers": [
                {"keywords": ["sí", "si", "vale"], "digit": "1", "next": "end"},
                {"keywords": ["no", "cambiar"], "digit": "2", "next": "reschedule"},
            ],
        },
        {
            "id": "reschedule",
            "prompt": (
                "De acuerdo. ¿Quiere que una persona de la clínica le llame para darle otra "
                "cita? Diga sí o pulse 1, o diga no o pulse 2."
            ),
            "answers": [
                {"keywords": ["sí", "si"], "digit": "1", "next": "transfer"},
                {"keywords": ["no"], "digit": "2", "next": "end"},
            ],
        },
    ],
    "voicemail_message": (
        "Hola, le llamamos de Clínica Demo para recordarle su cita. "
        "Si necesita cambiarla, llámenos al 910 000 000. Gracias."
    ),
    "closing_line": "Muchas gracias. Que tenga un buen día.",
    "opt_out_confirmation": "Entendido, no volveremos a llamarle. Disculpe las molestias. Adiós.",
    "transfer_line": "Le paso con una persona de la clínica. Un momento, por favor.",
}


SURNAMES = (
    "García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín Jiménez "
    "Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez"
).split()


def run() -> list[Figure]:
    """Two campaigns: realistic values (names and slots repeat) and all-distinct values."""
    return [*measure(distinct=False), *measure(distinct=True)]


def contact_values(rng: random.Random, index: int, *, distinct: bool) -> dict[str, str]:
    if not distinct:
        return {
            "first_name": rng.choice(FIRST_NAMES),
            "appointment": f"{rng.choice(DAYS)} {rng.choice(TIMES)}",
        }
    # Worst case: no two contacts share a name or an appointment.
    first, rest = FIRST_NAMES[index % len(FIRST_NAMES)], index // len(FIRST_NAMES)
    name = f"{first} {SURNAMES[rest % len(SURNAMES)]} {SURNAMES[rest // len(SURNAMES)]}"
    return {"first_name": name, "appointment": f"el día {index % 28 + 1}, turno {index}"}


def measure(*, distinct: bool) -> list[Figure]:
    rng = random.Random(7)  # noqa: S311 - sample data, not secrets
    case = "distinct" if distinct else "realistic"
    partner = Partner.objects.create(name=f"Clínica Demo {case}", **TRUSTED_LIMITS)
    template = CallTemplate(partner=partner, **SCRIPTED_DEMO)
    template.full_clean()
    template.save()
    campaign = Campaign.objects.create(partner=partner, name="Bench", template=template)
    Contact.objects.bulk_create(
        Contact(
            campaign=campaign,
            phone=f"+3460{index:07d}",
            variables=contact_values(rng, index, distinct=distinct),
        )
        for index in range(CONTACTS)
    )
    contacts = list(campaign.contacts.select_related("campaign__partner"))

    # The peer: every line of the template rendered for every call.
    every_line_per_call = sum(
        len(line)
        for contact in contacts
        for line in render_template(
            template=template, context=contact_context(contact=contact)
        ).values()
    )

    with fake_elevenlabs() as server:
        Voice.objects.get_or_create(provider_voice_id=server.voice_id, defaults={"name": "Bella"})
        started = time.perf_counter()
        prerender_campaign_speech(campaign=campaign)
        prerender_contact_speech(campaign=campaign, contacts=contacts)
        elapsed = time.perf_counter() - started
        sent, requests = server.characters, len(server.requests_to("/v1/text-to-speech"))

    prefix = f"speech.{case}"
    return [
        Figure(f"{prefix}.characters_sent", sent, "chars", f"{CONTACTS} contacts, scripted demo"),
        Figure(f"{prefix}.characters_every_line_per_call", every_line_per_call, "chars", "peer"),
        Figure(
            f"{prefix}.cost_ratio",
            round(sent / every_line_per_call, 4),
            "ratio",
            "ours / peer (target <= 0.25)",
        ),
        Figure(f"{prefix}.renders", requests, "requests", "clips rendered, each billed once"),
        Figure(f"{prefix}.prerender_seconds", round(elapsed, 2), "s", "local fake, no delay"),
    ]
