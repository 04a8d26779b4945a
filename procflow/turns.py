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
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio

from .errors import ReentrantCallError

__all__ = ["Turns"]

# The turns the running code holds, by the token of each grant. A context
# variable rather than the task's id: a task a step starts (in a task group)
# inherits it, so its call on the step's own instance is refused instead of
# waiting for the step that waits for it. A token outlives its grant in such a
# task's context, so a turn counts as held only while its holder is that token.
_HELD: ContextVar[frozenset[object]] = ContextVar("procflow_turns_held", default=frozenset())


@dataclass
class _Ticket:
    token: object = field(default_factory=object)  # the grant's token, once granted
    granted: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class _Turn:
    holder: object  # the token of the grant that has the turn
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
            ReentrantCallError: the caller already has the turn: code run by an
                operation on the instance (a step, a handler, or a task either
                started) called the engine on that same instance, and would
                wait for itself.
        """
        held = _HELD.get()
        turn = self._turns.get(id)
        if turn is None:
            token = object()
            turn = self._turns[id] = _Turn(token)
            waited = False
        elif turn.holder in held:
            raise ReentrantCallError(
                f"instance {id!r} was called through the engine from code its own run is running "
                "(a step or handler, or a task it started); that call would wait for the run that "
                "made it. Change the workflow's data in the step instead, or call after the run"
            )
        else:
            ticket = _Ticket()
            turn.queue.append(ticket)
            try:
                await ticket.granted.wait()
            except BaseException:  # cancelled while waiting
                if ticket.granted.is_set():
                    self._pass_on(id, turn)
                else:
                    turn.queue.remove(ticket)
                raise
            token = ticket.token
            waited = True
        reset = _HELD.set(held | {token})
        try:
            yield waited
        finally:
            _HELD.reset(reset)
            self._pass_on(id, turn)

    def _pass_on(self, id: str, turn: _Turn) -> None:
        """Give the turn to the first waiting task, or forget it when nobody waits."""
        if turn.queue:
            ticket = turn.queue.popleft()
            turn.holder = ticket.token
            ticket.granted.set()
        else:
            del self._turns[id]
