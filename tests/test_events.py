"""Events: Wait, On, OnEvent, the Handler lifecycle, and handle_callback and its errors."""

from __future__ import annotations

import functools
import gc
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from event_helpers import (
    HANDLER_CLASSES,
    AsyncRecordingHandler,
    HandlerFailure,
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


@pytest.fixture(params=HANDLER_CLASSES, ids=["sync", "async"])
def handler_class(request: pytest.FixtureRequest) -> type[RecordingHandler]:
    return request.param  # type: ignore[no-any-return]


# Async fixtures are avoided: anyio's plugin cannot run them under the pinned trio.


async def parked_two_waits(handler_class: type[RecordingHandler] = RecordingHandler) -> TwoWaits:
    """A TwoWaits workflow parked on its Wait ``decision``."""
    wf = TwoWaits(handler_class=handler_class)
    await wf.resume()
    return wf


# -- Handler: setup --------------------------------------------------------------


async def test_setup_runs_once_for_each_event_when_the_thread_parks(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    assert parked.handlers.names("setup") == ["approve", "deny"]
    assert parked.handlers.of("handle") == []
    assert parked.handlers.of("teardown") == []


async def test_setup_receives_the_request_of_the_parked_event(handler_class: type[RecordingHandler]) -> None:
    parked = await parked_two_waits(handler_class)
    main = thread(parked.state)
    for call in parked.handlers.of("setup"):
        assert call.req == pf.CallbackRequest(
            workflow_id="two-waits-1", thread_id=pf.MAIN_THREAD, name=call.name, pc=main.pc, setup_data=""
        )


async def test_what_setup_returns_is_kept_in_setup_data(handler_class: type[RecordingHandler]) -> None:
    parked = await parked_two_waits(handler_class)
    assert event(parked.state, "approve").req.setup_data == "data:approve"
    assert event(parked.state, "deny").req.setup_data == "data:deny"


async def test_a_successful_setup_sets_the_event_status_to_setup(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    assert [e.status for e in thread(parked.state).wait_events] == [pf.WaitEventStatus.SETUP] * 2


async def test_a_parked_event_stores_its_handlers_type(handler_class: type[RecordingHandler]) -> None:
    parked = await parked_two_waits(handler_class)
    assert event(parked.state, "approve").type == parked.handler_class.type


def test_a_handler_class_whose_type_is_not_a_non_empty_str_is_a_definition_error() -> None:
    with pytest.raises(pf.DefinitionError, match=r"Numbered.type must be a non-empty str, got 7"):

        class Numbered(pf.Handler):
            type = 7  # type: ignore[assignment]


def test_a_handler_class_without_a_type_takes_its_name_or_the_type_a_base_class_set() -> None:
    class Webhook(pf.Handler):
        type = "webhook"

    class SlackWebhook(Webhook):
        pass

    class Plain(pf.Handler):
        pass

    class PlainChild(Plain):
        pass

    assert (Webhook.type, SlackWebhook.type) == ("webhook", "webhook")
    assert (Plain.type, PlainChild.type) == ("Plain", "PlainChild")


@dataclass
class TypedOnTheInstance:
    """Parks on an event whose handler sets a bad ``type`` on itself."""

    bad_type: Any
    state: pf.State = field(default_factory=lambda: pf.State.new("typed-1", "typed"))

    def definition(self) -> pf.Stmt:
        handler = pf.Handler()
        handler.type = self.bad_type  # type: ignore[misc]
        return pf.S(pf.Wait("decision", pf.On("approve", handler)))


@pytest.mark.parametrize("bad_type", ["", 7, None])
async def test_a_handler_whose_own_type_is_not_a_non_empty_str_is_a_definition_error_that_changes_nothing(
    bad_type: Any,
) -> None:
    wf = TypedOnTheInstance(bad_type)
    before = wf.state.model_dump()

    message = r"event 'approve' in thread '_main_' of 'typed' 'typed-1' has type "
    with pytest.raises(pf.DefinitionError, match=message):
        await pf.resume(wf, wf.state, no_checkpoint)
    assert wf.state.model_dump() == before


async def test_a_thread_parked_on_a_wait_waits_for_its_events(handler_class: type[RecordingHandler]) -> None:
    parked = await parked_two_waits(handler_class)
    main = thread(parked.state)
    assert parked.state.status == pf.WorkflowStatus.WAITING
    assert main.status == pf.ThreadStatus.WAITING_EVENT
    assert main.cur_step == "decision"
    assert parked.log == ["before"]


async def test_resuming_a_parked_workflow_does_not_set_its_events_up_again(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.resume()
    assert parked.handlers.names("setup") == ["approve", "deny"]


# -- Handler: setup failures -------------------------------------------------------


async def test_a_failed_setup_raises_setup_error_after_every_pending_setup_was_tried(
    handler_class: type[RecordingHandler],
) -> None:
    wf = TwoWaits(handler_class=handler_class)
    wf.handlers.fail_next("setup", "approve")
    with pytest.raises(pf.SetupError):
        await wf.resume()
    assert wf.handlers.names("setup") == ["approve", "deny"]
    assert event(wf.state, "deny").status == pf.WaitEventStatus.SETUP


async def test_a_failed_setup_keeps_the_event_as_setup_error_with_the_error_text() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "approve")
    with pytest.raises(pf.SetupError):
        await wf.resume()
    approve = event(wf.state, "approve")
    assert approve.status == pf.WaitEventStatus.SETUP_ERROR
    assert "setup of 'approve' failed" in approve.error
    assert thread(wf.state).status == pf.ThreadStatus.WAITING_EVENT


async def test_the_next_resume_retries_a_failed_setup(handler_class: type[RecordingHandler]) -> None:
    wf = TwoWaits(handler_class=handler_class)
    wf.handlers.fail_next("setup", "approve")
    with pytest.raises(pf.SetupError):
        await wf.resume()
    await wf.resume()
    assert wf.handlers.names("setup") == ["approve", "deny", "approve"]
    approve = event(wf.state, "approve")
    assert (approve.status, approve.error, approve.req.setup_data) == (
        pf.WaitEventStatus.SETUP,
        "",
        "data:approve",
    )


async def test_a_setup_that_keeps_failing_raises_setup_error_on_every_resume() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "deny", times=2)
    for _ in range(2):
        with pytest.raises(pf.SetupError):
            await wf.resume()
    assert event(wf.state, "deny").status == pf.WaitEventStatus.SETUP_ERROR


async def test_setup_error_chains_the_first_failed_setup_as_its_cause() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "approve")
    wf.handlers.fail_next("setup", "deny")
    with pytest.raises(pf.SetupError) as error:
        await wf.resume()
    assert len(error.value.failures) == 2
    assert str(error.value.__cause__) == "setup of 'approve' failed"


async def test_delivering_an_event_drops_the_events_of_its_wait_whose_setup_failed() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("setup", "deny")
    with pytest.raises(pf.SetupError):
        await wf.resume()
    await wf.send("approve")
    assert [(e.req.name, e.status, e.handled) for e in thread(wf.state).wait_events] == [
        ("approve", pf.WaitEventStatus.PENDING_TEARDOWN, True)
    ]
    await wf.resume()
    assert wf.handlers.teardowns() == [("approve", True)]  # "deny" was never set up


# -- Handler: handle ---------------------------------------------------------------


async def test_handle_receives_the_stored_request_not_the_callers(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve", {"by": "ann"})
    [call] = parked.handlers.of("handle")
    assert call.req == pf.CallbackRequest(
        workflow_id="two-waits-1",
        thread_id=pf.MAIN_THREAD,
        name="approve",
        pc=event(parked.state, "approve").req.pc,
        setup_data="data:approve",
    )
    assert call.payload == {"by": "ann"}


async def test_handle_callback_returns_what_handle_returned_as_is(
    handler_class: type[RecordingHandler],
) -> None:
    reply = object()
    wf = TwoWaits(handler_class=handler_class, reply=reply)
    await wf.resume()
    assert await wf.send("approve") is reply


async def test_a_callback_makes_the_thread_ready_to_run_the_events_statements(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    main = thread(parked.state)
    assert parked.state.status == pf.WorkflowStatus.RESUMING
    assert (main.status, main.cur_step, main.cur_callback) == (
        pf.ThreadStatus.RESUMING,
        "decision",
        "approve",
    )
    assert parked.log == ["before"]


@dataclass
class NestedWaits:
    """Wait ``outer``, whose event ``go`` parks the thread again on Wait ``inner``."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    state: pf.State = field(default_factory=lambda: pf.State.new("nested-1", "nested waits"))

    def definition(self) -> pf.Stmt:
        inner = pf.Wait("inner", pf.On("done", RecordingHandler(self.handlers)))
        return pf.S(pf.Wait("outer", pf.On("go", RecordingHandler(self.handlers), inner)))


async def test_a_thread_parked_on_a_wait_inside_an_event_keeps_no_cur_callback() -> None:
    wf = NestedWaits()
    await pf.resume(wf, wf.state, no_checkpoint)
    await pf.handle_callback(pf.CallbackRequest(name="go"), wf, wf.state, None)
    await pf.resume(wf, wf.state, no_checkpoint)
    main = thread(wf.state)
    assert (main.status, main.cur_step, main.cur_callback) == (pf.ThreadStatus.WAITING_EVENT, "inner", "")


async def test_a_callback_marks_every_event_of_the_wait_for_teardown(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("deny")
    events = {e.req.name: (e.status, e.handled) for e in thread(parked.state).wait_events}
    assert events == {
        "approve": (pf.WaitEventStatus.PENDING_TEARDOWN, False),
        "deny": (pf.WaitEventStatus.PENDING_TEARDOWN, True),
    }
    assert parked.handlers.of("teardown") == []


async def test_resume_after_a_callback_runs_the_events_statements_then_goes_on_after_the_wait(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    assert parked.log == ["before", "approved"]
    assert thread(parked.state).cur_step == "next"


async def test_only_the_delivered_events_statements_run(handler_class: type[RecordingHandler]) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("deny")
    await parked.resume()
    assert parked.log == ["before", "denied"]


# -- Handler: teardown -------------------------------------------------------------


async def test_teardown_runs_for_every_event_of_the_wait_once_it_is_left(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    assert parked.handlers.teardowns() == [("approve", True), ("deny", False)]


async def test_teardown_receives_the_stored_request_with_its_setup_data(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    assert [c.req.setup_data for c in parked.handlers.of("teardown")] == ["data:approve", "data:deny"]
    assert {c.req.thread_id for c in parked.handlers.of("teardown")} == {pf.MAIN_THREAD}


async def test_torn_down_events_leave_the_thread(handler_class: type[RecordingHandler]) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    assert [e.req.name for e in thread(parked.state).wait_events] == ["finish"]


async def test_a_workflow_that_runs_to_its_end_tears_down_every_wait(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    await parked.send("finish")
    await parked.resume()
    assert parked.state.status == pf.WorkflowStatus.FINISHED
    assert parked.handlers.teardowns() == [("approve", True), ("deny", False), ("finish", True)]
    assert parked.log == ["before", "approved", "after"]


@dataclass
class MainEndsWhileWorkerWaits:
    """A Go thread parks on ``ping``/``pong``; the main thread finishes when ``stop`` arrives."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    state: pf.State = field(default_factory=lambda: pf.State.new("ends-1", "ends"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Go(
                "worker",
                pf.Wait(
                    "worker wait",
                    pf.On("ping", RecordingHandler(self.handlers)),
                    pf.On("pong", AsyncRecordingHandler(self.handlers)),
                ),
            ),
            pf.Wait("main wait", pf.On("stop", RecordingHandler(self.handlers))),
        )


async def test_still_parked_events_are_torn_down_when_the_workflow_finishes() -> None:
    wf = MainEndsWhileWorkerWaits()
    await pf.resume(wf, wf.state, no_checkpoint)
    await pf.handle_callback(pf.CallbackRequest(name="stop"), wf, wf.state, None)
    await pf.resume(wf, wf.state, no_checkpoint)
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.threads == []
    assert sorted(wf.handlers.teardowns()) == [("ping", False), ("pong", False), ("stop", True)]


# -- Handler: teardown failures ------------------------------------------------------


async def test_a_failed_teardown_is_kept_as_teardown_error_and_the_workflow_goes_on(
    handler_class: type[RecordingHandler],
) -> None:
    wf = TwoWaits(handler_class=handler_class)
    wf.handlers.fail_next("teardown", "deny")
    await wf.resume()
    await wf.send("approve")
    await wf.resume()
    assert wf.log == ["before", "approved"]
    assert thread(wf.state).cur_step == "next"
    deny = event(wf.state, "deny")
    assert (deny.status, deny.handled) == (pf.WaitEventStatus.TEARDOWN_ERROR, False)
    assert "teardown of 'deny' failed" in deny.error


async def test_the_next_resume_retries_a_failed_teardown(handler_class: type[RecordingHandler]) -> None:
    wf = TwoWaits(handler_class=handler_class)
    wf.handlers.fail_next("teardown", "deny")
    await wf.resume()
    await wf.send("approve")
    await wf.resume()
    await wf.resume()
    assert wf.handlers.teardowns() == [("approve", True), ("deny", False), ("deny", False)]
    assert [e.req.name for e in thread(wf.state).wait_events] == ["finish"]


async def test_a_teardown_that_keeps_failing_is_dropped_when_the_workflow_finishes() -> None:
    wf = TwoWaits()
    wf.handlers.fail_next("teardown", "deny", times=100)
    await wf.resume()
    await wf.send("approve")
    await wf.resume()
    await wf.send("finish")
    await wf.resume()
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.threads == []


@dataclass
class WorkerWithTwoEvents:
    """A Go thread waits for ``a`` or ``b`` and then ends; the main thread waits for ``stop``."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    state: pf.State = field(default_factory=lambda: pf.State.new("worker-1", "worker"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Go(
                "worker",
                pf.Wait(
                    "worker wait",
                    pf.On("a", RecordingHandler(self.handlers)),
                    pf.On("b", RecordingHandler(self.handlers)),
                ),
            ),
            pf.Wait("main wait", pf.On("stop", RecordingHandler(self.handlers))),
        )


async def test_a_failed_teardown_of_a_thread_that_then_ends_is_retried_by_the_next_resume() -> None:
    wf = WorkerWithTwoEvents()
    wf.handlers.fail_next("teardown", "b")
    await pf.resume(wf, wf.state, no_checkpoint)
    await pf.handle_callback(pf.CallbackRequest(name="a"), wf, wf.state, None)
    await pf.resume(wf, wf.state, no_checkpoint)  # b's teardown fails; the worker ends
    await pf.resume(wf, wf.state, no_checkpoint)
    assert wf.handlers.teardowns() == [("a", True), ("b", False), ("b", False)]


# -- OnEvent: typed payloads ---------------------------------------------------------


class Decision(BaseModel):
    approver: str
    amount: int


@dataclass
class Parcel:
    weight: int


@dataclass
class Inbox:
    """One Wait with an OnEvent per payload type; each fn records what it got."""

    received: list[Any] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("inbox-1", "inbox"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Wait(
                "inbox",
                pf.OnEvent(
                    "decision", self.on_decision, pf.Step("decided", lambda: self.log.append("decided"))
                ),
                pf.OnEvent("async decision", self.on_decision_async),
                pf.OnEvent("parcel", self.on_parcel),
                pf.OnEvent("count", self.on_count),
            ),
        )

    def on_decision(self, decision: Decision) -> str:
        self.received.append(decision)
        return f"ok {decision.approver}"

    async def on_decision_async(self, decision: Decision) -> str:
        await anyio.sleep(0)
        self.received.append(decision)
        return f"async ok {decision.approver}"

    def on_parcel(self, parcel: Parcel) -> int:
        self.received.append(parcel)
        return parcel.weight * 2

    def on_count(self, n: int) -> int:
        if n < 0:
            raise pf.PayloadError("the count cannot be negative")  # what the type cannot say
        self.received.append(n)
        return n + 1

    async def send(self, name: str, payload: Any) -> Any:
        return await pf.handle_callback(pf.CallbackRequest(name=name), self, self.state, payload)


async def parked_inbox() -> Inbox:
    wf = Inbox()
    await pf.resume(wf, wf.state, no_checkpoint)
    return wf


ANN_5 = Decision(approver="ann", amount=5)


@pytest.mark.parametrize(
    "payload",
    [
        '{"approver": "ann", "amount": 5}',
        b'{"approver": "ann", "amount": 5}',
        {"approver": "ann", "amount": 5},
        ANN_5,
    ],
    ids=["json-str", "json-bytes", "dict", "model"],
)
async def test_on_event_validates_the_payload_into_fns_parameter_type(payload: Any) -> None:
    inbox = await parked_inbox()
    assert await inbox.send("decision", payload) == "ok ann"
    assert inbox.received == [ANN_5]


async def test_an_async_on_event_fn_is_awaited_for_its_reply() -> None:
    inbox = await parked_inbox()
    assert await inbox.send("async decision", {"approver": "bob", "amount": 1}) == "async ok bob"
    assert inbox.received == [Decision(approver="bob", amount=1)]


@pytest.mark.parametrize(
    "payload", ['{"weight": 3}', {"weight": 3}, Parcel(3)], ids=["json", "dict", "dataclass"]
)
async def test_on_event_accepts_a_dataclass_payload(payload: Any) -> None:
    inbox = await parked_inbox()
    assert await inbox.send("parcel", payload) == 6
    assert inbox.received == [Parcel(3)]


@pytest.mark.parametrize("payload", ["7", b"7", 7], ids=["json-str", "json-bytes", "int"])
async def test_on_event_accepts_a_plain_int_payload(payload: Any) -> None:
    inbox = await parked_inbox()
    assert await inbox.send("count", payload) == 8
    assert inbox.received == [7]


async def test_an_on_event_delivery_runs_the_events_statements_on_resume() -> None:
    inbox = await parked_inbox()
    await inbox.send("decision", ANN_5)
    await pf.resume(inbox, inbox.state, no_checkpoint)
    assert inbox.log == ["decided"]
    assert inbox.state.status == pf.WorkflowStatus.FINISHED


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("decision", "not json"),
        ("decision", b"\xff"),
        ("decision", '{"approver": "ann"}'),
        ("decision", {"approver": 1, "amount": "many"}),
        ("decision", Parcel(3)),
        ("decision", None),
        ("async decision", "[]"),
        ("parcel", {"weight": "heavy"}),
        ("count", "seven"),
    ],
)
async def test_a_bad_payload_raises_payload_error_and_changes_nothing(name: str, payload: Any) -> None:
    inbox = await parked_inbox()
    before = inbox.state.model_dump()
    with pytest.raises(pf.PayloadError):
        await inbox.send(name, payload)
    assert inbox.state.model_dump() == before
    assert inbox.received == []
    assert inbox.log == []


async def test_payload_error_lists_each_validation_error() -> None:
    inbox = await parked_inbox()
    with pytest.raises(pf.PayloadError) as caught:
        await inbox.send("decision", {"approver": 1, "amount": "many"})
    errors = caught.value.errors
    assert all(isinstance(e, dict) for e in errors)
    assert [tuple(e["loc"]) for e in errors] == [("approver",), ("amount",)]
    assert all(e["msg"] for e in errors)


@pytest.mark.parametrize(
    "payload",
    [
        '{"approver": "ann"}',
        b'{"approver": "ann"',
    ],
    ids=["str", "bytes"],
)
async def test_payload_errors_of_a_json_payload_are_json_serialisable(payload: Any) -> None:
    inbox = await parked_inbox()
    with pytest.raises(pf.PayloadError) as caught:
        await inbox.send("decision", payload)
    assert json.loads(json.dumps(caught.value.errors))


async def test_payload_error_names_the_event_the_thread_and_the_instance() -> None:
    inbox = await parked_inbox()
    with pytest.raises(pf.PayloadError) as caught:
        await inbox.send("decision", {"approver": 1, "amount": 5})
    assert str(caught.value).startswith(
        "event 'decision' in thread '_main_' of 'inbox' 'inbox-1': invalid payload for "
    )


async def test_a_payload_error_raised_by_the_handler_refuses_the_payload_and_changes_no_state() -> None:
    inbox = await parked_inbox()
    before = inbox.state.model_dump()
    with pytest.raises(pf.PayloadError) as caught:
        await inbox.send("count", -1)
    assert str(caught.value) == (
        "event 'count' in thread '_main_' of 'inbox' 'inbox-1': the count cannot be negative"
    )
    assert inbox.state.model_dump() == before
    assert await inbox.send("count", 2) == 3  # still parked


async def test_the_event_stays_parked_after_a_bad_payload() -> None:
    inbox = await parked_inbox()
    with pytest.raises(pf.PayloadError):
        await inbox.send("decision", "{}")
    assert await inbox.send("decision", ANN_5) == "ok ann"


class Approver:
    """A callable object as an OnEvent fn."""

    def __init__(self, received: list[Any]) -> None:
        self.received = received

    def __call__(self, decision: Decision) -> str:
        self.received.append(decision)
        return f"ok {decision.approver}"


@dataclass
class DataclassApprover:
    """A callable dataclass (unhashable, as dataclasses with eq=True are)."""

    received: list[Any]

    def __call__(self, decision: Decision) -> str:
        self.received.append(decision)
        return f"ok {decision.approver}"


def approve_into(received: list[Any], decision: Decision) -> str:
    received.append(decision)
    return f"ok {decision.approver}"


def partial_approver(received: list[Any]) -> Callable[[Decision], str]:
    return functools.partial(approve_into, received)


class Received(list[Any]):
    """A list that can be weakly referenced."""


@dataclass
class CallableInbox:
    """A Wait whose OnEvent fn is built by ``make_fn`` on each ``definition()``."""

    make_fn: Callable[[list[Any]], Callable[[Decision], str]]
    received: Received = field(default_factory=Received)
    state: pf.State = field(default_factory=lambda: pf.State.new("callable-1", "callable"))

    def definition(self) -> pf.Stmt:
        return pf.S(pf.Wait("inbox", pf.OnEvent("decision", self.make_fn(self.received))))


@pytest.mark.parametrize(
    "make_fn",
    [
        Approver,
        DataclassApprover,
        partial_approver,
    ],
    ids=["object", "dataclass", "partial"],
)
async def test_an_on_event_fn_may_be_any_callable_with_a_typed_parameter(
    make_fn: Callable[[list[Any]], Callable[[Decision], str]],
) -> None:
    wf = CallableInbox(make_fn)
    await pf.resume(wf, wf.state, no_checkpoint)
    req = pf.CallbackRequest(name="decision")
    assert await pf.handle_callback(req, wf, wf.state, {"approver": "ann", "amount": 5}) == "ok ann"
    assert wf.received == [ANN_5]


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator: every function it wraps shares its wrapper's code object."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@dataclass
class Decorated:
    """Two OnEvent fns behind one decorator, with different payload types."""

    received: list[Any] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("decorated-1", "decorated"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Wait("inbox", pf.OnEvent("count", self.on_count), pf.OnEvent("decision", self.on_decision))
        )

    @logged
    def on_count(self, n: int) -> int:
        self.received.append(n)
        return n

    @logged
    def on_decision(self, decision: Decision) -> str:
        self.received.append(decision)
        return decision.approver


@pytest.mark.parametrize("first", ["count", "decision"])
async def test_on_event_fns_behind_one_decorator_validate_against_their_own_payload_types(first: str) -> None:
    wf = Decorated()
    await pf.resume(wf, wf.state, no_checkpoint)
    # payload, reply and what fn received; each delivery on a copy of the parked state
    sent = {"count": ("7", 7, 7), "decision": ({"approver": "ann", "amount": 5}, "ann", ANN_5)}
    for name in sorted(sent, key=lambda n: n != first):
        payload, reply, received = sent[name]
        state = wf.state.model_copy(deep=True)
        assert await pf.handle_callback(pf.CallbackRequest(name=name), wf, state, payload) == reply
        assert wf.received[-1] == received


def payload_echo(payload_type: Any) -> Callable[[Any], Any]:
    """A factory of OnEvent fns: each closure shares one code object."""

    def echo(payload: Any) -> Any:
        return payload

    # What the annotations evaluate to where they are not strings (no `from __future__ import annotations`).
    echo.__annotations__ = {"payload": payload_type, "return": payload_type}
    return echo


def test_on_event_fns_made_by_one_factory_keep_their_own_payload_types() -> None:
    count, decision = pf.OnEvent("count", payload_echo(int)), pf.OnEvent("decision", payload_echo(Decision))
    assert (count.handler.payload_type, decision.handler.payload_type) == (int, Decision)
    assert decision.handler.validate({"approver": "ann", "amount": 5}) == ANN_5


def test_an_on_event_fn_whose_parameter_has_a_default_takes_the_payload() -> None:
    def note(text: str = "none") -> str:
        return f"got {text}"

    handler = pf.OnEvent("note", note).handler
    assert handler.handle(pf.CallbackRequest(name="note"), '"hello"') == "got hello"
    with pytest.raises(pf.PayloadError):
        handler.handle(pf.CallbackRequest(name="note"), {"not": "a str"})


async def test_a_callable_object_fn_does_not_keep_the_workflow_alive_after_its_callback() -> None:
    wf = CallableInbox(Approver)
    await pf.resume(wf, wf.state, no_checkpoint)
    await pf.handle_callback(pf.CallbackRequest(name="decision"), wf, wf.state, ANN_5)
    received = weakref.ref(wf.received)  # the list the fn object holds
    del wf
    gc.collect()
    assert received() is None


# -- handle_callback: errors -----------------------------------------------------------


async def test_a_callback_for_an_unknown_event_raises_callback_not_found(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    before = parked.state.model_dump_json()
    with pytest.raises(pf.CallbackNotFound):
        await parked.send("nonexistent")
    assert parked.state.model_dump_json() == before


async def test_a_callback_for_an_event_of_a_wait_not_yet_reached_raises_callback_not_found(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    with pytest.raises(pf.CallbackNotFound):
        await parked.send("finish")


async def test_a_second_callback_for_a_delivered_event_raises_callback_not_found(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    after_first = parked.state.model_dump_json()
    with pytest.raises(pf.CallbackNotFound):
        await parked.send("approve")
    assert parked.state.model_dump_json() == after_first
    assert parked.handlers.names("handle") == ["approve"]


async def test_a_callback_for_another_event_of_a_delivered_wait_raises_callback_not_found(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    with pytest.raises(pf.CallbackNotFound):
        await parked.send("deny")


async def test_a_callback_for_an_event_of_a_wait_that_was_left_raises_callback_not_found(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    with pytest.raises(pf.CallbackNotFound):
        await parked.send("deny")
    assert parked.handlers.names("handle") == ["approve"]


async def test_a_failing_handler_raises_handler_error_with_the_cause_chained(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    parked.handlers.fail_next("handle", "approve")
    with pytest.raises(pf.HandlerError) as caught:
        await parked.send("approve")
    assert isinstance(caught.value.__cause__, HandlerFailure)


async def test_handler_error_names_the_event_and_the_thread(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    parked.handlers.fail_next("handle", "approve")
    with pytest.raises(pf.HandlerError) as caught:
        await parked.send("approve")
    assert (caught.value.event, caught.value.thread_id) == ("approve", pf.MAIN_THREAD)
    assert "event 'approve' in thread '_main_'" in str(caught.value)


async def test_a_failing_handler_changes_no_state_and_the_event_stays_parked(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    parked.handlers.fail_next("handle", "approve")
    before = parked.state.model_dump()
    with pytest.raises(pf.HandlerError):
        await parked.send("approve")
    assert parked.state.model_dump() == before
    await parked.send("approve")
    assert thread(parked.state).cur_callback == "approve"


async def test_a_callback_to_a_finished_workflow_raises_workflow_finished_error(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await parked.send("approve")
    await parked.resume()
    await parked.send("finish")
    await parked.resume()
    with pytest.raises(pf.WorkflowFinishedError):
        await parked.send("finish")


async def test_a_callback_to_a_cancelled_workflow_raises_workflow_finished_error(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    await pf.cancel(parked, parked.state, no_checkpoint, reason="no longer needed")
    before = parked.state.model_dump_json()
    with pytest.raises(pf.WorkflowFinishedError):
        await parked.send("approve")
    assert parked.state.model_dump_json() == before
    assert parked.handlers.of("handle") == []


# -- handle_callback: pc ----------------------------------------------------------------


@dataclass
class Ticker:
    """The main thread waits for ``tick`` three times in a loop."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    ticks: int = 0
    state: pf.State = field(default_factory=lambda: pf.State.new("ticker-1", "ticker"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.For(
                "ticks",
                lambda: self.ticks < 3,
                pf.Wait(
                    "tick wait", pf.On("tick", RecordingHandler(self.handlers), pf.Step("count", self.count))
                ),
            ),
        )

    def count(self) -> None:
        self.ticks += 1

    async def tick(self, **req: Any) -> None:
        await pf.handle_callback(pf.CallbackRequest(name="tick", **req), self, self.state, None)
        await pf.resume(self, self.state, no_checkpoint)


async def test_a_parked_events_pc_is_its_threads_pc_when_it_parked() -> None:
    wf = TwoWaits()
    await wf.resume()
    main = thread(wf.state)
    assert main.pc > 0
    assert {e.req.pc for e in main.wait_events} == {main.pc}


async def test_a_callback_counts_one_transition_on_the_state_and_the_thread(
    handler_class: type[RecordingHandler],
) -> None:
    parked = await parked_two_waits(handler_class)
    state_pc, thread_pc = parked.state.pc, thread(parked.state).pc
    await parked.send("approve")
    assert (parked.state.pc, thread(parked.state).pc) == (state_pc + 1, thread_pc + 1)


async def test_every_parking_of_a_wait_in_a_loop_has_a_higher_pc() -> None:
    wf = Ticker()
    await pf.resume(wf, wf.state, no_checkpoint)
    pcs = [event(wf.state, "tick").req.pc]
    for _ in range(2):
        await wf.tick()
        pcs.append(event(wf.state, "tick").req.pc)
    assert pcs == sorted(set(pcs))


async def test_a_wait_in_a_loop_sets_up_and_tears_down_its_events_at_each_parking() -> None:
    wf = Ticker()
    await pf.resume(wf, wf.state, no_checkpoint)
    for _ in range(3):
        await wf.tick()
    assert wf.handlers.names("setup") == ["tick"] * 3
    assert wf.handlers.teardowns() == [("tick", True)] * 3
    assert len({c.req.pc for c in wf.handlers.of("setup")}) == 3


async def test_a_callback_with_the_pc_of_an_earlier_parking_raises_stale_callback() -> None:
    wf = Ticker()
    await pf.resume(wf, wf.state, no_checkpoint)
    first_pc = event(wf.state, "tick").req.pc
    await wf.tick(pc=first_pc)
    before = wf.state.model_dump_json()
    with pytest.raises(pf.StaleCallback):
        await wf.tick(pc=first_pc)
    assert wf.state.model_dump_json() == before
    assert wf.ticks == 1


async def test_a_callback_with_the_current_pc_is_delivered() -> None:
    wf = Ticker()
    await pf.resume(wf, wf.state, no_checkpoint)
    await wf.tick()
    await wf.tick(pc=event(wf.state, "tick").req.pc)
    assert wf.ticks == 2


async def test_a_callback_without_pc_is_delivered_to_the_current_parking() -> None:
    wf = Ticker()
    await pf.resume(wf, wf.state, no_checkpoint)
    for _ in range(3):
        await wf.tick(pc=0)
    assert wf.ticks == 3
    assert wf.state.status == pf.WorkflowStatus.FINISHED


# -- handle_callback: choosing a thread -------------------------------------------------


@dataclass
class Pickers:
    """Two threads of the Go name ``picker`` (ids ``picker-1``, ``picker-2``) wait for ``take``."""

    handlers: HandlerLog = field(default_factory=HandlerLog)
    started: int = 0
    state: pf.State = field(default_factory=lambda: pf.State.new("pickers-1", "pickers"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.For(
                "spawn",
                lambda: self.started < 2,
                pf.Step("start one", self.start_one),
                pf.Go(
                    "picker",
                    pf.Wait("pick", pf.On("take", RecordingHandler(self.handlers, reply="taken"))),
                    id=lambda: f"picker-{self.started}",
                ),
            ),
            pf.Wait("hold", pf.On("release", RecordingHandler(self.handlers))),
        )

    def start_one(self) -> None:
        self.started += 1


async def parked_pickers() -> Pickers:
    wf = Pickers()
    await pf.resume(wf, wf.state, no_checkpoint)
    assert [t.id for t in wf.state.threads] == [pf.MAIN_THREAD, "picker-1", "picker-2"]
    return wf


async def test_a_callback_with_a_thread_id_is_delivered_to_that_thread() -> None:
    pickers = await parked_pickers()
    req = pf.CallbackRequest(name="take", thread_id="picker-2")
    assert await pf.handle_callback(req, pickers, pickers.state, None) == "taken"
    assert thread(pickers.state, "picker-2").status == pf.ThreadStatus.RESUMING
    assert thread(pickers.state, "picker-1").status == pf.ThreadStatus.WAITING_EVENT
    assert [c.req.thread_id for c in pickers.handlers.of("handle")] == ["picker-2"]


async def test_a_callback_without_a_thread_id_goes_to_the_first_thread_parked_on_the_event() -> None:
    pickers = await parked_pickers()
    await pf.handle_callback(pf.CallbackRequest(name="take"), pickers, pickers.state, None)
    assert thread(pickers.state, "picker-1").status == pf.ThreadStatus.RESUMING
    assert thread(pickers.state, "picker-2").status == pf.ThreadStatus.WAITING_EVENT


async def test_the_second_callback_without_a_thread_id_goes_to_the_next_parked_thread() -> None:
    pickers = await parked_pickers()
    for _ in range(2):
        await pf.handle_callback(pf.CallbackRequest(name="take"), pickers, pickers.state, None)
    assert [c.req.thread_id for c in pickers.handlers.of("handle")] == ["picker-1", "picker-2"]


@pytest.mark.parametrize("thread_id", ["picker-3", pf.MAIN_THREAD], ids=["unknown", "parked-elsewhere"])
async def test_a_callback_for_a_thread_that_is_not_parked_on_the_event_raises_callback_not_found(
    thread_id: str,
) -> None:
    pickers = await parked_pickers()
    req = pf.CallbackRequest(name="take", thread_id=thread_id)
    with pytest.raises(pf.CallbackNotFound):
        await pf.handle_callback(req, pickers, pickers.state, None)


async def test_callback_not_found_for_a_thread_id_names_that_thread() -> None:
    pickers = await parked_pickers()
    req = pf.CallbackRequest(name="take", thread_id="picker-3")
    with pytest.raises(pf.CallbackNotFound) as caught:
        await pf.handle_callback(req, pickers, pickers.state, None)
    assert str(caught.value).startswith("thread 'picker-3' of ")
    assert "is not parked on event 'take'" in str(caught.value)


async def test_a_request_that_is_not_a_callback_request_raises_type_error_and_changes_nothing() -> None:
    pickers = await parked_pickers()
    before = pickers.state.model_dump_json()
    with pytest.raises(TypeError, match="CallbackRequest"):
        await pf.handle_callback({"name": "take"}, pickers, pickers.state, None)  # type: ignore[arg-type]
    assert pickers.state.model_dump_json() == before
    assert pickers.handlers.of("handle") == []


async def test_a_thread_that_got_its_callback_ends_after_resume_and_the_other_keeps_waiting() -> None:
    pickers = await parked_pickers()
    req = pf.CallbackRequest(name="take", thread_id="picker-2")
    await pf.handle_callback(req, pickers, pickers.state, None)
    await pf.resume(pickers, pickers.state, no_checkpoint)
    assert [t.id for t in pickers.state.threads] == [pf.MAIN_THREAD, "picker-1"]
    assert pickers.handlers.teardowns() == [("take", True)]
