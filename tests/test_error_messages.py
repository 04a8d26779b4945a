"""Every error says what went wrong and where: the statement, the thread and the instance.

Each test makes one error happen and reads its message as a user would; the
behaviour behind each error (what the State is left as, what runs again) is
specified with the statement or call it belongs to.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from flow_helpers import Flow, deliver, run

import procflow as pf

# Flow's instances are 'flow' 'flow-1', and run() resumes them in the main thread.
WHERE = "in thread '_main_' of 'flow' 'flow-1'"


class Failure(Exception):
    pass


def fail() -> None:
    raise Failure("boom")


class FailingSetup(pf.Handler):
    type = "failing-setup"

    def setup(self, req: pf.CallbackRequest) -> str:
        raise Failure(f"no webhook for {req.name}")


class Listening(pf.Handler):
    type = "listening"


def one_argument(n: int) -> None:
    pass


def two_arguments(a: int, b: int) -> None:
    pass


class NotValidatable:
    pass


def takes_a_type_pydantic_cannot_validate(payload: NotValidatable) -> None:
    pass


def parked_on(event: str) -> pf.Wait:
    return pf.Wait("decision", pf.On(event, Listening()), pf.On("deny", Listening()))


# -- resume -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_step_error_names_the_step_the_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.Step("charge", fail)))
    with pytest.raises(pf.StepError) as caught:
        await run(wf)
    assert str(caught.value) == f"Step 'charge' {WHERE} raised Failure: boom"


def fail_in_a_group() -> None:
    raise ExceptionGroup("unhandled errors in a TaskGroup", [Failure("boom"), KeyError("sku")])


@pytest.mark.anyio
async def test_a_step_error_from_an_exception_group_names_the_exceptions_it_holds() -> None:
    wf = Flow(lambda f: pf.S(pf.Step("charge", fail_in_a_group)))
    with pytest.raises(pf.StepError) as caught:
        await run(wf)
    assert str(caught.value) == (
        f"Step 'charge' {WHERE} raised ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions) "
        "[Failure: boom; KeyError: 'sku']"
    )


@pytest.mark.anyio
async def test_a_waitfor_handler_error_names_the_waitfor_the_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.WaitFor("ready", True, fail)))
    with pytest.raises(pf.StepError) as caught:
        await run(wf)
    assert str(caught.value) == f"the handler of WaitFor 'ready' {WHERE} raised Failure: boom"


@pytest.mark.anyio
async def test_a_setup_error_names_each_event_its_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.Wait("decision", pf.On("approve", FailingSetup()))))
    with pytest.raises(pf.SetupError) as caught:
        await run(wf)
    assert str(caught.value) == (
        "setup of 1 event(s) of 'flow' 'flow-1' failed: event 'approve' in thread '_main_': "
        "Failure: no webhook for approve; the next resume retries them"
    )


@pytest.mark.anyio
async def test_a_condition_that_raises_names_its_statement_the_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.If(lambda: 1 / 0 > 0, "big?", f.step("a"))))
    with pytest.raises(
        pf.DefinitionError, match=f"^the condition of Case 'big\\?' {WHERE} raised ZeroDivisionError"
    ):
        await run(wf)


@pytest.mark.anyio
async def test_a_loop_that_never_parks_names_the_loop_the_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.For("spin", lambda: True, pf.S())))
    with pytest.raises(pf.DefinitionError, match=f"^an iteration of For 'spin' {WHERE} neither ran a step"):
        await run(wf)


@pytest.mark.anyio
async def test_too_many_transitions_names_the_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.For("forever", True, f.count("tick"))))
    with pytest.raises(pf.DefinitionError, match=f"^more than 3 transitions in one resume, {WHERE}; "):
        await run(wf, max_transitions=3)


@pytest.mark.anyio
async def test_a_go_id_that_is_no_str_names_the_go_the_thread_and_the_instance() -> None:
    wf = Flow(lambda f: pf.S(pf.Go("worker", f.step("w"), id=lambda: 7)))  # type: ignore[arg-type,return-value]
    with pytest.raises(
        pf.DefinitionError, match=f"^the id of Go 'worker' {WHERE} returned 7, not a non-empty str"
    ):
        await run(wf)


@pytest.mark.anyio
async def test_a_go_whose_thread_id_is_taken_names_the_go_the_thread_and_the_instance() -> None:
    wf = Flow(
        lambda f: pf.S(
            pf.Go("first", f.step("a"), id=lambda: "same"),
            pf.Go("second", f.step("b"), id=lambda: "same"),
        )
    )
    with pytest.raises(pf.DefinitionError, match=f"^Go 'second' {WHERE} would start thread 'same', but "):
        await run(wf)


@pytest.mark.anyio
async def test_a_statement_that_refuses_its_arguments_in_definition_names_the_workflow_class() -> None:
    wf = Flow(lambda f: pf.S(pf.Step("charge", None)))  # type: ignore[arg-type]
    with pytest.raises(pf.DefinitionError) as caught:
        await run(wf)
    assert str(caught.value) == "Flow.definition(): Step 'charge': action must be callable, got None"


@pytest.mark.anyio
async def test_an_invalid_tree_names_the_workflow_class() -> None:
    wf = Flow(lambda f: pf.S(f.step("a"), f.step("a")))
    with pytest.raises(
        pf.DefinitionError, match=r"^Flow\.definition\(\): invalid definition: duplicate name 'a'"
    ):
        await run(wf)


@pytest.mark.anyio
async def test_a_state_that_is_no_state_says_how_to_load_one() -> None:
    wf = Flow(lambda f: pf.S(f.step("a")))
    with pytest.raises(TypeError, match=r"got dict; load a stored one with State\.model_validate_json"):
        await pf.resume(wf, wf.state.model_dump(), lambda kind: None)  # type: ignore[arg-type]


# -- handle_callback ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_stale_callback_names_the_thread_parked_on_the_event_and_its_pc() -> None:
    wf = Flow(lambda f: pf.S(parked_on("approve")))
    await run(wf)
    parked_pc = wf.state.threads[0].wait_events[0].req.pc
    with pytest.raises(pf.StaleCallback) as caught:
        await pf.handle_callback(pf.CallbackRequest(name="approve", pc=99), wf, wf.state, None)
    assert str(caught.value).startswith(
        "event 'approve' carries pc 99, but thread '_main_' of 'flow' 'flow-1' is parked on it "
        f"at pc {parked_pc}; "
    )


@pytest.mark.anyio
async def test_callback_not_found_lists_the_events_that_are_parked() -> None:
    wf = Flow(lambda f: pf.S(parked_on("approve")))
    await run(wf)
    with pytest.raises(
        pf.CallbackNotFound, match=r"on event 'aprove' \(parked events: 'approve', 'deny'\); "
    ):
        await deliver(wf, "aprove")


@pytest.mark.anyio
async def test_callback_not_found_says_when_no_event_is_parked_and_which_conditions_are_waited_for() -> None:
    wf = Flow(lambda f: pf.S(pf.WaitFor("never", lambda: False)))
    await run(wf)
    with pytest.raises(
        pf.CallbackNotFound,
        match=r"on event 'approve' \(no event is parked; threads wait for conditions: 'never'\); ",
    ):
        await deliver(wf, "approve")


@pytest.mark.anyio
async def test_callback_not_found_for_a_thread_parked_on_nothing_names_what_other_threads_are_parked_on() -> (
    None
):
    wf = Flow(lambda f: pf.S(parked_on("approve")))
    await run(wf)
    with pytest.raises(
        pf.CallbackNotFound,
        match=r"thread 'helper' of 'flow' 'flow-1' is not parked on event 'approve' \(it is parked on no "
        r"event; other threads are: 'approve' in thread '_main_', 'deny' in thread '_main_'\)",
    ):
        await pf.handle_callback(pf.CallbackRequest(name="approve", thread_id="helper"), wf, wf.state, None)


@pytest.mark.anyio
async def test_a_bad_event_function_met_at_delivery_names_the_event_the_thread_and_the_instance() -> None:
    # The tree keeps its shape when its function changes, so only the delivery can tell.
    wf = Flow(
        lambda f: pf.S(pf.Wait("decision", pf.OnEvent("approve", two_arguments if f.flag else one_argument)))
    )
    await run(wf)
    wf.flag = True
    with pytest.raises(pf.DefinitionError) as caught:
        await deliver(wf, "approve", 1)
    assert str(caught.value) == (
        f"event 'approve' {WHERE}: function 'two_arguments' takes 2 arguments; "
        "it must take one, the payload (or none)"
    )


# -- statements and validate ----------------------------------------------------------------


def test_an_event_function_of_two_arguments_is_refused_by_validate() -> None:
    tree = pf.S(pf.Wait("decision", pf.OnEvent("approve", two_arguments)))
    with pytest.raises(
        pf.DefinitionError, match=r"^invalid definition: OnEvent 'approve': function 'two_arguments' takes 2"
    ):
        pf.validate(tree)


def keyword_only(*, n: int) -> None:
    pass


def test_an_event_function_with_a_keyword_only_parameter_without_default_is_refused_by_validate() -> None:
    tree = pf.S(pf.Wait("decision", pf.OnEvent("approve", keyword_only)))
    with pytest.raises(
        pf.DefinitionError,
        match=r"^invalid definition: OnEvent 'approve': function 'keyword_only' has keyword-only "
        r"parameters without a default \(n\); the payload is passed positionally",
    ):
        pf.validate(tree)


def test_an_event_function_whose_payload_type_pydantic_cannot_validate_is_refused_by_validate() -> None:
    tree = pf.S(pf.Wait("decision", pf.OnEvent("approve", takes_a_type_pydantic_cannot_validate)))
    with pytest.raises(
        pf.DefinitionError, match="pydantic cannot validate its payload or reply type"
    ) as caught:
        pf.validate(tree)
    assert "\n" not in str(caught.value)


def test_a_duplicate_name_names_both_statements() -> None:
    tree = pf.S(pf.Step("x", fail), pf.Wait("x", pf.On("e", Listening())))
    with pytest.raises(pf.DefinitionError, match="duplicate name 'x', of Step 'x' and of Wait 'x'; "):
        pf.validate(tree)


def test_a_break_in_a_go_inside_a_for_says_the_for_belongs_to_another_thread() -> None:
    tree = pf.S(pf.For("l", True, pf.Go("g", pf.S(pf.If(True, "c", pf.Break())))))
    with pytest.raises(
        pf.DefinitionError, match="Break\\(\\) in Case 'c' is outside a For loop of its own thread"
    ):
        pf.validate(tree)


def test_a_break_outside_any_for_does_not_speak_of_threads_whatever_its_case_is_named() -> None:
    tree = pf.S(pf.If(True, "Go home", pf.Break()))
    with pytest.raises(pf.DefinitionError) as caught:
        pf.validate(tree)
    assert str(caught.value) == "invalid definition: Break() in Case 'Go home' is outside a For loop"


class Unrunnable(pf.Stmt):
    """A statement of no class the interpreter runs."""

    name = "mine"


def test_a_statement_the_interpreter_cannot_run_is_refused_by_validate() -> None:
    with pytest.raises(pf.DefinitionError) as caught:
        pf.validate(pf.S(Unrunnable()))
    assert str(caught.value).startswith(
        "invalid definition: Unrunnable('mine') in a Section is not a statement procflow can run; "
        "derive custom statements"
    )


def test_a_subclass_of_a_procflow_statement_is_valid() -> None:
    class LoggedStep(pf.Step):
        pass

    pf.validate(pf.S(LoggedStep("a", fail)))


def test_a_list_among_statements_says_to_unpack_it() -> None:
    steps: Any = [pf.Step("b", fail)]
    with pytest.raises(
        pf.DefinitionError, match=r"^a Section holds \[Step\('b'\)\], .* unpack .*S\(\*stmts\)"
    ):
        pf.validate(pf.S(pf.Step("a", fail), steps))


def test_a_section_of_one_statement_says_how_to_write_it() -> None:
    with pytest.raises(pf.DefinitionError, match=r"write S\(stmt, ...\) or Section\(\[stmt, ...\]\)"):
        pf.Section(pf.Step("a", fail))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "signature"),
    [
        (lambda: pf.If("big?", lambda: True), "If(cond, name, *stmts)"),  # type: ignore[arg-type]
        (lambda: pf.For(True, "loop"), "For(name, cond, *stmts)"),  # type: ignore[arg-type]
    ],
    ids=["If", "For"],
)
def test_arguments_in_the_wrong_order_show_how_the_statement_is_written(build: Any, signature: str) -> None:
    with pytest.raises(pf.DefinitionError) as caught:
        build()
    assert f"(it is written {signature}" in str(caught.value)


def test_on_event_checks_its_name_before_its_function() -> None:
    with pytest.raises(pf.DefinitionError, match=r"^OnEvent needs a non-empty str name, got 3"):
        pf.OnEvent(3, None)  # type: ignore[arg-type]


def test_on_event_max_attempts_must_be_an_int() -> None:
    with pytest.raises(pf.DefinitionError, match="max_attempts must be an int of at least 1, got '3'"):
        pf.OnEvent("approve", one_argument, max_attempts="3")  # type: ignore[arg-type]


# -- export and WaitGroup ---------------------------------------------------------------------


def test_a_highlight_that_is_no_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="highlight must map statement names to class names, got list"):
        pf.to_mermaid(pf.S(pf.Step("a", fail)), highlight=["a"])  # type: ignore[arg-type]


def test_a_highlight_class_that_is_no_identifier_names_its_statement() -> None:
    with pytest.raises(pf.ProcflowError, match=r"highlight\['a'\] = 'my class' is not a class name"):
        pf.to_mermaid(pf.S(pf.Step("a", fail)), highlight={"a": "my class"})


def test_a_waitgroup_done_below_zero_says_add_comes_first() -> None:
    with pytest.raises(
        ValueError, match=r"below zero \(0 - 1\): done\(\) was called more often than add\(\)"
    ):
        pf.WaitGroup().done()


@pytest.mark.parametrize(
    "error",
    [
        pf.StepError("charge", "_main_", ValueError("declined"), instance="'order' 'o-1'"),
        pf.SetupError({("_main_", "paid"): "ConnectionError: down"}, instance="'order' 'o-1'"),
        pf.PayloadError("invalid payload", [{"loc": ["amount"], "msg": "missing"}]),
        pf.HandlerError("the handler raised", event="paid", thread_id="_main_"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_with_their_message_and_attributes(error: pf.ProcflowError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
