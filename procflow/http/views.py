"""The JSON bodies of the HTTP edge, as pydantic models: they serialise answers
and give the OpenAPI document its schemas."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from ..instance import Instance, InstanceSummary, Parking
from ..stores.base import HistoryEntry
from .events import AcceptedEvent, event_schemas

__all__ = [
    "AcceptedEventView",
    "CallbackView",
    "CancelRequest",
    "EventView",
    "HistoryView",
    "InstancePage",
    "InstanceView",
    "ParkingView",
    "Problem",
    "SummaryView",
    "WorkflowView",
    "instance_path",
    "instance_view",
    "summary_view",
    "workflow_path",
]


def workflow_path(base: str, workflow: str) -> str:
    """The path of a workflow's instances below the app's ``base`` (its root path)."""
    return f"{base}/workflows/{quote(workflow, safe='')}/instances"


def instance_path(base: str, workflow: str, id: str) -> str:
    """The path of an instance's resource below the app's ``base`` (its root path)."""
    return f"{workflow_path(base, workflow)}/{quote(id, safe='')}"


class ParkingView(BaseModel):
    """Where one thread is parked: on the Wait or WaitFor ``at``, accepting ``events``."""

    thread: str
    at: str
    events: list[str]


class AcceptedEventView(BaseModel):
    """An event the instance accepts now, with what to send and what comes back."""

    event: str
    thread: str
    wait: str
    pc: int = Field(description="the parking's pc; send it as ?pc= to deliver to this parking only")
    handler: str = Field(description="the handler's type (``event`` for OnEvent)")
    url: str = Field(description="POST the payload here")
    payload_schema: dict[str, Any] | None = Field(description="JSON Schema of the payload; null: any JSON")
    reply_schema: dict[str, Any] | None = Field(description="JSON Schema of the reply; null: any JSON")


class InstanceView(BaseModel):
    """One instance: its status, where it is parked, what it accepts now, and its data."""

    id: str
    workflow: str
    status: str
    correlation_id: str | None
    version: int
    created_at: float
    updated_at: float
    reason: str = Field(description="why it was cancelled")
    url: str
    parked: list[ParkingView]
    accepts: list[AcceptedEventView]
    data: Any = Field(description="the workflow's data as stored")


class SummaryView(BaseModel):
    """One instance in a listing."""

    id: str
    workflow: str
    status: str
    version: int
    correlation_id: str | None
    updated_at: float
    url: str
    parked: list[ParkingView]
    error: str = Field(default="", description="set when the stored state cannot be decoded")


class InstancePage(BaseModel):
    """A page of instances, ordered by id; ``next`` is the URL of the next page, if any."""

    items: list[SummaryView]
    next: str | None


class HistoryView(BaseModel):
    """One line of an instance's history."""

    at: float
    kind: str
    name: str
    thread: str
    detail: str


class EventView(BaseModel):
    """An event a workflow declares, with its schemas."""

    event: str
    handler: str
    payload_schema: dict[str, Any] | None
    reply_schema: dict[str, Any] | None


class WorkflowView(BaseModel):
    """A registered workflow and the events its definition declares."""

    name: str
    instances_url: str
    events: list[EventView]


class CancelRequest(BaseModel):
    """The body of a cancel: why, and whether to undo completed steps first."""

    reason: str = Field(min_length=1, pattern=r"\S")
    compensate: bool = False


class CallbackView(BaseModel):
    """What a signed callback URL delivers, while its event is still awaited."""

    instance_id: str
    workflow: str
    event: str
    thread: str
    pc: int
    expires_at: float
    payload_schema: dict[str, Any] | None
    reply_schema: dict[str, Any] | None


class Problem(BaseModel):
    """RFC 9457 problem details: ``title`` is the procflow error's class name."""

    type: str
    title: str
    status: int
    detail: str
    instance: str = ""
    errors: list[dict[str, Any]] | None = Field(default=None, description="schema errors (422)")


def _parking(p: Parking) -> ParkingView:
    return ParkingView(thread=p.thread, at=p.at, events=list(p.events))


def accepted_view(event: AcceptedEvent, url: str) -> AcceptedEventView:
    """The view of one accepted event; ``url`` is the instance's path."""
    payload, reply = event_schemas(event.handler) if event.handler is not None else (None, None)
    return AcceptedEventView(
        event=event.name,
        thread=event.thread,
        wait=event.wait,
        pc=event.pc,
        handler=event.handler.type if event.handler is not None else "",
        url=f"{url}/events/{quote(event.name, safe='')}",
        payload_schema=payload,
        reply_schema=reply,
    )


def instance_view(
    instance: Instance[Any], data_json: str, accepts: list[AcceptedEvent], base: str
) -> InstanceView:
    """The view of a loaded instance; ``data_json`` is its data as the store keeps it."""
    url = instance_path(base, instance.workflow, instance.id)
    return InstanceView(
        id=instance.id,
        workflow=instance.workflow,
        status=instance.status.value,
        correlation_id=instance.correlation_id,
        version=instance.version,
        created_at=instance.created_at,
        updated_at=instance.updated_at,
        reason=instance.state.reason,
        url=url,
        parked=[_parking(p) for p in instance.parked],
        accepts=[accepted_view(e, url) for e in accepts],
        data=json.loads(data_json),
    )


def summary_view(summary: InstanceSummary, base: str) -> SummaryView:
    """The view of one listed instance."""
    return SummaryView(
        id=summary.id,
        workflow=summary.workflow,
        status=summary.status,
        version=summary.version,
        correlation_id=summary.correlation_id,
        updated_at=summary.updated_at,
        url=instance_path(base, summary.workflow, summary.id),
        parked=[_parking(p) for p in summary.parked],
        error=summary.error,
    )


def history_view(entry: HistoryEntry) -> HistoryView:
    """The view of one history line."""
    return HistoryView(
        at=entry.at, kind=entry.kind, name=entry.name, thread=entry.thread, detail=entry.detail
    )
