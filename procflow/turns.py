"""Turns per instance: one ``Engine``'s operations on one instance run one at a time.

Without turns, a send to one thread of an instance, made while a step of another
thread of it ran in the same process, resumed the instance from the state it had
loaded, in which that step had not run yet, and ran the step a second time.
Tasks of one process now queue for an instance; other processes still race, and
optimistic concurrency settles who wins (see docs/engine.md, "Guarantees").
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from .errors import ReentrantCallError

__all__ = ["Turns"]


@dataclass
class _Ticket:
    task: int  # the id of the waiting task
    granted: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class _Turn:
    holder: int  # the id of the task that has the turn
    queue: deque[_Ticket] = field(default_factory=deque)  # the tasks waiting for it, first first


class Turns:
    """A first-come, first-served turn per instance id, kept only while someone has or wants it.

    Taking a free turn does not wait: it costs a dictionary look-up, not a
    lock's round trip through the event loop.
    """

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
            turn = self._turns[id] = _Turn(task)
            waited = False
        elif turn.holder == task:
            raise ReentrantCallError(
                f"instance {id!r} was called through the engine from code its own run is running "
                "(a step or handler); that call would wait for the run that made it. Change the "
                "workflow's data in the step instead, or call from another task after the run"
            )
        else:
            ticket = _Ticket(task)
            turn.queue.append(ticket)
            try:
                await ticket.granted.wait()
            except BaseException:  # cancelled while waiting
                if ticket.granted.is_set():
                    self._pass_on(id, turn)
                else:
                    turn.queue.remove(ticket)
                raise
            waited = True
        try:
            yield waited
        finally:
            self._pass_on(id, turn)

    def _pass_on(self, id: str, turn: _Turn) -> None:
        """Give the turn to the first waiting task, or forget it when nobody waits."""
        if turn.queue:
            ticket = turn.queue.popleft()
            turn.holder = ticket.task
            ticket.granted.set()
        else:
            del self._turns[id]
