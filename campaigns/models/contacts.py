"""Contacts: the people a campaign calls, their states, the variables they lack and the
legal basis recorded for calling them."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, JSONField, Max, Q, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform, KeyTransformExact
from django.db.models.lookups import IsNull, Regex
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from campaigns.models.campaigns import Campaign
from campaigns.phones import E164_REGEX, e164_validator
from campaigns.rules import BASIS_CONSENT, BASIS_CUSTOMER, BASIS_SERVICE

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


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


class LegalBasis(models.TextChoices):
    """Why a contact may be called (rules.Profile.marketing_basis says which a marketing
    campaign accepts): consent, an existing customer relationship, a service call."""

    NONE = "", _("None recorded")
    CONSENT = BASIS_CONSENT, _("Consent")
    CUSTOMER = BASIS_CUSTOMER, _("Existing customer relationship")
    SERVICE = BASIS_SERVICE, _("Service call (not marketing)")


# The basis fields, as the API and CSV files name them.
BASIS_FIELDS = (
    "legal_basis",
    "basis_source",
    "basis_obtained_at",
    "basis_wording",
    "basis_scope",
    "basis_expires_at",
    "basis_withdrawn_at",
)


def legal_basis_problems(
    values: dict[str, object], *, now: datetime.datetime | None = None
) -> dict[str, list[ValidationError]]:
    """Why the basis ``values`` (BASIS_FIELDS; missing ones blank) do not hold together, by
    field (empty: they do): consent needs its time, source and wording; details need a
    kind; it cannot be obtained in the future nor expire before it was obtained."""
    now = now or timezone.now()
    kind = values.get("legal_basis") or ""
    obtained_at = values.get("basis_obtained_at")
    expires_at = values.get("basis_expires_at")
    problems: dict[str, list[ValidationError]] = {}

    def add(name: str, message: StrOrPromise, code: str, **params: object) -> None:
        problems.setdefault(name, []).append(ValidationError(message, code=code, params=params))

    if not kind:
        given = [name for name in BASIS_FIELDS[1:-1] if values.get(name)]
        for name in given:
            add(
                name,
                _(
                    "%(field)s is given but legal_basis is empty: name the basis (consent, "
                    "customer or service)."
                ),
                "basis_details_without_kind",
                field=name,
            )
    if kind == LegalBasis.CONSENT:
        for name in ("basis_obtained_at", "basis_source", "basis_wording"):
            if not values.get(name):
                add(
                    name,
                    _("Consent needs %(field)s (when, where and in which words it was given)."),
                    "consent_incomplete",
                    field=name,
                )
    if isinstance(obtained_at, datetime.datetime) and obtained_at > now:
        add(
            "basis_obtained_at",
            _("basis_obtained_at %(value)s is in the future."),
            "basis_obtained_in_future",
            value=obtained_at.isoformat(),
        )
    if (
        isinstance(obtained_at, datetime.datetime)
        and isinstance(expires_at, datetime.datetime)
        and expires_at <= obtained_at
    ):
        add(
            "basis_expires_at",
            _("basis_expires_at %(value)s is not after basis_obtained_at %(obtained)s."),
            "basis_expires_before_obtained",
            value=expires_at.isoformat(),
            obtained=obtained_at.isoformat(),
        )
    return problems


def parse_moment(text: str) -> datetime.datetime:
    """An ISO 8601 date or date and time, as CSV files and the API give a basis's times: a
    value without an offset, and a date (its midnight), is read in the project's time zone
    (TIME_ZONE). Raises ValueError naming the value."""
    text = text.strip()
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            if day is not None:
                moment = datetime.datetime.combine(day, datetime.time())
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(
            _(
                "“%(value)s” is not an ISO 8601 date or time such as 2026-05-31 or "
                "2026-05-31T10:00:00+02:00."
            )
            % {"value": text}
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


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
    # The legal basis for calling (issue 23): what a marketing campaign checks.
    legal_basis = models.CharField(
        _("legal basis"),
        max_length=16,
        choices=LegalBasis,
        blank=True,
        help_text=_("Consent, an existing customer relationship or a service call; empty: none."),
    )
    basis_source = models.CharField(
        _("basis source"),
        max_length=500,
        blank=True,
        help_text=_("Where it was obtained, e.g. “web form example.com/alta”."),
    )
    basis_obtained_at = models.DateTimeField(_("basis obtained at"), null=True, blank=True)
    basis_wording = models.TextField(
        _("consent wording"), blank=True, help_text=_("The consent text the person was shown.")
    )
    basis_scope = models.CharField(
        _("basis scope"), max_length=500, blank=True, help_text=_("What the basis covers.")
    )
    basis_expires_at = models.DateTimeField(_("basis expires at"), null=True, blank=True)
    basis_withdrawn_at = models.DateTimeField(
        _("basis withdrawn at"),
        null=True,
        blank=True,
        help_text=_("Set when the person opts out: the basis ends."),
    )
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
            models.CheckConstraint(
                condition=Q(legal_basis__in=LegalBasis.values), name="contact_legal_basis_valid"
            ),
        ]

    def __str__(self) -> str:
        if self.erased_at is not None:
            return str(_("erased contact %(id)s") % {"id": self.pk})
        return self.phone

    def clean(self) -> None:
        """Check the legal basis holds together (``legal_basis_problems``)."""
        problems = legal_basis_problems({name: getattr(self, name) for name in BASIS_FIELDS})
        if problems:
            raise ValidationError(problems)

    def basis_snapshot(self) -> dict[str, object]:
        """The basis as the audit trail records it: kind, times, never the wording."""
        return {
            "legal_basis": self.legal_basis,
            "obtained_at": _iso(self.basis_obtained_at),
            "expires_at": _iso(self.basis_expires_at),
            "withdrawn_at": _iso(self.basis_withdrawn_at),
        }

    def can_move_to(self, state: str) -> bool:
        return state in self.TRANSITIONS[self.state]

    @classmethod
    def states_moving_to(cls, state: str) -> list[str]:
        """The states the table lets a contact leave for ``state``, in the enum's order."""
        return [origin for origin in cls.State.values if state in cls.TRANSITIONS[origin]]


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
