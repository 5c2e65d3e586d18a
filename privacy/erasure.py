"""Erasing everything held about a phone number, at its owner's request.

One transaction for the database: the contacts stay as anonymous rows and the calls stay
for the campaign's counts and costs, every personal field blanked; transcripts, call
events, webhook deliveries, stored API answers, do-not-call entries and row notes that
hold the number go; the speech clips voiced for the person are anonymised (the row keeps
the characters billed, the audio goes). Uploaded contact files are deleted by the import
itself when it ends, so an erasure waits for a running import (and for a live call).
Exports of calls and contacts are streamed, never stored. What is kept is the number's
keyed hash, in ``ErasedNumber``, so it is never called again. Files go once the
transaction commits; recordings are deleted at the carrier after it, retried until done
(``privacy.recordings``).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from django.contrib.admin.models import LogEntry
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import services as audit
from callcenter import media
from calls.models import LIVE_STATUSES, Call, CallClip, CallDirection, Turn
from campaigns.models import (
    Contact,
    ContactImport,
    ContactImportError,
    ContactImportWarning,
    ErasedNumber,
    IdempotencyKey,
    Partner,
)
from privacy.models import DataSubjectRequest
from privacy.subjects import (
    Subject,
    as_text,
    call_events,
    deliveries,
    do_not_call,
    mentions,
    played_clip_ids,
    subject_contacts,
)
from templates.rendering import (
    MissingVariable,
    TemplateRenderError,
    contact_context,
    contact_sentences,
)
from voices.models import ClipStatus, SpeechClip

logger = logging.getLogger(__name__)

# The contact's fields an erasure keeps: what the campaign's counts are made of. Every
# other field is blanked, whichever app adds it (the legal basis fields, for one).
KEPT_CONTACT_FIELDS = frozenset(
    {
        "id",
        "campaign",
        "state",
        "attempts",
        "next_attempt_at",
        "erased_at",
        "created_at",
        "updated_at",
    }
)
# Imports whose upload is still stored (campaigns.imports deletes it when one ends).
_RUNNING_IMPORTS = (ContactImport.State.QUEUED, ContactImport.State.RUNNING)
# What an anonymised clip says instead of its words (its text may not be empty).
ERASED_TEXT = "[erased]"
# Variable values shorter than this are not looked for in texts ("Sí", "1").
_MIN_VALUE_LENGTH = 3


class ErasureRefused(Exception):
    """The erasure cannot be made now; the message says why (a call is going on)."""


def erase_subject(
    *, phone: str, partner: Partner | None, actor: audit.Actor = audit.SYSTEM
) -> DataSubjectRequest:
    """Erase everything about the E.164 number ``phone`` held for ``partner`` (None: every
    partner, staff only), as described above; returns the request with its counts.

    Raises ErasureRefused while a call to the number is going on (its webhooks would write
    again what was just erased).
    """
    subject = Subject.of(phone)
    now = timezone.now()
    files: list[str] = []
    with transaction.atomic():
        contacts = subject_contacts(subject=subject, partner=partner).select_for_update()
        contact_ids = list(contacts.values_list("pk", flat=True))
        calls = Call.objects.filter(contact_id__in=contact_ids)
        if calls.filter(status__in=LIVE_STATUSES).exists():
            raise ErasureRefused(_("A call to this number is going on: erase it once it ends."))
        if _imports_of(contact_ids).filter(state__in=_RUNNING_IMPORTS).exists():
            # Its upload may hold the number; an import deletes it when it ends.
            raise ErasureRefused(
                _("An import into a campaign of this number is going on: erase it once it ends.")
            )
        subject_rows = Contact.objects.filter(pk__in=contact_ids)
        values = _personal_values(subject, subject_rows)
        call_ids = list(calls.values_list("pk", flat=True))
        counts = {
            "contacts": len(contact_ids),
            "calls": len(call_ids),
            "turns": Turn.objects.filter(call_id__in=call_ids).delete()[0],
            "call_events": call_events(subject, partner, call_ids).delete()[0],
            "clips": _anonymise_clips(_personal_clips(call_ids, values, subject_rows), files),
            "webhook_deliveries": deliveries(subject, partner).delete()[0],
            "idempotency_keys": _idempotency_keys(subject, partner).delete()[0],
            "do_not_call_entries": do_not_call(subject, partner).delete()[0],
            "import_row_notes": _scrub_import_notes(subject, contact_ids, values, partner),
            "admin_log_entries": _scrub_admin_log(subject),
        }
        pending = list(
            calls.exclude(recording_sid="", recording_url="").values_list("pk", flat=True)
        )
        _blank_calls(calls)
        _blank_contacts(subject_rows, now=now)
        ErasedNumber.objects.update_or_create(
            partner=partner, digest=subject.digest, defaults={"erased_at": now}
        )
        counts["recordings"] = len(pending)
        request = DataSubjectRequest.objects.create(
            kind=DataSubjectRequest.Kind.ERASE,
            status=(
                DataSubjectRequest.Status.RECORDINGS_PENDING
                if pending
                else DataSubjectRequest.Status.DONE
            ),
            partner=partner,
            subject=subject.digest,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_name=actor.name,
            counts=counts,
            pending_recordings=pending,
        )
        if not pending:
            # Done as it is recorded: it ends when it was made (not before, as ``now`` is).
            request.finished_at = request.created_at
            request.save(update_fields=["finished_at"])
        audit.record(
            audit.Action.SUBJECT_ERASED,
            partner_id=partner.pk if partner else None,
            subject_phone=subject.phone,
            object_type="privacy.datasubjectrequest",
            object_id=request.pk,
            actor=actor,
            details=counts,
        )
        transaction.on_commit(lambda: _delete_files(files))
        if pending:
            from privacy.tasks import delete_recordings_task

            delete_recordings_task.delay_on_commit(request.pk)  # type: ignore[attr-defined]
    return request


def _personal_values(subject: Subject, contacts: QuerySet[Contact]) -> list[str]:
    """What identifies the person in a text: the number, its national digits, and the
    contacts' variables and external ids (a name, an address)."""
    values = {subject.phone, subject.national}
    for variables, external_id in contacts.values_list("variables", "external_id"):
        if external_id:
            values.add(external_id)
        if isinstance(variables, dict):
            values.update(str(value) for value in variables.values() if _is_text(value))
    return sorted(value for value in values if len(value.strip()) >= _MIN_VALUE_LENGTH)


def _is_text(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _personal_clips(
    call_ids: list[int], values: list[str], contacts: QuerySet[Contact]
) -> QuerySet[SpeechClip]:
    """The clips voiced for the person: played on their calls and on no one else's, or
    played on them and saying one of their values (a name); and the lines voiced ahead of
    their calls (campaigns.prerendering), found by rendering their sentences again."""
    played = played_clip_ids(call_ids)
    shared = set(
        CallClip.objects.filter(clip_id__in=played)
        .exclude(call__contact__in=contacts)
        .values_list("clip_id", flat=True)
    )
    return SpeechClip.objects.filter(
        Q(pk__in=played - shared)
        | (Q(pk__in=played) & mentions("text", values))
        | Q(text__in=_sentences_of(contacts))
    )


def _sentences_of(contacts: QuerySet[Contact]) -> set[str]:
    """The lines of the contacts' templates that speak of them, as clips hold them."""
    sentences: set[str] = set()
    for contact in contacts.select_related("campaign__partner", "campaign__template"):
        if contact.campaign.template is None:
            continue
        try:
            lines = contact_sentences(
                template=contact.campaign.template, context=contact_context(contact=contact)
            )
        except (MissingVariable, TemplateRenderError):
            continue  # a line it lacks a value for was never voiced
        sentences.update(" ".join(line.split()) for line in lines)
    return sentences


def _anonymise_clips(clips: QuerySet[SpeechClip], files: list[str]) -> int:
    """Anonymise ``clips``: the words and the audio go (the file after commit); the row
    stays, with the characters it billed, for the calls' costs. A new random key frees
    the content address, so the line is voiced anew if it is ever said again."""
    count = 0
    for clip in clips.select_for_update():
        if clip.audio.name:
            files.append(clip.audio.name)
        clip.text = ERASED_TEXT
        clip.key = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        clip.status = ClipStatus.FAILED
        clip.error_message = "erased"
        clip.audio = ""
        clip.save(update_fields=["text", "key", "status", "error_message", "audio", "updated_at"])
        count += 1
    return count


def _idempotency_keys(subject: Subject, partner: Partner | None) -> QuerySet[Any]:
    """The API answers kept for repeated POSTs that name the number: without them a repeat
    is a new request (and adding the number is refused)."""
    keys = as_text(IdempotencyKey.objects.all(), "response_body").filter(
        mentions("response_body_text", [subject.phone])
    )
    return keys if partner is None else keys.filter(scope=f"partner:{partner.pk}")


def _imports_of(contact_ids: list[int]) -> QuerySet[ContactImport]:
    return ContactImport.objects.filter(campaign__contacts__in=contact_ids).distinct()


def _scrub_import_notes(
    subject: Subject, contact_ids: list[int], values: list[str], partner: Partner | None
) -> int:
    """Delete the import row notes (rejected rows, warnings) that hold the person's values
    in the contacts' campaigns, or the number in any of ``partner``'s (every partner's)
    campaigns; the imports' counts stay."""
    imports = _imports_of(contact_ids).values("pk")
    in_scope = Q() if partner is None else Q(contact_import__campaign__partner=partner)
    number = [subject.phone, subject.national]
    removed = 0
    for model in (ContactImportError, ContactImportWarning):
        notes = model.objects.filter(
            (
                Q(contact_import__in=imports)
                & (mentions("value", values) | mentions("message", values))
            )
            | (in_scope & (mentions("value", number) | mentions("message", number)))
        )
        removed += notes.delete()[0]
    return removed


def _scrub_admin_log(subject: Subject) -> int:
    """The admin's history names objects by their text (a contact's, a do-not-call
    entry's: the number) and may quote values in its messages."""
    number = [subject.phone, subject.national]
    entries = LogEntry.objects.filter(
        mentions("object_repr", number) | mentions("change_message", number)
    )
    return entries.update(object_repr=ERASED_TEXT, change_message="")


def _blank_calls(calls: QuerySet[Call]) -> None:
    """Keep the calls' statuses, times and costs; blank the person's number (our own stays)
    and what they said or answered."""
    personal: dict[str, Any] = {
        "summary": "",
        "answers": {},
        "flags": {},
        "dialogue": {},
        "error_message": "",
    }
    calls.filter(direction=CallDirection.OUTBOUND).update(to_number="", **personal)
    calls.filter(direction=CallDirection.INBOUND).update(from_number="", **personal)


def _blank_contacts(contacts: QuerySet[Contact], *, now: Any) -> None:
    """Blank every field of ``contacts`` but KEPT_CONTACT_FIELDS, whichever they are."""
    blanks: dict[str, Any] = {}
    for field in Contact._meta.concrete_fields:
        if field.name in KEPT_CONTACT_FIELDS or field.primary_key:
            continue
        blanks[field.name] = _blank(field)
    contacts.update(erased_at=now, **blanks)


def _blank(field: models.Field[Any, Any]) -> Any:
    if field.null:
        return None
    if field.has_default():
        return field.get_default()
    if isinstance(field, models.BooleanField):
        return False
    return ""


def delete_files(names: list[str]) -> list[str]:
    """Delete the erased clips' files from the media storage (a missing one is gone
    already); the names of those the storage failed to delete are returned."""
    failed = []
    for name in names:
        try:
            default_storage.delete(name)
        except media.STORAGE_ERRORS:
            logger.warning("Could not delete the erased file %s.", name, exc_info=True)
            failed.append(name)
    return failed


def _delete_files(names: list[str]) -> None:
    """After the erasure commits: delete its files, and leave those the storage failed to
    delete to a task that tries again until they are gone (delete_erased_files_task)."""
    if failed := delete_files(names):
        from privacy.tasks import delete_erased_files_task

        delete_erased_files_task.delay(failed)
