"""The partner API under concurrent load: p50 and p95 of the campaign list, the call list
and a call's detail, as a partner's server calls them (``Authorization: Api-Key``), from
CONCURRENCY clients at once on the web service as production runs it (gunicorn with
deploy/gunicorn.conf.py and its uvicorn workers: 2 x cores + 1, or BENCH_API_WORKERS), the
CPU time the server spends on a request (all its processes) and what the load generator
spends on one (it shares the machine), and how many queries each request reads.

One partner has 20 campaigns and 100,000 calls over 90 days (seeded as bench/admin.py
seeds them), the calls answered by a person with a five-turn conversation. The detail is
fetched for calls with turns, a different one each request. The rate limit is raised out
of the way: it is not what is measured. Query counts are taken in this process with
django.test.Client, a request of each kind. BENCH_API_CALLS makes the calls fewer,
BENCH_API_REQUESTS the requests per endpoint and concurrency (400).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.db import connection, connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from bench.admin import make_calls
from bench.harness import Figure
from bench.servers import LOGS, processes, web_server
from calls.models import AnsweredBy, Call
from campaigns.models import PartnerApiKey

CALLS = int(os.environ.get("BENCH_API_CALLS", "100000"))
CAMPAIGNS = 20
CONCURRENCY = (10, 50)
# Requests per endpoint and concurrency: enough for a p95 of a few hundred samples.
REQUESTS = int(os.environ.get("BENCH_API_REQUESTS", "400"))
DETAIL_CALLS = 500
# The web server's log (var/bench/), printed when a request failed.
LOG_NAME = "api-server.log"
# Web workers: gunicorn.conf.py's own number (2 x cores + 1) unless set.
WORKERS = os.environ.get("BENCH_API_WORKERS", "")


def run() -> list[Figure]:
    partner, _day = make_calls(calls=CALLS, campaigns=CAMPAIGNS, name="API bench", with_turns=True)
    _api_key, key = PartnerApiKey.objects.create_key(partner=partner, name="bench")
    detail_ids = list(
        Call.objects.filter(campaign__partner=partner, answered_by=AnsweredBy.HUMAN)
        .order_by("-pk")
        .values_list("pk", flat=True)[:DETAIL_CALLS]
    )
    endpoints = {
        "campaigns": lambda _n: "/api/v1/campaigns/",
        "calls": lambda _n: "/api/v1/calls/",
        "call_detail": lambda n: f"/api/v1/calls/{detail_ids[n % len(detail_ids)]}/",
    }
    headers = {"Authorization": f"Api-Key {key}"}
    figures = []
    for name, path in endpoints.items():
        figures.append(Figure(f"api.{name}.queries", queries(path(0), headers), "queries"))
    environment = {"API_THROTTLE_RATE": "1000000/second"}
    if WORKERS:
        environment["WEB_CONCURRENCY"] = WORKERS
    log = LOGS / LOG_NAME
    log.unlink(missing_ok=True)
    with web_server(log_name=LOG_NAME, **environment) as (url, pid):
        workers = len(processes(pid)) - 1
        figures.append(Figure("api.web_workers", workers, "processes", "gunicorn's workers"))
        p95s: dict[tuple[str, int], float] = {}
        for concurrency in CONCURRENCY:
            for name, path in endpoints.items():
                workers_cpu, database_cpu = cpu_by_process(pid), postgres_cpu()
                own_cpu = time.process_time()
                with database_sessions() as peak:
                    seconds, errors, elapsed = asyncio.run(load(url, path, headers, concurrency))
                spent = [
                    cpu - workers_cpu.get(process, 0.0)
                    for process, cpu in cpu_by_process(pid).items()
                ]
                cpu = Cpu(
                    server=sum(spent),
                    busiest=max(spent),
                    load=time.process_time() - own_cpu,
                    database=postgres_cpu() - database_cpu,
                )
                p95s[name, concurrency] = percentile(seconds, 0.95)
                figures += load_figures(
                    f"api.{name}.c{concurrency}", concurrency, seconds, errors, elapsed, peak, cpu
                )
    if any(figure.value for figure in figures if figure.name.endswith(".errors")):
        print(f"--- the web server's log, last lines ({log}) ---")
        print("\n".join(log.read_text().splitlines()[-60:]))
    low, high = CONCURRENCY
    for name in endpoints:
        figures.append(
            Figure(
                f"api.{name}.p95_c{high}_over_c{low}",
                round(p95s[name, high] / p95s[name, low], 2),
                "ratio",
                f"{high // low} = requests queue, 1 = served in parallel",
            )
        )
    return figures


@dataclass(frozen=True)
class Cpu:
    """CPU seconds spent during a load: by the web server (all its processes) and by
    this process, the load generator."""

    server: float
    busiest: float  # the worker that spent the most
    load: float
    database: float  # PostgreSQL's sessions on the bench database (0 elsewhere)


def load_figures(
    prefix: str,
    concurrency: int,
    seconds: list[float],
    errors: collections.Counter[str],
    elapsed: float,
    peak: list[int],
    cpu: Cpu,
) -> list[Figure]:
    failed = sum(errors.values())
    # The CPU was measured over the clients' first requests too (one each, unmeasured).
    served = REQUESTS + concurrency
    kinds = ", ".join(f"{count} {kind}" for kind, count in errors.most_common())
    figures = [
        Figure(
            f"{prefix}.p50_ms",
            round(percentile(seconds, 0.50) * 1000, 1),
            "ms",
            f"{concurrency} concurrent, {REQUESTS} requests",
        ),
        Figure(
            f"{prefix}.p95_ms",
            round(percentile(seconds, 0.95) * 1000, 1),
            "ms",
            f"of {CALLS:,} calls",
        ),
        Figure(
            f"{prefix}.requests_per_s",
            round(REQUESTS / elapsed, 1),
            "req/s",
            "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg()),
        ),
        Figure(
            f"{prefix}.server_cpu_ms",
            round(cpu.server * 1000 / served, 1),
            "ms",
            "a request's CPU time in the web server (all workers)",
        ),
        Figure(
            f"{prefix}.busiest_worker_share",
            round(cpu.busiest / cpu.server, 2) if cpu.server else 0.0,
            "ratio",
            "of the server's CPU: 1 / workers when the clients spread evenly",
        ),
        Figure(
            f"{prefix}.database_cpu_ms",
            round(cpu.database * 1000 / served, 1),
            "ms",
            "a request's CPU time in PostgreSQL's sessions (same machine)",
        ),
        Figure(
            f"{prefix}.load_generator_cpu_ms",
            round(cpu.load * 1000 / served, 1),
            "ms",
            "a request's CPU time in the load generator, on the same cores",
        ),
    ]
    if peak:
        figures.append(
            Figure(
                f"{prefix}.db_sessions_peak",
                max(peak),
                "sessions",
                "PostgreSQL sessions on the bench database",
            )
        )
    figures.append(
        Figure(
            f"{prefix}.errors",
            failed,
            "requests",
            f"must be 0: {kinds}" if failed else "must be 0",
        )
    )
    return figures


def queries(path: str, headers: dict[str, str]) -> int:
    """Queries one request for ``path`` reads, middleware and authentication included."""
    client = Client(headers=headers)
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        client.get(path)  # the key's "last used" write happens once a minute, not here
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return len(captured.captured_queries)


async def load(
    url: str, path, headers: dict[str, str], concurrency: int
) -> tuple[list[float], collections.Counter[str], float]:
    """REQUESTS requests for ``path(n)`` from ``concurrency`` clients, each sending its
    next request as soon as the last one is answered; returns the seconds each took,
    the failures by kind (the status other than 200, or the error of no answer) and the
    seconds all of them took. The first failure of each kind is printed."""
    numbers = itertools.count()
    seconds: list[float] = []
    errors: collections.Counter[str] = collections.Counter()

    def failed(kind: str, detail: str) -> None:
        if not errors[kind]:
            print(f"api bench: {path(0)} at {concurrency}: {kind}: {detail[:300]}")
        errors[kind] += 1

    # Each loop has a client of its own: one client's pool looks at every one of its
    # connections on every request, which at 50 costs the load generator more than the
    # requests (see bench/turns.py).
    warmed_up = asyncio.Barrier(concurrency + 1)
    tls = ssl.create_default_context()  # one for all: each client's own costs 21 ms

    async def client_loop(index: int) -> None:
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=60, verify=tls
        ) as client:
            try:  # its connection opened, and the server's first requests behind it
                await client.get(path(index))
            finally:
                await warmed_up.wait()
            while (n := next(numbers)) < REQUESTS:
                started = time.perf_counter()
                try:
                    response = await client.get(path(n))
                    if response.status_code != 200:
                        failed(f"HTTP {response.status_code}", response.text)
                except httpx.HTTPError as error:
                    failed(type(error).__name__, str(error))
                seconds.append(time.perf_counter() - started)

    loops = [asyncio.create_task(client_loop(index)) for index in range(concurrency)]
    await warmed_up.wait()
    started = time.perf_counter()
    await asyncio.gather(*loops)
    elapsed = time.perf_counter() - started
    return seconds, errors, elapsed


@contextmanager
def database_sessions() -> Iterator[list[int]]:
    """Samples, every 0.2 s while the block runs, of how many other sessions the bench
    database has (PostgreSQL only: empty elsewhere)."""
    samples: list[int] = []
    if connection.vendor != "postgresql":
        yield samples
        return
    stop = threading.Event()

    def sample() -> None:
        try:
            while not stop.wait(0.2):
                with connections["default"].cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    samples.append(cursor.fetchone()[0])
        finally:
            connections.close_all()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()


def cpu_by_process(pid: int) -> dict[str, float]:
    """CPU seconds so far of the web server's workers (user and system), by process id."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if fields[1] == str(pid):  # a worker (the master is idle)
            found[stat.parent.name] = (int(fields[11]) + int(fields[12])) / tick
    return found


def postgres_cpu() -> float:
    """CPU seconds so far of the PostgreSQL sessions on the bench database, where PostgreSQL
    runs on this machine (its processes are named for their database); 0 elsewhere."""
    if connection.vendor != "postgresql":
        return 0.0
    name = f" {connection.settings_dict['NAME']} ".encode()
    total = 0.0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if name not in cmdline.read_bytes():
                continue
            fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]
