"""Random workflows for the replay property (issue #2), and the driver that runs them.

A *program* is a small recursive spec (pydantic models) stored in the workflow's
own data; ``RandomWorkflow.definition()`` builds the procflow tree from it and
from the current data. Every step, handler, setup, teardown, WaitFor handler
and compensation records what it did:

* in the workflow's data (``trace``, ``counts``), which the store saves and a
  crash therefore rolls back, and
* in ``effects``, a log outside the data (a private attribute, never
  serialised): the side effects the world saw, which a crash cannot undo.

``drive`` runs a workflow to its end the way an engine would: ``resume``, then
deliver one parked event (chosen by a recorded list of choices, indexed by the
number of deliveries so far, which is part of the data), save, ``resume``
again, ... and ``cancel(compensate=True)`` when it is stuck.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Literal

from hypothesis import strategies as st
from pydantic import BaseModel, Field, PrivateAttr

import procflow as pf

MAX_DELIVERIES = 30
"""A driver stops delivering events after this many (then it cancels)."""

MAX_DEPTH = 3
MAX_STATEMENTS = 12

# -- the program spec ----------------------------------------------------------


class CondSpec(BaseModel):
    """A condition: a constant, or the parity of a count in the data.

    ``lazy`` conditions are callables evaluated when the interpreter reaches
    them; the others are bools evaluated when the tree is built.
    """

    kind: Literal["const", "odd", "even"] = "const"
    value: bool = True
    ref: str = ""
    lazy: bool = True


class StepSpec(BaseModel):
    kind: Literal["step"] = "step"
    name: str
    compensate: bool = False
    asynchronous: bool = False


class CaseSpec(BaseModel):
    cond: CondSpec
    body: list[Node] = Field(default_factory=list)


class IfSpec(BaseModel):
    """``If(...).elif_(...)...else_(...)``: case ``i`` is named ``{name}.{i}``."""

    kind: Literal["if"] = "if"
    name: str
    cases: list[CaseSpec]
    default: list[Node] | None = None


class ForSpec(BaseModel):
    """``Step({name}.init)`` then ``For(name, loops[name] < times, Step({name}.inc), *body)``."""

    kind: Literal["for"] = "for"
    name: str
    times: int
    lazy: bool = True
    body: list[Node] = Field(default_factory=list)


class JumpSpec(BaseModel):
    """``If(cond, name, Break())`` or ``If(cond, name, Continue())``."""

    kind: Literal["break", "continue", "return"]
    name: str
    cond: CondSpec


class GoSpec(BaseModel):
    """``Step({name}.spawn)`` then ``Go(name, S(*body), id={name}#{spawn count})``.

    Not ``spawned``: a plain ``Go(name, S(*body))``, whose thread id is its
    name (only where it cannot run twice at a time: under no loop).
    """

    kind: Literal["go"] = "go"
    name: str
    spawned: bool = True
    body: list[Node] = Field(default_factory=list)


class EventSpec(BaseModel):
    """An ``OnEvent`` (``custom=False``) or an ``On`` with a ``RecordingHandler``."""

    name: str
    custom: bool = False
    body: list[Node] = Field(default_factory=list)


class WaitSpec(BaseModel):
    kind: Literal["wait"] = "wait"
    name: str
    events: list[EventSpec]


class WaitForSpec(BaseModel):
    """``WaitFor(name, counts[ref] >= at_least, handler)``."""

    kind: Literal["waitfor"] = "waitfor"
    name: str
    ref: str = ""
    at_least: int = 1
    handler: bool = False


Node = Annotated[
    StepSpec | IfSpec | ForSpec | JumpSpec | GoSpec | WaitSpec | WaitForSpec,
    Field(discriminator="kind"),
]

for _model in (CaseSpec, IfSpec, ForSpec, GoSpec, EventSpec, WaitSpec):
    _model.model_rebuild()


class Program(BaseModel):
    """The main thread's statements.

    A ``shifting`` program puts ``len(trace) % 3`` empty ``If``s before them,
    so the tree changes shape as the run goes on (as a new version of a
    definition may): every position's path moves, its name stays.
    """

    body: list[Node]
    closing: list[Node] | None = None
    """Main's last statement: ``Wait("closing", OnEvent("close", *closing))``."""
    shifting: bool = False
    joining: bool = False
    """Whether every thread ends with ``Step({go}.done)`` and main with ``wg.wait("join")``."""


# -- the workflow ----------------------------------------------------------------


class RecordingHandler(pf.Handler):
    """A custom event handler that records its setup, handling and teardown."""

    type = "recording"

    def __init__(self, wf: RandomWorkflow) -> None:
        self.wf = wf

    def setup(self, req: pf.CallbackRequest) -> str:
        self.wf.effect(f"setup {req.name}@{req.thread_id}")
        return f"{req.name}@{req.thread_id}"

    async def handle(self, req: pf.CallbackRequest, payload: Any) -> str:
        assert req.setup_data == f"{req.name}@{req.thread_id}", "handle got a request without its setup_data"
        self.wf.handled(req.name, payload, req.thread_id)
        return f"handled {req.name}"

    def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
        self.wf.effect(f"teardown {req.name}@{req.thread_id} handled={handled}")


class RandomWorkflow(BaseModel):
    """Workflow data whose definition is built from ``program``."""

    program: Program
    trace: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    loops: dict[str, int] = Field(default_factory=dict)
    deliveries: int = 0
    wg: pf.WaitGroup = Field(default_factory=pf.WaitGroup)
    _effects: list[str] = PrivateAttr(default_factory=list)

    # -- effects ---------------------------------------------------------------

    def effect(self, what: str) -> None:
        self._effects.append(what)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def step(self, name: str) -> None:
        self.effect(f"step {name}")
        self.trace.append(name)
        self.count(name)

    async def async_step(self, name: str) -> None:
        self.step(name)

    def undo(self, name: str) -> None:
        # Changes only the trace: no condition reads it, so a cancel cut short
        # leaves nothing for a resume to run.
        self.effect(f"undo {name}")
        self.trace.append(f"undo {name}")

    def init_loop(self, name: str) -> None:
        self.step(f"{name}.init")
        self.loops[name] = 0

    def next_iteration(self, name: str) -> None:
        self.step(f"{name}.inc")
        self.loops[name] = self.loops.get(name, 0) + 1

    def handled(self, event: str, payload: Any, thread_id: str = "") -> None:
        self.effect(f"handle {event}@{thread_id}" if thread_id else f"handle {event}")
        self.trace.append(f"{event}={payload}")
        self.count(event)
        self.deliveries += 1

    def waitfor_handler(self, name: str) -> None:
        self.effect(f"waitfor {name}")
        self.trace.append(name)
        self.count(name)

    def spawn(self, go: str) -> None:
        self.step(f"{go}.spawn")
        if self.program.joining:
            self.wg.add()

    def thread_done(self, go: str) -> None:
        self.step(f"{go}.done")
        self.wg.done()

    def thread_id(self, go: str) -> str:
        return f"{go}#{self.counts.get(f'{go}.spawn', 0)}"

    # -- the tree --------------------------------------------------------------

    def definition(self) -> pf.Section:
        shift = len(self.trace) % 3 if self.program.shifting else 0
        padding = [pf.If(False, f"pad{i}") for i in range(shift)]
        body = self.block(self.program.body)
        if self.program.closing is not None:
            close = pf.OnEvent("close", self.on_event("close"), *self.block(self.program.closing))
            body.append(pf.Wait("closing", close))
        if self.program.joining:
            body.append(self.wg.wait("join"))
        return pf.S(*padding, *body)

    def block(self, nodes: list[Any]) -> list[pf.Stmt]:
        return [stmt for node in nodes for stmt in self.statements(node)]

    def cond(self, spec: CondSpec) -> bool | Callable[[], bool]:
        if spec.kind == "const":
            return spec.value

        def holds() -> bool:
            parity = self.counts.get(spec.ref, 0) % 2
            return parity == (1 if spec.kind == "odd" else 0)

        return holds if spec.lazy else holds()

    def on_event(self, name: str) -> Callable[[int], Awaitable[str]]:
        async def on_event(payload: int) -> str:
            self.handled(name, payload)
            return f"handled {name}"

        return on_event

    def statements(self, node: Any) -> list[pf.Stmt]:
        match node:
            case StepSpec(name=name):
                action = partial(self.async_step if node.asynchronous else self.step, name)
                undo = partial(self.undo, name) if node.compensate else None
                return [pf.Step(name, action, compensate=undo)]
            case IfSpec(name=name):
                first, *others = node.cases
                switch = pf.If(self.cond(first.cond), f"{name}.0", *self.block(first.body))
                for i, case in enumerate(others, 1):
                    switch = switch.elif_(self.cond(case.cond), f"{name}.{i}", *self.block(case.body))
                if node.default is not None:
                    switch = switch.else_(f"{name}.else", *self.block(node.default))
                return [switch]
            case ForSpec(name=name, times=times):

                def more() -> bool:
                    return self.loops.get(name, 0) < times

                return [
                    pf.Step(f"{name}.init", partial(self.init_loop, name)),
                    pf.For(
                        name,
                        more if node.lazy else more(),
                        pf.Step(f"{name}.inc", partial(self.next_iteration, name)),
                        *self.block(node.body),
                    ),
                ]
            case JumpSpec(name=name, kind=kind):
                jump = {"break": pf.Break, "continue": pf.Continue, "return": pf.Return}[kind]()
                return [pf.If(self.cond(node.cond), name, jump)]
            case GoSpec(name=name):
                body = self.block(node.body)
                if self.program.joining:
                    body.append(pf.Step(f"{name}.done", partial(self.thread_done, name)))
                if not node.spawned:
                    return [pf.Go(name, pf.S(*body))]
                return [
                    pf.Step(f"{name}.spawn", partial(self.spawn, name)),
                    pf.Go(name, pf.S(*body), id=partial(self.thread_id, name)),
                ]
            case WaitSpec(name=name):
                events = [
                    pf.On(e.name, RecordingHandler(self), *self.block(e.body))
                    if e.custom
                    else pf.OnEvent(e.name, self.on_event(e.name), *self.block(e.body))
                    for e in node.events
                ]
                return [pf.Wait(name, *events)]
            case WaitForSpec(name=name, ref=ref, at_least=at_least):
                handler = partial(self.waitfor_handler, name) if node.handler else None
                return [pf.WaitFor(name, lambda: self.counts.get(ref, 0) >= at_least, handler)]
        raise AssertionError(f"unknown node {node!r}")


def workflow_class() -> type[RandomWorkflow]:
    """A class of its own for one example, so that nothing kept per class
    (by pydantic, or by procflow in a later version) links one example to the next.
    """
    return type("RandomWorkflow", (RandomWorkflow,), {"__module__": __name__})


def new_workflow(
    cls: type[RandomWorkflow], program: Program, effects: list[str] | None = None
) -> tuple[RandomWorkflow, pf.State]:
    wf = cls(program=program)
    if effects is not None:
        wf._effects = effects
    return wf, pf.State.new("wf-1", "random")


def restore(
    cls: type[RandomWorkflow], snapshot: Snapshot, effects: list[str]
) -> tuple[RandomWorkflow, pf.State]:
    """Fresh workflow data and State from a stored snapshot; effects go on in ``effects``."""
    wf = cls.model_validate_json(snapshot.data)
    wf._effects = effects
    return wf, pf.State.model_validate_json(snapshot.state)


# -- the generator -----------------------------------------------------------------


class _Generator:
    """Draws one program: unique names, bounded size and depth, valid jumps."""

    def __init__(self, draw: st.DrawFn, budget: int, joining: bool) -> None:
        self.draw = draw
        self.budget = budget
        self.joining = joining
        self.serial = 0
        self.loops = 0  # how many loops (of any thread) the statement being drawn is in
        # Names whose count a condition can read (those counted in Go threads
        # also in ``threaded``: waiting for another thread is what makes a
        # WaitFor interesting), and the specs whose ``ref`` is chosen among
        # them once the whole program is drawn.
        self.counted: list[str] = []
        self.threaded: list[str] = []
        self.in_thread = 0
        self.refs: list[tuple[CondSpec | WaitForSpec, list[str], int]] = []

    def name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def counts(self, *names: str) -> None:
        self.counted += names
        if self.in_thread:
            self.threaded += names

    def ref(self, spec: CondSpec | WaitForSpec) -> None:
        """Make ``spec`` read the count of a name drawn before it, preferably one in a thread."""
        in_thread = self.threaded and self.draw(st.integers(0, 3)) != 0
        among = self.threaded[:] if in_thread else self.counted[:]
        self.refs.append((spec, among, self.draw(st.integers(0, 50))))

    def program(self) -> Program:
        closes = self.draw(st.booleans())
        reserved = 3 if closes else 0  # statements kept for the closing Wait's event
        self.budget -= reserved
        body = self.block(depth=0, in_loop=False, min_size=2, max_size=6)
        self.budget += reserved
        closing = self.block(depth=1, in_loop=False, min_size=1) if closes else None
        for spec, among, i in self.refs:
            among = among or self.counted
            spec.ref = among[i % len(among)] if among else "nothing"
        return Program(body=body, closing=closing, shifting=self.draw(st.booleans()), joining=self.joining)

    def block(self, depth: int, in_loop: bool, min_size: int = 0, max_size: int = 2) -> list[Any]:
        size = self.draw(st.integers(min_size, max_size))
        nodes = []
        for _ in range(size):
            if self.budget <= 0:
                break
            self.budget -= 1
            nodes.append(self.node(depth, in_loop))
        return nodes

    def cond(self) -> CondSpec:
        kind = self.draw(st.sampled_from(["const", "odd", "even"]))
        spec = CondSpec(kind=kind, value=self.draw(st.booleans()), lazy=self.draw(st.booleans()))
        if kind != "const":
            self.ref(spec)
        return spec

    def node(self, depth: int, in_loop: bool) -> Any:
        # Repeated kinds are drawn more often; the first one is what shrinking aims for.
        kinds = ["step", "wait", "step", "wait", "step", "return"]
        if self.counted:  # a WaitFor waits for something drawn before it
            kinds += ["waitfor", "waitfor"]
        if depth < MAX_DEPTH:
            kinds += ["go", "if", "for", "go", "go"]
        if in_loop:
            kinds += ["break", "continue"]
        kind = self.draw(st.sampled_from(kinds))
        inner = depth + 1
        match kind:
            case "step":
                name = self.name("s")
                self.counts(name)
                return StepSpec(
                    name=name, compensate=self.draw(st.booleans()), asynchronous=self.draw(st.booleans())
                )
            case "if":
                name = self.name("c")
                cases = [
                    CaseSpec(cond=self.cond(), body=self.block(inner, in_loop))
                    for _ in range(self.draw(st.integers(1, 2)))
                ]
                default = self.block(inner, in_loop) if self.draw(st.booleans()) else None
                return IfSpec(name=name, cases=cases, default=default)
            case "for":
                name = self.name("L")
                self.counts(f"{name}.init", f"{name}.inc")
                times = self.draw(st.integers(0, 2))
                lazy = self.draw(st.booleans())
                self.loops += 1
                body = self.block(inner, True)
                self.loops -= 1
                return ForSpec(name=name, times=times, lazy=lazy, body=body)
            case "break" | "continue" | "return":
                return JumpSpec(kind=kind, name=self.name(kind[0]), cond=self.cond())
            case "go":
                name = self.name("g")
                spawned = self.joining or self.loops > 0 or self.draw(st.booleans())
                if spawned:
                    self.counts(f"{name}.spawn")
                self.in_thread += 1
                body = self.block(inner, False, min_size=1, max_size=3)
                if self.joining:
                    self.counts(f"{name}.done")
                self.in_thread -= 1
                return GoSpec(name=name, spawned=spawned, body=body)
            case "wait":
                name = self.name("w")
                events = []
                for _ in range(self.draw(st.integers(1, 3))):
                    event = self.name(f"{name}.e")
                    self.counts(event)
                    body = self.block(inner, in_loop)
                    events.append(EventSpec(name=event, custom=self.draw(st.booleans()), body=body))
                return WaitSpec(name=name, events=events)
            case _:
                name = self.name("f")
                handler = self.draw(st.booleans())
                spec = WaitForSpec(
                    name=name, at_least=self.draw(st.sampled_from([1, 1, 1, 2])), handler=handler
                )
                self.ref(spec)
                if handler:
                    self.counts(name)
                return spec


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """A random program of at most ``MAX_STATEMENTS`` statements, nested at most ``MAX_DEPTH`` deep."""
    budget = draw(st.integers(4, MAX_STATEMENTS))
    return _Generator(draw, budget, joining=draw(st.integers(0, 2)) == 2).program()


# -- the driver ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the store holds after one checkpoint (or at the start)."""

    kind: str
    data: str
    state: str
    effects: int
    """How many effects had happened when it was taken."""


class Crash(Exception):
    """Simulates the process dying inside a checkpoint, before the store wrote it."""


@dataclass
class Store:
    """The checkpoint callback: keeps every snapshot; raises ``Crash`` at checkpoint ``crash_at``.

    Snapshot 0 is what the store held before the run; snapshot ``j`` is the one
    written by the ``j``-th checkpoint.
    """

    wf: RandomWorkflow
    state: pf.State
    crash_at: int | None = None
    snapshots: list[Snapshot] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.write("START")

    def write(self, kind: str) -> None:
        self.snapshots.append(
            Snapshot(kind, self.wf.model_dump_json(), self.state.model_dump_json(), len(self.wf._effects))
        )

    async def __call__(self, kind: str) -> None:
        if len(self.snapshots) == self.crash_at:
            raise Crash(f"crash at checkpoint {self.crash_at} ({kind})")
        self.write(str(kind))


def parked_events(state: pf.State) -> list[pf.CallbackRequest]:
    """A callback request (name, thread id and pc) for every event that is set up, in thread order."""
    return [
        pf.CallbackRequest(name=e.req.name, thread_id=t.id, pc=e.req.pc)
        for t in state.threads
        if t.status == pf.ThreadStatus.WAITING_EVENT
        for e in t.wait_events
        if e.status == pf.WaitEventStatus.SETUP
    ]


async def drive(wf: RandomWorkflow, state: pf.State, store: Store, choices: list[int]) -> None:
    """Run the workflow to its end, delivering events in the order ``choices`` gives.

    Delivery ``i`` picks ``parked[choices[i] % len(parked)]``; ``i`` is
    ``wf.deliveries``, which is stored with the data, so a run continued from
    a snapshot makes the same choices. Starts with ``resume`` (or ``cancel``,
    when a cancel was cut short), so it continues a stored state from wherever
    it was saved.
    """
    done = (pf.WorkflowStatus.FINISHED, pf.WorkflowStatus.CANCELLED)
    while state.status not in done:
        if state.reason:  # a cancel was cut short: only cancel carries on
            await pf.cancel(wf, state, store, reason=state.reason, compensate=True)
            return
        await pf.resume(wf, state, store)
        if state.status in done:
            return
        parked = parked_events(state)
        i = wf.deliveries
        if not parked or i >= MAX_DELIVERIES:
            await pf.cancel(wf, state, store, reason="stuck", compensate=True)
            return
        req = parked[(choices[i] if i < len(choices) else 0) % len(parked)]
        await pf.handle_callback(req, wf, state, i)
        await store("AFTER_CALLBACK")  # the engine saves before it resumes


def without_pcs(state: pf.State) -> dict[str, Any]:
    """The state as a dict with every ``pc`` zeroed.

    A continued run counts one more transition (the resume of the thread that
    was running), so its counters legitimately differ.
    """
    dumped = state.model_dump(mode="json")
    dumped["pc"] = 0
    for t in dumped["threads"]:
        t["pc"] = 0
        for e in t["wait_events"]:
            e["req"]["pc"] = 0
    return dumped
