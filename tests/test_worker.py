"""The worker: work_once / run_worker deliver due timers and retries, exactly once, and stop cleanly.

In-process tests drive time with a ``TestClock``; one short test runs on the
real clock. Several workers (two engines on one SQLite file, two on one
PostgreSQL database) race for a few hundred due timers and each is delivered
once. Child processes (``tests/programs/worker_app.py``, the ``procflow``
command) are killed with SIGKILL mid-work, or stopped with SIGTERM.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from process_death import ProcessDied
from store_helpers import backend_of, stores_fixture  # noqa: F401

import procflow as pf
from procflow import Sleep, TestClock, Timer
from procflow.engine import Engine
from procflow.stores import MemoryStore, PostgresStore, SQLiteStore, Store, open_store

pytestmark = pytest.mark.anyio

PROGRAMS = Path(__file__).parent / "programs"
APP = PROGRAMS / "worker_app.py"

# How often each instance's timer-branch step ran, across every engine of a test.
FIRED: Counter[str] = Counter()


@dataclass
class Reminder:
    """Parks on "done" or a 60 s timer; the timer's branch counts its deliveries."""

    id: str = ""
    fired: int = 0
    done: bool = False

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "hold",
                pf.OnEvent("done", self.on_done),
                pf.On("remind", Timer(after=60), pf.Step("count", self.count)),
            ),
        )

    def on_done(self) -> None:
        self.done = True

    def count(self) -> None:
        self.fired += 1
        FIRED[self.id] += 1


# Events of the test in progress, made inside its event loop (asyncio or trio).
GATES: dict[str, anyio.Event] = {}
LOG: list[str] = []


@dataclass
class Gated:
    """Sleeps 10 s, then a step that waits for the test to open the gate, then another step."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(Sleep("pause", 10), pf.Step("work", self.work), pf.Step("after", self.after))

    async def work(self) -> None:
        GATES["entered"].set()
        await GATES["release"].wait()
        self.log.append("work")

    def after(self) -> None:
        self.log.append("after")


@dataclass
class Hangs:
    """Step `b` hangs while the test says so: a process that dies in the middle of it."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("a", lambda: self.log.append("a")), pf.Step("b", self.b))

    async def b(self) -> None:
        LOG.append("b")
        if "hang" in GATES:
            await GATES["hang"].wait()  # never set: the test cancels us here
        self.log.append("b")


@dataclass
class HangsBesideARetry(Hangs):
    """Hangs' steps in a thread, beside a thread whose step waits an hour for its retry."""

    def definition(self) -> pf.Section:
        retry = pf.Retry(max_attempts=3, backoff=pf.Backoff(initial=3600, cap=3600, jitter=0))
        return pf.S(
            pf.Go("flaky", pf.Step("call", self.call, retry=retry)),
            pf.Go("work", super().definition()),
            pf.WaitFor("both", lambda: "b" in self.log),
        )

    def call(self) -> None:
        raise ConnectionError("down")


WORKFLOWS = [Reminder, Gated, Hangs, HangsBesideARetry]


@pytest.fixture(autouse=True)
def _fresh_globals() -> None:
    FIRED.clear()
    GATES.clear()
    LOG.clear()


@pytest.fixture
async def engine(stores: Callable[[], Store], clock: TestClock) -> AsyncIterator[Engine]:
    async with Engine(stores(), workflows=WORKFLOWS, clock=clock) as e:
        yield e


async def _timer_entries(engine: Engine, id: str) -> int:
    return sum(1 for h in await engine.history(id) if h.kind == "timer")


# -- work_once and run_worker ------------------------------------------------------------------


async def test_work_once_claims_nothing_until_a_timer_is_due(engine: Engine, clock: TestClock) -> None:
    await engine.start(Reminder(id="r"), id="r")
    assert await engine.work_once() == 0
    clock.advance(59.9)
    assert await engine.work_once() == 0
    clock.advance(0.1)
    assert await engine.work_once() == 1
    inst = await engine.get("r")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.fired == 1
    assert await engine.work_once() == 0


async def test_work_once_works_on_at_most_batch_instances_earliest_due_first(
    engine: Engine, clock: TestClock
) -> None:
    for n in range(5):
        await engine.start(Reminder(id=f"r{n}"), id=f"r{n}")
        clock.advance(1)
    clock.advance(60)
    assert await engine.work_once(batch=2) == 2
    assert [FIRED[f"r{n}"] for n in range(5)] == [1, 1, 0, 0, 0]
    assert await engine.work_once(batch=10) == 3
    assert await engine.work_once(batch=10) == 0
    assert all(FIRED[f"r{n}"] == 1 for n in range(5))


async def test_a_worker_on_a_test_clock_wakes_when_the_test_moves_time(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reminder(id="r"), id="r")
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(engine.run_worker, poll_interval=30))
        await anyio.sleep(0.05)
        assert FIRED["r"] == 0
        clock.advance(61)  # more than the timer, and more than the worker's poll interval
        with anyio.fail_after(10):
            while FIRED["r"] == 0:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert (await engine.get("r")).status == pf.WorkflowStatus.FINISHED
    assert await _timer_entries(engine, "r") == 1


async def test_a_real_time_timer_is_delivered_by_a_polling_worker_on_time(tmp_path: Path) -> None:
    @dataclass
    class Quick:
        def definition(self) -> pf.Section:
            return pf.S(Sleep("nap", 0.5), pf.Step("woke", lambda: None))

    async with Engine(SQLiteStore(tmp_path / "real.db"), workflows=[Quick]) as engine:
        started = time.time()
        await engine.start(Quick(), id="q")
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(engine.run_worker, poll_interval=0.05))
            with anyio.fail_after(5):
                while (await engine.get("q")).status != pf.WorkflowStatus.FINISHED:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        delivered = next(h.at for h in await engine.history("q") if h.kind == "timer")
    assert delivered >= started + 0.5 - 0.002  # never early (history keeps milliseconds)
    assert delivered - (started + 0.5) < 1.0  # and late by at most a poll or so


async def test_cancelling_the_worker_finishes_the_batch_in_hand(engine: Engine, clock: TestClock) -> None:
    GATES["entered"] = anyio.Event()
    GATES["release"] = anyio.Event()
    await engine.start(Gated(), id="g")
    clock.advance(10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(engine.run_worker, poll_interval=0.01))
        with anyio.fail_after(5):
            await GATES["entered"].wait()
        tg.cancel_scope.cancel()
        GATES["release"].set()  # the step in hand goes on, cancelled or not
    inst = await engine.get("g")
    assert inst.data.log == ["work", "after"]
    assert inst.status == pf.WorkflowStatus.FINISHED


class FlakyClaims(MemoryStore):
    """An application's own store, whose first claim raises what procflow's stores never do."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def claim_due(self, now: float, *, limit: int, lease: float) -> list[pf.InstanceRecord]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("driver hiccup")
        return await super().claim_due(now, limit=limit, lease=lease)


async def test_a_worker_whose_store_raises_something_unexpected_logs_it_and_goes_on(
    clock: TestClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with Engine(FlakyClaims(), workflows=WORKFLOWS, clock=clock) as engine:
        await engine.start(Reminder(id="r"), id="r")
        clock.advance(61)
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(engine.run_worker, poll_interval=1))
            with anyio.fail_after(10):
                while FIRED["r"] == 0:
                    clock.advance(1)  # past the poll interval the worker sleeps after the failure
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert "claiming due instances failed" in caplog.text and "driver hiccup" in caplog.text


@dataclass
class Tick:
    """Sleeps 10 s, then one step that counts how many instances ran it."""

    def definition(self) -> pf.Section:
        return pf.S(Sleep("nap", 10), pf.Step("tick", lambda: LOG.append("tick")))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_cancelling_the_worker_stops_it_after_the_batch_in_hand_whatever_the_backlog(
    kind: str, tmp_path: Path, clock: TestClock, request: pytest.FixtureRequest
) -> None:
    async with Engine(backend_of(request, tmp_path, kind).make(), workflows=[Tick], clock=clock) as engine:
        for n in range(60):
            await engine.start(Tick(), id=f"t{n:02d}")
        clock.advance(10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(engine.run_worker, batch=5, poll_interval=0.01))
            with anyio.fail_after(5):
                while not LOG:
                    await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    assert len(LOG) <= 5  # the batch in hand, not the 60 due instances


async def test_a_claim_whose_worker_died_is_worked_on_once_its_lease_runs_out(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reminder(id="r"), id="r")
    clock.advance(60)
    # A worker claims the instance and dies before working on it.
    claimed = await engine.store.claim_due(clock.now(), limit=10, lease=30)
    assert [r.id for r in claimed] == ["r"]
    assert await engine.work_once() == 0  # held by the dead worker's lease
    clock.advance(29)
    assert await engine.work_once() == 0
    clock.advance(1)
    assert await engine.work_once() == 1
    assert FIRED["r"] == 1
    assert (await engine.get("r")).status == pf.WorkflowStatus.FINISHED


async def _start_and_die_in_step_b(engine: Engine, workflow: Hangs) -> None:
    """Start ``workflow`` as "h" in a process that "dies" while its step b runs."""
    GATES["hang"] = anyio.Event()
    with anyio.move_on_after(0.2):
        await engine.start(workflow, id="h")
    del GATES["hang"]


async def test_a_run_abandoned_in_the_middle_of_a_step_is_resumed_by_a_worker_after_stale_after(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with Engine(stores(), workflows=WORKFLOWS, clock=clock, stale_after=120) as engine:
        await _start_and_die_in_step_b(engine, Hangs())
        inst = await engine.get("h")
        assert inst.status == pf.WorkflowStatus.RESUMING
        assert inst.data.log == ["a"]
        clock.advance(119)
        assert await engine.work_once() == 0  # it may still be running somewhere
        clock.advance(1)
        assert await engine.work_once() == 1
        inst = await engine.get("h")
        assert inst.status == pf.WorkflowStatus.FINISHED
        assert inst.data.log == ["a", "b"]
        assert LOG == ["b", "b"]  # at least once: the step the dead run was in runs again


async def test_a_run_abandoned_beside_a_thread_waiting_for_its_retry_is_resumed_after_stale_after(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with Engine(stores(), workflows=WORKFLOWS, clock=clock, stale_after=120) as engine:
        await _start_and_die_in_step_b(engine, HangsBesideARetry())
        assert (await engine.get("h")).meta.retries == {"flaky": clock.now() + 3600}
        clock.advance(119)
        assert await engine.work_once() == 0  # it may still be running somewhere
        clock.advance(1)
        assert await engine.work_once() == 1  # not only once the other thread's retry is due
        inst = await engine.get("h")
        assert (inst.data.log, inst.status) == (["a", "b"], pf.WorkflowStatus.FINISHED)
        assert (inst.meta.retries, (await engine.store.get("h")).due_at) == ({}, None)  # nothing is due


async def test_recover_resumes_abandoned_runs_without_waiting_for_stale_after(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with Engine(stores(), workflows=WORKFLOWS, clock=clock) as engine:
        await _start_and_die_in_step_b(engine, Hangs())
        assert await engine.recover() == ["h"]
        assert (await engine.get("h")).status == pf.WorkflowStatus.FINISHED


class FlakySetup(pf.Handler):
    """A handler whose setup fails the first time (a webhook registration that timed out)."""

    type = "flaky"
    calls = 0

    def setup(self, req: pf.CallbackRequest) -> str:
        FlakySetup.calls += 1
        if FlakySetup.calls == 1:
            raise ConnectionError("registration timed out")
        return "registered"

    def handle(self, req: pf.CallbackRequest, payload: Any) -> str:
        return req.setup_data


@dataclass
class Hook:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("hooked", pf.On("hook", FlakySetup())))


async def test_a_worker_sets_up_again_an_event_whose_setup_failed(tmp_path: Path, clock: TestClock) -> None:
    FlakySetup.calls = 0
    async with Engine(
        SQLiteStore(tmp_path / "setup.db"), workflows=[Hook], clock=clock, setup_retry_delay=30
    ) as engine:
        inst = await engine.start(Hook(), id="h")
        assert inst.state.threads[0].wait_events[0].status == pf.WaitEventStatus.SETUP_ERROR
        clock.advance(29)
        assert await engine.work_once() == 0
        clock.advance(1)
        assert await engine.work_once() == 1
        inst = await engine.get("h")
        assert inst.state.threads[0].wait_events[0].status == pf.WaitEventStatus.SETUP
        assert await engine.send("h", "hook") == "registered"


class Registering(pf.Handler):
    """A webhook registration: a setup with side effects (it hands out a link to the instance)."""

    type = "registering"

    def setup(self, req: pf.CallbackRequest) -> str:
        if "die" in GATES:
            raise ProcessDied
        return "registered"

    def handle(self, req: pf.CallbackRequest, payload: Any) -> str:
        return req.setup_data


@dataclass
class Hooked:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("hooked", pf.On("hook", Registering())))


async def test_an_instance_whose_first_setup_has_side_effects_is_stored_before_it_runs(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(
        SQLiteStore(tmp_path / "hooked.db"), workflows=[Hooked], clock=clock, setup_retry_delay=30
    ) as engine:
        GATES["die"] = anyio.Event()
        with pytest.raises(ProcessDied):  # the process dies in the registration
            await engine.start(Hooked(), id="h")
        del GATES["die"]
        # A link the setup handed out finds the instance, and a worker sets it up again once
        # the dead process's setup looks abandoned (it might still be running: stale_after).
        assert (await engine.get("h")).status == pf.WorkflowStatus.WAITING
        clock.advance(299)
        assert await engine.work_once() == 0
        clock.advance(1)
        assert await engine.work_once() == 1
        assert await engine.send("h", "hook") == "registered"


@dataclass
class Precise:
    """Sleeps 10.0004 s (between two of the stores' milliseconds), then logs."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(Sleep("nap", 10.0004), pf.Step("woke", lambda: self.log.append("woke")))


async def test_a_worker_that_claims_an_instance_before_its_timer_is_due_puts_its_due_time_back(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with Engine(stores(), workflows=[Precise], clock=clock) as engine:
        await engine.start(Precise(), id="p")
        clock.advance(10.0002)  # the row (whole milliseconds) is due; the timer is not, yet
        assert await engine.work_once() == 1
        assert (await engine.get("p")).data.log == []
        clock.advance(0.0003)  # well within the worker's lease
        assert await engine.work_once() == 1
        assert (await engine.get("p")).data.log == ["woke"]


# -- one process: operations on an instance take turns ------------------------------------------


async def held_long() -> None:
    """A step the test holds until it sets GATES["release"]."""
    LOG.append("long")
    GATES["entered"].set()
    await GATES["release"].wait()


@dataclass
class Relay:
    """Main: "go", then a step the test holds; a side thread waits for "poke"."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("side", pf.Wait("poking", pf.OnEvent("poke", lambda: None))),
            pf.Wait("going", pf.OnEvent("go", lambda: None)),
            pf.Step("long", held_long),
            pf.Wait("ending", pf.OnEvent("end", lambda: None)),
        )


async def _poke_while_long_runs(engine: Engine, id: str, begin: Callable[[], Awaitable[object]]) -> None:
    """Run ``begin`` (which reaches the held step "long"), send "poke" meanwhile, then let "long" end."""
    GATES["entered"], GATES["release"] = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(begin)
        with anyio.fail_after(5):
            await GATES["entered"].wait()
        assert (await engine.get(id)).status == pf.WorkflowStatus.RESUMING  # stored, "long" running
        tg.start_soon(engine.send, id, "poke")  # waits for the turn of the run that holds "long"
        await anyio.sleep(0.05)
        GATES["release"].set()
    inst = await engine.get(id)
    assert [(p.thread, p.at) for p in inst.parked] == [(pf.MAIN_THREAD, "ending")]  # "side" got its poke


async def test_a_send_while_a_step_of_the_instance_runs_in_this_process_waits_and_runs_it_once(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(SQLiteStore(tmp_path / "relay.db"), workflows=[Relay], clock=clock) as engine:
        await engine.start(Relay(), id="r")
        await _poke_while_long_runs(engine, "r", functools.partial(engine.send, "r", "go"))
    assert LOG == ["long"]


@dataclass
class Napper:
    """Main: "go", then a step the test holds; a side thread naps ten seconds, then logs."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("side", pf.S(pf.Sleep("nap", 10), pf.Step("after nap", lambda: LOG.append("after nap")))),
            pf.Wait("going", pf.OnEvent("go", lambda: None)),
            pf.Step("long", held_long),
            pf.Wait("ending", pf.OnEvent("end", lambda: None)),
        )


async def test_a_worker_claims_nothing_while_a_step_runs_though_another_threads_timer_fell_due(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    GATES["entered"], GATES["release"] = anyio.Event(), anyio.Event()
    async with Engine(stores(), workflows=[Napper], clock=clock) as engine:
        await engine.start(Napper(), id="n")
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.send, "n", "go")
            with anyio.fail_after(5):
                await GATES["entered"].wait()
            clock.advance(60)  # the nap is over while "long" runs
            assert await engine.store.claim_due(clock.now(), limit=10, lease=30) == []
            GATES["release"].set()
        assert await engine.work_once() == 1  # the run is over: now the nap's timer is delivered
        inst = await engine.get("n")
    assert LOG == ["long", "after nap"]
    assert [(p.thread, p.at) for p in inst.parked] == [(pf.MAIN_THREAD, "ending")]


@dataclass
class Flaky:
    """A step, "charge", that fails its first call and is tried again 10 s later; its
    second call is held by the test (a third would return at once)."""

    id: str = ""

    def definition(self) -> pf.Section:
        retry = pf.Retry(max_attempts=3, backoff=pf.Backoff(initial=10, jitter=0))
        return pf.S(pf.Step("charge", self.charge, retry=retry))

    async def charge(self) -> None:
        FIRED[self.id] += 1
        if FIRED[self.id] == 1:
            raise ConnectionError("down")
        if FIRED[self.id] == 2:
            await held_long()


async def _hold_the_second_charge(
    clock: TestClock, run: Callable[[], Awaitable[object]], other: Engine
) -> None:
    """Run ``run`` (which reaches the held second call of "charge"), move the clock 90 s on
    meanwhile (past a worker's 60 s lease, short of ``stale_after``), and check that the
    ``other`` engine's worker takes nothing."""
    GATES["entered"], GATES["release"] = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            with anyio.fail_after(5):
                await GATES["entered"].wait()
            clock.advance(90)
            taken = await other.work_once()
        finally:
            GATES["release"].set()  # the held run is shielded from cancellation: it must end
    assert taken == 0


async def test_a_step_a_worker_runs_is_held_for_stale_after_not_just_the_workers_lease(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with (
        Engine(stores(), workflows=[Flaky], clock=clock) as engine,
        Engine(stores(), workflows=[Flaky], clock=clock) as other,
    ):
        await engine.start(Flaky(id="f"), id="f")
        clock.advance(10)  # the retry is due
        await _hold_the_second_charge(clock, engine.work_once, other)
        assert (await engine.get("f")).status == pf.WorkflowStatus.FINISHED
    assert FIRED["f"] == 2


async def test_a_run_resumed_by_hand_once_it_looked_abandoned_is_held_for_stale_after(
    stores: Callable[[], Store], clock: TestClock
) -> None:
    async with (
        Engine(stores(), workflows=[Flaky], clock=clock, stale_after=120) as engine,
        Engine(stores(), workflows=[Flaky], clock=clock, stale_after=120) as other,
    ):
        await engine.start(Flaky(id="f"), id="f")
        clock.advance(10)  # the retry is due, and no worker has taken it
        await _hold_the_second_charge(clock, functools.partial(engine.resume, "f"), other)
        assert (await engine.get("f")).status == pf.WorkflowStatus.FINISHED
    assert FIRED["f"] == 2


class WithoutRenewLease:
    """A store of the application's own, written before ``renew_lease``: a SQLite store
    without that method."""

    def __init__(self, path: Path) -> None:
        self._store = SQLiteStore(path)

    def __getattr__(self, name: str) -> Any:
        if name == "renew_lease":
            raise AttributeError(name)
        return getattr(self._store, name)


async def test_a_store_without_renew_lease_holds_a_step_by_committing_before_it(
    tmp_path: Path, clock: TestClock
) -> None:
    store: Any = WithoutRenewLease(tmp_path / "own.db")
    async with (
        Engine(store, workflows=[Flaky], clock=clock) as engine,
        Engine(SQLiteStore(tmp_path / "own.db"), workflows=[Flaky], clock=clock) as other,
    ):
        await engine.start(Flaky(id="f"), id="f")
        clock.advance(10)
        await _hold_the_second_charge(clock, engine.work_once, other)
        assert (await engine.get("f")).status == pf.WorkflowStatus.FINISHED
    assert FIRED["f"] == 2


@dataclass
class Opener:
    """Starts with two steps (the instance is stored before the second, which the test holds);
    a side thread waits for "poke"."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("side", pf.Wait("poking", pf.OnEvent("poke", lambda: None))),
            pf.Step("first", lambda: LOG.append("first")),
            pf.Step("long", held_long),
            pf.Wait("ending", pf.OnEvent("end", lambda: None)),
        )


async def test_a_send_while_a_step_of_a_start_runs_in_this_process_waits_and_runs_it_once(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(SQLiteStore(tmp_path / "opener.db"), workflows=[Opener], clock=clock) as engine:
        await _poke_while_long_runs(engine, "o", functools.partial(engine.start, Opener(), id="o"))
    assert LOG == ["first", "long"]


@dataclass
class SelfSender:
    """A step that sends an event to its own instance through the engine."""

    id: str = ""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("kicking", pf.OnEvent("kick", lambda: None)),
            pf.Step("send to myself", self.send_to_myself),
            pf.Wait("w", pf.OnEvent("e", lambda: None)),
        )

    async def send_to_myself(self) -> None:
        await SELF_SENDING[0].send(self.id, "e")


SELF_SENDING: list[Engine] = []


async def test_a_step_that_calls_the_engine_on_its_own_instance_fails_with_reentrant_call_error(
    tmp_path: Path,
) -> None:
    async with Engine(SQLiteStore(tmp_path / "self.db"), workflows=[SelfSender]) as engine:
        SELF_SENDING[:] = [engine]
        await engine.start(SelfSender(id="s"), id="s")
        await engine.send("s", "kick")
        inst = await engine.get("s")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None and inst.failure.error.startswith("ReentrantCallError: instance 's'")


@dataclass
class ChildTaskSender(SelfSender):
    """The same, from a task its step starts and waits for."""

    async def send_to_myself(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(SELF_SENDING[0].send, self.id, "e")


async def test_a_task_started_by_a_step_that_calls_the_engine_on_its_instance_fails_the_step(
    tmp_path: Path,
) -> None:
    async with Engine(SQLiteStore(tmp_path / "self.db"), workflows=[ChildTaskSender]) as engine:
        SELF_SENDING[:] = [engine]
        await engine.start(ChildTaskSender(id="s"), id="s")
        with anyio.fail_after(5):  # it used to wait for itself, forever
            await engine.send("s", "kick")
        inst = await engine.get("s")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None and "ReentrantCallError: instance 's'" in inst.failure.error


# -- several workers: each due timer delivered exactly once ------------------------------------


async def _race_workers(make_store: Callable[[], Store], clock: TestClock, count: int, sender: bool) -> None:
    """Two engines run work_once until nothing is due (and a third sends to every 5th instance)."""
    async with Engine(make_store(), workflows=WORKFLOWS, clock=clock) as first:
        for n in range(count):
            await first.start(Reminder(id=f"r{n:03d}"), id=f"r{n:03d}")
    clock.advance(61)
    claims: Counter[int] = Counter()
    refused: Counter[str] = Counter()

    async def work(engine: Engine, n: int) -> None:
        while (got := await engine.work_once(batch=7)) > 0:
            claims[n] += got

    async def send(engine: Engine) -> None:
        # A sender touching instances meanwhile delivers overdue timers too (the lazy way).
        for n in range(0, count, 5):
            try:
                await engine.send(f"r{n:03d}", "done")
            except (pf.CallbackNotFound, pf.WorkflowFinishedError) as e:
                refused[type(e).__name__] += 1

    async with (
        Engine(make_store(), workflows=WORKFLOWS, clock=clock) as a,
        Engine(make_store(), workflows=WORKFLOWS, clock=clock) as b,
        Engine(make_store(), workflows=WORKFLOWS, clock=clock) as c,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(work, a, 0)
            tg.start_soon(work, b, 1)
            if sender:
                tg.start_soon(send, c)
        assert claims[0] > 0 and claims[1] > 0, claims  # both workers took part
        assert await a.work_once() == 0
        ids = [f"r{n:03d}" for n in range(count)]
        for id in ids:
            inst = await a.get(id)
            assert inst.status == pf.WorkflowStatus.FINISHED
            assert inst.data.fired == 1 and not inst.data.done
            assert await _timer_entries(a, id) == 1  # delivered exactly once
        if sender:
            # Each send found the timer overdue, so it delivered it first (or found it delivered):
            # it never reached "done". The timer's step may have run twice, in a worker and in a
            # sender; see test_a_send_or_resume_does_not_run_again_a_step_a_worker_is_running.
            assert sum(refused.values()) == len(range(0, count, 5))
        else:
            assert Counter({id: 1 for id in ids}) == FIRED  # its step ran once


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("sender", [False, True], ids=["workers", "workers+sender"])
async def test_two_workers_on_postgres_deliver_each_of_300_due_timers_exactly_once(
    postgres_database: str, clock: TestClock, sender: bool
) -> None:
    await _race_workers(lambda: PostgresStore(postgres_database, max_size=2), clock, 300, sender)


@pytest.mark.parametrize("sender", [False, True], ids=["workers", "workers+sender"])
async def test_two_workers_on_one_sqlite_file_deliver_each_of_200_due_timers_exactly_once(
    tmp_path: Path, clock: TestClock, sender: bool
) -> None:
    await _race_workers(lambda: SQLiteStore(tmp_path / "race.db", synchronous="OFF"), clock, 200, sender)


@dataclass
class Inflight:
    """Sleeps 10 s, then a step that holds until the test releases it (each run of it by its own gate)."""

    def definition(self) -> pf.Section:
        return pf.S(Sleep("nap", 10), pf.Step("long", self.long))

    async def long(self) -> None:
        run = len(LOG)
        LOG.append("long")
        GATES[f"entered {run}"].set()
        await GATES[f"release {run}"].wait()


def _inflight_gates() -> None:
    for run in (0, 1):
        GATES[f"entered {run}"] = anyio.Event()
        GATES[f"release {run}"] = anyio.Event()


@pytest.mark.parametrize("how", ["resume", "send"])
async def test_a_send_or_resume_does_not_run_again_a_step_a_worker_is_running(
    tmp_path: Path, clock: TestClock, how: str
) -> None:
    _inflight_gates()
    async with Engine(SQLiteStore(tmp_path / "inflight.db"), workflows=[Inflight], clock=clock) as engine:
        await engine.start(Inflight(), id="i")
        clock.advance(10)

        async def touch() -> None:
            with contextlib.suppress(pf.ProcflowError):  # losing the race may be refused
                if how == "resume":
                    await engine.resume("i")
                else:
                    await engine.send("i", "nothing-parked", buffer=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.work_once)  # the worker delivers the timer, runs "long"
            with anyio.fail_after(5):
                await GATES["entered 0"].wait()
            tg.start_soon(touch)  # meanwhile a resume or a send touches the instance
            with anyio.move_on_after(0.5):
                await GATES["entered 1"].wait()
            GATES["release 0"].set()
            GATES["release 1"].set()
        assert (await engine.get("i")).status == pf.WorkflowStatus.FINISHED
    assert LOG == ["long"]  # no process died: the step ran once


# -- child processes ---------------------------------------------------------------------------


def _env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "WORKER_WORKDIR": str(workdir), "PYTHONPATH": str(PROGRAMS), "NO_COLOR": "1"}


def _app(workdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), *args],
        env=_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _procflow(workdir: Path, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "procflow", "--db", url, "--app", "worker_app:make_engine", *args],
        cwd=workdir,
        env=_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _effects(workdir: Path) -> list[str]:
    path = workdir / "effects"
    return path.read_text().split() if path.exists() else []


def _worker_app() -> Any:
    sys.path.insert(0, str(PROGRAMS))
    try:
        import worker_app
    finally:
        sys.path.pop(0)
    return worker_app


async def _load_all(url: str, ids: list[str]) -> tuple[dict[str, pf.Instance[Any]], dict[str, list[str]]]:
    async with Engine(open_store(url), workflows=_worker_app().WORKFLOWS) as engine:
        instances = {id: await engine.get(id) for id in ids}
        kinds = {id: [h.kind for h in await engine.history(id)] for id in ids}
    return instances, kinds


CHORES = 80


@pytest.mark.slow
def test_sigkill_of_a_worker_delivering_timers_and_retries_loses_nothing_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'chores.db'}"
    started = _app(tmp_path, "start", url, str(CHORES))
    _, err = started.communicate(timeout=60)
    assert started.returncode == 0, err
    assert Counter(_effects(tmp_path)) == {f"chore-{n:03d}:a": 1 for n in range(CHORES)}

    rng = random.Random(20261125)
    kills = 0
    for _ in range(4):
        # Kill the worker once it has run a random number of further steps: at a random point
        # of its work, whatever the speed of the machine and its disk.
        target = len(_effects(tmp_path)) + rng.randint(5, 40)
        child = _app(tmp_path, "work", url)
        deadline = time.monotonic() + 30
        while child.poll() is None and len(_effects(tmp_path)) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        _, err = child.communicate()
        assert child.returncode in (0, -signal.SIGKILL), err
    before_last = Counter(e.split(":")[1] for e in _effects(tmp_path))
    final = _app(tmp_path, "work", url)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    assert out.strip() == "done"
    assert kills == 4
    assert before_last["b"] > 0 and before_last["d"] < CHORES  # the kills fell in the middle of the work

    ids = [f"chore-{n:03d}" for n in range(CHORES)]
    instances, kinds = anyio.run(_load_all, url, ids)
    runs = Counter(_effects(tmp_path))
    for id in ids:
        # Nothing lost: every chore reached its end, every step ran.
        assert instances[id].status == pf.WorkflowStatus.FINISHED, id
        assert runs[f"{id}:a"] >= 1 and runs[f"{id}:b"] >= 1 and runs[f"{id}:d"] >= 1
        assert runs[f"{id}:c"] >= 2  # the first call fails, a retry runs it again
        # Nothing delivered twice: one timer delivery per chore, and its branch's step stored once.
        assert kinds[id].count("timer") == 1, (id, kinds[id])
        assert instances[id].data.fired == 1
    # The retry of step c shows in the history (unless a kill undid c's failed first attempt).
    assert sum(k.count("retry") for k in kinds.values()) >= CHORES - kills
    # At least once for steps: a kill repeats at most the one step that had not been committed.
    expected = CHORES * 5  # a, b, c twice, d
    assert sum(runs.values()) - expected <= kills


@pytest.mark.slow
def test_procflow_worker_stops_on_sigterm_after_finishing_the_step_in_hand(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'slow.db'}"

    async def start() -> None:
        async with Engine(open_store(url), workflows=_worker_app().WORKFLOWS) as engine:
            await engine.start(_worker_app().Slow(), id="slow")

    anyio.run(start)
    worker = _procflow(tmp_path, url, "worker", "--poll", "0.05")
    deadline = time.monotonic() + 20
    while "slow:start" not in _effects(tmp_path):
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline, "the worker never started the step"
        time.sleep(0.02)
    worker.send_signal(signal.SIGTERM)
    _out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert "SIGTERM" in err
    assert _effects(tmp_path) == ["slow:start", "slow:end"]

    async def final() -> pf.Instance[Any]:
        async with Engine(open_store(url), workflows=_worker_app().WORKFLOWS) as engine:
            return await engine.get("slow")

    assert anyio.run(final).status == pf.WorkflowStatus.FINISHED
