"""Who the sandbox carrier's simulated callees are, what they say, and which one a call
meets (a contact's own choice, else a draw weighted by its campaign's mix)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.conf import settings

from campaigns.models import SandboxPersona, default_sandbox_personas, sandbox_personas_problems

if TYPE_CHECKING:
    from campaigns.models import Campaign, Contact

PERSONAS: tuple[str, ...] = tuple(SandboxPersona.values)

# What each persona says, one line per <Gather> it answers, then it stays silent. This is
# the simulated callee's speech in the call's language, not interface text: not gettext.
REPLIES: dict[str, dict[str, tuple[str, ...]]] = {
    "es": {
        SandboxPersona.INTERESTED: ("Sí, allí estaré. Gracias.", "Sí, perfecto, gracias."),
        SandboxPersona.NOT_INTERESTED: ("No, gracias, no me interesa.", "No, nada más, gracias."),
        SandboxPersona.CALLBACK: (
            "Ahora no puedo, llámeme mañana a las diez.",
            "Sí, mañana a las diez. Adiós.",
        ),
        SandboxPersona.OPT_OUT: (
            "No me llame más, bórrenme de su lista.",
            "Que no me llamen más, por favor.",
        ),
    },
    "en": {
        SandboxPersona.INTERESTED: ("Yes, I'll be there. Thank you.", "Yes, perfect, thanks."),
        SandboxPersona.NOT_INTERESTED: (
            "No, thank you, I'm not interested.",
            "No, that's all, thanks.",
        ),
        SandboxPersona.CALLBACK: (
            "I can't talk now, call me tomorrow at ten.",
            "Yes, tomorrow at ten. Bye.",
        ),
        SandboxPersona.OPT_OUT: (
            "Don't call me again, take me off your list.",
            "Please don't call me again.",
        ),
    },
}
# The key a persona presses, in place of its line, when a <Gather> listens for keys only
# (opt_out presses OPT_OUT_DIGIT); the others stay silent then.
KEYS: dict[str, str] = {SandboxPersona.INTERESTED: "1", SandboxPersona.NOT_INTERESTED: "2"}

# The personas that can ring us: someone who talks (or keeps silent) once through.
CALLER_PERSONAS: tuple[str, ...] = (
    SandboxPersona.INTERESTED,
    SandboxPersona.NOT_INTERESTED,
    SandboxPersona.CALLBACK,
    SandboxPersona.OPT_OUT,
    SandboxPersona.SILENT,
)


def persona_for(
    contact: Contact, campaign: Campaign | None = None, *, attempt: int | None = None
) -> str:
    """The persona the sandbox plays for `contact`'s call number `attempt` (by default
    its attempts so far): its `sandbox_persona` variable when that names one, otherwise a
    choice weighted by the campaign's mix, the same for the same phone and attempt."""
    variables = contact.variables if isinstance(contact.variables, dict) else {}
    chosen = variables.get("sandbox_persona")
    if isinstance(chosen, str) and chosen in PERSONAS:
        return chosen
    mix = (campaign or contact.campaign).sandbox_personas
    if not mix or sandbox_personas_problems(mix):
        mix = default_sandbox_personas()
    number = contact.attempts if attempt is None else attempt
    return weighted_choice(mix, key=f"{contact.phone}:{number}")


def weighted_choice(mix: Mapping[str, int], *, key: str) -> str:
    # A hash, not a random draw: the same key always meets the same callee.
    total = sum(mix.get(persona, 0) for persona in PERSONAS)
    point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total
    for persona in PERSONAS:
        weight = mix.get(persona, 0)
        if point < weight:
            return persona
        point -= weight
    raise AssertionError("unreachable")  # pragma: no cover - point < total


def key_for(persona: str) -> str:
    """The key `persona` presses on a keys-only <Gather>; empty: none."""
    if persona == SandboxPersona.OPT_OUT:
        return settings.OPT_OUT_DIGIT
    return KEYS.get(persona, "")
