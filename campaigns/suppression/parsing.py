"""Reading the files the list operators deliver, streamed line by line (gzip or not), each
line turned into the value stored or a reason it is bad.

The formats, as their operators describe them:

- The US National Do Not Call Registry (FTC) gives telemarketers "full list" downloads per
  area code (or the whole registry as one file) as a flat text file, "one telephone number
  per line" of 10 digits, described elsewhere as "one area code and telephone number per
  line, separated by a comma"; downloads come compressed (zip), and a "change list" of
  numbers "added to or deleted from" the registry since the last download, "several data
  items per record, separated by commas". Sources: the FTC's Telemarketer Access
  Information (webarchive.library.unt.edu/eot2008/20090118211551/http://www.ftc.gov/opa/
  2003/08/tmkraccessinfo.htm) and dontphoneme.com/howtoguides/downloadingdnc.html. A copy
  replaces the list, so only full lists are accepted: a line with more than two fields is
  refused as a change-list record. Unzip a .zip download first (``unzip -p``): gzip is read
  as it is.
- Spain's Lista Robinson (Adigital) is consulted by companies through Adigital's service,
  which hands out the registered numbers hashed; we found no public statement of the exact
  normalisation hashed, so each list says which (``HashInput``; "any" accepts each reading)
  and plain lists are accepted too (E.164 or national numbers).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.utils.translation import gettext as _

GZIP_MAGIC = b"\x1f\x8b"
# The bad lines kept to show (with their line number and value); the count has them all.
BAD_SAMPLES = 100
_VALUE_SHOWN = 80
_DIGITS = re.compile(r"[0-9]+")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_SEPARATORS = re.compile(r"[ ()./-]")


class BadLine(ValueError):
    """A line that holds no value of the list's format; the message says why."""


@dataclass
class ReadReport:
    """What reading files found: lines read, good and bad, and the first bad ones as
    (file name, line number, value, reason)."""

    lines: int = 0
    good: int = 0
    bad: int = 0
    bad_samples: list[tuple[str, int, str, str]] = field(default_factory=list)

    def reject(self, file_name: str, number: int, value: str, reason: str) -> None:
        self.bad += 1
        if len(self.bad_samples) < BAD_SAMPLES:
            shown = value if len(value) <= _VALUE_SHOWN else value[: _VALUE_SHOWN - 1] + "…"
            self.bad_samples.append((file_name, number, shown, reason))


def open_lines(file: IO[bytes]) -> Iterator[str]:
    """The lines of ``file`` as text, gunzipped when it starts as gzip does, one at a time
    (never read whole); undecodable bytes become U+FFFD and so a bad line."""
    head = file.read(2)
    file.seek(0)  # files on disk and uploads are seekable
    stream: IO[bytes] | gzip.GzipFile = file
    if head == GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=file, mode="rb")
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)
    for line in text:
        yield line.rstrip("\r\n")


def plain_number(line: str, *, country_code: str) -> int:
    """The E.164 digits of a plain list's line as an integer: "+34600000000", "0034…",
    a national number ("600000000", which gets ``country_code``), or the US registry's
    "AAA,NNNNNNN" and "AAANNNNNNN" (with country code 1)."""
    fields = [part.strip() for part in line.split(",")]
    if len(fields) > 2:
        raise BadLine(
            _("more than two fields: a change-list record? Import the full list instead.")
        )
    text = "".join(fields)
    if not text:
        raise BadLine(_("empty line"))
    international = text.startswith("+") or text.startswith("00")
    digits = _SEPARATORS.sub("", text.removeprefix("+"))
    if international and digits.startswith("00"):
        digits = digits[2:]
    if not _DIGITS.fullmatch(digits):
        raise BadLine(_("not a phone number"))
    if not international:
        digits = country_code + digits
    # E.164: at most 15 digits; the shortest national numbers have 8 with their country code.
    if not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise BadLine(_("not a phone number: %(count)s digits") % {"count": len(digits)})
    if country_code == "1" and not international and len(digits) != 11:
        raise BadLine(_("a US number has 10 digits (area code and number)"))
    return int(digits)


def sha256_digest(line: str) -> bytes:
    """The 32 bytes of a hashed list's line: 64 hexadecimal digits (the first field when the
    line has several, separated by commas or semicolons)."""
    text = re.split(r"[,;\t]", line.strip(), maxsplit=1)[0].strip().strip('"')
    if not text:
        raise BadLine(_("empty line"))
    if not _HEX_DIGEST.fullmatch(text):
        raise BadLine(_("not a SHA-256 digest (64 hexadecimal digits)"))
    return bytes.fromhex(text)


def parse_lines(
    lines: Iterable[str],
    *,
    hashed: bool,
    country_code: str,
    report: ReadReport,
    file_name: str = "",
) -> Iterator[int | bytes]:
    """The values of ``lines`` (a plain list's numbers or a hashed one's digests); each bad
    line is counted in ``report`` with its number and why, and skipped. Blank lines and a
    header line (the first, when it holds no digit) are skipped without counting as bad."""
    for number, line in enumerate(lines, start=1):
        report.lines += 1
        if not line.strip() or (number == 1 and not any(char.isdigit() for char in line)):
            continue
        try:
            value: int | bytes = (
                sha256_digest(line) if hashed else plain_number(line, country_code=country_code)
            )
        except BadLine as error:
            report.reject(file_name, number, line, str(error))
            continue
        report.good += 1
        yield value
