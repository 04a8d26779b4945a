"""How the engine stores a ``State``: its JSON without what the row already says.

The stored text is the state's JSON with default values left out, and
without what the row or the state itself already says: the instance id,
workflow name and status (columns of the row), the main thread's id, a
thread's name when it is its id, and in each parked event's request the
``workflow_id``, ``thread_id`` and ``pc`` when they are the instance's id
and the thread's id and pc. Decoding puts them back and validates the
whole with pydantic. A parked instance's state shrinks by half.

Encoding walks the models by hand rather than through ``model_dump``, and
both ways use pydantic-core's JSON functions rather than the ``json``
module: this runs at every commit, and the general paths cost several times
as much for these few small objects. ``decode_state`` also reads what
earlier versions wrote (every thread with its ``id``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic_core import from_json, to_json

from .state import (
    MAIN_THREAD,
    CallbackRequest,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
)

__all__ = ["decode_state", "encode_state"]


def encode_state(state: State) -> str:
    """The state's compact stored JSON."""
    data: dict[str, Any] = {}
    if state.threads:
        data["threads"] = [_thread(thread, state.id) for thread in state.threads]
    if state.pc:
        data["pc"] = state.pc
    if state.completed:
        data["completed"] = state.completed
    if state.reason:
        data["reason"] = state.reason
    return to_json(data).decode()


def _thread(thread: Thread, state_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if thread.id != MAIN_THREAD:
        data["id"] = thread.id
    if thread.name != thread.id:
        data["name"] = thread.name
    if thread.status != ThreadStatus.RESUMING:
        data["status"] = _text(thread.status)
    if thread.cur_step:
        data["cur_step"] = thread.cur_step
    if thread.cur_callback:
        data["cur_callback"] = thread.cur_callback
    if thread.wait_events:
        data["wait_events"] = [_event(event, state_id, thread) for event in thread.wait_events]
    if thread.pc:
        data["pc"] = thread.pc
    return data


def _event(event: WaitEvent, state_id: str, thread: Thread) -> dict[str, Any]:
    data: dict[str, Any] = {"type": event.type, "req": _request(event.req, state_id, thread.id, thread.pc)}
    if event.status != WaitEventStatus.PENDING_SETUP:
        data["status"] = _text(event.status)
    if event.handled:
        data["handled"] = True
    if event.error:
        data["error"] = event.error
    return data


def _request(req: CallbackRequest, state_id: str, thread_id: str, thread_pc: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if req.workflow_id != state_id:
        data["workflow_id"] = req.workflow_id
    if req.thread_id != thread_id:
        data["thread_id"] = req.thread_id
    data["name"] = req.name
    if req.pc != thread_pc:
        data["pc"] = req.pc
    if req.setup_data:
        data["setup_data"] = req.setup_data
    return data


def _text(status: str) -> str:
    # pydantic-core serializes an enum member through a slow Python fallback.
    return status.value if isinstance(status, Enum) else status


def decode_state(text: str, id: str, workflow: str, status: str) -> State:
    """The ``State`` of instance ``id`` of ``workflow`` from its stored JSON.

    ``status`` is the row's status; ``FAILED`` (the engine's) means the state
    itself is ``RESUMING``.

    Raises:
        ValueError: the text is not JSON of a state (``pydantic.ValidationError``
            is a ``ValueError``).
    """
    data = from_json(text)
    if not isinstance(data, dict):
        raise ValueError(f"a stored state must be a JSON object, got {type(data).__name__}")
    data["id"] = id
    data["workflow"] = workflow
    data["status"] = WorkflowStatus.RESUMING if status == WorkflowStatus.FAILED else status
    # What is not of the expected shape is left for validation to refuse, with its place.
    threads = data.get("threads")
    for thread in threads if isinstance(threads, list) else ():
        if not isinstance(thread, dict):
            continue
        thread_id = thread.setdefault("id", MAIN_THREAD)
        thread.setdefault("name", thread_id)
        events = thread.get("wait_events")
        for event in events if isinstance(events, list) else ():
            req = event.get("req") if isinstance(event, dict) else None
            if isinstance(req, dict):
                req.setdefault("workflow_id", id)
                req.setdefault("thread_id", thread_id)
                # Before 0.2 a missing pc meant 0; the interpreter never parks at pc 0.
                req.setdefault("pc", thread.get("pc", 0))
    return State.model_validate(data)
