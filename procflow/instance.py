"""What the engine hands back: a loaded instance, and a summary for listings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .bookkeeping import Bookkeeping, Buffered, Failure
from .state import State, ThreadStatus, WaitEventStatus, WorkflowStatus
from .state_codec import decode_state

__all__ = ["Instance", "InstanceSummary", "Parking", "parkings"]

W = TypeVar("W")

_LISTENING = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP, WaitEventStatus.SETUP_ERROR)


@dataclass(frozen=True, slots=True)
class Parking:
    """Where one thread is parked: on a Wait (``events`` it accepts) or a WaitFor."""

    thread: str
    at: str
    events: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.at}({', '.join(self.events)})" if self.events else self.at
        return where if self.thread == "_main_" else f"{self.thread}: {where}"


def parkings(state: State) -> list[Parking]:
    """Where each parked thread of ``state`` is, in thread order."""
    result = []
    for t in state.threads:
        if t.status == ThreadStatus.WAITING_EVENT:
            events = tuple(e.req.name for e in t.wait_events if e.status in _LISTENING)
            result.append(Parking(t.id, t.cur_step, events))
        elif t.status == ThreadStatus.WAITING_CONDITION:
            result.append(Parking(t.id, t.cur_step))
    return result


@dataclass(frozen=True, slots=True)
class Instance(Generic[W]):
    """A stored workflow instance, loaded: its data, its ``State`` and row metadata."""

    id: str
    workflow: str
    data: W
    state: State
    version: int
    correlation_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    meta: Bookkeeping = field(default_factory=Bookkeeping)

    @property
    def status(self) -> WorkflowStatus:
        """The instance's status; ``FAILED`` when a step's retries ran out."""
        return WorkflowStatus.FAILED if self.meta.failure else self.state.status

    @property
    def failure(self) -> Failure | None:
        """Which step failed, where and why, when the status is ``FAILED``."""
        return self.meta.failure

    @property
    def inbox(self) -> list[Buffered]:
        """Events that arrived early and wait for a thread to park on them, oldest first."""
        return self.meta.inbox

    @property
    def parked(self) -> list[Parking]:
        """Where each parked thread is."""
        return parkings(self.state)

    @property
    def accepts(self) -> list[str]:
        """The names of the events that can be sent to the instance now.

        None while a cancel is in progress or was cut short (``state.cancelling``):
        the instance takes no events until its cancel completes.
        """
        if self.state.cancelling:
            return []
        return [name for p in self.parked for name in p.events]


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One line of a listing: row metadata and where the instance is parked.

    ``error`` is set when the stored state cannot be decoded (``parked`` is
    then empty) or, in ``Engine.list``, when the stored data no longer
    validates as its workflow class; listing never fails because one row is
    corrupt.
    """

    id: str
    workflow: str
    status: str
    version: int
    correlation_id: str | None
    updated_at: float
    parked: tuple[Parking, ...]
    error: str = ""

    def describe_parked(self) -> str:
        """``parked`` as short text, e.g. ``decision(approve, deny)``."""
        return "; ".join(str(p) for p in self.parked)


def summarize(record: Any) -> InstanceSummary:
    """An ``InstanceSummary`` of a store's ``InstanceRecord``."""
    parked: tuple[Parking, ...] = ()
    error = ""
    try:
        parked = tuple(parkings(decode_state(record.state, record.id, record.workflow, record.status)))
    except Exception as e:
        error = f"stored state cannot be decoded: {type(e).__name__}"
    else:
        try:
            Bookkeeping.load(record.meta)
        except ValueError as e:
            error = f"stored bookkeeping (meta) cannot be decoded: {type(e).__name__}"
    return InstanceSummary(
        id=record.id,
        workflow=record.workflow,
        status=record.status,
        version=record.version,
        correlation_id=record.correlation_id,
        updated_at=record.updated_at,
        parked=parked,
        error=error,
    )
