"""Calls (one attempt each), what was said on them, and the provider's raw events."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

# A call's states and kinds live in calls.choices; models is where callers find them.
from calls.choices import LIVE_STATUSES as LIVE_STATUSES
from calls.choices import MACHINE_ANSWERS as MACHINE_ANSWERS
from calls.choices import AnsweredBy as AnsweredBy
from calls.choices import CallDirection as CallDirection
from calls.choices import CallStatus as CallStatus
from calls.choices import PriceStatus as PriceStatus
from calls.choices import placed_calls as placed_calls
from campaigns.models import ConversationTransport

# The outcome keys the platform keeps itself on a call (its opt-out, transfer, callback
# and extraction), in ``Call.flags``; every other key of an outcome is the partner's answer
# (its template's outcome schema), in ``Call.answers``. The model's record_answer never
# writes them, whatever the template's schema declares, since they move the contact (a
# callback, a retry, an opt-out) and have tools of their own.
CALL_OUTCOME_KEYS = frozenset(
    {
        "callback",
        "callback_at",
        "callback_note",
        "do_not_call",
        "extraction_error",
        "extraction_failed",
        "extraction_raw",
        "opted_out",
        "transfer_failed",
        "transfer_status",
        "transferred",
    }
)


def split_outcome(outcome: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``outcome`` (answers and flags in one dict, as a script step or the model's
    extraction gives them) as the call's two fields: ``answers`` and ``flags``, ready for
    ``update(**...)``."""
    return {
        "answers": {key: value for key, value in outcome.items() if key not in CALL_OUTCOME_KEYS},
        "flags": {key: value for key, value in outcome.items() if key in CALL_OUTCOME_KEYS},
    }


class CallQuerySet(models.QuerySet):
    def live(self) -> CallQuerySet:
        return self.filter(status__in=LIVE_STATUSES)

    def stale(self, before: datetime.datetime) -> CallQuerySet:
        """Live calls last touched before ``before``: candidates for reconciliation."""
        return self.live().filter(updated_at__lt=before)

    def placed(self) -> CallQuerySet:
        """Calls that may have rung someone: all but those that never reached Twilio (not
        placed, or refused when created). What frequency caps count."""
        return self.filter(placed_calls())

    def with_outcome(self, flag: str) -> CallQuerySet:
        """Calls whose outcome has ``flag`` set to true: opted_out, transferred,
        extraction_failed, or a boolean field of the template's outcome schema."""
        # A key transform, not a lookup built from the value: "a__b" is one key.
        field = "flags" if flag in CALL_OUTCOME_KEYS else "answers"
        return self.alias(outcome_flag=KeyTransform(flag, field)).filter(outcome_flag=True)

    def callback_requested(self) -> CallQuerySet:
        """Calls on which the callee asked to be called back: at a time (the flags'
        callback_at) or another day (a scripted answer's callback)."""
        # The model may leave callback_at null or "": that is no time.
        at_a_time = (
            Q(flags__has_key="callback_at")
            & ~Q(flags__callback_at=None)
            & ~Q(flags__callback_at="")
        )
        return self.alias(callback=KeyTransform("callback", "flags")).filter(
            at_a_time | Q(callback=True)
        )


class Call(models.Model):
    """One attempt to reach a contact, from the dispatcher's decision to hang-up; or a
    contact calling one of our numbers back (``direction`` inbound, no attempt)."""

    Status = CallStatus
    PriceStatus = PriceStatus
    Direction = CallDirection

    # Denormalised from contact (which never changes campaign): the dispatcher counts
    # live calls per campaign on every tick, and lists filter by campaign without a join.
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        verbose_name=_("campaign"),
        on_delete=models.PROTECT,
        related_name="calls",
    )
    contact = models.ForeignKey(
        "campaigns.Contact",
        verbose_name=_("contact"),
        on_delete=models.PROTECT,
        related_name="calls",
    )
    # The voice the call speaks with, chosen at its first line and kept to its last:
    # staff changing the campaign's or the default voice mid-call change nothing.
    voice = models.ForeignKey(
        "voices.Voice",
        verbose_name=_("voice"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    direction = models.CharField(
        _("direction"), max_length=8, choices=CallDirection, default=CallDirection.OUTBOUND
    )
    # Which of the contact's dialled calls this is; an inbound call is none of them (it
    # counts against no attempt, cap or retry).
    attempt = models.PositiveSmallIntegerField(_("attempt"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=CallStatus, default=CallStatus.PENDING
    )
    # NULL until the provider accepts the call; unique among the calls that have one.
    provider_sid = models.CharField(
        _("provider call SID"), max_length=64, null=True, blank=True, unique=True
    )
    # As Twilio has them: an outbound call is from our number to the contact's, an inbound
    # one from the contact's to ours (``contact_number``, ``our_number``).
    from_number = models.CharField(_("from"), max_length=16)
    to_number = models.CharField(_("to"), max_length=16)
    answered_by = models.CharField(_("answered by"), max_length=24, choices=AnsweredBy, blank=True)
    dialed_at = models.DateTimeField(_("dialed at"), null=True, blank=True)
    # The calling rules' version (campaigns.rules.RULES_VERSION) whose check allowed the
    # dial, set right before it: what an audit of this call reads.
    rules_version = models.CharField(
        _("rules version"),
        max_length=120,
        blank=True,
        help_text=_("The version of the calling rules that allowed this call when it was dialled."),
    )
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    # How the conversation reached the caller (a relay campaign's scripted calls and
    # voicemail messages keep <Gather> and their clips).
    transport = models.CharField(
        _("transport"),
        max_length=8,
        choices=ConversationTransport,
        default=ConversationTransport.GATHER,
    )
    first_audio_ms = models.PositiveIntegerField(
        _("time to first audio (ms)"),
        null=True,
        blank=True,
        help_text=_(
            "From the answer to the first audio the callee heard from us (the greeting's "
            "start): over 2,000 ms counts as an abandoned call where the rules measure it."
        ),
    )
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(_("duration (s)"), null=True, blank=True)
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=5, null=True, blank=True)
    price_unit = models.CharField(_("price unit"), max_length=3, blank=True)
    price_status = models.CharField(
        _("price status"), max_length=16, choices=PriceStatus, default=PriceStatus.PENDING
    )
    # When Twilio's Call resource is next asked for the price of the ended call (null: not
    # waiting for it), and how many times it was asked already (the back-off's step).
    price_check_at = models.DateTimeField(_("next price check"), null=True, blank=True)
    price_checks = models.PositiveSmallIntegerField(_("price checks"), default=0)
    error_code = models.PositiveIntegerField(_("error code"), null=True, blank=True)
    error_message = models.CharField(_("error"), max_length=500, blank=True)
    # What the call came to, kept apart: the partner's answers (the fields of its template's
    # outcome schema: recorded live by the model or a script step, or extracted after the
    # call) and the platform's own flags (CALL_OUTCOME_KEYS). ``outcome`` shows both as one.
    answers = models.JSONField(_("answers"), default=dict, blank=True)
    flags = models.JSONField(_("flags"), default=dict, blank=True)
    # Where the conversation stands between two webhooks: the scripted step waiting for an
    # answer, answers not understood and silences in a row.
    dialogue = models.JSONField(_("dialogue state"), default=dict, blank=True)
    recording_sid = models.CharField(_("recording SID"), max_length=64, blank=True)
    recording_url = models.URLField(_("recording URL"), max_length=500, blank=True)
    recording_seconds = models.PositiveIntegerField(
        _("recording duration (s)"), null=True, blank=True
    )
    # A campaign that records starts recording once the callee has heard the announcement
    # (calls.recordings.start_after_announcement), never from the answer.
    recording_started_at = models.DateTimeField(
        _("recording started at"),
        null=True,
        blank=True,
        help_text=_("When the carrier accepted the request to record, after the announcement."),
    )
    recording_failed = models.BooleanField(
        _("recording failed"),
        default=False,
        help_text=_("The carrier did not start the recording: the call went on unrecorded."),
    )
    summary = models.TextField(_("summary"), blank=True)
    # The model's tokens spent extracting the outcome after the call (the turns' own
    # tokens are on each turn).
    extraction_model = models.CharField(_("extraction model"), max_length=100, blank=True)
    extraction_prompt_tokens = models.PositiveIntegerField(
        _("extraction prompt tokens"), null=True, blank=True
    )
    extraction_completion_tokens = models.PositiveIntegerField(
        _("extraction completion tokens"), null=True, blank=True
    )
    speech_fallbacks = models.PositiveIntegerField(
        _("lines spoken with <Say>"),
        default=0,
        help_text=_("Lines that could not be played as rendered audio and were spoken by Twilio."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["campaign", "status"], name="call_campaign_status_idx"),
            models.Index(fields=["status", "updated_at"], name="call_status_updated_idx"),
            # The staff console's list: newest first, filtered by campaign, status or answer.
            models.Index(fields=["campaign", "created_at"], name="call_campaign_created_idx"),
            models.Index(fields=["status", "created_at"], name="call_status_created_idx"),
            models.Index(fields=["answered_by", "created_at"], name="call_answered_created_idx"),
            # Searched by the number's start (LIKE '+34600%'); the operator class lets
            # PostgreSQL use the index for it whatever the collation (ignored elsewhere).
            models.Index(
                fields=["to_number"], name="call_to_number_idx", opclasses=["varchar_pattern_ops"]
            ),
            # Inbound calls found by the caller's number (or its start), as outbound ones by
            # to_number.
            models.Index(
                fields=["from_number"],
                name="call_inbound_from_idx",
                opclasses=["varchar_pattern_ops"],
                condition=Q(direction="inbound"),
            ),
            # A campaign's calls by when they were answered (calls.abandonment's window,
            # taken after every answered call ends), unanswered and inbound ones left out.
            models.Index(
                F("campaign"),
                Coalesce(F("answered_at"), F("created_at")),
                name="call_campaign_answer_idx",
                condition=Q(direction="outbound")
                & (Q(answered_at__isnull=False) | Q(status="completed")),
            ),
            # The calls whose price is due to be asked for, by the price tick.
            models.Index(
                fields=["price_check_at"],
                condition=Q(price_check_at__isnull=False),
                name="call_price_check_idx",
            ),
        ]
        constraints = [
            # One live call each way: a contact may ring us back while a call of ours to
            # them is still ringing (it is hung up then, calls.inbound).
            models.UniqueConstraint(
                fields=["contact", "direction"],
                condition=Q(status__in=LIVE_STATUSES),
                name="call_one_live_call_per_contact_direction",
            ),
            models.UniqueConstraint(
                fields=["contact", "attempt"], name="call_unique_attempt_per_contact"
            ),
            models.CheckConstraint(
                condition=Q(direction=CallDirection.OUTBOUND, attempt__gte=1)
                | Q(direction=CallDirection.INBOUND, attempt__isnull=True),
                name="call_attempt_by_direction",
            ),
            models.CheckConstraint(
                condition=Q(direction__in=CallDirection.values), name="call_direction_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=CallStatus.values), name="call_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(answered_by="") | Q(answered_by__in=AnsweredBy.values),
                name="call_answered_by_valid",
            ),
            models.CheckConstraint(
                condition=Q(price__isnull=True) | Q(price__gte=0), name="call_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(price_status__in=PriceStatus.values), name="call_price_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True)
                | Q(dialed_at__isnull=True)
                | Q(ended_at__gte=F("dialed_at")),
                name="call_ends_after_dial",
            ),
        ]

    def __str__(self) -> str:
        if self.direction == CallDirection.INBOUND:
            return f"{self.from_number} ({self.get_direction_display()})"
        return f"{self.to_number} #{self.attempt}"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def is_inbound(self) -> bool:
        return self.direction == CallDirection.INBOUND

    @property
    def contact_number(self) -> str:
        """The contact's end of the call."""
        return self.from_number if self.is_inbound else self.to_number

    @property
    def our_number(self) -> str:
        """Our end of the call: the number that dialled, or the number that was called."""
        return self.to_number if self.is_inbound else self.from_number

    @property
    def outcome(self) -> dict[str, Any]:
        """What the call came to as one dict, as the API, webhooks and exports show it: the
        partner's answers with the platform's flags."""
        answers = self.answers if isinstance(self.answers, dict) else {}
        flags = self.flags if isinstance(self.flags, dict) else {}
        return {**answers, **flags}

    @outcome.setter
    def outcome(self, outcome: Mapping[str, Any]) -> None:
        """Set both fields from one dict (``Call(outcome=...)`` too), split by its keys."""
        split = split_outcome(outcome or {})
        self.answers, self.flags = split["answers"], split["flags"]


class TurnRole(models.TextChoices):
    AGENT = "agent", _("Agent")
    CALLER = "caller", _("Caller")
    SYSTEM = "system", _("System")


class Turn(models.Model):
    """One utterance on a call: what we said or what the callee said, with timings."""

    Role = TurnRole

    call = models.ForeignKey(
        Call, verbose_name=_("call"), on_delete=models.CASCADE, related_name="turns"
    )
    sequence = models.PositiveIntegerField(_("sequence"))
    role = models.CharField(_("role"), max_length=8, choices=TurnRole)
    text = models.TextField(_("text"), blank=True)
    digits = models.CharField(_("digits"), max_length=32, blank=True)
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    latency_ms = models.PositiveIntegerField(
        _("latency (ms)"),
        null=True,
        blank=True,
        help_text=_("For our turns: time from the caller's words to our reply being ready."),
    )
    model_ms = models.PositiveIntegerField(
        _("model time (ms)"), null=True, blank=True, help_text=_("For AI turns: the model's time.")
    )
    response_ms = models.PositiveIntegerField(
        _("response time (ms)"),
        null=True,
        blank=True,
        help_text=_(
            "For streamed AI turns: from the caller's final words reaching us to our first "
            "words sent to be spoken."
        ),
    )
    interrupted = models.BooleanField(
        _("interrupted"),
        default=False,
        help_text=_("The caller spoke over this line: its text is what they heard of it."),
    )
    speech_ms = models.PositiveIntegerField(
        _("speech time (ms)"),
        null=True,
        blank=True,
        help_text=_("For AI turns: from the first sentence sent to speech to the last one voiced."),
    )
    # The speech clips played for this turn, in order (ids of voices.SpeechClip): kept
    # with the turn, written anyway, rather than a row each on a live call's hot path;
    # the call's CallClip rows are made from them when it ends.
    clips = models.JSONField(_("clips played"), default=list, blank=True)
    # For AI turns: the model asked and the tokens it billed (every request of the turn).
    model = models.CharField(_("model"), max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), null=True, blank=True)

    class Meta:
        verbose_name = _("turn")
        verbose_name_plural = _("turns")
        ordering = ["call", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["call", "sequence"], name="turn_unique_sequence"),
            models.CheckConstraint(condition=Q(role__in=TurnRole.values), name="turn_role_valid"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                name="turn_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="turn_confidence_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.text[:60]}"


class CallClip(models.Model):
    """A speech clip played on a call: what the call's audio was, and its share of each
    clip's characters (a clip is rendered once and shared by every call that plays it)."""

    call = models.ForeignKey(
        Call, verbose_name=_("call"), on_delete=models.CASCADE, related_name="clips"
    )
    clip = models.ForeignKey(
        "voices.SpeechClip",
        verbose_name=_("speech clip"),
        on_delete=models.PROTECT,
        related_name="plays",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("clip played")
        verbose_name_plural = _("clips played")
        ordering = ["call", "id"]
        constraints = [
            models.UniqueConstraint(fields=["call", "clip"], name="callclip_unique_clip_per_call")
        ]

    def __str__(self) -> str:
        return f"{self.call_id}: {self.clip_id}"


class CallEventKind(models.TextChoices):
    STATUS = "status", _("Status")
    MACHINE_DETECTION = "amd", _("Answering machine detection")
    RECORDING = "recording", _("Recording")
    # The request for an incoming call's TwiML, kept whether or not the caller is a contact.
    INBOUND = "inbound", _("Incoming call")


class CallEvent(models.Model):
    """A raw provider callback, kept as received; the call row holds the folded state."""

    Kind = CallEventKind

    # Kept even when no call matches the SID, so a stray or early callback is never lost.
    call = models.ForeignKey(
        Call,
        verbose_name=_("call"),
        on_delete=models.CASCADE,
        related_name="events",
        null=True,
        blank=True,
    )
    provider_sid = models.CharField(_("provider call SID"), max_length=64, db_index=True)
    kind = models.CharField(_("kind"), max_length=16, choices=CallEventKind)
    sequence_number = models.PositiveIntegerField(_("sequence number"), null=True, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("call event")
        verbose_name_plural = _("call events")
        ordering = ["received_at", "id"]
        # The staff console's list of events, newest first.
        indexes = [models.Index(fields=["received_at"], name="callevent_received_idx")]
        constraints = [
            # Twilio retries callbacks: the same (SID, kind, sequence) is stored once.
            models.UniqueConstraint(
                fields=["provider_sid", "kind", "sequence_number"],
                condition=Q(sequence_number__isnull=False),
                name="callevent_unique_sequence",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=CallEventKind.values), name="callevent_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_sid} {self.kind} #{self.sequence_number}"
