"""National suppression lists: the import rate of an operator's file through the real import
(gzip, parsed, COPY, swapped in), then lookups against a list of tens of millions of numbers
(single contacts, as the dialler's pre-dial check asks, and the dispatcher's batches), and
the same lookups against a list of a million: the ratio says how lookups grow with the list.

PostgreSQL only (the lists' scale needs it): on the embedded default it reports nothing.
The big list is built in the database (``generate_series``), not through the parser: the
import rate is measured on its own file. BENCH_SUPPRESSION_ENTRIES (20,000,000),
BENCH_SUPPRESSION_SMALL (1,000,000) and BENCH_SUPPRESSION_IMPORT_LINES (1,000,000) make it
smaller for a quick run.
"""

from __future__ import annotations

import gzip
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection
from django.utils import timezone

from bench.harness import Figure
from campaigns.models import (
    Campaign,
    Contact,
    Partner,
    SuppressionCopy,
    SuppressionList,
    SuppressionNumber,
)
from campaigns.suppression import import_files, listings

ENTRIES = int(os.environ.get("BENCH_SUPPRESSION_ENTRIES", "20000000"))
SMALL = int(os.environ.get("BENCH_SUPPRESSION_SMALL", "1000000"))
IMPORT_LINES = int(os.environ.get("BENCH_SUPPRESSION_IMPORT_LINES", "1000000"))
SINGLE_LOOKUPS = 300
BATCHES = 100
BATCH_SIZE = 200  # the dispatcher's candidates for a few dozen free slots
# Spanish mobiles 6xx xxx xxx: the list holds a scrambled part of them.
BASE = 34_600_000_000
SPAN = 100_000_000
MULTIPLIER = 48_271  # prime to SPAN: index -> number is a permutation


def run() -> list[Figure]:
    if connection.vendor != "postgresql":
        return []
    partner = Partner.objects.create(name="Suppression bench")
    campaign = Campaign.objects.create(
        partner=partner, name="Suppression bench", purpose=Campaign.Purpose.MARKETING
    )
    figures = [*import_rate(), *lookups(campaign)]
    return figures


def import_rate() -> list[Figure]:
    """A gzip file of IMPORT_LINES national numbers (0.1% bad) through ``import_files``."""
    suppression_list = SuppressionList.objects.create(
        name="Bench import", kind="other", country_code="34"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "robinson.txt.gz"
        with gzip.open(path, "wt", compresslevel=1) as file:
            for index in range(IMPORT_LINES):
                number = BASE + (index * MULTIPLIER) % SPAN
                file.write("not-a-number\n" if index % 1000 == 999 else f"{number - 34 * 10**9}\n")
        started = time.perf_counter()
        copy = import_files(
            suppression_list=suppression_list, refreshed_at=timezone.localdate(), paths=[path]
        )
        seconds = time.perf_counter() - started
    assert copy.state == SuppressionCopy.State.DONE, copy.failure_reason
    return [
        Figure(
            "suppression import rate",
            round(copy.lines_read / seconds),
            "lines/s",
            f"{copy.lines_read:,} lines gzip, {copy.bad_lines:,} bad, {seconds:.1f} s",
        )
    ]


def _build(name: str, entries: int) -> tuple[SuppressionList, float]:
    """A live Lista Robinson copy of ``entries`` numbers, written by the database."""
    suppression_list = SuppressionList.objects.create(
        name=name, kind="robinson_es", country_code="34", is_global=False
    )
    copy = SuppressionCopy.objects.create(
        suppression_list=suppression_list,
        refreshed_at=timezone.localdate(),
        state=SuppressionCopy.State.DONE,
        entry_count=entries,
    )
    table = SuppressionNumber._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (copy_id, number) "  # noqa: S608 - our table's name
            "SELECT %s, %s + (i * %s) %% %s FROM generate_series(0::bigint, %s - 1) i ORDER BY 2",
            [copy.pk, BASE, MULTIPLIER, SPAN, entries],
        )
        cursor.execute(f"ANALYZE {table}")
    seconds = time.perf_counter() - started
    SuppressionList.objects.filter(pk=suppression_list.pk).update(
        current_copy=copy, refreshed_at=timezone.localdate(), entry_count=entries
    )
    suppression_list.refresh_from_db()
    return suppression_list, seconds


def _contacts(campaign: Campaign, count: int, rng: random.Random) -> list[Contact]:
    """Contacts with Spanish mobiles, about half of them on the big list."""
    contacts = []
    for index in range(count):
        number = BASE + rng.randrange(SPAN)
        contact = Contact(campaign=campaign, phone=f"+{number}")
        contact.pk = index + 1  # listings keys its answer by id; these are never saved
        contacts.append(contact)
    return contacts


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95


def _time(call: Callable[[], object], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _measure(campaign: Campaign, live: SuppressionList) -> dict[str, tuple[float, float]]:
    SuppressionList.objects.update(is_global=False)
    SuppressionList.objects.filter(pk=live.pk).update(is_global=True)
    rng = random.Random(23)  # noqa: S311 - reproducible sample numbers
    singles = _contacts(campaign, SINGLE_LOOKUPS, rng)
    batch = [_contacts(campaign, BATCH_SIZE, rng) for _ in range(BATCHES)]
    listings(contacts=singles[:10])  # warm the connection and the plan
    single = iter(singles)
    batches = iter(batch)
    return {
        "single": _percentiles(_time(lambda: listings(contacts=[next(single)]), SINGLE_LOOKUPS)),
        "batch": _percentiles(_time(lambda: listings(contacts=next(batches)), BATCHES)),
    }


def _count(entries: int) -> str:
    return f"{entries / 10**6:g}M"


def lookups(campaign: Campaign) -> list[Figure]:
    big, big_seconds = _build("Bench big", ENTRIES)
    small, _small_seconds = _build("Bench small", SMALL)
    on_big = _measure(campaign, big)
    on_small = _measure(campaign, small)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [SuppressionNumber._meta.db_table])
        size_mb = cursor.fetchone()[0] / 2**20
    figures = [
        Figure(
            "suppression big list built in the database",
            round(ENTRIES / big_seconds),
            "entries/s",
            f"{ENTRIES:,} entries in {big_seconds:.0f} s; numbers table {size_mb:,.0f} MB "
            f"with the {SMALL:,}-entry list and the import's",
        )
    ]
    for kind, label in (("single", "one contact"), ("batch", f"{BATCH_SIZE} contacts")):
        for index, name in enumerate(("p50", "p95")):
            figures.append(
                Figure(
                    f"suppression lookup {kind} {name} ({_count(ENTRIES)})",
                    round(on_big[kind][index], 2),
                    "ms",
                    label,
                )
            )
        figures.append(
            Figure(
                f"suppression lookup {kind} p95 {_count(ENTRIES)} / {_count(SMALL)}",
                round(on_big[kind][1] / on_small[kind][1], 2),
                "ratio",
                f"{on_small[kind][1]:.2f} ms at {SMALL:,} entries",
            )
        )
    return figures
