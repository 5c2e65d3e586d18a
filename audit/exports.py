"""The audit trail out as files, for the admin and the API: CSV (for people, through the
house's CSV writer and its formula guards) and JSON Lines (for machines: one entry per
line with every chained field, so the chain can be checked again outside the product).

Both stream: entries are read a chunk at a time, each chunk's partner names in one query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from rest_framework.request import Request

from audit.models import Action, AuditEntry
from audit.services import chained_fields
from callcenter.access import partner_model

# _AsyncSteps and _SyncSteps: the house's streaming of chunks in the request's language and
# time zone, under WSGI and ASGI alike (callcenter/exports.py keeps them private to its
# export_response, which writes CSV and XLSX only).
from callcenter.exports import (
    FileFormat,
    Table,
    _AsyncSteps,
    _SyncSteps,
    export_filename,
    export_response,
    in_chunks,
)

JSONL = "jsonl"
JSONL_MEDIA_TYPE = "application/jsonl"
FORMATS = (FileFormat.CSV.value, JSONL)


def partner_names(partner_ids: Iterable[int | None]) -> dict[int, str]:
    """The names of the partners ``partner_ids`` name, in one query (the trail holds ids
    only: a deleted partner has no name)."""
    ids = {pk for pk in partner_ids if pk is not None}
    if not ids:
        return {}
    partners = partner_model()._default_manager.filter(pk__in=ids)
    return {pk: str(name) for pk, name in partners.values_list("pk", "name")}


def headers() -> list[str]:
    return [
        _("Sequence"),
        _("At (UTC)"),
        _("Action"),
        _("Action code"),
        _("Partner id"),
        _("Partner"),
        _("Subject (keyed hash)"),
        _("Object type"),
        _("Object id"),
        _("Actor type"),
        _("Actor id"),
        _("Actor"),
        _("IP address"),
        _("Details"),
        _("Rules version"),
        _("Previous hash"),
        _("Hash"),
    ]


def _labels() -> dict[str, str]:
    return {str(value): str(label) for value, label in Action.choices}


def csv_rows(queryset: QuerySet[AuditEntry]) -> Iterator[Sequence[Any]]:
    labels = _labels()
    for chunk in in_chunks(queryset):
        names = partner_names(entry.partner_id for entry in chunk)
        for entry in chunk:
            yield [
                entry.seq,
                entry.at,
                labels.get(entry.action, entry.action),
                entry.action,
                entry.partner_id,
                names.get(entry.partner_id, "") if entry.partner_id is not None else "",
                entry.subject,
                entry.object_type,
                entry.object_id,
                entry.actor_type,
                entry.actor_id,
                entry.actor_name,
                entry.ip,
                entry.details,
                entry.rules_version,
                entry.prev_hash,
                entry.hash,
            ]


def jsonl_chunks(queryset: QuerySet[AuditEntry]) -> Iterator[bytes]:
    """One JSON object per entry and line: the fields its hash covers (``at`` as the
    hash reads it), its ``hash``, and the partner's name beside its id."""
    for chunk in in_chunks(queryset):
        names = partner_names(entry.partner_id for entry in chunk)
        lines = []
        for entry in chunk:
            line = {
                **chained_fields(entry),
                "hash": entry.hash,
                "partner": names.get(entry.partner_id) if entry.partner_id else None,
            }
            lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        yield "".join(lines).encode()


def export_entries(
    request: HttpRequest | Request, queryset: QuerySet[AuditEntry], *, file_format: str
) -> StreamingHttpResponse:
    """``queryset`` (as ordered) as an attachment: ``csv`` or ``jsonl``, streamed."""
    if file_format == FileFormat.CSV:
        table = Table(title=_("Audit trail"), headers=headers(), rows=csv_rows(queryset))
        name = export_filename(subject="audit", scope=[], file_format=FileFormat.CSV)
        return export_response(request, table=table, file_format=FileFormat.CSV, filename=name)
    django_request = getattr(request, "_request", request)
    steps_class = _AsyncSteps if isinstance(django_request, ASGIRequest) else _SyncSteps
    steps = steps_class(
        jsonl_chunks(queryset),
        language=translation.get_language(),
        time_zone=timezone.get_current_timezone(),
    )
    response = StreamingHttpResponse(steps, content_type=JSONL_MEDIA_TYPE)
    name = f"audit-{timezone.localdate().isoformat()}.{JSONL}"
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["Cache-Control"] = "private, no-store"
    return response
