"""Which events a workflow has, and which an instance accepts now, with their handlers.

The engine reports accepted events by name; the handler objects (and so the
payload and reply schemas of ``OnEvent``) come from the instance's own
``definition()``, built from its loaded data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import PydanticUserError

from ..export import ExportError
from ..handlers import FunctionHandler, Handler
from ..instance import Instance
from ..state import ThreadStatus, WaitEventStatus
from ..statements import On, Stmt, walk

__all__ = ["AcceptedEvent", "accepted_events", "event_schemas", "events_of"]

_LISTENING = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP, WaitEventStatus.SETUP_ERROR)


def events_of(definition: Stmt) -> dict[str, On]:
    """The events (``On`` and ``OnEvent``) of a definition tree by name, in tree order."""
    found: dict[str, On] = {}

    def visit(stmt: Stmt) -> None:
        if isinstance(stmt, On):
            found.setdefault(stmt.name, stmt)

    walk(definition, visit)
    return found


def event_schemas(handler: Handler) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The payload and reply JSON Schemas of a handler; ``None`` for handlers without them.

    Only ``OnEvent`` handlers (``FunctionHandler``) declare schemas. The
    schemas depend only on the payload and reply types, so they are made once
    per pair of types (a copy is returned).

    Raises:
        ExportError: the payload or reply type has no JSON Schema.
    """
    if not isinstance(handler, FunctionHandler):
        return None, None
    try:
        key = (handler.payload_type, handler.reply_type)
        hash(key)
    except TypeError:  # an unhashable type (Annotated metadata, say): not cached
        return _schemas(handler)
    cached = _by_types.get(key)
    if cached is None:
        cached = _by_types[key] = _schemas(handler)
    return copy.deepcopy(cached)


_by_types: dict[tuple[Any, Any], tuple[dict[str, Any], dict[str, Any]]] = {}


def _schemas(handler: FunctionHandler) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return handler.payload_schema(), handler.reply_schema()
    except PydanticUserError as e:  # a type pydantic validates but cannot describe
        raise ExportError(f"{handler.fn!r}: its payload or reply type has no JSON Schema: {e}") from e


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """One event an instance accepts now: where it is parked and its handler."""

    name: str
    thread: str
    wait: str
    pc: int
    handler: Handler | None


def accepted_events(instance: Instance[Any]) -> list[AcceptedEvent]:
    """The events ``instance`` accepts now, in thread order (none while it is being cancelled).

    ``handler`` is ``None`` when the instance's definition no longer has the
    event (a new version of the workflow dropped it).

    Raises:
        DefinitionError: the instance's ``definition()`` is invalid.
    """
    if instance.state.cancelling:
        return []  # no event is taken until the cancel completes
    parked = [
        (t, e)
        for t in instance.state.threads
        if t.status == ThreadStatus.WAITING_EVENT
        for e in t.wait_events
        if e.status in _LISTENING
    ]
    if not parked:
        return []
    events = events_of(instance.data.definition())
    return [
        AcceptedEvent(
            e.req.name, t.id, t.cur_step, e.req.pc, getattr(events.get(e.req.name), "handler", None)
        )
        for t, e in parked
    ]
