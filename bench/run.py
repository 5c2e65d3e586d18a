"""Run every benchmark: `make bench`. Prints a table and writes the figures as JSON.

Runs on the configured database and broker (the embedded default, or DATABASE_URL and
REDIS_URL as CI sets them), in a throwaway database and data folder.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.environ.setdefault("APP_ENV", "test")
    os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="callcenter-bench-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from bench import admin, dispatch, imports, speech_cost, turns
    from tests.processes import end_other_sessions

    databases = setup_databases(verbosity=0, interactive=False)
    try:
        # BENCH_ONLY=turns,dispatch runs some of them.
        only = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
        suites = {
            "speech_cost": speech_cost,
            "dispatch": dispatch,
            "turns": turns,
            "imports": imports,
            "admin": admin,
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

    print(f"{'figure':<48} {'value':>14}  unit       note")
    for figure in figures:
        print(f"{figure.name:<48} {figure.value:>14,}  {figure.unit:<10} {figure.note}")
    output = ROOT / "var" / "bench" / "results.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
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
