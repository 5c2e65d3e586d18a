"""The staff console's calls: a list that stays fast at any size, and each call's page
with its conversation, recording, spoken clips, outcome and the provider's raw events."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from callcenter.exports import ExportAdminMixin, Table
from calls.costs import call_cost
from calls.exports import call_table
from calls.models import (
    MACHINE_ANSWERS,
    Call,
    CallDirection,
    CallEvent,
    CallQuerySet,
    CallStatus,
    Turn,
)
from calls.sentences import split_sentences
from campaigns.phones import normalize_phone
from voices import speech
from voices.clips import clip_key
from voices.models import SpeechClip, Voice
from voices.services import voice_for_campaign


class OutcomeFilter(admin.SimpleListFilter):
    """What the call came to, as the outcome JSON (and, for voicemail, the answer) says.

    Any other value (``?outcome=attending``) is taken as a boolean field of the
    template's outcome schema, as the partner API's outcome filter takes it.
    """

    title = _("outcome")
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [
            ("opted_out", _("Opted out")),
            ("transferred", _("Transferred")),
            ("callback", _("Callback requested")),
            ("voicemail", _("Voicemail")),
            ("extraction_failed", _("Extraction failed")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        value = self.value()
        if not value:
            return queryset
        if value == "voicemail":
            # As calls.services counts a voicemail for the contact's retries.
            return queryset.filter(status=CallStatus.COMPLETED, answered_by__in=MACHINE_ANSWERS)
        # The changelist's queryset comes from Call.objects: a CallQuerySet.
        if value == "callback":
            return cast(CallQuerySet, queryset).callback_requested()
        return cast(CallQuerySet, queryset).with_outcome(value)


# Outcome fields worth a word in the list, in the order they are shown.
OUTCOME_FLAGS = {
    "opted_out": _("Opted out"),
    "transferred": _("Transferred"),
    "callback": _("Callback requested"),
    "extraction_failed": _("Extraction failed"),
}


@admin.register(Call)
class CallAdmin(ExportAdminMixin, admin.ModelAdmin):
    list_display = [
        "number",
        "campaign",
        "direction",
        "attempt",
        "status",
        "answered_by",
        "outcome_flags",
        "duration_seconds",
        "created_at",
        # Last: the columns' positions are in bookmarked sort links (?o=7).
        "transport",
    ]
    list_filter = [
        "campaign",
        "direction",
        "transport",
        "status",
        "answered_by",
        OutcomeFilter,
        "created_at",
        "campaign__partner",
    ]
    list_select_related = ["campaign"]
    # Both served by an index: a number's start, or a provider SID exactly.
    search_fields = ["to_number__startswith", "provider_sid__exact"]
    search_help_text = _(
        "A contact's phone number (or its start, with the country code) or a call SID."
    )
    # Drilled down from the first and the last call in range, not by reading every call's
    # date (admin/calls/call/change_list.html, calls/templatetags/call_list.py).
    date_hierarchy = "created_at"
    # With hundreds of thousands of calls, counting them all on every page is the slow part.
    show_full_result_count = False
    change_form_template = "admin/calls/call/change_form.html"
    export_subject = "calls"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "campaign",
                    "contact",
                    ("direction", "transport"),
                    ("to_number", "from_number"),
                    "attempt",
                    "status",
                    "answered_by",
                    "voice",
                    "provider_sid",
                    "rules_version",
                ]
            },
        ),
        (
            _("Times"),
            {
                "fields": [
                    ("dialed_at", "answered_at", "ended_at"),
                    ("duration_seconds", "first_audio_ms"),
                    ("created_at", "updated_at"),
                ]
            },
        ),
        (
            _("Cost and errors"),
            {
                "fields": [
                    "cost",
                    ("price", "price_unit", "price_status"),
                    ("error_code", "error_message"),
                    "speech_fallbacks",
                ]
            },
        ),
        (
            _("Technical details"),
            {
                "fields": [
                    "dialogue",
                    ("recording_started_at", "recording_failed"),
                    "recording_sid",
                    "recording_url",
                    "recording_seconds",
                ],
                "classes": ["collapse"],
            },
        ),
    ]
    # Calls are written by the dialer and the provider's callbacks, never by hand.
    readonly_fields = [*(field.name for field in Call._meta.fields), "cost"]

    def export_table(
        self, request: HttpRequest, queryset: QuerySet[Call], *, transcript: bool
    ) -> Table:
        return call_table(calls=queryset, transcript=transcript, with_partner=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        # Nothing on a call is edited by hand: its page is a view (no Save buttons).
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Call], search_term: str
    ) -> tuple[QuerySet[Call], bool]:
        # Numbers are kept in E.164 but typed as people say them ("600 000 002"): a term
        # that reads as a whole phone number is looked up as that number.
        # A contact's number is the "to" of our calls and the "from" of theirs (inbound);
        # our own numbers find nothing.
        term = search_term.strip()
        if not term:
            return queryset, False
        ours, theirs = Q(direction=CallDirection.OUTBOUND), Q(direction=CallDirection.INBOUND)
        try:
            number = normalize_phone(term, region=settings.DEFAULT_PHONE_REGION)
        except ValidationError:
            return queryset.filter(
                Q(provider_sid=term)
                | (ours & Q(to_number__startswith=term))
                | (theirs & Q(from_number__startswith=term))
            ), False
        return queryset.filter(
            (ours & Q(to_number=number)) | (theirs & Q(from_number=number))
        ), False

    @admin.display(description=_("number"))
    def number(self, call: Call) -> str:
        """The contact's number: called by us, or calling us (inbound)."""
        return call.contact_number

    @admin.display(description=_("cost"))
    def cost(self, call: Call) -> str:
        """The call's cost by part, and what is not counted in it yet."""
        cost = call_cost(call)
        rows = [
            (gettext("Telephony (Twilio)"), cost.telephony),
            (gettext("Speech (ElevenLabs)"), cost.speech),
            (gettext("Model (OpenAI)"), cost.model),
            (gettext("Total"), cost.total),
        ]
        usage = [
            gettext("%(model)s: %(prompt)s prompt and %(completion)s completion tokens")
            % {"model": model, "prompt": prompt, "completion": completion}
            for model, (prompt, completion) in sorted(cost.tokens.items())
        ] + [
            gettext("%(model)s: %(characters)s characters")
            % {"model": model, "characters": floatformat(characters, 1)}
            for model, characters in sorted(cost.characters.items())
        ]
        notes = []
        if cost.pending:
            notes.append(gettext("Pending: Twilio has not priced the call yet."))
        if cost.unpriced:
            notes.append(gettext("Not counted: %(what)s.") % {"what": ", ".join(cost.unpriced)})
        return format_html(
            '<table class="call-cost">{}</table><p class="help">{}</p>',
            format_html_join(
                "",
                "<tr><th>{}</th><td>{} {}</td></tr>",
                ((label, amount, cost.currency) for label, amount in rows),
            ),
            " · ".join([*notes, *usage]),
        )

    @admin.display(description=_("outcome"))
    def outcome_flags(self, call: Call) -> str:
        flags = call.flags if isinstance(call.flags, dict) else {}
        shown = [
            str(label)
            for key, label in OUTCOME_FLAGS.items()
            if flags.get(key) is True or (key == "callback" and flags.get("callback_at"))
        ]
        return ", ".join(shown) or "-"

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Call | None = None,
    ) -> HttpResponse:
        # The call's conversation, clips and events are read once here for the page's
        # template, below the declarative fields.
        if obj is not None:
            context.update(call_page_context(obj))
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(CallEvent)
class CallEventAdmin(admin.ModelAdmin):
    list_display = ["provider_sid", "kind", "sequence_number", "received_at"]
    list_filter = ["kind"]
    search_fields = ["provider_sid__exact"]
    # Newest first (a call's page lists its own in order); a few per call, so never counted.
    ordering = ["-received_at", "-id"]
    show_full_result_count = False
    readonly_fields = ["call", "provider_sid", "kind", "sequence_number", "payload", "received_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CallEvent | None = None) -> bool:
        # Kept as the provider sent them: their page is a view (no Save buttons).
        return False


# --- A call's page --------------------------------------------------------------------------


@dataclass
class SpokenClip:
    """A line of an agent turn and the rendered audio the call played for it."""

    text: str
    url: str


@dataclass
class Bubble:
    """One turn of the conversation as the page shows it."""

    turn: Turn
    offset: str
    clips: list[SpokenClip] = field(default_factory=list)

    @property
    def timings(self) -> list[tuple[str, str, int]]:
        """(field, label, milliseconds) of the timings the turn has."""
        named = [
            ("response_ms", gettext("first words after"), self.turn.response_ms),
            ("latency_ms", gettext("latency"), self.turn.latency_ms),
            ("model_ms", gettext("model"), self.turn.model_ms),
            ("speech_ms", gettext("speech"), self.turn.speech_ms),
        ]
        return [(name, label, ms) for name, label, ms in named if ms is not None]


def call_page_context(call: Call) -> dict[str, Any]:
    """What a call's page shows below its fields: the recording's player, the
    conversation (each agent turn with the clips it played), the outcome and the
    provider's events."""
    turns = list(call.turns.all())
    voice = call.voice or voice_for_campaign(campaign=call.campaign)  # older calls: none kept
    # Each turn keeps the clips it played; older turns are matched by content address.
    clips = _played_clips(turns) if any(turn.clips for turn in turns) else {}
    clips = clips or _spoken_clips(turns, voice)
    start = call.answered_at or (turns[0].started_at if turns else None) or call.dialed_at
    outcome = call.outcome
    return {
        "recording_src": (
            reverse("calls:recording-audio", kwargs={"call_id": call.pk})
            if call.recording_url
            else ""
        ),
        "transcript": [
            Bubble(turn=turn, offset=_offset(turn.started_at, start), clips=clips.get(turn.pk, []))
            for turn in turns
        ],
        "clip_voice": voice,
        "outcome_rows": [(key, _shown(value)) for key, value in outcome.items()],
        "outcome_json": json.dumps(outcome, indent=2, ensure_ascii=False, sort_keys=True),
        "events": [
            (event, _headline(event), json.dumps(event.payload, indent=2, sort_keys=True))
            for event in call.events.all()
        ],
    }


def _offset(moment: datetime.datetime, start: datetime.datetime | None) -> str:
    """``moment`` as time into the call: +m:ss."""
    if start is None:
        return ""
    seconds = int((moment - start).total_seconds())
    sign = "-" if seconds < 0 else "+"
    minutes, seconds = divmod(abs(seconds), 60)
    return f"{sign}{minutes}:{seconds:02d}"


def _headline(event: CallEvent) -> str:
    """What the provider's event said, in a word: the status it reported."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    for name in ("CallStatus", "RecordingStatus", "AnsweredBy"):
        if payload.get(name):
            return str(payload[name])
    return "…"


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# An agent turn is the lines spoken in it joined by spaces, and a line is one clip or, from
# the model, one clip per sentence: a clip is a run of the turn's sentences, cut at every
# place one may end (abbreviations too: a template's "Sr." ends a clip, a model's not).
# Longest run of sentences tried as one clip (a greeting of several sentences).
MAX_SENTENCES_PER_CLIP = 8
# Keys asked for in one query, well under any database's limit of parameters.
KEYS_PER_QUERY = 500


def _played_clips(turns: list[Turn]) -> dict[int, list[SpokenClip]]:
    """The clips each turn played (``Turn.clips``), by turn id, in order."""
    wanted = {pk for turn in turns for pk in (turn.clips or []) if isinstance(pk, int)}
    ready = SpeechClip.objects.filter(pk__in=wanted, status=SpeechClip.Status.READY)
    by_id = ready.only("token", "text").in_bulk()
    return {
        turn.pk: [
            SpokenClip(text=clip.text, url=reverse("voices:clip", kwargs={"token": clip.token}))
            for pk in turn.clips
            if (clip := by_id.get(pk)) is not None
        ]
        for turn in turns
        if turn.clips
    }


def _runs(pieces: list[str], by_text: dict[str, SpeechClip]) -> list[SpokenClip]:
    """The clips that voice ``pieces`` (a turn's sentences), each the longest run of
    them voiced as one clip."""
    found: list[SpokenClip] = []
    start = 0
    while start < len(pieces):
        for end in range(min(len(pieces), start + MAX_SENTENCES_PER_CLIP), start, -1):
            clip = by_text.get(" ".join(pieces[start:end]))
            if clip is not None:
                url = reverse("voices:clip", kwargs={"token": clip.token})
                found.append(SpokenClip(text=clip.text, url=url))
                start = end
                break
        else:
            start += 1
    return found


def _spoken_clips(turns: list[Turn], voice: Voice | None) -> dict[int, list[SpokenClip]]:
    """The ready clips that voice each agent turn's lines, by turn id.

    Turns do not record their clips: a clip is found again by its content address (text,
    voice, model, settings, format), so with the campaign's voice, model and settings of
    today; a line spoken with <Say>, or in a voice since replaced, has none.
    """
    if voice is None:
        return {}
    pieces_by_turn: dict[int, list[str]] = {}
    keys: dict[str, str] = {}
    for turn in turns:
        if turn.role != Turn.Role.AGENT or not turn.text.strip():
            continue
        pieces = [
            " ".join(piece.split()) for piece in split_sentences(turn.text, abbreviations=False)
        ]
        pieces = [piece for piece in pieces if piece]
        pieces_by_turn[turn.pk] = pieces
        for start in range(len(pieces)):
            for end in range(start + 1, min(len(pieces), start + MAX_SENTENCES_PER_CLIP) + 1):
                text = " ".join(pieces[start:end])
                keys.setdefault(_key(text, voice), text)
    found: dict[str, SpeechClip] = {}
    wanted = list(keys)
    for index in range(0, len(wanted), KEYS_PER_QUERY):
        found.update(
            (clip.key, clip)
            for clip in SpeechClip.objects.filter(
                key__in=wanted[index : index + KEYS_PER_QUERY], status=SpeechClip.Status.READY
            ).only("key", "token", "text")
        )
    by_text = {keys[key]: clip for key, clip in found.items()}
    return {
        turn_id: runs
        for turn_id, pieces in pieces_by_turn.items()
        if (runs := _runs(pieces, by_text))
    }


def _key(text: str, voice: Voice) -> str:
    # What voices.clips.render_clip asks ElevenLabs for when a call speaks ``text``.
    return clip_key(
        text=text,
        voice_id=voice.provider_voice_id,
        model_id=settings.ELEVENLABS_MODEL,
        voice_settings=voice.settings,
        output_format=speech.OUTPUT_FORMAT,
    )
