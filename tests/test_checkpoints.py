"""Checkpoints: their kinds, a failing checkpoint, the State models and their JSON,
and continuing from any checkpoint after a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from event_helpers import (
    RECORDER_CLASSES,
    AsyncRecordingHandler,
    CheckpointFailed,
    CheckpointRecorder,
    HandlerLog,
    RecordingHandler,
    TwoWaits,
    event,
    no_checkpoint,
    thread,
)
from pydantic import BaseModel

import procflow as pf

pytestmark = pytest.mark.anyio

K = pf.CheckpointType


@pytest.fixture(params=RECORDER_CLASSES, ids=["sync", "async"])
def recorder_class(request: pytest.FixtureRequest) -> type[CheckpointRecorder]:
    return request.param  # type: ignore[no-any-return]


@dataclass
class AllKinds:
    """Every kind of checkpoint in two resumes.

    First resume: main runs ``prepare`` and starts ``helper``, then parks on the
    WaitFor ``helped``; ``helper`` runs ``help``, which makes the condition true
    (its handler runs), and ends; main parks on the Wait ``decision`` (two setups).
    After ``approve``: two teardowns, ``ship``, and the workflow finishes.
    """

    handlers: HandlerLog = field(default_factory=HandlerLog)
    helped: bool = False
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("all-kinds-1", "all-kinds"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Step("prepare", lambda: self.log.append("prepare")),
            pf.Go("helper", pf.Step("help", self.help)),
            pf.WaitFor("helped", lambda: self.helped, lambda: self.log.append("helped")),
            pf.Wait(
                "decision",
                pf.On("approve", RecordingHandler(self.handlers)),
                pf.On("deny", AsyncRecordingHandler(self.handlers)),
            ),
            pf.Step("ship", lambda: self.log.append("ship")),
        )

    def help(self) -> None:
        self.helped = True
        self.log.append("help")

    async def resume(self, checkpoint: pf.Checkpoint = no_checkpoint) -> None:
        await pf.resume(self, self.state, checkpoint)

    async def approve(self) -> None:
        await pf.handle_callback(pf.CallbackRequest(name="approve"), self, self.state, None)


FIRST_RESUME = [K.AFTER_STEP, K.AFTER_STEP, K.AFTER_CONDITION, K.AFTER_SETUP, K.AFTER_SETUP]
SECOND_RESUME = [K.AFTER_TEARDOWN, K.AFTER_TEARDOWN, K.AFTER_STEP, K.AFTER_RESUME]


@dataclass
class Gate:
    """A step, then a WaitFor ``open`` that nothing makes true."""

    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("gate-1", "gate"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Step("arrive", lambda: self.log.append("arrive")),
            pf.WaitFor("open", lambda: False),
        )


# -- kinds -------------------------------------------------------------------------------


async def test_resume_checkpoints_after_each_change_of_state(
    recorder_class: type[CheckpointRecorder],
) -> None:
    wf = AllKinds()
    first = recorder_class(wf.state)
    await wf.resume(first)
    await wf.approve()
    second = recorder_class(wf.state)
    await wf.resume(second)
    assert (first.kinds, second.kinds) == (FIRST_RESUME, SECOND_RESUME)


async def test_a_completed_step_is_checkpointed_after_step_with_its_thread_past_it() -> None:
    wf = Gate()
    recorder = CheckpointRecorder(wf.state)
    await pf.resume(wf, wf.state, recorder)
    assert recorder.kinds[0] == K.AFTER_STEP
    assert thread(recorder.states[0]).cur_step == "arrive"


async def test_a_checkpoint_taken_while_a_thread_runs_shows_it_executing() -> None:
    wf = AllKinds()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    after_prepare = recorder.states[0]
    assert (thread(after_prepare).cur_step, thread(after_prepare).status) == (
        "prepare",
        pf.ThreadStatus.EXECUTING,
    )


async def test_a_condition_that_became_true_is_checkpointed_after_condition() -> None:
    wf = AllKinds()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    i = recorder.kinds.index(K.AFTER_CONDITION)
    after = recorder.states[i]
    assert thread(after).status != pf.ThreadStatus.WAITING_CONDITION
    assert thread(after).cur_step == "helped"
    assert wf.log == ["prepare", "help", "helped"]


async def test_each_setup_is_checkpointed_after_setup_with_the_event_set_up() -> None:
    wf = TwoWaits()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.kinds[-2:] == [K.AFTER_SETUP, K.AFTER_SETUP]
    first, second = recorder.states[-2:]
    assert event(first, "approve").status == pf.WaitEventStatus.SETUP
    assert event(first, "deny").status == pf.WaitEventStatus.PENDING_SETUP
    assert event(second, "deny").status == pf.WaitEventStatus.SETUP


async def test_a_failed_setup_is_checkpointed_after_setup_as_setup_error() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "deny")
    recorder = CheckpointRecorder(wf.state)
    with pytest.raises(pf.SetupError):
        await wf.resume(recorder)
    assert recorder.kinds[-1] == K.AFTER_SETUP
    assert event(recorder.states[-1], "deny").status == pf.WaitEventStatus.SETUP_ERROR


async def test_each_teardown_is_checkpointed_after_teardown_without_its_event() -> None:
    wf = TwoWaits()
    await wf.resume()
    await wf.send("approve")
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.kinds[:2] == [K.AFTER_TEARDOWN, K.AFTER_TEARDOWN]
    first, second = recorder.states[:2]
    assert [e.req.name for e in thread(first).wait_events] == ["deny"]
    assert [e.req.name for e in thread(second).wait_events] == []


async def test_a_failed_teardown_is_checkpointed_after_teardown_as_teardown_error() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("teardown", "deny")
    await wf.resume()
    await wf.send("approve")
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.kinds[1] == K.AFTER_TEARDOWN
    assert event(recorder.states[1], "deny").status == pf.WaitEventStatus.TEARDOWN_ERROR


async def test_finishing_is_checkpointed_after_resume() -> None:
    wf = AllKinds()
    await wf.resume()
    await wf.approve()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.kinds[-1] == K.AFTER_RESUME
    assert recorder.states[-1].status == pf.WorkflowStatus.FINISHED


async def test_parking_on_a_condition_is_checkpointed_after_resume() -> None:
    wf = Gate()
    recorder = CheckpointRecorder(wf.state)
    await pf.resume(wf, wf.state, recorder)
    assert recorder.kinds == [K.AFTER_STEP, K.AFTER_RESUME]
    assert thread(recorder.states[-1]).status == pf.ThreadStatus.WAITING_CONDITION


# -- the last checkpoint of a resume ------------------------------------------------------

Scenario = Callable[[type[CheckpointRecorder]], Awaitable[tuple[pf.State, CheckpointRecorder]]]


async def finished(recorder_class: type[CheckpointRecorder]) -> tuple[pf.State, CheckpointRecorder]:
    wf = AllKinds()
    await wf.resume()
    await wf.approve()
    recorder = recorder_class(wf.state)
    await wf.resume(recorder)
    return wf.state, recorder


async def parked_on_a_wait(recorder_class: type[CheckpointRecorder]) -> tuple[pf.State, CheckpointRecorder]:
    wf = TwoWaits()
    recorder = recorder_class(wf.state)
    await wf.resume(recorder)
    return wf.state, recorder


async def past_a_failed_teardown(
    recorder_class: type[CheckpointRecorder],
) -> tuple[pf.State, CheckpointRecorder]:
    wf = TwoWaits()
    wf.handlers.fail_next("teardown", "approve")
    await wf.resume()
    await wf.send("approve")
    recorder = recorder_class(wf.state)
    await wf.resume(recorder)
    return wf.state, recorder


async def parked_on_a_condition(
    recorder_class: type[CheckpointRecorder],
) -> tuple[pf.State, CheckpointRecorder]:
    wf = Gate()
    recorder = recorder_class(wf.state)
    await pf.resume(wf, wf.state, recorder)
    return wf.state, recorder


async def with_a_failed_setup(
    recorder_class: type[CheckpointRecorder],
) -> tuple[pf.State, CheckpointRecorder]:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "approve")
    recorder = recorder_class(wf.state)
    with pytest.raises(pf.SetupError):
        await wf.resume(recorder)
    return wf.state, recorder


@dataclass
class Flaky:
    """Step ``one``, then step ``two``, which raises."""

    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("flaky-1", "flaky"))

    def definition(self) -> pf.Stmt:
        return pf.S(pf.Step("one", lambda: self.log.append("one")), pf.Step("two", self.two))

    def two(self) -> None:
        raise RuntimeError("step two is broken")


async def with_a_failed_step(recorder_class: type[CheckpointRecorder]) -> tuple[pf.State, CheckpointRecorder]:
    wf = Flaky()
    recorder = recorder_class(wf.state)
    with pytest.raises(pf.StepError):
        await pf.resume(wf, wf.state, recorder)
    return wf.state, recorder


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        (finished, pf.WorkflowStatus.FINISHED),
        (parked_on_a_wait, pf.WorkflowStatus.WAITING),
        (past_a_failed_teardown, pf.WorkflowStatus.WAITING),
        (parked_on_a_condition, pf.WorkflowStatus.WAITING),
        (with_a_failed_setup, pf.WorkflowStatus.WAITING),
        (with_a_failed_step, pf.WorkflowStatus.RESUMING),
    ],
    ids=[
        "finished",
        "parked-on-a-wait",
        "past-a-failed-teardown",
        "parked-on-a-condition",
        "setup-failed",
        "step-failed",
    ],
)
async def test_the_last_checkpoint_of_a_resume_is_the_state_it_returns_with(
    scenario: Scenario, status: pf.WorkflowStatus, recorder_class: type[CheckpointRecorder]
) -> None:
    state, recorder = await scenario(recorder_class)
    assert state.status == status
    assert recorder.last_json == state.model_dump_json()


async def test_every_checkpoint_round_trips_through_json() -> None:
    wf = AllKinds()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    await wf.approve()
    await wf.resume(recorder)
    assert len(recorder.calls) == len(FIRST_RESUME + SECOND_RESUME)
    for _, js in recorder.calls:
        assert pf.State.model_validate_json(js).model_dump_json() == js


# -- resume of a waiting or finished workflow ---------------------------------------------


async def test_resume_of_a_waiting_workflow_with_nothing_pending_checkpoints_nothing() -> None:
    wf = TwoWaits()
    await wf.resume()
    before = wf.state.model_dump_json()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.calls == []
    assert wf.state.model_dump_json() == before


async def test_resume_of_a_waiting_workflow_retries_a_failed_setup_and_checkpoints_it() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "deny")
    with pytest.raises(pf.SetupError):
        await wf.resume()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.kinds == [K.AFTER_SETUP]
    assert event(wf.state, "deny").status == pf.WaitEventStatus.SETUP


async def test_resume_of_a_waiting_workflow_retries_a_failed_teardown_and_checkpoints_it() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("teardown", "deny")
    await wf.resume()
    await wf.send("approve")
    await wf.resume()
    recorder = CheckpointRecorder(wf.state)
    await wf.resume(recorder)
    assert recorder.kinds == [K.AFTER_TEARDOWN]
    assert [e.req.name for e in thread(wf.state).wait_events] == ["finish"]


async def test_resume_of_a_finished_workflow_raises_workflow_finished_error() -> None:
    wf = AllKinds()
    await wf.resume()
    await wf.approve()
    await wf.resume()
    recorder = CheckpointRecorder(wf.state)
    with pytest.raises(pf.WorkflowFinishedError):
        await wf.resume(recorder)
    assert recorder.calls == []
    assert wf.log.count("ship") == 1


# -- a failing checkpoint -------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", range(len(FIRST_RESUME)), ids=[k.value for k in FIRST_RESUME])
async def test_a_failing_checkpoint_stops_resume_with_the_state_at_the_last_good_one(fail_at: int) -> None:
    wf = AllKinds()
    before = wf.state.model_dump_json()
    recorder = CheckpointRecorder(wf.state, fail_at=fail_at)
    with pytest.raises(CheckpointFailed):
        await wf.resume(recorder)
    assert wf.state.model_dump_json() == (recorder.last_json if recorder.calls else before)


@pytest.mark.parametrize("fail_at", range(len(SECOND_RESUME)), ids=[k.value for k in SECOND_RESUME])
async def test_a_failing_checkpoint_after_a_callback_leaves_the_state_at_the_last_good_one(
    fail_at: int,
) -> None:
    wf = AllKinds()
    await wf.resume()
    await wf.approve()
    before = wf.state.model_dump_json()
    recorder = CheckpointRecorder(wf.state, fail_at=fail_at)
    with pytest.raises(CheckpointFailed):
        await wf.resume(recorder)
    assert wf.state.model_dump_json() == (recorder.last_json if recorder.calls else before)


@pytest.mark.parametrize("fail_at", range(len(FIRST_RESUME + SECOND_RESUME)))
async def test_resuming_again_after_a_failing_checkpoint_carries_on_to_the_end(fail_at: int) -> None:
    wf = AllKinds()
    recorder = CheckpointRecorder(wf.state, fail_at=fail_at)
    failures = 0
    for deliver in (wf.approve, None):
        while True:
            try:
                await wf.resume(recorder)
                break
            except CheckpointFailed:
                failures += 1
        if deliver is not None:
            await deliver()
    assert failures == 1
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.log[-1] == "ship"
    # A setup or teardown whose checkpoint failed runs again: at least once.
    assert set(wf.handlers.teardowns()) == {("approve", True), ("deny", False)}


# -- the State models -----------------------------------------------------------------------


def test_the_main_threads_id_is_main() -> None:
    assert pf.MAIN_THREAD == "_main_"


def test_a_new_state_has_only_the_main_thread_ready_to_run() -> None:
    state = pf.State.new("order-1", "order")
    assert (state.id, state.workflow, state.status) == ("order-1", "order", pf.WorkflowStatus.RESUMING)
    assert [(t.id, t.name, t.status) for t in state.threads] == [
        (pf.MAIN_THREAD, pf.MAIN_THREAD, pf.ThreadStatus.RESUMING)
    ]
    assert (state.pc, state.completed, state.reason) == (0, [], "")


def test_a_callback_request_needs_only_a_name() -> None:
    req = pf.CallbackRequest(name="approve")
    assert (req.name, req.workflow_id, req.thread_id, req.pc, req.setup_data) == ("approve", "", "", 0, "")


def test_a_callback_request_without_a_name_is_rejected() -> None:
    with pytest.raises(ValueError):
        pf.CallbackRequest.model_validate({"thread_id": "t"})


def test_a_state_with_every_field_set_round_trips_through_json() -> None:
    req = pf.CallbackRequest(workflow_id="w-1", thread_id="worker", name="ping", pc=7, setup_data="hook-9")
    state = pf.State(
        id="w-1",
        workflow="wf",
        status=pf.WorkflowStatus.WAITING,
        pc=12,
        completed=["pay", "pay"],
        reason="",
        threads=[
            pf.Thread(id=pf.MAIN_THREAD, name=pf.MAIN_THREAD, status=pf.ThreadStatus.WAITING_CONDITION, pc=5),
            pf.Thread(
                id="worker",
                name="worker",
                status=pf.ThreadStatus.WAITING_EVENT,
                cur_step="pings",
                cur_callback="",
                wait_events=[
                    pf.WaitEvent(type="timer", req=req, status=pf.WaitEventStatus.SETUP),
                    pf.WaitEvent(
                        type="hook",
                        req=req.model_copy(update={"name": "pong"}),
                        status=pf.WaitEventStatus.TEARDOWN_ERROR,
                        handled=True,
                        error="ValueError: gone",
                    ),
                ],
                pc=7,
            ),
        ],
    )
    assert pf.State.model_validate_json(state.model_dump_json()) == state


def test_a_stored_state_with_an_unknown_status_is_rejected() -> None:
    js = pf.State.new("w-1", "wf").model_dump_json().replace('"RESUMING"', '"SLEEPING"', 1)
    with pytest.raises(ValueError):
        pf.State.model_validate_json(js)


# -- continuing after a crash -----------------------------------------------------------------


class Listener(pf.Handler):
    """Records its setup and teardown in the workflow's log (so they are saved with it)."""

    type = "listener"

    def __init__(self, wf: Any) -> None:
        self.wf = wf

    def setup(self, req: pf.CallbackRequest) -> str:
        self.wf.log.append(f"setup {req.name}")
        return f"hook:{req.name}"

    async def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        self.wf.log.append(f"teardown {req.name} {req.setup_data} handled={handled}")


class Shop(BaseModel):
    """Reserve; wait for approve (typed) or deny; ship or restock; wait for delivery; close."""

    log: list[str] = []
    approved_by: str = ""

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve"), compensate=lambda: None),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.approve, pf.Step("bill", lambda: self.log.append("bill"))),
                pf.On("deny", Listener(self)),
            ),
            pf.If(
                lambda: bool(self.approved_by), "approved?", pf.Step("ship", lambda: self.log.append("ship"))
            ).else_("denied", pf.Step("restock", lambda: self.log.append("restock"))),
            pf.Wait("delivery", pf.On("delivered", Listener(self))),
            pf.Step("close", lambda: self.log.append("close")),
        )

    def approve(self, by: str) -> str:
        self.approved_by = by
        self.log.append(f"approved by {by}")
        return f"thanks {by}"


class Batch(BaseModel):
    """Two Go threads (one waits for ``left go``), a WaitGroup collected by a WaitFor
    with a handler, then a loop that waits for ``tick`` twice."""

    log: list[str] = []
    wg: pf.WaitGroup = pf.WaitGroup()
    rounds: int = 0

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Step("plan", lambda: self.wg.add(2)),
            pf.Go(
                "left",
                pf.S(
                    pf.Step("left work", lambda: self.log.append("left work")),
                    pf.Wait("left wait", pf.On("left go", Listener(self))),
                    pf.Step("left done", self.wg.done),
                ),
            ),
            pf.Go(
                "right",
                pf.S(
                    pf.Step("right work", lambda: self.log.append("right work")),
                    pf.Step("right done", self.wg.done),
                ),
            ),
            pf.WaitFor("all done", lambda: self.wg.count == 0, lambda: self.log.append("collected")),
            pf.For(
                "rounds",
                lambda: self.rounds < 2,
                pf.Step("round", self.next_round),
                pf.Wait("ticks", pf.On("tick", Listener(self))),
            ),
            pf.Step("end", lambda: self.log.append("end")),
        )

    def next_round(self) -> None:
        self.rounds += 1
        self.log.append(f"round {self.rounds}")


class LeftWaiting(BaseModel):
    """A Go thread waits for ``ping`` or ``pong`` while the main thread finishes on ``stop``."""

    log: list[str] = []

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Go(
                "worker", pf.Wait("worker wait", pf.On("ping", Listener(self)), pf.On("pong", Listener(self)))
            ),
            pf.Wait("main wait", pf.On("stop", Listener(self))),
        )


class Crash(Exception):
    """The process died right after a checkpoint was saved."""


@dataclass
class Run:
    """What one drive of a workflow to its end produced."""

    data: dict[str, Any]
    state: dict[str, Any]
    replies: list[Any]
    checkpoints: int


async def drive(
    cls: type[BaseModel], callbacks: list[tuple[str, Any]], *, crash_at: int | None = None
) -> Run:
    """Run a workflow to its end like an engine would, storing data and State as JSON.

    Whenever it is WAITING the next callback is delivered (and saved); otherwise it
    is resumed, saving at each checkpoint. With ``crash_at``, the process "dies"
    right after saving that checkpoint: everything is rebuilt from the stored JSON
    into fresh objects, and the run goes on with a ``resume``.
    """
    stored = {
        "data": cls().model_dump_json(),
        "state": pf.State.new("crash-1", cls.__name__).model_dump_json(),
    }
    sent = 0
    count = 0
    replies: list[Any] = []

    def load() -> tuple[Any, pf.State]:
        return cls.model_validate_json(stored["data"]), pf.State.model_validate_json(stored["state"])

    def save() -> None:
        stored["data"], stored["state"] = wf.model_dump_json(), state.model_dump_json()

    def checkpoint(kind: pf.CheckpointType) -> None:
        nonlocal count
        save()
        count += 1
        if count - 1 == crash_at:
            raise Crash(kind)

    wf, state = load()
    recovering = False  # after a crash, resume first: it retries pending setups and teardowns
    while state.status != pf.WorkflowStatus.FINISHED:
        if state.status == pf.WorkflowStatus.WAITING and not recovering:
            name, payload = callbacks[sent]
            replies.append(await pf.handle_callback(pf.CallbackRequest(name=name), wf, state, payload))
            sent += 1
            save()
            continue
        recovering = False
        try:
            await pf.resume(wf, state, checkpoint)
        except Crash:
            wf, state = load()
            recovering = True
    return Run(wf.model_dump(), state.model_dump(exclude={"pc"}), replies, count)


SHOP_EVENTS: list[tuple[str, Any]] = [("approve", '"ann"'), ("delivered", None)]
BATCH_EVENTS: list[tuple[str, Any]] = [("left go", None), ("tick", None), ("tick", None)]


@pytest.mark.parametrize(
    ("cls", "callbacks"), [(Shop, SHOP_EVENTS), (Batch, BATCH_EVENTS)], ids=["shop", "batch"]
)
async def test_continuing_from_any_checkpoint_in_fresh_objects_gives_the_same_end(
    cls: type[BaseModel], callbacks: list[tuple[str, Any]]
) -> None:
    clean = await drive(cls, callbacks)
    assert clean.state["status"] == pf.WorkflowStatus.FINISHED
    for crash_at in range(clean.checkpoints):
        crashed = await drive(cls, callbacks, crash_at=crash_at)
        assert (crashed.data, crashed.state, crashed.replies) == (clean.data, clean.state, clean.replies), (
            f"crash after checkpoint {crash_at}"
        )


async def test_the_crash_scenarios_run_every_step_and_handler_once() -> None:
    shop = await drive(Shop, SHOP_EVENTS)
    assert shop.data["log"] == [
        "reserve",
        "setup deny",
        "approved by ann",
        "teardown deny hook:deny handled=False",
        "bill",
        "ship",
        "setup delivered",
        "teardown delivered hook:delivered handled=True",
        "close",
    ]
    assert shop.replies == ["thanks ann", None]
    batch = await drive(Batch, BATCH_EVENTS)
    assert batch.data["log"][:4] == [
        "left work",
        "right work",
        "setup left go",
        "teardown left go hook:left go handled=True",
    ]
    assert batch.data["log"][-1] == "end"
    assert batch.data["log"].count("collected") == 1


async def test_continuing_from_a_checkpoint_taken_while_finishing_still_tears_down_every_event() -> None:
    callbacks: list[tuple[str, Any]] = [("stop", None)]
    clean = await drive(LeftWaiting, callbacks)
    assert sorted(clean.data["log"])[-3:] == [
        "teardown ping hook:ping handled=False",
        "teardown pong hook:pong handled=False",
        "teardown stop hook:stop handled=True",
    ]
    for crash_at in range(clean.checkpoints):
        crashed = await drive(LeftWaiting, callbacks, crash_at=crash_at)
        assert (crashed.data, crashed.state) == (clean.data, clean.state), (
            f"crash after checkpoint {crash_at}"
        )
