"""The registered workflows as the HTTP edge sees them: name, data codec, events."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..engine import Engine
from ..errors import DefinitionError
from ..statements import On
from ..workflow_type import WorkflowType
from .errors import RequestValidationError
from .samples import sample_events

__all__ = ["Catalog", "WorkflowEntry"]


@dataclass(frozen=True, slots=True)
class WorkflowEntry:
    """One registered workflow: its codec and the events its definition declares."""

    name: str
    wtype: WorkflowType
    events: dict[str, On]

    def data_schema(self) -> dict[str, Any]:
        """The JSON Schema of the data that starts an instance (without ``State`` fields)."""
        key = (self.wtype.cls, self.wtype.state_fields)
        if key not in _data_schemas:
            _data_schemas[key] = _data_schema(*key)
        return copy.deepcopy(_data_schemas[key])

    def starts_without_data(self) -> bool:
        """Whether a start without a body (its data ``{}``) validates: every field has a default."""
        try:
            self.new_workflow({})
        except RequestValidationError:
            return False
        return True

    def new_workflow(self, data: Any) -> Any:
        """A workflow object from start data (a JSON object); ``State`` fields are ignored.

        Raises:
            RequestValidationError: the data does not validate against the class.
        """
        if not isinstance(data, dict):
            raise RequestValidationError(
                f"the data of a new {self.name!r} must be a JSON object, not {type(data).__name__}",
                [{"type": "dict_type", "loc": [], "msg": "Input should be an object", "input": data}],
            )
        fields = {k: v for k, v in data.items() if k not in self.wtype.state_fields}
        try:
            return self.wtype.adapter.validate_python(fields)
        except ValidationError as e:
            errors: list[dict[str, Any]] = json.loads(e.json(include_url=False))
            raise RequestValidationError(
                f"invalid data for a new {self.name!r}: {e.error_count()} error(s): "
                + "; ".join(f"{'.'.join(map(str, x['loc'])) or '(root)'}: {x['msg']}" for x in errors[:5]),
                errors,
            ) from e


_data_schemas: dict[tuple[type[Any], tuple[str, ...]], dict[str, Any]] = {}
"""Data schemas by class: they are the same for every app."""


def _data_schema(cls: type[Any], state_fields: tuple[str, ...]) -> dict[str, Any]:
    schema = TypeAdapter(cls).json_schema()
    props = schema.get("properties", {})
    for name in state_fields:
        props.pop(name, None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r not in state_fields]
        if not schema["required"]:
            del schema["required"]
    return prune_defs(schema)


def _check_segment(what: str, name: str, fix: str) -> None:
    """Refuse a name the app cannot put in a URL path: routers match the decoded path,
    where a ``/`` (even as ``%2F``) splits it, and clients resolve ``.`` and ``..`` away.

    Raises:
        DefinitionError: ``name`` holds a ``/`` or is ``.`` or ``..``.
    """
    if "/" in name or name in (".", ".."):
        raise DefinitionError(
            f"{what} cannot be served over HTTP: its name is part of a URL path, which a '/' would "
            f"split and '.' or '..' would resolve away; {fix}"
        )


class Catalog:
    """Every workflow registered with an engine, read once when the app is made.

    ``samples`` maps a workflow name to an instance whose ``definition()``
    lists the workflow's events (for classes that need data to build one).

    Raises:
        WorkflowSampleError: a workflow's events cannot be read.
        DefinitionError: a workflow class cannot be stored, or a workflow or
            event name cannot be a segment of a URL path.
    """

    def __init__(self, engine: Engine, samples: Mapping[str, Any] | None = None) -> None:
        samples = samples or {}
        self.entries: dict[str, WorkflowEntry] = {
            name: WorkflowEntry(name, WorkflowType(cls, name), sample_events(name, cls, samples.get(name)))
            for name, cls in engine.workflows.items()
        }
        for entry in self.entries.values():
            fix = "register it under another name: workflows={'name': cls}"
            _check_segment(f"workflow {entry.name!r}", entry.name, fix)
            for event in entry.events:
                _check_segment(f"event {event!r} of workflow {entry.name!r}", event, "rename the event")

    def get(self, name: str) -> WorkflowEntry | None:
        """The workflow registered under ``name``, if any."""
        return self.entries.get(name)


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref.removeprefix("#/$defs/"))
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def prune_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without the ``$defs`` nothing refers to any more."""
    defs = schema.pop("$defs", None)
    if not defs:
        return schema
    keep: set[str] = set()
    _refs(schema, keep)
    todo = list(keep)
    while todo:
        inner: set[str] = set()
        _refs(defs.get(todo.pop(), {}), inner)
        todo += inner - keep
        keep |= inner
    if keep:
        schema["$defs"] = {k: v for k, v in defs.items() if k in keep}
    return schema
