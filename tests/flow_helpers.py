"""Helpers shared by the statement, control-flow and thread tests.

``Flow`` is a workflow whose tree the test writes inline::

    wf = Flow(lambda f: pf.S(f.step("a"), f.step("b")))
    await run(wf)
    assert wf.log == ["a", "b"]

Every ``Flow`` instance shares one class, as instances of one workflow class do
in an application, so the trees of these tests also exercise the interpreter's
handling of different trees built by one class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import procflow as pf


@dataclass
class Checkpoints:
    """A ``checkpoint`` callback that records each kind and the State as it was then."""

    state: pf.State
    kinds: list[pf.CheckpointType] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, kind: pf.CheckpointType) -> None:
        self.kinds.append(kind)
        self.snapshots.append(self.state.model_dump())

    @property
    def last(self) -> dict[str, Any]:
        """The State at the most recent checkpoint."""
        return self.snapshots[-1]


@dataclass(eq=False)
class Flow:
    """A workflow whose definition is ``tree(self)``, with a little data to steer it."""

    tree: Callable[[Flow], pf.Stmt]
    state: pf.State = field(default_factory=lambda: pf.State.new("flow-1", "flow"))
    log: list[str] = field(default_factory=list)
    n: int = 0
    flag: bool = False
    wg: pf.WaitGroup = field(default_factory=pf.WaitGroup)

    def definition(self) -> pf.Stmt:
        return self.tree(self)

    def step(self, name: str, then: Callable[[], object] | None = None) -> pf.Step:
        """A step named ``name`` that appends ``name`` to ``log``, then calls ``then``."""

        def action() -> None:
            self.log.append(name)
            if then is not None:
                then()

        return pf.Step(name, action)

    def count(self, name: str) -> pf.Step:
        """A step named ``name`` that adds one to ``n`` and logs ``"<name> <n>"``."""

        def action() -> None:
            self.n += 1
            self.log.append(f"{name} {self.n}")

        return pf.Step(name, action)

    def set_flag(self) -> None:
        self.flag = True

    def threads(self) -> list[tuple[str, str, pf.ThreadStatus, str]]:
        """``(id, name, status, cur_step)`` of each stored thread, in order."""
        return [(t.id, t.name, t.status, t.cur_step) for t in self.state.threads]


async def run(
    wf: Any,
    state: pf.State | None = None,
    *,
    max_transitions: int = 10_000,
    hooks: pf.RunHooks | None = None,
) -> Checkpoints:
    """``resume`` ``wf`` (on ``wf.state`` by default) and return the checkpoints it took."""
    state = wf.state if state is None else state
    checkpoints = Checkpoints(state)
    await pf.resume(wf, state, checkpoints, max_transitions=max_transitions, hooks=hooks)
    return checkpoints


async def deliver(wf: Any, name: str, payload: Any = None, *, thread_id: str = "") -> Any:
    """Deliver event ``name`` (to ``thread_id`` if given), then ``resume``; return the reply."""
    reply = await pf.handle_callback(
        pf.CallbackRequest(name=name, thread_id=thread_id), wf, wf.state, payload
    )
    await run(wf)
    return reply


class RecordingHandler(pf.Handler):
    """A handler that appends ``(call, thread id, event name[, handled])`` to ``calls``."""

    type = "recording"

    def __init__(self, calls: list[tuple[object, ...]]) -> None:
        self.calls = calls

    def setup(self, req: pf.CallbackRequest) -> str:
        self.calls.append(("setup", req.thread_id, req.name))
        return "listening"

    def handle(self, req: pf.CallbackRequest, payload: Any) -> Any:
        self.calls.append(("handle", req.thread_id, req.name))
        return payload

    def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        self.calls.append(("teardown", req.thread_id, req.name, handled))
