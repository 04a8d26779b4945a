"""The stored state of a workflow instance.

These pydantic models are everything the interpreter needs, besides the
workflow's own data, to continue an instance later on any machine. They
round-trip through ``model_dump_json()`` / ``model_validate_json()`` and are
what a store saves beside the workflow data.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAIN_THREAD",
    "CallbackRequest",
    "State",
    "Thread",
    "ThreadStatus",
    "WaitEvent",
    "WaitEventStatus",
    "WorkflowStatus",
]

MAIN_THREAD = "_main_"
"""Id and name of the main thread, the one that runs the definition's root."""


class WorkflowStatus(StrEnum):
    """Where a workflow instance is in its life."""

    RESUMING = "RESUMING"
    """At least one thread can run: call ``resume``."""
    WAITING = "WAITING"
    """Every thread is parked on an event or a condition."""
    FINISHED = "FINISHED"
    """The main thread returned; no threads are left."""
    CANCELLED = "CANCELLED"
    """``cancel`` was called; ``State.reason`` says why."""
    FAILED = "FAILED"
    """Set by the engine, never by the interpreter: a step failed and its retries
    ran out. The stored ``State`` stays ``RESUMING``; ``Engine.retry`` tries again."""


class ThreadStatus(StrEnum):
    """Where one thread is."""

    EXECUTING = "EXECUTING"
    """The thread is running (checkpoints taken while it runs show this)."""
    RESUMING = "RESUMING"
    """The thread can run: it continues after ``cur_step`` (or in ``cur_callback``)."""
    WAITING_EVENT = "WAITING_EVENT"
    """Parked on the ``Wait`` named ``cur_step``, listening for ``wait_events``."""
    WAITING_CONDITION = "WAITING_CONDITION"
    """Parked on the ``WaitFor`` named ``cur_step`` until its condition is true."""


class WaitEventStatus(StrEnum):
    """The life of one event a thread is (or was) parked on."""

    PENDING_SETUP = "PENDING_SETUP"
    SETUP = "SETUP"
    PENDING_TEARDOWN = "PENDING_TEARDOWN"
    SETUP_ERROR = "SETUP_ERROR"
    TEARDOWN_ERROR = "TEARDOWN_ERROR"


class CallbackRequest(BaseModel):
    """Names one event of one parked thread.

    A sender usually fills in only ``name``; ``thread_id`` chooses between
    threads parked on the same event, and a non-zero ``pc`` makes the callback
    apply only to that parking (an older one is stale). Handlers receive the
    stored request, with every field filled in.
    """

    workflow_id: str = ""
    thread_id: str = ""
    name: str
    pc: int = 0
    setup_data: str = ""


class WaitEvent(BaseModel):
    """One event of a ``Wait`` a thread is parked on, with its handler's progress."""

    type: str
    req: CallbackRequest
    status: WaitEventStatus = WaitEventStatus.PENDING_SETUP
    handled: bool = False
    error: str = ""


class Thread(BaseModel):
    """One logical thread: the main thread or one started by ``Go``."""

    id: str
    name: str
    status: ThreadStatus = ThreadStatus.RESUMING
    cur_step: str = ""
    cur_callback: str = ""
    wait_events: list[WaitEvent] = Field(default_factory=list)
    pc: int = 0


class State(BaseModel):
    """Everything the interpreter stores about one workflow instance."""

    model_config = ConfigDict(title="procflow State")

    id: str
    workflow: str
    status: WorkflowStatus = WorkflowStatus.RESUMING
    threads: list[Thread] = Field(default_factory=list)
    pc: int = 0
    completed: list[str] = Field(default_factory=list)
    reason: str = ""

    @classmethod
    def new(cls, id: str, workflow: str) -> State:
        """Return a fresh state whose only thread is the main thread, ready to run."""
        return cls(
            id=id,
            workflow=workflow,
            threads=[Thread(id=MAIN_THREAD, name=MAIN_THREAD)],
        )

    @property
    def cancelling(self) -> bool:
        """Whether a cancel began and was cut short: ``reason`` is set, the status is not ``CANCELLED`` yet.

        Such a workflow is partly undone, so ``resume`` and ``handle_callback``
        refuse it; calling ``cancel`` again finishes the cancel.
        """
        return bool(self.reason) and self.status not in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)


# Writing a model's four slots directly, as pydantic's model_construct() does.
_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
_set_values = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _built(cls: type[_M], values: dict[str, Any], fields: frozenset[str]) -> _M:
    """An instance of ``cls`` holding ``values``: every field of ``fields``, known good, all marked as set."""
    model = _new(cls)
    _set_values(model, values)
    _set_fields_set(model, set(fields))
    _set_extra(model, None)
    _set_private(model, None)
    return model


# Copied into each model _built makes: a copy of a set costs less than a set of a dict's keys.
_THREAD_FIELDS = frozenset(Thread.model_fields)
_REQUEST_FIELDS = frozenset(CallbackRequest.model_fields)
_EVENT_FIELDS = frozenset(WaitEvent.model_fields)
_RESUMING = ThreadStatus.RESUMING
_PENDING_SETUP = WaitEventStatus.PENDING_SETUP


def new_thread(id: str, name: str) -> Thread:
    """A thread ready to run, equal to ``Thread(id=id, name=name)``, every field marked as set.

    Built without validation, for the interpreter, which starts one per
    ``Go`` and knows its values are good: pydantic's validation of them costs
    more than the rest of starting the thread.
    """
    values: dict[str, Any] = {
        "id": id,
        "name": name,
        "status": _RESUMING,
        "cur_step": "",
        "cur_callback": "",
        "wait_events": [],
        "pc": 0,
    }
    return _built(Thread, values, _THREAD_FIELDS)


def new_wait_event(type: str, workflow_id: str, thread_id: str, name: str, pc: int) -> WaitEvent:
    """An event a thread just parked on, waiting for its setup, every field of it and of its
    request marked as set.

    Equal to ``WaitEvent(type=type, req=CallbackRequest(...))``, built without
    validation for the interpreter, which makes one per event of every
    ``Wait`` it parks on, from values it knows are good.
    """
    req: dict[str, Any] = {
        "workflow_id": workflow_id,
        "thread_id": thread_id,
        "name": name,
        "pc": pc,
        "setup_data": "",
    }
    values: dict[str, Any] = {
        "type": type,
        "req": _built(CallbackRequest, req, _REQUEST_FIELDS),
        "status": _PENDING_SETUP,
        "handled": False,
        "error": "",
    }
    return _built(WaitEvent, values, _EVENT_FIELDS)
