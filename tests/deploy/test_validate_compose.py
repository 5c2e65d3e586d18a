"""deploy/validate-compose.py: Compose's reading, interpolation and merge rules, and its
verdict on good and broken files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.deploy.scripts import load_script

vc = load_script("validate_compose", "validate-compose.py")

BASE = """
x-app: &app
  image: app:latest
  environment:
    DATABASE_URL: postgresql://db/app
    REDIS_URL: redis://redis:6379/0
  depends_on:
    postgres:
      condition: service_healthy
    redis:
      condition: service_healthy

services:
  postgres:
    image: postgres:15
  redis:
    image: redis:7
  web:
    <<: *app
    ports:
      - "8000:8000"
    command: ["uvicorn", "app"]
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _merged(tmp_path: Path, base: str, override: str, env: dict[str, str] | None = None):
    files = [_write(tmp_path, "base.yml", base), _write(tmp_path, "override.yml", override)]
    interpolation = vc.Interpolation(env or {})
    return vc.merge_files([interpolation.value(vc.load_compose(f)) for f in files])


def test_load_compose_reads_scalars_as_yaml_1_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.yml", "a: no\nb: 80:80\nc: 0o17\nd: true\ne: 1.5\nf: ~\n")

    assert vc.load_compose(path) == {
        "a": "no",
        "b": "80:80",
        "c": 15,
        "d": True,
        "e": 1.5,
        "f": None,
    }


def test_load_compose_refuses_a_key_given_twice(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.yml", "services:\n  web:\n    image: a\n    image: b\n")

    with pytest.raises(vc.ComposeError, match="'image' given twice"):
        vc.load_compose(path)


def test_merge_mappings_merge_and_scalars_are_replaced(tmp_path: Path) -> None:
    merged = _merged(tmp_path, BASE, "services:\n  web:\n    image: app:v2\n    restart: always\n")

    web = merged["services"]["web"]
    assert web["image"] == "app:v2"
    assert web["restart"] == "always"
    assert web["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_merge_appends_ports_and_keeps_one_per_unique_key(tmp_path: Path) -> None:
    override = "services:\n  web:\n    ports:\n      - '8000:8000'\n      - '9000:9000'\n"

    merged = _merged(tmp_path, BASE, override)

    assert merged["services"]["web"]["ports"] == ["8000:8000", "9000:9000"]


def test_merge_volumes_are_unique_by_target(tmp_path: Path) -> None:
    base = "services:\n  a:\n    volumes: ['foo:/work', 'logs:/logs']\n"
    override = "services:\n  a:\n    volumes: ['bar:/work']\n"

    merged = _merged(tmp_path, base, override)

    assert merged["services"]["a"]["volumes"] == ["bar:/work", "logs:/logs"]


def test_merge_replaces_command_and_healthcheck_test(tmp_path: Path) -> None:
    base = BASE + "    healthcheck:\n      test: ['CMD', 'true']\n      interval: 5s\n"
    override = (
        "services:\n  web:\n    command: ['gunicorn']\n"
        "    healthcheck:\n      test: ['CMD', 'false']\n"
    )

    web = _merged(tmp_path, base, override)["services"]["web"]

    assert web["command"] == ["gunicorn"]
    assert web["healthcheck"] == {"test": ["CMD", "false"], "interval": "5s"}


def test_merge_environment_in_list_form_merges_by_name(tmp_path: Path) -> None:
    override = "services:\n  web:\n    environment:\n      - DEBUG=false\n      - REDIS_URL=redis://other/0\n"

    environment = _merged(tmp_path, BASE, override)["services"]["web"]["environment"]

    assert environment == {
        "DATABASE_URL": "postgresql://db/app",
        "REDIS_URL": "redis://other/0",
        "DEBUG": "false",
    }


def test_merge_extra_hosts_in_either_syntax_merges_by_host(tmp_path: Path) -> None:
    base = "services:\n  a:\n    extra_hosts: ['db:10.0.0.1', 'cache=10.0.0.2']\n"
    override = "services:\n  a:\n    extra_hosts:\n      db: 10.0.0.9\n"

    extra_hosts = _merged(tmp_path, base, override)["services"]["a"]["extra_hosts"]

    assert extra_hosts == {"db": "10.0.0.9", "cache": "10.0.0.2"}


def test_merge_depends_on_list_form_adds_to_the_mapping(tmp_path: Path) -> None:
    override = "services:\n  web:\n    depends_on: [cache]\n"

    depends_on = _merged(tmp_path, BASE, override)["services"]["web"]["depends_on"]

    assert depends_on == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "cache": {"condition": "service_started"},
    }


def test_merge_override_tag_replaces_instead_of_merging(tmp_path: Path) -> None:
    # given an override that uses !override through its own anchor, as the prod file does
    override = """
    x-prod: &prod
      depends_on: !override
        redis:
          condition: service_healthy
    services:
      web:
        <<: *prod
        ports: !override ["8443:8443"]
    """

    # when
    web = _merged(tmp_path, BASE, override)["services"]["web"]

    # then
    assert web["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert web["ports"] == ["8443:8443"]


def test_merge_reset_tag_removes_the_value(tmp_path: Path) -> None:
    override = """
    services:
      web:
        ports: !reset []
        environment:
          DATABASE_URL: !reset null
    """

    web = _merged(tmp_path, BASE, override)["services"]["web"]

    assert "ports" not in web
    assert web["environment"] == {"REDIS_URL": "redis://redis:6379/0"}


def test_merge_does_not_leak_between_services_sharing_an_anchor(tmp_path: Path) -> None:
    base = BASE + "  worker:\n    <<: *app\n"
    override = "services:\n  web:\n    environment:\n      DEBUG: 'false'\n"

    services = _merged(tmp_path, base, override)["services"]

    assert "DEBUG" not in services["worker"]["environment"]


def test_interpolation_follows_compose_syntax() -> None:
    interpolation = vc.Interpolation({"SET": "value", "EMPTY": ""})

    assert interpolation.string("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}", "x") == "value/d//d"
    assert interpolation.string("${UNSET:-${SET}}/$SET/$$SET", "x") == "value/value/$SET"
    assert interpolation.string("${SET:+alt}/${EMPTY:+alt}", "x") == "alt/"
    assert interpolation.string("${UNSET}", "x") == ""
    assert interpolation.unset == {"UNSET"}


def test_interpolation_reports_a_required_variable_and_uses_a_placeholder() -> None:
    interpolation = vc.Interpolation({"EMPTY": ""})

    value = interpolation.string("${EMPTY:?set EMPTY in .env}", "x")

    assert value == "<EMPTY>"
    assert interpolation.required == {"EMPTY": "set EMPTY in .env"}


def test_interpolation_refuses_a_malformed_reference() -> None:
    with pytest.raises(vc.ComposeError, match="unclosed"):
        vc.Interpolation({}).string("${NAME", "services.web.image")


def test_dependency_errors_names_a_service_left_out_by_its_profile(tmp_path: Path) -> None:
    merged = _merged(tmp_path, BASE, "services:\n  postgres:\n    profiles: [local-db]\n")

    assert vc.dependency_errors(merged) == [
        "service 'web' depends on 'postgres', not enabled with no profile"
    ]


def _project(tmp_path: Path, override: str) -> Path:
    _write(tmp_path, "docker-compose.yml", BASE)
    _write(tmp_path, "docker-compose.prod.yml", override)
    _write(tmp_path, ".env.example", "# example\nTAG=v1\n")
    return tmp_path


def test_main_accepts_valid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path, "services:\n  web:\n    image: app:${TAG}\n    restart: always\n")

    assert vc.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ok   docker-compose.yml: services postgres, redis, web" in out
    assert "ok   docker-compose.yml + docker-compose.prod.yml" in out


def test_main_reports_a_file_the_schema_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(tmp_path, "services:\n  web:\n    deploy:\n      replica: 2\n")

    assert vc.main(["--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL docker-compose.yml + docker-compose.prod.yml" in out
    assert "replica" in out


def test_main_reports_unreadable_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(tmp_path, "services:\n  web: [unclosed\n")

    assert vc.main(["--root", str(root)]) == 1
    assert "docker-compose.prod.yml: not valid YAML" in capsys.readouterr().out


def test_main_reports_a_dependency_on_a_disabled_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(tmp_path, "services:\n  postgres:\n    profiles: [local-db]\n")

    assert vc.main(["--root", str(root)]) == 1
    assert "'web' depends on 'postgres'" in capsys.readouterr().out


def test_repository_compose_files_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert vc.main([]) == 0
    out = capsys.readouterr().out
    assert "docker-compose.yml + docker-compose.prod.yml: services redis, web, worker, beat" in out
