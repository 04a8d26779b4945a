"""The engine's stored form of a State: compact, and decoded back to an equal State."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procflow import CallbackRequest, State, Thread, ThreadStatus, WaitEvent, WaitEventStatus, WorkflowStatus
from procflow.state_codec import decode_state, encode_state

ID = "b3f6c1a2-6d1e-4f7a-9a51-2f0f8e1c9d10"

names = st.sampled_from(["_main_", "approve", "t-1", "1", "", "ünï"])


@st.composite
def states(draw: st.DrawFn) -> State:
    threads = []
    for thread_id in draw(st.lists(names.filter(bool), unique=True, max_size=3)):
        events = [
            WaitEvent(
                type=draw(st.sampled_from(["event", "timer", "custom"])),
                req=CallbackRequest(
                    workflow_id=draw(st.sampled_from([ID, "other"])),
                    thread_id=draw(st.sampled_from([thread_id, "elsewhere"])),
                    name=draw(names.filter(bool)),
                    pc=draw(st.integers(0, 40)),
                    setup_data=draw(st.sampled_from(["", '{"due": 12.5}'])),
                ),
                status=draw(st.sampled_from(list(WaitEventStatus))),
                handled=draw(st.booleans()),
                error=draw(st.sampled_from(["", "TimeoutError: late"])),
            )
            for _ in range(draw(st.integers(0, 2)))
        ]
        threads.append(
            Thread(
                id=thread_id,
                name=draw(st.sampled_from([thread_id, "worker"])),
                status=draw(st.sampled_from(list(ThreadStatus))),
                cur_step=draw(names),
                cur_callback=draw(names),
                wait_events=events,
                pc=draw(st.integers(0, 40)),
            )
        )
    return State(
        id=ID,
        workflow="order",
        status=draw(st.sampled_from([s for s in WorkflowStatus if s != WorkflowStatus.FAILED])),
        threads=threads,
        pc=draw(st.integers(0, 99)),
        completed=draw(st.lists(names.filter(bool), max_size=3)),
        reason=draw(st.sampled_from(["", "customer left"])),
    )


@given(states())
def test_a_state_decodes_to_what_was_encoded(state: State) -> None:
    assert decode_state(encode_state(state), state.id, state.workflow, state.status) == state


def parked() -> State:
    state = State.new(ID, "order")
    state.status = WorkflowStatus.WAITING
    state.pc = 2
    main = state.threads[0]
    main.status = ThreadStatus.WAITING_EVENT
    main.cur_step = "decision"
    main.pc = 2
    req = CallbackRequest(workflow_id=ID, thread_id=main.id, name="approve", pc=2)
    main.wait_events = [WaitEvent(type="event", req=req, status=WaitEventStatus.SETUP)]
    return state


def test_the_stored_text_leaves_out_what_the_row_already_says() -> None:
    text = encode_state(parked())
    for said_by_the_row in (ID, "order", '"WAITING"', "_main_"):
        assert said_by_the_row not in text


def test_a_state_written_by_procflow_0_1_still_decodes() -> None:
    old = (
        '{"threads":[{"id":"_main_","status":"WAITING_EVENT","cur_step":"decision","wait_events":'
        '[{"type":"event","req":{"name":"approve","pc":2},"status":"SETUP"}],"pc":2}],"pc":2}'
    )
    assert decode_state(old, ID, "order", "WAITING") == parked()


def test_a_failed_instances_state_is_resuming() -> None:
    assert decode_state("{}", ID, "order", "FAILED").status == WorkflowStatus.RESUMING


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[1, 2]",
        '{"threads": [{"status": "NAPPING"}]}',
        "{bad",
        '{"threads": null}',
        '{"threads": 5}',
        '{"threads": [{"wait_events": 7}]}',
        '{"threads": [{"wait_events": null}]}',
    ],
)
def test_text_that_is_not_a_state_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        decode_state(text, ID, "order", "WAITING")
