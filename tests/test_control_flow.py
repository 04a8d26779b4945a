"""Control flow within one thread: Step, S, If/Switch, For, Break, Continue, Return, conditions."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from flow_helpers import Checkpoints, Flow, deliver, run

import procflow as pf

pytestmark = pytest.mark.anyio


# -- steps -----------------------------------------------------------------------


async def test_steps_run_once_each_in_order() -> None:
    wf = Flow(lambda f: pf.S(f.step("a"), f.step("b"), f.step("c")))

    await run(wf)

    assert wf.log == ["a", "b", "c"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


async def test_an_async_step_is_awaited_before_the_next_step_runs() -> None:
    def tree(f: Flow) -> pf.Stmt:
        async def slow() -> None:
            await anyio.sleep(0)
            f.log.append("slow done")

        return pf.S(pf.Step("slow", slow), f.step("next"))

    wf = Flow(tree)
    await run(wf)

    assert wf.log == ["slow done", "next"]


async def test_a_section_runs_its_statements_in_order_and_nests() -> None:
    wf = Flow(lambda f: pf.Section([f.step("a"), pf.S(f.step("b"), pf.S()), pf.Section([f.step("c")])]))

    await run(wf)

    assert wf.log == ["a", "b", "c"]


async def test_a_step_is_not_run_again_by_later_resumes() -> None:
    wf = Flow(lambda f: pf.S(f.step("before"), pf.WaitFor("gate", lambda: f.flag), f.step("after")))

    await run(wf)
    await run(wf)
    wf.flag = True
    await run(wf)

    assert wf.log == ["before", "after"]


async def test_a_failing_step_raises_step_error_with_the_step_its_thread_and_the_cause() -> None:
    cause = RuntimeError("card declined")

    def charge() -> None:
        raise cause

    wf = Flow(lambda f: pf.S(pf.Step("charge", charge)))

    with pytest.raises(pf.StepError) as error:
        await run(wf)

    assert error.value.step == "charge"
    assert error.value.__cause__ is cause
    assert "card declined" in str(error.value)
    assert "'charge'" in str(error.value)
    assert repr(pf.MAIN_THREAD) in str(error.value)


async def test_a_failing_async_step_raises_step_error() -> None:
    async def charge() -> None:
        await anyio.sleep(0)
        raise ValueError("no funds")

    wf = Flow(lambda f: pf.S(pf.Step("charge", charge)))

    with pytest.raises(pf.StepError, match="no funds") as error:
        await run(wf)

    assert isinstance(error.value.__cause__, ValueError)


async def test_a_failing_step_leaves_the_state_as_at_the_last_checkpoint() -> None:
    def tree(f: Flow) -> pf.Stmt:
        def fail() -> None:
            raise RuntimeError("down")

        return pf.S(f.step("a"), pf.Go("side", f.step("side step")), f.step("b"), pf.Step("fails", fail))

    wf = Flow(tree)
    checkpoints = Checkpoints(wf.state)

    with pytest.raises(pf.StepError):
        await pf.resume(wf, wf.state, checkpoints)

    assert wf.state.model_dump() == checkpoints.last
    assert wf.state.threads[0].cur_step == "b"


async def test_a_failing_step_as_the_first_step_leaves_the_state_unchanged() -> None:
    def fail() -> None:
        raise RuntimeError("down")

    wf = Flow(lambda f: pf.S(pf.Step("fails", fail)))
    before = wf.state.model_dump()

    with pytest.raises(pf.StepError):
        await run(wf)

    assert wf.state.model_dump() == before


async def test_the_next_resume_retries_the_failed_step_and_not_the_ones_before_it() -> None:
    attempts: list[int] = []

    def tree(f: Flow) -> pf.Stmt:
        def flaky() -> None:
            attempts.append(len(attempts) + 1)
            if len(attempts) == 1:
                raise RuntimeError("try again")
            f.log.append("flaky")

        return pf.S(f.step("a"), pf.Step("flaky", flaky), f.step("b"))

    wf = Flow(tree)
    with pytest.raises(pf.StepError):
        await run(wf)
    await run(wf)

    assert attempts == [1, 2]
    assert wf.log == ["a", "flaky", "b"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


# -- conditions ------------------------------------------------------------------


async def test_a_bool_condition_sees_data_changed_by_an_earlier_step() -> None:
    wf = Flow(
        lambda f: pf.S(
            f.step("approve", then=f.set_flag),
            pf.If(f.flag, "approved?", f.step("ship")).else_("rejected", f.step("refund")),
        )
    )

    await run(wf)

    assert wf.log == ["approve", "ship"]


async def test_a_callable_condition_sees_data_changed_by_an_earlier_step() -> None:
    wf = Flow(
        lambda f: pf.S(
            f.step("approve", then=f.set_flag),
            pf.If(lambda: f.flag, "approved?", f.step("ship")).else_("rejected", f.step("refund")),
        )
    )

    await run(wf)

    assert wf.log == ["approve", "ship"]


async def test_a_bool_condition_sees_data_changed_by_a_waitfor_handler() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.WaitFor("gate", True, handler=f.set_flag),
            pf.If(f.flag, "flagged?", f.step("flagged")).else_("not flagged", f.step("not flagged")),
        )
    )

    await run(wf)

    assert wf.log == ["flagged"]


async def test_a_bool_condition_sees_data_changed_by_an_event_handler() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Wait("decision", pf.OnEvent("approve", f.set_flag)),
            pf.If(f.flag, "approved?", f.step("ship")).else_("rejected", f.step("refund")),
        )
    )
    await run(wf)

    await deliver(wf, "approve")

    assert wf.log == ["ship"]


async def test_a_callable_condition_is_evaluated_only_when_reached() -> None:
    evaluated: list[str] = []

    def cond(name: str, value: bool) -> Callable[[], bool]:
        def check() -> bool:
            evaluated.append(name)
            return value

        return check

    wf = Flow(
        lambda f: pf.S(
            f.step("a"),
            pf.If(cond("first", False), "first")
            .elif_(cond("second", True), "second")
            .elif_(cond("third", True), "third"),
            pf.If(True, "stop", pf.Return()),
            pf.If(cond("after return", True), "after"),
        )
    )

    await run(wf)

    assert evaluated == ["first", "second"]


async def test_a_condition_that_raises_is_a_definition_error_naming_the_statement_and_thread() -> None:
    def broken() -> bool:
        raise KeyError("missing")

    wf = Flow(lambda f: pf.S(f.step("a"), pf.If(broken, "check stock", f.step("b"))))

    with pytest.raises(pf.DefinitionError, match="'check stock'") as error:
        await run(wf)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert isinstance(error.value.__cause__, KeyError)


@pytest.mark.parametrize(
    "tree",
    [
        lambda f, cond: pf.S(f.step("a"), pf.If(cond, "approved?", f.step("b"))),
        lambda f, cond: pf.S(f.step("a"), pf.For("loop", cond, f.step("b"))),
        lambda f, cond: pf.S(f.step("a"), pf.WaitFor("approved", cond), f.step("b")),
    ],
    ids=["If", "For", "WaitFor"],
)
async def test_an_async_condition_is_a_definition_error_that_changes_nothing(
    tree: Callable[[Flow, Callable[[], object]], pf.Stmt],
) -> None:
    async def approved() -> bool:
        return False

    wf = Flow(lambda f: tree(f, approved))
    checkpoints = Checkpoints(wf.state)

    with pytest.raises(pf.DefinitionError, match="returned coroutine: a condition must be a bool or a plain"):
        await pf.resume(wf, wf.state, checkpoints)

    assert wf.state.model_dump() == checkpoints.last  # as at the checkpoint after "a"
    assert wf.log == ["a"]


async def test_a_tree_rebuilt_with_none_where_the_thread_goes_next_is_a_definition_error() -> None:
    # After step "a" the definition leaves "b" out as None: the thread must not end there.
    wf = Flow(lambda f: pf.S(f.step("a", then=f.set_flag), None if f.flag else f.step("b"), f.step("c")))  # type: ignore[arg-type]
    checkpoints = Checkpoints(wf.state)

    with pytest.raises(pf.DefinitionError, match="a Section holds None, which is not a statement"):
        await pf.resume(wf, wf.state, checkpoints)

    assert wf.state.model_dump() == checkpoints.last  # as at the checkpoint after "a"
    assert wf.log == ["a"]


# -- If / Switch -----------------------------------------------------------------


async def test_if_runs_its_statements_when_true_then_continues_after() -> None:
    wf = Flow(lambda f: pf.S(pf.If(True, "yes", f.step("inside"), f.step("inside too")), f.step("after")))

    await run(wf)

    assert wf.log == ["inside", "inside too", "after"]


async def test_if_false_without_else_continues_after() -> None:
    wf = Flow(lambda f: pf.S(pf.If(False, "no", f.step("inside")), f.step("after")))

    await run(wf)

    assert wf.log == ["after"]


async def test_elif_runs_when_the_if_is_false() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.If(False, "first", f.step("first"))
            .elif_(lambda: True, "second", f.step("second"))
            .else_("other", f.step("other")),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["second", "after"]


async def test_only_the_first_true_case_runs() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.If(True, "first", f.step("first"))
            .elif_(True, "second", f.step("second"))
            .else_("other", f.step("other")),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["first", "after"]


async def test_else_runs_when_no_case_is_true() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.If(False, "first", f.step("first"))
            .elif_(lambda: False, "second", f.step("second"))
            .else_("other", f.step("other")),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["other", "after"]


async def test_switch_runs_the_first_true_case_then_continues_after_it() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Switch(
                pf.Case(lambda: f.n > 10, "big", f.step("big")),
                pf.Case(lambda: f.n >= 0, "small", f.step("small")),
                pf.Default("negative", f.step("negative")),
            ),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["small", "after"]


async def test_a_switch_with_no_true_case_continues_after_it() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Switch(pf.Case(False, "one", f.step("one")), pf.Case(lambda: False, "two", f.step("two"))),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["after"]


async def test_a_case_with_no_statements_continues_after_the_switch() -> None:
    wf = Flow(lambda f: pf.S(pf.If(True, "empty").else_("other", f.step("other")), f.step("after")))

    await run(wf)

    assert wf.log == ["after"]


async def test_a_case_stays_the_branch_taken_when_its_condition_changes_inside_it() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.If(not f.flag, "first time", f.step("set", then=f.set_flag), f.step("rest of branch")),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["set", "rest of branch", "after"]


# -- For, Break, Continue --------------------------------------------------------


async def test_for_runs_its_body_while_a_callable_condition_is_true() -> None:
    wf = Flow(lambda f: pf.S(pf.For("loop", lambda: f.n < 3, f.count("tick")), f.step("after")))

    await run(wf)

    assert wf.log == ["tick 1", "tick 2", "tick 3", "after"]


async def test_for_runs_its_body_while_a_bool_condition_of_the_rebuilt_tree_is_true() -> None:
    wf = Flow(lambda f: pf.S(pf.For("loop", f.n < 3, f.count("tick")), f.step("after")))

    await run(wf)

    assert wf.log == ["tick 1", "tick 2", "tick 3", "after"]


async def test_for_whose_condition_is_false_at_first_skips_its_body() -> None:
    wf = Flow(lambda f: pf.S(pf.For("loop", False, f.step("inside")), f.step("after")))

    await run(wf)

    assert wf.log == ["after"]


async def test_for_with_an_empty_body_and_a_false_condition_is_skipped() -> None:
    wf = Flow(lambda f: pf.S(pf.For("loop", lambda: False), f.step("after")))

    await run(wf)

    assert wf.log == ["after"]


async def test_break_leaves_the_loop_before_the_rest_of_the_body_runs() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For(
                "loop", True, f.count("tick"), pf.If(lambda: f.n == 2, "enough?", pf.Break()), f.step("rest")
            ),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["tick 1", "rest", "tick 2", "after"]


async def test_break_leaves_only_the_innermost_loop() -> None:
    def tree(f: Flow) -> pf.Stmt:
        return pf.S(
            pf.For(
                "outer",
                lambda: f.n < 4,
                f.count("outer"),
                pf.For("inner", True, f.step(f"inner {f.n}"), pf.Break(), f.step("never")),
                f.step(f"outer rest {f.n}"),
            ),
            f.step("after"),
        )

    wf = Flow(tree)
    await run(wf)

    assert wf.log == [
        "outer 1", "inner 1", "outer rest 1",
        "outer 2", "inner 2", "outer rest 2",
        "outer 3", "inner 3", "outer rest 3",
        "outer 4", "inner 4", "outer rest 4",
        "after",
    ]  # fmt: skip


async def test_continue_goes_to_the_next_iteration_before_the_rest_of_the_body_runs() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For(
                "loop",
                lambda: f.n < 4,
                f.count("tick"),
                pf.If(lambda: f.n % 2 == 1, "odd?", pf.Continue()),
                f.step(f"even {f.n}"),
            ),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["tick 1", "tick 2", "even 2", "tick 3", "tick 4", "even 4", "after"]


async def test_continue_reevaluates_the_loop_condition() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For("loop", lambda: f.n < 2, f.count("tick"), pf.Continue(), f.step("never")),
            f.step("after"),
        )
    )

    await run(wf)

    assert wf.log == ["tick 1", "tick 2", "after"]


async def test_continue_in_an_inner_loop_continues_the_inner_loop() -> None:
    def tree(f: Flow) -> pf.Stmt:
        return pf.S(
            pf.For(
                "outer",
                lambda: f.n < 6,
                f.step("outer start"),
                pf.For("inner", lambda: f.n % 3 != 2, f.count("inner"), pf.Continue(), f.step("never")),
                f.count("outer"),
            ),
            f.step("after"),
        )

    wf = Flow(tree)
    await run(wf)

    assert wf.log == [
        "outer start", "inner 1", "inner 2", "outer 3",
        "outer start", "inner 4", "inner 5", "outer 6",
        "after",
    ]  # fmt: skip


async def test_nested_loops_run_the_inner_loop_fully_in_each_outer_iteration() -> None:
    cells: list[tuple[int, int]] = []
    at = {"row": 0, "col": 0}

    def tree(f: Flow) -> pf.Stmt:
        def cell() -> None:
            cells.append((at["row"], at["col"]))
            at["col"] += 1

        def next_row() -> None:
            at["row"], at["col"] = at["row"] + 1, 0

        return pf.S(
            pf.For(
                "rows",
                lambda: at["row"] < 3,
                pf.For("cols", lambda: at["col"] < 2, pf.Step("cell", cell)),
                pf.Step("next row", next_row),
            ),
        )

    await run(Flow(tree))

    assert cells == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


async def test_a_loop_whose_iterations_wait_may_run_many_times() -> None:
    def tree(f: Flow) -> pf.Stmt:
        def tick() -> None:
            f.n += 1

        return pf.S(
            pf.For("listen", lambda: f.n < 2, pf.Wait("inbox", pf.OnEvent("tick", tick))),
            f.step("after"),
        )

    wf = Flow(tree)
    await run(wf)
    await deliver(wf, "tick")
    assert wf.state.status == pf.WorkflowStatus.WAITING
    await deliver(wf, "tick")

    assert wf.log == ["after"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


async def test_break_in_an_event_leaves_the_loop_around_the_wait() -> None:
    def tree(f: Flow) -> pf.Stmt:
        return pf.S(
            pf.For(
                "listen",
                True,
                pf.Wait(
                    "inbox", pf.OnEvent("stop", lambda: None, pf.Break()), pf.OnEvent("more", lambda: None)
                ),
                f.step("got more"),
            ),
            f.step("after"),
        )

    wf = Flow(tree)
    await run(wf)
    await deliver(wf, "more")
    await deliver(wf, "stop")

    assert wf.log == ["got more", "after"]


async def test_an_iteration_that_neither_runs_a_step_nor_waits_is_a_definition_error() -> None:
    wf = Flow(lambda f: pf.S(f.step("a"), pf.For("spin", True, pf.If(lambda: False, "never", f.step("b")))))
    checkpoints = Checkpoints(wf.state)

    with pytest.raises(pf.DefinitionError, match="'spin'") as error:
        await pf.resume(wf, wf.state, checkpoints)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert wf.state.model_dump() == checkpoints.last


async def test_an_iteration_cut_short_by_continue_before_any_step_is_a_definition_error() -> None:
    wf = Flow(lambda f: pf.S(pf.For("spin", lambda: f.n < 3, pf.Continue(), f.count("never"))))

    with pytest.raises(pf.DefinitionError, match="'spin'"):
        await run(wf)

    assert wf.log == []


async def test_a_later_iteration_that_does_not_park_is_a_definition_error() -> None:
    wf = Flow(lambda f: pf.S(pf.For("spin", True, pf.If(lambda: f.n < 2, "early?", f.count("tick")))))

    with pytest.raises(pf.DefinitionError, match="'spin'"):
        await run(wf)

    assert wf.log == ["tick 1", "tick 2"]


async def test_an_outer_loop_whose_iteration_only_breaks_out_of_an_inner_one_is_the_one_named() -> None:
    def tree(f: Flow) -> pf.Stmt:
        inner = pf.For("inner", True, pf.If(lambda: f.n % 2 == 1, "odd?", pf.Break()), f.count("tick"))
        return pf.S(pf.For("outer", lambda: f.n < 4, inner))

    wf = Flow(tree)

    with pytest.raises(pf.DefinitionError, match="For 'outer'"):
        await run(wf)

    assert wf.log == ["tick 1"]


async def test_a_loop_with_an_empty_body_and_a_true_condition_is_a_definition_error() -> None:
    wf = Flow(lambda f: pf.S(f.step("a"), pf.For("empty", lambda: True)))

    with pytest.raises(pf.DefinitionError, match="'empty'"):
        await run(wf)


async def test_a_loop_whose_only_waitfor_is_already_true_does_not_park_and_is_a_definition_error() -> None:
    wf = Flow(lambda f: pf.S(pf.For("spin", True, pf.WaitFor("ready", True))))

    with pytest.raises(pf.DefinitionError, match="'spin'"):
        await run(wf)


async def test_a_resume_with_more_than_max_transitions_is_a_definition_error() -> None:
    wf = Flow(lambda f: pf.S(pf.For("forever", True, f.count("tick"))))
    checkpoints = Checkpoints(wf.state)

    with pytest.raises(pf.DefinitionError, match="transitions") as error:
        await pf.resume(wf, wf.state, checkpoints, max_transitions=5)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert checkpoints.kinds  # it got going before it was stopped
    assert wf.state.model_dump() == checkpoints.last


async def test_a_resume_of_exactly_max_transitions_transitions_succeeds() -> None:
    wf = Flow(lambda f: pf.S(pf.WaitFor("gate", lambda: f.flag)))  # starting the thread: its one transition
    await run(wf, max_transitions=1)
    assert wf.state.status == pf.WorkflowStatus.WAITING


async def test_a_loop_of_waitfor_handlers_alone_is_stopped_by_max_transitions() -> None:
    def tree(f: Flow) -> pf.Stmt:
        def tick() -> None:
            f.n += 1

        return pf.S(pf.For("spin", lambda: f.n < 50, pf.WaitFor("tick", True, handler=tick)))

    wf = Flow(tree)
    with pytest.raises(pf.DefinitionError, match="more than 10 transitions"):
        await run(wf, max_transitions=10)
    assert wf.n < 50


async def test_max_transitions_counts_per_resume() -> None:
    wf = Flow(lambda f: pf.S(f.count("a"), pf.WaitFor("gate", lambda: f.flag), f.count("b"), f.count("c")))

    await run(wf, max_transitions=3)
    wf.flag = True
    await run(wf, max_transitions=3)

    assert wf.state.status == pf.WorkflowStatus.FINISHED


# -- Return ----------------------------------------------------------------------


async def test_return_in_the_main_thread_finishes_the_workflow_at_once() -> None:
    wf = Flow(lambda f: pf.S(f.step("a"), pf.Return(), f.step("never")))

    await run(wf)

    assert wf.log == ["a"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.threads == []


async def test_return_inside_a_loop_and_branch_finishes_the_workflow() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.For("loop", True, f.count("tick"), pf.If(lambda: f.n == 2, "done?", pf.Return())),
            f.step("never"),
        )
    )

    await run(wf)

    assert wf.log == ["tick 1", "tick 2"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


async def test_reaching_the_end_of_the_definition_finishes_the_workflow() -> None:
    wf = Flow(lambda f: pf.S(f.step("only")))

    checkpoints = await run(wf)

    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.threads == []
    assert checkpoints.last["status"] == pf.WorkflowStatus.FINISHED


async def test_an_empty_definition_finishes_at_once() -> None:
    wf = Flow(lambda f: pf.S())

    await run(wf)

    assert wf.state.status == pf.WorkflowStatus.FINISHED


async def test_a_finished_workflow_cannot_be_resumed() -> None:
    wf = Flow(lambda f: pf.S(f.step("a")))
    await run(wf)

    with pytest.raises(pf.WorkflowFinishedError):
        await run(wf)

    assert wf.log == ["a"]


@pytest.mark.parametrize("call", ["resume", "handle_callback", "cancel"])
async def test_a_state_that_is_no_state_model_is_a_type_error_naming_its_type(call: str) -> None:
    wf = Flow(lambda f: pf.S(f.step("a")))
    stored = wf.state.model_dump()  # the State's JSON, not yet validated back into a State

    with pytest.raises(TypeError, match=r"state must be a procflow\.State, got dict"):
        if call == "resume":
            await pf.resume(wf, stored, lambda kind: None)  # type: ignore[arg-type]
        elif call == "handle_callback":
            await pf.handle_callback(pf.CallbackRequest(name="go"), wf, stored, None)  # type: ignore[arg-type]
        else:
            await pf.cancel(wf, stored, lambda kind: None, reason="test")  # type: ignore[arg-type]

    assert wf.log == []
