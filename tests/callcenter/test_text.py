from __future__ import annotations

from callcenter.text import TEXT_MAX_CHARS, truncate


def test_truncate_cuts_to_the_columns_length() -> None:
    assert truncate("é" * (TEXT_MAX_CHARS + 10)) == "é" * TEXT_MAX_CHARS
    assert truncate("short") == "short"


def test_truncate_reads_an_error_as_its_message() -> None:
    assert truncate(ValueError("x" * 600), limit=3) == "xxx"
