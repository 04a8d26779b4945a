"""The OpenAPI 3.1 document of an app, generated from the registered workflows.

Every registered workflow gets its own paths (start, list, get, cancel,
history) and one operation per event, whose request and response bodies are
the event's payload and reply schemas (from ``OnEvent``). Schemas that
pydantic puts in ``$defs`` move to ``components/schemas``.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..errors import PayloadError
from ..handlers import FunctionHandler, Handler
from ..state import WorkflowStatus
from .catalog import Catalog, WorkflowEntry
from .events import event_schemas
from .headers import IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY
from .problems import PROBLEM_JSON
from .query import MAX_PAGE
from .views import (
    CallbackView,
    CancelRequest,
    HistoryView,
    InstancePage,
    InstanceView,
    Problem,
    WorkflowView,
)

__all__ = ["build_openapi"]

_COMPONENT_NAME = re.compile(r"[^A-Za-z0-9._-]")
_REF = "#/components/schemas/"

_ERRORS: dict[str, str] = {
    "400": "Malformed request: the body is not JSON, or a query parameter is invalid",
    "403": "The callback token is malformed, tampered with, unknown or expired",
    "404": "No such instance, workflow or event",
    "409": "The instance is not waiting for this now, or changed concurrently",
    "410": "The callback URL was used, or its event is no longer awaited",
    "413": "The body is too large",
    "415": "The body is not application/json",
    "422": "The body fails its schema; `errors` lists why",
    "500": "A step, setup or handler raised, or the server failed",
    "503": "The store failed; try again",
}


# The operationIds of the paths that are not a workflow's; a workflow's never take them.
_LIST_WORKFLOWS, _LIST_INSTANCES = "list_workflows", "list_instances"
_DESCRIBE_CALLBACK, _DELIVER_CALLBACK = "describe_callback", "deliver_callback"


class _Builder:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self.operation_ids = {_LIST_WORKFLOWS, _LIST_INSTANCES, _DESCRIBE_CALLBACK, _DELIVER_CALLBACK}

    def op_id(self, *parts: str) -> str:
        """A unique operationId of ``parts``: names that differ only in characters an
        id cannot hold ("close now", "close_now") get ``_2``, ``_3``, ... in order."""
        base = "_".join(_COMPONENT_NAME.sub("_", p) for p in parts)
        op_id, n = base, 1
        while op_id in self.operation_ids:
            n += 1
            op_id = f"{base}_{n}"
        self.operation_ids.add(op_id)
        return op_id

    def models(self, *models: type[BaseModel]) -> None:
        self.components.update(copy.deepcopy(_model_schemas(models)))

    def hoist(self, schema: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
        """``schema`` with its ``$defs`` moved into the components (renamed on a clash)."""
        if schema is None:
            return {}
        schema = copy.deepcopy(schema)
        defs: dict[str, Any] = schema.pop("$defs", {})
        plain = {n: _COMPONENT_NAME.sub("_", n) for n in defs}
        moved = {plain[n]: _rewrite(d, plain) for n, d in defs.items()}
        if any(self.components.get(k, v) != v for k, v in moved.items()):
            plain = {n: self._free(_COMPONENT_NAME.sub("_", f"{prefix}{n}")) for n in defs}
            moved = {plain[n]: _rewrite(d, plain) for n, d in defs.items()}
        self.components.update(moved)
        result: dict[str, Any] = _rewrite(schema, plain)
        return result

    def _free(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.components:
            n += 1
            candidate = f"{name}_{n}"
        return candidate


@functools.cache
def _model_schemas(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """The component schemas of the edge's own models (the same for every app)."""
    _, schema = models_json_schema([(m, "validation") for m in models], ref_template=_REF + "{model}")
    defs: dict[str, Any] = schema.get("$defs", {})
    return defs


def _rewrite(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v, names) for k, v in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = _REF + names[ref.removeprefix("#/$defs/")]
        return out
    if isinstance(node, list):
        return [_rewrite(v, names) for v in node]
    return node


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _responses(
    ok: str, description: str, schema: dict[str, Any], *errors: str, store: bool = True
) -> dict[str, Any]:
    """The responses of an operation: ``ok`` with ``schema``, and ``errors`` as problem details.

    Every operation may fail with 500; one that reads or writes the store (``store``) with 503.
    """
    responses: dict[str, Any] = {ok: {"description": description, "content": _json(schema)}}
    for code in sorted({*errors, "500", *(("503",) if store else ())}):
        responses[code] = {
            "description": _ERRORS[code],
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
    return responses


def _with_location(created: str, description: str, schema: dict[str, Any], *errors: str) -> dict[str, Any]:
    """``_responses`` of an operation that creates a resource: ``created`` has its ``Location``."""
    responses = _responses(created, description, schema, *errors)
    responses[created]["headers"] = {
        "Location": {"description": "the URL of the new instance", "schema": {"type": "string"}}
    }
    return responses


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "the instance's id or correlation id",
    "schema": {"type": "string"},
}
_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "the signed token",
    "schema": {"type": "string"},
}
_IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "description": (
        "a key for this delivery: a repeat with the same key gets the first reply, runs nothing; "
        "the key sent with another body answers 422 IdempotencyKeyReused"
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}
_PAGING = [
    _query(
        "status",
        "only instances with this status (repeatable)",
        {
            "type": "array",
            "items": {"type": "string", "enum": [s.value for s in WorkflowStatus]},
        },
    ),
    _query("after", "the id after which the page starts (from `next`)", {"type": "string"}),
    _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100}),
]


def _workflow_paths(b: _Builder, w: WorkflowEntry) -> dict[str, Any]:
    base = f"/workflows/{quote(w.name, safe='')}/instances"
    tags = [w.name]
    paths: dict[str, Any] = {
        base: {
            "post": {
                "operationId": b.op_id("start", w.name),
                "summary": f"Start a {w.name}",
                "tags": tags,
                "parameters": [
                    _query("id", "the new instance's id (default: a time-ordered id)", {"type": "string"}),
                    _query("correlation_id", "a second, unique key for the instance", {"type": "string"}),
                ],
                "requestBody": {
                    "required": not w.starts_without_data(),
                    "description": "the workflow's data",
                    "content": _json(b.hoist(w.data_schema(), f"{w.name}.")),
                },
                "responses": _with_location(
                    "201",
                    "Started; runs until every thread is parked",
                    _ref("InstanceView"),
                    "400",
                    "404",
                    "409",
                    "413",
                    "415",
                    "422",
                    "500",
                ),
            },
            "get": {
                "operationId": b.op_id("list", w.name),
                "summary": f"List {w.name} instances",
                "tags": tags,
                "parameters": _PAGING,
                "responses": _responses("200", "A page of instances", _ref("InstancePage"), "400"),
            },
        },
        base + "/{key}": {
            "get": {
                "operationId": b.op_id("get", w.name),
                "summary": f"Get a {w.name}: status, where it is parked, which events it accepts",
                "tags": tags,
                "parameters": [_KEY],
                "responses": _responses("200", "The instance", _ref("InstanceView"), "404", "500"),
            },
        },
        base + "/{key}/cancel": {
            "post": {
                "operationId": b.op_id("cancel", w.name),
                "summary": f"Cancel a {w.name}",
                "tags": tags,
                "parameters": [_KEY],
                "requestBody": {"required": True, "content": _json(_ref("CancelRequest"))},
                "responses": _responses(
                    "200", "Cancelled", _ref("InstanceView"), "400", "404", "409", "413", "415", "422", "500"
                ),
            },
        },
        base + "/{key}/history": {
            "get": {
                "operationId": b.op_id("history", w.name),
                "summary": f"The history of a {w.name}, oldest first",
                "tags": tags,
                "parameters": [_KEY],
                "responses": _responses(
                    "200", "The history", {"type": "array", "items": _ref("HistoryView")}, "404"
                ),
            },
        },
    }
    for name, on in w.events.items():
        payload, reply = event_schemas(on.handler)
        operation: dict[str, Any] = {
            "operationId": b.op_id("send", w.name, name),
            "summary": f"Deliver {name!r} to a {w.name}",
            "description": f"handler: {on.handler.type}; the response is the handler's reply",
            "tags": tags,
            "parameters": [
                _KEY,
                _query("thread", "deliver to this thread only", {"type": "string"}),
                _query(
                    "pc", "deliver to this parking only (from `accepts`)", {"type": "integer", "minimum": 1}
                ),
                _IDEMPOTENCY_KEY,
            ],
            "responses": _responses(
                "200",
                "Delivered; the handler's reply",
                b.hoist(reply, f"{w.name}.{name}."),
                "400",
                "404",
                "409",
                "413",
                "415",
                "422",
                "500",
            ),
        }
        if payload != {"type": "null"}:
            operation["requestBody"] = {
                "required": payload is not None and not _takes_no_payload(on.handler),
                "description": "the event's payload",
                "content": _json(b.hoist(payload, f"{w.name}.{name}.")),
            }
        paths[f"{base}/{{key}}/events/{quote(name, safe='')}"] = {"post": operation}
    return paths


def _takes_no_payload(handler: Handler) -> bool:
    """Whether an empty body (delivered as ``None``) is a valid payload of ``handler``."""
    if not isinstance(handler, FunctionHandler):
        return True
    try:
        handler.validate(None)
    except PayloadError:
        return False
    return True


def _management_paths() -> dict[str, Any]:
    return {
        "/workflows": {
            "get": {
                "operationId": _LIST_WORKFLOWS,
                "summary": "The registered workflows and their events",
                "tags": ["workflows"],
                "responses": _responses(
                    "200", "The workflows", {"type": "array", "items": _ref("WorkflowView")}, store=False
                ),
            },
        },
        "/instances": {
            "get": {
                "operationId": _LIST_INSTANCES,
                "summary": "List instances of every workflow",
                "tags": ["instances"],
                "parameters": [_query("workflow", "only this workflow", {"type": "string"}), *_PAGING],
                "responses": _responses("200", "A page of instances", _ref("InstancePage"), "400"),
            },
        },
    }


def _callback_paths() -> dict[str, Any]:
    return {
        "/callbacks/{token}": {
            "get": {
                "operationId": _DESCRIBE_CALLBACK,
                "summary": "What a signed callback URL delivers (delivers nothing)",
                "tags": ["callbacks"],
                "parameters": [_TOKEN],
                "responses": _responses("200", "The callback", _ref("CallbackView"), "403", "404", "410"),
            },
            "post": {
                "operationId": _DELIVER_CALLBACK,
                "summary": "Deliver the one event a signed callback URL names",
                "tags": ["callbacks"],
                "parameters": [_TOKEN, _IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": False,
                    "description": "the event's payload",
                    "content": _json({}),
                },
                "responses": _responses(
                    "200",
                    "Delivered; the handler's reply",
                    {},
                    "400",
                    "403",
                    "404",
                    "409",
                    "410",
                    "413",
                    "415",
                    "422",
                    "500",
                ),
            },
        },
    }


def build_openapi(
    catalog: Catalog,
    *,
    title: str = "procflow",
    version: str = "0.1.0",
    management: bool = True,
    callbacks: bool = True,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app serving ``catalog``'s workflows.

    ``management`` includes the paths to start, list, get, cancel and
    deliver events; ``callbacks`` the signed callback paths.

    Raises:
        ExportError: an ``OnEvent``'s payload or reply type has no JSON Schema.
    """
    b = _Builder()
    b.models(Problem)
    paths: dict[str, Any] = {}
    if management:
        b.models(InstanceView, InstancePage, CancelRequest, HistoryView, WorkflowView)
        paths.update(_management_paths())
        for entry in catalog.entries.values():
            paths.update(_workflow_paths(b, entry))
    if callbacks:
        b.models(CallbackView)
        paths.update(_callback_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": dict(sorted(b.components.items()))},
    }
