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


class Bookkeeping(BaseModel):
    """Everything the engine keeps about an instance besides data and state."""

    inbox: list[Buffered] = Field(default_factory=list)
    attempts: dict[str, int] = Field(default_factory=dict)
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
    def _one_retry_of_old(cls, data: Any) -> Any:
        # Stored before per-thread retries: one "retry_at" for one "retry_thread".
        if isinstance(data, dict) and "retry_at" in data:
            data = dict(data)
            retry_at, thread = data.pop("retry_at"), data.pop("retry_thread", "")
            if retry_at is not None:
                data.setdefault("retries", {thread: retry_at})
        return data

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
