"""Tables out as files: calls and contacts as CSV and XLSX, from the API and the admin.

A ``Table`` is its headers and its rows, read from the database a chunk at a time
(``in_chunks``) while the file is written, so memory stays bounded whatever the number of
rows. A CSV file leaves as it is written (``StreamingHttpResponse``). An XLSX file is a
zip archive, which is not whole until its last row: it is written to a temporary file
with openpyxl's write-only mode (rows go straight to disk) and that file is then streamed.

Cells a spreadsheet would take for a formula are made harmless (OWASP, "CSV Injection":
cells starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return): in CSV, such a
text is prefixed with a single quote (so a phone number reads ``'+34600000000``); in
XLSX every text is written as a text cell, never a formula, and keeps its first character.
"""

from __future__ import annotations

import csv
import datetime
import enum
import io
import json
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import IO, Any, TypeVar

from asgiref.sync import sync_to_async
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Model, QuerySet
from django.http import (
    HttpRequest,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.urls import URLPattern, path, reverse
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

# Rows read from the database at once: each chunk costs the same few queries.
CHUNK_ROWS = 2000
_M = TypeVar("_M", bound=Model)
# A CSV response sends what it has written once it holds this much.
FLUSH_BYTES = 256 * 1024
# What a temporary XLSX file is streamed by.
BLOCK_BYTES = 256 * 1024
# OWASP's list of the first characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Excel's limits: rows on a sheet (the header included) and characters in a cell.
XLSX_MAX_ROWS = 1_048_576
XLSX_MAX_CHARS = 32_767


class FileFormat(enum.StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


MEDIA_TYPES = {
    FileFormat.CSV: "text/csv",
    FileFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass
class Table:
    """What an export writes. ``rows`` is read once, as the file is written; ``title``
    names the XLSX sheet."""

    title: str
    headers: list[str]
    rows: Iterable[Sequence[Any]]


def in_chunks(queryset: QuerySet[_M], size: int | None = None) -> Iterator[list[_M]]:
    """The rows of ``queryset`` in lists of ``size`` (CHUNK_ROWS), read through one
    server-side cursor (PostgreSQL), so a chunk's related rows can be read in a query for
    the whole chunk."""
    size = size or CHUNK_ROWS
    rows = queryset.iterator(chunk_size=size)
    while chunk := list(islice(rows, size)):
        yield chunk


# --- Cells ---------------------------------------------------------------------------------


def defused(text: str) -> str:
    """``text`` as a spreadsheet opening a CSV file reads it as text, never a formula."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC)


def csv_cell(value: Any) -> str:
    """A value as a CSV cell: moments in UTC (ISO 8601), true/false, JSON for lists and
    objects, nothing for None; texts defused."""
    if type(value) is str:  # most cells: first
        return defused(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)  # a number is never a formula, even a negative one
    if isinstance(value, datetime.datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return defused(str(value))


def xlsx_cell(sheet: WriteOnlyWorksheet, value: Any) -> Any:
    """A value as an XLSX cell: moments in UTC as dates, numbers as numbers, every text a
    text cell (what openpyxl would take for a formula or an error is forced to text)."""
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, datetime.datetime):
        return _utc(value).replace(tzinfo=None)  # Excel has no time zones: the header says UTC
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    # XML 1.0 cannot hold most control characters; Excel cuts a cell at 32,767 characters.
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))[:XLSX_MAX_CHARS]
    if text.startswith("=") or text in ERROR_CODES:
        cell = WriteOnlyCell(sheet, value=text)
        cell.data_type = "s"
        return cell
    return text


# --- Files ---------------------------------------------------------------------------------


def csv_chunks(table: Table) -> Iterator[bytes]:
    """``table`` as CSV (RFC 4180: UTF-8, commas, CRLF): the headers at once, then the
    rows a few hundred kilobytes at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> bytes:
        written = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return written

    writer.writerow([defused(str(header)) for header in table.headers])
    yield flush()
    for row in table.rows:
        writer.writerow([csv_cell(value) for value in row])
        if buffer.tell() >= FLUSH_BYTES:
            yield flush()
    if buffer.tell():
        yield flush()


def write_xlsx(table: Table, file: IO[bytes]) -> None:
    """``table`` as an XLSX workbook into ``file``: one sheet, continued on further sheets
    (each with the headers) past Excel's 1,048,576 rows."""
    workbook = Workbook(write_only=True)
    title = re.sub(r"[\[\]:*?/\\]", " ", str(table.title))[:24] or "Sheet"
    sheets = 0
    sheet: WriteOnlyWorksheet | None = None
    rows_on_sheet = XLSX_MAX_ROWS

    def new_sheet() -> WriteOnlyWorksheet:
        nonlocal sheets, rows_on_sheet
        sheets += 1
        added = workbook.create_sheet(title if sheets == 1 else f"{title} ({sheets})")
        added.append([xlsx_cell(added, str(header)) for header in table.headers])
        rows_on_sheet = 1
        return added

    for row in table.rows:
        if rows_on_sheet >= XLSX_MAX_ROWS:
            sheet = new_sheet()
        assert sheet is not None
        sheet.append([xlsx_cell(sheet, value) for value in row])
        rows_on_sheet += 1
    if sheet is None:
        new_sheet()
    workbook.save(file)


def _file_blocks(file: IO[bytes]) -> Iterator[bytes]:
    try:
        while block := file.read(BLOCK_BYTES):
            yield block
    finally:
        file.close()


class _Steps:
    """A file's chunks, each one produced in the language and time zone of the request
    that asked for it (the chunks are produced after the view has returned, when neither
    is active any more). ``close`` ends the production early (the client went away)."""

    def __init__(self, chunks: Iterator[bytes], *, language: str, time_zone: Any) -> None:
        self._chunks = chunks
        self._language = language
        self._time_zone = time_zone

    def next_chunk(self) -> bytes | None:
        """The next chunk; None after the last."""
        with translation.override(self._language), timezone.override(self._time_zone):
            return next(self._chunks, None)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class _SyncSteps(_Steps):
    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.next_chunk()) is not None:
            yield chunk


class _AsyncSteps(_Steps):
    """The chunks for an ASGI server. Django would read a plain iterator whole into
    memory before sending any of it; here each chunk is produced on the request's own
    thread (where its database connection and cursor are), one at a time."""

    def __init__(self, chunks: Iterator[bytes], **kwargs: Any) -> None:
        super().__init__(chunks, **kwargs)
        self._step = sync_to_async(self.next_chunk, thread_sensitive=True)

    def __aiter__(self) -> _AsyncSteps:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._step()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


def export_filename(*, subject: str, scope: Sequence[str], file_format: FileFormat) -> str:
    """``calls-initech-campaign-12-2025-05-31.csv``: what, whose, and the day (in the
    active time zone)."""
    parts = [subject, *filter(None, (slugify(part) for part in scope))]
    return f"{'-'.join(parts)}-{timezone.localdate().isoformat()}.{file_format.value}"


def export_response(
    request: HttpRequest | Request, *, table: Table, file_format: FileFormat, filename: str
) -> StreamingHttpResponse:
    """``table`` as an attachment in ``file_format``: CSV streamed as it is written, XLSX
    written whole to a temporary file first (rows read meanwhile) and then streamed."""
    request = getattr(request, "_request", request)  # DRF's request wraps Django's
    if file_format == FileFormat.XLSX:
        file = tempfile.TemporaryFile()  # closed once streamed (_file_blocks)
        try:
            write_xlsx(table, file)
        except BaseException:
            file.close()
            raise
        size = file.tell()
        file.seek(0)
        chunks: Iterator[bytes] = _file_blocks(file)
    else:
        chunks = csv_chunks(table)
    steps_class = _AsyncSteps if isinstance(request, ASGIRequest) else _SyncSteps
    steps = steps_class(
        chunks, language=translation.get_language(), time_zone=timezone.get_current_timezone()
    )
    content_type = MEDIA_TYPES[file_format]
    if file_format == FileFormat.CSV:
        content_type += "; charset=utf-8"
    response = StreamingHttpResponse(steps, content_type=content_type)
    if file_format == FileFormat.XLSX:
        response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "private, no-store"
    return response


# --- The partner API -------------------------------------------------------------------------


class FileRenderer(BaseRenderer):
    """A file format the export actions offer, chosen by DRF's content negotiation: the
    ``format`` query parameter (``?format=xlsx``), a format suffix (``export.xlsx``) or the
    Accept header. The action writes the file itself, streamed; its other answers are JSON
    (``ExportViewMixin``), so nothing is ever rendered here."""

    file_format: FileFormat
    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        raise TypeError("The export actions answer with a file of their own.")


class CSVRenderer(FileRenderer):
    file_format = FileFormat.CSV
    media_type = MEDIA_TYPES[FileFormat.CSV]
    format = FileFormat.CSV.value


class XLSXRenderer(FileRenderer):
    file_format = FileFormat.XLSX
    media_type = MEDIA_TYPES[FileFormat.XLSX]
    format = FileFormat.XLSX.value


class ExportNegotiation(DefaultContentNegotiation):
    """As DRF's, but a format nobody offers is a clear 400 rather than a bare 404."""

    def filter_renderers(
        self, renderers: Iterable[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        offered = [renderer for renderer in renderers if renderer.format == format]
        if not offered:
            raise exceptions.ValidationError(
                {
                    "format": [
                        _("“%(format)s” is not a format of this export: use %(formats)s.")
                        % {
                            "format": format,
                            "formats": ", ".join(renderer.format for renderer in renderers),
                        }
                    ]
                }
            )
        return offered


EXPORT_FORMAT_PARAMETER = OpenApiParameter(
    "format",
    str,
    enum=[file_format.value for file_format in FileFormat],
    default=FileFormat.CSV.value,
    description=_("The file: csv (streamed) or xlsx."),
)


def export_responses(description: str | Promise) -> dict[tuple[int, str], OpenApiResponse]:
    """An export's answers for drf-spectacular: the file in each format."""
    return {
        (200, MEDIA_TYPES[file_format]): OpenApiResponse(OpenApiTypes.BINARY, description)
        for file_format in FileFormat
    }


EXPORT_ACTION: dict[str, Any] = {
    "renderer_classes": [CSVRenderer, XLSXRenderer],
    "content_negotiation_class": ExportNegotiation,
    "pagination_class": None,
}


class ExportViewMixin:
    """For viewsets with an ``export`` action (declared with ``**EXPORT_ACTION``): the
    file in the negotiated format, and any other answer of the action (an error, OPTIONS'
    description) in JSON like every other endpoint's."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # By the route's renderers, not its action: a method the route does not take
        # (TRACE) has no action, and its 405 would otherwise go to a file's renderer.
        offers_files = any(
            issubclass(renderer, FileRenderer)
            for renderer in self.renderer_classes  # type: ignore[attr-defined]
        )
        if offers_files and isinstance(response, Response):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]


def negotiated_format(request: Request) -> FileFormat:
    """The file format the export request negotiated."""
    renderer = request.accepted_renderer
    return renderer.file_format if isinstance(renderer, FileRenderer) else FileFormat.CSV


# --- The admin -----------------------------------------------------------------------------

# The export form's own parameters, set apart from the changelist's filters.
EXPORT_FORMAT_PARAM = "format"
EXPORT_TRANSCRIPT_PARAM = "transcript"


class ExportAdminMixin:
    """An export of a changelist: its rows as the list is filtered, searched and ordered
    at the moment, in CSV or XLSX, for whoever may view them (``export/?format=csv`` plus
    the list's own parameters; the list's template shows the form,
    ``admin/export_form.html``). ``export_table`` says what the rows are."""

    export_subject = ""

    def export_table(self, request: HttpRequest, queryset: QuerySet, *, transcript: bool) -> Table:
        raise NotImplementedError

    def get_urls(self) -> list[URLPattern]:
        # The export's URL, ahead of the admin's catch-all URL of an object's page.
        opts = self.model._meta  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(self.export_view)  # type: ignore[attr-defined]
        name = f"{opts.app_label}_{opts.model_name}_export"
        return [path("export/", view, name=name), *super().get_urls()]  # type: ignore[misc]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        params = request.GET.copy()
        try:
            file_format = FileFormat(params.pop(EXPORT_FORMAT_PARAM, ["csv"])[-1])
        except ValueError:
            return HttpResponseBadRequest(_("Export as csv or xlsx."))
        transcript = params.pop(EXPORT_TRANSCRIPT_PARAM, [""])[-1] in ("1", "on", "true")
        # The changelist reads the list's parameters from the request, and takes any
        # other for a filter it does not know.
        request.GET = params  # type: ignore[assignment]  # a mutable copy, on purpose
        try:
            changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        except IncorrectLookupParameters:
            opts = self.model._meta  # type: ignore[attr-defined]
            changelist_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            return HttpResponseRedirect(f"{changelist_url}?{ERROR_FLAG}=1")
        table = self.export_table(request, changelist.queryset, transcript=transcript)
        filename = export_filename(subject=self.export_subject, scope=[], file_format=file_format)
        return export_response(request, table=table, file_format=file_format, filename=filename)
