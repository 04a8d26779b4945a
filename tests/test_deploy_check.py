"""Safe deploys: check_deploy finds every in-flight instance a new definition would strand.

Each test starts instances of version 1 of a workflow with the testing kit,
then checks the same store with version 2 registered under the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import procflow as pf
from procflow.deploy_check import DeployReport, Stranded, check_deploy, check_instance
from procflow.stores import InstanceRecord
from procflow.testing import WorkflowHarness, assert_failed, assert_parked_at, harness

pytestmark = pytest.mark.anyio


def noop() -> None:
    return None


@dataclass
class Order:
    """Version 1: reserve, then wait for a decision."""

    item: str = "lamp"

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", noop, compensate=noop),
            pf.Wait("decision", pf.OnEvent("approve", noop), pf.OnEvent("deny", noop)),
            pf.Step("ship", noop),
        )


async def check_with(h: WorkflowHarness, **workflows: type[Any]) -> DeployReport:
    """Check the harness's store with ``workflows`` (stored name to class) registered."""
    async with pf.Engine(h.store, workflows) as engine:
        return await check_deploy(engine)


def version(*stmts: Callable[[], pf.Stmt], **fields: Any) -> type[Any]:
    """A version 2 of a workflow: its data is Order's, its definition ``stmts``."""

    @dataclass
    class V2:
        item: str = "lamp"

        def definition(self) -> pf.Section:
            return pf.S(*(make() for make in stmts))

    return V2


def wait(name: str, *events: str) -> Callable[[], pf.Stmt]:
    return lambda: pf.Wait(name, *(pf.OnEvent(e, noop) for e in events))


def step(name: str, *, compensate: bool = False) -> Callable[[], pf.Stmt]:
    return lambda: pf.Step(name, noop, compensate=noop if compensate else None)


async def parked_orders(h: WorkflowHarness, count: int = 1) -> None:
    for n in range(count):
        assert_parked_at(await h.start(Order(), id=f"o-{n + 1}"), "decision")


# -- positions ------------------------------------------------------------------------------


async def test_a_deploy_that_keeps_every_position_is_ok() -> None:
    v2 = version(step("check stock"), step("reserve", compensate=True), wait("decision", "approve", "deny"))
    async with harness(Order) as h:
        await parked_orders(h, 2)
        report = await check_with(h, Order=v2)
    assert report.ok
    assert report.checked == 2
    assert report.workflow("Order").fine == 2


async def test_a_renamed_wait_strands_the_instances_parked_on_it() -> None:
    v2 = version(step("reserve", compensate=True), wait("approval", "approve", "deny"))
    async with harness(Order) as h:
        await parked_orders(h, 2)
        report = await check_with(h, Order=v2)
    assert not report.ok
    assert report.stranded_instances == ("o-1", "o-2")
    first = report.stranded[0]
    assert (first.instance, first.thread, first.position) == ("o-1", "_main_", "decision")
    assert "expected a Wait by that name, the definition has nothing" in first.problem


async def test_a_wait_that_became_another_kind_of_statement_is_reported_with_both_kinds() -> None:
    v2 = version(step("reserve", compensate=True), step("decision"))
    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=v2)
    assert "expected a Wait by that name, the definition has a Step" in report.stranded[0].problem


async def test_an_event_removed_from_a_wait_strands_the_threads_listening_for_it() -> None:
    v2 = version(step("reserve", compensate=True), wait("decision", "approve"))
    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=v2)
    [problem] = report.stranded
    assert problem.position == "decision"
    assert "listens for event 'deny', which is no longer in this Wait" in problem.problem


async def test_an_event_moved_to_another_wait_says_where_it_is_now() -> None:
    v2 = version(step("reserve", compensate=True), wait("decision", "approve"), wait("appeal", "deny"))
    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=v2)
    assert "(it is in Wait 'appeal' now)" in report.stranded[0].problem


@dataclass
class Gate:
    open: bool = False

    def definition(self) -> pf.Section:
        return pf.S(pf.WaitFor("until open", lambda: self.open), pf.Step("pass", noop))


async def test_a_removed_waitfor_strands_a_thread_waiting_for_its_condition() -> None:
    @dataclass
    class GateV2:
        open: bool = False

        def definition(self) -> pf.Section:
            return pf.S(pf.Wait("until open", pf.OnEvent("open", noop)), pf.Step("pass", noop))

    async with harness(Gate) as h:
        assert_parked_at(await h.start(Gate(), id="g-1"), "until open")
        report = await check_with(h, Gate=GateV2)
    [problem] = report.stranded
    assert problem.position == "until open"
    expected = "parked on a WaitFor: expected a WaitFor by that name, the definition has a Wait"
    assert expected in problem.problem


@dataclass
class Payment:
    """Charges after validating; the charge fails and is retried, or fails the instance."""

    attempts: int = 1

    def definition(self) -> pf.Section:
        retry = pf.Retry(max_attempts=self.attempts, backoff=pf.Backoff(initial=60, jitter=0))
        return pf.S(pf.Step("validate", noop), pf.Step("charge", self.charge, retry=retry))

    def charge(self) -> None:
        raise RuntimeError("card declined")


@dataclass
class PaymentV2:
    attempts: int = 1

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("check", noop), pf.Step("charge", noop))


async def test_a_removed_step_strands_an_instance_waiting_to_retry_the_step_after_it() -> None:
    async with harness(Payment) as h:
        inst = await h.start(Payment(attempts=3), id="p-1")
        assert inst.status == pf.WorkflowStatus.RESUMING
        report = await check_with(h, Payment=PaymentV2)
    [problem] = report.stranded
    assert problem.position == "validate"
    assert "continues after it: expected a Step or WaitFor by that name, the definition has nothing" in (
        problem.problem
    )


async def test_a_failed_instance_is_in_flight_and_checked() -> None:
    async with harness(Payment) as h:
        assert_failed(await h.start(Payment(), id="p-1"), "charge")
        report = await check_with(h, Payment=PaymentV2)
    assert report.stranded_instances == ("p-1",)


async def test_a_completed_step_that_lost_its_compensation_is_reported() -> None:
    v2 = version(step("reserve"), wait("decision", "approve", "deny"))
    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=v2)
    [problem] = report.stranded
    assert (problem.thread, problem.position) == ("", "reserve")
    assert "has no compensate any more; cancel(compensate=True) could not undo it" in problem.problem


# -- threads --------------------------------------------------------------------------------


@dataclass
class Fulfilment:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("packing", pf.S(pf.Wait("packed", pf.OnEvent("pack", noop)))),
            pf.Wait("decision", pf.OnEvent("approve", noop)),
        )


async def test_a_thread_whose_go_was_renamed_is_stranded() -> None:
    @dataclass
    class V2:
        def definition(self) -> pf.Section:
            return pf.S(
                pf.Go("boxing", pf.S(pf.Wait("packed", pf.OnEvent("pack", noop)))),
                pf.Wait("decision", pf.OnEvent("approve", noop)),
            )

    async with harness(Fulfilment) as h:
        await h.start(Fulfilment(), id="f-1")
        report = await check_with(h, Fulfilment=V2)
    problems = {(p.thread, p.position) for p in report.stranded}
    assert ("packing", "packing") in problems
    assert any("started by Go 'packing'; the definition has nothing" in p.problem for p in report.stranded)


async def test_a_position_moved_out_of_its_thread_is_reported() -> None:
    @dataclass
    class V2:
        def definition(self) -> pf.Section:
            return pf.S(
                pf.Go("packing", pf.S(pf.Step("label", noop))),
                pf.Wait("decision", pf.OnEvent("approve", noop)),
                pf.Wait("packed", pf.OnEvent("pack", noop)),
            )

    async with harness(Fulfilment) as h:
        await h.start(Fulfilment(), id="f-1")
        report = await check_with(h, Fulfilment=V2)
    [problem] = report.stranded
    assert (problem.thread, problem.position) == ("packing", "packed")
    assert "now in the main thread's code, not inside Go 'packing'" in problem.problem


async def test_the_main_thread_parked_at_a_position_now_inside_a_go_is_reported() -> None:
    v2 = version(
        step("reserve", compensate=True),
        lambda: pf.Go("approvals", wait("decision", "approve", "deny")()),
    )
    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=v2)
    [problem] = report.stranded
    assert "now inside Go 'approvals', not in the main thread's code" in problem.problem


class FailingTeardown(pf.Handler):
    type = "failing-teardown"

    def setup(self, req: pf.CallbackRequest) -> str:
        return ""

    def handle(self, req: pf.CallbackRequest, payload: Any) -> str:
        return "ok"

    def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        raise RuntimeError("webhook service down")


@dataclass
class Hook:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("callback", pf.On("called", FailingTeardown())),
            pf.Wait("decision", pf.OnEvent("approve", noop)),
        )


async def test_an_event_whose_teardown_is_pending_needs_its_handler() -> None:
    @dataclass
    class V2:
        def definition(self) -> pf.Section:
            return pf.S(pf.Wait("decision", pf.OnEvent("approve", noop)))

    async with harness(Hook) as h:
        await h.start(Hook(), id="h-1")
        await h.send("h-1", "called")
        assert_parked_at(await h.get("h-1"), "decision")
        report = await check_with(h, Hook=V2)
    [problem] = report.stranded
    assert problem.position == "called"
    assert "its teardown needs the handler of event 'called'" in problem.problem


# -- data and rows ----------------------------------------------------------------------------


@dataclass
class Route:
    """The definition depends on the data: express orders wait elsewhere."""

    express: bool = False

    def definition(self) -> pf.Section:
        name = "express desk" if self.express else "normal desk"
        return pf.S(pf.Wait(name, pf.OnEvent("approve", noop)))


async def test_each_instance_is_checked_against_the_definition_its_own_data_builds() -> None:
    @dataclass
    class V2:
        express: bool = False

        def definition(self) -> pf.Section:
            name = "priority desk" if self.express else "normal desk"
            return pf.S(pf.Wait(name, pf.OnEvent("approve", noop)))

    async with harness(Route) as h:
        await h.start(Route(express=True), id="r-express")
        await h.start(Route(express=False), id="r-normal")
        report = await check_with(h, Route=V2)
    assert report.stranded_instances == ("r-express",)
    assert report.workflow("Route").fine == 1


async def test_data_that_no_longer_validates_is_reported() -> None:
    @dataclass
    class V2:
        item: int = 0  # was a str

        def definition(self) -> pf.Section:
            return Order().definition()

    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=V2)
    [problem] = report.stranded
    assert (problem.thread, problem.position) == ("", "")
    assert problem.problem.startswith("its stored data no longer validates as ")
    assert "item: Input should be a valid integer" in problem.problem


async def test_a_definition_that_raises_is_reported() -> None:
    @dataclass
    class V2:
        item: str = ""

        def definition(self) -> pf.Section:
            raise KeyError("price list")

    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h, Order=V2)
    assert report.stranded[0].problem == "definition() raised KeyError: 'price list'"


async def test_an_unregistered_workflow_is_reported_not_raised() -> None:
    async with harness(Order) as h:
        await parked_orders(h)
        report = await check_with(h)
    [problem] = report.stranded
    assert problem.problem == "workflow 'Order' is not registered (registered: none)"


async def test_a_row_whose_state_cannot_be_decoded_is_reported_not_raised() -> None:
    async with harness(Order) as h:
        bad = InstanceRecord(id="bad", workflow="Order", status="WAITING", data="{}", state="[1")
        await h.store.insert(bad)
        await parked_orders(h)
        report = await check_with(h, Order=Order)
    assert report.stranded_instances == ("bad",)
    assert report.stranded[0].problem.startswith("its stored state cannot be decoded: ")
    assert report.workflow("Order").fine == 1


async def test_finished_and_cancelled_instances_are_not_checked() -> None:
    v2 = version(step("other"))
    async with harness(Order) as h:
        await h.start(Order(), id="done")
        await h.send("done", "approve")
        await h.start(Order(), id="gone")
        await h.cancel("gone", reason="test")
        report = await check_with(h, Order=v2)
    assert report.ok
    assert report.checked == 0


# -- the report --------------------------------------------------------------------------------


async def test_the_report_renders_counts_per_workflow_and_each_problem() -> None:
    v2 = version(step("reserve", compensate=True), wait("approval", "approve", "deny"))
    async with harness(Order, Gate) as h:
        await parked_orders(h, 1)
        await h.start(Gate(), id="g-1")
        report = await check_with(h, Order=v2, Gate=Gate)
    assert report.render().splitlines() == [
        "Gate: 1 in flight, 1 fine",
        "Order: 1 in flight, 0 fine, 1 would be stranded",
        "  o-1  thread _main_  at 'decision': parked on a Wait: expected a Wait by that name, "
        "the definition has nothing",
        "not safe: 1 of 2 in-flight instance(s) would be stranded; "
        "keep the names they are parked at, or repair them first (procflow goto / edit)",
    ]


def test_a_stranded_row_reads_as_instance_and_problem() -> None:
    assert str(Stranded("o-1", "Order", "", "", "workflow 'Order' is not registered")) == (
        "o-1  workflow 'Order' is not registered"
    )


async def test_check_instance_works_on_a_workflow_and_state_without_a_store() -> None:
    order, state = Order(), pf.State.new("o-1", "Order")
    await pf.resume(order, state, lambda kind: None)
    assert check_instance(order, state) == []
    v2 = version(step("reserve", compensate=True))()
    [problem] = check_instance(v2, state)
    assert (problem.instance, problem.thread, problem.position) == ("o-1", "_main_", "decision")
