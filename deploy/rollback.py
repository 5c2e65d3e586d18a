#!/usr/bin/env python3
"""Roll the Docker Compose deployment back to an earlier release tag.

    python3 deploy/rollback.py --version v1.0.0 --dry-run
    python3 deploy/rollback.py --version v1.0.0 --compose-files docker-compose.yml \\
        docker-compose.prod.yml --migrations migrate-back

Checks that the tag exists, that the working tree is clean and that the tag has the
Compose files; then compares the migrations the *database* has applied with the migration
files of the tag. When the database has migrations the tag lacks it refuses and names
them, unless `--migrations migrate-back` (unapply them first, with the current code) or
`--migrations ignore` (roll the code back anyway). Then: git checkout <tag>, docker compose
build, docker compose up -d. Every step is printed before it runs; `--dry-run` prints
them and changes nothing (it still reads the applied migrations).

Applied migrations come from `--applied-from`: `compose` (default: a one-off container of
the migrate service reads django_migrations), `database` (psycopg with DATABASE_URL), or
`file:PATH` (one `app.name` per line, or the output of `manage.py showmigrations --plan`).
The Compose files are `--compose-files`, else those of COMPOSE_FILE, else docker-compose.yml.

Exit status: 0 done (or dry run), 1 a step failed, 2 bad request (unknown tag, dirty tree,
missing Compose file, unreadable applied migrations), 3 refused over migrations.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MIGRATION_FILE = re.compile(r"(?:^|/)(?P<app>[A-Za-z_]\w*)/migrations/(?P<name>\d{4}\w*)\.py$")
APPLIED_LINE = re.compile(r"^(?:\[X\]\s+)?(?P<app>[A-Za-z_]\w*)\.(?P<name>\w+)$")
# Read by a one-off container with the current code: django_migrations as it is, whatever
# migration files that code has.
READ_APPLIED = (
    "from django.db import connection; "
    "from django.db.migrations.recorder import MigrationRecorder; "
    "[print('applied-migration', app, name) "
    "for app, name in sorted(MigrationRecorder(connection).applied_migrations())]"
)

EXIT_FAILED, EXIT_BAD_REQUEST, EXIT_REFUSED = 1, 2, 3


class RollbackError(Exception):
    """A request that cannot be carried out as asked; nothing was changed."""


class StepFailed(Exception):
    """A command of the plan exited non-zero."""


class Runner(Protocol):
    """Runs the commands of the plan; tests record them instead of running docker."""

    def run(self, command: Sequence[str], *, cwd: Path) -> None: ...

    def output(self, command: Sequence[str], *, cwd: Path) -> str: ...


class SubprocessRunner:
    """Runs commands for real, output streamed (run) or captured (output)."""

    def run(self, command: Sequence[str], *, cwd: Path) -> None:
        result = subprocess.run(list(command), cwd=cwd, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StepFailed(f"exit status {result.returncode}: {shlex.join(command)}")

    def output(self, command: Sequence[str], *, cwd: Path) -> str:
        result = subprocess.run(  # noqa: S603
            list(command), cwd=cwd, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1:] or [""]
            raise StepFailed(f"exit status {result.returncode}: {shlex.join(command)}: {detail[0]}")
        return result.stdout


@dataclass(frozen=True)
class Step:
    command: tuple[str, ...]
    why: str


# --- Git ---------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), *args],  # noqa: S607 - git from PATH, as an operator runs it
        capture_output=True,
        text=True,
        check=False,
    )


def resolve_tag(repo: Path, version: str) -> str:
    """The commit of tag `version`; RollbackError when there is no such tag."""
    if git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise RollbackError(f"{repo} is not a git repository")
    result = git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{version}^{{commit}}")
    if result.returncode != 0:
        tags = git(repo, "tag", "--list", "--sort=-v:refname").stdout.split()
        known = ", ".join(tags[:10]) or "none"
        raise RollbackError(f"no tag {version!r} in {repo} (tags: {known})")
    return result.stdout.strip()


def migrations_in_tree(repo: Path, revision: str) -> dict[str, set[str]]:
    """Migration names per app among the files of `revision` (`git ls-tree`)."""
    result = git(repo, "ls-tree", "-r", "--name-only", revision)
    if result.returncode != 0:
        raise RollbackError(f"cannot list the files of {revision}: {result.stderr.strip()}")
    apps: dict[str, set[str]] = {}
    for path in result.stdout.splitlines():
        if match := MIGRATION_FILE.search(path):
            apps.setdefault(match["app"], set()).add(match["name"])
    return apps


def check_clean(repo: Path) -> None:
    changed = git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if changed:
        raise RollbackError(
            "the working tree has uncommitted changes that a checkout could lose:\n"
            f"{changed}\ncommit or stash them first"
        )


def check_compose_files(repo: Path, version: str, commit: str, files: Sequence[str]) -> None:
    """Each Compose file inside the repository must exist at the tag: the build and the
    restart run with the tag's files."""
    for name in files:
        path = (repo / name).resolve()
        if not path.is_relative_to(repo.resolve()):
            continue
        relative = path.relative_to(repo.resolve()).as_posix()
        if git(repo, "cat-file", "-e", f"{commit}:{relative}").returncode != 0:
            raise RollbackError(f"{relative} does not exist at {version}: cannot deploy it")


# --- Applied migrations ------------------------------------------------------------------
def parse_applied(text: str) -> set[str]:
    """`app.name` lines (or `showmigrations --plan` output: only `[X]` lines count)."""
    applied: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("applied-migration "):
            _, app, name = line.split(maxsplit=2)
            applied.add(f"{app}.{name}")
        elif match := APPLIED_LINE.match(line):
            applied.add(f"{match['app']}.{match['name']}")
    return applied


def applied_from_compose(
    runner: Runner, repo: Path, compose: Sequence[str]
) -> Callable[[], set[str]]:
    def read() -> set[str]:
        # --no-deps: reading must not start anything; the database has to be up already.
        command = [*compose, "run", "--rm", "--no-deps", "-T", "migrate", "python", "manage.py"]
        output = runner.output([*command, "shell", "-c", READ_APPLIED], cwd=repo)
        # Only the marked lines: the container may log to the same stdout.
        marked = [line for line in output.splitlines() if line.startswith("applied-migration ")]
        return parse_applied("\n".join(marked))

    return read


def applied_from_database() -> set[str]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise RollbackError("--applied-from database needs DATABASE_URL (a PostgreSQL URL)")
    import psycopg  # only this source needs it

    try:
        with psycopg.connect(url, connect_timeout=10) as connection:
            rows = connection.execute("SELECT app, name FROM django_migrations").fetchall()
    except psycopg.Error as exc:
        raise RollbackError(f"cannot read django_migrations: {exc}") from exc
    return {f"{app}.{name}" for app, name in rows}


def applied_from_file(path: Path) -> set[str]:
    try:
        return parse_applied(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RollbackError(f"cannot read applied migrations from {path}: {exc}") from exc


# --- Planning ----------------------------------------------------------------------------
def last_migration(names: set[str]) -> str:
    """The migration to go back to: the highest-numbered one, or `zero` for none."""
    return max(names, key=lambda name: (int(name[:4]), name)) if names else "zero"


def extra_migrations(
    applied: set[str], at_tag: dict[str, set[str]], apps: set[str]
) -> dict[str, list[str]]:
    """Applied migrations of the project's own apps that the tag lacks, per app.

    Apps without migration files in the repository (Django's own, third-party ones)
    are left out: their migrations come with the installed packages."""
    extra: dict[str, list[str]] = {}
    for entry in sorted(applied):
        app, _, name = entry.partition(".")
        if app in apps and name not in at_tag.get(app, set()):
            extra.setdefault(app, []).append(name)
    return extra


def plan_rollback(
    *,
    version: str,
    compose: Sequence[str],
    at_tag: dict[str, set[str]],
    extra: dict[str, list[str]],
    migrate_back: bool,
) -> list[Step]:
    steps: list[Step] = []
    if migrate_back:
        for app in sorted(extra):
            target = last_migration(at_tag.get(app, set()))
            steps.append(
                Step(
                    (
                        *compose,
                        "run",
                        "--rm",
                        "migrate",
                        "python",
                        "manage.py",
                        "migrate",
                        app,
                        target,
                    ),
                    f"unapply {', '.join(extra[app])} with the current code",
                )
            )
    steps.append(Step(("git", "checkout", version), f"the code of {version}"))
    steps.append(Step((*compose, "build"), f"images of {version}"))
    steps.append(Step((*compose, "up", "-d"), "recreate the containers"))
    return steps


def compose_command(files: Sequence[str]) -> tuple[str, ...]:
    return ("docker", "compose", *(arg for name in files for arg in ("-f", name)))


def default_compose_files() -> list[str]:
    """The files `docker compose` itself would use: COMPOSE_FILE's, else the base file.
    `-f` overrides COMPOSE_FILE, so passing the base file alone would drop an override."""
    separator = os.environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    files = [name for name in os.environ.get("COMPOSE_FILE", "").split(separator) if name]
    return files or ["docker-compose.yml"]


# --- Command line ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Roll the Compose deployment back to a release tag.",
        epilog="Exit status: 0 done, 1 a step failed, 2 bad request, 3 refused over migrations.",
    )
    parser.add_argument("--version", required=True, help="release tag to go back to, e.g. v1.0.0")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    parser.add_argument(
        "--migrations",
        choices=("refuse", "ignore", "migrate-back"),
        default="refuse",
        help="when the database has migrations the tag lacks: refuse (default), ignore "
        "them, or migrate-back (unapply them with the current code before the checkout)",
    )
    parser.add_argument(
        "--repo", type=Path, default=Path.cwd(), help="the deployed checkout (default: .)"
    )
    parser.add_argument(
        "--compose-files",
        nargs="+",
        metavar="FILE",
        help="Compose files, as given to `docker compose -f` (default: those of COMPOSE_FILE "
        "when it is set, else docker-compose.yml)",
    )
    parser.add_argument(
        "--applied-from",
        default="compose",
        metavar="SOURCE",
        help="where applied migrations are read: compose (default), database "
        "(DATABASE_URL), or file:PATH",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    runner: Runner | None = None,
    applied: Callable[[], set[str]] | None = None,
) -> int:
    """Plan and run a rollback. Tests pass `runner` to record commands and `applied` to
    stand in for the database."""
    args = build_parser().parse_args(argv)
    runner = runner or SubprocessRunner()
    repo: Path = args.repo.resolve()
    compose_files = args.compose_files or default_compose_files()
    compose = compose_command(compose_files)
    try:
        commit = resolve_tag(repo, args.version)
        check_clean(repo)
        check_compose_files(repo, args.version, commit, compose_files)
        if applied is None:
            applied = _applied_source(args.applied_from, runner, repo, compose)
        previous = git(repo, "rev-parse", "HEAD").stdout.strip()
        current = git(repo, "describe", "--tags", "--always", "HEAD").stdout.strip()
        print(f"Rollback of {repo} from {current} to {args.version} ({commit[:12]})")
        at_tag = migrations_in_tree(repo, commit)
        apps = set(at_tag) | set(migrations_in_tree(repo, "HEAD"))
        applied_now = applied()
    except RollbackError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_BAD_REQUEST
    except StepFailed as exc:
        print(f"ERROR: cannot read the applied migrations: {exc}", file=sys.stderr)
        return EXIT_FAILED

    extra = extra_migrations(applied_now, at_tag, apps)
    names = ", ".join(f"{app}.{name}" for app, items in sorted(extra.items()) for name in items)
    if extra and args.migrations == "refuse":
        print(
            f"REFUSED: the database has migrations that {args.version} lacks: {names}.\n"
            f"The code of {args.version} would run against a schema it does not know. Re-run "
            "with --migrations migrate-back to unapply them with the current code first "
            "(data in dropped columns and tables is lost), or --migrations ignore if they "
            f"are backwards compatible with {args.version}.",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if extra and args.migrations == "ignore":
        print(f"Ignoring migrations that {args.version} lacks (--migrations ignore): {names}")
    elif not extra:
        print(f"The database has no migrations that {args.version} lacks.")
    missing = sorted(
        f"{app}.{name}"
        for app, items in at_tag.items()
        for name in items
        if f"{app}.{name}" not in applied_now
    )
    if missing:
        print(f"Note: {args.version} has migrations the database lacks: {', '.join(missing)}")

    steps = plan_rollback(
        version=args.version,
        compose=compose,
        at_tag=at_tag,
        extra=extra,
        migrate_back=args.migrations == "migrate-back",
    )
    print("Steps:")
    for number, step in enumerate(steps, start=1):
        print(f"  {number}. {shlex.join(step.command)}    # {step.why}")
    if args.dry_run:
        print("Dry run: nothing was changed.")
        return 0
    checked_out = False
    for number, step in enumerate(steps, start=1):
        print(f"==> {number}/{len(steps)} {shlex.join(step.command)}", flush=True)
        try:
            runner.run(step.command, cwd=repo)
        except (StepFailed, OSError) as exc:
            print(f"ERROR: step {number} failed ({exc}); later steps not run.", file=sys.stderr)
            if checked_out:
                print(
                    f"The checkout is at {args.version} already: fix the cause and run the "
                    f"same command again, or `git checkout {previous[:12]}` to go back.",
                    file=sys.stderr,
                )
            return EXIT_FAILED
        checked_out = checked_out or step.command[:2] == ("git", "checkout")
    print(f"Rolled back to {args.version}.")
    return 0


def _applied_source(
    source: str, runner: Runner, repo: Path, compose: Sequence[str]
) -> Callable[[], set[str]]:
    if source == "compose":
        return applied_from_compose(runner, repo, compose)
    if source == "database":
        return applied_from_database
    if source.startswith("file:"):
        path = Path(source.removeprefix("file:"))
        return lambda: applied_from_file(path)
    raise RollbackError(f"--applied-from must be compose, database or file:PATH, not {source!r}")


if __name__ == "__main__":
    sys.exit(main())
