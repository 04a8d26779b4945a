"""procflow.testing: the harness (in-memory engine, test clock, due work) and its assertions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

import procflow as pf
from procflow.clock import current_clock
from procflow.testing import (
    HarnessError,
    WorkflowHarness,
    assert_accepts,
    assert_cancelled,
    assert_failed,
    assert_finished,
    assert_parked_at,
    assert_steps_ran,
    describe,
    harness,
    steps_ran,
)

pytestmark = pytest.mark.anyio


class Approval(BaseModel):
    approver: str


@dataclass
class Order:
    item: str = "lamp"
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve"), compensate=self.release),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.approve, pf.Step("ship", lambda: self.log.append("ship"))),
                pf.OnEvent("deny", lambda: "denied"),
                pf.On("expired", pf.Timer(after=timedelta(minutes=30)), pf.Step("expire", self.expire)),
            ),
        )

    def approve(self, approval: Approval) -> str:
        return f"approved by {approval.approver}"

    def release(self) -> None:
        self.log.append("release")

    def expire(self) -> None:
        self.log.append("expire")


@dataclass
class Reminders:
    """Two timers in a row: the second is set up only when the first fires."""

    every: float = 600.0
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Sleep("first", self.every),
            pf.Step("remind", lambda: self.log.append("remind")),
            pf.Sleep("second", self.every),
            pf.Step("escalate", lambda: self.log.append("escalate")),
        )


FAILURES: list[str] = []


@dataclass
class Flaky:
    """A step that fails twice, then succeeds; retried after 60 s."""

    tries: int = 0

    def definition(self) -> pf.Section:
        retry = pf.Retry(max_attempts=5, backoff=pf.Backoff(initial=60, jitter=0))
        return pf.S(pf.Step("call", self.call, retry=retry))

    def call(self) -> None:
        FAILURES.append("call")
        if len(FAILURES) <= 2:
            raise RuntimeError("service down")


@dataclass
class Broken:
    def definition(self) -> pf.Section:
        return pf.S(pf.Step("call", self.call))

    def call(self) -> None:
        raise RuntimeError("always down")


@dataclass
class Spinning:
    """A loop that never parks, once an event asks for it: the definition cannot run it on."""

    spin: bool = False

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("ready", pf.OnEvent("go", self.go)),
            pf.For("spin", lambda: self.spin, pf.S()),
        )

    def go(self) -> None:
        self.spin = True


@dataclass
class Forked:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go("packing", pf.S(pf.Wait("packed", pf.OnEvent("pack", lambda: None)))),
            pf.Wait("decision", pf.OnEvent("approve", lambda: None)),
        )


# When each setup of Hooked's webhook was tried (clock time); the first try fails.
SETUP_TRIES: list[float] = []


class FlakyWebhook(pf.Handler):
    type = "flaky-webhook"

    def setup(self, req: pf.CallbackRequest) -> str:
        SETUP_TRIES.append(current_clock().now())
        if len(SETUP_TRIES) == 1:
            raise ConnectionError("the webhook registry is down")
        return "registered"

    def handle(self, req: pf.CallbackRequest, payload: object) -> None:
        return None


@dataclass
class Hooked:
    """Waits for a webhook (whose first setup fails) or an hour."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "w",
                pf.On("hook", FlakyWebhook()),
                pf.On("expired", pf.Timer(after=3600)),
            )
        )


# -- the harness --------------------------------------------------------------------------


async def test_start_runs_the_workflow_until_it_parks() -> None:
    async with harness(Order) as h:
        inst = await h.start(Order(), id="o-1")
        assert inst.status == pf.WorkflowStatus.WAITING
        assert inst.data.log == ["reserve"]


async def test_send_delivers_an_event_and_returns_the_reply() -> None:
    async with harness(Order) as h:
        await h.start(Order(), id="o-1")
        assert await h.send("o-1", "approve", {"approver": "ann"}) == "approved by ann"
        assert (await h.get("o-1")).data.log == ["reserve", "ship"]


async def test_the_clock_stands_still_until_the_test_moves_it() -> None:
    async with harness(Order) as h:
        before = h.clock.now()
        await h.start(Order(), id="o-1")
        assert h.clock.now() == before
        assert (await h.get("o-1")).status == pf.WorkflowStatus.WAITING


async def test_advance_fires_a_timer_that_falls_due() -> None:
    async with harness(Order) as h:
        await h.start(Order(), id="o-1")
        await h.advance(minutes=30)
        inst = await h.get("o-1")
        assert_finished(inst)
        assert inst.data.log == ["reserve", "expire"]


async def test_advance_short_of_a_timer_fires_nothing() -> None:
    async with harness(Order) as h:
        await h.start(Order(), id="o-1")
        assert await h.advance(minutes=29) == 0
        assert_parked_at(await h.get("o-1"), "decision")


async def test_advance_fires_timers_set_up_on_the_way_at_their_own_time() -> None:
    async with harness(Reminders) as h:
        await h.start(Reminders(), id="r-1")
        await h.advance(minutes=20)
        assert (await h.get("r-1")).data.log == ["remind", "escalate"]


async def test_advance_fires_timers_due_between_two_milliseconds() -> None:
    async with harness(Reminders) as h:
        await h.start(Reminders(every=0.3337), id="r-1")
        await h.advance(0.5)
        assert (await h.get("r-1")).data.log == ["remind"]
        await h.advance(0.5)
        assert (await h.get("r-1")).data.log == ["remind", "escalate"]


async def test_advance_takes_a_timedelta_and_units() -> None:
    async with harness(Order) as h:
        start = h.clock.now()
        await h.advance(timedelta(seconds=30), minutes=1, hours=1, days=1)
        assert h.clock.now() - start == 30 + 60 + 3600 + 86400


async def test_advance_runs_a_retry_when_its_backoff_is_over() -> None:
    FAILURES.clear()
    async with harness(Flaky) as h:
        inst = await h.start(Flaky(), id="f-1")
        assert inst.status == pf.WorkflowStatus.RESUMING
        await h.advance(minutes=5)
        assert_finished(await h.get("f-1"))
        assert FAILURES == ["call"] * 3


async def test_advance_tries_a_failed_setup_again_when_a_worker_would_not_at_a_later_timer() -> None:
    SETUP_TRIES.clear()
    async with harness(Hooked) as h:
        start = h.clock.now()
        await h.start(Hooked(), id="h-1")  # its webhook's setup fails: a worker tries it again soon
        await h.advance(minutes=1)
        assert [t - start for t in SETUP_TRIES] == [0, h.engine.setup_retry_delay]


async def test_advance_backwards_is_refused() -> None:
    async with harness(Order) as h:
        with pytest.raises(HarnessError, match="forward"):
            await h.advance(-1)


async def test_a_harness_registers_workflows_under_the_names_a_mapping_gives() -> None:
    async with harness({"order": Order}) as h:
        inst = await h.start(Order())
        assert inst.workflow == "order"


async def test_a_harness_runs_on_a_store_it_is_given(tmp_path: Path) -> None:
    async with WorkflowHarness(Order, store=pf.SQLiteStore(tmp_path / "kit.db")) as h:
        await h.start(Order(), id="o-1")
        await h.advance(hours=1)
        assert_finished(await h.get("o-1"))


# -- assertions -------------------------------------------------------------------------


async def test_assert_parked_at_passes_where_the_instance_is_parked() -> None:
    async with harness(Order) as h:
        assert_parked_at(await h.start(Order()), "decision")


async def test_assert_parked_at_says_where_the_instance_is_instead() -> None:
    async with harness(Order) as h:
        inst = await h.start(Order(), id="o-1")
        with pytest.raises(AssertionError) as failure:
            assert_parked_at(inst, "shipping")
    message = str(failure.value)
    assert "expected to be parked at 'shipping'" in message
    assert "'o-1' (Order) is WAITING, parked at decision(approve, deny, expired)" in message


async def test_assert_parked_at_names_every_parked_thread_or_one_thread() -> None:
    async with harness(Forked) as h:
        inst = await h.start(Forked())
        assert_parked_at(inst, "decision", "packed")
        assert_parked_at(inst, "packed", thread="packing")
        with pytest.raises(AssertionError):
            assert_parked_at(inst, "decision")


async def test_assert_parked_at_fails_on_a_finished_instance() -> None:
    async with harness(Order) as h:
        await h.start(Order(), id="o-1")
        await h.send("o-1", "deny")
        with pytest.raises(AssertionError, match="is FINISHED"):
            assert_parked_at(await h.get("o-1"), "decision")


async def test_assert_accepts_compares_the_events_the_instance_accepts() -> None:
    async with harness(Order) as h:
        inst = await h.start(Order())
        assert_accepts(inst, "deny", "approve", "expired")
        expected = r"accept 'approve', 'deny', it accepts 'approve', 'deny', 'expired'"
        with pytest.raises(AssertionError, match=expected):
            assert_accepts(inst, "approve", "deny")


async def test_assert_finished_says_what_the_instance_shows() -> None:
    async with harness(Order) as h:
        inst = await h.start(Order())
        assert_parked_at(inst, "decision")
        expected = r"expected to be FINISHED; .* is WAITING, parked at decision"
        with pytest.raises(AssertionError, match=expected):
            assert_finished(inst)


async def test_assert_cancelled_checks_the_reason() -> None:
    async with harness(Order) as h:
        await h.start(Order(), id="o-1")
        inst = await h.cancel("o-1", reason="out of stock", compensate=True)
        assert_cancelled(inst, "out of stock")
        with pytest.raises(AssertionError, match=r"CANCELLED \(customer left\); .* \(out of stock\)"):
            assert_cancelled(inst, "customer left")


async def test_assert_failed_names_the_failed_step_and_its_error() -> None:
    async with harness(Broken) as h:
        inst = await h.start(Broken())
        assert_failed(inst, "call")
        expected = r"step 'call' failed after 1 attempt\(s\): RuntimeError: always down"
        with pytest.raises(AssertionError, match=expected):
            assert_finished(inst)


async def test_describe_of_a_run_the_definition_could_not_continue_says_the_run_failed() -> None:
    async with harness(Spinning) as h:
        await h.start(Spinning(), id="s-1")
        await h.send("s-1", "go")
        text = describe(await h.get("s-1"))
        assert text.startswith("instance 's-1' (Spinning) is FAILED: the run failed: DefinitionError: ")
        assert "For 'spin'" in text


async def test_assert_failed_of_a_run_the_definition_could_not_continue_says_the_run_failed() -> None:
    async with harness(Spinning) as h:
        await h.start(Spinning(), id="s-1")
        await h.send("s-1", "go")
        inst = await h.get("s-1")
        assert_failed(inst)
        expected = (
            r"FAILED at step 'spin'; instance 's-1' \(Spinning\) is FAILED: the run failed: DefinitionError: "
        )
        with pytest.raises(AssertionError, match=expected):
            assert_failed(inst, "spin")


async def test_assert_steps_ran_compares_the_completed_steps_in_order() -> None:
    async with harness(Order) as h:
        await h.start(Order(), id="o-1")
        await h.send("o-1", "approve", {"approver": "ann"})
        history = await h.history("o-1")
        assert steps_ran(history) == ["reserve", "ship"]
        assert_steps_ran(history, "reserve", "ship")
        expected = r"'ship', 'reserve' to have run, in order; ran: 'reserve', 'ship'"
        with pytest.raises(AssertionError, match=expected):
            assert_steps_ran(history, "ship", "reserve")
