"""Workflow data that cannot be stored: refused at the commit, never written.

Every commit checks that the data dumps to JSON and that the JSON validates back
as the workflow's class. A step that leaves data failing that check fails the
instance on that step, kept as its last commit left it; a handler that does so
delivers nothing; a start stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import procflow as pf
from procflow.engine import Engine
from procflow.stores import SQLiteStore, Store

pytestmark = pytest.mark.anyio

# What the "total" step (or the "pay" handler) leaves in the data, by workflow id: nothing
# when absent. A None in a list[str] field serialises but would not load back; an object
# in a dict field does not serialise at all.
LEAVES: dict[str, str] = {}


def _spoil(cart: Cart, what: str | None) -> None:
    if what == "none in a list":
        cart.items = None  # type: ignore[assignment]
    elif what == "an object":
        cart.extra["receipt"] = object()


@dataclass
class Cart:
    """Add an item, wait for payment, total, ship."""

    id: str = ""
    items: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("add", lambda: self.items.append("book")),
            pf.Wait("checkout", pf.OnEvent("pay", self.pay)),
            pf.Step("total", self.total),
            pf.Step("ship", lambda: self.log.append("ship")),
        )

    def pay(self) -> str:
        _spoil(self, LEAVES.get(f"{self.id}/pay"))
        return "paid"

    def total(self) -> None:
        self.log.append("total")
        _spoil(self, LEAVES.get(f"{self.id}/total"))


@pytest.fixture(autouse=True)
def _nothing_spoiled() -> None:
    LEAVES.clear()


@pytest.fixture
async def engine(new_store: Callable[[], Store], clock: pf.TestClock) -> AsyncIterator[Engine]:
    async with Engine(new_store(), workflows=[Cart], clock=clock) as e:
        yield e


SPOILS = pytest.mark.parametrize("spoil", ["none in a list", "an object"])


@SPOILS
async def test_a_step_that_leaves_unstorable_data_fails_the_instance_on_that_step(
    engine: Engine, spoil: str
) -> None:
    await engine.start(Cart(id="c"), id="c")
    LEAVES["c/total"] = spoil
    await engine.send("c", "pay")
    inst = await engine.get("c")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None
    assert (inst.failure.step, inst.failure.thread) == ("total", pf.MAIN_THREAD)
    assert inst.failure.error.startswith("UnstorableDataError: the data of instance 'c' cannot be stored")


async def test_an_instance_failed_on_unstorable_data_keeps_its_last_commit(engine: Engine) -> None:
    await engine.start(Cart(id="c"), id="c")
    LEAVES["c/total"] = "none in a list"
    await engine.send("c", "pay")
    inst = await engine.get("c")
    assert inst.data.items == ["book"]
    assert inst.data.log == []  # the total's run was never saved
    assert inst.state.threads[0].cur_callback == "pay"


async def test_observers_are_not_told_the_step_or_finish_of_a_run_that_left_unstorable_data(
    new_store: Callable[[], Store], clock: pf.TestClock
) -> None:
    seen: list[pf.Observed] = []
    async with Engine(new_store(), workflows=[Cart], clock=clock, observers=[seen.append]) as engine:
        await engine.start(Cart(id="c"), id="c")
        LEAVES["c/total"] = "none in a list"
        seen.clear()
        await engine.send("c", "pay")
    told = [(o.kind, o.name) for o in seen]
    # The step ran, but its result was never stored, nor was the finish that followed.
    assert told[-2:] == [("step_started", "total"), ("failed", "total")]


async def test_a_send_whose_run_leaves_unstorable_data_still_returns_the_reply(engine: Engine) -> None:
    await engine.start(Cart(id="c"), id="c")
    LEAVES["c/total"] = "none in a list"
    assert await engine.send("c", "pay") == "paid"


async def test_retry_runs_the_step_again_once_it_leaves_storable_data(engine: Engine) -> None:
    await engine.start(Cart(id="c"), id="c")
    LEAVES["c/total"] = "none in a list"
    await engine.send("c", "pay")
    del LEAVES["c/total"]  # the fix is deployed
    inst = await engine.retry("c")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.log == ["total", "ship"]


async def test_a_worker_leaves_an_instance_failed_on_unstorable_data_alone(
    engine: Engine, clock: pf.TestClock
) -> None:
    await engine.start(Cart(id="c"), id="c")
    LEAVES["c/total"] = "none in a list"
    await engine.send("c", "pay")
    clock.advance(engine.stale_after + 1)
    assert await engine.work_once() == 0
    assert (await engine.get("c")).status == pf.WorkflowStatus.FAILED


@SPOILS
async def test_a_handler_that_leaves_unstorable_data_delivers_nothing(engine: Engine, spoil: str) -> None:
    await engine.start(Cart(id="c"), id="c")
    LEAVES["c/pay"] = spoil
    with pytest.raises(pf.UnstorableDataError, match="event 'pay' was not delivered, nothing was saved"):
        await engine.send("c", "pay")
    inst = await engine.get("c")
    assert inst.status == pf.WorkflowStatus.WAITING
    assert inst.accepts == ["pay"]


async def test_a_start_with_unstorable_data_stores_nothing(engine: Engine) -> None:
    with pytest.raises(pf.UnstorableDataError, match="items: Input should be a valid array"):
        await engine.start(Cart(id="c", items=None), id="c")  # type: ignore[arg-type]
    assert [s async for s in engine.list()] == []


@dataclass
class CartV2(Cart):
    """A new version whose items are numbers: the rows Cart stored no longer validate."""

    items: list[int] = field(default_factory=list)  # type: ignore[assignment]


@dataclass
class CartV3(Cart):
    """A new version with a field the stored rows do not have."""

    coupon: str = ""


async def test_a_row_whose_data_no_longer_validates_is_listed_with_an_error(tmp_path: Path) -> None:
    path = tmp_path / "carts.db"
    async with Engine(SQLiteStore(path), workflows=[Cart]) as v1:
        await v1.start(Cart(id="c"), id="c")
        await v1.start(Cart(id="d"), id="d")
    async with Engine(SQLiteStore(path), workflows={"Cart": CartV2}) as v2:
        listed = {s.id: s.error for s in [s async for s in v2.list()]}
    assert listed["c"].startswith("stored data cannot be loaded")


async def test_edit_repairs_a_row_whose_data_no_longer_validates(tmp_path: Path) -> None:
    path = tmp_path / "carts.db"
    async with Engine(SQLiteStore(path), workflows=[Cart]) as v1:
        await v1.start(Cart(id="c"), id="c")
    async with Engine(SQLiteStore(path), workflows={"Cart": CartV2}) as v2:
        with pytest.raises(pf.CorruptInstanceError):
            await v2.get("c")
        inst = await v2.edit("c", {"items": [1]}, who="ops", why="items are numbers now")
        assert inst.data.items == [1]
        assert (await v2.get("c")).accepts == ["pay"]
        assert [s.error async for s in v2.list()] == [""]


async def test_edit_may_set_a_field_a_new_version_added(tmp_path: Path) -> None:
    path = tmp_path / "carts.db"
    async with Engine(SQLiteStore(path), workflows=[Cart]) as v1:
        await v1.start(Cart(id="c"), id="c")
    async with Engine(SQLiteStore(path), workflows={"Cart": CartV3}) as v3:
        inst = await v3.edit("c", {"coupon": "SPRING"}, who="ops", why="promised on the phone")
    assert inst.data.coupon == "SPRING"
