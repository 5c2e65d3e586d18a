"""The states and kinds a call is told by: its status, direction, who answered, its price's
status (TextChoices, stored on Call), and the sets of them the code asks about."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class CallStatus(models.TextChoices):
    # Ours, before the provider knows the call:
    PENDING = "pending", _("Pending")  # created by the dispatcher, not yet claimed
    DIALING = "dialing", _("Dialing")  # claimed by a worker, provider request in flight
    # Twilio's call statuses, spelled as Twilio spells them:
    QUEUED = "queued", _("Queued")
    RINGING = "ringing", _("Ringing")
    IN_PROGRESS = "in-progress", _("In progress")
    COMPLETED = "completed", _("Completed")
    BUSY = "busy", _("Busy")
    NO_ANSWER = "no-answer", _("No answer")
    FAILED = "failed", pgettext_lazy("call status", "Failed")
    CANCELED = "canceled", _("Canceled")
    # Ours again: the dialer released the call without Twilio ever ringing it (the contact
    # was no longer dialable, or Twilio could not be reached); it is not an attempt.
    NOT_PLACED = "not-placed", _("Not placed")


LIVE_STATUSES = (
    CallStatus.PENDING,
    CallStatus.DIALING,
    CallStatus.QUEUED,
    CallStatus.RINGING,
    CallStatus.IN_PROGRESS,
)


class CallDirection(models.TextChoices):
    # Twilio's Direction says "outbound-api" for the calls we dial and "inbound" for the
    # calls our numbers receive (calls.inbound).
    OUTBOUND = "outbound", _("Outbound")
    INBOUND = "inbound", _("Inbound")


class AnsweredBy(models.TextChoices):
    HUMAN = "human", _("Human")
    MACHINE_START = "machine_start", _("Machine (start)")
    MACHINE_END_BEEP = "machine_end_beep", _("Machine (beep)")
    MACHINE_END_SILENCE = "machine_end_silence", _("Machine (silence)")
    MACHINE_END_OTHER = "machine_end_other", _("Machine (other)")
    FAX = "fax", _("Fax")
    UNKNOWN = "unknown", _("Unknown")


# What AMD says when no person answered.
MACHINE_ANSWERS = frozenset(
    {
        AnsweredBy.MACHINE_START,
        AnsweredBy.MACHINE_END_BEEP,
        AnsweredBy.MACHINE_END_SILENCE,
        AnsweredBy.MACHINE_END_OTHER,
        AnsweredBy.FAX,
    }
)


class PriceStatus(models.TextChoices):
    # Twilio prices a call on its Call resource some time after it ends, never in a
    # callback (docs/costs.md).
    PENDING = "pending", _("Pending")  # live, or ended and not priced by Twilio yet
    KNOWN = "known", _("Known")
    # Busy, unanswered, failed and canceled calls are not charged (Twilio's billing), and
    # a call never placed never reached Twilio.
    NOT_CHARGED = "not-charged", _("Not charged")
    UNAVAILABLE = "unavailable", _("Unavailable")  # Twilio gave none within a day


def placed_calls() -> Q:
    """Calls that may have rung someone: all but those that never reached Twilio (not
    placed, or refused when created)."""
    return ~Q(status=CallStatus.NOT_PLACED) & ~Q(
        status=CallStatus.FAILED, provider_sid__isnull=True
    )
