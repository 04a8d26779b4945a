"""``create_app(engine, worker=True)``: the app's lifespan also runs the engine's worker.

The lifespan is entered directly (``app.router.lifespan_context``), as a server
enters it at startup and leaves it at shutdown; time moves on a ``TestClock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from http_helpers import Nap

import procflow as pf
from procflow.http import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(clock: pf.TestClock) -> AsyncIterator[pf.Engine]:
    async with pf.Engine(pf.MemoryStore(), [Nap], clock=clock) as e:
        yield e


async def _run_the_clock_until_finished(engine: pf.Engine, clock: pf.TestClock, key: str) -> None:
    """Move time on in steps (whenever the worker sleeps, it wakes) until ``key`` finished."""
    with anyio.fail_after(10):
        while (await engine.get(key)).status != pf.WorkflowStatus.FINISHED:
            clock.advance(5)
            await anyio.sleep(0.01)


async def _status_after(engine: pf.Engine, key: str, seconds: float) -> pf.WorkflowStatus:
    """The instance's status once ``seconds`` of real time have passed (a worker would have run)."""
    await anyio.sleep(seconds)
    return (await engine.get(key)).status


async def test_an_app_with_a_worker_delivers_a_timer_that_falls_due_while_it_runs(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    app = create_app(engine, worker=True, open_engine=False)
    async with app.router.lifespan_context(app):
        await engine.start(Nap(), id="n")
        await _run_the_clock_until_finished(engine, clock, "n")
    assert (await engine.get("n")).data.woke


async def test_an_app_without_a_worker_leaves_due_timers_to_a_worker_elsewhere(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    app = create_app(engine, open_engine=False)
    async with app.router.lifespan_context(app):
        await engine.start(Nap(), id="n")
        clock.advance(61)
        assert await _status_after(engine, "n", 0.2) == pf.WorkflowStatus.WAITING
    assert await engine.work_once() == 1  # it was due all along


async def test_the_worker_stops_when_the_app_shuts_down(engine: pf.Engine, clock: pf.TestClock) -> None:
    app = create_app(engine, worker=True, open_engine=False)
    with anyio.fail_after(10):  # a worker left running would hold the shutdown
        async with app.router.lifespan_context(app):
            pass
    await engine.start(Nap(), id="n")
    clock.advance(61)
    assert await _status_after(engine, "n", 0.2) == pf.WorkflowStatus.WAITING


async def test_an_app_that_opens_its_engine_runs_the_worker_on_the_opened_engine(
    tmp_path: pytest.TempPathFactory, clock: pf.TestClock
) -> None:
    engine = pf.Engine(pf.SQLiteStore(f"{tmp_path}/app.db"), [Nap], clock=clock)
    app = create_app(engine, worker=True)
    async with app.router.lifespan_context(app):
        await engine.start(Nap(), id="n")
        await _run_the_clock_until_finished(engine, clock, "n")


@pytest.mark.parametrize("interval", [0, -1.0])
def test_create_app_refuses_a_worker_poll_interval_that_is_not_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="worker_poll_interval must be a positive number of seconds"):
        create_app(pf.Engine(pf.MemoryStore(), [Nap]), worker=True, worker_poll_interval=interval)
