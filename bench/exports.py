"""Exports through the partner API: 100,000 calls as CSV, as CSV with transcripts and as
XLSX, and one campaign's contacts (a tenth of them) as CSV, downloaded from the real web
server (uvicorn, one process, as the Procfile runs it) with the partner's API key. For
each: the time to the first byte and to the last, rows per second, the web process's CPU
time for them (what a busy machine does not change), the file's size, and the web
process's peak memory during the download (the kernel's high-water mark, VmHWM, reset
before each) next to its memory before it: what grows with the rows would show here.

The calls are bench/admin.py's (one partner, ten campaigns, 90 days, one contact each; the
calls answered by a person with a five-turn conversation), each contact done with. Each
file is checked for its rows: as many as calls or contacts. BENCH_EXPORT_CALLS makes them
fewer for a quick run.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from bench.admin import make_calls
from bench.harness import Figure
from bench.servers import single_process_server
from campaigns.models import Campaign, Contact, PartnerApiKey

CALLS = int(os.environ.get("BENCH_EXPORT_CALLS", "100000"))
# The web server's output.
LOG = Path(os.environ.get("DATA_DIR", tempfile.gettempdir())) / "bench-exports-web.log"
CAMPAIGNS = 10
CALL_EXPORTS = {
    "calls.csv": "/api/v1/calls/export/?format=csv",
    "calls.csv_transcripts": "/api/v1/calls/export/?format=csv&transcript=1",
    "calls.xlsx": "/api/v1/calls/export/?format=xlsx",
}


def run() -> list[Figure]:
    partner, _day = make_calls(
        calls=CALLS, campaigns=CAMPAIGNS, name="Export bench", with_turns=True
    )
    _api_key, key = PartnerApiKey.objects.create_key(partner=partner, name="bench")
    # Contacts take longer a row (each one's verdict): one campaign's, not all.
    campaign = Campaign.objects.filter(partner=partner).order_by("pk").first()
    exports = {
        **{name: (path, CALLS) for name, path in CALL_EXPORTS.items()},
        "contacts.csv": (
            f"/api/v1/contacts/export/?format=csv&campaign={campaign.pk}",
            Contact.objects.filter(campaign=campaign).count(),
        ),
    }
    headers = {"Authorization": f"Api-Key {key}", "Accept-Language": "en"}
    figures = []
    with (
        single_process_server(LOG) as (url, server),
        httpx.Client(base_url=url, headers=headers, timeout=600) as client,
    ):
        client.get("/api/v1/calls/?page_size=1").raise_for_status()  # warmed up
        for name, (path, rows) in exports.items():
            figures += measure(client, server.pid, name, path, rows)
    return figures


def measure(client: httpx.Client, pid: int, name: str, path: str, expected: int) -> list[Figure]:
    before = _memory_mb(pid, "VmRSS")
    reset = _reset_peak(pid)
    cpu = _cpu_seconds(pid)
    started = time.perf_counter()
    first_byte = None
    content = io.BytesIO()
    with client.stream("GET", path) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            if first_byte is None:
                first_byte = time.perf_counter() - started
            content.write(chunk)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds(pid) - cpu
    peak = _memory_mb(pid, "VmHWM" if reset else "VmRSS")
    rows = _rows(name, content.getvalue())
    assert rows == expected, f"{name}: {rows} rows, not {expected}"
    size_mb = content.tell() / 1_000_000
    peak_note = "the web process's high-water mark" if reset else "its memory after (no VmHWM)"
    return [
        Figure(f"exports.{name}.seconds", round(seconds, 2), "s", f"{rows:,} rows"),
        Figure(f"exports.{name}.rows_per_s", round(rows / seconds), "rows/s"),
        Figure(
            f"exports.{name}.server_cpu_ms_per_1000_rows",
            round(cpu / rows * 1_000_000),
            "ms",
            "the web process's CPU time",
        ),
        Figure(f"exports.{name}.first_byte_ms", round((first_byte or seconds) * 1000), "ms"),
        Figure(f"exports.{name}.size_mb", round(size_mb, 1), "MB"),
        Figure(f"exports.{name}.peak_rss_mb", round(peak, 1), "MB", peak_note),
        Figure(
            f"exports.{name}.rss_growth_mb",
            round(peak - before, 1),
            "MB",
            f"over {before:.0f} MB before the download",
        ),
    ]


def _rows(name: str, content: bytes) -> int:
    if name.endswith(".xlsx"):
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            sheet = archive.read("xl/worksheets/sheet1.xml")
        return sheet.count(b"<row ") - 1  # the headers' row
    return sum(1 for _row in csv.reader(io.StringIO(content.decode()))) - 1


def _memory_mb(pid: int, field: str) -> float:
    """A memory figure of process ``pid`` from /proc (VmRSS now, VmHWM its peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def _cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` has used, user and system (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its present memory (Linux: clear_refs 5); False when
    it cannot be (then the memory after the download is reported instead)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
