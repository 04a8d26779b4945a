"""The replay property (issue #2): a run continued from any checkpoint ends like the uninterrupted run.

For every checkpoint ``k`` of a run of a random workflow (``random_workflows``),
the run crashes inside checkpoint ``k + 1``, so that whatever happened after
checkpoint ``k`` is lost from the store, and a fresh workflow and ``State``
built from the JSON of checkpoint ``k`` carry on with the same event choices.
Then:

* the world saw the same effects as in the uninterrupted run, except that the
  effect between checkpoint ``k`` and the crash happened twice: at most one
  step, handler, setup, WaitFor handler or compensation (teardowns may come
  in a batch: they are at least once anyway);
* the continued run stores the same snapshots as the uninterrupted run did
  after checkpoint ``k``, and ends with the same data and the same ``State``,
  ``pc`` counters aside. The data is restored from the store, so a step that
  ran twice is in its ``trace`` once: the trace must match exactly.

The tests after the property are the bugs it found, shrunk.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, PrivateAttr
from random_workflows import (
    MAX_DELIVERIES,
    CaseSpec,
    CondSpec,
    Crash,
    EventSpec,
    ForSpec,
    GoSpec,
    IfSpec,
    JumpSpec,
    Program,
    Snapshot,
    StepSpec,
    Store,
    WaitForSpec,
    WaitSpec,
    drive,
    new_workflow,
    programs,
    restore,
    without_pcs,
    workflow_class,
)

import procflow as pf


def comparable(snapshot: Snapshot) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A stored snapshot as a continued run must store it too: everything but the pcs."""
    return snapshot.kind, json.loads(snapshot.data), without_pcs(pf.State.model_validate_json(snapshot.state))


async def check_replay(program: Program, choices: list[int]) -> None:
    """Check the property for every checkpoint of one run of ``program``."""
    cls = workflow_class()
    wf, state = new_workflow(cls, program)
    reference = Store(wf, state)
    await drive(wf, state, reference, choices)
    effects = wf._effects
    final_data = wf.model_dump(mode="json")
    final_state = without_pcs(state)
    snapshots = reference.snapshots

    assert state.status in (pf.WorkflowStatus.FINISHED, pf.WorkflowStatus.CANCELLED)
    assert state.threads == []
    # Every effect but a teardown is checkpointed before the next one happens.
    gaps = [
        [e for e in effects[a.effects : b.effects] if not e.startswith("teardown")]
        for a, b in pairwise(snapshots)
    ]
    assert all(len(lost) <= 1 for lost in gaps), f"effects not checkpointed one by one: {gaps}"
    assert snapshots[-1].effects == len(effects), "effects after the last checkpoint"

    for k in range(len(snapshots) - 1):
        seen: list[str] = []
        wf, state = new_workflow(cls, program, seen)
        crashing = Store(wf, state, crash_at=k + 1)
        with pytest.raises(Crash):
            await drive(wf, state, crashing, choices)
        assert crashing.snapshots == snapshots[: k + 1], "the same program ran differently"

        stored = snapshots[k]
        lost = seen[stored.effects :]
        wf, state = restore(cls, stored, seen)
        continued = Store(wf, state)
        await drive(wf, state, continued, choices)

        where = f"continued from checkpoint {k} ({stored.kind}), crashed in {snapshots[k + 1].kind}"
        assert seen == effects[: stored.effects] + lost + effects[stored.effects :], where
        assert [comparable(s) for s in continued.snapshots[1:]] == [
            comparable(s) for s in snapshots[k + 1 :]
        ], where
        assert wf.model_dump(mode="json") == final_data, where
        assert without_pcs(state) == final_state, where


@settings(max_examples=500, deadline=None)
@given(programs(), st.lists(st.integers(0, 5), max_size=MAX_DELIVERIES))
def test_a_run_continued_from_any_checkpoint_ends_like_the_uninterrupted_run(
    program: Program, choices: list[int]
) -> None:
    anyio.run(check_replay, program, choices)


# Threads started in a loop wait for a custom or a typed event; main waits for
# one of them, then either returns or waits for an event of its own, and joins.
FAN_OUT = Program(
    body=[
        StepSpec(name="s1", compensate=True, asynchronous=True),
        ForSpec(
            name="L2",
            times=2,
            body=[
                GoSpec(
                    name="g3",
                    body=[
                        WaitSpec(
                            name="w4",
                            events=[
                                EventSpec(
                                    name="w4.e5", custom=True, body=[StepSpec(name="s6", compensate=True)]
                                ),
                                EventSpec(name="w4.e7"),
                            ],
                        )
                    ],
                ),
                JumpSpec(kind="continue", name="c8", cond=CondSpec(kind="odd", ref="L2.inc", lazy=False)),
                StepSpec(name="s9"),
            ],
        ),
        WaitForSpec(name="f10", ref="w4.e5", handler=True),
        IfSpec(
            name="c11",
            cases=[
                CaseSpec(
                    cond=CondSpec(kind="even", ref="s6"),
                    body=[JumpSpec(kind="return", name="r12", cond=CondSpec())],
                )
            ],
            default=[WaitSpec(name="w13", events=[EventSpec(name="w13.e14", custom=True)])],
        ),
        StepSpec(name="s15"),
    ],
    shifting=True,
    joining=True,
)


def test_a_fan_out_continued_from_any_checkpoint_ends_like_the_uninterrupted_run_under_trio() -> None:
    anyio.run(check_replay, FAN_OUT, [2, 2, 2], backend="trio")


# -- bugs the property found ---------------------------------------------------------


def nothing(kind: pf.CheckpointType) -> None:
    """A checkpoint that stores nothing."""


class Reshaped(BaseModel):
    """A workflow whose tree changes shape when its event arrives: ``book`` moves down."""

    rebooked: bool = False
    log: list[str] = []

    def definition(self) -> pf.Section:
        notify = [pf.Step("notify", lambda: self.log.append("notify"))] if self.rebooked else []
        return pf.S(
            *notify,
            pf.Step("book", lambda: self.log.append("book"), compensate=lambda: self.log.append("unbook")),
            pf.Wait("decision", pf.OnEvent("rebook", self.rebook)),
        )

    def rebook(self) -> None:
        self.rebooked = True


@pytest.mark.anyio
async def test_cancel_compensates_a_step_that_moved_since_the_tree_was_indexed() -> None:
    # Fixed in eb604c9: compensate() looked completed steps up by the path the
    # name had in the tree last indexed (cached per workflow class) and did not
    # index again when the shape had changed, so it raised DefinitionError.
    wf = Reshaped()
    state = pf.State.new("r-1", "reshaped")
    await pf.resume(wf, state, nothing)
    await pf.handle_callback(pf.CallbackRequest(name="rebook"), wf, state, None)

    await pf.cancel(wf, state, nothing, reason="changed our mind", compensate=True)

    assert wf.log == ["book", "unbook"]
    assert state.status == pf.WorkflowStatus.CANCELLED


class Kickoff(BaseModel):
    """Main waits until a worker was kicked; the worker then runs two steps."""

    kicked: bool = False
    log: list[str] = []

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go(
                "worker",
                pf.S(
                    pf.Wait("kicking", pf.OnEvent("kick", self.kick)),
                    pf.Step("a", lambda: self.log.append("a")),
                    pf.Step("b", lambda: self.log.append("b")),
                ),
            ),
            pf.WaitFor("kicked", lambda: self.kicked),
        )

    def kick(self) -> None:
        self.kicked = True


@pytest.mark.anyio
async def test_a_thread_woken_by_its_condition_runs_in_the_same_order_after_a_crash() -> None:
    # Was: a thread woken by its WaitFor ran after the threads already runnable
    # (an order kept only in memory), while a continued run took them in the
    # order of state.threads: main ran first and finished before "b" ran.
    # Fixed by scheduling in state.threads order, the running thread first.
    wf = Kickoff()
    state = pf.State.new("k-1", "kickoff")
    await pf.resume(wf, state, nothing)
    await pf.handle_callback(pf.CallbackRequest(name="kick"), wf, state, None)
    after_a: tuple[str, str] | None = None

    def save(kind: pf.CheckpointType) -> None:
        nonlocal after_a
        if wf.log == ["a"]:
            after_a = (wf.model_dump_json(), state.model_dump_json())

    await pf.resume(wf, state, save)
    assert wf.log == ["a", "b"]
    assert after_a is not None

    wf = Kickoff.model_validate_json(after_a[0])
    state = pf.State.model_validate_json(after_a[1])
    await pf.resume(wf, state, nothing)

    assert wf.log == ["a", "b"]
    assert state.status == pf.WorkflowStatus.FINISHED


class Listener(pf.Handler):
    """Records its teardowns in a list outside the workflow's data."""

    type = "listener"

    def __init__(self, torn_down: list[str]) -> None:
        self.torn_down = torn_down

    def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        self.torn_down.append(req.name)


class Background(BaseModel):
    """Main waits for "stop" while a listener thread waits for "ping" or "pong"; then main ends."""

    start_cleanup: bool = False
    _torn_down: list[str] = PrivateAttr(default_factory=list)

    def definition(self) -> pf.Section:
        listener = Listener(self._torn_down)
        cleanup = [pf.Go("cleanup", pf.Step("clean", lambda: None))] if self.start_cleanup else []
        return pf.S(
            pf.Go("listener", pf.Wait("listen", pf.On("ping", listener), pf.On("pong", listener))),
            pf.Wait("main", pf.OnEvent("stop", lambda: None)),
            *cleanup,
        )


async def finish_with_a_crash_after_the_first_teardown(wf: Background) -> tuple[Background, pf.State]:
    """Run ``wf`` until main ends; the process dies once a teardown of the finish ran,
    at the next checkpoint. Return fresh objects from what the store holds then."""
    state = pf.State.new("b-1", "background")
    await pf.resume(wf, state, nothing)
    await pf.handle_callback(pf.CallbackRequest(name="stop"), wf, state, None)
    stored = state.model_dump_json()

    def save(kind: pf.CheckpointType) -> None:
        nonlocal stored
        if "ping" in wf._torn_down:
            raise Crash("the process died before the write")
        stored = state.model_dump_json()

    with pytest.raises(Crash):
        await pf.resume(wf, state, save)
    assert "ping" in wf._torn_down
    fresh = Background.model_validate_json(wf.model_dump_json())
    fresh._torn_down = wf._torn_down
    return fresh, pf.State.model_validate_json(stored)


@pytest.mark.anyio
async def test_a_crash_among_the_teardowns_of_a_finishing_workflow_leaves_none_undone() -> None:
    # Fixed in eb604c9: finish() stored FINISHED before its teardowns, so a
    # crash among them left a FINISHED state that still had threads and an
    # event never torn down ("pong"), and resume refused to continue it. Now
    # nothing is stored between the main thread's end and the final checkpoint.
    wf, state = await finish_with_a_crash_after_the_first_teardown(Background())

    if state.status != pf.WorkflowStatus.FINISHED:
        await pf.resume(wf, state, nothing)

    assert state.status == pf.WorkflowStatus.FINISHED
    assert state.threads == []
    assert "pong" in wf._torn_down


@pytest.mark.anyio
async def test_a_crash_among_the_teardowns_after_main_started_a_thread_leaves_none_undone() -> None:
    # A state stored among the teardowns had main before its last Go and the
    # thread that Go started, so continuing ran the Go again (duplicate thread id).
    wf, state = await finish_with_a_crash_after_the_first_teardown(Background(start_cleanup=True))

    if state.status != pf.WorkflowStatus.FINISHED:
        await pf.resume(wf, state, nothing)

    assert state.status == pf.WorkflowStatus.FINISHED
    assert state.threads == []
    assert "pong" in wf._torn_down
