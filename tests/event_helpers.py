"""Helpers for the event, cancel and checkpoint tests.

* ``RecordingHandler`` / ``AsyncRecordingHandler``: a ``Handler`` (sync or async)
  that records each call in a shared ``HandlerLog`` and fails on demand. The log
  outlives the handler objects, which ``definition()`` builds anew on every call.
* ``CheckpointRecorder`` / ``AsyncCheckpointRecorder``: a checkpoint callback
  that stores ``(kind, state.model_dump_json())`` for each successful call and
  can be told to raise at a given call.
* ``TwoWaits``: a small workflow (a step, a Wait with two events, a second Wait)
  used across the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

import procflow as pf


class HandlerFailure(Exception):
    """Raised by a ``RecordingHandler`` method that was told to fail."""


class CheckpointFailed(Exception):
    """Raised by a ``CheckpointRecorder`` at the call it was told to fail."""


@dataclass(frozen=True)
class HandlerCall:
    """One call of a handler method, with a copy of the request it received."""

    method: str  # "setup", "handle" or "teardown"
    req: pf.CallbackRequest
    payload: Any = None
    handled: bool | None = None

    @property
    def name(self) -> str:
        return self.req.name


@dataclass
class HandlerLog:
    """What the handlers of one workflow did, and which calls must fail.

    ``fail[(method, event name)]`` is how many more calls of that method for
    that event raise ``HandlerFailure``.
    """

    calls: list[HandlerCall] = field(default_factory=list)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)

    def fail_next(self, method: str, name: str, times: int = 1) -> None:
        self.fail[(method, name)] = times

    def of(self, method: str) -> list[HandlerCall]:
        return [c for c in self.calls if c.method == method]

    def names(self, method: str) -> list[str]:
        return [c.name for c in self.of(method)]

    def teardowns(self) -> list[tuple[str, bool | None]]:
        return [(c.name, c.handled) for c in self.of("teardown")]

    def record(self, call: HandlerCall) -> None:
        self.calls.append(call)
        key = (call.method, call.name)
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            raise HandlerFailure(f"{call.method} of {call.name!r} failed")


class RecordingHandler(pf.Handler):
    """A sync handler: setup returns ``"data:<event name>"``, handle returns ``reply``."""

    type = "recording"

    def __init__(self, log: HandlerLog, reply: Any = None) -> None:
        self.log = log
        self.reply = reply

    def setup(self, req: pf.CallbackRequest) -> str:
        self.log.record(HandlerCall("setup", req.model_copy()))
        return f"data:{req.name}"

    def handle(self, req: pf.CallbackRequest, payload: Any) -> Any:
        self.log.record(HandlerCall("handle", req.model_copy(), payload=payload))
        return self.reply

    def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        self.log.record(HandlerCall("teardown", req.model_copy(), handled=handled))


class AsyncRecordingHandler(RecordingHandler):
    """The same handler with async methods that yield to the event loop."""

    type = "async-recording"

    async def setup(self, req: pf.CallbackRequest) -> str:  # type: ignore[override]
        await anyio.sleep(0)
        return super().setup(req)

    async def handle(self, req: pf.CallbackRequest, payload: Any) -> Any:
        await anyio.sleep(0)
        return super().handle(req, payload)

    async def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:  # type: ignore[override]
        await anyio.sleep(0)
        super().teardown(req, handled)


HANDLER_CLASSES = [RecordingHandler, AsyncRecordingHandler]
"""Parametrize over these to cover sync and async handlers."""


class CheckpointRecorder:
    """A sync checkpoint callback recording ``(kind, state JSON)`` per successful call.

    ``fail_at`` (0-based, counting every call) makes that call raise
    ``CheckpointFailed`` without recording it. ``on_save`` runs after each
    recorded call (e.g. to save the workflow data beside the state).
    """

    def __init__(
        self,
        state: pf.State,
        *,
        fail_at: int | None = None,
        on_save: Callable[[pf.CheckpointType], None] | None = None,
    ) -> None:
        self.state = state
        self.fail_at = fail_at
        self.on_save = on_save
        self.calls: list[tuple[pf.CheckpointType, str]] = []
        self.count = 0

    def __call__(self, kind: pf.CheckpointType) -> None:
        self.record(kind)

    def record(self, kind: pf.CheckpointType) -> None:
        n = self.count
        self.count += 1
        if n == self.fail_at:
            raise CheckpointFailed(f"checkpoint {n} ({kind}) failed")
        self.calls.append((kind, self.state.model_dump_json()))
        if self.on_save is not None:
            self.on_save(kind)

    @property
    def kinds(self) -> list[pf.CheckpointType]:
        return [kind for kind, _ in self.calls]

    @property
    def states(self) -> list[pf.State]:
        return [pf.State.model_validate_json(js) for _, js in self.calls]

    @property
    def last_json(self) -> str:
        return self.calls[-1][1]


class AsyncCheckpointRecorder(CheckpointRecorder):
    """The same recorder as an async callback."""

    async def __call__(self, kind: pf.CheckpointType) -> None:  # type: ignore[override]
        await anyio.sleep(0)
        self.record(kind)


RECORDER_CLASSES = [CheckpointRecorder, AsyncCheckpointRecorder]
"""Parametrize over these to cover sync and async checkpoints."""


def no_checkpoint(kind: pf.CheckpointType) -> None:
    """A checkpoint callback that stores nothing."""


def thread(state: pf.State, thread_id: str = pf.MAIN_THREAD) -> pf.Thread:
    """The thread of ``state`` with id ``thread_id``."""
    for t in state.threads:
        if t.id == thread_id:
            return t
    raise AssertionError(f"no thread {thread_id!r} in {[t.id for t in state.threads]}")


def event(state: pf.State, name: str, thread_id: str = pf.MAIN_THREAD) -> pf.WaitEvent:
    """The event named ``name`` that thread ``thread_id`` holds."""
    found = [e for e in thread(state, thread_id).wait_events if e.req.name == name]
    assert len(found) == 1, f"expected one event {name!r}, got {found}"
    return found[0]


@dataclass
class TwoWaits:
    """``before``; Wait ``decision`` (``approve`` -> step ``approved``, ``deny`` ->
    step ``denied``); Wait ``next`` (``finish``); step ``after``."""

    handler_class: type[RecordingHandler] = RecordingHandler
    handlers: HandlerLog = field(default_factory=HandlerLog)
    reply: Any = None
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("two-waits-1", "two-waits"))

    def definition(self) -> pf.Stmt:
        def h() -> RecordingHandler:
            return self.handler_class(self.handlers, self.reply)

        return pf.S(
            pf.Step("before", lambda: self.log.append("before")),
            pf.Wait(
                "decision",
                pf.On("approve", h(), pf.Step("approved", lambda: self.log.append("approved"))),
                pf.On("deny", h(), pf.Step("denied", lambda: self.log.append("denied"))),
            ),
            pf.Wait("next", pf.On("finish", h())),
            pf.Step("after", lambda: self.log.append("after")),
        )

    async def resume(self, checkpoint: pf.Checkpoint = no_checkpoint) -> None:
        await pf.resume(self, self.state, checkpoint)

    async def send(self, name: str, payload: Any = None, **req: Any) -> Any:
        return await pf.handle_callback(pf.CallbackRequest(name=name, **req), self, self.state, payload)
