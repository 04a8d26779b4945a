"""Retries: ``Step(..., retry=Retry(...))``, the backoff a worker waits for, FAILED, retry by hand.

Time is a ``TestClock``; the stores are real (memory, SQLite on a temporary
file, PostgreSQL on the throwaway cluster). The step's attempts are counted
outside the workflow (``TRIES``), as a call to a flaky service would be.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from process_death import ProcessDied

import procflow as pf
from procflow import Backoff, Retry, TestClock, Timer
from procflow.bookkeeping import Bookkeeping
from procflow.engine import Engine
from procflow.stores import MemoryStore, SQLiteStore, Store, open_store

pytestmark = pytest.mark.anyio

PROGRAMS = Path(__file__).parent / "programs"

# How often each instance's flaky step was called.
TRIES: Counter[str] = Counter()


class CardDeclined(Exception):
    """An error no retry will fix."""


POLICY = Retry(
    max_attempts=3, backoff=Backoff(initial=10, multiplier=2, jitter=0), non_retryable=(CardDeclined,)
)


@dataclass
class Payment:
    """Reserve, charge (fails its first ``fails`` calls), ship. ``declined``: the card is refused."""

    id: str = ""
    fails: int = 0
    declined: bool = False
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve"), compensate=self.release),
            pf.Step("charge", self.charge, retry=POLICY, compensate=self.refund),
            pf.Step("ship", lambda: self.log.append("ship")),
        )

    async def charge(self) -> None:
        TRIES[self.id] += 1
        await anyio.lowlevel.checkpoint()
        if self.declined:
            raise CardDeclined("card declined")
        if TRIES[self.id] <= self.fails:
            raise ConnectionError(f"payment service down (call {TRIES[self.id]})")
        self.log.append("charge")

    def release(self) -> None:
        self.log.append("release")

    def refund(self) -> None:
        self.log.append("refund")


@dataclass
class NoPolicy:
    id: str = ""
    fails: int = 1

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("call", self.call))

    def call(self) -> None:
        TRIES[self.id] += 1
        if TRIES[self.id] <= self.fails:
            raise ValueError("bad answer")


# A file name that is not UTF-8, as os.listdir returns it: a lone surrogate.
NON_UTF8_NAME = b"report-\xff.csv".decode("utf-8", "surrogateescape")


@dataclass
class Unreadable(NoPolicy):
    """Its step fails with a message that holds a lone surrogate."""

    def call(self) -> None:
        raise FileNotFoundError(f"cannot open {NON_UTF8_NAME}")


# How many more times Trip's flight cancellation raises, and dies with its process, by workflow id.
CANCEL_FLIGHT_FAILURES: Counter[str] = Counter()
FLIGHT_CANCEL_CRASHES: Counter[str] = Counter()


@dataclass
class Trip:
    """Book a flight and a hotel (both undoable), then pay, which always fails, without a retry policy."""

    id: str = ""
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(*self.bookings(), pf.Step("pay", self.pay))

    def bookings(self) -> tuple[pf.Step, pf.Step]:
        flight = pf.Step("flight", lambda: self.log.append("flight"), compensate=self.cancel_flight)
        hotel = pf.Step(
            "hotel", lambda: self.log.append("hotel"), compensate=lambda: self.log.append("no hotel")
        )
        return flight, hotel

    def cancel_flight(self) -> None:
        if FLIGHT_CANCEL_CRASHES[self.id] > 0:
            FLIGHT_CANCEL_CRASHES[self.id] -= 1
            raise ProcessDied
        if CANCEL_FLIGHT_FAILURES[self.id] > 0:
            CANCEL_FLIGHT_FAILURES[self.id] -= 1
            raise ConnectionError("the airline is down")
        self.log.append("no flight")

    def pay(self) -> None:
        TRIES[self.id] += 1
        raise CardDeclined("card declined")


@dataclass
class Booking(Trip):
    """Trip's bookings, then a wait for a confirmation, or a timeout in an hour."""

    def definition(self) -> pf.Section:
        return pf.S(
            *self.bookings(),
            pf.Wait(
                "confirmation",
                pf.OnEvent("confirm", lambda: self.log.append("confirmed")),
                pf.On("timeout", Timer(after=3600), pf.Step("expire", lambda: self.log.append("expired"))),
            ),
        )


@dataclass
class Flight(Trip):
    """Only the flight (undoable), then a wait for a confirmation."""

    def definition(self) -> pf.Section:
        return pf.S(self.bookings()[0], pf.Wait("confirmation", pf.OnEvent("confirm", lambda: None)))


WORKFLOWS = [Payment, NoPolicy, Unreadable, Trip, Booking, Flight]


@pytest.fixture(autouse=True)
def _fresh_tries() -> None:
    TRIES.clear()
    CANCEL_FLIGHT_FAILURES.clear()
    FLIGHT_CANCEL_CRASHES.clear()


@pytest.fixture
async def engine(new_store: Callable[[], Store], clock: TestClock) -> AsyncIterator[Engine]:
    async with Engine(new_store(), workflows=WORKFLOWS, clock=clock) as e:
        yield e


async def _history(engine: Engine, id: str) -> list[tuple[str, str, str]]:
    return [(h.kind, h.name, h.detail) for h in await engine.history(id)]


# -- the backoff -------------------------------------------------------------------------------


async def test_a_failing_step_waits_for_its_backoff_then_the_worker_runs_it_again(
    engine: Engine, clock: TestClock
) -> None:
    inst = await engine.start(Payment(id="p", fails=2), id="p")
    assert inst.status == pf.WorkflowStatus.RESUMING
    assert TRIES["p"] == 1
    assert inst.meta.retry_at == pytest.approx(clock.now() + 10)
    assert (await engine.store.get("p")).due_at == pytest.approx(clock.now() + 10)

    clock.advance(9.9)
    assert await engine.work_once() == 0  # not before the backoff ran out
    await engine.resume("p")  # nor when touched
    assert TRIES["p"] == 1
    clock.advance(0.1)
    assert await engine.work_once() == 1
    assert TRIES["p"] == 2
    inst = await engine.get("p")
    assert inst.status == pf.WorkflowStatus.RESUMING
    assert inst.meta.retry_at == pytest.approx(clock.now() + 20)  # 10 * 2

    clock.advance(19.9)
    assert await engine.work_once() == 0
    clock.advance(0.1)
    assert await engine.work_once() == 1
    inst = await engine.get("p")
    assert TRIES["p"] == 3
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.log == ["reserve", "charge", "ship"]
    assert inst.meta.attempts == {} and inst.meta.retry_at is None

    history = await _history(engine, "p")
    retries = [h for h in history if h[0] == "retry"]
    assert retries == [
        ("retry", "charge", "attempt 1 failed: payment service down (call 1)"),
        ("retry", "charge", "attempt 2 failed: payment service down (call 2)"),
    ]
    assert [h[0] for h in history if h[1] == "charge"] == [
        "step_failed",
        "retry",
        "step_failed",
        "retry",
        "step",
    ]


async def test_attempts_and_the_backoff_survive_a_restart(tmp_path: Path, clock: TestClock) -> None:
    path = tmp_path / "restart.db"
    async with Engine(SQLiteStore(path), workflows=WORKFLOWS, clock=clock) as engine:
        await engine.start(Payment(id="p", fails=5), id="p")
    async with Engine(SQLiteStore(path), workflows=WORKFLOWS, clock=clock) as engine:
        clock.advance(9)
        assert await engine.work_once() == 0
        clock.advance(1)
        assert await engine.work_once() == 1
    async with Engine(SQLiteStore(path), workflows=WORKFLOWS, clock=clock) as engine:
        clock.advance(20)
        assert await engine.work_once() == 1
        inst = await engine.get("p")
    assert TRIES["p"] == 3
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None and inst.failure.attempts == 3


# -- running out of attempts -------------------------------------------------------------------


async def test_when_attempts_run_out_the_instance_fails_saying_which_step_and_why(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Payment(id="p", fails=10), id="p")
    clock.advance(10)
    await engine.work_once()
    clock.advance(20)
    await engine.work_once()
    inst = await engine.get("p")
    assert TRIES["p"] == 3
    assert inst.status == pf.WorkflowStatus.FAILED
    failure = inst.failure
    assert failure is not None
    assert failure.step == "charge"
    assert failure.thread == pf.MAIN_THREAD
    assert failure.attempts == 3
    assert failure.error == "ConnectionError: payment service down (call 3)"
    assert failure.at == pytest.approx(clock.now())
    assert inst.data.log == ["reserve"]
    assert ("failed", "charge", "after 3 attempt(s): payment service down (call 3)") in await _history(
        engine, "p"
    )
    assert (inst.meta.retries, inst.meta.retry_at) == ({}, None)  # no retry pending
    # The store knows it failed: it is listed as FAILED and due for nothing.
    record = await engine.store.get("p")
    assert record.status == "FAILED" and record.due_at is None
    assert [s.id async for s in engine.list(status="FAILED")] == ["p"]


async def _fail_three_times(engine: Engine, clock: TestClock, fails: int) -> None:
    """Start a Payment "p" whose charge fails ``fails`` times, and let a worker try it three times."""
    await engine.start(Payment(id="p", fails=fails), id="p")
    for _ in range(2):
        clock.advance(100)
        await engine.work_once()


async def test_a_failed_instance_is_left_alone_by_workers_and_resume(
    engine: Engine, clock: TestClock
) -> None:
    await _fail_three_times(engine, clock, fails=10)
    assert TRIES["p"] == 3
    clock.advance(365 * 86400)
    assert await engine.work_once() == 0
    inst = await engine.resume("p")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert TRIES["p"] == 3


async def test_a_non_retryable_error_fails_the_instance_at_once(engine: Engine, clock: TestClock) -> None:
    inst = await engine.start(Payment(id="p", declined=True), id="p")
    assert TRIES["p"] == 1
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None
    assert (inst.failure.attempts, inst.failure.error) == (1, "CardDeclined: card declined")
    clock.advance(3600)
    assert await engine.work_once() == 0
    assert TRIES["p"] == 1


async def test_a_step_without_a_retry_policy_fails_the_instance_on_its_first_error(engine: Engine) -> None:
    inst = await engine.start(NoPolicy(id="n"), id="n")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None
    assert (inst.failure.step, inst.failure.attempts) == ("call", 1)
    assert inst.failure.error == "ValueError: bad answer"


async def test_a_failure_whose_message_holds_a_lone_surrogate_is_stored_with_it_escaped(
    engine: Engine,
) -> None:
    inst = await engine.start(Unreadable(id="u"), id="u")
    assert inst.status == pf.WorkflowStatus.FAILED
    stored = await engine.get("u")
    assert stored.failure is not None
    assert stored.failure.error == "FileNotFoundError: cannot open report-\\udcff.csv"
    assert [h.detail for h in await engine.history("u") if h.kind == "failed"] == [
        "after 1 attempt(s): cannot open report-\\udcff.csv"
    ]


# -- retry by hand, cancel with compensation ---------------------------------------------------


async def test_retry_by_hand_runs_the_failed_step_again_now(engine: Engine, clock: TestClock) -> None:
    await _fail_three_times(engine, clock, fails=3)
    assert (await engine.get("p")).status == pf.WorkflowStatus.FAILED
    inst = await engine.retry("p")  # the 4th call succeeds
    assert TRIES["p"] == 4
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.failure is None
    assert inst.data.log == ["reserve", "charge", "ship"]
    assert ("retried", "charge", "by hand") in await _history(engine, "p")
    stored = await engine.get("p")
    assert stored.status == pf.WorkflowStatus.FINISHED and stored.failure is None


async def test_a_retry_by_hand_that_fails_again_starts_the_policy_over(
    engine: Engine, clock: TestClock
) -> None:
    await _fail_three_times(engine, clock, fails=4)
    inst = await engine.retry("p")  # the 4th call fails: attempt 1 of a new round
    assert TRIES["p"] == 4
    assert inst.status == pf.WorkflowStatus.RESUMING
    assert inst.meta.attempts == {pf.MAIN_THREAD: {"charge": 1}}
    assert inst.meta.retry_at == pytest.approx(clock.now() + 10)
    clock.advance(10)
    assert await engine.work_once() == 1
    assert (await engine.get("p")).status == pf.WorkflowStatus.FINISHED


async def test_goto_on_a_failed_instance_clears_its_failure_and_runs_on(engine: Engine) -> None:
    await engine.start(Payment(id="p", declined=True), id="p")
    inst = await engine.goto("p", thread=pf.MAIN_THREAD, step="charge", who="ops", why="paid by phone")
    assert (inst.failure, inst.status) == (None, pf.WorkflowStatus.FINISHED)
    assert inst.data.log == ["reserve", "ship"]


async def test_goto_back_before_a_failed_step_starts_its_retry_policy_over(
    engine: Engine, clock: TestClock
) -> None:
    await _fail_three_times(engine, clock, fails=4)
    assert (await engine.get("p")).status == pf.WorkflowStatus.FAILED
    inst = await engine.goto("p", thread=pf.MAIN_THREAD, step="reserve", who="ops", why="service fixed")
    assert TRIES["p"] == 4  # the 4th call fails: attempt 1 of a new round, not the 4th of 3
    assert inst.status == pf.WorkflowStatus.RESUMING
    assert inst.meta.attempts == {pf.MAIN_THREAD: {"charge": 1}}
    clock.advance(10)
    assert await engine.work_once() == 1
    assert (await engine.get("p")).status == pf.WorkflowStatus.FINISHED


async def test_goto_of_another_thread_leaves_a_failed_threads_failure_and_step_alone(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(SQLiteStore(tmp_path / "side.db"), workflows=[FailedSide], clock=clock) as engine:
        await engine.start(FailedSide(id="f"), id="f")
        await engine.send("f", "kick")  # "call" fails: the instance fails on thread "side"
        inst = await engine.goto("f", thread=pf.MAIN_THREAD, step="ending", who="ops", why="no ping")
        assert inst.status == pf.WorkflowStatus.FAILED
        assert inst.failure is not None and (inst.failure.step, inst.failure.thread) == ("call", "side")
        assert TRIES["f"] == 1  # its step did not run again


async def test_retry_of_an_instance_that_has_not_failed_is_refused(engine: Engine) -> None:
    await engine.start(Payment(id="p"), id="p")
    with pytest.raises(pf.ProcflowError, match="has not failed"):
        await engine.retry("p")
    with pytest.raises(pf.InstanceNotFound):
        await engine.retry("nobody")


async def test_a_failed_instance_can_be_cancelled_with_compensation(engine: Engine, clock: TestClock) -> None:
    await engine.start(Payment(id="p", declined=True), id="p")
    inst = await engine.cancel("p", reason="card declined, order dropped", compensate=True)
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.failure is None
    assert inst.state.reason == "card declined, order dropped"
    assert inst.data.log == ["reserve", "release"]  # charge never completed: nothing to refund
    stored = await engine.get("p")
    assert stored.status == pf.WorkflowStatus.CANCELLED
    assert (await engine.store.get("p")).status == "CANCELLED"
    kinds = [h[0] for h in await _history(engine, "p")]
    assert kinds[-2:] == ["compensated", "cancelled"]


async def test_recover_leaves_a_step_waiting_for_its_backoff_and_does_not_list_it(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Payment(id="p", fails=5), id="p")  # charge failed: again in 10 s
    assert await engine.recover() == []
    assert TRIES["p"] == 1
    clock.advance(10)
    assert await engine.recover() == ["p"]
    assert TRIES["p"] == 2


async def _trip_whose_cancel_was_cut_short(engine: Engine) -> None:
    """Trip "t", FAILED on its payment, then cancelled with compensation: the hotel is undone,
    the airline is down, so the flight's compensation raises."""
    await engine.start(Trip(id="t"), id="t")
    CANCEL_FLIGHT_FAILURES["t"] = 1
    with pytest.raises(pf.StepError):
        await engine.cancel("t", reason="trip dropped", compensate=True)


async def test_a_cancel_of_a_failed_instance_cut_short_leaves_it_failed(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Trip(id="t"), id="t")
    CANCEL_FLIGHT_FAILURES["t"] = 1
    with pytest.raises(pf.StepError):  # the hotel was cancelled, then the airline was down
        await engine.cancel("t", reason="trip dropped", compensate=True)
    inst = await engine.get("t")
    assert inst.status == pf.WorkflowStatus.FAILED
    # Failed now on the compensation that raised: the payment will never be retried.
    assert inst.failure is not None and (inst.failure.step, inst.failure.thread) == ("flight", "")
    assert await engine.recover() == []
    clock.advance(3600)
    assert await engine.work_once() == 0
    assert TRIES["t"] == 1  # the failed payment did not run again


async def test_a_cancel_of_a_failed_instance_cut_short_carries_on_when_called_again(
    engine: Engine, clock: TestClock
) -> None:
    await _trip_whose_cancel_was_cut_short(engine)
    inst = await engine.cancel("t", reason="trip dropped", compensate=True)
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.failure is None
    assert inst.data.log == ["flight", "hotel", "no hotel", "no flight"]


async def test_a_cancel_called_again_without_compensate_still_compensates_what_is_left(
    engine: Engine,
) -> None:
    await _trip_whose_cancel_was_cut_short(engine)
    inst = await engine.cancel("t", reason="changed my mind")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.data.log == ["flight", "hotel", "no hotel", "no flight"]
    assert inst.state.completed == []


async def test_a_cancel_called_again_keeps_the_first_reason(engine: Engine) -> None:
    await _trip_whose_cancel_was_cut_short(engine)
    inst = await engine.cancel("t", reason="again")
    assert inst.state.reason == "trip dropped"


@pytest.mark.parametrize("reason", ["", "  "], ids=["empty", "blank"])
async def test_a_cancel_without_a_reason_is_refused_and_changes_nothing(engine: Engine, reason: str) -> None:
    await engine.start(Booking(id="b"), id="b")
    with pytest.raises(ValueError, match="cancel needs a reason"):
        await engine.cancel("b", reason=reason, compensate=True)
    inst = await engine.get("b")
    assert inst.status == pf.WorkflowStatus.WAITING
    assert inst.data.log == ["flight", "hotel"]


async def test_an_instance_being_cancelled_accepts_no_event(engine: Engine) -> None:
    await _booking_whose_cancel_died(engine)
    inst = await engine.get("b")
    assert inst.parked and inst.accepts == []


async def test_retry_carries_on_the_cancel_of_an_instance_whose_compensation_failed(
    engine: Engine,
) -> None:
    await _trip_whose_cancel_was_cut_short(engine)
    inst = await engine.retry("t")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.data.log == ["flight", "hotel", "no hotel", "no flight"]
    assert TRIES["t"] == 1  # the failed payment did not run again


async def test_a_retried_cancel_whose_compensation_raises_again_counts_the_attempt(engine: Engine) -> None:
    await engine.start(Trip(id="t"), id="t")
    CANCEL_FLIGHT_FAILURES["t"] = 2
    with pytest.raises(pf.StepError):
        await engine.cancel("t", reason="trip dropped", compensate=True)
    with pytest.raises(pf.StepError):
        await engine.retry("t")
    inst = await engine.get("t")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None and (inst.failure.step, inst.failure.attempts) == ("flight", 2)


async def _booking_whose_cancel_died(engine: Engine) -> None:
    await engine.start(Booking(id="b"), id="b")
    FLIGHT_CANCEL_CRASHES["b"] = 1
    with pytest.raises(ProcessDied):  # after the hotel's compensation was saved
        await engine.cancel("b", reason="plans changed", compensate=True)


async def test_a_cancel_whose_process_died_is_carried_on_by_a_worker_once_stale(
    engine: Engine, clock: TestClock
) -> None:
    await _booking_whose_cancel_died(engine)
    assert (await engine.get("b")).state.cancelling
    clock.advance(engine.stale_after + 1)
    assert await engine.work_once() == 1
    inst = await engine.get("b")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.data.log == ["flight", "hotel", "no hotel", "no flight"]


async def test_a_cancel_whose_process_died_in_its_first_compensation_is_carried_on_once_stale(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Flight(id="f"), id="f")
    FLIGHT_CANCEL_CRASHES["f"] = 1
    with pytest.raises(ProcessDied):  # in the first compensation: nothing of the cancel saved but its mark
        await engine.cancel("f", reason="plans changed", compensate=True)
    assert (await engine.get("f")).state.cancelling
    clock.advance(engine.stale_after + 1)
    assert await engine.work_once() == 1
    inst = await engine.get("f")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.data.log == ["flight", "no flight"]


async def test_an_instance_being_cancelled_refuses_events(engine: Engine) -> None:
    await _booking_whose_cancel_died(engine)
    with pytest.raises(pf.WorkflowFinishedError, match="being cancelled"):
        await engine.send("b", "confirm", None)
    assert (await engine.get("b")).data.log == ["flight", "hotel", "no hotel"]


async def test_an_overdue_timer_of_an_instance_being_cancelled_does_not_fire(
    engine: Engine, clock: TestClock
) -> None:
    await _booking_whose_cancel_died(engine)
    clock.advance(3600)
    inst = await engine.resume("b")  # the cancel is stale by now: carried on instead
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.data.log == ["flight", "hotel", "no hotel", "no flight"]


async def test_goto_refuses_an_instance_being_cancelled(engine: Engine) -> None:
    await _booking_whose_cancel_died(engine)
    with pytest.raises(pf.WorkflowFinishedError, match="being cancelled"):
        await engine.goto("b", thread=pf.MAIN_THREAD, step="hotel", who="ops", why="test")


async def test_an_instance_waiting_for_its_backoff_can_be_cancelled(engine: Engine, clock: TestClock) -> None:
    await engine.start(Payment(id="p", fails=5), id="p")
    inst = await engine.cancel("p", reason="stop", compensate=True)
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert (await engine.store.get("p")).due_at is None
    clock.advance(3600)
    assert await engine.work_once() == 0
    assert TRIES["p"] == 1


def test_procflow_retry_runs_the_failed_step_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fragile.db'}"
    env = {**os.environ, "WORKER_WORKDIR": str(tmp_path), "PYTHONPATH": str(PROGRAMS), "NO_COLOR": "1"}
    sys.path.insert(0, str(PROGRAMS))
    try:
        import worker_app
    finally:
        sys.path.pop(0)
    os.environ["WORKER_WORKDIR"] = str(tmp_path)
    try:
        (tmp_path / "broken").touch()

        async def start() -> pf.Instance[Any]:
            async with Engine(open_store(url), workflows=worker_app.WORKFLOWS) as engine:
                return await engine.start(worker_app.Fragile(), id="f")

        assert anyio.run(start).status == pf.WorkflowStatus.FAILED
        (tmp_path / "broken").unlink()
        done = subprocess.run(
            [sys.executable, "-m", "procflow", "--db", url, "--app", "worker_app:make_engine", "retry", "f"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "f: FINISHED"

        async def final() -> pf.Instance[Any]:
            async with Engine(open_store(url), workflows=worker_app.WORKFLOWS) as engine:
                return await engine.get("f")

        inst = anyio.run(final)
        assert inst.status == pf.WorkflowStatus.FINISHED
        assert inst.data.calls == 1
        assert (tmp_path / "effects").read_text().split() == ["fragile:call", "fragile:call"]
    finally:
        del os.environ["WORKER_WORKDIR"]


# -- what the policy says ----------------------------------------------------------------------


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    backoff = Backoff(initial=10, multiplier=3, cap=100, jitter=0)
    assert [backoff.delay(n) for n in range(1, 6)] == [10, 30, 90, 100, 100]


def test_backoff_stays_at_its_cap_however_many_attempts_failed() -> None:
    backoff = Backoff(initial=1, multiplier=2, cap=300, jitter=0)
    assert [backoff.delay(n) for n in (1024, 1025, 10**6)] == [300, 300, 300]


def test_a_backoff_of_zero_stays_zero_however_many_attempts_failed() -> None:
    assert Backoff(initial=0, jitter=0).delay(10**6) == 0


def test_backoff_jitter_spreads_the_delay_either_way_by_at_most_its_fraction() -> None:
    backoff = Backoff(initial=100, multiplier=2, jitter=0.2)
    rng = random.Random(7)
    delays = [backoff.delay(1, rng) for _ in range(500)]
    assert all(80 <= d <= 120 for d in delays)
    assert min(delays) < 85 and max(delays) > 115  # it does spread
    assert len(set(delays)) > 400


async def test_instances_failing_together_retry_at_spread_times(clock: TestClock) -> None:
    @dataclass
    class Herd:
        id: str = ""

        def definition(self) -> pf.Section:
            return pf.S(
                pf.Step(
                    "call", self.call, retry=Retry(max_attempts=2, backoff=Backoff(initial=60, jitter=0.5))
                )
            )

        def call(self) -> None:
            raise ConnectionError("down")

    async with Engine(MemoryStore(), workflows=[Herd], clock=clock) as engine:
        due = [(await engine.start(Herd(id=str(n)), id=str(n))).meta.retry_at for n in range(20)]
    offsets = [d - clock.now() for d in due if d is not None]
    assert len(offsets) == 20
    assert all(30 <= o <= 90 for o in offsets)
    assert len(set(offsets)) > 15


def test_non_retryable_takes_any_iterable_of_exception_classes_or_one_class() -> None:
    assert Retry(non_retryable=[KeyError, ValueError]).non_retryable == (KeyError, ValueError)
    assert not Retry(non_retryable=KeyError).retries(1, KeyError("x"))


@pytest.mark.parametrize("kinds", [["KeyError"], 5, [KeyError, int]], ids=["a name", "a number", "a class"])
def test_non_retryable_refuses_what_is_not_an_exception_class(kinds: Any) -> None:
    with pytest.raises(TypeError, match="non_retryable must hold exception classes"):
        Retry(non_retryable=kinds)


def test_a_retry_policy_refuses_a_backoff_that_is_not_a_backoff() -> None:
    with pytest.raises(TypeError, match=r"procflow\.Backoff"):
        Retry(backoff=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "arguments",
    [{"initial": -1}, {"cap": -0.5}, {"multiplier": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}],
    ids=["negative initial", "negative cap", "shrinking multiplier", "jitter above 1", "negative jitter"],
)
def test_a_backoff_refuses_a_wait_that_cannot_be_meant(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"Backoff: {next(iter(arguments))}"):
        Backoff(**arguments)


def test_backoff_takes_timedeltas() -> None:
    from datetime import timedelta

    backoff = Backoff(initial=timedelta(seconds=2), cap=timedelta(minutes=1), jitter=0)
    assert backoff.delay(1) == 2 and backoff.delay(10) == 60


def test_retry_needs_at_least_one_attempt_and_counts_the_first_try() -> None:
    with pytest.raises(ValueError):
        Retry(max_attempts=0)
    policy = Retry(max_attempts=3, non_retryable=(KeyError,))
    assert policy.retries(1, ConnectionError()) and policy.retries(2, ConnectionError())
    assert not policy.retries(3, ConnectionError())
    assert not policy.retries(1, KeyError("x"))


# -- bugs --------------------------------------------------------------------------------------


@dataclass
class TwoThreads:
    """A side thread charges (retried, 100 s backoff); the main thread waits for "ping" or a 10 s tick."""

    id: str = ""
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go(
                "side",
                pf.S(
                    pf.Wait("kicking", pf.OnEvent("kick", lambda: None)),
                    pf.Step(
                        "charge",
                        self.charge,
                        retry=Retry(max_attempts=5, backoff=Backoff(initial=100, jitter=0)),
                    ),
                ),
            ),
            pf.Wait("pinging", pf.OnEvent("ping", lambda: "pong"), pf.On("tick", Timer(after=10))),
            pf.Step("after ping", lambda: self.log.append("after ping")),
            pf.Wait("ending", pf.OnEvent("end", lambda: None)),
        )

    def charge(self) -> None:
        TRIES[self.id] += 1
        raise ConnectionError("down")


@pytest.mark.parametrize("trigger", ["send", "timer"])
async def test_a_step_waiting_for_its_backoff_does_not_run_early_when_another_thread_moves(
    tmp_path: Path, clock: TestClock, trigger: str
) -> None:
    async with Engine(SQLiteStore(tmp_path / "two.db"), workflows=[TwoThreads], clock=clock) as engine:
        await engine.start(TwoThreads(id="t"), id="t")
        await engine.send("t", "kick")
        assert TRIES["t"] == 1  # retry due in 100 s
        if trigger == "send":
            clock.advance(5)  # before the 10 s tick, which a send would deliver first
            await engine.send("t", "ping")
        else:
            clock.advance(11)
            await engine.work_once()  # the tick is due
        assert TRIES["t"] == 1  # seconds into a 100 s backoff


@dataclass
class TwoCharges:
    """Two threads started by their own events, a failing step each: "slow" backs off 300 s, "fast" 10 s."""

    id: str = ""

    def definition(self) -> pf.Section:
        def thread(name: str, backoff: float) -> pf.Go:
            return pf.Go(
                name,
                pf.S(
                    pf.Wait(f"{name} waits", pf.OnEvent(f"start {name}", lambda: None)),
                    pf.Step(
                        f"{name} charge",
                        lambda: self.charge(name),
                        retry=Retry(max_attempts=5, backoff=Backoff(initial=backoff, jitter=0)),
                    ),
                ),
            )

        return pf.S(
            thread("slow", 300), thread("fast", 10), pf.Wait("ending", pf.OnEvent("end", lambda: None))
        )

    def charge(self, name: str) -> None:
        TRIES[f"{self.id} {name}"] += 1
        raise ConnectionError("down")


async def test_each_thread_waits_for_its_own_backoff(tmp_path: Path, clock: TestClock) -> None:
    async with Engine(SQLiteStore(tmp_path / "two.db"), workflows=[TwoCharges], clock=clock) as engine:
        await engine.start(TwoCharges(id="t"), id="t")
        start = clock.now()
        await engine.send("t", "start slow")  # fails: again in 300 s
        clock.advance(1)
        await engine.send("t", "start fast")  # fails: again in 10 s
        assert (await engine.get("t")).meta.retries == {"slow": start + 300, "fast": start + 11}
        clock.advance(10)
        await engine.work_once()
        assert (TRIES["t slow"], TRIES["t fast"]) == (1, 2)  # only the fast one was due
        clock.advance(289)
        await engine.work_once()
        assert TRIES["t slow"] == 2


@dataclass
class Fanout:
    """Two threads: "flaky" fails (retried after ``backoff`` s), "steady" logs; main waits for both."""

    id: str = ""
    backoff: float = 60
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        retry = Retry(max_attempts=3, backoff=Backoff(initial=self.backoff, jitter=0))
        return pf.S(
            pf.Go("flaky", pf.Step("charge", self.charge, retry=retry)),
            pf.Go("steady", pf.Step("note", lambda: self.log.append("note"))),
            pf.WaitFor("both", lambda: "note" in self.log and TRIES[self.id] > 1),
        )

    def charge(self) -> None:
        TRIES[self.id] += 1
        if TRIES[self.id] == 1:
            raise ConnectionError("down")


async def test_the_other_threads_run_on_at_once_while_a_failed_step_waits_for_its_retry(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(SQLiteStore(tmp_path / "fan.db"), workflows=[Fanout], clock=clock) as engine:
        inst = await engine.start(Fanout(id="f"), id="f")
        assert (inst.data.log, TRIES["f"]) == (["note"], 1)
        assert inst.meta.retries == {"flaky": clock.now() + 60}
        assert (await engine.store.get("f")).due_at == clock.now() + 60
        clock.advance(60)
        await engine.work_once()
        assert (await engine.get("f")).status == pf.WorkflowStatus.FINISHED


async def test_a_failed_step_whose_retry_is_due_at_once_is_left_to_the_worker(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(SQLiteStore(tmp_path / "fan.db"), workflows=[Fanout], clock=clock) as engine:
        await engine.start(Fanout(id="f", backoff=0), id="f")
        assert TRIES["f"] == 1  # not tried again inside start
        await engine.work_once()
        assert (await engine.get("f")).status == pf.WorkflowStatus.FINISHED


def test_a_retry_stored_before_retries_were_per_thread_is_read_as_its_threads() -> None:
    meta = Bookkeeping.load('{"retry_at": 42.0, "retry_thread": "side"}')
    assert (meta.retries, meta.retry_at) == ({"side": 42.0}, 42.0)


def test_attempts_stored_before_they_were_per_thread_go_to_the_threads_waiting_on_a_failure() -> None:
    meta = Bookkeeping.load(
        '{"attempts": {"charge": 2}, "retries": {"a": 42.0},'
        ' "failure": {"step": "charge", "thread": "b", "error": "down", "attempts": 2, "at": 1.0}}'
    )
    assert meta.attempts == {"a": {"charge": 2}, "b": {"charge": 2}}


def test_attempts_stored_before_retries_and_attempts_were_per_thread_go_to_the_retried_thread() -> None:
    meta = Bookkeeping.load('{"attempts": {"charge": 1}, "retry_at": 42.0, "retry_thread": "side"}')
    assert meta.attempts == {"side": {"charge": 1}}


@dataclass
class Workers:
    """Two threads of one Go run the same flaky step (2 attempts each); main waits for both."""

    id: str = ""
    started: int = 0
    done: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        retry = Retry(max_attempts=2, backoff=Backoff(initial=10, jitter=0))
        return pf.S(
            pf.For(
                "spawn",
                self.started < 2,
                pf.Step("next worker", self.next_worker),
                pf.Go("worker", pf.Step("work", self.work, retry=retry), id=lambda: f"w{self.started}"),
            ),
            pf.WaitFor("both done", lambda: len(self.done) == 2),
        )

    def next_worker(self) -> None:
        self.started += 1

    def work(self) -> None:
        TRIES[self.id] += 1
        if TRIES[self.id] <= 2:  # the first try of each worker fails
            raise ConnectionError("down")
        self.done.append("work")


async def test_threads_running_one_step_each_count_their_own_failed_attempts(
    tmp_path: Path, clock: TestClock
) -> None:
    async with Engine(SQLiteStore(tmp_path / "w.db"), workflows=[Workers], clock=clock) as engine:
        inst = await engine.start(Workers(id="w"), id="w")
        assert inst.meta.attempts == {"w1": {"work": 1}, "w2": {"work": 1}}
        clock.advance(10)
        await engine.work_once()
        inst = await engine.get("w")
        assert (inst.status, inst.failure, TRIES["w"]) == (pf.WorkflowStatus.FINISHED, None, 4)


async def test_goto_of_a_thread_waiting_for_its_retry_starts_its_policy_over(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Payment(id="p", fails=3), id="p")  # attempt 1 of 3 failed
    clock.advance(10)
    await engine.work_once()  # attempt 2 failed: the next one is the last
    inst = await engine.goto("p", thread=pf.MAIN_THREAD, step="reserve", who="ops", why="service fixed")
    assert TRIES["p"] == 3  # the 3rd call fails: attempt 1 of a new round, not the last of 3
    assert (inst.status, inst.meta.attempts) == (pf.WorkflowStatus.RESUMING, {pf.MAIN_THREAD: {"charge": 1}})


@dataclass
class FailedSide:
    """A side thread's step fails (no policy: the instance fails); the main thread waits for "ping"."""

    id: str = ""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go(
                "side", pf.S(pf.Wait("kicking", pf.OnEvent("kick", lambda: None)), pf.Step("call", self.call))
            ),
            pf.Wait("pinging", pf.OnEvent("ping", lambda: "pong")),
            pf.Wait("ending", pf.OnEvent("end", lambda: None)),
        )

    def call(self) -> None:
        TRIES[self.id] += 1
        if TRIES[self.id] == 1:
            raise ConnectionError("down")


async def test_a_send_to_a_failed_instance_does_not_run_the_failed_step(tmp_path: Path) -> None:
    async with Engine(SQLiteStore(tmp_path / "failed.db"), workflows=[FailedSide]) as engine:
        await engine.start(FailedSide(id="f"), id="f")
        await engine.send("f", "kick")
        assert (await engine.get("f")).status == pf.WorkflowStatus.FAILED
        await engine.send("f", "ping")  # an event for the main thread, still parked
        inst = await engine.get("f")
        assert TRIES["f"] == 1  # only engine.retry runs the failed step again
        assert inst.status == pf.WorkflowStatus.FAILED
