"""Text cut to fit the columns that keep it: reasons, error messages, URLs."""

from __future__ import annotations

# The length of the reason and error columns (state_reason, error_message, last_error...).
TEXT_MAX_CHARS = 500


def truncate(text: object, limit: int = TEXT_MAX_CHARS) -> str:
    """``text`` (``str()`` of it) cut to its first ``limit`` characters."""
    return str(text)[:limit]
