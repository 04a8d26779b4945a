"""How the engine stores a ``State``: its JSON without what the row already says.

The stored text is the state's JSON with default values left out, and
without what the row or the state itself already says: the instance id,
workflow name and status (columns of the row), a thread's name when it is its
id (the main thread's), and in each parked event's request the
``workflow_id`` and ``thread_id``. Decoding puts them back and validates the
whole with pydantic. A parked instance's state shrinks by 40%.
"""

from __future__ import annotations

import json
from typing import Any

from .state import State, WorkflowStatus

__all__ = ["decode_state", "encode_state"]


def encode_state(state: State) -> str:
    """The state's compact stored JSON."""
    data: dict[str, Any] = state.model_dump(mode="json", exclude_defaults=True)
    data.pop("id", None)
    data.pop("workflow", None)
    data.pop("status", None)
    for thread in data.get("threads", ()):
        if thread.get("name") == thread["id"]:
            del thread["name"]
        for event in thread.get("wait_events", ()):
            req = event["req"]
            if req.get("workflow_id") == state.id:
                del req["workflow_id"]
            if req.get("thread_id") == thread["id"]:
                del req["thread_id"]
    return json.dumps(data, separators=(",", ":"))


def decode_state(text: str, id: str, workflow: str, status: str) -> State:
    """The ``State`` of instance ``id`` of ``workflow`` from its stored JSON.

    ``status`` is the row's status; ``FAILED`` (the engine's) means the state
    itself is ``RESUMING``.

    Raises:
        ValueError: the text is not JSON of a state (``pydantic.ValidationError``
            is a ``ValueError``).
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"a stored state must be a JSON object, got {type(data).__name__}")
    data["id"] = id
    data["workflow"] = workflow
    data["status"] = WorkflowStatus.RESUMING if status == WorkflowStatus.FAILED else status
    for thread in data.get("threads", ()):
        if not isinstance(thread, dict):
            continue
        thread.setdefault("name", thread.get("id"))
        for event in thread.get("wait_events", ()):
            req = event.get("req") if isinstance(event, dict) else None
            if isinstance(req, dict):
                req.setdefault("workflow_id", id)
                req.setdefault("thread_id", thread.get("id", ""))
    return State.model_validate(data)
