"""Hardened input audit: every request body and query parameter each service documents is bounded.

Read from the published OpenAPI documents (built from the msgspec types the handlers decode),
so what is checked is what the code enforces: strings have a maxLength (or an enum, a
pattern, a date-time format), numbers a minimum and a maximum, arrays maxItems, maps
maxProperties, and bodies refuse unknown fields (additionalProperties false -> 422).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stagedoor.cli import COMPONENTS
from stagedoor.keys import KeyRing
from stagedoor.settings import load_settings
from stagedoor.web import OPENAPI

BOUNDED_FORMATS = {"date-time", "date", "time", "uuid", "email", "duration"}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def problems_in(schema: dict[str, Any], components: dict[str, Any], where: str,
                seen: frozenset[str] = frozenset(), open_objects: bool = False) -> Iterator[str]:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return
        seen = seen | {name}
    schema = _resolve(schema, components)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, branch in enumerate(schema.get(key, ())):
            yield from problems_in(branch, components, f"{where}[{key}{i}]", seen, open_objects)
    if "enum" in schema or "const" in schema:
        return
    types = schema.get("type")
    types = types if isinstance(types, list) else [types] if types else []
    for t in types:
        if t == "string":
            if not ("maxLength" in schema or schema.get("format") in BOUNDED_FORMATS or "pattern" in schema):
                yield f"{where}: string without maxLength"
        elif t in ("integer", "number"):
            keys = schema.keys()
            if not ({"minimum", "exclusiveMinimum"} & keys and {"maximum", "exclusiveMaximum"} & keys):
                yield f"{where}: {t} without minimum and maximum"
        elif t == "array":
            if "maxItems" not in schema:
                yield f"{where}: array without maxItems"
            items = schema.get("items")
            if isinstance(items, dict):
                yield from problems_in(items, components, f"{where}[]", seen)
            for i, item in enumerate(schema.get("prefixItems", ())):
                yield from problems_in(item, components, f"{where}[{i}]", seen)
        elif t == "object":
            extra = schema.get("additionalProperties", True)
            if "properties" in schema and extra is not False and not open_objects:
                yield f"{where}: object accepts unknown fields (forbid_unknown_fields=True)"
            if isinstance(extra, dict):
                if "maxProperties" not in schema:
                    yield f"{where}: map without maxProperties"
                yield from problems_in(extra, components, f"{where}{{*}}", seen)
            for name, prop in schema.get("properties", {}).items():
                yield from problems_in(prop, components, f"{where}.{name}", seen)


def audit(spec: dict[str, Any]) -> list[str]:
    components = spec.get("components", {}).get("schemas", {})
    found: list[str] = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            label = f"{method.upper()} {path}"
            for param in op.get("parameters", ()):
                if param["in"] in ("query", "path"):
                    found += problems_in(param["schema"], components, f"{label} {param['in']} {param['name']}")
            for ctype, media in op.get("requestBody", {}).get("content", {}).items():
                # RFC 6749 3.2: form-encoded OAuth requests MUST ignore unrecognized parameters.
                found += problems_in(media["schema"], components, f"{label} body({ctype})",
                                     open_objects=ctype == "application/x-www-form-urlencoded")
    return found


def spec_of(service: str, tmp_path: Any) -> dict[str, Any]:
    settings = load_settings(environ={}, redis_url="redis://unused", database_url="postgresql://unused",
                             signing_keys_dir=str(tmp_path), admin_api_key="k" * 32, queue_token_secret="s" * 32)
    return COMPONENTS[service].create_app(settings, KeyRing.generate())[OPENAPI]


def test_the_audit_finds_what_it_should() -> None:
    spec = {"paths": {"/x": {"post": {
        "parameters": [{"in": "query", "name": "q", "schema": {"type": "string"}}],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/B"}}}}}}},
        "components": {"schemas": {"B": {"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 0}, "tags": {"type": "array", "items": {"type": "string"}},
            "ok": {"type": "string", "maxLength": 3}, "kind": {"enum": ["a", "b"]}}}}}}
    assert sorted(audit(spec)) == sorted([
        "POST /x query q: string without maxLength",
        "POST /x body(application/json): object accepts unknown fields (forbid_unknown_fields=True)",
        "POST /x body(application/json).n: integer without minimum and maximum",
        "POST /x body(application/json).tags: array without maxItems",
        "POST /x body(application/json).tags[]: string without maxLength",
    ])


@pytest.mark.parametrize("service", sorted(COMPONENTS))
def test_every_request_input_is_bounded(service: str, tmp_path: Any) -> None:
    found = audit(spec_of(service, tmp_path))
    assert not found, f"{service}: {len(found)} unbounded inputs:\n" + "\n".join(found)
