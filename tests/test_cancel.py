"""cancel: tearing down parked events, and compensating completed steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest
from event_helpers import (
    RECORDER_CLASSES,
    AsyncRecordingHandler,
    CheckpointFailed,
    CheckpointRecorder,
    HandlerLog,
    RecordingHandler,
    TwoWaits,
    no_checkpoint,
)

import procflow as pf

pytestmark = pytest.mark.anyio

UNDO_ALL = ["unbook night 2", "unbook night 1", "cancel hotel", "cancel flight"]


class ActionFailure(Exception):
    pass


@dataclass
class Trip:
    """Books a flight (sync compensate), a hotel (async compensate), writes a note
    (no compensate), books two nights in a loop (compensate per night), then waits
    for ``confirm`` or ``abort``."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    log: list[str] = field(default_factory=list)
    nights: int = 0
    failing: dict[str, int] = field(default_factory=dict)  # log entry -> failures left
    state: pf.State = field(default_factory=lambda: pf.State.new("trip-1", "trip"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Step("flight", lambda: self.log.append("book flight"), compensate=self.cancel_flight),
            pf.Step("hotel", self.book_hotel, compensate=self.cancel_hotel),
            pf.Step("note", lambda: self.log.append("note")),
            pf.For(
                "nights",
                lambda: self.nights < 2,
                pf.Step("night", self.book_night, compensate=self.unbook_night),
            ),
            pf.Wait(
                "confirmation",
                pf.On("confirm", RecordingHandler(self.handlers)),
                pf.On("abort", AsyncRecordingHandler(self.handlers)),
            ),
            pf.Step("after", lambda: self.log.append("after")),
        )

    def act(self, what: str) -> None:
        if self.failing.get(what, 0) > 0:
            self.failing[what] -= 1
            raise ActionFailure(f"{what} failed")
        self.log.append(what)

    def cancel_flight(self) -> None:
        self.act("cancel flight")

    async def book_hotel(self) -> None:
        await anyio.sleep(0)
        self.act("book hotel")

    async def cancel_hotel(self) -> None:
        await anyio.sleep(0)
        self.act("cancel hotel")

    def book_night(self) -> None:
        self.nights += 1
        self.log.append(f"book night {self.nights}")

    def unbook_night(self) -> None:
        self.act(f"unbook night {self.nights}")
        self.nights -= 1

    def undone(self) -> list[str]:
        return [entry for entry in self.log if entry.startswith(("cancel", "unbook"))]

    async def cancel(self, checkpoint: pf.Checkpoint = no_checkpoint, *, compensate: bool = True) -> None:
        await pf.cancel(self, self.state, checkpoint, reason="customer changed plans", compensate=compensate)


async def parked_trip() -> Trip:
    wf = Trip()
    await pf.resume(wf, wf.state, no_checkpoint)
    return wf


# -- completed -------------------------------------------------------------------------


async def test_completed_lists_every_completion_of_a_step_with_a_compensate_oldest_first() -> None:
    wf = await parked_trip()
    assert wf.state.completed == ["flight", "hotel", "night", "night"]


async def test_a_step_that_raised_is_not_listed_as_completed() -> None:
    wf = Trip()
    wf.failing["book hotel"] = 1
    with pytest.raises(pf.StepError):
        await pf.resume(wf, wf.state, no_checkpoint)
    assert wf.state.completed == ["flight"]


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_sets_cancelled_and_the_reason_and_leaves_no_threads() -> None:
    wf = await parked_trip()
    await wf.cancel(compensate=False)
    assert wf.state.status == pf.WorkflowStatus.CANCELLED
    assert wf.state.reason == "customer changed plans"
    assert wf.state.threads == []


@pytest.mark.parametrize("reason", ["", " \n"], ids=["empty", "blank"])
async def test_cancel_without_a_reason_raises_value_error_and_undoes_nothing(reason: str) -> None:
    wf = await parked_trip()
    before = wf.state.model_dump()
    with pytest.raises(ValueError, match="cancel needs a reason"):
        await pf.cancel(wf, wf.state, no_checkpoint, reason=reason, compensate=True)
    assert wf.undone() == []
    assert wf.state.model_dump() == before


async def test_cancel_tears_down_every_parked_event() -> None:
    wf = await parked_trip()
    await wf.cancel(compensate=False)
    assert wf.handlers.teardowns() == [("confirm", False), ("abort", False)]


async def test_cancel_tears_down_the_events_of_every_thread() -> None:
    wf = TwoWaitsWithWorker()
    await pf.resume(wf, wf.state, no_checkpoint)
    await pf.cancel(wf, wf.state, no_checkpoint, reason="stop")
    assert sorted(wf.handlers.names("teardown")) == ["approve", "deny", "job"]


async def test_cancel_after_a_callback_tears_down_the_delivered_event_as_handled() -> None:
    wf = TwoWaits()
    await wf.resume()
    await wf.send("deny")
    await pf.cancel(wf, wf.state, no_checkpoint, reason="stop")
    assert wf.handlers.teardowns() == [("approve", False), ("deny", True)]
    assert wf.log == ["before"]


async def test_a_failing_teardown_does_not_stop_cancel() -> None:
    wf = await parked_trip()
    wf.handlers.fail_next("teardown", "confirm")
    await wf.cancel(compensate=False)
    assert wf.state.status == pf.WorkflowStatus.CANCELLED
    assert wf.handlers.names("teardown") == ["confirm", "abort"]


async def test_cancel_without_compensate_runs_no_compensation() -> None:
    wf = await parked_trip()
    await wf.cancel(compensate=False)
    assert wf.undone() == []


@pytest.mark.parametrize("recorder_class", RECORDER_CLASSES, ids=["sync", "async"])
async def test_the_last_checkpoint_of_cancel_shows_it_cancelled_with_no_threads(
    recorder_class: type[CheckpointRecorder],
) -> None:
    wf = await parked_trip()
    recorder = recorder_class(wf.state)
    await wf.cancel(recorder)
    last = pf.State.model_validate_json(recorder.last_json)
    assert (last.status, last.threads, last.reason) == (
        pf.WorkflowStatus.CANCELLED,
        [],
        "customer changed plans",
    )
    assert recorder.last_json == wf.state.model_dump_json()


async def test_cancel_of_a_finished_workflow_raises_workflow_finished_error() -> None:
    wf = await parked_trip()
    await pf.handle_callback(pf.CallbackRequest(name="confirm"), wf, wf.state, None)
    await pf.resume(wf, wf.state, no_checkpoint)
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    with pytest.raises(pf.WorkflowFinishedError):
        await wf.cancel()
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.undone() == []


async def test_cancel_of_a_cancelled_workflow_raises_workflow_finished_error() -> None:
    wf = await parked_trip()
    await wf.cancel(compensate=False)
    with pytest.raises(pf.WorkflowFinishedError):
        await wf.cancel()
    assert wf.undone() == []
    assert wf.state.reason == "customer changed plans"


async def test_resume_of_a_cancelled_workflow_raises_workflow_finished_error() -> None:
    wf = await parked_trip()
    await wf.cancel()
    with pytest.raises(pf.WorkflowFinishedError):
        await pf.resume(wf, wf.state, no_checkpoint)


# -- compensation ---------------------------------------------------------------------------


async def test_cancel_with_compensate_runs_every_compensation_newest_first() -> None:
    wf = await parked_trip()
    await wf.cancel()
    assert wf.undone() == UNDO_ALL
    assert wf.state.completed == []
    assert wf.state.status == pf.WorkflowStatus.CANCELLED


async def test_cancel_with_compensate_and_nothing_completed_just_cancels() -> None:
    wf = TwoWaits()
    await wf.resume()
    await pf.cancel(wf, wf.state, no_checkpoint, reason="stop", compensate=True)
    assert wf.state.status == pf.WorkflowStatus.CANCELLED


@pytest.mark.parametrize("recorder_class", RECORDER_CLASSES, ids=["sync", "async"])
async def test_cancel_checkpoints_after_each_compensation_then_after_each_teardown(
    recorder_class: type[CheckpointRecorder],
) -> None:
    wf = await parked_trip()
    recorder = recorder_class(wf.state)
    await wf.cancel(recorder)
    assert recorder.kinds == [pf.CheckpointType.AFTER_STEP] * 4 + [pf.CheckpointType.AFTER_TEARDOWN] * 2 + [
        pf.CheckpointType.AFTER_RESUME
    ]


async def test_each_compensation_checkpoint_drops_its_step_from_completed() -> None:
    wf = await parked_trip()
    recorder = CheckpointRecorder(wf.state)
    await wf.cancel(recorder)
    assert [s.completed for s in recorder.states[:4]] == [
        ["flight", "hotel", "night"],
        ["flight", "hotel"],
        ["flight"],
        [],
    ]


async def test_each_compensation_counts_one_transition_on_the_state() -> None:
    wf = await parked_trip()
    pc = wf.state.pc
    recorder = CheckpointRecorder(wf.state)
    await wf.cancel(recorder)
    compensations = [s.pc for k, s in zip(recorder.kinds, recorder.states, strict=True) if k == "AFTER_STEP"]
    assert compensations == [pc + 1, pc + 2, pc + 3, pc + 4]


async def test_a_failing_compensation_raises_step_error_naming_its_step() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    with pytest.raises(pf.StepError) as caught:
        await wf.cancel()
    assert caught.value.step == "hotel"
    assert isinstance(caught.value.__cause__, ActionFailure)


async def test_a_failing_compensation_names_no_thread_as_cancel_runs_it_outside_any() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    with pytest.raises(pf.StepError) as caught:
        await wf.cancel()
    assert caught.value.thread_id == ""
    assert str(caught.value).startswith(
        "the compensation of Step 'hotel' of 'trip' 'trip-1' raised ActionFailure"
    )


async def test_a_failing_compensation_leaves_the_state_at_the_last_checkpoint() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    recorder = CheckpointRecorder(wf.state)
    with pytest.raises(pf.StepError):
        await wf.cancel(recorder)
    assert wf.state.model_dump_json() == recorder.last_json
    assert wf.state.completed == ["flight", "hotel"]
    assert wf.state.status == pf.WorkflowStatus.WAITING
    assert wf.handlers.of("teardown") == []


async def test_cancel_again_after_a_failing_compensation_carries_on_where_it_stopped() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    with pytest.raises(pf.StepError):
        await wf.cancel()
    await wf.cancel()
    assert wf.undone() == UNDO_ALL
    assert wf.state.status == pf.WorkflowStatus.CANCELLED


async def test_a_cancel_cut_short_saves_its_reason_with_the_first_compensation() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    recorder = CheckpointRecorder(wf.state)
    with pytest.raises(pf.StepError):
        await wf.cancel(recorder)
    assert pf.State.model_validate_json(recorder.last_json).reason == "customer changed plans"
    assert wf.state.cancelling


async def test_a_cancel_whose_first_compensation_raises_leaves_the_workflow_running() -> None:
    wf = await parked_trip()
    wf.failing["unbook night 2"] = 1
    with pytest.raises(pf.StepError):
        await wf.cancel()
    assert (wf.state.reason, wf.state.cancelling) == ("", False)
    await pf.handle_callback(pf.CallbackRequest(name="confirm"), wf, wf.state, None)
    await pf.resume(wf, wf.state, no_checkpoint)
    assert wf.state.status == pf.WorkflowStatus.FINISHED


async def test_resume_refuses_a_workflow_whose_cancel_was_cut_short() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    with pytest.raises(pf.StepError):
        await wf.cancel()
    with pytest.raises(pf.WorkflowFinishedError, match=r"being cancelled .* call cancel again"):
        await pf.resume(wf, wf.state, no_checkpoint)


async def test_handle_callback_refuses_a_workflow_whose_cancel_was_cut_short() -> None:
    wf = await parked_trip()
    wf.failing["cancel hotel"] = 1
    with pytest.raises(pf.StepError):
        await wf.cancel()
    with pytest.raises(pf.WorkflowFinishedError, match="event 'confirm' cannot be delivered"):
        await pf.handle_callback(pf.CallbackRequest(name="confirm"), wf, wf.state, None)
    assert wf.handlers.of("handle") == []


async def test_a_cancelled_workflow_is_not_cancelling() -> None:
    wf = await parked_trip()
    await wf.cancel()
    assert wf.state.reason == "customer changed plans"
    assert not wf.state.cancelling


async def test_a_failing_checkpoint_stops_cancel_and_leaves_the_state_at_the_last_good_one() -> None:
    wf = await parked_trip()
    recorder = CheckpointRecorder(wf.state, fail_at=2)  # after the hotel's compensation
    with pytest.raises(CheckpointFailed):
        await wf.cancel(recorder)
    assert wf.state.model_dump_json() == recorder.last_json
    assert wf.state.completed == ["flight", "hotel"]


async def test_cancel_again_after_a_failing_checkpoint_does_not_rerun_checkpointed_compensations() -> None:
    wf = await parked_trip()
    with pytest.raises(CheckpointFailed):
        await wf.cancel(CheckpointRecorder(wf.state, fail_at=2))
    await wf.cancel()
    # The hotel's compensation ran again: its checkpoint never succeeded.
    assert wf.undone() == [
        "unbook night 2",
        "unbook night 1",
        "cancel hotel",
        "cancel hotel",
        "cancel flight",
    ]
    assert wf.state.status == pf.WorkflowStatus.CANCELLED


async def test_cancel_again_after_a_failing_checkpoint_does_not_repeat_checkpointed_teardowns() -> None:
    wf = await parked_trip()
    with pytest.raises(CheckpointFailed):
        await wf.cancel(CheckpointRecorder(wf.state, fail_at=1), compensate=False)  # after "abort"
    await wf.cancel(compensate=False)
    assert wf.handlers.names("teardown") == ["confirm", "abort", "abort"]
    assert wf.state.status == pf.WorkflowStatus.CANCELLED


@dataclass
class Versioned:
    """Version 2 adds a step before the completed step ``pay``."""

    version: int = 1
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("versioned-1", "versioned"))

    def definition(self) -> pf.Stmt:
        added = [pf.Step("audit", lambda: self.log.append("audit"))] if self.version >= 2 else []
        return pf.S(
            *added,
            pf.Step("pay", lambda: self.log.append("pay"), compensate=lambda: self.log.append("refund")),
            pf.Wait("ship", pf.OnEvent("shipped", lambda: None)),
        )


async def test_cancel_compensates_a_step_of_an_instance_whose_definition_gained_a_statement() -> None:
    wf = Versioned()
    await pf.resume(wf, wf.state, no_checkpoint)
    wf.version = 2
    await pf.cancel(wf, wf.state, no_checkpoint, reason="stop", compensate=True)
    assert wf.log == ["pay", "refund"]


@dataclass
class TwoWaitsWithWorker:
    """The main thread waits for ``approve``/``deny``; a Go thread waits for ``job``."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    state: pf.State = field(default_factory=lambda: pf.State.new("worker-1", "worker"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Go("worker", pf.Wait("jobs", pf.On("job", AsyncRecordingHandler(self.handlers)))),
            pf.Wait(
                "decision",
                pf.On("approve", RecordingHandler(self.handlers)),
                pf.On("deny", RecordingHandler(self.handlers)),
            ),
        )
