"""deploy/ci-deploy.sh, CI's deploy step, against a fake host: `ssh` runs the command here
through `sh -c` (as sshd does with the user's shell) in a real git checkout with release
tags, `docker` records its arguments, and /health is a local HTTP server. What is real: the
script's decisions (which tag to go back to, health check then rollback), git on the
"host", and deploy/rollback.py run there as operators run it. What is not: Docker itself
(no engine here), SSH's transport."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "ci-deploy.sh"
IMAGE = "ghcr.io/acme/callcenter"
STAGING = "docker-compose.yml:docker-compose.staging.yml"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

FAKE_SSH = """#!/usr/bin/env bash
# ssh stand-in: drops the options, records the destination, runs the command here with
# a login's environment (sshd passes none of the caller's): HOME, PATH and the fakes' own.
while [ $# -gt 0 ]; do
    case "$1" in
        -[ioplFJ]) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
echo "$1" >> "$FAKE_LOG_DIR/ssh.log"
shift
cd "$HOME"
exec env -i HOME="$HOME" PATH="$PATH" FAKE_LOG_DIR="$FAKE_LOG_DIR" \
    FAKE_DOCKER_FAIL="${FAKE_DOCKER_FAIL:-}" FAKE_APPLIED="${FAKE_APPLIED:-}" sh -c "$*"
"""

FAKE_DOCKER = """#!/usr/bin/env bash
# docker stand-in: one line per call (COMPOSE_FILE too); fails when its arguments contain
# FAKE_DOCKER_FAIL; `login` records what it reads from stdin; rollback.py's read of the
# applied migrations gets FAKE_APPLIED.
echo "$* | COMPOSE_FILE=${COMPOSE_FILE:-}" >> "$FAKE_LOG_DIR/docker.log"
if [ "$1" = login ]; then echo "token=$(cat)" >> "$FAKE_LOG_DIR/docker.log"; fi
if [ -n "${FAKE_DOCKER_FAIL:-}" ] && [[ "$*" == *"$FAKE_DOCKER_FAIL"* ]]; then
    echo "docker: failing as told" >&2
    exit 1
fi
if [[ "$*" == *" shell -c "* ]]; then
    for migration in ${FAKE_APPLIED:-}; do echo "applied-migration ${migration/./ }"; done
fi
exit 0
"""


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return result.stdout.strip()


@dataclass
class Health:
    """/health answering `status`; `asked` counts the requests."""

    status: int = 200
    asked: int = 0
    url: str = ""


@dataclass
class Host:
    root: Path
    checkout: Path
    commits: dict[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=Health)

    def run(self, *, sha: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            **GIT_ENV,
            "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}",
            "HOME": str(self.root),
            "FAKE_LOG_DIR": str(self.root),
            "DEPLOY_HOST": "staging.example.com",
            "DEPLOY_PATH": str(self.checkout),
            "DEPLOY_SSH_OPTIONS": "-i ~/.ssh/deploy_key -o BatchMode=yes",
            "APP_URL": self.health.url,
            "COMPOSE_FILE": STAGING,
            "IMAGE": IMAGE,
            "IMAGE_TAG": sha,
            "HEALTH_TIMEOUT": "1",
            "HEALTH_INTERVAL": "0.2",
            **env,
        }
        environment.pop("GITHUB_ACTIONS", None)
        return subprocess.run(
            ["bash", str(SCRIPT)],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
            check=False,
        )

    def log(self, name: str) -> list[str]:
        path = self.root / f"{name}.log"
        return path.read_text().splitlines() if path.exists() else []

    def head(self) -> str:
        return _git(self.checkout, "rev-parse", "HEAD")


@pytest.fixture
def health() -> Iterator[Health]:
    state = Health()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.asked += 1
            code = state.status if self.path == "/health" else 404
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def host(tmp_path: Path, health: Health) -> Host:
    """origin: v1.0.0 (campaigns 0001), then two untagged commits (0002, 0003) with the
    Compose files and deploy/rollback.py of this repository. The host: a clone at v1.0.0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"ssh": FAKE_SSH, "docker": FAKE_DOCKER}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "--quiet", "--initial-branch=main")
    for name in ("docker-compose.yml", "docker-compose.staging.yml", "deploy/rollback.py"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, work / name)
    commits = {}
    for number, label in (("0001", "v1.0.0"), ("0002", "second"), ("0003", "third")):
        migration = work / "campaigns" / "migrations" / f"{number}_step.py"
        migration.parent.mkdir(parents=True, exist_ok=True)
        migration.write_text(f"# {number}\n")
        _git(work, "add", "--all")
        _git(work, "commit", "--quiet", "-m", label)
        commits[label] = _git(work, "rev-parse", "HEAD")
    _git(work, "tag", "v1.0.0", commits["v1.0.0"])
    origin = tmp_path / "origin.git"
    _git(tmp_path, "clone", "--quiet", "--bare", str(work), str(origin))
    checkout = tmp_path / "srv" / "callcenter"
    _git(tmp_path, "clone", "--quiet", str(origin), str(checkout))
    _git(checkout, "checkout", "--quiet", "--detach", "v1.0.0")
    return Host(root=tmp_path, checkout=checkout, commits=commits, health=health)


def test_ci_deploy_updates_the_host_and_passes_when_health_answers_200(host: Host) -> None:
    # given the host at v1.0.0, /health answering 200
    sha = host.commits["third"]

    # when
    result = host.run(sha=sha, REGISTRY_USER="ci-bot", REGISTRY_TOKEN="s3cr3t-token")

    # then the checkout is at the commit, the pushed image runs under the Compose name
    assert result.returncode == 0, result.stdout + result.stderr
    assert host.head() == sha
    assert "Running now: v1.0.0" in result.stdout
    assert host.log("ssh") == ["deploy@staging.example.com"] * 2
    docker = host.log("docker")
    assert docker == [
        "login ghcr.io --username ci-bot --password-stdin | COMPOSE_FILE=",
        "token=s3cr3t-token",
        f"pull {IMAGE}:{sha} | COMPOSE_FILE=",
        f"tag {IMAGE}:{sha} callcenter:latest | COMPOSE_FILE=",
        f"compose run --rm migrate | COMPOSE_FILE={STAGING}",
        f"compose up -d --no-build | COMPOSE_FILE={STAGING}",
        f"logout ghcr.io | COMPOSE_FILE={STAGING}",
    ]
    # The token went through stdin, never in a command line.
    assert "s3cr3t-token" not in "".join(host.log("ssh"))
    assert host.health.asked >= 1


def test_ci_deploy_rolls_back_with_rollback_py_when_health_fails(host: Host) -> None:
    # given the host at an untagged commit (a deployment of an earlier merge), and the new
    # release's migration applied before /health fails
    _git(host.checkout, "checkout", "--quiet", "--detach", host.commits["second"])
    host.health.status = 503
    sha = host.commits["third"]
    applied = "campaigns.0001_step campaigns.0002_step campaigns.0003_step"

    # when
    result = host.run(sha=sha, FAKE_APPLIED=applied)

    # then the running commit got a tag, and rollback.py went back to it
    output = result.stdout + result.stderr
    tag = f"deployed-{host.commits['second'][:12]}"
    assert result.returncode == 1, output
    assert f"Running now: {tag}" in output
    assert _git(host.checkout, "rev-parse", f"{tag}^{{commit}}") == host.commits["second"]
    assert host.head() == host.commits["second"]
    assert "did not answer 200 within 1s: rolling back" in output
    # rollback.py's own words: --migrations ignore, as ROLLBACK_MIGRATIONS defaults to
    assert f"Ignoring migrations that {tag} lacks (--migrations ignore): campaigns.0003_step" in (
        output
    )
    assert f"Rolled back to {tag}." in output
    assert "still does not answer 200" in output
    docker = [line.split(" | ")[0] for line in host.log("docker")]
    assert docker[:4] == [
        f"pull {IMAGE}:{sha}",
        f"tag {IMAGE}:{sha} callcenter:latest",
        "compose run --rm migrate",
        "compose up -d --no-build",
    ]
    # rollback.py with the environment's Compose files (COMPOSE_FILE): read, build, up.
    assert docker[4].startswith(
        "compose -f docker-compose.yml -f docker-compose.staging.yml run --rm --no-deps -T "
        "migrate python manage.py shell -c"
    )
    assert docker[5:] == [
        "compose -f docker-compose.yml -f docker-compose.staging.yml build",
        "compose -f docker-compose.yml -f docker-compose.staging.yml up -d",
    ]


def test_ci_deploy_rolls_back_when_the_migration_fails(host: Host) -> None:
    result = host.run(sha=host.commits["third"], FAKE_DOCKER_FAIL="run --rm migrate")

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "the update failed (exit status 1): rolling back to v1.0.0" in output
    assert host.head() == host.commits["v1.0.0"]
    docker = [line.split(" | ")[0] for line in host.log("docker")]
    assert "compose up -d --no-build" not in docker
    assert docker[-1] == "compose -f docker-compose.yml -f docker-compose.staging.yml up -d"
    # The rollback brought back a release that answers: said, and still a failed job.
    assert "Rolled back to v1.0.0, which answers 200." in output


def test_ci_deploy_says_when_the_rollback_refuses(host: Host) -> None:
    # given ROLLBACK_MIGRATIONS=refuse and the new release's migration applied
    host.health.status = 503
    applied = "campaigns.0001_step campaigns.0002_step campaigns.0003_step"

    result = host.run(sha=host.commits["third"], FAKE_APPLIED=applied, ROLLBACK_MIGRATIONS="refuse")

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "REFUSED: the database has migrations that v1.0.0 lacks" in output
    assert "the rollback to v1.0.0 failed too" in output
    assert host.head() == host.commits["third"]


def test_ci_deploy_skips_a_commit_older_than_the_deployed_one(host: Host) -> None:
    _git(host.checkout, "checkout", "--quiet", "--detach", host.commits["third"])

    result = host.run(sha=host.commits["second"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Skipped: a newer commit is deployed." in result.stdout
    assert host.head() == host.commits["third"]
    assert host.log("docker") == []


def test_ci_deploy_changes_nothing_on_a_host_with_uncommitted_changes(host: Host) -> None:
    (host.checkout / "docker-compose.yml").write_text("# edited on the host\n")

    result = host.run(sha=host.commits["third"])

    assert result.returncode == 1
    assert "has uncommitted changes" in result.stderr
    assert "docker-compose.yml" in result.stderr
    assert host.head() == host.commits["v1.0.0"]
    assert host.log("docker") == []


@pytest.mark.parametrize(
    ("unset", "extra", "message"),
    [
        ("DEPLOY_HOST", {}, "not set: DEPLOY_HOST"),
        ("APP_URL", {}, "not set: APP_URL"),
        ("", {"ROLLBACK_MIGRATIONS": "always"}, "ROLLBACK_MIGRATIONS must be refuse, ignore"),
    ],
)
def test_ci_deploy_refuses_a_bad_configuration_before_touching_the_host(
    host: Host, unset: str, extra: dict[str, str], message: str
) -> None:
    env = {unset: "", **extra} if unset else extra

    result = host.run(sha=host.commits["third"], **env)

    assert result.returncode == 2
    assert message in result.stderr
    assert host.log("ssh") == []


def test_ci_deploy_rolls_back_when_nothing_answers_at_app_url(host: Host) -> None:
    # given an APP_URL where nothing listens (a proxy down, a wrong address)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"

    result = host.run(sha=host.commits["third"], APP_URL=closed)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"GET {closed}/health: no answer" in output
    assert "Rolled back to v1.0.0." in output
    assert host.head() == host.commits["v1.0.0"]
