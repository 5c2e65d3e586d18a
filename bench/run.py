"""Run every benchmark: `make bench`. Prints a table and writes the figures as JSON.

Runs on the configured database and broker in a throwaway database and data folder:
`make bench` starts PostgreSQL and Redis for it (bench/services.sh) unless DATABASE_URL is
set; run directly, the embedded default unless DATABASE_URL and REDIS_URL are set.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.environ.setdefault("APP_ENV", "test")
    if "DATA_DIR" not in os.environ:
        os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="callcenter-bench-")
        atexit.register(shutil.rmtree, os.environ["DATA_DIR"], ignore_errors=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from bench import (
        admin,
        api,
        cluster,
        dispatch,
        exports,
        imports,
        relay,
        script_limits,
        speech_cost,
        speech_faults,
        suppression,
        turns,
    )
    from tests.processes import end_other_sessions

    databases = setup_databases(verbosity=0, interactive=False)
    try:
        # BENCH_ONLY=turns,dispatch runs some of them.
        only = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
        suites = {
            "speech_cost": speech_cost,
            "dispatch": dispatch,
            "turns": turns,
            "cluster": cluster,
            "relay": relay,
            "speech_faults": speech_faults,
            "imports": imports,
            "admin": admin,
            "api": api,
            "exports": exports,
            "script_limits": script_limits,
            "suppression": suppression,
        }
        figures = [
            figure
            for name, suite in suites.items()
            if not only or name in only
            for figure in suite.run()
        ]
    finally:
        end_other_sessions()  # the async benchmarks' threads hold connections
        teardown_databases(databases, verbosity=0)

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"\ndatabase {connection.vendor}, {os.cpu_count()} CPUs, load average {load} "
        "(at the end; the figures are of a busy machine when it is high)\n"
    )
    print(f"{'figure':<48} {'value':>14}  unit       note")
    for figure in figures:
        print(f"{figure.name:<48} {figure.value:>14,}  {figure.unit:<10} {figure.note}")
    output = ROOT / "var" / "bench" / "results.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(),
                },
                "database": connection.vendor,
                "figures": [figure.__dict__ for figure in figures],
            },
            indent=2,
        )
    )
    print(f"\nwritten to {output.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
