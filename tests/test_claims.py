"""Which process runs an instance: claims, holds, and conflicts between workers and runs.

A worker takes an instance by claiming its row (``claim_due``); a run in any
process holds the row before a step or a setup runs (its due time moves
``stale_after`` ahead, and its version grows), so that no worker claims it
meanwhile, and of two processes that loaded one version only one runs the
step. The other, like a worker whose claimed row someone else saved, stops
and carries on from what was saved, leaving a run in flight alone. An
instance that finished or was cancelled is due for nothing.

Each process is an ``Engine`` of its own on one database (one ``MemoryStore``
object, one SQLite file, one PostgreSQL database); time is a ``TestClock``.
A step or setup that runs long waits on an ``anyio.Event`` gate, which the
test opens in a ``finally``: a worker's batch is shielded from cancellation,
so a gate never opened would hang the test. A store of one process whose
writes the test holds (``HeldCommit``, ``HoldsTogether``) wraps a real store.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from store_helpers import backend_of, stores_fixture  # noqa: F401

import procflow as pf
from procflow import TestClock
from procflow.engine import Engine
from procflow.stores import HistoryEntry, InstanceRecord, Store

pytestmark = pytest.mark.anyio

# How often each step, setup or teardown was called, across every engine of a test.
CALLS: Counter[str] = Counter()
# Events of the test in progress, made inside its event loop (asyncio or trio).
GATES: dict[str, anyio.Event] = {}
# How many processes asked to hold a row ("asked"), and held it ("held"), while HoldsTogether gathers them.
HOLDS: Counter[str] = Counter()

RETRY_IN_10 = pf.Retry(max_attempts=3, backoff=pf.Backoff(initial=10, jitter=0))
RETRY_IN_60 = pf.Retry(max_attempts=3, backoff=pf.Backoff(initial=60, jitter=0))
RETRY_IN_AN_HOUR = pf.Retry(max_attempts=3, backoff=pf.Backoff(initial=3600, cap=3600, jitter=0))


@pytest.fixture(autouse=True)
def _fresh_globals() -> None:
    CALLS.clear()
    GATES.clear()
    HOLDS.clear()


@pytest.fixture
async def engine(stores: Callable[[], Store], clock: TestClock) -> AsyncIterator[Engine]:
    async with _engine(stores(), clock) as e:
        yield e


def _engine(store: Any, clock: TestClock, **options: Any) -> Engine:
    """An engine of one process on ``store`` (``Any``: a wrapped store passes too)."""
    return Engine(store, workflows=WORKFLOWS, clock=clock, observers=[], **options)


async def _entries(engine: Engine, id: str, kind: str) -> list[HistoryEntry]:
    return [h for h in await engine.history(id) if h.kind == kind]


def _count(name: str) -> None:
    CALLS[name] += 1


class _Delegating:
    """A real store of one process, reached through this object."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class HeldCommit(_Delegating):
    """Its first ``update`` once the test put a "commit" gate waits for it (a busy disk)."""

    async def update(self, record: InstanceRecord, history: Any = (), *, reply: Any = None) -> InstanceRecord:
        if "commit" in GATES and not GATES["commit"].is_set():
            GATES["committing"].set()
            await GATES["commit"].wait()
        return await self._store.update(record, history, reply=reply)


class HoldsTogether(_Delegating):
    """While the test has an "asked" gate, a hold of the row (``renew_lease``) waits until
    a second process asks for one too (both loaded the row before either held it), and
    returns once both holds are done (both would run the step they hold the row for)."""

    async def renew_lease(self, id: str, version: int, until: float) -> bool:
        if "asked" not in GATES:
            result: bool = await self._store.renew_lease(id, version, until)
            return result
        await self._meet("asked")
        result = await self._store.renew_lease(id, version, until)
        await self._meet("held")
        return result

    @staticmethod
    async def _meet(step: str) -> None:
        HOLDS[step] += 1
        if HOLDS[step] == 2:
            GATES[step].set()
        with anyio.move_on_after(2):  # a process that never asks does not hang the test
            await GATES[step].wait()


# -- workflows ---------------------------------------------------------------------------------


@dataclass
class Pair:
    """Two threads whose steps fail once and are tried again 10 s later; "b"'s second call
    runs long."""

    done: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("a", pf.Step("charge a", self.charge_a, retry=RETRY_IN_10)),
            pf.Go("b", pf.Step("charge b", self.charge_b, retry=RETRY_IN_10)),
            pf.WaitFor("both", lambda: len(self.done) == 2),
        )

    def charge_a(self) -> None:
        CALLS["a"] += 1
        if CALLS["a"] == 1:
            raise ConnectionError("down")
        self.done.append("a")

    async def charge_b(self) -> None:
        CALLS["b"] += 1
        if CALLS["b"] == 1:
            raise ConnectionError("down")
        if CALLS["b"] == 2:
            GATES["entered"].set()
            await GATES["release"].wait()
        self.done.append("b")


class Webhook(pf.Handler):
    """A webhook registration that takes a while (while the test says so)."""

    type = "webhook"

    async def setup(self, req: pf.CallbackRequest) -> str:
        CALLS["setup"] += 1
        if "release" in GATES:
            GATES["entered"].set()
            await GATES["release"].wait()
        return "hook-1"

    def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        CALLS["teardown"] += 1


@dataclass
class Ask:
    """A step, then a webhook's reply or, after 5 s, a step for a late reply."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("ask", lambda: _count("ask")),
            pf.Wait(
                "reply",
                pf.On("timeout", pf.Timer(after=5), pf.Step("late", lambda: _count("late"))),
                pf.On("hook", Webhook()),
            ),
        )


@dataclass
class Flaky:
    """A charge that fails its first call and is tried again 10 s later."""

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("charge", self.charge, retry=RETRY_IN_10))

    async def charge(self) -> None:
        CALLS["charge"] += 1
        await anyio.lowlevel.checkpoint()
        if CALLS["charge"] == 1:
            raise ConnectionError("down")


@dataclass
class Race:
    """A side thread whose poll always fails (tried again after 60 s) while the main
    thread waits for "stop", which ends the workflow."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("poller", pf.Step("poll", self.poll, retry=RETRY_IN_60)),
            pf.Wait("stopping", pf.OnEvent("stop", lambda: None)),
        )

    def poll(self) -> None:
        CALLS["poll"] += 1
        raise ConnectionError("down")


@dataclass
class Nap:
    """Sleeps 10 s, then a step."""

    def definition(self) -> pf.Section:
        return pf.S(pf.Sleep("nap", 10), pf.Step("wake", lambda: _count("wake")))


class FlakyWebhook(pf.Handler):
    """A webhook registration that fails the first time."""

    type = "flaky webhook"

    def setup(self, req: pf.CallbackRequest) -> str:
        CALLS["setup"] += 1
        if CALLS["setup"] == 1:
            raise ConnectionError("registry down")
        return "hook-1"


@dataclass
class Two:
    """A thread whose poll waits an hour for its retry, beside one parked on a webhook."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("poller", pf.Step("poll", self.poll, retry=RETRY_IN_AN_HOUR)),
            pf.Go("hooker", pf.Wait("hooked", pf.On("hook", FlakyWebhook()))),
            pf.Wait("stopping", pf.OnEvent("stop", lambda: None)),
        )

    def poll(self) -> None:
        raise ConnectionError("down")


@dataclass
class Pay:
    """A charge that fails its first call (tried again 100 s later); ``approval``: then a
    wait for "approve"."""

    approval: bool = False

    def definition(self) -> pf.Section:
        charge = pf.Step(
            "charge", self.charge, retry=pf.Retry(max_attempts=3, backoff=pf.Backoff(100, jitter=0))
        )
        if self.approval:
            return pf.S(charge, pf.Wait("approval", pf.OnEvent("approve", lambda: None)))
        return pf.S(charge)

    def charge(self) -> None:
        CALLS["charge"] += 1
        if CALLS["charge"] == 1:
            raise ConnectionError("down")


@dataclass
class Job:
    """A side thread ticks after 10 s and parks; the main thread waits for "go", then runs
    "long" (held by the test) and waits for "end". ``note``: data an operator may edit."""

    note: str = ""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("ticker", pf.S(pf.Sleep("tick", 10), pf.Wait("parked", pf.OnEvent("never", lambda: None)))),
            pf.Wait("going", pf.OnEvent("go", lambda: None)),
            pf.Step("long", self.long),
            pf.Wait("ending", pf.OnEvent("end", lambda: None)),
        )

    async def long(self) -> None:
        """Its first call runs long, while the test has a "release" gate."""
        CALLS["long"] += 1
        if CALLS["long"] == 1 and "release" in GATES:
            GATES["entered"].set()
            await GATES["release"].wait()


WORKFLOWS = [Pair, Ask, Flaky, Race, Nap, Two, Pay, Job]


# -- holds: no worker takes an instance while an effect of it runs -------------------------------


async def test_a_second_retried_step_of_one_run_is_held_from_other_workers(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    GATES["entered"], GATES["release"] = anyio.Event(), anyio.Event()
    async with _engine(stores(), clock) as worker, _engine(stores(), clock) as other:
        await worker.start(Pair(), id="p")
        clock.advance(10)  # both retries are due: the worker runs "a"'s, then "b"'s
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.work_once)
            try:
                with anyio.fail_after(5):
                    await GATES["entered"].wait()  # "b"'s retried step runs
                clock.advance(1)
                taken = await other.work_once()
            finally:
                GATES["release"].set()
        assert taken == 0
        assert (await worker.get("p")).status == pf.WorkflowStatus.FINISHED
    assert (CALLS["a"], CALLS["b"]) == (2, 2)


async def test_no_worker_in_another_process_takes_an_instance_while_a_setup_of_it_runs(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    GATES["entered"], GATES["release"] = anyio.Event(), anyio.Event()
    async with _engine(stores(), clock) as starter, _engine(stores(), clock) as other:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(starter.start, Ask(), id="a"))
            try:
                with anyio.fail_after(5):
                    await GATES["entered"].wait()  # the webhook is being registered
                clock.advance(6)  # its 5 s timeout is over, far short of stale_after
                taken = await other.work_once()
            finally:
                GATES["release"].set()
        assert taken == 0
        assert CALLS["late"] == 0
        # Once the setup is done, the timeout fires and the registration is torn down.
        assert await other.work_once() == 1
        assert (await other.get("a")).status == pf.WorkflowStatus.FINISHED
    assert CALLS == {"ask": 1, "setup": 1, "late": 1, "teardown": 1}


async def test_of_two_processes_catching_up_one_instance_at_once_only_one_runs_its_retried_step(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with (
        _engine(HoldsTogether(stores()), clock) as first,
        _engine(HoldsTogether(stores()), clock) as second,
    ):
        await first.start(Flaky(), id="f")
        clock.advance(10)  # the retry is due
        GATES["asked"], GATES["held"] = anyio.Event(), anyio.Event()
        errors: list[BaseException] = []

        async def catch_up(engine: Engine) -> None:
            try:
                await engine.resume("f")
            except pf.ProcflowError as e:
                errors.append(e)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(catch_up, first)
                tg.start_soon(catch_up, second)
        assert errors == []
        assert (await first.get("f")).status == pf.WorkflowStatus.FINISHED
    assert CALLS["charge"] == 2  # the failure, and one retry


# -- conflicts: a run and a worker that meet carry on from what the other saved -------------------


async def test_resume_racing_a_worker_catches_up_from_what_the_worker_saved(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with _engine(HeldCommit(stores()), clock) as resumer, _engine(stores(), clock) as worker:
        await resumer.start(Nap(), id="n")
        clock.advance(10)  # the nap is over
        GATES["committing"], GATES["commit"] = anyio.Event(), anyio.Event()
        taken: list[int] = []

        async def work_meanwhile() -> None:
            try:
                with anyio.fail_after(5):
                    await GATES["committing"].wait()  # resume delivered the timer, not yet saved
                taken.append(await worker.work_once())  # the worker delivers it and saves first
            finally:
                GATES["commit"].set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(work_meanwhile)
            inst = await resumer.resume("n")
        assert taken == [1]
        assert inst.status == pf.WorkflowStatus.FINISHED
        assert len(await _entries(resumer, "n", "timer")) == 1
    assert CALLS["wake"] == 1


async def test_a_worker_whose_claimed_instance_another_process_saved_leaves_the_run_in_flight_alone(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with _engine(HeldCommit(stores()), clock) as worker, _engine(stores(), clock) as other:
        await other.start(Job(), id="j")
        clock.advance(10)  # the tick is due
        GATES["committing"], GATES["commit"] = anyio.Event(), anyio.Event()
        GATES["entered"], GATES["release"] = anyio.Event(), anyio.Event()
        worked = anyio.Event()

        async def work() -> None:
            await worker.work_once()
            worked.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(work)  # claims, delivers the tick, and waits to save it
            try:
                with anyio.fail_after(5):
                    await GATES["committing"].wait()
                tg.start_soon(other.send, "j", "go")  # another process: the tick, "go", then "long"
                with anyio.fail_after(5):
                    await GATES["entered"].wait()
                GATES["commit"].set()  # the worker's save conflicts
                with anyio.fail_after(5):
                    await worked.wait()
                assert CALLS["long"] == 1  # while the other process's "long" still runs
            finally:
                GATES["commit"].set()
                GATES["release"].set()
        inst = await other.get("j")
        assert [(p.thread, p.at) for p in inst.parked] == [(pf.MAIN_THREAD, "ending"), ("ticker", "parked")]
        assert len(await _entries(other, "j", "timer")) == 1
    assert CALLS["long"] == 1


async def test_a_worker_whose_claimed_instance_was_edited_meanwhile_still_delivers_its_due_timer(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with _engine(HeldCommit(stores()), clock) as worker, _engine(stores(), clock) as other:
        await other.start(Job(), id="j")
        clock.advance(10)  # the tick is due
        GATES["committing"], GATES["commit"] = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.work_once)  # claims, delivers the tick, and waits to save it
            try:
                with anyio.fail_after(5):
                    await GATES["committing"].wait()
                await other.edit("j", {"note": "checked"}, who="ops", why="a repair")  # runs nothing
            finally:
                GATES["commit"].set()  # the worker's save conflicts; the tick is still due
        inst = await other.get("j")
        assert inst.data.note == "checked"
        assert [(p.thread, p.at) for p in inst.parked] == [(pf.MAIN_THREAD, "going"), ("ticker", "parked")]
        assert len(await _entries(other, "j", "timer")) == 1


# -- due times: what brings a worker, and when ---------------------------------------------------


async def test_a_failed_setup_is_set_up_again_after_setup_retry_delay_beside_a_longer_retry(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with _engine(stores(), clock, setup_retry_delay=30) as engine:
        await engine.start(Two(), id="t")  # the poll waits an hour; the webhook's setup failed
        assert CALLS["setup"] == 1
        clock.advance(29)
        assert await engine.work_once() == 0
        clock.advance(1)
        assert await engine.work_once() == 1
        inst = await engine.get("t")
    assert CALLS["setup"] == 2
    [hooked] = [t for t in inst.state.threads if t.id == "hooker"]
    assert [e.status for e in hooked.wait_events] == [pf.WaitEventStatus.SETUP]


async def test_a_finished_instance_forgets_the_retry_a_thread_of_it_was_waiting_for(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Race(), id="r")
    assert list((await engine.get("r")).meta.retries) == ["poller"]
    await engine.send("r", "stop")  # the workflow ends while the poll waits for its retry
    inst = await engine.get("r")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert (inst.meta.retries, inst.meta.attempts) == ({}, {})
    assert (await engine.store.get("r")).due_at is None
    clock.advance(61)
    assert [await engine.work_once() for _ in range(3)] == [0, 0, 0]
    assert CALLS["poll"] == 1


async def test_a_cancelled_instance_forgets_the_failures_a_thread_of_it_was_waiting_to_retry(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Race(), id="r")
    inst = await engine.cancel("r", reason="not needed")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert (inst.meta.retries, inst.meta.attempts) == ({}, {})
    assert (await engine.store.get("r")).due_at is None
    clock.advance(61)
    assert await engine.work_once() == 0
    assert CALLS["poll"] == 1


async def _store_meta(engine: Engine, id: str, meta: dict[str, Any], due_at: float) -> None:
    """Rewrite the row as an earlier version of procflow stored it."""
    record = await engine.store.get(id)
    await engine.store.update(dataclasses.replace(record, meta=json.dumps(meta), due_at=due_at))


async def test_a_finished_instance_an_earlier_version_left_due_is_claimed_once_not_at_every_poll(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Race(), id="r")
    await engine.send("r", "stop")
    retry_at = clock.now() + 60  # stored due for the poll's retry though the workflow was over
    await _store_meta(
        engine, "r", {"retries": {"poller": retry_at}, "attempts": {"poller": {"poll": 1}}}, retry_at
    )
    clock.advance(61)
    assert [await engine.work_once() for _ in range(3)] == [1, 0, 0]  # no time passes between polls
    assert (await engine.store.get("r")).due_at is None
    assert CALLS["poll"] == 1


async def test_a_retry_stored_without_its_thread_runs_at_its_time_and_then_nothing_is_due(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Pay(), id="p")
    retry_at = clock.now() + 100
    # The first engine with retries stored one retry time, naming no thread.
    await _store_meta(engine, "p", {"attempts": {"charge": 1}, "retry_at": retry_at}, retry_at)
    clock.advance(10)
    await engine.resume("p")
    assert CALLS["charge"] == 1  # the retry waits for its backoff
    clock.advance(200)
    assert [await engine.work_once() for _ in range(3)] == [1, 0, 0]
    inst = await engine.get("p")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert (inst.meta.retries, inst.meta.attempts) == ({}, {})
    assert CALLS["charge"] == 2


async def test_an_instance_parked_after_a_retry_stored_without_its_thread_is_due_for_nothing(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Pay(approval=True), id="p")
    retry_at = clock.now() + 100
    await _store_meta(engine, "p", {"attempts": {"charge": 1}, "retry_at": retry_at}, retry_at)
    clock.advance(200)
    assert [await engine.work_once() for _ in range(3)] == [1, 0, 0]
    inst = await engine.get("p")
    assert [(p.thread, p.at) for p in inst.parked] == [(pf.MAIN_THREAD, "approval")]
    assert (inst.meta.retries, (await engine.store.get("p")).due_at) == ({}, None)
    assert CALLS["charge"] == 2
