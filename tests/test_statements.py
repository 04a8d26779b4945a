"""The statement tree: building it, ``validate``, ``walk``, and definition errors.

Includes how a stored instance finds its place in a new version of its
definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flow_helpers import Flow, RecordingHandler, run

import procflow as pf


def noop() -> None:
    return None


def describe(stmt: pf.Stmt) -> str:
    """``Type`` or ``Type:name``, for comparing visit orders."""
    return f"{type(stmt).__name__}:{stmt.name}" if stmt.name else type(stmt).__name__


def visit_all(stmt: pf.Stmt) -> list[str]:
    seen: list[str] = []
    pf.walk(stmt, lambda s: seen.append(describe(s)))
    return seen


# -- building a tree -----------------------------------------------------------


def test_s_and_section_hold_the_same_statements_in_order() -> None:
    a, b = pf.Step("a", noop), pf.Step("b", noop)

    assert visit_all(pf.S(a, b)) == visit_all(pf.Section([a, b])) == ["Section", "Step:a", "Step:b"]


@pytest.mark.parametrize("stmts", [None, 5], ids=["None", "int"])
def test_a_section_of_something_that_is_not_a_sequence_is_a_definition_error(stmts: Any) -> None:
    with pytest.raises(pf.DefinitionError, match=r"^Section takes a sequence of statements, got "):
        pf.Section(stmts)


def test_if_elif_else_builds_a_switch_of_cases_ending_with_a_default() -> None:
    tree = pf.If(True, "small", pf.Step("s", noop)).elif_(False, "medium").else_("large", pf.Step("l", noop))

    assert isinstance(tree, pf.Switch)
    assert visit_all(tree) == ["Switch", "Case:small", "Step:s", "Case:medium", "Default:large", "Step:l"]


def test_a_switch_is_built_from_case_and_default() -> None:
    tree = pf.Switch(pf.Case(lambda: True, "one"), pf.Default("other"))

    assert visit_all(tree) == ["Switch", "Case:one", "Default:other"]


def test_a_switch_rejects_a_statement_that_is_not_a_case() -> None:
    with pytest.raises(pf.DefinitionError, match="Case"):
        pf.Switch(pf.Step("a", noop))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: pf.If(True, "a").else_("b").elif_(True, "c"),
        lambda: pf.If(True, "a").else_("b").else_("c"),
        lambda: pf.Switch(pf.Default("b"), pf.Case(True, "c")),
    ],
    ids=["elif-after-else", "else-after-else", "case-after-default"],
)
def test_a_case_after_the_default_is_a_definition_error_naming_both(build: Callable[[], pf.Switch]) -> None:
    with pytest.raises(pf.DefinitionError, match="'c' comes after Default 'b'"):
        build()


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: pf.Step("", noop), id="Step"),
        pytest.param(lambda: pf.If(True, ""), id="If"),
        pytest.param(lambda: pf.For("", True), id="For"),
        pytest.param(lambda: pf.Go("", pf.S()), id="Go"),
        pytest.param(lambda: pf.Wait("", pf.On("e", pf.Handler())), id="Wait"),
        pytest.param(lambda: pf.On("", pf.Handler()), id="On"),
        pytest.param(lambda: pf.WaitFor("", True), id="WaitFor"),
    ],
)
def test_a_named_statement_with_an_empty_name_is_a_definition_error(build: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="name"):
        build()


def test_a_step_whose_action_is_not_callable_is_a_definition_error_naming_it() -> None:
    with pytest.raises(pf.DefinitionError, match="'charge'"):
        pf.Step("charge", "charge the card")  # type: ignore[arg-type]


def test_a_step_whose_retry_is_not_a_retry_policy_is_a_definition_error_naming_it() -> None:
    with pytest.raises(pf.DefinitionError, match=r"'charge'.*Retry\(max_attempts=3\)"):
        pf.Step("charge", lambda: None, retry=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: pf.If("yes", "branch"), id="If"),
        pytest.param(lambda: pf.For("branch", [1]), id="For"),
        pytest.param(lambda: pf.WaitFor("branch", None), id="WaitFor"),
    ],
)
def test_a_condition_that_is_neither_a_bool_nor_a_callable_is_a_definition_error(build: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="'branch'"):
        build()


def test_a_wait_needs_at_least_one_event() -> None:
    with pytest.raises(pf.DefinitionError, match="'decision'"):
        pf.Wait("decision")


def test_an_event_needs_a_handler_instance() -> None:
    with pytest.raises(pf.DefinitionError, match="'approve'"):
        pf.On("approve", RecordingHandler)  # type: ignore[arg-type]


# -- validate: unique names ----------------------------------------------------


def h() -> pf.Handler:
    return pf.Handler()


@pytest.mark.parametrize(
    "tree",
    [
        pytest.param(lambda: pf.S(pf.Step("dup", noop), pf.Step("dup", noop)), id="Step"),
        pytest.param(
            lambda: pf.S(pf.Wait("dup", pf.On("a", h())), pf.Wait("dup", pf.On("b", h()))), id="Wait"
        ),
        pytest.param(lambda: pf.S(pf.Wait("w", pf.On("dup", h()), pf.On("dup", h()))), id="event"),
        pytest.param(lambda: pf.S(pf.WaitFor("dup", True), pf.WaitFor("dup", True)), id="WaitFor"),
        pytest.param(lambda: pf.S(pf.Go("dup", pf.S()), pf.Go("dup", pf.S())), id="Go"),
        pytest.param(lambda: pf.S(pf.Step("dup", noop), pf.Wait("dup", pf.On("e", h()))), id="Step-and-Wait"),
        pytest.param(lambda: pf.S(pf.Go("dup", pf.S(pf.Step("dup", noop)))), id="Go-and-its-own-Step"),
        pytest.param(
            lambda: pf.If(True, "yes", pf.Step("dup", noop)).else_("no", pf.Step("dup", noop)),
            id="in-different-branches",
        ),
        pytest.param(
            lambda: pf.S(pf.Step("dup", noop), pf.Wait("w", pf.On("e", h(), pf.Step("dup", noop)))),
            id="inside-an-event",
        ),
    ],
)
def test_a_duplicate_position_name_is_a_definition_error_naming_it(tree: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="'dup'"):
        pf.validate(tree())


def test_case_and_for_names_may_repeat_position_names() -> None:
    # Only Step, Wait, event, WaitFor and Go names are positions a thread can be at.
    pf.validate(pf.S(pf.For("work", False, pf.Step("a", noop)), pf.If(True, "work", pf.Step("work", noop))))


def test_a_valid_tree_passes_validate() -> None:
    tree = pf.S(
        pf.Step("reserve", noop),
        pf.Go("reminder", pf.S(pf.WaitFor("due", False), pf.Step("remind", noop))),
        pf.For("retry", True, pf.Wait("decision", pf.On("approve", h(), pf.Break()), pf.On("later", h()))),
        pf.If(True, "approved?", pf.Step("ship", noop)).else_("rejected", pf.Return()),
    )

    assert pf.validate(tree) is None


# -- validate: Break and Continue ----------------------------------------------


@pytest.mark.parametrize("jump", [pf.Break, pf.Continue])
def test_a_jump_outside_a_for_is_a_definition_error(jump: type[pf.Stmt]) -> None:
    with pytest.raises(pf.DefinitionError, match=jump.__name__):
        pf.validate(pf.S(pf.Step("a", noop), jump()))


@pytest.mark.parametrize("jump", [pf.Break, pf.Continue])
def test_a_jump_after_a_for_is_a_definition_error(jump: type[pf.Stmt]) -> None:
    with pytest.raises(pf.DefinitionError, match=jump.__name__):
        pf.validate(pf.S(pf.For("loop", False, pf.Step("a", noop)), jump()))


@pytest.mark.parametrize("jump", [pf.Break, pf.Continue])
def test_a_jump_nested_in_switch_and_event_inside_a_for_is_valid(jump: type[pf.Stmt]) -> None:
    pf.validate(pf.For("loop", True, pf.Wait("w", pf.On("e", h(), pf.If(lambda: True, "stop?", jump())))))


@pytest.mark.parametrize("jump", [pf.Break, pf.Continue])
def test_a_jump_in_a_go_body_does_not_reach_a_for_around_the_go(jump: type[pf.Stmt]) -> None:
    tree = pf.For("loop", True, pf.Step("a", noop), pf.Go("worker", pf.S(pf.Step("b", noop), jump())))

    with pytest.raises(pf.DefinitionError, match=jump.__name__):
        pf.validate(tree)


def test_a_jump_in_a_for_of_its_own_inside_a_go_inside_a_for_is_valid() -> None:
    pf.validate(
        pf.For(
            "outer",
            True,
            pf.Step("a", noop),
            pf.Go("worker", pf.For("inner", True, pf.Step("b", noop), pf.Break())),
        )
    )


@pytest.mark.parametrize(
    ("tree", "holder"),
    [
        pytest.param(
            lambda: pf.S(pf.Step("a", noop), pf.If(True, "stop?", pf.Break())), "'stop?'", id="in-If"
        ),
        pytest.param(
            lambda: pf.For("loop", True, pf.Step("a", noop), pf.Go("worker", pf.S(pf.Continue()))),
            "'worker'",
            id="in-Go",
        ),
    ],
)
def test_a_jump_outside_a_for_is_a_definition_error_naming_the_statement_that_holds_it(
    tree: Any, holder: str
) -> None:
    with pytest.raises(pf.DefinitionError) as error:
        pf.validate(tree())

    assert holder in str(error.value)


def test_an_event_outside_a_wait_is_a_definition_error_naming_it() -> None:
    with pytest.raises(pf.DefinitionError, match="'approve'"):
        pf.validate(pf.S(pf.On("approve", h())))


def test_a_case_outside_a_switch_is_a_definition_error_naming_it() -> None:
    with pytest.raises(pf.DefinitionError, match="'big'"):
        pf.validate(pf.S(pf.Case(True, "big", pf.Step("a", noop))))


# -- validate: statements only -------------------------------------------------


@pytest.mark.parametrize(
    "tree",
    [
        pytest.param(lambda: pf.S(pf.Step("a", noop), "oops"), id="in-S"),
        pytest.param(lambda: pf.Section([pf.Step("a", noop), "oops"]), id="in-Section"),
        pytest.param(lambda: pf.If(True, "branch", "oops"), id="in-Case"),
        pytest.param(lambda: pf.For("loop", True, "oops"), id="in-For"),
        pytest.param(lambda: pf.Go("worker", "oops"), id="as-Go-body"),
        pytest.param(lambda: pf.Wait("w", pf.On("e", h(), "oops")), id="in-event"),
        pytest.param(lambda: pf.S(pf.S(pf.S("oops"))), id="deep"),
    ],
)
def test_a_child_that_is_not_a_statement_is_a_definition_error_showing_it(tree: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="'oops'"):
        pf.validate(tree())


def test_a_root_that_is_not_a_statement_is_a_definition_error() -> None:
    with pytest.raises(pf.DefinitionError, match="statement"):
        pf.validate([pf.Step("a", noop)])  # type: ignore[arg-type]


# -- resume and handle_callback validate first -----------------------------------


@dataclass
class DuplicateSteps:
    state: pf.State = field(default_factory=lambda: pf.State.new("dup-1", "duplicate steps"))
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("first", lambda: self.log.append("first")), pf.Step("first", noop))


@pytest.mark.anyio
async def test_resume_validates_before_running_any_step() -> None:
    wf = DuplicateSteps()
    before = wf.state.model_dump()

    with pytest.raises(pf.DefinitionError, match="'first'"):
        await run(wf)

    assert wf.log == []
    assert wf.state.model_dump() == before


@dataclass
class ItemSteps:
    """A definition whose shape depends on the data: one step per item."""

    items: list[str]
    state: pf.State = field(default_factory=lambda: pf.State.new("items", "item steps"))
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            *[pf.Step(f"ship {item}", lambda item=item: self.log.append(item)) for item in self.items]
        )


@pytest.mark.anyio
async def test_resume_validates_each_instance_even_after_another_of_its_class_ran() -> None:
    await run(ItemSteps(["pen", "ink"]))
    wf = ItemSteps(["pen", "pen"])

    with pytest.raises(pf.DefinitionError, match="'ship pen'"):
        await run(wf)

    assert wf.log == []


@dataclass
class Parked:
    """Version 1: parks on a Wait."""

    calls: list[tuple[object, ...]] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("parked-1", "parked"))

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("decision", pf.On("approve", RecordingHandler(self.calls))))


@dataclass
class ParkedWithDuplicate(Parked):
    """Version 2: the same Wait, plus a duplicate name elsewhere."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("decision", pf.On("approve", RecordingHandler(self.calls))),
            pf.Step("twice", noop),
            pf.Step("twice", noop),
        )


@pytest.mark.anyio
async def test_handle_callback_validates_before_running_the_handler() -> None:
    old = Parked()
    await run(old)
    new = ParkedWithDuplicate(calls=old.calls, state=old.state)
    before = new.state.model_dump()

    with pytest.raises(pf.DefinitionError, match="'twice'"):
        await pf.handle_callback(pf.CallbackRequest(name="approve"), new, new.state, None)

    assert ("handle", pf.MAIN_THREAD, "approve") not in new.calls
    assert new.state.model_dump() == before


@pytest.mark.anyio
async def test_a_duplicate_name_in_a_section_that_was_empty_is_a_definition_error() -> None:
    class Grows(Flow):  # a class of its own: the interpreter remembers tree shapes per class
        pass

    def tree(f: Flow) -> pf.Stmt:
        later = pf.S(f.step("a")) if f.flag else pf.S()
        return pf.S(f.step("a"), pf.WaitFor("gate", lambda: f.flag), later)

    wf = Grows(tree)
    await run(wf)
    wf.flag = True

    with pytest.raises(pf.DefinitionError, match="duplicate name 'a'"):
        await run(wf)
    assert wf.log == ["a"]


# -- walk ------------------------------------------------------------------------


def sample_tree() -> pf.Section:
    return pf.S(
        pf.Step("a", noop),
        pf.If(True, "yes", pf.Step("b", noop)).else_("no", pf.Return()),
        pf.For("loop", True, pf.Wait("w", pf.On("e", h(), pf.Break())), pf.Continue()),
        pf.Go("worker", pf.S(pf.WaitFor("ready", True))),
        pf.Step("z", noop),
    )


def test_walk_visits_every_statement_depth_first_in_order() -> None:
    assert visit_all(sample_tree()) == [
        "Section",
        "Step:a",
        "Switch",
        "Case:yes",
        "Step:b",
        "Default:no",
        "Return",
        "For:loop",
        "Wait:w",
        "On:e",
        "Break",
        "Continue",
        "Go:worker",
        "Section",
        "WaitFor:ready",
        "Step:z",
    ]


def test_walk_returns_false_when_fn_never_returns_true() -> None:
    assert pf.walk(sample_tree(), lambda s: False) is False


def test_walk_stops_at_the_first_statement_for_which_fn_returns_true() -> None:
    seen: list[str] = []

    def fn(stmt: pf.Stmt) -> bool:
        seen.append(describe(stmt))
        return isinstance(stmt, pf.Wait)

    assert pf.walk(sample_tree(), fn) is True
    assert seen[-1] == "Wait:w"
    assert "On:e" not in seen
    assert "Step:z" not in seen


def test_walk_raises_definition_error_on_a_child_that_is_not_a_statement() -> None:
    tree = pf.S(pf.Step("a", noop), "b")  # type: ignore[arg-type]
    with pytest.raises(pf.DefinitionError, match="'b', which is not a statement"):
        pf.walk(tree, lambda s: False)


def test_walk_visits_a_single_statement() -> None:
    assert visit_all(pf.Step("only", noop)) == ["Step:only"]


# -- a new version of a definition -----------------------------------------------


@pytest.mark.anyio
async def test_a_step_that_changes_the_tree_in_front_of_itself_is_found_by_name_in_the_same_resume() -> None:
    def tree(f: Flow) -> pf.Stmt:
        inserted = [f.step("inserted")] if "a" in f.log else []
        return pf.S(*inserted, f.step("a"), f.step("b"))

    wf = Flow(tree)
    await run(wf)

    assert wf.log == ["a", "b"]


@dataclass
class Gated:
    """Version 1: ``before``, park at the WaitFor ``gate``, then ``after``."""

    state: pf.State = field(default_factory=lambda: pf.State.new("gated-1", "gated"))
    log: list[str] = field(default_factory=list)
    open: bool = False

    def step(self, name: str) -> pf.Step:
        return pf.Step(name, lambda: self.log.append(name))

    def definition(self) -> pf.Stmt:
        return pf.S(self.step("before"), pf.WaitFor("gate", lambda: self.open), self.step("after"))


@dataclass
class GatedWithMoreSteps(Gated):
    """Version 2: steps added before and after the gate."""

    def definition(self) -> pf.Stmt:
        return pf.S(
            self.step("new first"),
            self.step("before"),
            pf.WaitFor("gate", lambda: self.open),
            self.step("new middle"),
            self.step("after"),
            self.step("new last"),
        )


@dataclass
class GatedWithoutBefore(Gated):
    """Version 2: the step before the gate removed, the gate moved into a loop."""

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.For(
                "rounds", lambda: len(self.log) < 3, pf.WaitFor("gate", lambda: self.open), self.step("after")
            ),
        )


@dataclass
class GatedReordered(Gated):
    """Version 2: statements reordered around the gate, which now sits in a branch."""

    def definition(self) -> pf.Stmt:
        return pf.S(
            self.step("after"),
            pf.If(
                True, "gated?", self.step("inside"), pf.WaitFor("gate", lambda: self.open), self.step("then")
            ),
            self.step("before"),
        )


@dataclass
class GatedWithoutGate(Gated):
    """Version 2: the gate is gone."""

    def definition(self) -> pf.Stmt:
        return pf.S(self.step("before"), self.step("after"))


@dataclass
class GatedWithGateAsStep(Gated):
    """Version 2: ``gate`` is now the name of a Step."""

    def definition(self) -> pf.Stmt:
        return pf.S(self.step("before"), self.step("gate"), self.step("after"))


async def parked_at_gate() -> Gated:
    wf = Gated()
    await run(wf)
    assert [t.cur_step for t in wf.state.threads] == ["gate"]
    return wf


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("version", "log"),
    [
        pytest.param(GatedWithMoreSteps, ["before", "new middle", "after", "new last"], id="added"),
        pytest.param(GatedWithoutBefore, ["before", "after", "after"], id="removed-and-moved-into-a-loop"),
        pytest.param(GatedReordered, ["before", "then", "before"], id="reordered-into-a-branch"),
    ],
)
async def test_a_new_version_continues_after_the_name_the_thread_is_parked_at(
    version: type[Gated], log: list[str]
) -> None:
    old = await parked_at_gate()
    new = version(state=old.state, log=old.log, open=True)

    await run(new)

    assert new.log == log
    assert new.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_a_new_version_without_the_parked_name_is_a_definition_error_naming_it_and_the_thread() -> None:
    old = await parked_at_gate()
    new = GatedWithoutGate(state=old.state, log=old.log, open=True)
    before = new.state.model_dump()

    with pytest.raises(pf.DefinitionError, match="'gate'") as error:
        await run(new)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert new.log == ["before"]
    assert new.state.model_dump() == before


@pytest.mark.anyio
async def test_a_new_version_where_the_parked_name_is_another_kind_of_statement_is_a_definition_error() -> (
    None
):
    old = await parked_at_gate()
    new = GatedWithGateAsStep(state=old.state, log=old.log, open=True)

    with pytest.raises(pf.DefinitionError, match="'gate'"):
        await run(new)

    assert new.log == ["before"]


@dataclass
class Decision:
    """Version 1: parks on the Wait ``decision`` with events ``approve`` and ``deny``."""

    calls: list[tuple[object, ...]] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("decision-1", "decision"))

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("decision", pf.On("approve", RecordingHandler(self.calls)), pf.On("deny", pf.Handler())),
        )


@dataclass
class DecisionWithoutWait(Decision):
    def definition(self) -> pf.Section:
        return pf.S(pf.Step("decide", noop))


@dataclass
class DecisionWithoutDeny(Decision):
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("decision", pf.On("approve", RecordingHandler(self.calls))))


async def parked_by_version_1(version: type[Decision]) -> Decision:
    """An instance parked on ``decision`` by version 1, with ``version`` as its definition now."""
    old = Decision()
    await run(old)
    return version(calls=old.calls, state=old.state)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("version", "missing"),
    [
        pytest.param(DecisionWithoutWait, "'decision'", id="Wait-removed"),
        pytest.param(DecisionWithoutDeny, "'deny'", id="event-removed"),
    ],
)
async def test_a_new_version_without_the_wait_or_event_a_thread_is_parked_on_is_a_definition_error(
    version: type[Decision], missing: str
) -> None:
    new = await parked_by_version_1(version)
    before = new.state.model_dump()

    with pytest.raises(pf.DefinitionError, match=missing) as error:
        await run(new)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert new.state.model_dump() == before


@dataclass
class DecisionInAnIf(Decision):
    """The Wait and its events kept, at another place in the tree."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("audit", noop),
            pf.If(
                True,
                "checked",
                pf.Wait(
                    "decision", pf.On("deny", pf.Handler()), pf.On("approve", RecordingHandler(self.calls))
                ),
            ),
        )


@dataclass
class DecisionRenamed(Decision):
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("verdict", pf.On("approve", RecordingHandler(self.calls)), pf.On("deny", pf.Handler()))
        )


@pytest.mark.anyio
async def test_a_callback_reaches_its_event_in_a_new_version_that_moved_the_wait() -> None:
    new = await parked_by_version_1(DecisionInAnIf)

    reply = await pf.handle_callback(pf.CallbackRequest(name="approve"), new, new.state, "yes")

    assert reply == "yes"
    assert new.calls[-1] == ("handle", pf.MAIN_THREAD, "approve")
    assert new.state.threads[0].cur_callback == "approve"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("version", "event", "missing"),
    [
        pytest.param(DecisionRenamed, "approve", "'decision'", id="Wait-renamed"),
        pytest.param(DecisionWithoutDeny, "deny", "'deny'", id="event-removed"),
        pytest.param(DecisionWithoutWait, "approve", "'decision'", id="Wait-removed"),
    ],
)
async def test_a_callback_to_a_new_version_without_its_wait_or_event_is_a_definition_error(
    version: type[Decision], event: str, missing: str
) -> None:
    new = await parked_by_version_1(version)
    before = new.state.model_dump()

    with pytest.raises(pf.DefinitionError, match=missing) as error:
        await pf.handle_callback(pf.CallbackRequest(name=event), new, new.state, None)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert new.state.model_dump() == before
    assert not [call for call in new.calls if call[0] == "handle"]


@dataclass
class Review:
    """Version 1: parks on the Wait ``review``; its event ``approve`` runs the step ``ship``."""

    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("review-1", "review"))

    def record(self, name: str) -> pf.Step:
        return pf.Step(name, lambda: self.log.append(name))

    def approve(self, payload: str) -> None:
        self.log.append(f"approved by {payload}")

    def definition(self) -> pf.Stmt:
        return pf.S(pf.Wait("review", pf.OnEvent("approve", self.approve, self.record("ship"))))


@dataclass
class ReviewInAnIf(Review):
    """The Wait and its event kept, at another place in the tree."""

    def definition(self) -> pf.Stmt:
        wait = pf.Wait("review", pf.OnEvent("approve", self.approve, self.record("ship")))
        return pf.S(self.record("audit"), pf.If(True, "checked", wait))


@dataclass
class ReviewWithApproveInAnotherWait(Review):
    """``approve`` moved out of the Wait ``review`` into another one."""

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Wait("review", pf.OnEvent("reject", self.approve)),
            pf.Wait("second look", pf.OnEvent("approve", self.approve, self.record("ship"))),
        )


async def approved_by_version_1(version: type[Review]) -> Review:
    """An instance whose ``approve`` version 1 delivered, with ``version`` as its definition now."""
    old = Review()
    await run(old)
    await pf.handle_callback(pf.CallbackRequest(name="approve"), old, old.state, "ann")
    return version(log=old.log, state=old.state)


@pytest.mark.anyio
async def test_a_thread_resumed_inside_an_event_runs_its_statements_where_a_new_version_moved_it() -> None:
    new = await approved_by_version_1(ReviewInAnIf)

    await run(new)

    assert new.log == ["approved by ann", "ship"]
    assert new.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.anyio
async def test_a_thread_resumed_inside_an_event_that_left_its_wait_is_a_definition_error() -> None:
    new = await approved_by_version_1(ReviewWithApproveInAnotherWait)
    checkpointed: list[dict[str, Any]] = []

    def checkpoint(kind: pf.CheckpointType) -> None:
        checkpointed.append(new.state.model_dump())

    with pytest.raises(pf.DefinitionError, match=r"'review'.*'approve'") as error:
        await pf.resume(new, new.state, checkpoint)

    assert repr(pf.MAIN_THREAD) in str(error.value)
    assert new.log == ["approved by ann"]
    assert new.state.model_dump() == checkpointed[-1]  # the event's teardown, and no further
    assert new.state.threads[0].cur_callback == "approve"


@pytest.mark.anyio
async def test_a_go_thread_finds_its_place_in_a_new_version_by_name() -> None:
    def v1(f: Flow) -> pf.Stmt:
        return pf.S(
            pf.Go("worker", pf.S(f.step("w1"), pf.WaitFor("resume work", lambda: f.flag), f.step("w2"))),
            pf.WaitFor("forever", False),
        )

    def v2(f: Flow) -> pf.Stmt:
        return pf.S(
            f.step("m0"),
            pf.WaitFor("forever", False),
            pf.If(
                True, "extra", pf.Go("worker", pf.S(pf.WaitFor("resume work", lambda: f.flag), f.step("w3")))
            ),
        )

    wf = Flow(v1)
    await run(wf)
    wf.tree, wf.flag = v2, True
    await run(wf)

    assert wf.log == ["w1", "w3"]
    assert [t.id for t in wf.state.threads] == [pf.MAIN_THREAD]


@pytest.mark.anyio
async def test_a_version_change_is_picked_up_at_the_next_step_of_a_running_thread() -> None:
    def tree(f: Flow) -> pf.Stmt:
        if f.flag:
            return pf.S(f.step("switch"), f.step("v2 next"))
        return pf.S(f.step("switch", then=f.set_flag), f.step("v1 next"))

    wf = Flow(tree)
    await run(wf)

    assert wf.log == ["switch", "v2 next"]
