"""The engine's own bookkeeping per instance, stored beside the state as ``meta``.

It holds what the interpreter's ``State`` does not: events waiting in the
inbox, how often steps failed, why the instance failed, how many invalid
payloads each parked event rejected, and whether a cancel in progress
compensates.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

__all__ = ["Bookkeeping", "Buffered", "Failure"]


class Buffered(BaseModel):
    """An event that arrived before any thread was parked on it."""

    event: str
    payload: Any = None
    thread_id: str = ""
    at: float = 0.0


class Failure(BaseModel):
    """Why an instance stopped: the step that failed, where, and its last error."""

    step: str
    thread: str
    error: str
    attempts: int
    at: float


def _retries_per_thread(data: dict[str, Any]) -> dict[str, Any]:
    # Stored before per-thread retries: one "retry_at" for one "retry_thread". Rows older
    # still name no thread: their retry is dropped (no thread could ever clear it, and the
    # row's due time still brings a worker at that time).
    if "retry_at" in data:
        data = dict(data)
        retry_at, thread = data.pop("retry_at"), data.pop("retry_thread", "")
        if retry_at is not None and thread:
            data.setdefault("retries", {thread: retry_at})
    return data


def _attempts_per_thread(data: dict[str, Any]) -> dict[str, Any]:
    # Stored before per-thread attempts: step name -> failures, shared by every thread
    # that ran the step. Each thread still waiting on a failure keeps the counts it saw.
    old = data.get("attempts")
    if not isinstance(old, dict) or not any(isinstance(n, int) for n in old.values()):
        return data
    waiting = list(data.get("retries") or {})
    failure = data.get("failure")
    if isinstance(failure, dict) and failure.get("thread") not in (None, *waiting):
        waiting.append(failure["thread"])
    return {**data, "attempts": {thread: dict(old) for thread in waiting}}


class Bookkeeping(BaseModel):
    """Everything the engine keeps about an instance besides data and state."""

    inbox: list[Buffered] = Field(default_factory=list)
    # Thread id -> step name -> how often that step failed in that thread since it last
    # went through: threads running one step (of one Go, say) each have their own count.
    attempts: dict[str, dict[str, int]] = Field(default_factory=dict)
    # Thread id -> when the step that failed in it may run again: each thread
    # that waits for a backoff is held until its own time.
    retries: dict[str, float] = Field(default_factory=dict)
    failure: Failure | None = None
    # Invalid payloads per parking (``parking_key``), while it lasts.
    rejected: dict[str, int] = Field(default_factory=dict)
    # Whether the cancel in progress (State.cancelling) compensates: a worker
    # or a retry that carries it on does what it was asked to do.
    compensating: bool = False

    @model_validator(mode="before")
    @classmethod
    def _of_old(cls, data: Any) -> Any:
        """Read what earlier versions stored, oldest change first."""
        if isinstance(data, dict):
            data = _attempts_per_thread(_retries_per_thread(data))
        return data

    def count_failure(self, thread: str, step: str) -> int:
        """Count one more failure of ``step`` in ``thread``; return the count."""
        failed = self.attempts.setdefault(thread, {})
        failed[step] = failed.get(step, 0) + 1
        return failed[step]

    @staticmethod
    def parking_key(thread: str, event: str, pc: int) -> str:
        """The key of one parking of ``thread`` on ``event`` in ``rejected``."""
        return f"{thread}:{event}:{pc}"

    @property
    def retry_at(self) -> float | None:
        """When the next failed step may run again (the earliest of ``retries``), or ``None``."""
        return min(self.retries.values()) if self.retries else None

    @classmethod
    def load(cls, text: str) -> Bookkeeping:
        """Decode stored ``meta`` ("" means nothing kept)."""
        return cls.model_validate_json(text) if text else cls()

    def dump(self) -> str:
        """Encode for storage; "" when there is nothing to keep."""
        text = self.model_dump_json(exclude_defaults=True)
        return "" if text == "{}" else text
