"""Retention of uploads: a partner's contact import files and their rejected and warned
rows are deleted once older than its ``uploads_retention_days``; the import's counts stay.

The periods and the audit entry are shared with calls/retention.py (which runs this one
too, from its beat task): each batch is its own short transaction that locks the rows it
takes (``SKIP LOCKED``, so two runs at once share the work rather than repeat it) and
records what it deleted in the audit trail, in the same transaction.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from audit import services as audit
from audit.models import Action
from campaigns.models import ContactImport, ContactImportError, ContactImportWarning, Partner

logger = logging.getLogger(__name__)

# Rows (or imports) deleted in one transaction: millions of rows never make one.
BATCH_SIZE = 1000


class Kind(StrEnum):
    """What a retention period covers, and the partner field that holds it."""

    TRANSCRIPTS = "transcripts"
    RECORDINGS = "recordings"
    OUTCOMES = "outcomes"
    UPLOADS = "uploads"

    @property
    def days_field(self) -> str:
        return f"{self.value}_retention_days"


@dataclass
class Purge:
    """What one run deleted, per partner and kind (and what it had to leave)."""

    counts: dict[tuple[int, str], int] = field(default_factory=dict)
    left: dict[tuple[int, str], int] = field(default_factory=dict)

    def add(self, partner_id: int, kind: Kind, count: int) -> None:
        key = (partner_id, kind.value)
        self.counts[key] = self.counts.get(key, 0) + count

    def leave(self, partner_id: int, kind: Kind, count: int) -> None:
        key = (partner_id, kind.value)
        self.left[key] = self.left.get(key, 0) + count

    def total(self, kind: Kind | None = None) -> int:
        return sum(n for (_, k), n in self.counts.items() if kind is None or k == kind)

    def total_left(self, kind: Kind | None = None) -> int:
        return sum(n for (_, k), n in self.left.items() if kind is None or k == kind)


def partners_keeping(kind: Kind) -> QuerySet[Partner]:
    """Partners with a retention period for ``kind`` (the others keep it until deleted)."""
    return Partner.objects.filter(**{f"{kind.days_field}__isnull": False}).order_by("pk")


def cutoff(partner: Partner, kind: Kind, now: datetime.datetime) -> datetime.datetime:
    """The moment before which ``partner``'s data of ``kind`` has expired."""
    days: int = getattr(partner, kind.days_field)
    return now - datetime.timedelta(days=days)


def record_purge(
    *, partner: Partner, kind: Kind, count: int, cutoff: datetime.datetime, **extra: int
) -> None:
    """The audit entry of one batch deleted (call it inside the batch's transaction)."""
    audit.record(
        Action.RETENTION_PURGED,
        partner_id=partner.pk,
        object_type="campaigns.partner",
        object_id=partner.pk,
        details={
            "partner": partner.pk,
            "kind": kind.value,
            "count": count,
            "cutoff": cutoff.isoformat(),
            "days": getattr(partner, kind.days_field),
            **extra,
        },
    )


def expired_uploads(partner: Partner, before: datetime.datetime) -> QuerySet[ContactImport]:
    """``partner``'s finished imports made before ``before`` that still hold a file or
    noted rows (a queued or running import is never touched)."""
    notes = Exists(ContactImportError.objects.filter(contact_import=OuterRef("pk"))) | Exists(
        ContactImportWarning.objects.filter(contact_import=OuterRef("pk"))
    )
    return (
        ContactImport.objects.filter(
            campaign__partner=partner,
            created_at__lt=before,
            state__in=[ContactImport.State.DONE, ContactImport.State.FAILED],
        )
        .filter(~Q(file="") | notes)
        .order_by("pk")
    )


def purge_uploads(
    *, now: datetime.datetime, batch_size: int = BATCH_SIZE, result: Purge | None = None
) -> Purge:
    """Delete every partner's expired import files and noted rows, in batches."""
    result = result if result is not None else Purge()
    for partner in partners_keeping(Kind.UPLOADS):
        before = cutoff(partner, Kind.UPLOADS, now)
        while (count := _purge_uploads_batch(partner, before, batch_size)) is not None:
            result.add(partner.pk, Kind.UPLOADS, count)
    return result


def _purge_uploads_batch(partner: Partner, before: datetime.datetime, size: int) -> int | None:
    """One batch: up to ``size`` imports lose their file, or up to ``size`` noted rows go
    (an import's notes may be millions). None when nothing was left to do."""
    with transaction.atomic():
        imports = list(
            expired_uploads(partner, before).select_for_update(skip_locked=True, of=("self",))[
                :size
            ]
        )
        if not imports:
            return None
        ids = [contact_import.pk for contact_import in imports]
        rows = 0
        for model in (ContactImportError, ContactImportWarning):
            note_ids = list(
                model.objects.filter(contact_import__in=ids)
                .order_by("pk")
                .values_list("pk", flat=True)[: size - rows]
            )
            rows += model.objects.filter(pk__in=note_ids).delete()[0]
            if rows >= size:
                break
        files = 0
        if rows < size:
            # Every note of these imports is gone: now their files. A file deleted and
            # the transaction then rolled back is deleted again next time (a missing
            # file is no error), so the row never points at a file that is kept.
            for contact_import in imports:
                if not contact_import.file.name:
                    continue
                default_storage.delete(contact_import.file.name)
                contact_import.file = ""
                contact_import.save(update_fields=["file", "updated_at"])
                files += 1
        record_purge(
            partner=partner,
            kind=Kind.UPLOADS,
            count=files,
            cutoff=before,
            imports=len(ids),
            rows=rows,
        )
        return files
