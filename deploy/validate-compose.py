#!/usr/bin/env python3
"""Validate docker-compose.yml alone and merged with each override file.

Each file is read as Compose reads it (YAML 1.2 scalars, `!reset` and `!override` tags,
anchors and `<<` merge keys), interpolated with the variables of `.env.example`, merged
by the Compose specification's rules, then checked against the Compose specification
schema (check-jsonschema's builtin `vendor.compose-spec`) and for dependencies on
services that a profile leaves out. Prints what it checked; exits 1 on any error.

    .venv/bin/python deploy/validate-compose.py            # base, base+staging, base+prod
    .venv/bin/python deploy/validate-compose.py --show prod  # also print the merged file
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "vendor.compose-spec"


class ComposeError(Exception):
    """A file that Compose would refuse: unreadable YAML or a bad interpolation."""


@dataclass(frozen=True)
class Reset:
    """A value tagged `!reset` in an override: removes what the earlier files set."""


@dataclass(frozen=True)
class Override:
    """A value tagged `!override`: replaces what the earlier files set, unmerged."""

    value: Any


# --- Reading ------------------------------------------------------------------------------
class ComposeLoader(yaml.SafeLoader):
    """PyYAML resolves YAML 1.1 scalars (`no` is false, `80:80` is 4880); Compose reads
    YAML 1.2, where both are strings. It also refuses duplicate keys and knows the tags."""

    # PyYAML's class-level registry of implicit tags, filled below.
    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    ComposeLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0) if text.startswith("0x") else int(text)


def _check_duplicate_keys(node: yaml.Node, seen_nodes: set[int] | None = None) -> None:
    """Compose refuses a key written twice in one mapping; PyYAML keeps the last."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in keys:
                    line = key_node.start_mark.line + 1
                    raise ComposeError(f"line {line}: key {key_node.value!r} given twice")
                keys.add(key_node.value)
            _check_duplicate_keys(value_node, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, seen_nodes)


def _construct_tagged(loader: ComposeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    return loader.construct_object(yaml.ScalarNode(tag, node.value), deep=True)


ComposeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())
ComposeLoader.add_constructor(
    "!override", lambda loader, node: Override(_construct_tagged(loader, node))
)


def load_compose(path: Path) -> dict[str, Any]:
    """One Compose file as plain data, `!reset`/`!override` values wrapped."""
    loader = ComposeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_duplicate_keys(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path.name}: not valid YAML: {exc}") from exc
    except ComposeError as exc:
        raise ComposeError(f"{path.name}: {exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ComposeError(f"{path.name}: a Compose file must be a mapping at the top level")
    return data


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as Compose's .env reader takes them (comments, quotes, export)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            raise ComposeError(f"{path.name}:{number}: not a KEY=VALUE line: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[name] = value
    return values


# --- Interpolation ------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)


@dataclass
class Interpolation:
    """Variables for `${...}`, and what was missing from them."""

    env: Mapping[str, str]
    required: dict[str, str] = field(default_factory=dict)
    unset: set[str] = field(default_factory=set)

    def value(self, data: Any, where: str = "") -> Any:
        """`data` with every string interpolated (keys are not, as in Compose)."""
        if isinstance(data, dict):
            return {k: self.value(v, f"{where}.{k}".lstrip(".")) for k, v in data.items()}
        if isinstance(data, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(data)]
        if isinstance(data, Override):
            return Override(self.value(data.value, where))
        if isinstance(data, str):
            return self.string(data, where)
        return data

    def string(self, text: str, where: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            if text[i] != "$":
                out.append(text[i])
                i += 1
            elif text.startswith("$$", i):
                out.append("$")
                i += 2
            elif text.startswith("${", i):
                end = _closing_brace(text, i + 2)
                if end is None:
                    raise ComposeError(f"{where}: unclosed '${{' in {text!r}")
                out.append(self._braced(text[i + 2 : end], where, text))
                i = end + 1
            elif match := _NAME.match(text, i + 1):
                out.append(self._lookup(match.group(), where))
                i = match.end()
            else:
                raise ComposeError(f"{where}: invalid interpolation format in {text!r}")
        return "".join(out)

    def _braced(self, expression: str, where: str, text: str) -> str:
        match = _BRACED.fullmatch(expression)
        if match is None:
            raise ComposeError(f"{where}: invalid interpolation format in {text!r}")
        name, operator, argument = match.groups()
        is_set = name in self.env
        non_empty = bool(self.env.get(name))
        if operator is None:
            return self._lookup(name, where)
        if operator in (":-", "-"):
            use_own = non_empty if operator == ":-" else is_set
            return self.env[name] if use_own else self.string(argument, where)
        if operator in (":+", "+"):
            use_alternative = non_empty if operator == ":+" else is_set
            return self.string(argument, where) if use_alternative else ""
        # ":?" and "?": Compose refuses to start without the variable. An example file
        # may leave it out on purpose, so it is reported and a placeholder stands in.
        if non_empty if operator == ":?" else is_set:
            return self.env[name]
        self.required[name] = self.string(argument, where) or "required"
        return f"<{name}>"

    def _lookup(self, name: str, where: str) -> str:
        if name not in self.env:
            self.unset.add(name)
        return self.env.get(name, "")


def _closing_brace(text: str, start: int) -> int | None:
    depth = 0
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


# --- Merging ------------------------------------------------------------------------------
_REMOVE = object()

# Compose's merge rules (https://docs.docker.com/reference/compose-file/merge/) beyond
# "mappings merge, sequences append", for the attributes a service can have.
_REPLACED = ("command", "entrypoint", "healthcheck.test")
_AS_MAPPING = (
    "environment", "labels", "annotations", "sysctls", "extra_hosts",
    "build.args", "build.labels", "deploy.labels",
)  # fmt: skip


def _as_mapping(value: Any, separators: str = "=") -> Any:
    """`["A=1", "B"]` as `{"A": "1", "B": None}`; mappings and others unchanged."""
    if not isinstance(value, list):
        return value
    result: dict[str, Any] = {}
    for item in value:
        text = str(item)
        cut = min((i for i in (text.find(s) for s in separators) if i >= 0), default=-1)
        result[text if cut < 0 else text[:cut]] = None if cut < 0 else text[cut + 1 :]
    return result


def _port_key(port: Any) -> tuple:
    if isinstance(port, dict):
        return (
            port.get("host_ip", ""),
            str(port.get("target")),
            str(port.get("published", "")),
            port.get("protocol", "tcp"),
        )
    text, _, protocol = str(port).partition("/")
    parts = text.rsplit(":", 2) if text.count(":") <= 2 else [text]
    target = parts[-1]
    published = parts[-2] if len(parts) >= 2 else ""
    host_ip = parts[-3] if len(parts) == 3 else ""
    return (host_ip, target, published, protocol or "tcp")


def _mount_key(volume: Any) -> Any:
    if isinstance(volume, dict):
        return volume.get("target")
    parts = str(volume).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def _reference_key(item: Any) -> Any:
    if isinstance(item, dict):
        return item.get("target") or item.get("source")
    return item


def _value_key(item: Any) -> Any:
    return json.dumps(item, sort_keys=True, default=repr)


_UNIQUE_BY: dict[str, Callable[[Any], Any]] = {
    "ports": _port_key,
    "volumes": _mount_key,
    "secrets": _reference_key,
    "configs": _reference_key,
}


def _normalize(attribute: str, value: Any) -> Any:
    """A service attribute's short syntax in the long form that merges."""
    if attribute in _AS_MAPPING:
        return _as_mapping(value, "=:" if attribute == "extra_hosts" else "=")
    if attribute == "depends_on" and isinstance(value, list):
        return {name: {"condition": "service_started"} for name in value}
    if attribute == "networks" and isinstance(value, list):
        return dict.fromkeys(value)
    if attribute == "build" and isinstance(value, str):
        return {"context": value}
    if attribute == "env_file" and isinstance(value, str | dict):
        return [value]
    return value


def _unique(attribute: str, items: list[Any]) -> list[Any]:
    """Appended sequences keep one entry per key; a later entry replaces an earlier one."""
    key = _UNIQUE_BY.get(attribute, _value_key)
    kept: dict[Any, Any] = {}
    for item in items:
        kept[key(item)] = item
    return list(kept.values())


def finalize(value: Any) -> Any:
    """Plain data: `!override` values unwrapped, `!reset` ones removed."""
    if isinstance(value, Override):
        return finalize(value.value)
    if isinstance(value, dict):
        return {k: finalize(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [finalize(v) for v in value if not isinstance(v, Reset)]
    return value


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """`override` merged onto `base` as Compose merges a later file onto an earlier one.

    Returns new objects: PyYAML shares one object among the aliases of an anchor."""
    if isinstance(override, Reset):
        return _REMOVE
    if isinstance(override, Override):
        return finalize(override.value)
    attribute = ".".join(path[2:]) if path[:1] == ("services",) and len(path) > 2 else ""
    if attribute:
        base, override = _normalize(attribute, base), _normalize(attribute, override)
    if attribute in _REPLACED:
        return finalize(override)
    if attribute == "logging" and isinstance(base, dict) and isinstance(override, dict):
        if override.get("driver") not in (None, base.get("driver")):
            return finalize(override)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = {k: finalize(v) for k, v in base.items()}
        for key, value in override.items():
            result = (
                merge(base[key], value, (*path, key))
                if key in base
                else merge(None, value, (*path, key))
            )
            if result is _REMOVE:
                merged.pop(key, None)
            else:
                merged[key] = result
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return _unique(attribute, finalize(base) + finalize(override))
    return finalize(override)


def merge_files(documents: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several interpolated Compose files merged in order, as `-f a -f b` does."""
    merged: dict[str, Any] = {}
    for document in documents:
        merged = merge(merged, document)
    return finalize(merged)


# --- Checks ------------------------------------------------------------------------------
def dependency_errors(project: dict[str, Any]) -> list[str]:
    """Dependencies on services that the active profiles leave out: Compose refuses them
    ("depends on undefined service") and the schema cannot see it."""
    services: dict[str, Any] = project.get("services") or {}
    profiles = sorted({p for s in services.values() for p in (s or {}).get("profiles", [])})
    errors: list[str] = []
    for enabled in [(), *((p,) for p in profiles)]:
        active = {
            name
            for name, service in services.items()
            if not (service or {}).get("profiles") or set(service["profiles"]) & set(enabled)
        }
        for name in sorted(active):
            depends_on = _normalize("depends_on", (services[name] or {}).get("depends_on")) or {}
            for dependency, options in depends_on.items():
                if dependency in active or (options or {}).get("required") is False:
                    continue
                profile = f"with profile {enabled[0]!r}" if enabled else "with no profile"
                error = f"service {name!r} depends on {dependency!r}, not enabled {profile}"
                if error not in errors:
                    errors.append(error)
    return errors


def schema_errors(project: dict[str, Any], label: str) -> list[str]:
    """check-jsonschema's verdict on one merged file against the Compose schema."""
    with tempfile.TemporaryDirectory(prefix="compose-check-") as folder:
        target = Path(folder) / f"{label}.json"
        target.write_text(json.dumps(project, indent=2, default=str), encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMA, str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode == 0:
        return []
    output = (result.stdout + result.stderr).strip().replace(folder, "<merged>")
    return [f"not valid against the Compose specification:\n{output}"]


@dataclass
class Report:
    label: str
    errors: list[str] = field(default_factory=list)
    required: dict[str, str] = field(default_factory=dict)
    unset: set[str] = field(default_factory=set)
    services: list[str] = field(default_factory=list)
    project: dict[str, Any] = field(default_factory=dict)


def check(files: list[Path], env: Mapping[str, str]) -> Report:
    """Load, interpolate, merge and validate one combination of Compose files."""
    report = Report(label=" + ".join(f.name for f in files))
    interpolation = Interpolation(env)
    try:
        documents = [interpolation.value(load_compose(f)) for f in files]
    except (ComposeError, OSError) as exc:
        report.errors.append(str(exc))
        return report
    report.project = merge_files(documents)
    report.required, report.unset = interpolation.required, interpolation.unset
    services = report.project.get("services") or {}
    report.services = [n for n, s in services.items() if not (s or {}).get("profiles")]
    report.errors += dependency_errors(report.project)
    report.errors += schema_errors(report.project, re.sub(r"\W+", "_", report.label))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="folder of the Compose files")
    parser.add_argument("--base", default="docker-compose.yml")
    parser.add_argument(
        "--override",
        action="append",
        help="override file merged onto the base (repeatable; default docker-compose.*.yml)",
    )
    parser.add_argument(
        "--env-file", type=Path, help="variables for ${...} (default ROOT/.env.example)"
    )
    parser.add_argument(
        "--show", metavar="NAME", help="print the merged result whose label contains NAME"
    )
    args = parser.parse_args(argv)

    root: Path = args.root
    env_file = args.env_file or root / ".env.example"
    try:
        env = read_env_file(env_file)
    except (ComposeError, OSError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    base = root / args.base
    overrides = (
        [root / o for o in args.override]
        if args.override
        else sorted(p for p in root.glob("docker-compose.*.yml") if p.name != args.base)
    )
    print(f"Compose specification schema: check-jsonschema --builtin-schema {SCHEMA}")
    print(f"Variables from {env_file.name} ({len(env)} set)")
    failed = 0
    for files in [[base], *([base, o] for o in overrides)]:
        report = check(files, env)
        if report.errors:
            failed += 1
            print(f"FAIL {report.label}")
            for error in report.errors:
                print("  " + error.replace("\n", "\n  "))
            continue
        print(f"ok   {report.label}: services {', '.join(report.services)}")
        if report.required:
            names = ", ".join(sorted(report.required))
            print(f"     requires {names} (unset or empty in {env_file.name}: placeholder used)")
        if report.unset:
            print(f"     note: {', '.join(sorted(report.unset))} unset, blank as in Compose")
        if args.show and args.show in report.label:
            print(yaml.safe_dump(report.project, sort_keys=False, width=200))
    if failed:
        print(f"ERROR: {failed} Compose file combination(s) not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
