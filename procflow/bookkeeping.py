"""The engine's own bookkeeping per instance, stored beside the state as ``meta``.

It holds what the interpreter's ``State`` does not: events waiting in the
inbox, how often steps failed, why the instance failed, and how many invalid
payloads each parked event rejected.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

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
    retry_at: float | None = None
    retry_thread: str = ""
    failure: Failure | None = None
    rejected: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def load(cls, text: str) -> Bookkeeping:
        """Decode stored ``meta`` ("" means nothing kept)."""
        return cls.model_validate_json(text) if text else cls()

    def dump(self) -> str:
        """Encode for storage; "" when there is nothing to keep."""
        text = self.model_dump_json(exclude_defaults=True)
        return "" if text == "{}" else text
