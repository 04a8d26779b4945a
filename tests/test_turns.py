"""Turns: one engine operation at a time per instance, within a process."""

from __future__ import annotations

import anyio
import pytest

import procflow as pf
from procflow.turns import Turns

pytestmark = pytest.mark.anyio


async def test_a_free_turn_is_taken_without_waiting() -> None:
    turns = Turns()
    async with turns.take("i-1") as waited:
        assert waited is False


async def test_turns_of_one_instance_go_first_come_first_served_and_say_they_waited() -> None:
    turns, order = Turns(), []

    async def use(name: str, hold: float) -> None:
        async with turns.take("i-1") as waited:
            order.append((name, waited))
            await anyio.sleep(hold)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use, "first", 0.05)
        await anyio.sleep(0.01)
        tg.start_soon(use, "second", 0)
        await anyio.sleep(0.001)
        tg.start_soon(use, "third", 0)
    assert order == [("first", False), ("second", True), ("third", True)]


async def test_turns_of_different_instances_do_not_wait_for_each_other() -> None:
    turns = Turns()
    async with turns.take("i-1"):
        with anyio.fail_after(1):
            async with turns.take("i-2") as waited:
                assert waited is False


async def test_a_task_cancelled_while_waiting_gives_up_its_place() -> None:
    turns, order = Turns(), []
    scopes: list[anyio.CancelScope] = []

    async def use(name: str, hold: float) -> None:
        async with turns.take("i-1"):
            order.append(name)
            await anyio.sleep(hold)

    async def gives_up() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            async with turns.take("i-1"):
                order.append("gave up")

    async with anyio.create_task_group() as tg:
        tg.start_soon(use, "first", 0.05)
        await anyio.sleep(0.01)
        tg.start_soon(gives_up)
        await anyio.sleep(0.001)
        scopes[0].cancel()
        tg.start_soon(use, "last", 0)
    assert order == ["first", "last"]
    async with turns.take("i-1") as waited:  # nobody holds it any more
        assert waited is False


async def test_taking_a_turn_the_task_already_has_raises_reentrant_call_error() -> None:
    turns = Turns()
    async with turns.take("i-1"):
        with pytest.raises(pf.ReentrantCallError, match="'i-1'"):
            async with turns.take("i-1"):
                pass


async def test_a_task_started_by_the_holder_and_awaited_by_it_raises_reentrant_call_error() -> None:
    turns, raised = Turns(), []

    async def child() -> None:
        try:
            async with turns.take("i-1"):
                pass
        except pf.ReentrantCallError as e:
            raised.append(e)

    with anyio.fail_after(1):
        async with turns.take("i-1"), anyio.create_task_group() as tg:
            tg.start_soon(child)
    assert len(raised) == 1


async def test_a_task_started_by_a_holder_takes_the_turn_normally_once_the_holder_let_go() -> None:
    turns, order = Turns(), []
    released = anyio.Event()

    async def child() -> None:
        await released.wait()
        async with turns.take("i-1") as waited:
            order.append(("child", waited))

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            async with turns.take("i-1"):
                tg.start_soon(child)
                order.append(("holder", False))
            released.set()
    assert order == [("holder", False), ("child", False)]


async def test_a_task_started_by_a_holder_waits_for_a_later_holder_rather_than_raising() -> None:
    turns, order = Turns(), []
    released, taken_again = anyio.Event(), anyio.Event()

    async def later_holder() -> None:
        async with turns.take("i-1"):
            taken_again.set()
            await anyio.sleep(0.02)
            order.append("later holder")

    async def child() -> None:
        await taken_again.wait()
        async with turns.take("i-1") as waited:
            order.append(f"child waited={waited}")

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            async with turns.take("i-1"):
                tg.start_soon(child)
            released.set()
            tg.start_soon(later_holder)
    assert order == ["later holder", "child waited=True"]
