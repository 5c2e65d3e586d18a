"""`make run` started again and again, each time running the demo campaign to its end.

    python3 bench/starts.py --checkout DIR [--starts 20] [--port 18100]

Each start is what a person does: `make run` in the checkout DIR, a clone of its own (on the
embedded default: no DATABASE_URL, no REDIS_URL), wait until the demo campaign's eight
contacts all have a final state and the campaign is completed, then Ctrl-C (SIGINT to make's
process group, as a terminal sends it) and wait for everything to stop. The first start has
an emptied `var/`; later ones keep its broker, cache and results folders, as a person's next
`make run` does, and only its SQLite database is removed, so that the demo campaign is
created and runs again. Each start has a port of its own. Prints one line per start and a
summary; the logs are kept in var/starts/. Exits 1 if any start failed: a process that
stopped on its own, a demo that did not end within --timeout seconds, or a traceback in the
log. Needs only the standard library (it runs before the virtualenv exists).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEMO_CAMPAIGN = "Demo: recordatorio de citas"  # calls/management/commands/seed_demo.py
FINAL_STATES = {"done", "failed", "exhausted", "opted_out"}  # campaigns.models.ContactState
FAILURE_MARKS = ("Traceback (most recent call last)", "Unrecoverable error", "JSONDecodeError")


def demo_state(database: Path) -> tuple[str | None, list[str]]:
    """The demo campaign's state and its contacts' states (nothing before they exist)."""
    if not database.exists():
        return None, []
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            campaign = db.execute(
                "SELECT id, state FROM campaigns_campaign WHERE name = ?", (DEMO_CAMPAIGN,)
            ).fetchone()
            if campaign is None:
                return None, []
            contacts = db.execute(
                "SELECT state FROM campaigns_contact WHERE campaign_id = ?", (campaign[0],)
            ).fetchall()
    except sqlite3.Error:  # not migrated yet, or busy: asked again
        return None, []
    return campaign[1], [state for (state,) in contacts]


def start_once(checkout: Path, port: int, log: Path, timeout: float) -> dict:
    """One `make run` until the demo ends, then Ctrl-C; what happened."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "DATA_DIR", "MAKEFLAGS", "MAKELEVEL")
    }
    env["PORT"] = str(port)
    database = checkout / "var" / "callcenter.sqlite3"
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own make target
            [shutil.which("make") or "make", "run"],
            cwd=checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job
        )
    outcome = "timeout"
    campaign, contacts = None, []
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            outcome = f"stopped on its own (exit {process.returncode})"
            break
        campaign, contacts = demo_state(database)
        if len(contacts) == 8 and set(contacts) <= FINAL_STATES and campaign == "completed":
            outcome = "ok"
            break
        time.sleep(2)
    demo_seconds = time.monotonic() - started
    stop_seconds = None
    if process.poll() is None:
        stopping = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            outcome += ", did not stop within 60 s of Ctrl-C"
        stop_seconds = time.monotonic() - stopping
    text = log.read_text(errors="replace")
    marks = [mark for mark in FAILURE_MARKS if mark in text]
    if outcome == "ok" and marks:
        outcome = "ok but the log has " + ", ".join(repr(mark) for mark in marks)
    return {
        "outcome": outcome,
        "demo_seconds": round(demo_seconds, 1),
        "stop_seconds": None if stop_seconds is None else round(stop_seconds, 1),
        "campaign": campaign,
        "contacts": sorted(contacts),
        "exit": process.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument(
        "--checkout", type=Path, required=True, help="a clone of its own: its var/ is emptied"
    )
    parser.add_argument("--port", type=int, default=18100, help="first port; one more a start")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a start may take")
    arguments = parser.parse_args()
    checkout = arguments.checkout.resolve()
    shutil.rmtree(checkout / "var", ignore_errors=True)  # the first start: a fresh var/
    logs = checkout / "var" / "starts"
    logs.mkdir(parents=True)
    results = []
    for number in range(1, arguments.starts + 1):
        if number > 1:  # keep broker, cache and results; the demo runs again
            for path in (checkout / "var").glob("callcenter.sqlite3*"):
                path.unlink()
        result = start_once(
            checkout, arguments.port + number, logs / f"start-{number:02}.log", arguments.timeout
        )
        results.append(result)
        print(f"start {number:2}: {result}", flush=True)
    good = [result for result in results if result["outcome"] == "ok"]
    times = [result["demo_seconds"] for result in good]
    print(
        f"{len(good)} of {len(results)} starts ran the demo to its end and stopped on Ctrl-C; "
        + (
            f"start to demo's end: median {statistics.median(times):.0f} s, "
            f"min {min(times):.0f} s, max {max(times):.0f} s"
            if times
            else "none did"
        ),
        flush=True,
    )
    return 0 if len(good) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
