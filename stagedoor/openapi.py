"""OpenAPI 3.1 documents built from the msgspec request/response types of each route.

Handlers are registered through an :class:`Api` (a RouteTableDef that also records the
operation's types), so the published ``/openapi.json`` cannot drift from the code:

    api = Api()

    @api.post("/api/events/{event_id}/holds", body=HoldRequest, response=HoldOut, status=201,
              errors=(404, 409, 422), summary="Hold seats", auth="bearer")
    async def create_hold(request): ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from aiohttp import web

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")

_ERROR_TEXT = {
    400: "Malformed request",
    401: "Missing or invalid credentials",
    402: "Payment declined",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    413: "Body too large",
    415: "Wrong content type",
    422: "Invalid input",
    429: "Rate limited (see Retry-After)",
    502: "Upstream failure",
    503: "Unavailable",
}


class Problem(msgspec.Struct, kw_only=True):
    """application/problem+json (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None


class Operation(msgspec.Struct, kw_only=True):
    method: str
    path: str
    handler_name: str
    summary: str
    body: Any = None
    body_content_type: str = "application/json"
    query: Any = None
    response: Any = None
    response_content_type: str = "application/json"
    status: int = 200
    errors: tuple[int, ...] = ()
    auth: str | None = None
    tags: tuple[str, ...] = ()
    extra_responses: dict[int, str] = {}


class Api:
    """A route table that remembers the types of each operation for the OpenAPI document."""

    def __init__(self, tag: str | None = None) -> None:
        self.routes = web.RouteTableDef()
        self.operations: list[Operation] = []
        self.tag = tag

    def route(self, method: str, path: str, *, summary: str, body: Any = None, query: Any = None,
              response: Any = None, status: int = 200, errors: Sequence[int] = (), auth: str | None = None,
              body_content_type: str = "application/json", response_content_type: str = "application/json",
              tags: Sequence[str] = (), extra_responses: dict[int, str] | None = None,
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.routes.route(method, path)(handler)
            self.operations.append(Operation(
                method=method.lower(), path=path, handler_name=handler.__name__, summary=summary,
                body=body, query=query, response=response, status=status, errors=tuple(errors),
                auth=auth, body_content_type=body_content_type, response_content_type=response_content_type,
                tags=tuple(tags) or ((self.tag,) if self.tag else ()), extra_responses=extra_responses or {},
            ))
            return handler
        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("DELETE", path, **kw)


def _schema_for(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        component: dict[str, Any] = components[ref.rsplit("/", 1)[-1]]
        return component
    return schema


def build_spec(title: str, version: str, apis: Iterable[Api], description: str = "",
               max_body_bytes: int | None = None) -> dict[str, Any]:
    operations = [op for api in apis for op in api.operations]
    types: list[Any] = [Problem]
    for op in operations:
        for t in (op.body, op.query, op.response):
            if t is not None and not isinstance(t, str):
                types.append(t)
    schemas, components = _schema_for(types)
    by_type = dict(zip(map(id, types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        oapi_path = _PATH_PARAM.sub(r"{\1}", op.path)
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 200}}
            for name in _PATH_PARAM.findall(op.path)
        ]
        if op.query is not None:
            qschema = _resolve(by_type[id(op.query)], components)
            required = set(qschema.get("required", ()))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        entry: dict[str, Any] = {
            "operationId": op.handler_name,
            "summary": op.summary,
            "responses": {},
        }
        if op.tags:
            entry["tags"] = list(op.tags)
        if params:
            entry["parameters"] = params
        if op.body is not None:
            # a raw body (read as it came, e.g. to check a signature over it) is bounded by the size limit
            body_schema = ({"type": "string", "description": op.body,
                            **({"maxLength": max_body_bytes} if max_body_bytes else {})}
                           if isinstance(op.body, str) else by_type[id(op.body)])
            entry["requestBody"] = {"required": True, "content": {op.body_content_type: {"schema": body_schema}}}
        if op.response is None:
            entry["responses"][str(op.status)] = {"description": "Success"}
        else:
            rschema = {"type": "string"} if isinstance(op.response, str) else by_type[id(op.response)]
            entry["responses"][str(op.status)] = {
                "description": "Success", "content": {op.response_content_type: {"schema": rschema}},
            }
        for code, text in op.extra_responses.items():
            entry["responses"][str(code)] = {"description": text}
        for code in sorted(set(op.errors) | {400, 413, 415, 422} if op.body is not None else set(op.errors)):
            entry["responses"].setdefault(str(code), {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {"application/problem+json": {"schema": by_type[id(Problem)]}},
            })
        if op.auth:
            entry["security"] = [{"bearerAuth": []}]
            for code in (401, 403):
                entry["responses"].setdefault(str(code), {
                    "description": _ERROR_TEXT[code],
                    "content": {"application/problem+json": {"schema": by_type[id(Problem)]}},
                })
        paths.setdefault(oapi_path, {})[op.method] = entry

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
