"""Exporting everything held about a phone number, as one ZIP file.

``request_export`` records the request (and the audit entry) and queues the work;
``build_export`` (in a worker) writes the file: ``subject.json`` (the contacts with their
variables and legal basis, their calls with statuses, times, costs, outcomes, summaries,
transcripts and provider events, the webhook deliveries that name the number, its
do-not-call entries and the audit trail's entries about it), the calls' recordings
(``recordings/``) and the speech clips played on them (``clips/``). A recording the
carrier cannot give now is listed under ``recordings_unavailable`` with the reason: the
file is still made, and says so. The file is kept in the default storage under a private,
unguessable name, downloadable by whoever asked for it.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import secrets
import tempfile
import zipfile
from typing import Any

from django.core import serializers
from django.core.files.base import File
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEntry
from calls import telephony
from calls.costs import call_costs
from calls.models import Call, Turn
from calls.recordings import RecordingUnavailable, fetch_recording_audio
from campaigns.models import Contact, Partner
from privacy.models import DataSubjectRequest
from privacy.subjects import Subject, call_events, deliveries, do_not_call, played_clip_ids
from voices.models import SpeechClip

logger = logging.getLogger(__name__)


def request_export(
    *, phone: str, partner: Partner | None, actor: audit.Actor = audit.SYSTEM
) -> DataSubjectRequest:
    """Ask for the export of everything about the E.164 number ``phone`` held for
    ``partner`` (None: every partner, staff only): the request, with the audit entry, and
    its file built in the background (``privacy.tasks.build_export_task``)."""
    from privacy.tasks import build_export_task

    subject = Subject.of(phone)
    with transaction.atomic():
        request = DataSubjectRequest.objects.create(
            kind=DataSubjectRequest.Kind.EXPORT,
            partner=partner,
            subject=subject.digest,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_name=actor.name,
        )
        audit.record(
            audit.Action.SUBJECT_EXPORTED,
            partner_id=partner.pk if partner else None,
            subject_phone=subject.phone,
            object_type="privacy.datasubjectrequest",
            object_id=request.pk,
            actor=actor,
        )
        # The number travels with the task only: the request keeps its hash.
        build_export_task.delay_on_commit(request.pk, subject.phone)  # type: ignore[attr-defined]
    return request


def build_export(*, request_id: int, phone: str) -> DataSubjectRequest:
    """Write the ZIP file of export ``request_id`` for ``phone`` and mark it done, with
    the counts of what it holds."""
    request = DataSubjectRequest.objects.select_related("partner").get(pk=request_id)
    subject = Subject.of(phone)
    if subject.digest != request.subject:
        raise ValueError(f"the number is not the one export {request_id} was asked for")
    document, media = _collect(subject, request.partner)
    # Written to a temporary file, then stored (a bucket's upload reads it in parts).
    with tempfile.TemporaryFile(suffix=".zip") as buffer:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "subject.json",
                json.dumps(document, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False),
            )
            for name, content in media.items():
                archive.writestr(name, content)
        buffer.seek(0)
        request.file.save(f"{secrets.token_urlsafe(24)}.zip", File(buffer), save=False)
    request.counts = {key: len(value) for key, value in document.items() if isinstance(value, list)}
    request.status = DataSubjectRequest.Status.DONE
    request.finished_at = timezone.now()
    request.save(update_fields=["file", "counts", "status", "finished_at"])
    return request


def _collect(subject: Subject, partner: Partner | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON document and the media files (by name in the ZIP) of the export."""
    contacts = Contact.objects.filter(phone=subject.phone)
    if partner is not None:
        contacts = contacts.filter(campaign__partner=partner)
    calls = Call.objects.filter(contact__in=contacts).order_by("created_at", "pk")
    call_ids = list(calls.values_list("pk", flat=True))
    costs = call_costs(calls)
    media: dict[str, bytes] = {}
    recordings, unavailable = _recordings(calls, media)
    audit_entries = AuditEntry.objects.filter(subject=subject.digest).order_by("seq")
    if partner is not None:
        audit_entries = audit_entries.filter(partner_id=partner.pk)
    document = {
        "phone": subject.phone,
        "partner": None if partner is None else {"id": partner.pk, "name": partner.name},
        "generated_at": timezone.now(),
        "contacts": _rows(contacts.order_by("pk")),
        "calls": [
            {**row, "outcome": call.outcome, "cost": costs[call.pk].as_dict()}
            for call, row in zip(calls, _rows(calls), strict=True)
        ],
        "transcripts": _rows(
            Turn.objects.filter(call_id__in=call_ids).order_by("call", "sequence")
        ),
        "call_events": _rows(call_events(subject, partner, call_ids).order_by("received_at", "pk")),
        "recordings": recordings,
        "recordings_unavailable": unavailable,
        "clips": _clips(played_clip_ids(call_ids), media),
        "webhook_deliveries": _rows(deliveries(subject, partner).order_by("created_at", "pk")),
        "do_not_call": _rows(do_not_call(subject, partner).order_by("created_at", "pk")),
        "audit": _rows(audit_entries),
    }
    return document, media


def _rows(queryset: QuerySet[Any]) -> list[dict[str, Any]]:
    """Every field of each row, as Django's serializer writes them (foreign keys as ids)."""
    return [
        {"id": item["pk"], **item["fields"]} for item in serializers.serialize("python", queryset)
    ]


def _recordings(
    calls: QuerySet[Call], media: dict[str, bytes]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The calls' recordings, fetched from the carrier into ``media``; and those it could
    not give now (unavailable, or refused), each with the reason."""
    found: list[dict[str, Any]] = []
    unavailable: list[dict[str, Any]] = []
    for call in calls.exclude(recording_sid="", recording_url=""):
        try:
            recording = fetch_recording_audio(call)
        except (RecordingUnavailable, telephony.TelephonyRejected) as error:
            logger.warning("Export: the recording of call %s could not be fetched", call.pk)
            unavailable.append({"call": call.pk, "reason": str(error)[:500]})
            continue
        if recording is None:
            continue  # the carrier no longer has it
        audio, content_type = recording
        name = f"recordings/call-{call.pk}{_extension(content_type, '.mp3')}"
        media[name] = audio
        found.append({"call": call.pk, "file": name, "content_type": content_type})
    return found, unavailable


def _clips(clip_ids: set[int], media: dict[str, bytes]) -> list[dict[str, Any]]:
    """The speech clips played on the calls: their words, and their audio into ``media``."""
    clips = []
    for clip in SpeechClip.objects.filter(pk__in=clip_ids).order_by("pk"):
        entry: dict[str, Any] = {"id": clip.pk, "text": clip.text, "file": None}
        if clip.audio.name:
            name = f"clips/clip-{clip.pk}{_extension(clip.content_type, '.mp3')}"
            with clip.audio.open("rb") as audio:
                media[name] = audio.read()
            entry["file"] = name
        clips.append(entry)
    return clips


def _extension(content_type: str, default: str) -> str:
    return mimetypes.guess_extension(content_type.split(";")[0].strip()) or default
