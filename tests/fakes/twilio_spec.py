"""Twilio's OpenAPI spec (2010-04-01 API) as a checker of what the fake Twilio sees.

Every request the SDK sends to the fake is matched to its operation in the spec, and its
path, query and form parameters are checked against the operation's schemas: names known,
required ones present, enums, integers, booleans, URIs, patterns. The fake's own answers
are checked against the response schemas too, so its Call resource keeps Twilio's shape.

The spec is Twilio's own file (twilio/twilio-oai, MIT licence: `specs/LICENSE-twilio-oai`),
kept gzipped in `tests/fakes/specs/`.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SPEC_PATH = Path(__file__).resolve().parent / "specs" / "twilio_api_v2010.json.gz"

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the spec's path, say /2010-04-01/Accounts/{AccountSid}/Calls.json
    path_parameters: dict[str, str]
    definition: dict[str, Any]


class TwilioSpec:
    """One OpenAPI document and the checks the fake Twilio runs against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._paths = [
            (re.compile(_path_regex(template)), template, operations)
            for template, operations in document["paths"].items()
        ]

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> TwilioSpec:
        return _load(path)

    # --- Lookup -----------------------------------------------------------------------------
    def operation(self, method: str, path: str) -> Operation | None:
        """The operation for a request, the most literal path template first."""
        matches = []
        for regex, template, operations in self._paths:
            match = regex.fullmatch(path)
            if match and method.lower() in operations:
                matches.append((len(match.groupdict()), template, match.groupdict()))
        if not matches:
            return None
        _, template, parameters = min(matches)
        definition = self.document["paths"][template][method.lower()]
        return Operation(method.upper(), template, parameters, definition)

    # --- Requests ---------------------------------------------------------------------------
    def check_request(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        form: Mapping[str, list[str]],
        content_type: str | None,
    ) -> list[str]:
        """What the request does that the spec does not allow; empty when it complies."""
        operation = self.operation(method, path)
        where = f"{method} {path}"
        if operation is None:
            return [f"{where}: no such operation in Twilio's API spec"]
        problems: list[str] = []
        declared = {
            (p["in"], p["name"]): p
            for p in (self._resolve(p) for p in operation.definition.get("parameters", []))
        }
        for name, value in operation.path_parameters.items():
            parameter = declared.get(("path", name))
            if parameter is not None:
                problems += self._check_text(name, parameter.get("schema", {}), value, "")
        for name, values in query.items():
            parameter = declared.get(("query", name))
            if parameter is None:
                problems.append(f"unknown query parameter {name}")
                continue
            for value in values:
                problems += self._check_text(name, parameter.get("schema", {}), value, "")

        body = operation.definition.get("requestBody")
        if body is None:
            if form:
                problems.append(f"a body ({sorted(form)}) where the operation takes none")
            return [f"{where}: {problem}" for problem in problems]
        media = (content_type or "").split(";")[0].strip()
        if media not in body.get("content", {}):
            problems.append(f"content type {media!r}, not one of {sorted(body['content'])}")
            return [f"{where}: {problem}" for problem in problems]
        schema = self._resolve(body["content"][media]["schema"])
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if not form.get(name):
                problems.append(f"required parameter {name} is missing")
        for name, values in form.items():
            if name not in properties:
                problems.append(f"unknown parameter {name}")
                continue
            problems += self._check_form_parameter(name, self._resolve(properties[name]), values)
        return [f"{where}: {problem}" for problem in problems]

    def _check_form_parameter(
        self, name: str, schema: dict[str, Any], values: list[str]
    ) -> list[str]:
        description = schema.get("description", "")
        if schema.get("type") == "array":
            items = self._resolve(schema.get("items", {}))
            return [
                problem
                for value in values
                for problem in self._check_text(name, items, value, description)
            ]
        if len(values) != 1:
            return [f"{name} given {len(values)} times but takes one value"]
        return self._check_text(name, schema, values[0], description)

    def _check_text(
        self, name: str, schema: dict[str, Any], value: str, description: str
    ) -> list[str]:
        """Problems of one parameter value, sent as text, against its schema."""
        schema = self._resolve(schema)
        kind = schema.get("type", "string")
        shown = f"{name}={value!r}"
        if kind == "integer":
            return [] if re.fullmatch(r"[+-]?\d+", value) else [f"{shown} is not an integer"]
        if kind == "number":
            try:
                float(value)
            except ValueError:
                return [f"{shown} is not a number"]
            return []
        if kind == "boolean":
            return [] if value in ("true", "false") else [f"{shown} is not true or false"]
        problems = []
        # Some enums are in the description only ("Can be: `Enable` or `DetectMessageEnd`").
        allowed = schema.get("enum") or prose_enum(schema.get("description") or description)
        if allowed and value not in allowed:
            problems.append(f"{shown} is not one of {list(dict.fromkeys(allowed))}")
        if schema.get("format") == "uri" and (problem := _uri_problem(value)):
            problems.append(f"{shown} {problem}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{shown} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{shown} is shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{shown} is longer than {schema['maxLength']}")
        return problems

    # --- Responses --------------------------------------------------------------------------
    def check_response(self, *, method: str, path: str, status: int, body: Any) -> list[str]:
        """How a successful JSON answer differs from the operation's response schema."""
        operation = self.operation(method, path)
        if operation is None or not 200 <= status < 300:
            return []
        where = f"{method} {path} answered {status}"
        response = operation.definition.get("responses", {}).get(str(status))
        if response is None:
            return [f"{where}: status not in the spec"]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        return [f"{where}: {problem}" for problem in self._check_json("body", schema, body)]

    def _check_json(self, where: str, schema: dict[str, Any], value: Any) -> list[str]:
        schema = self._resolve(schema)
        if value is None:
            return [] if schema.get("nullable") else [f"{where} is null"]
        kind = schema.get("type", "string")
        expected = {
            "object": dict,
            "array": list,
            "string": str,
            "integer": int,
            "number": int | float,
            "boolean": bool,
        }.get(kind, object)
        if not isinstance(value, expected) or (kind in ("integer", "number") and value is True):
            return [f"{where} is {type(value).__name__}, not {kind}"]
        if kind == "object" and "properties" in schema:
            properties = schema["properties"]
            problems = [f"{where}.{name} is missing" for name in properties if name not in value]
            problems += [
                f"{where}.{name} is not in the schema" for name in value if name not in properties
            ]
            for name, item in value.items():
                if name in properties:
                    problems += self._check_json(f"{where}.{name}", properties[name], item)
            return problems
        if kind == "array":
            return [
                problem
                for index, item in enumerate(value)
                for problem in self._check_json(f"{where}[{index}]", schema.get("items", {}), item)
            ]
        if kind != "string":
            return []
        problems = []
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{where}={value!r} is not one of {schema['enum']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}={value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time-rfc-2822":
            try:
                email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                problems.append(f"{where}={value!r} is not an RFC 2822 date")
        return problems

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node


def prose_enum(description: str) -> list[str]:
    """The values a description lists after "Can be:", up to the end of that sentence."""
    match = re.search(r"Can be:(.*?)(?:\.\s|\.$|$)", description, re.DOTALL)
    if match is None:
        return []
    listed = match.group(1).split("default")[0]
    return re.findall(r"`([^`]+)`", listed)


@functools.cache
def _load(path: Path) -> TwilioSpec:
    with gzip.open(path, "rt", encoding="utf-8") as spec:
        return TwilioSpec(json.load(spec))


def _path_regex(template: str) -> str:
    pieces = re.split(r"\{(\w+)\}", template)
    return "".join(
        f"(?P<{piece}>[^/]+?)" if index % 2 else re.escape(piece)
        for index, piece in enumerate(pieces)
    )


def _uri_problem(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an absolute http(s) URL"
    if "_" in parts.hostname:
        # "URLs must contain a valid hostname (underscores are not permitted)."
        return "has an underscore in its host name"
    return ""
