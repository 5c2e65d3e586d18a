"""The turn load on a cluster: two web services behind a load balancer, on one database.

Two gunicorn servers (deploy/gunicorn.conf.py, each on a port of its own with
BENCH_CLUSTER_WORKERS uvicorn workers, 2 by default) behind nginx running
deploy/nginx/callcenter.conf with an upstream of the two (its TLS lines aside), sharing
PostgreSQL, Redis and the media storage. Twilio's side (``ProxiedTwilio``) signs every
webhook for the public URL, the proxy's, as Twilio signs the URL it was given; fetches
every clip a turn's answer plays, as Twilio does for <Play>, and checks it is audio; and
delivers each call's repeated status callback to the backend that did not serve the first
delivery (as a balancer may send Twilio's retry), so that the duplicate is one the other
process must recognise. The same turn load (bench/callers.py, BENCH_CLUSTER_CONCURRENCY
calls, 50 by default) runs first on one server with as many workers in all, for the
overhead the proxy and the split add. Afterwards the database must hold each call's turns
and status events once.

Reported: turns per backend (the proxy names the one that answered in a response header
added for the bench only), p50/p95 overhead against one server, signature failures (each
backend's own count, from /metrics), clips fetched and failed, turns and status events
recorded twice or missing, errors.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.db.models import Count

from bench import turns
from bench.callers import Carrier, Load
from bench.harness import Figure
from tests.processes import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
NGINX_SITE = ROOT / "deploy" / "nginx" / "callcenter.conf"
CONCURRENCY = int(os.environ.get("BENCH_CLUSTER_CONCURRENCY", "50"))
WORKERS = int(os.environ.get("BENCH_CLUSTER_WORKERS", "2"))
BACKENDS = 2
# Where the clips are (s3: moto's server; filesystem: DATA_DIR) and how Twilio gets them.
MEDIA = os.environ.get("BENCH_CLUSTER_MEDIA", "s3")
CLIP_URLS = os.environ.get("BENCH_CLIP_URLS", "app")
# The bench's own response header: which backend answered ($upstream_addr, its address).
UPSTREAM_HEADER = "X-Upstream"
METRICS_TOKEN = "bench-metrics-token-of-a-loopback-cluster"  # noqa: S105 - the bench's own
PLAY = re.compile(rb"<Play[^>]*>([^<]+)</Play>")


def nginx_binary() -> str | None:
    """nginx's path, or None when it is not installed (Debian: apt-get install nginx)."""
    from shutil import which

    found = which("nginx")
    return found or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx_site(*, port: int, backends: list[int], upstream_header: bool = True) -> str:
    """deploy/nginx/callcenter.conf with an upstream of ``backends`` (ports on loopback),
    its HTTPS server on ``port`` in plain HTTP, and (``upstream_header``) each answer
    telling which backend gave it."""
    site = NGINX_SITE.read_text()
    servers = "".join(f"server 127.0.0.1:{backend};\n    " for backend in backends).rstrip()
    site = site.replace("server 127.0.0.1:8000;", servers)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    site = re.sub(r"^\s*ssl_certificate(_key)? .*;\n", "", site, flags=re.M)
    if upstream_header:
        site = site.replace(
            "proxy_pass http://callcenter_web;\n",
            f"proxy_pass http://callcenter_web;\n        add_header {UPSTREAM_HEADER} "
            "$upstream_addr always;\n",
        )
    return site


@contextmanager
def nginx(folder: Path, *, port: int, backends: list[int]) -> Iterator[None]:
    """nginx in front of ``backends``, listening on ``port``; its files in ``folder``."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.conf").write_text(nginx_site(port=port, backends=backends))
    temp = "".join(
        f"  {name}_temp_path {folder / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n  access_log off;\n{temp}  include {folder}/site.conf;\n}}\n"
    )
    command = [binary, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)  # noqa: S603
    if checked.returncode:
        raise RuntimeError(f"nginx refused its configuration: {checked.stderr}")
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        yield
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Cluster:
    url: str  # the public URL: the proxy's (APP_URL of every backend)
    backends: dict[str, str]  # each backend's address as the proxy names it -> its URL
    pids: list[int]  # the gunicorn masters
    environment: dict[str, str] = field(default_factory=dict)  # added to every backend's


@contextmanager
def cluster(
    *, backends: int = BACKENDS, workers: int = WORKERS, **environment: str
) -> Iterator[Cluster]:
    """``backends`` web services of ``workers`` workers each behind nginx, every one with
    the proxy's URL as APP_URL and ``environment`` (media storage, say) added."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                turns.web_server(
                    log_name=f"cluster-web{index}.log",
                    app_url=public,
                    WEB_CONCURRENCY=str(workers),
                    METRICS_TOKEN=METRICS_TOKEN,
                    **environment,
                )
            )
            for index in range(backends)
        ]
        ports = [int(urlsplit(url).port or 0) for url, _ in servers]
        stack.enter_context(nginx(ROOT / "var" / "bench" / "nginx", port=port, backends=ports))
        yield Cluster(
            url=public,
            backends={f"127.0.0.1:{p}": url for p, (url, _) in zip(ports, servers, strict=True)},
            pids=[pid for _, pid in servers],
            environment=environment,
        )


@dataclass
class Seen:
    """What Twilio's side saw beyond answer times."""

    served: Counter[str] = field(default_factory=Counter)  # "turn 127.0.0.1:8001" -> count
    clips_ok: int = 0
    clips_failed: int = 0
    clips_from: Counter[str] = field(default_factory=Counter)  # "app" or "bucket"
    refused: int = 0  # answers 403: a signature refused
    redelivered_elsewhere: int = 0
    problems: Counter[str] = field(default_factory=Counter)


class ProxiedTwilio(Carrier):
    """Twilio in front of a cluster: webhooks signed for and posted to the public URL,
    <Play> clips fetched, a redelivered callback sent to the other backend."""

    def __init__(self, target: Cluster) -> None:
        super().__init__(target.url)
        self.target = target
        self.seen = Seen()

    async def post(
        self, client: httpx.AsyncClient, path: str, form: dict[str, str]
    ) -> httpx.Response:
        response = await super().post(client, path, form)
        self._count(path, response, response.headers.get(UPSTREAM_HEADER, "direct"))
        return response

    async def redeliver(
        self,
        client: httpx.AsyncClient,
        path: str,
        form: dict[str, str],
        first: httpx.Response | None,
    ) -> httpx.Response:
        served = first.headers.get(UPSTREAM_HEADER) if first is not None else None
        others = [address for address in self.target.backends if address != served]
        if served is None or not others:
            return await self.post(client, path, form)
        self.seen.redelivered_elsewhere += 1
        return await self.post_to(others[0], client, path, form)

    async def post_to(
        self, backend: str, client: httpx.AsyncClient, path: str, form: dict[str, str]
    ) -> httpx.Response:
        """A webhook posted to one ``backend`` as the balancer would pass it on, with the
        headers the proxy sets (deploy/nginx/callcenter.conf): signed over the public URL."""
        public = urlsplit(self.url)
        headers = {
            **self.headers(path, form),
            "Host": public.netloc,
            "X-Forwarded-Proto": public.scheme,
            "X-Forwarded-For": "127.0.0.1",
        }
        response = await client.post(
            self.target.backends[backend] + path, data=form, headers=headers
        )
        self._count(path, response, backend)
        return response

    async def answered(self, client: httpx.AsyncClient, response: httpx.Response) -> None:
        # Twilio fetches each <Play> URL (https://www.twilio.com/docs/voice/twiml/play):
        # through the proxy when it is ours (CLIP_URLS=app), from the bucket when signed.
        for match in PLAY.finditer(response.content):
            url = unescape(match.group(1).decode()).strip()
            source = "app" if url.startswith(self.url) else "bucket"
            self.seen.clips_from[source] += 1
            try:
                clip = await client.get(url)
            except httpx.HTTPError as error:
                self.seen.clips_failed += 1
                self.seen.problems[f"clip: {type(error).__name__}"] += 1
                continue
            kind = clip.headers.get("Content-Type", "")
            if clip.status_code == 200 and clip.content and kind.startswith("audio/"):
                self.seen.clips_ok += 1
            else:
                self.seen.clips_failed += 1
                self.seen.problems[f"clip: HTTP {clip.status_code} {kind}"] += 1

    def _count(self, path: str, response: httpx.Response, backend: str) -> None:
        kind = path.split("?")[0].rsplit("/", 1)[-1]  # turn, continue, status
        self.seen.served[f"{kind} {backend}"] += 1
        if response.status_code == 403:
            self.seen.refused += 1


def signature_failures(target: Cluster) -> int:
    """Webhooks refused for their signature, as every backend counted them (/metrics)."""
    total = 0.0
    for url in target.backends.values():
        text = httpx.get(
            f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
        ).text
        for line in text.splitlines():
            if line.startswith("callcenter_webhook_signature_failures_total{"):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


@dataclass(frozen=True)
class Recorded:
    """What the database holds of the calls against what Twilio's side sent."""

    turns_twice: int  # a caller's line kept more than once for its call
    turns_missing: int  # lines sent that no turn holds
    replies_missing: int  # caller turns with no reply after them
    replies_extra: int  # replies beyond one per caller turn: a turn answered twice
    events_twice: int  # a (SID, sequence) status event kept more than once
    events_missing: int


def recorded(call_ids: list[int], load: Load, callbacks_each: int) -> Recorded:
    """Each call's turns and status events as the database holds them, against ``load``."""
    from calls.models import CallEvent, Turn

    caller = Turn.objects.filter(call_id__in=call_ids, role="caller")
    kept = Counter(
        {
            (row["call_id"], row["text"]): row["n"]
            for row in caller.values("call_id", "text").annotate(n=Count("id"))
        }
    )
    twice = sum(count - 1 for count in kept.values())
    sent = {
        (call_id, f"Respuesta {n}")
        for call_id, count in load.turns_sent.items()
        for n in range(count)
    }
    missing = len(sent - set(kept))
    replies = Turn.objects.filter(call_id__in=call_ids, role="agent", sequence__gt=0).count()
    events = (
        CallEvent.objects.filter(call_id__in=call_ids, kind=CallEvent.Kind.STATUS)
        .values("provider_sid", "sequence_number")
        .annotate(n=Count("id"))
    )
    events_twice = sum(row["n"] - 1 for row in events)
    expected = len(call_ids) * callbacks_each
    return Recorded(
        turns_twice=twice,
        turns_missing=missing,
        replies_missing=max(0, sum(kept.values()) - replies),
        replies_extra=max(0, replies - sum(kept.values())),
        events_twice=events_twice,
        events_missing=max(0, expected - len(events)),
    )


@contextmanager
def media(storage: str = MEDIA, clip_urls: str = CLIP_URLS) -> Iterator[dict[str, str]]:
    """The media storage both backends share, as the environment that chooses it:
    ``s3``, a bucket on moto's S3 server (tests/s3.py) in a process of its own (its work
    must not compete with the load generator's), with clips played by ``clip_urls``
    (``app``: through our clip view; ``signed``: from the bucket); ``filesystem``, the
    local folder (DATA_DIR, which every process of the bench inherits) of one host."""
    if storage == "filesystem":
        yield {}
        return
    context = multiprocessing.get_context("fork")
    found, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve_s3, args=(found, stop), daemon=True)
    process.start()
    try:
        yield {**found.get(timeout=60), "CLIP_URLS": clip_urls}
    finally:
        stop.set()
        process.join(timeout=10)


def _serve_s3(found: Any, stop: Any) -> None:
    from tests.s3 import s3_server

    # Not a line per request on the bench's output (moto's server is werkzeug's).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with s3_server() as s3:
        found.put(s3.env())
        stop.wait()


def run() -> list[Figure]:
    campaign = turns._ai_call().campaign
    with media() as storage, turns.fakes(chunk_delay=0.0, separate=True):
        alone = one_server(campaign, storage)
        return measure_cluster(campaign, storage, baseline=alone)


def bucket_keys(environment: dict[str, str]) -> list[str]:
    """The keys in the bucket of a cluster's media storage (``media()``'s environment)."""
    from tests.s3 import S3Server

    bucket = S3Server(endpoint_url=environment["S3_ENDPOINT_URL"], bucket=environment["S3_BUCKET"])
    return bucket.keys()


def one_server(campaign, storage: dict[str, str]) -> Load:
    """The same load on one server with as many workers as the cluster has in all."""
    calls = turns._live_calls(campaign, CONCURRENCY)
    warm_up = turns._live_calls(campaign, turns.WARM_UP_CALLS)
    with turns.web_server(
        log_name="cluster-alone.log", WEB_CONCURRENCY=str(WORKERS * BACKENDS), **storage
    ) as (url, _):
        alone = Cluster(url=url, backends={}, pids=[])
        asyncio.run(turns._load(ProxiedTwilio(alone), warm_up, steady_seconds=0))
        turns._no_collector_pauses()
        return asyncio.run(turns._load(ProxiedTwilio(alone), calls))


def measure_cluster(campaign, storage: dict[str, str], *, baseline: Load) -> list[Figure]:
    calls = turns._live_calls(campaign, CONCURRENCY)
    warm_up = turns._live_calls(campaign, turns.WARM_UP_CALLS)
    with cluster(**storage) as target:
        asyncio.run(turns._load(ProxiedTwilio(target), warm_up, steady_seconds=0))
        cpu_before = sum(turns._cpu_seconds(pid) for pid in target.pids)
        twilio = ProxiedTwilio(target)
        load = asyncio.run(turns._load(twilio, calls))
        cpu = sum(turns._cpu_seconds(pid) for pid in target.pids) - cpu_before
        refused = signature_failures(target)
    kept = recorded(calls, load, callbacks_each=3)
    return figures(load, twilio.seen, kept, baseline=baseline, refused=refused, cpu=cpu)


def figures(
    load: Load, seen: Seen, kept: Recorded, *, baseline: Load, refused: int, cpu: float
) -> list[Figure]:
    n = CONCURRENCY
    where = (
        f"{BACKENDS} backends x {WORKERS} workers behind nginx, media {MEDIA}"
        f"{f' (CLIP_URLS={CLIP_URLS})' if MEDIA == 's3' else ''}, load {_load_average()}"
    )
    overhead, alone = turns.overhead_ms(load.turns), turns.overhead_ms(baseline.turns)
    backends = sorted({key.split(" ", 1)[1] for key in seen.served if key.startswith("turn ")})
    split = [seen.served[f"turn {backend}"] for backend in backends]
    p50, p95 = turns.percentile(overhead, 0.50), turns.percentile(overhead, 0.95)
    alone50, alone95 = turns.percentile(alone, 0.50), turns.percentile(alone, 0.95)
    every_turn = len(load.turns) + len(load.ramp_turns)
    return [
        Figure(
            f"cluster: turns per backend @{n} calls",
            round(min(split, default=0) / max(1, max(split, default=0)), 2),
            "ratio",
            f"{' / '.join(map(str, split))} turns over {len(split)} backends; {where}",
        ),
        Figure(f"cluster: turn overhead @{n} calls: p50", p50, "ms", f"one server: {alone50} ms"),
        Figure(f"cluster: turn overhead @{n} calls: p95", p95, "ms", f"one server: {alone95} ms"),
        Figure(
            f"cluster: p95 overhead over one server's @{n} calls",
            round(p95 / alone95, 2) if alone95 else 0.0,
            "ratio",
            f"one server: {WORKERS * BACKENDS} workers, no proxy",
        ),
        Figure("cluster: signature failures", refused + seen.refused, "count", "must be 0"),
        Figure(
            "cluster: clips fetched",
            seen.clips_ok,
            "count",
            ", ".join(f"{count} via {source}" for source, count in seen.clips_from.items()),
        ),
        Figure(
            "cluster: clips failed",
            seen.clips_failed,
            "count",
            _told(seen.problems) or "must be 0",
        ),
        Figure(
            "cluster: status callbacks recorded twice",
            kept.events_twice,
            "count",
            f"{seen.redelivered_elsewhere} redelivered to the other backend; "
            f"{kept.events_missing} missing; must be 0",
        ),
        Figure(
            "cluster: turns recorded twice",
            kept.turns_twice,
            "count",
            f"{kept.turns_missing} missing, {kept.replies_missing} unanswered, "
            f"{kept.replies_extra} answered twice; must be 0",
        ),
        Figure(
            "cluster: errors",
            load.turn_errors + load.status_errors,
            "count",
            _told(load.problems) or "must be 0",
        ),
        Figure(
            f"cluster: server CPU per turn @{n} calls",
            round(cpu * 1000 / max(1, every_turn), 1),
            "ms",
            "both backends' user+system time over the load, status callbacks included",
        ),
    ]


def _told(problems: Counter[str]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in problems.most_common())


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())
