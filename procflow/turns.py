"""Turns per instance: one ``Engine``'s operations on one instance run one at a time.

Without turns, a send to one thread of an instance, made while a step of another
thread of it ran in the same process, resumed the instance from the state it had
loaded, in which that step had not run yet, and ran the step a second time.
Tasks of one process now queue for an instance; other processes still race, and
optimistic concurrency settles who wins (see docs/engine.md, "Guarantees").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from .errors import ReentrantCallError

__all__ = ["Turns"]


@dataclass
class _Turn:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    holder: int | None = None  # the id of the task that has the turn
    users: int = 0  # tasks that have the turn or wait for it


class Turns:
    """One lock per instance id, made when first needed and dropped when nobody waits."""

    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    @contextlib.asynccontextmanager
    async def take(self, id: str) -> AsyncIterator[bool]:
        """Wait for instance ``id``'s turn and hold it; yield whether another task had it.

        When another task had it, what the caller loaded before may be stale.

        Raises:
            ReentrantCallError: this task already has the turn: code run by an
                operation on the instance (a step, a handler) called the
                engine on that same instance, and would wait for itself.
        """
        task = anyio.get_current_task().id
        turn = self._turns.get(id)
        if turn is None:
            turn = self._turns[id] = _Turn()
        elif turn.holder == task:
            raise ReentrantCallError(
                f"instance {id!r} was called through the engine from code its own run is running "
                "(a step or handler); that call would wait for the run that made it. Change the "
                "workflow's data in the step instead, or call from another task after the run"
            )
        turn.users += 1
        try:
            waited = turn.lock.locked()
            async with turn.lock:
                turn.holder = task
                try:
                    yield waited
                finally:
                    turn.holder = None
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[id]
