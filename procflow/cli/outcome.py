"""How the command words where a run left an instance: failed for good, due for a retry, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..instance import Instance

__all__ = ["retry_note", "when"]


def when(ts: float) -> str:
    """A timestamp as local ``YYYY-MM-DD HH:MM:SS``; ``-`` for none (0)."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def retry_note(inst: Instance[Any]) -> str:
    """What the retries of a failing step came to: failed for good, or when the next attempt is due.

    A failure with no step is a run the definition could not continue: it
    says so, and what to do. ``""`` when nothing failed.
    """
    failure = inst.failure
    if failure is not None and inst.state.cancelling:
        return f"the compensation of step {failure.step!r} failed: {failure.error}"
    if failure is not None and not failure.step:  # the definition could not run it on
        return f"the run failed: {failure.error} (fix the definition, then retry)"
    if failure is not None:
        return f"step {failure.step!r} failed after {failure.attempts} attempt(s): {failure.error}"
    if inst.meta.retry_at is not None:
        return f"a step failed; next attempt at {when(inst.meta.retry_at)} (procflow worker runs it)"
    return ""
