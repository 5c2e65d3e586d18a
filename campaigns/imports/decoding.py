"""Reading a CSV file: its encoding, delimiter, columns and lines, and the rows they make."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from django.utils.translation import gettext as _

from campaigns.imports.base import ImportFileError, RowError, _clip
from campaigns.imports.basis import BASIS_ALIASES, read_basis
from campaigns.imports.rows import _field_label, _Importer, _nul_error

MAX_COLUMNS = 1_000
MAX_LINE_CHARS = 1_048_576


COLUMN_ALIASES: dict[str, frozenset[str]] = {
    "phone": frozenset(
        {
            "phone",
            "phone_number",
            "phonenumber",
            "telephone",
            "telephone_number",
            "tel",
            "mobile",
            "mobile_phone",
            "cell",
            "cellphone",
            "telefono",
            "numero_de_telefono",
            "numero_telefono",
            "telefono_movil",
            "movil",
            "celular",
        }
    ),
    "time_zone": frozenset({"time_zone", "timezone", "tz", "zona_horaria", "huso_horario"}),
    "external_id": frozenset(
        {
            "external_id",
            "externalid",
            "external_reference",
            "id",
            "customer_id",
            "client_id",
            "id_externo",
            "id_cliente",
            "referencia",
            "reference",
        }
    ),
    **BASIS_ALIASES,
}
DELIMITERS = (",", ";", "\t", "|")


_CHUNK_BYTES = 1_048_576


class _LineTooLong(Exception):
    pass


class _Text:
    """The file's text, a chunk at a time, in the encoding it was written in (see the
    module docstring). ``has_nul``: a NUL character has been read."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.has_nul = False

    def __iter__(self) -> Iterator[str]:
        head = self.file.read(_CHUNK_BYTES)
        if not head.strip():
            raise ImportFileError(_("The file is empty."))
        if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
            raise ImportFileError(
                _("This is a spreadsheet workbook, not a CSV file: save it as “CSV UTF-8”.")
            )
        fallback = False  # to Windows-1252, while all read so far is ASCII
        if head.startswith(codecs.BOM_UTF8):
            head = head[len(codecs.BOM_UTF8) :]
            decoder: codecs.IncrementalDecoder = codecs.getincrementaldecoder("utf-8")()
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            decoder = codecs.getincrementaldecoder("utf-16")()
        elif head.count(b"\x00") * 4 > len(head):
            # Text in UTF-16 is NUL every other byte; a stray NUL in a cell is that row's
            # error (_add_csv_row).
            raise ImportFileError(
                _(
                    "The file is not text, or it is UTF-16 without a byte order mark: save "
                    "it as “CSV UTF-8”."
                )
            )
        else:
            decoder = codecs.getincrementaldecoder("utf-8")()
            fallback = True
        offset, chunk = 0, head
        while True:
            pending = decoder.getstate()[0] if fallback else b""
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                if not (fallback and exc.object[: exc.start].isascii()):
                    raise ImportFileError(_undecodable(offset - len(pending) + exc.start)) from exc
                # Not UTF-8, and ASCII up to here, where both encodings agree.
                fallback = False
                decoder = codecs.getincrementaldecoder("cp1252")()
                try:
                    text = decoder.decode(pending + chunk, final=final)
                except UnicodeDecodeError as cp1252_exc:
                    raise ImportFileError(
                        _undecodable(offset - len(pending) + cp1252_exc.start)
                    ) from cp1252_exc
            if fallback and not text.isascii():
                fallback = False  # UTF-8 it is
            if "\x00" in text:
                self.has_nul = True
            if text:
                yield text
            if final:
                return
            offset += len(chunk)
            chunk = self.file.read(_CHUNK_BYTES)


def _undecodable(offset: int) -> str:
    return _(
        "The file cannot be read as text (byte %(offset)d is neither UTF-8 nor "
        "Windows-1252): save it as “CSV UTF-8”."
    ) % {"offset": offset}


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of ``chunks`` with their endings (``\\n``, ``\\r\\n`` or ``\\r``), as
    the csv module reads them."""
    carry = ""
    for text in chunks:
        lines = io.StringIO(carry + text, newline="").readlines()
        if max(map(len, lines)) > MAX_LINE_CHARS:
            # The rows before it are good: read them first.
            yield from itertools.takewhile(lambda line: len(line) <= MAX_LINE_CHARS, lines)
            raise _LineTooLong
        carry = lines.pop() if not lines[-1].endswith("\n") else ""
        yield from lines
    if carry:
        yield carry


_QUOTED = re.compile(r'"[^"]*"')
_SEP_LINE = re.compile(r"^sep=(.)\r?\n?$")


def _delimiter(header_line: str) -> str:
    """The delimiter the header row uses most, outside quotes; ``,`` on a tie or none."""
    line = _QUOTED.sub("", header_line)
    return max(DELIMITERS, key=line.count)


@dataclass(frozen=True)
class _Columns:
    width: int
    phone: int
    time_zone: int | None
    external_id: int | None
    variables: list[tuple[int, str]]
    basis: dict[str, int]  # the legal basis columns, by field

    @classmethod
    def from_header(cls, header: list[str]) -> _Columns:
        if len(header) > MAX_COLUMNS:
            raise ImportFileError(
                _("The file has %(count)d columns; at most %(max)d are allowed.")
                % {"count": len(header), "max": MAX_COLUMNS}
            )
        fields: dict[str, tuple[int, str]] = {}
        variables: dict[str, int] = {}
        for index, cell in enumerate(header):
            name = cell.strip()
            if not name:
                continue
            if "\x00" in name:
                raise ImportFileError(
                    _("The column “%(name)s” has a NUL character in its name.")
                    % {"name": name.replace("\x00", "\\0")}
                )
            key = _column_key(name)
            field_name = next(
                (candidate for candidate, aliases in COLUMN_ALIASES.items() if key in aliases),
                None,
            )
            if field_name is None:
                if name in variables:
                    raise ImportFileError(
                        _("The column “%(name)s” appears twice.") % {"name": name}
                    )
                variables[name] = index
            elif field_name in fields:
                raise ImportFileError(
                    _("Two columns hold the %(field)s: “%(first)s” and “%(second)s”; keep one.")
                    % {
                        "field": _field_label(field_name),
                        "first": fields[field_name][1],
                        "second": name,
                    }
                )
            else:
                fields[field_name] = (index, name)
        if "phone" not in fields:
            raise ImportFileError(
                _(
                    "The first row must name the columns, one of them the phone (phone, "
                    "telefono, movil…). It names: %(columns)s."
                )
                % {"columns": _clip(", ".join(cell.strip() for cell in header))}
            )
        return cls(
            width=len(header),
            phone=fields["phone"][0],
            time_zone=fields["time_zone"][0] if "time_zone" in fields else None,
            external_id=fields["external_id"][0] if "external_id" in fields else None,
            variables=[(index, name) for name, index in variables.items()],
            basis={name: fields[name][0] for name in BASIS_ALIASES if name in fields},
        )


def _column_key(name: str) -> str:
    """``name`` compared as COLUMN_ALIASES are written: "Nº Teléfono" → "no_telefono"."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(char for char in text if not unicodedata.combining(char))
    return re.sub(r"[\s\-./]+", "_", text).strip("_")


def _read_csv(importer: _Importer, file: IO[bytes]) -> None:
    text = _Text(file)
    lines = _lines(text)
    number = 0  # of the row read last
    try:
        # Rows before the header are blank: count them, as a spreadsheet would.
        leading = []
        for line in lines:
            leading.append(line)
            if line.strip():
                break
        if not leading or not leading[-1].strip():
            raise ImportFileError(_("The file is empty."))
        if match := _SEP_LINE.match(leading[-1]):
            delimiter = match[1]
            leading.pop()  # Excel hides this line; so do we
        else:
            delimiter = _delimiter(leading[-1])
        source = _RowLines(_chain(leading, lines))
        reader = csv.reader(source, delimiter=delimiter)
        columns = None
        while True:
            source.start_row()
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # A value over the csv module's limit: the reader goes on at the next line.
                number += 1
                if columns is None or "field limit" not in str(exc):
                    raise
                source.skip_quoted_rest()  # of a value over several lines
                importer.reject([_oversized_value(number, source.row_text())])
                continue
            number += 1
            if source.unterminated_quote():
                # The quote opened in this row swallowed the rest of the file as one value:
                # reject the row, and read the lines it swallowed as the rows they are.
                importer.reject([_unterminated_quote(number, source.row_lines[0])])
                source = _RowLines(iter(source.row_lines[1:]))
                reader = csv.reader(source, delimiter=delimiter)
                continue
            if columns is None:
                if any(cell.strip() for cell in cells):
                    columns = _Columns.from_header(cells)
                continue
            if not any(cells):
                continue  # a blank row
            _add_csv_row(importer, number, cells, columns, delimiter, has_nul=text.has_nul)
    except _LineTooLong as exc:
        importer.flush()
        raise ImportFileError(
            _("Row %(row)d is longer than %(max)d characters.")
            % {"row": number + 1, "max": MAX_LINE_CHARS}
        ) from exc
    except csv.Error as exc:
        importer.flush()
        if "field limit" in str(exc):
            message = _("Row %(row)d has a value longer than %(max)d characters.") % {
                "row": number,
                "max": csv.field_size_limit(),
            }
        else:
            message = _("Row %(row)d cannot be read as CSV: %(error)s.") % {
                "row": number,
                "error": exc,
            }
        raise ImportFileError(message) from exc
    except ImportFileError:
        importer.flush()
        raise
    if columns is None:
        raise ImportFileError(_("The file is empty."))
    importer.flush()
    if importer.rows_read == 0:
        raise ImportFileError(_("The file names its columns but has no contacts in them."))


class _RowLines:
    """The lines handed to the csv reader, keeping those of the row being read
    (``row_lines``) and whether the file ended inside it."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.row_lines: list[str] = []
        self.ended = False

    def __iter__(self) -> _RowLines:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            self.ended = True
            raise
        self.row_lines.append(line)
        return line

    def start_row(self) -> None:
        self.row_lines = []

    def row_text(self) -> str:
        return "".join(self.row_lines)

    def skip_quoted_rest(self) -> None:
        """Read on to the end of the row when it stopped inside a quoted value (its quotes
        are odd), so that the reader goes on at the next row, not inside the value."""
        quotes = self.row_text().count('"')
        while quotes % 2 == 1:
            try:
                quotes += next(self).count('"')
            except StopIteration:
                return

    def unterminated_quote(self) -> bool:
        """Whether the row just read ran to the end of the file inside a quoted value: a
        quote is never closed when the row's quotes are odd (a quote in a quoted value is
        written twice)."""
        return self.ended and len(self.row_lines) > 1 and self.row_text().count('"') % 2 == 1


def _oversized_value(number: int, text: str) -> RowError:
    return RowError(
        number,
        "",
        _clip(text.rstrip("\r\n")),
        _("The row has a value longer than %(max)d characters; it was not imported.")
        % {"max": csv.field_size_limit()},
    )


def _unterminated_quote(number: int, line: str) -> RowError:
    return RowError(
        number,
        "",
        _clip(line.rstrip("\r\n")),
        _(
            'A quote (") opened in this row is never closed: the row was not imported, and '
            "the lines after it were read as rows of their own."
        ),
    )


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _add_csv_row(
    importer: _Importer,
    number: int,
    cells: list[str],
    columns: _Columns,
    delimiter: str,
    *,
    has_nul: bool,
) -> None:
    problems = []
    if len(cells) < columns.width:
        cells += [""] * (columns.width - len(cells))
    elif len(cells) > columns.width and any(cell.strip() for cell in cells[columns.width :]):
        # Most likely a value with the delimiter in it, unquoted: the row is misaligned.
        problems.append(
            RowError(
                number,
                "",
                _clip(delimiter.join(cells[columns.width :])),
                _("The row has %(cells)d cells but the header names %(columns)d columns.")
                % {"cells": len(cells), "columns": columns.width},
            )
        )
    variables = {
        name: value for index, name in columns.variables if (value := cells[index].strip())
    }
    if has_nul:
        problems.extend(
            RowError(number, name, _clip(value), _nul_error())
            for name, value in variables.items()
            if "\x00" in value
        )
    basis, basis_problems = read_basis(
        number, {name: cells[index].strip() for name, index in columns.basis.items()}
    )
    problems.extend(basis_problems)
    importer.add(
        number,
        basis=basis,
        phone=cells[columns.phone],
        time_zone="" if columns.time_zone is None else cells[columns.time_zone].strip(),
        external_id="" if columns.external_id is None else cells[columns.external_id].strip(),
        variables=variables,
        problems=problems,
    )
