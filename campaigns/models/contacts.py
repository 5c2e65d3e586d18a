"""Contacts: the people a campaign calls, their states and the variables they lack."""

from __future__ import annotations

import datetime
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, JSONField, Max, Q, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform, KeyTransformExact
from django.db.models.lookups import IsNull, Regex
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from campaigns.models.campaigns import Campaign
from campaigns.phones import E164_REGEX, e164_validator


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("“%(value)s” is not an IANA time zone such as Europe/Madrid."),
            code="invalid_time_zone",
            params={"value": value},
        )


def lacks_variable(name: str) -> Q:
    """A contact without a value for the variable ``name``: absent, null or blank, as a
    template line reads it (``templates.rendering.render_line``)."""
    # Key transforms, not lookups built from the name: "a__b" is one key, and a variable
    # may be called "contains". A JSON null is NULL as text on PostgreSQL but "null" on
    # SQLite, hence the comparison as JSON (which SQLite, as Django writes it, also makes
    # true for the text "null": the embedded default counts such a value as missing).
    text = KeyTextTransform(name, "variables")
    json_null = KeyTransformExact(KeyTransform(name, "variables"), Value(None, JSONField()))
    return Q(IsNull(text, True)) | Q(json_null) | Q(Regex(text, r"^\s*$"))


class ContactQuerySet(models.QuerySet):
    def lacking(self, name: str) -> ContactQuerySet:
        """Contacts without a value for the variable ``name`` (``lacks_variable``)."""
        return self.filter(lacks_variable(name))

    def with_campaign(self) -> ContactQuerySet:
        """With the campaign, its partner and template: what eligibility reads."""
        return self.select_related("campaign__partner", "campaign__template")

    def calling_in(self, *, phone: str, number: str) -> ContactQuerySet:
        """The contacts with ``phone`` in campaigns that call from ``number`` and have a
        template: who is ringing ``number`` from ``phone``. The one we called last comes
        first (``last_called_at``), then the newest contact."""
        campaigns = Campaign.objects.calling_from(number).filter(template__isnull=False)
        return (
            self.filter(phone=phone, campaign__in=campaigns)
            .annotate(last_called_at=Max("calls__dialed_at", filter=Q(calls__direction="outbound")))
            .order_by(F("last_called_at").desc(nulls_last=True), "-pk")
        )

    def due(self, now: datetime.datetime) -> ContactQuerySet:
        """Contacts waiting for a call whose time has come: a first call (unless it was put
        off until ``next_attempt_at``) or a retry."""
        return self.filter(
            Q(state=Contact.State.PENDING, next_attempt_at__isnull=True)
            | Q(state__in=[Contact.State.PENDING, Contact.State.RETRY], next_attempt_at__lte=now)
        )


class ContactState(models.TextChoices):
    PENDING = "pending", _("Pending")
    CALLING = "calling", _("Calling")
    RETRY = "retry", _("Retry scheduled")
    DONE = "done", _("Done")
    FAILED = "failed", pgettext_lazy("contact state", "Failed")
    EXHAUSTED = "exhausted", _("Attempts exhausted")
    OPTED_OUT = "opted_out", _("Opted out")


class Contact(models.Model):
    """A person to call in one campaign, with the variables the template speaks."""

    State = ContactState

    # The state machine: which states each state may move to (campaigns.services.contacts
    # makes the moves). A contact waits (pending, retry), is called, and ends done, failed
    # or exhausted; ringing us back reopens an ended one. Staying put is a move where a
    # service rewrites the reason (a contact put off, an opt-out said twice). An opt-out
    # stands whatever happens after it.
    TRANSITIONS: dict[str, frozenset[str]] = {
        State.PENDING: frozenset(
            {
                State.PENDING,
                State.CALLING,
                State.RETRY,
                State.DONE,
                State.FAILED,
                State.EXHAUSTED,
                State.OPTED_OUT,
            }
        ),
        State.RETRY: frozenset(
            {
                State.RETRY,
                State.CALLING,
                State.DONE,
                State.FAILED,
                State.EXHAUSTED,
                State.OPTED_OUT,
            }
        ),
        State.CALLING: frozenset(
            {
                State.PENDING,
                State.RETRY,
                State.DONE,
                State.FAILED,
                State.EXHAUSTED,
                State.OPTED_OUT,
            }
        ),
        State.DONE: frozenset({State.DONE, State.RETRY, State.OPTED_OUT}),
        State.FAILED: frozenset({State.DONE, State.RETRY, State.OPTED_OUT}),
        State.EXHAUSTED: frozenset({State.DONE, State.RETRY, State.OPTED_OUT}),
        State.OPTED_OUT: frozenset({State.OPTED_OUT}),
    }

    campaign = models.ForeignKey(
        Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="contacts"
    )
    phone = models.CharField(_("phone"), max_length=16, validators=[e164_validator])
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text=_("IANA zone; empty: derived from the phone number."),
    )
    variables = models.JSONField(_("variables"), default=dict, blank=True)
    external_id = models.CharField(_("external id"), max_length=200, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State, default=State.PENDING)
    state_reason = models.CharField(_("state reason"), max_length=500, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    # Set when the person's data was erased at their request (privacy.erasure): the row
    # stays, anonymous, for the campaign's counts; its number is blank.
    erased_at = models.DateTimeField(_("erased at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["campaign", "id"]
        indexes = [
            models.Index(fields=["campaign", "state", "next_attempt_at"], name="contact_due_idx"),
            # Equal numbers, and a number's start (LIKE '+34600%'): the operator class lets
            # PostgreSQL use the index for both whatever the collation (ignored elsewhere).
            models.Index(
                fields=["phone"], name="contact_phone_idx", opclasses=["varchar_pattern_ops"]
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "phone"],
                condition=Q(erased_at__isnull=True),
                name="contact_unique_phone_per_campaign",
            ),
            models.UniqueConstraint(
                fields=["campaign", "external_id"],
                condition=~Q(external_id=""),
                name="contact_unique_external_id_per_campaign",
            ),
            # An erased contact has no number at all; every other one an E.164 number.
            models.CheckConstraint(
                condition=Q(phone__regex=E164_REGEX) | Q(erased_at__isnull=False, phone=""),
                name="contact_phone_e164",
            ),
            models.CheckConstraint(
                condition=Q(state__in=ContactState.values),
                name="contact_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(state=ContactState.RETRY) | Q(next_attempt_at__isnull=False),
                name="contact_retry_has_time",
            ),
        ]

    def __str__(self) -> str:
        if self.erased_at is not None:
            return str(_("erased contact %(id)s") % {"id": self.pk})
        return self.phone

    def can_move_to(self, state: str) -> bool:
        return state in self.TRANSITIONS[self.state]

    @classmethod
    def states_moving_to(cls, state: str) -> list[str]:
        """The states the table lets a contact leave for ``state``, in the enum's order."""
        return [origin for origin in cls.State.values if state in cls.TRANSITIONS[origin]]
