"""Call scripts under hostile input: what a partner's template can cost one web process.

Before the limits (docs/security.md, "Call scripts"), every distinct text was parsed into a
1,024-entry cache whatever its size, a field had no length limit, a line filled in with a
long contact value grew without bound, and `{% if %}` nested 500 deep ran into a
RecursionError. Each figure is measured with tracemalloc and the clock; the note gives the
bound it is held to.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import override_settings

from bench.harness import Figure
from templates import rendering
from templates.models import CallTemplate

DISTINCT_LINES = 1_000


def _traced(work: Callable[[], object]) -> tuple[float, float, float]:
    """Seconds ``work`` took, the peak and the retained memory it allocated (MB)."""
    gc.collect()
    tracemalloc.start()
    before, _peak = tracemalloc.get_traced_memory()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, (peak - before) / 1e6, (after - before) / 1e6


def _lines_parsed() -> None:
    for index in range(DISTINCT_LINES):
        rendering.validate_text(
            field="greeting",
            text=f"Línea {index}. " + "{% if first_name %}Hola {{ first_name }}.{% endif %}" * 75,
            allowed_variables={"first_name"},
        )


def _refused(template: CallTemplate) -> None:
    try:
        template.clean()
    except ValidationError:
        return
    raise AssertionError("the template was accepted")


def _expanded() -> None:
    try:
        rendering.render_line(
            text="{{first_name}}" * 280, context={"first_name": "x" * 4000}, field="greeting"
        )
    except rendering.LineTooLong:
        return
    raise AssertionError("the line was not cut")


def run() -> list[Figure]:
    bound = settings.TEMPLATE_CACHE_MAX_CHARS
    # Baseline: the same lines with a cache that holds them all, as one bounded by its
    # number of entries (1,024) did.
    rendering._scans.clear()
    with override_settings(TEMPLATE_CACHE_MAX_CHARS=10**9):
        _seconds, _peak, unbounded = _traced(_lines_parsed)
    rendering._scans.clear()
    _seconds, _peak, cached = _traced(_lines_parsed)
    rendering._scans.clear()
    deep = CallTemplate(
        name="deep",
        variables={"first_name": "Lucía"},
        greeting="Hola.",
        instructions="{% if first_name %}" * 500 + "x" + "{% endif %}" * 500,
    )
    deep_seconds, _peak, _kept = _traced(lambda: _refused(deep))
    huge = CallTemplate(
        name="huge",
        variables={"first_name": "Lucía"},
        greeting="Hola. " * (4 * 1024 * 1024 // 6),
        instructions="Hola.",
    )
    huge_seconds, huge_peak, _kept = _traced(lambda: _refused(huge))
    _seconds, expanded_peak, _kept = _traced(_expanded)
    return [
        Figure(
            "script_limits.cache_after_1000_lines",
            round(cached, 1),
            "MB",
            f"{DISTINCT_LINES:,} distinct 3,900-character lines; bound "
            f"{bound:,} characters held (TEMPLATE_CACHE_MAX_CHARS)",
        ),
        Figure(
            "script_limits.cache_unbounded_baseline",
            round(unbounded, 1),
            "MB",
            "the same lines in a cache that holds them all (1,024 entries did)",
        ),
        Figure(
            "script_limits.cache_over_baseline",
            round(cached / unbounded, 2),
            "ratio",
            "bounded by characters over bounded by entries, for the same lines",
        ),
        Figure(
            "script_limits.if_500_deep_refused",
            round(deep_seconds * 1000, 1),
            "ms",
            f"refused at depth {settings.TEMPLATE_MAX_NESTING} before Django parses it "
            "(was a RecursionError, a 500)",
        ),
        Figure(
            "script_limits.greeting_4mb_refused",
            round(huge_seconds * 1000, 1),
            "ms",
            f"peak {huge_peak:.1f} MB above the 4 MB text itself: refused by its length, unparsed",
        ),
        Figure(
            "script_limits.expanding_line_peak",
            round(expanded_peak, 2),
            "MB",
            "280 copies of a 4,000-character value: rendering stops at "
            f"{settings.TEMPLATE_LINE_MAX_CHARS:,} characters (was 1.12 MB of output)",
        ),
    ]
