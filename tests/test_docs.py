"""The repository's docs stand alone: every file or folder of the repository they name
exists, and they point at nothing outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "CHANGELOG.md",
    ROOT / ".env.example",
    *sorted((ROOT / "docs").rglob("*.md")),
]
# `calls/flow.py`, `deploy/backup.sh`, `docs/deploy.md:12`...: a path inside the repository.
PATH = re.compile(r"`((?:[\w.-]+/)+[\w.*-]*)(?::\d+)?`")
# What the repository holds, not what running it leaves behind (`var/`, `.venv/`).
TOP_LEVEL = {
    name.split("/")[0]
    for name in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
}


def named_paths(text: str) -> list[str]:
    """The repository paths a document names: those whose first part is one of the
    repository's top-level files or folders (``openai/gpt-5-mini`` is a model, not a path)."""
    found = []
    for match in PATH.finditer(text):
        path = match.group(1).rstrip("/")
        if path.split("/")[0] in TOP_LEVEL and "*" not in path:
            found.append(path)
    return found


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_path_a_document_names_exists(document: Path) -> None:
    missing = [path for path in named_paths(document.read_text()) if not (ROOT / path).exists()]

    assert missing == [], f"{document.name} names files that are not in the repository"


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_document_points_outside_the_repository(document: Path) -> None:
    text = document.read_text()

    assert not re.search(r"\.\./shared|shared/DESIGN|shared/reference", text)


def test_a_named_path_is_found_and_a_model_name_is_not() -> None:
    text = (
        "See `calls/flow.py:12`, `deploy/` and `openai/gpt-5-mini`, not `docs/missing.md`;"
        " `var/screenshots/` is made by running it."
    )

    assert named_paths(text) == ["calls/flow.py", "deploy", "docs/missing.md"]
