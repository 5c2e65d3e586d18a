"""deploy/rollback.py against a throwaway git repository with release tags; docker is
never run: a recording runner stands in for it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.deploy.scripts import load_script

rollback = load_script("rollback", "rollback.py")

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
COMPOSE = ["docker", "compose", "-f", "docker-compose.yml"]
AT_V1_0 = {"campaigns.0001_initial", "calls.0001_initial"}
AT_V1_1 = AT_V1_0 | {"campaigns.0002_contact_notes", "calls.0002_call_cost", "voices.0001_initial"}
DJANGO_OWN = {"auth.0001_initial", "contenttypes.0001_initial", "admin.0003_logentry"}


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=GIT_ENV
    )
    return result.stdout.strip()


def _commit(repo: Path, files: Sequence[str], message: str, tag: str) -> None:
    for name in files:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n", encoding="utf-8")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", message)
    _git(repo, "tag", tag)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """v1.0.0: campaigns and calls at 0001. v1.1.0: both at 0002, and a voices app."""
    repo = tmp_path / "callcenter"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    _commit(
        repo,
        [
            "docker-compose.yml",
            "manage.py",
            "campaigns/migrations/__init__.py",
            "campaigns/migrations/0001_initial.py",
            "calls/migrations/__init__.py",
            "calls/migrations/0001_initial.py",
        ],
        "Release 1.0",
        "v1.0.0",
    )
    _commit(
        repo,
        [
            "campaigns/migrations/0002_contact_notes.py",
            "calls/migrations/0002_call_cost.py",
            "voices/migrations/__init__.py",
            "voices/migrations/0001_initial.py",
        ],
        "Release 1.1",
        "v1.1.0",
    )
    return repo


class RecordingRunner:
    """Records every command; runs git for real so the checkout can be observed."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.fail_on = fail_on

    def run(self, command: Sequence[str], *, cwd: Path) -> None:
        self.commands.append(list(command))
        if self.fail_on and self.fail_on in command:
            raise rollback.StepFailed(f"exit status 1: {' '.join(command)}")
        if command[0] == "git":
            subprocess.run(list(command), cwd=cwd, check=True, capture_output=True, env=GIT_ENV)

    def output(self, command: Sequence[str], *, cwd: Path) -> str:
        self.commands.append(list(command))
        return ""


def _rollback(
    repo: Path, *args: str, applied: set[str], runner: RecordingRunner | None = None
) -> tuple[int, RecordingRunner]:
    runner = runner or RecordingRunner()
    code = rollback.main(
        ["--repo", str(repo), *args], runner=runner, applied=lambda: applied | DJANGO_OWN
    )
    return code, runner


def test_rollback_refuses_an_unknown_tag(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, runner = _rollback(repo, "--version", "v9.9.9", applied=AT_V1_1)

    assert code == rollback.EXIT_BAD_REQUEST
    assert "no tag 'v9.9.9'" in capsys.readouterr().err
    assert runner.commands == []


def test_rollback_dry_run_prints_the_steps_and_runs_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, runner = _rollback(
        repo, "--version", "v1.0.0", "--dry-run", "--migrations", "migrate-back", applied=AT_V1_1
    )

    assert code == 0
    out = capsys.readouterr().out
    assert "python manage.py migrate campaigns 0001_initial" in out
    assert "git checkout v1.0.0" in out
    assert "docker compose -f docker-compose.yml build" in out
    assert "docker compose -f docker-compose.yml up -d" in out
    assert "Dry run: nothing was changed." in out
    assert runner.commands == []
    assert _git(repo, "describe", "--tags") == "v1.1.0"


def test_rollback_refuses_and_names_the_migrations_the_tag_lacks(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, runner = _rollback(repo, "--version", "v1.0.0", applied=AT_V1_1)

    assert code == rollback.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "calls.0002_call_cost, campaigns.0002_contact_notes, voices.0001_initial" in err
    # Django's own apps have no migration files in the repository: not compared.
    assert "auth." not in err
    assert runner.commands == []
    assert _git(repo, "describe", "--tags") == "v1.1.0"


def test_rollback_migrate_back_unapplies_with_the_current_code_before_checkout(
    repo: Path,
) -> None:
    code, runner = _rollback(
        repo, "--version", "v1.0.0", "--migrations", "migrate-back", applied=AT_V1_1
    )

    assert code == 0
    migrate = [*COMPOSE, "run", "--rm", "migrate", "python", "manage.py", "migrate"]
    assert runner.commands == [
        [*migrate, "calls", "0001_initial"],
        [*migrate, "campaigns", "0001_initial"],
        [*migrate, "voices", "zero"],
        ["git", "checkout", "v1.0.0"],
        [*COMPOSE, "build"],
        [*COMPOSE, "up", "-d"],
    ]


def test_rollback_ignore_proceeds_without_migrating(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, runner = _rollback(repo, "--version", "v1.0.0", "--migrations", "ignore", applied=AT_V1_1)

    assert code == 0
    assert "Ignoring migrations that v1.0.0 lacks" in capsys.readouterr().out
    assert runner.commands == [
        ["git", "checkout", "v1.0.0"],
        [*COMPOSE, "build"],
        [*COMPOSE, "up", "-d"],
    ]


def test_rollback_clean_checks_out_builds_and_restarts_in_that_order(repo: Path) -> None:
    # given a database that never applied the migrations of v1.1.0
    compose_files = ["--compose-files", "docker-compose.yml"]

    # when
    code, runner = _rollback(repo, "--version", "v1.0.0", *compose_files, applied=AT_V1_0)

    # then
    assert code == 0
    assert runner.commands == [
        ["git", "checkout", "v1.0.0"],
        [*COMPOSE, "build"],
        [*COMPOSE, "up", "-d"],
    ]
    assert _git(repo, "describe", "--tags") == "v1.0.0"


def test_rollback_stops_at_the_first_failing_step(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, runner = _rollback(
        repo, "--version", "v1.0.0", applied=AT_V1_0, runner=RecordingRunner(fail_on="build")
    )

    assert code == rollback.EXIT_FAILED
    assert runner.commands[-1] == [*COMPOSE, "build"]
    err = capsys.readouterr().err
    assert "step 2 failed" in err
    assert "The checkout is at v1.0.0 already" in err


def test_rollback_refuses_a_dirty_working_tree(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "manage.py").write_text("# edited on the server\n", encoding="utf-8")

    code, runner = _rollback(repo, "--version", "v1.0.0", applied=AT_V1_0)

    assert code == rollback.EXIT_BAD_REQUEST
    assert "uncommitted changes" in capsys.readouterr().err
    assert runner.commands == []


def test_rollback_refuses_a_compose_file_the_tag_lacks(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = ["--compose-files", "docker-compose.yml", "docker-compose.prod.yml"]

    code, runner = _rollback(repo, "--version", "v1.0.0", *files, applied=AT_V1_0)

    assert code == rollback.EXIT_BAD_REQUEST
    assert "docker-compose.prod.yml does not exist at v1.0.0" in capsys.readouterr().err
    assert runner.commands == []


def test_rollback_uses_the_files_of_compose_file_by_default(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a production override from v1.2.0 on, named by COMPOSE_FILE as the guide says
    _commit(repo, ["docker-compose.prod.yml"], "Production override", "v1.2.0")
    _commit(repo, ["README.md"], "Docs", "v1.3.0")
    monkeypatch.setenv("COMPOSE_FILE", "docker-compose.yml:docker-compose.prod.yml")

    # when
    code, runner = _rollback(repo, "--version", "v1.2.0", applied=AT_V1_1)

    # then `-f docker-compose.yml` alone would have dropped the override
    prod = [*COMPOSE, "-f", "docker-compose.prod.yml"]
    assert code == 0
    assert runner.commands[1:] == [[*prod, "build"], [*prod, "up", "-d"]]


def test_rollback_reads_applied_migrations_from_a_file(repo: Path, tmp_path: Path) -> None:
    # given the output of `manage.py showmigrations --plan` saved to a file
    plan = tmp_path / "plan.txt"
    plan.write_text(
        "[X]  contenttypes.0001_initial\n[X]  campaigns.0001_initial\n"
        "[X]  campaigns.0002_contact_notes\n[ ]  calls.0002_call_cost\n",
        encoding="utf-8",
    )
    runner = RecordingRunner()

    # when
    code = rollback.main(
        ["--repo", str(repo), "--version", "v1.0.0", "--applied-from", f"file:{plan}"],
        runner=runner,
    )

    # then
    assert code == rollback.EXIT_REFUSED
    assert runner.commands == []


def test_rollback_reads_applied_migrations_through_compose(repo: Path) -> None:
    class ComposeOutput(RecordingRunner):
        def output(self, command: Sequence[str], *, cwd: Path) -> str:
            super().output(command, cwd=cwd)
            return '{"level": "INFO"}\napplied-migration campaigns 0001_initial\n'

    runner = ComposeOutput()

    code = rollback.main(["--repo", str(repo), "--version", "v1.0.0", "--dry-run"], runner=runner)

    assert code == 0
    assert runner.commands[0][:9] == [*COMPOSE, "run", "--rm", "--no-deps", "-T", "migrate"]
    assert runner.commands[0][-3:-1] == ["shell", "-c"]


def test_last_migration_is_the_highest_numbered_or_zero() -> None:
    assert rollback.last_migration({"0002_b", "0010_c", "0001_a"}) == "0010_c"
    assert rollback.last_migration(set()) == "zero"
