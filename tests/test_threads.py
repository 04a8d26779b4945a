"""Logical threads: Go, thread ids, scheduling order, WaitFor, WaitGroup, the end of the main thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from flow_helpers import Checkpoints, Flow, RecordingHandler, deliver, run
from pydantic import TypeAdapter

import procflow as pf

MAIN = pf.MAIN_THREAD
WAITING_CONDITION = pf.ThreadStatus.WAITING_CONDITION
WAITING_EVENT = pf.ThreadStatus.WAITING_EVENT


# -- Go and thread ids -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_go_thread_runs_after_the_main_thread_parks() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("worker", pf.S(f.step("w1"), f.step("w2"))),
            f.step("m1"),
            pf.WaitFor("worker done", lambda: "w2" in f.log),
            f.step("m2"),
        )
    )

    await run(wf)

    assert wf.log == ["m1", "w1", "w2", "m2"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_a_go_thread_id_is_its_name_by_default() -> None:
    wf = Flow(lambda f: pf.S(pf.Go("reminder", pf.WaitFor("due", False)), pf.WaitFor("done", False)))

    await run(wf)

    assert wf.threads() == [
        (MAIN, MAIN, WAITING_CONDITION, "done"),
        ("reminder", "reminder", WAITING_CONDITION, "due"),
    ]


@pytest.mark.anyio
async def test_the_id_callable_is_called_once_when_the_thread_starts() -> None:
    calls: list[int] = []

    def tree(f: Flow) -> pf.Stmt:
        def thread_id() -> str:
            calls.append(f.n)
            return f"job-{f.n}"

        return pf.S(
            f.count("pick"),
            pf.Go("worker", pf.S(f.step("work"), pf.WaitFor("idle", False)), id=thread_id),
            f.step("m1"),
            f.step("m2"),
            pf.WaitFor("done", False),
        )

    wf = Flow(tree)
    await run(wf)
    await run(wf)

    assert calls == [1]
    assert [(t.id, t.name) for t in wf.state.threads] == [(MAIN, MAIN), ("job-1", "worker")]


@pytest.mark.anyio
async def test_threads_of_one_go_with_distinct_ids_run_side_by_side() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For(
                "spawn",
                lambda: f.n < 3,
                f.count("spawn"),
                pf.Go(
                    "worker",
                    pf.S(pf.WaitFor("job", lambda: f.flag), f.step("work")),
                    id=lambda: f"worker-{f.n}",
                ),
            ),
            pf.WaitFor("all done", lambda: f.log.count("work") == 3),
            f.step("report"),
        )
    )

    await run(wf)
    parked = wf.threads()
    wf.flag = True
    await run(wf)

    assert parked == [
        (MAIN, MAIN, WAITING_CONDITION, "all done"),
        ("worker-1", "worker", WAITING_CONDITION, "job"),
        ("worker-2", "worker", WAITING_CONDITION, "job"),
        ("worker-3", "worker", WAITING_CONDITION, "job"),
    ]
    assert wf.log == ["spawn 1", "spawn 2", "spawn 3", "work", "work", "work", "report"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_an_event_reaches_only_the_thread_whose_id_it_names() -> None:
    calls: list[tuple[object, ...]] = []
    wf = Flow(
        lambda f: pf.S(
            pf.For(
                "spawn",
                lambda: f.n < 3,
                f.count("spawn"),
                pf.Go(
                    "worker",
                    pf.Wait("inbox", pf.On("msg", RecordingHandler(calls))),
                    id=lambda: f"worker-{f.n}",
                ),
            ),
            pf.WaitFor("forever", False),
        )
    )
    await run(wf)

    await deliver(wf, "msg", thread_id="worker-2")

    assert ("handle", "worker-2", "msg") in calls
    assert [t.id for t in wf.state.threads] == [MAIN, "worker-1", "worker-3"]


@pytest.mark.anyio
async def test_threads_of_one_go_may_each_loop_over_a_wait() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For(
                "spawn",
                lambda: f.n < 2,
                f.count("spawn"),
                pf.Go(
                    "worker",
                    pf.For("listen", True, pf.Wait("inbox", pf.On("msg", RecordingHandler([])))),
                    id=lambda: f"worker-{f.n}",
                ),
            ),
            pf.WaitFor("forever", False),
        )
    )

    await run(wf)

    assert wf.threads() == [
        (MAIN, MAIN, WAITING_CONDITION, "forever"),
        ("worker-1", "worker", WAITING_EVENT, "inbox"),
        ("worker-2", "worker", WAITING_EVENT, "inbox"),
    ]


@pytest.mark.anyio
async def test_a_go_whose_id_is_already_running_is_a_definition_error_naming_the_go_and_the_id() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For(
                "spawn",
                lambda: f.n < 2,
                f.count("spawn"),
                pf.Go("worker", pf.WaitFor("idle", False), id=lambda: "same"),
            ),
        )
    )
    checkpoints = Checkpoints(wf.state)

    with pytest.raises(pf.DefinitionError, match="'worker'") as error:
        await pf.resume(wf, wf.state, checkpoints)

    assert "'same'" in str(error.value)
    assert wf.state.model_dump() == checkpoints.last


@pytest.mark.anyio
async def test_an_id_may_be_used_again_once_its_thread_has_ended() -> None:
    rounds = {"started": 0}

    def tree(f: Flow) -> pf.Stmt:
        def start_round() -> None:
            rounds["started"] += 1
            f.log.append(f"round {rounds['started']}")

        return pf.S(
            pf.For(
                "rounds",
                lambda: f.n < 2,
                pf.Step("start round", start_round),
                pf.Go("worker", f.count("work")),
                pf.WaitFor("round done", lambda: f.n == rounds["started"]),
            ),
            f.step("after"),
        )

    wf = Flow(tree)
    await run(wf)

    assert wf.log == ["round 1", "work 1", "round 2", "work 2", "after"]


@pytest.mark.anyio
async def test_a_go_id_callable_that_raises_is_a_definition_error_naming_the_go_and_thread() -> None:
    def broken() -> str:
        raise LookupError("no id")

    wf = Flow(lambda f: pf.S(f.step("a"), pf.Go("worker", f.step("w"), id=broken)))

    with pytest.raises(pf.DefinitionError, match="'worker'") as error:
        await run(wf)

    assert repr(MAIN) in str(error.value)
    assert isinstance(error.value.__cause__, LookupError)


@pytest.mark.anyio
@pytest.mark.parametrize("bad_id", ["", 7, None])
async def test_a_go_id_that_is_not_a_non_empty_str_is_a_definition_error_naming_the_go(
    bad_id: object,
) -> None:
    wf = Flow(lambda f: pf.S(pf.Go("worker", f.step("w"), id=lambda: bad_id)))  # type: ignore[arg-type, return-value]

    with pytest.raises(pf.DefinitionError, match="'worker'"):
        await run(wf)


@pytest.mark.anyio
async def test_a_failing_step_in_a_go_thread_names_the_step_and_the_thread_id() -> None:
    def fail() -> None:
        raise RuntimeError("disk full")

    wf = Flow(
        lambda f: pf.S(pf.Go("worker", pf.Step("save", fail), id=lambda: "worker-7"), pf.WaitFor("x", False))
    )

    with pytest.raises(pf.StepError, match="disk full") as error:
        await run(wf)

    assert error.value.step == "save"
    assert "'worker-7'" in str(error.value)


# -- scheduling order ------------------------------------------------------------


@pytest.mark.anyio
async def test_threads_run_in_the_order_they_started_each_until_it_parks_or_ends() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Step("plan", lambda: f.wg.add(2)),
            pf.Go("a", pf.S(f.step("a1"), f.step("a2", then=f.wg.done))),
            pf.Go("b", pf.S(f.step("b1"), f.step("b2", then=f.wg.done))),
            f.step("m1"),
            f.wg.wait("all done"),
            f.step("m2"),
        )
    )

    await run(wf)

    assert wf.log == ["m1", "a1", "a2", "b1", "b2", "m2"]


@pytest.mark.anyio
async def test_a_woken_thread_runs_after_the_threads_that_were_already_runnable() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("a", pf.S(pf.WaitFor("gate", lambda: f.flag), f.step("a after gate"))),
            pf.Go("b", pf.S(f.step("b1", then=f.set_flag), f.step("b2"))),
            pf.Go("c", f.step("c1")),
            pf.WaitFor("end", lambda: "a after gate" in f.log),
            f.step("m end"),
        )
    )

    await run(wf)

    assert wf.log == ["b1", "b2", "c1", "a after gate", "m end"]


@pytest.mark.anyio
async def test_a_later_resume_runs_the_woken_threads_in_the_order_of_state_threads() -> None:
    def go(name: str, f: Flow) -> pf.Go:
        return pf.Go(name, pf.S(pf.WaitFor(f"gate {name}", lambda: f.flag), f.step(f"{name} ran")))

    wf = Flow(
        lambda f: pf.S(
            go("c", f),
            go("a", f),
            go("b", f),
            pf.WaitFor("end", lambda: len(f.log) == 3),
            f.step("main ran"),
        )
    )
    await run(wf)
    started = [t.id for t in wf.state.threads]
    wf.flag = True

    await run(wf)

    assert started == [MAIN, "c", "a", "b"]
    assert wf.log == ["c ran", "a ran", "b ran", "main ran"]


@pytest.mark.anyio
async def test_threads_woken_when_resume_starts_run_after_the_threads_that_were_already_runnable() -> None:
    def tree(f: Flow) -> pf.Stmt:
        return pf.S(
            pf.Go("a", pf.S(pf.WaitFor("gate", lambda: f.flag), f.step("a ran"))),
            pf.Go("b", pf.S(pf.Wait("inbox", pf.OnEvent("open", f.set_flag)), f.step("b ran"))),
            pf.WaitFor("forever", False),
        )

    wf = Flow(tree)
    await run(wf)

    await deliver(wf, "open")

    assert wf.log == ["b ran", "a ran"]


@pytest.mark.anyio
async def test_the_same_definition_and_data_give_the_same_run() -> None:
    def tree(f: Flow) -> pf.Stmt:
        return pf.S(
            pf.For(
                "spawn",
                lambda: f.n < 3,
                f.count("spawn"),
                pf.Go("worker", pf.S(f.step("w a"), pf.WaitFor("w b", lambda: f.flag)), id=lambda: f"w{f.n}"),
            ),
            pf.Go("other", pf.S(f.step("o1", then=f.set_flag), f.step("o2"))),
            pf.WaitFor("end", lambda: "o2" in f.log),
        )

    first, second = Flow(tree), Flow(tree)
    await run(first)
    await run(second)

    assert first.log == second.log
    assert first.state.model_dump() == second.state.model_dump()


class Hold(pf.RunHooks):
    """Run hooks that hold one thread back, as the engine holds a step waiting for its retry."""

    def __init__(self, held: str) -> None:
        self.held = held

    def may_run(self, thread: str) -> bool:
        return thread != self.held


@pytest.mark.anyio
async def test_a_run_continued_from_a_checkpoint_runs_the_executing_thread_before_a_held_one() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("w1", f.step("w1 step")),
            pf.Go("w2", pf.S(f.step("s1"), f.step("s2"))),
            pf.WaitFor("end", False),
        )
    )
    checkpoints = await run(wf, hooks=Hold("w1"))
    after_s1 = pf.State.model_validate(checkpoints.snapshots[0])
    assert wf.log == ["s1", "s2"]

    wf.log.clear()  # a crash right after s1's checkpoint; w1 is no longer held
    await run(wf, after_s1)

    assert wf.log == ["s2", "w1 step"]


# -- threads ending --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_thread_that_ends_is_removed_from_state_threads() -> None:
    wf = Flow(lambda f: pf.S(pf.Go("worker", f.step("w")), pf.WaitFor("forever", False)))

    await run(wf)

    assert wf.log == ["w"]
    assert [t.id for t in wf.state.threads] == [MAIN]


@pytest.mark.anyio
async def test_return_in_a_go_thread_ends_only_that_thread() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("worker", pf.S(f.step("w1"), pf.Return(), f.step("never"))),
            pf.WaitFor("worker ran", lambda: "w1" in f.log),
            f.step("main goes on"),
            pf.WaitFor("forever", False),
        )
    )

    await run(wf)

    assert wf.log == ["w1", "main goes on"]
    assert [t.id for t in wf.state.threads] == [MAIN]
    assert wf.state.status == pf.WorkflowStatus.WAITING


@pytest.mark.anyio
async def test_when_the_main_thread_returns_threads_that_have_not_run_are_dropped() -> None:
    wf = Flow(lambda f: pf.S(pf.Go("worker", f.step("w")), f.step("m"), pf.Return()))

    await run(wf)

    assert wf.log == ["m"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.threads == []


@pytest.mark.anyio
async def test_when_the_main_thread_returns_the_events_other_threads_wait_for_are_torn_down() -> None:
    calls: list[tuple[object, ...]] = []
    wf = Flow(
        lambda f: pf.S(
            pf.Go("listener", pf.Wait("listen", pf.On("ping", RecordingHandler(calls)))),
            pf.Go("poller", pf.WaitFor("ready", False)),
            pf.Wait("main wait", pf.On("stop", RecordingHandler(calls), pf.Return())),
            f.step("never"),
        )
    )
    await run(wf)

    await deliver(wf, "stop")

    assert calls == [
        ("setup", MAIN, "stop"),
        ("setup", "listener", "ping"),
        ("handle", MAIN, "stop"),
        ("teardown", MAIN, "stop", True),
        ("teardown", "listener", "ping", False),
    ]
    assert wf.log == []
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.threads == []


# -- WaitFor ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_waitfor_parks_the_thread_until_its_condition_is_true() -> None:
    wf = Flow(lambda f: pf.S(pf.WaitFor("gate", lambda: f.flag), f.step("after")))

    await run(wf)
    parked = (wf.state.status, wf.threads(), list(wf.log))
    wf.flag = True
    await run(wf)

    assert parked == (pf.WorkflowStatus.WAITING, [(MAIN, MAIN, WAITING_CONDITION, "gate")], [])
    assert wf.log == ["after"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
@pytest.mark.parametrize("cond", [True, lambda: True], ids=["bool", "callable"])
async def test_a_waitfor_whose_condition_is_already_true_does_not_park(
    cond: bool | Callable[[], bool],
) -> None:
    wf = Flow(
        lambda f: pf.S(pf.WaitFor("gate", cond, handler=lambda: f.log.append("opened")), f.step("after"))
    )

    await run(wf)

    assert wf.log == ["opened", "after"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_the_waitfor_handler_runs_once_when_the_condition_becomes_true() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.WaitFor("gate", lambda: f.flag, handler=lambda: f.log.append("opened")),
            f.step("a"),
            f.step("b"),
        )
    )

    await run(wf)
    await run(wf)
    before_opening = list(wf.log)
    wf.flag = True
    await run(wf)

    assert before_opening == []
    assert wf.log == ["opened", "a", "b"]


@pytest.mark.anyio
async def test_conditions_are_checked_after_every_step_of_any_thread() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("counter", pf.S(f.count("one"), f.count("two"), f.count("three"))),
            pf.WaitFor("at two", lambda: f.n >= 2, handler=lambda: f.log.append(f"seen {f.n}")),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["one 1", "two 2", "seen 2", "three 3", "after"]


@pytest.mark.anyio
async def test_a_failing_waitfor_handler_raises_step_error_and_is_retried() -> None:
    attempts: list[int] = []

    def open_gate() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("not yet")

    wf = Flow(lambda f: pf.S(pf.WaitFor("gate", lambda: f.flag, handler=open_gate), f.step("after")))
    await run(wf)
    wf.flag = True

    with pytest.raises(pf.StepError, match="not yet") as error:
        await run(wf)
    await run(wf)

    assert error.value.step == "gate"
    assert len(attempts) == 2
    assert wf.log == ["after"]


@pytest.mark.anyio
async def test_a_condition_made_true_by_a_waitfor_handler_wakes_its_thread_in_the_same_resume() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("opener", pf.WaitFor("open it", True, handler=f.set_flag)),
            pf.WaitFor("gate", lambda: f.flag),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["after"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_a_waitfor_handler_wakes_an_earlier_thread_whose_condition_it_made_true() -> None:
    def tree(f: Flow) -> pf.Stmt:
        def open_a() -> None:
            f.n = 1

        return pf.S(
            pf.Go("t1", pf.S(pf.WaitFor("a", lambda: f.n > 0), f.step("t1 after"))),
            pf.Go("t2", pf.WaitFor("b", lambda: f.flag, handler=open_a)),
            pf.WaitFor("end", False),
        )

    wf = Flow(tree)
    await run(wf)
    wf.flag = True

    await run(wf)  # b's handler makes a true, and t1 is checked before t2

    assert wf.log == ["t1 after"]
    assert [t.id for t in wf.state.threads] == [pf.MAIN_THREAD]


@pytest.mark.anyio
async def test_conditions_are_checked_in_thread_order_whatever_order_the_threads_parked_in() -> None:
    def tree(f: Flow) -> pf.Stmt:
        def parked_on(event: str) -> pf.Wait:
            return pf.Wait(f"waiting for {event}", pf.On(event, RecordingHandler([])))

        return pf.S(
            pf.Go(
                "t1", pf.S(parked_on("e1"), pf.WaitFor("a", lambda: f.flag, lambda: f.log.append("t1 woke")))
            ),
            pf.Go("t2", pf.WaitFor("b", lambda: f.flag, lambda: f.log.append("t2 woke"))),
            pf.Go("t3", pf.S(parked_on("e3"), f.step("open", then=f.set_flag))),
            pf.WaitFor("end", False),
        )

    wf = Flow(tree)
    await run(wf)  # t2 parks on its condition in this resume, t1 in the next
    for event in ("e1", "e3"):
        await pf.handle_callback(pf.CallbackRequest(name=event), wf, wf.state, None)

    await run(wf)  # t1 parks on "a", then t3's step makes both conditions true

    assert wf.log == ["open", "t1 woke", "t2 woke"]


@pytest.mark.anyio
async def test_a_thread_woken_by_its_condition_moves_to_the_end_of_state_threads() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("t1", pf.S(pf.WaitFor("gate", lambda: f.flag), pf.WaitFor("end 1", False))),
            pf.Go("t2", pf.S(f.step("open", then=f.set_flag), pf.WaitFor("end 2", False))),
            pf.WaitFor("end", False),
        )
    )
    await run(wf)
    assert [t.id for t in wf.state.threads] == [pf.MAIN_THREAD, "t2", "t1"]


@pytest.mark.anyio
async def test_a_thread_that_parks_on_a_waitfor_inside_an_event_goes_on_after_it_once_woken() -> None:
    def tree(f: Flow) -> pf.Stmt:
        helper = pf.Go("helper", f.step("helped"))
        gate = pf.WaitFor("gate", lambda: f.flag)
        return pf.S(pf.Wait("w", pf.On("go", RecordingHandler([]), helper, gate)), f.step("after"))

    wf = Flow(tree)
    await run(wf)
    await deliver(wf, "go")
    wf.flag = True

    await run(wf)

    assert wf.log == ["helped", "after"]


@pytest.mark.anyio
async def test_a_run_continued_from_a_waitfor_handlers_checkpoint_inside_an_event_goes_on_after_it() -> None:
    def tree(f: Flow) -> pf.Stmt:
        gate = pf.WaitFor("gate", True, handler=lambda: f.log.append("handler"))
        return pf.S(pf.Wait("w", pf.On("go", RecordingHandler([]), gate)), f.step("after"))

    wf = Flow(tree)
    await run(wf)
    await pf.handle_callback(pf.CallbackRequest(name="go"), wf, wf.state, None)
    checkpoints = await run(wf)
    after_handler = pf.State.model_validate(checkpoints.snapshots[checkpoints.kinds.index("AFTER_CONDITION")])
    wf.log.clear()

    await run(wf, after_handler)

    assert wf.log == ["after"]


# -- WaitGroup -------------------------------------------------------------------


def test_waitgroup_wait_is_a_waitfor_of_that_name() -> None:
    wait = pf.WaitGroup().wait("all done")

    assert isinstance(wait, pf.WaitFor)
    assert wait.name == "all done"


def test_waitgroup_done_below_zero_raises_value_error() -> None:
    wg = pf.WaitGroup()

    with pytest.raises(ValueError):
        wg.done()


def test_waitgroup_add_below_zero_raises_value_error_and_keeps_the_counter() -> None:
    wg = pf.WaitGroup()
    wg.add(2)

    with pytest.raises(ValueError):
        wg.add(-3)
    wg.done()
    wg.done()

    with pytest.raises(ValueError):
        wg.done()


def test_waitgroup_add_and_done_mark_the_counter_as_set_like_an_assignment() -> None:
    wg = pf.WaitGroup()
    wg.add(3)
    wg.done()

    assert wg.count == 2
    assert wg.model_dump(exclude_unset=True) == {"count": 2}


@dataclass
class Batch:
    """Workflow data holding a WaitGroup: two workers, a collector."""

    wg: pf.WaitGroup = field(default_factory=pf.WaitGroup)
    go: bool = False
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("batch-1", "batch"))

    def worker(self, name: str) -> pf.Go:
        return pf.Go(
            name,
            pf.S(pf.WaitFor(f"{name} may start", lambda: self.go), pf.Step(f"{name} done", self.wg.done)),
        )

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("plan", lambda: self.wg.add(2)),
            self.worker("a"),
            self.worker("b"),
            self.wg.wait("all done"),
            pf.Step("report", lambda: self.log.append("report")),
        )


def test_a_waitgroup_field_round_trips_through_pydantic() -> None:
    adapter = TypeAdapter(Batch)
    batch = Batch()
    batch.wg.add(2)

    restored = adapter.validate_json(adapter.dump_json(batch))
    restored.wg.done()
    restored.wg.done()

    assert restored.wg == pf.WaitGroup()
    with pytest.raises(ValueError):
        restored.wg.done()


@pytest.mark.anyio
async def test_a_workflow_waits_on_its_waitgroup_across_a_round_trip_of_its_data() -> None:
    adapter = TypeAdapter(Batch)
    batch = Batch()
    await run(batch)
    parked = [t.cur_step for t in batch.state.threads]

    restored = adapter.validate_json(adapter.dump_json(batch))
    restored.go = True
    await run(restored)

    assert parked == ["all done", "a may start", "b may start"]
    assert restored.log == ["report"]
    assert restored.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_waiting_on_a_waitgroup_at_zero_does_not_park() -> None:
    wf = Flow(lambda f: pf.S(f.wg.wait("nothing pending"), f.step("after")))

    await run(wf)

    assert wf.log == ["after"]
