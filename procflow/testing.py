"""A testing kit: an in-memory engine on a test clock, and assertions about instances.

::

    async with procflow.testing.harness(Order) as h:
        inst = await h.start(Order("lamp"))
        assert_parked_at(inst, "decision")
        assert_accepts(inst, "approve", "deny")
        await h.advance(minutes=30)                 # timers fire, retries run
        await h.send(inst.id, "approve", {"approver": "ann"})
        inst = await h.get(inst.id)
        assert_finished(inst)
        assert_steps_ran(await h.history(inst.id), "reserve", "ship")

The harness runs a real ``Engine`` on a ``MemoryStore`` (or the store you
give it) with a ``TestClock``: time moves only when the test says so, and
``advance`` delivers what falls due on the way, in order, as a worker would.
Every ``assert_*`` function raises ``AssertionError`` saying what was expected
and what the instance shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from .clock import TestClock
from .engine import Engine
from .errors import ProcflowError
from .instance import Instance
from .observe import Observer
from .state import WorkflowStatus
from .stores.base import HistoryEntry, Store
from .stores.memory import MemoryStore
from .timers import due_at as timer_due_at

__all__ = [
    "HarnessError",
    "WorkflowHarness",
    "assert_accepts",
    "assert_cancelled",
    "assert_failed",
    "assert_finished",
    "assert_parked_at",
    "assert_steps_ran",
    "describe",
    "harness",
    "steps_ran",
]

# How many rounds of due work one moment may take before the harness gives up.
_MAX_ROUNDS = 10_000


class HarnessError(ProcflowError):
    """The harness cannot do what was asked: time that would go backwards, work that never ends."""


Workflows = type[Any] | Mapping[str, type[Any]]
"""A workflow class (registered under its class name) or a mapping of stored name to class."""


class WorkflowHarness:
    """An engine for tests: a ``MemoryStore`` (unless ``store`` is given) and a ``TestClock``.

    ``workflows`` are classes, registered under their class names, or
    mappings of stored name to class. ``observers`` as for ``Engine``.
    Use it as an async context manager (``harness(...)`` makes one).
    ``engine``, ``clock`` and ``store`` are there for anything the helpers
    do not cover.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *workflows: Workflows,
        store: Store | None = None,
        clock: TestClock | None = None,
        observers: Sequence[Observer] | None = None,
    ) -> None:
        classes: dict[str, type[Any]] = {}
        for item in workflows:
            classes.update(item if isinstance(item, Mapping) else {item.__name__: item})
        self.clock = clock or TestClock()
        self.store: Store = store if store is not None else MemoryStore()
        self.engine = Engine(self.store, classes, clock=self.clock, observers=observers)

    async def __aenter__(self) -> WorkflowHarness:
        await self.engine.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.close()

    # -- driving -------------------------------------------------------------

    async def start(
        self, workflow: Any, *, id: str | None = None, correlation_id: str | None = None
    ) -> Instance[Any]:
        """Start ``workflow`` (as ``Engine.start``) and return the instance, parked or done.

        Raises:
            UnknownWorkflowError, DuplicateInstanceError, DefinitionError: as ``Engine.start``.
        """
        return await self.engine.start(workflow, id=id, correlation_id=correlation_id)

    async def send(
        self,
        key: str,
        event: str,
        payload: Any = None,
        *,
        thread_id: str = "",
        buffer: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Deliver ``event`` (as ``Engine.send``) and return the handler's reply.

        Raises:
            CallbackNotFound, PayloadError, HandlerError, ...: as ``Engine.send``.
        """
        return await self.engine.send(
            key, event, payload, thread_id=thread_id, buffer=buffer, idempotency_key=idempotency_key
        )

    async def cancel(
        self, key: str, *, reason: str = "cancelled by a test", compensate: bool = False
    ) -> Instance[Any]:
        """Cancel the instance (as ``Engine.cancel``).

        Raises:
            WorkflowFinishedError, StepError: as ``Engine.cancel``.
        """
        return await self.engine.cancel(key, reason=reason, compensate=compensate)

    async def advance(
        self,
        seconds: float | timedelta = 0.0,
        *,
        minutes: float = 0.0,
        hours: float = 0.0,
        days: float = 0.0,
    ) -> int:
        """Move the clock forward, running what falls due on the way; return how many runs.

        Due work (timers, retries, setups to try again) runs at its own due
        time, earliest first, as a worker would: a timer set up by a timer
        that fired on the way fires too if it falls due before the end.

        Raises:
            HarnessError: the total is negative, or work is due again and
                again without end at one moment.
        """
        span = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        span += minutes * 60 + hours * 3600 + days * 86400
        if span < 0:
            raise HarnessError(f"time only moves forward; advance got {span} seconds")
        target = self.clock.now() + span
        runs = await self.run_due()
        while (due := await self.next_due()) is not None and due <= target:
            if due <= self.clock.now():
                break  # due, but nothing ran: it failed and waits for its lease to run out
            self.clock.set(due)
            runs += await self.run_due()
        self.clock.set(target)
        return runs + await self.run_due()

    async def run_due(self) -> int:
        """Run what is due now (``Engine.work_once`` until nothing is); return how many runs.

        Raises:
            HarnessError: work keeps falling due at this moment without end.
        """
        runs = 0
        for _ in range(_MAX_ROUNDS):
            done = await self.engine.work_once()
            if done == 0:
                return runs
            runs += done
        raise HarnessError(
            f"work was still due after {_MAX_ROUNDS} rounds at one moment; "
            "a timer or retry that is always due?"
        )

    async def next_due(self) -> float | None:
        """The earliest time any stored instance is due (a timer, a retry), or ``None``."""
        earliest: float | None = None
        after: str | None = None
        while True:
            page = await self.store.list(after=after, limit=500)
            for record in page:
                if record.due_at is not None:
                    due = await self._due(record.id, record.due_at)
                    earliest = due if earliest is None else min(earliest, due)
            if len(page) < 500:
                return earliest
            after = page[-1].id

    async def _due(self, id: str, stored: float) -> float:
        """When the instance is due: its timer's or retry's own time, not the store's rounded one.

        Stores keep due times in whole milliseconds; a worker claims an
        instance once the store's time came, and runs its timer once the
        timer's own time came, so the later of the two is when it is due.
        A stored time more than a millisecond before every timer and retry is
        something else's (a failed setup's next try): it is due then.
        """
        try:
            inst = await self.engine.get(id)
        except ProcflowError:
            return stored
        times = [t for th in inst.state.threads for e in th.wait_events if (t := timer_due_at(e)) is not None]
        if inst.meta.retry_at is not None:
            times.append(inst.meta.retry_at)
        own = min(times, default=stored)
        return own if 0 < own - stored < 0.001 else stored

    # -- reading -------------------------------------------------------------

    async def get(self, key: str) -> Instance[Any]:
        """The instance with id or correlation id ``key``, as stored now.

        Raises:
            InstanceNotFound: there is none.
        """
        return await self.engine.get(key)

    async def history(self, key: str) -> list[HistoryEntry]:
        """The instance's history, oldest first.

        Raises:
            InstanceNotFound: there is none.
        """
        return await self.engine.history(key)


def harness(
    *workflows: Workflows,
    store: Store | None = None,
    clock: TestClock | None = None,
    observers: Sequence[Observer] | None = None,
) -> WorkflowHarness:
    """A ``WorkflowHarness`` for ``workflows``: ``async with harness(Order) as h: ...``."""
    return WorkflowHarness(*workflows, store=store, clock=clock, observers=observers)


# -- assertions ----------------------------------------------------------------------


def describe(inst: Instance[Any]) -> str:
    """What an instance shows, in one line: its status and where it is parked or why it stopped.

    A failure with no step is a run the definition could not continue (a
    loop that never parks, a lost position): it says the run failed.
    """
    head = f"instance {inst.id!r} ({inst.workflow}) is {inst.status.value}"
    if inst.failure is not None:
        f = inst.failure
        if not f.step:
            return f"{head}: the run failed: {f.error}"
        return f"{head}: step {f.step!r} failed after {f.attempts} attempt(s): {f.error}"
    if inst.status == WorkflowStatus.CANCELLED:
        return f"{head} ({inst.state.reason})"
    parked = "; ".join(str(p) for p in inst.parked)
    return f"{head}, parked at {parked}" if parked else head


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) or "nothing"


def assert_parked_at(inst: Instance[Any], position: str, *more: str, thread: str | None = None) -> None:
    """Assert that the instance is parked exactly at these Waits/WaitFors (in any order).

    With ``thread``, only that thread's position counts; without, every
    parked thread's does.

    Raises:
        AssertionError: it is parked elsewhere, also elsewhere, or not at all.
    """
    wanted = sorted({position, *more})
    parked = sorted({p.at for p in inst.parked if thread is None or p.thread == thread})
    if parked != wanted:
        whose = f" (thread {thread!r})" if thread is not None else ""
        raise AssertionError(f"expected to be parked at {_names(wanted)}{whose}; {describe(inst)}")


def assert_accepts(inst: Instance[Any], event: str, *more: str, thread: str | None = None) -> None:
    """Assert that the events the instance accepts now are exactly these (in any order).

    Raises:
        AssertionError: it accepts other events, more, or none.
    """
    wanted = sorted({event, *more})
    parked = [] if inst.state.cancelling else inst.parked  # it takes no event until the cancel completes
    accepts = sorted({e for p in parked if thread is None or p.thread == thread for e in p.events})
    if accepts != wanted:
        whose = f" in thread {thread!r}" if thread is not None else ""
        raise AssertionError(
            f"expected to accept {_names(wanted)}{whose}, it accepts {_names(accepts)}; {describe(inst)}"
        )


def assert_finished(inst: Instance[Any]) -> None:
    """Assert that the instance has finished.

    Raises:
        AssertionError: it has not (the message says where it is).
    """
    if inst.status != WorkflowStatus.FINISHED:
        raise AssertionError(f"expected to be FINISHED; {describe(inst)}")


def assert_cancelled(inst: Instance[Any], reason: str | None = None) -> None:
    """Assert that the instance was cancelled (with this ``reason``, when given).

    Raises:
        AssertionError: it was not, or for another reason.
    """
    if inst.status != WorkflowStatus.CANCELLED or (reason is not None and inst.state.reason != reason):
        because = f" ({reason})" if reason is not None else ""
        raise AssertionError(f"expected to be CANCELLED{because}; {describe(inst)}")


def assert_failed(inst: Instance[Any], step: str | None = None) -> None:
    """Assert that the instance is ``FAILED`` (at ``step``, when given): its retries ran out.

    A run the definition could not continue fails at no step: ``step=None`` passes for it.

    Raises:
        AssertionError: it has not failed, or at another step.
    """
    if inst.failure is None or (step is not None and inst.failure.step != step):
        at = f" at step {step!r}" if step is not None else ""
        raise AssertionError(f"expected to be FAILED{at}; {describe(inst)}")


def steps_ran(history: Sequence[HistoryEntry]) -> list[str]:
    """The names of the steps that completed, in order, from an instance's history."""
    return [h.name for h in history if h.kind == "step"]


def assert_steps_ran(history: Sequence[HistoryEntry], step: str, *more: str) -> None:
    """Assert that exactly these steps completed, in this order (a step run twice is named twice).

    ``history`` is what ``WorkflowHarness.history`` (or ``Engine.history``) returns.

    Raises:
        AssertionError: other steps ran, in another order, or fewer.
    """
    wanted = [step, *more]
    ran = steps_ran(history)
    if ran != wanted:
        raise AssertionError(f"expected the steps {_names(wanted)} to have run, in order; ran: {_names(ran)}")
