"""Timers: ``On(..., Timer(...))`` beside other events, ``Sleep``, absolute deadlines, lazy delivery.

Time is a ``TestClock`` moved by the tests; the stores are real (memory,
SQLite on a temporary file, PostgreSQL on the throwaway cluster). The worker
side (run_worker, several workers, crashes) is in ``test_worker.py``.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import procflow as pf
from procflow import Sleep, SystemClock, TestClock, Timer
from procflow.clock import current_clock, use_clock
from procflow.engine import Engine
from procflow.stores import MemoryStore, PostgresStore, SQLiteStore, Store

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # TestClock's default start


@dataclass
class Reservation:
    """Confirm within 30 minutes, or the reservation expires; either way it then waits for pickup."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve"), compensate=self.release),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.approve, pf.Step("confirm", lambda: self.log.append("confirm"))),
                pf.On(
                    "expired",
                    Timer(after=timedelta(minutes=30)),
                    pf.Step("expire", lambda: self.log.append("expire")),
                ),
            ),
            pf.Wait("pickup", pf.OnEvent("picked_up", lambda: self.log.append("picked up"))),
        )

    def approve(self, who: str) -> str:
        self.log.append(f"approved by {who}")
        return f"approved by {who}"

    def release(self) -> None:
        self.log.append("release")


@dataclass
class Nap:
    """Sleeps for a duration, then until an absolute time kept in its data."""

    until: float = 0.0
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            Sleep("short nap", timedelta(hours=1)),
            pf.Step("woke", lambda: self.log.append("woke")),
            Sleep("till morning", datetime.fromtimestamp(self.until, UTC)),
            pf.Step("morning", lambda: self.log.append("morning")),
        )


@dataclass
class Deadline:
    """Must be paid by a fixed deadline (a Unix timestamp in its data), whenever it started."""

    due: float = 0.0
    paid: bool = False
    late: bool = False

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "payment",
                pf.OnEvent("pay", self.pay),
                pf.On("overdue", Timer(at=self.due), pf.Step("mark late", self.mark_late)),
            )
        )

    def pay(self) -> None:
        self.paid = True

    def mark_late(self) -> None:
        self.late = True


@dataclass
class Reminders:
    """Reminds every hour, three times: each iteration parks a new timer, due an hour after parking."""

    sent: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For(
                "remind",
                lambda: self.sent < 3,
                pf.Wait("hour", pf.On("an hour passed", Timer(after=3600), pf.Step("send", self.send))),
            )
        )

    def send(self) -> None:
        self.sent += 1


@dataclass
class Spinner:
    """A loop of 1,000 rounds whose timer is due the moment it is parked on."""

    ticks: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For(
                "spin",
                lambda: self.ticks < 1000,
                pf.Wait("now", pf.On("tick", Timer(after=0), pf.Step("count", self.count))),
            )
        )

    def count(self) -> None:
        self.ticks += 1


@dataclass
class Offer:
    """Waits for "accept", a 10 s reminder or a 100 s expiry, whichever comes first."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "offer",
                pf.OnEvent("accept", lambda: self.log.append("accept")),
                pf.On("expired", Timer(after=100), pf.Step("withdraw", lambda: self.log.append("expire"))),
                pf.On("remind", Timer(after=10), pf.Step("nudge", lambda: self.log.append("remind"))),
            )
        )


class CountedTimer(Timer):
    """A Timer subclass that keeps Timer's behaviour (and so its type)."""

    armed = 0

    def setup(self, req: pf.CallbackRequest) -> str:
        CountedTimer.armed += 1
        return super().setup(req)


@dataclass
class Expiring:
    """Expires after ten minutes, by a subclass of Timer."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "hold",
                pf.On("expired", CountedTimer(after=600), pf.Step("expire", self.expire)),
            )
        )

    def expire(self) -> None:
        self.log.append("expired")


WORKFLOWS = [Reservation, Nap, Deadline, Reminders, Spinner, Offer, Expiring]


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory":
        return MemoryStore
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "timers.db")
    dsn = request.getfixturevalue("postgres_database")
    return lambda: PostgresStore(dsn, max_size=2)


@pytest.fixture
async def engine(new_store: Callable[[], Store], clock: TestClock) -> AsyncIterator[Engine]:
    async with Engine(new_store(), workflows=WORKFLOWS, clock=clock) as e:
        yield e


async def _kinds(engine: Engine, id: str) -> list[tuple[str, str]]:
    return [(h.kind, h.name) for h in await engine.history(id)]


# -- a timer beside other events ---------------------------------------------------------------


async def test_a_timer_fires_after_its_duration_and_the_steps_after_it_run(
    engine: Engine, clock: TestClock
) -> None:
    inst = await engine.start(Reservation(), id="r")
    assert inst.accepts == ["approve", "expired"]
    clock.advance(30 * 60 - 1)
    assert await engine.work_once() == 0
    assert (await engine.get("r")).data.log == ["reserve"]
    clock.advance(1)
    assert await engine.work_once() == 1
    inst = await engine.get("r")
    assert inst.data.log == ["reserve", "expire"]
    assert inst.accepts == ["picked_up"]
    kinds = await _kinds(engine, "r")
    assert kinds.count(("timer", "expired")) == 1
    assert ("event", "expired") in kinds
    assert kinds.index(("timer", "expired")) < kinds.index(("step", "expire"))
    assert await engine.work_once() == 0


async def test_a_subclass_of_timer_fires_as_a_timer(engine: Engine, clock: TestClock) -> None:
    armed = CountedTimer.armed
    await engine.start(Expiring(), id="x")
    assert CountedTimer.armed == armed + 1
    clock.advance(600)
    assert await engine.work_once() == 1
    assert (await engine.get("x")).data.log == ["expired"]


async def test_the_timers_due_time_is_on_the_row_and_goes_when_the_wait_is_left(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reservation(), id="r")
    assert (await engine.store.get("r")).due_at == pytest.approx(T0 + 1800)
    await engine.send("r", "approve", "ann")
    assert (await engine.store.get("r")).due_at is None


async def test_a_timer_whose_wait_was_left_by_another_event_never_fires(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reservation(), id="r")
    clock.advance(60)
    assert await engine.send("r", "approve", "ann") == "approved by ann"
    clock.advance(365 * 86400)
    assert await engine.work_once() == 0
    inst = await engine.resume("r")  # the lazy way finds nothing due either
    assert inst.data.log == ["reserve", "approved by ann", "confirm"]
    assert inst.accepts == ["picked_up"]
    kinds = await _kinds(engine, "r")
    assert ("timer", "expired") not in kinds
    assert ("event", "expired") not in kinds
    assert ("teardown", "expired") in kinds


async def test_sleep_for_a_duration_then_until_an_aware_datetime(engine: Engine, clock: TestClock) -> None:
    inst = await engine.start(Nap(until=T0 + 86400), id="n")
    assert [str(p) for p in inst.parked] == ["short nap(short nap elapsed)"]
    clock.advance(3599)
    assert await engine.work_once() == 0
    clock.advance(1)
    assert await engine.work_once() == 1
    inst = await engine.get("n")
    assert inst.data.log == ["woke"]
    assert [str(p) for p in inst.parked] == ["till morning(till morning elapsed)"]
    clock.set(T0 + 86400 - 0.5)
    assert await engine.work_once() == 0
    clock.advance(0.5)
    assert await engine.work_once() == 1
    inst = await engine.get("n")
    assert inst.data.log == ["woke", "morning"]
    assert inst.status == pf.WorkflowStatus.FINISHED


async def test_sleep_until_a_time_already_past_is_due_at_once(engine: Engine, clock: TestClock) -> None:
    await engine.start(Nap(until=T0 - 86400), id="n")
    clock.advance(3600)
    # The short nap ends; "till morning" is due as it parks, and goes in the same catch-up.
    assert await engine.work_once() == 1
    inst = await engine.get("n")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.log == ["woke", "morning"]
    assert [k for k in await _kinds(engine, "n") if k[0] == "timer"] == [
        ("timer", "short nap elapsed"),
        ("timer", "till morning elapsed"),
    ]


async def test_an_absolute_deadline_is_the_same_whenever_the_instance_parked(
    engine: Engine, clock: TestClock
) -> None:
    due = T0 + 1000
    await engine.start(Deadline(due=due), id="early")
    clock.advance(900)
    await engine.start(Deadline(due=due), id="late")
    await engine.send("late", "pay")
    await engine.start(Deadline(due=due), id="later")
    assert (await engine.store.get("early")).due_at == pytest.approx(due)
    assert (await engine.store.get("later")).due_at == pytest.approx(due)
    clock.advance(99)
    assert await engine.work_once() == 0
    clock.advance(1)
    assert await engine.work_once() == 2
    assert (await engine.get("early")).data.late
    assert (await engine.get("later")).data.late
    assert not (await engine.get("late")).data.late


async def test_a_timer_in_a_loop_counts_from_each_parking(engine: Engine, clock: TestClock) -> None:
    await engine.start(Reminders(), id="m")
    clock.advance(3 * 3600)  # three hours at once: still one reminder, the next is due an hour later
    assert await engine.work_once() == 1
    assert (await engine.get("m")).data.sent == 1
    assert await engine.work_once() == 0
    for sent in (2, 3):
        clock.advance(3600)
        assert await engine.work_once() == 1
        assert (await engine.get("m")).data.sent == sent
    assert (await engine.get("m")).status == pf.WorkflowStatus.FINISHED
    assert [k for k in await _kinds(engine, "m") if k[0] == "timer"] == [("timer", "an hour passed")] * 3


def test_timer_takes_exactly_one_of_after_and_at() -> None:
    with pytest.raises(pf.DefinitionError):
        Timer()
    with pytest.raises(pf.DefinitionError):
        Timer(after=1, at=T0)


def test_timer_and_sleep_refuse_a_naive_datetime() -> None:
    with pytest.raises(pf.DefinitionError, match="timezone"):
        Timer(at=datetime(2030, 1, 1))
    with pytest.raises(pf.DefinitionError, match="timezone"):
        Sleep("nap", datetime(2030, 1, 1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Timer(at=date(2030, 1, 1)),  # type: ignore[arg-type]
        lambda: Sleep("launch", date(2030, 1, 1)),
        lambda: Timer(at="2030-01-01"),  # type: ignore[arg-type]
    ],
    ids=["timer-at-a-date", "sleep-until-a-date", "timer-at-text"],
)
def test_a_timer_at_what_is_no_datetime_or_timestamp_is_a_definition_error(
    make: Callable[[], object],
) -> None:
    with pytest.raises(pf.DefinitionError, match="timezone-aware datetime or a Unix timestamp"):
        make()


@pytest.mark.parametrize("after", ["10 minutes", math.nan, True], ids=["text", "nan", "bool"])
def test_a_timer_after_what_is_no_duration_is_a_definition_error(after: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="needs seconds"):
        Timer(after=after)


def test_a_timer_due_time_comes_from_the_current_clock() -> None:
    clock = TestClock(start=1000)
    req = pf.CallbackRequest(name="t")
    with use_clock(clock):
        assert current_clock() is clock
        assert float(Timer(after=timedelta(seconds=90)).setup(req)) == 1090
        assert float(Timer(at=datetime.fromtimestamp(5000, UTC)).setup(req)) == 5000
    assert isinstance(current_clock(), SystemClock)


def test_the_test_clock_only_moves_forward() -> None:
    clock = TestClock(start=100)
    clock.advance(5)
    clock.set(200)
    assert clock.now() == 200
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(199)


def test_the_test_clock_advances_by_a_timedelta() -> None:
    clock = TestClock(start=100)
    clock.advance(timedelta(minutes=30))
    assert clock.now() == 1900


@pytest.mark.parametrize("seconds", [math.inf, math.nan, "10"])
def test_the_test_clock_refuses_to_advance_by_what_is_no_finite_number(seconds: Any) -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        TestClock().advance(seconds)


async def test_a_test_clock_sleep_of_zero_lets_other_tasks_run() -> None:
    clock, ran = TestClock(), []

    async def other() -> None:
        while True:
            ran.append(1)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(10):
            await clock.sleep(0)
        tg.cancel_scope.cancel()
    assert len(ran) >= 5


# -- lazy delivery: no worker ------------------------------------------------------------------


async def test_without_a_worker_a_send_delivers_the_overdue_timer_first(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reservation(), id="r")
    clock.advance(31 * 60)
    with pytest.raises(pf.CallbackNotFound):  # the timer's branch left the Wait first
        await engine.send("r", "approve", "ann")
    inst = await engine.get("r")
    assert inst.data.log == ["reserve", "expire"]
    assert ("timer", "expired") in await _kinds(engine, "r")
    # The instance is parked where the timer's branch took it, and takes the next event.
    await engine.send("r", "picked_up")
    assert (await engine.get("r")).status == pf.WorkflowStatus.FINISHED


async def test_without_a_worker_a_send_for_the_next_wait_goes_through_after_the_overdue_timer(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reservation(), id="r")
    clock.advance(31 * 60)
    await engine.send("r", "picked_up")  # parked on "decision" until the overdue timer moved it on
    inst = await engine.get("r")
    assert inst.data.log == ["reserve", "expire", "picked up"]
    assert inst.status == pf.WorkflowStatus.FINISHED


async def test_before_its_time_a_timer_does_not_get_in_the_way_of_a_send(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reservation(), id="r")
    clock.advance(29 * 60)
    assert await engine.send("r", "approve", "bob") == "approved by bob"
    assert (await engine.get("r")).data.log == ["reserve", "approved by bob", "confirm"]


async def test_without_a_worker_resume_delivers_overdue_timers(engine: Engine, clock: TestClock) -> None:
    await engine.start(Reminders(), id="m")
    clock.advance(3599)
    assert (await engine.resume("m")).data.sent == 0
    clock.advance(1)
    assert (await engine.resume("m")).data.sent == 1
    assert (await engine.resume("m")).data.sent == 1  # the next one is due an hour later


async def test_a_timer_delivered_lazily_is_not_delivered_again_by_a_worker(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Reservation(), id="r")
    clock.advance(3600)
    await engine.resume("r")
    assert await engine.work_once() == 0
    assert [k for k in await _kinds(engine, "r") if k[0] == "timer"] == [("timer", "expired")]


async def test_a_cancelled_instance_has_no_timer_left(engine: Engine, clock: TestClock) -> None:
    await engine.start(Reservation(), id="r")
    inst = await engine.cancel("r", reason="customer left", compensate=True)
    assert inst.data.log == ["reserve", "release"]
    assert (await engine.store.get("r")).due_at is None
    clock.advance(3600)
    assert await engine.work_once() == 0


# -- finding due timers ------------------------------------------------------------------------


async def test_claim_due_returns_the_earliest_due_first_and_at_most_limit(
    engine: Engine, clock: TestClock
) -> None:
    # Started in an order unlike their due order: Timer(at=...) sets each one's due time.
    dues = {"a": 50.0, "b": 10.0, "c": 40.0, "d": 20.0, "e": 30.0, "f": 5000.0}
    for id, offset in dues.items():
        await engine.start(Deadline(due=T0 + offset), id=id)
    clock.advance(100)
    first = await engine.store.claim_due(clock.now(), limit=3, lease=60)
    assert [r.id for r in first] == ["b", "d", "e"]
    assert all(r.due_at == pytest.approx(clock.now() + 60) for r in first)
    second = await engine.store.claim_due(clock.now(), limit=10, lease=60)
    assert [r.id for r in second] == ["c", "a"]  # the claimed ones are held; "f" is not due
    assert await engine.store.claim_due(clock.now(), limit=10, lease=60) == []
    clock.advance(60)  # the leases ran out
    again = await engine.store.claim_due(clock.now(), limit=10, lease=60)
    assert sorted(r.id for r in again) == ["a", "b", "c", "d", "e"]


async def test_claim_due_returns_the_records_as_stored(engine: Engine, clock: TestClock) -> None:
    await engine.start(Deadline(due=T0 + 10), id="a")
    before = await engine.store.get("a")
    clock.advance(10)
    [claimed] = await engine.store.claim_due(clock.now(), limit=5, lease=30)
    after = await engine.store.get("a")
    assert claimed.version == before.version + 1 == after.version
    assert claimed.due_at == pytest.approx(after.due_at)
    assert claimed.state == before.state and claimed.data == before.data


async def test_the_sqlite_due_time_look_up_is_an_index_range_scan(tmp_path: Path, clock: TestClock) -> None:
    async with Engine(SQLiteStore(tmp_path / "plan.db"), workflows=WORKFLOWS, clock=clock) as engine:
        for n in range(20):
            await engine.start(Deadline(due=T0 + n), id=f"d{n}")
    with sqlite3.connect(tmp_path / "plan.db") as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT k FROM procflow_instance"
            " WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?",
            (0, 20),
        ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert details.startswith("SEARCH procflow_instance USING") and "INDEX procflow_instance_due" in details
    assert "TEMP B-TREE" not in details  # no sort: the index gives the order


@pytest.mark.anyio
async def test_a_timer_that_is_always_due_lets_go_of_the_worker_after_a_bounded_catch_up(
    clock: TestClock,
) -> None:
    async with Engine(MemoryStore(), workflows=WORKFLOWS, clock=clock) as engine:
        await engine.start(Spinner(), id="s")
        await engine.work_once()
        first = (await engine.get("s")).data.ticks
        assert 0 < first < 1000  # it let go before the loop ended
        while (await engine.get("s")).status != pf.WorkflowStatus.FINISHED:
            assert await engine.work_once() == 1  # and is due again at once
        assert (await engine.get("s")).data.ticks == 1000


async def test_an_instance_is_due_at_its_earliest_timer_and_a_worker_fires_that_one_then(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Offer(), id="o")
    assert (await engine.store.get("o")).due_at == pytest.approx(clock.now() + 10)
    clock.advance(10)
    assert await engine.work_once() == 1
    assert (await engine.get("o")).data.log == ["remind"]


@pytest.mark.parametrize("touch", ["worker", "resume"])
async def test_of_two_overdue_timers_in_one_wait_the_one_due_first_wins(
    engine: Engine, clock: TestClock, touch: str
) -> None:
    await engine.start(Offer(), id="o")
    clock.advance(500)  # nobody looked meanwhile: the reminder and the expiry are both overdue
    if touch == "worker":
        assert await engine.work_once() == 1
    else:
        await engine.resume("o")
    assert (await engine.get("o")).data.log == ["remind"]
