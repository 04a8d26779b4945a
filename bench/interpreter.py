"""Benchmark of procflow's interpreter (issue 2, "Speed").

Run from the repository root:

    python bench/interpreter.py              # full run: 30 s idle, about 70 s on a busy machine
    python bench/interpreter.py --quick      # smoke mode, a few seconds
    python bench/interpreter.py --repeat 15  # more batches per measurement

It prints, in one run:

1. The Go original's benchmark workload: ``For(i<5){Step}``, a reset Step,
   ``For(i<2){Wait(event -> Step)}``; one run = resume, callback, resume,
   callback, resume, with a no-op checkpoint. The headline variant's event is
   an ``OnEvent`` whose handler takes an ``int`` payload (validated by
   pydantic); a second variant uses a custom ``Handler`` subclass instead.
2. Scaling: a straight line of N steps, a For loop of N iterations, N Go
   statements declared side by side, and N threads started from a For loop,
   for N = 10, 100, 1000, each in one ``resume``. For each: the time per step,
   the part spent in the workflow's own ``definition()`` and the rest (the
   interpreter's own work), ``definition()`` calls per transition, and how the
   interpreter's own work per step grows from N = 10 to N = 1000.

Method:

* Every number is the median over ``--repeat`` batches, taken after warm-up
  runs. Batches of all the variants of a section are interleaved round-robin,
  so a change in machine load hits them alike. ``gc.collect()`` runs before
  each batch; the GC stays enabled while timing. A batch holds enough runs to
  last about 50 ms (one run for the largest N); fresh workflow objects and
  ``State``s are built before a batch, outside the timed span.
* Time in ``definition()`` is measured by a subclass whose ``definition``
  wraps the workflow's with ``perf_counter_ns``. The wrapper's own cost,
  calibrated on an empty wrapped method, is taken out of both the definition
  time and the total. The wrapper also keeps the tree it returned last alive,
  so that the tree each call replaces is freed inside ``definition()``'s
  measured span (the interpreter lets go of it before the call; its last
  reference would otherwise charge the interpreter for freeing the user's N
  statements); the "(freeing)" column shows that part.
* "control" rows (line and Go declared only, whose definitions grow with N):
  the N = 10 workflow whose ``definition()`` also builds, and holds until its
  next call, the statements the N = 1000 tree would add. The interpreter sees
  a 10-statement tree, but the process allocates, frees and garbage-collects
  as at N = 1000. A "rest" that grows as much in the control as at N = 1000
  grows from the definition's size (caches, allocator, GC), not from the
  interpreter's own algorithm.
* The interpreter remembers the tree shapes it has checked, per workflow
  class (``procflow.statements.ShapeCache``); the warm-up runs fill it, so
  the timed runs measure the steady state, in which each call's first tree
  is checked by comparing it with its remembered shape.
* One asyncio event loop (through anyio) runs everything.

The numbers of other implementations are quoted from issue 2, not measured
here. Nothing here asserts on time; a workload that does not do what it should
(step count, final status) stops the script.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Measure the procflow of the checkout this script lives in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
from _revision import git_revision

import procflow as pf

perf_counter_ns = time.perf_counter_ns

# Quoted from issue 2 ("Speed"); NOT measured by this script.
QUOTED_GO_US_PER_RUN = (15, 18)  # the Go original, same workload, "on these machines"
QUOTED_GO_CHECKPOINTS_PER_RUN = 23  # the Go original: 8 step actions, 2 callbacks, 23 checkpoints
QUOTED_SPIFF_US_PER_RUN = 1_550  # SpiffWorkflow, same workload, in memory
QUOTED_GO_GROWTH = {"line": 66, "go declared": 62}  # Go original's per-step growth, N=10 -> N=1000
# Issue 2's targets for procflow.
TARGET_US_PER_RUN = 60
TARGET_GROWTH = 1.5  # the interpreter's own work per step, N=10 -> N=1000
TARGET_DEF_CALLS_PER_TRANSITION = 1.0

SIZES = (10, 100, 1000)
QUICK_SIZES = (10, 100)


def noop_checkpoint(kind: pf.CheckpointType) -> None:
    pass


# -- 1. the Go original's workload ----------------------------------------------


@dataclass
class GoWorkload:
    """For(i<5){Step}, a reset Step, For(i<2){Wait(event -> Step)}; the event is an OnEvent(int)."""

    state: pf.State = field(default_factory=lambda: pf.State.new("bench-1", "go-workload"))
    i: int = 0
    received: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For("loop1", self.i < 5, pf.Step("step1", self.inc)),
            pf.Step("reset", self.reset),
            pf.For(
                "loop2",
                self.i < 2,
                pf.Wait("wait", pf.OnEvent("event", self.on_event, pf.Step("step2", self.inc))),
            ),
        )

    def inc(self) -> None:
        self.i += 1

    def reset(self) -> None:
        self.i = 0

    def on_event(self, n: int) -> None:
        self.received += n


class EventHandler(pf.Handler):
    """The same event as a custom Handler: no payload validation."""

    type = "bench-event"

    def __init__(self, wf: GoWorkload) -> None:
        self.wf = wf

    def handle(self, req: pf.CallbackRequest, payload: Any) -> None:
        self.wf.received += payload


@dataclass
class GoWorkloadHandler(GoWorkload):
    """The same workload with ``On("event", EventHandler(self), ...)`` instead of ``OnEvent``."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For("loop1", self.i < 5, pf.Step("step1", self.inc)),
            pf.Step("reset", self.reset),
            pf.For(
                "loop2",
                self.i < 2,
                pf.Wait("wait", pf.On("event", EventHandler(self), pf.Step("step2", self.inc))),
            ),
        )


async def go_workload_run(wf: GoWorkload, checkpoint: Callable[[pf.CheckpointType], None]) -> None:
    """One run: resume, callback, resume, callback, resume."""
    state = wf.state
    await pf.resume(wf, state, checkpoint)
    await pf.handle_callback(pf.CallbackRequest(name="event"), wf, state, 1)
    await pf.resume(wf, state, checkpoint)
    await pf.handle_callback(pf.CallbackRequest(name="event"), wf, state, 1)
    await pf.resume(wf, state, checkpoint)


# -- 2. scaling shapes ----------------------------------------------------------------


@dataclass
class Line:
    """A straight line of N steps."""

    n: int
    state: pf.State = field(default_factory=lambda: pf.State.new("bench-line", "line"))
    ticks: int = 0

    def definition(self) -> pf.Section:
        return pf.S(*[pf.Step(f"step{k}", self.tick) for k in range(self.n)])

    def tick(self) -> None:
        self.ticks += 1


@dataclass
class Loop:
    """A For loop of N iterations, one step per iteration."""

    n: int
    state: pf.State = field(default_factory=lambda: pf.State.new("bench-loop", "loop"))
    ticks: int = 0

    def definition(self) -> pf.Section:
        return pf.S(pf.For("loop", self.ticks < self.n, pf.Step("tick", self.tick)))

    def tick(self) -> None:
        self.ticks += 1


@dataclass
class GoDeclared:
    """A start step, N Go statements side by side (one step each); main waits for all."""

    n: int
    state: pf.State = field(default_factory=lambda: pf.State.new("bench-declared", "go-declared"))
    wg: pf.WaitGroup = field(default_factory=pf.WaitGroup)
    ticks: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("start", self.start),
            *[pf.Go(f"worker{k}", pf.Step(f"work{k}", self.work)) for k in range(self.n)],
            self.wg.wait("all done"),
        )

    def start(self) -> None:
        self.ticks += 1
        self.wg.add(self.n)

    def work(self) -> None:
        self.ticks += 1
        self.wg.done()


@dataclass
class GoLoop:
    """N threads started from a For loop (a step, then a Go with a distinct id); main waits."""

    n: int
    state: pf.State = field(default_factory=lambda: pf.State.new("bench-spawned", "go-loop"))
    wg: pf.WaitGroup = field(default_factory=pf.WaitGroup)
    started: int = 0
    ticks: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For(
                "spawn",
                self.started < self.n,
                pf.Step("spawn one", self.spawn),
                pf.Go("worker", pf.Step("work", self.work), id=lambda: f"worker-{self.started}"),
            ),
            self.wg.wait("all done"),
        )

    def spawn(self) -> None:
        self.ticks += 1
        self.started += 1
        self.wg.add()

    def work(self) -> None:
        self.ticks += 1
        self.wg.done()


# Controls: the N=10 tree, plus the statements the N=1000 tree would add, built
# on every call and held until the next one (as the wrapper holds a tree).


@dataclass
class LineControl(Line):
    extra: int = 0

    def definition(self) -> pf.Section:
        self._ballast = None
        self._ballast = [pf.Step(f"step{k}", self.tick) for k in range(self.n, self.n + self.extra)]
        return super().definition()


@dataclass
class GoDeclaredControl(GoDeclared):
    extra: int = 0

    def definition(self) -> pf.Section:
        self._ballast = None
        self._ballast = [
            pf.Go(f"worker{k}", pf.Step(f"work{k}", self.work)) for k in range(self.n, self.n + self.extra)
        ]
        return super().definition()


@dataclass(frozen=True)
class Shape:
    label: str
    cls: type[Any]
    steps: Callable[[int], int]  # step actions run for N
    control: type[Any] | None = None


SHAPES = [
    Shape("line", Line, lambda n: n, LineControl),
    Shape("for loop", Loop, lambda n: n),
    Shape("go declared", GoDeclared, lambda n: n + 1, GoDeclaredControl),
    Shape("go from loop", GoLoop, lambda n: 2 * n),
]


# -- timing machinery -------------------------------------------------------------------


class Accumulator:
    __slots__ = ("calls", "free_ns", "ns")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ns = 0  # in definition(), freeing included
        self.free_ns = 0  # of which: freeing the tree definition() returned last
        self.calls = 0


def timed_subclass(cls: type[Any]) -> tuple[type[Any], Accumulator]:
    """A subclass of ``cls`` whose ``definition()`` adds its own time to an accumulator.

    Each call returns a new tree and the one it replaces must be freed: with N
    statements that is O(N) work, the mirror image of building it, and the cost
    of the workflow's definition rather than the interpreter's. Left alone, the
    interpreter, which lets go of it before calling ``definition()`` again,
    would free it on its own time. So the wrapper keeps the tree it returned
    last and drops it first thing inside its measured span; the new tree is
    then built in the memory the old one freed, as it is without the wrapper.
    """
    acc = Accumulator()
    inner = cls.definition

    def definition(self: Any) -> Any:
        t0 = perf_counter_ns()
        self._bench_tree = None  # the interpreter let go of it already: it is freed here
        t1 = perf_counter_ns()
        root = self._bench_tree = inner(self)
        t2 = perf_counter_ns()
        acc.ns += t2 - t0
        acc.free_ns += t1 - t0
        acc.calls += 1
        return root

    return type(f"Timed{cls.__name__}", (cls,), {"definition": definition}), acc


class _Empty:
    def definition(self) -> None:
        return None


@dataclass
class Calibration:
    inside_ns: float  # wrapper overhead that lands inside the accumulated time, per call
    free_ns: float  # of which inside the "freeing" span, per call
    total_ns: float  # whole wrapper overhead on the caller's clock, per call


class CalibrationConfig:
    """Times the wrapper on an empty method; interleaved with the measurements it corrects."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.timed_cls, self.acc = timed_subclass(_Empty)
        self.inside: list[float] = []
        self.free: list[float] = []
        self.total: list[float] = []

    async def batch(self) -> None:
        calls = self.calls
        plain, wrapped = _Empty(), self.timed_cls()
        gc.collect()
        f = plain.definition
        t0 = perf_counter_ns()
        for _ in range(calls):
            f()
        t_plain = perf_counter_ns() - t0
        gc.collect()
        self.acc.reset()
        g = wrapped.definition
        t0 = perf_counter_ns()
        for _ in range(calls):
            g()
        t_wrapped = perf_counter_ns() - t0
        self.inside.append(self.acc.ns / calls)
        self.free.append(self.acc.free_ns / calls)
        self.total.append((t_wrapped - t_plain) / calls)

    def result(self) -> Calibration:
        return Calibration(
            statistics.median(self.inside), statistics.median(self.free), statistics.median(self.total)
        )


def runs_per_batch(seconds_per_run: float, target: float) -> int:
    return max(1, min(5_000, round(target / max(seconds_per_run, 1e-9))))


def spread(xs: list[float]) -> float:
    """Half the interquartile range, relative to the median."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / 2 / statistics.median(xs)
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return (q3 - q1) / 2 / statistics.median(xs)


@dataclass
class Samples:
    """Raw batches: (elapsed ns, wrapper accumulator or None, units: runs or steps).

    They are corrected for the wrapper's cost once the calibration, which is
    interleaved with them, is known; values come out per unit, in µs.
    """

    raw: list[tuple[int, tuple[int, int, int] | None, int]] = field(default_factory=list)
    cal: Calibration | None = None

    def add(self, elapsed: int, acc: Accumulator | None, units: int) -> None:
        self.raw.append((elapsed, None if acc is None else (acc.ns, acc.free_ns, acc.calls), units))

    def values(self, name: str) -> list[float]:
        out = []
        for elapsed, acc, units in self.raw:
            if acc is None:
                total, definition, freeing = float(elapsed), 0.0, 0.0
            else:
                assert self.cal is not None
                ns, free_ns, calls = acc
                total = elapsed - calls * self.cal.total_ns
                definition = ns - calls * self.cal.inside_ns
                freeing = free_ns - calls * self.cal.free_ns
            value = {"total": total, "definition": definition, "freeing": freeing, "rest": total - definition}
            out.append(value[name] / units / 1e3)
        return out

    def us(self, name: str) -> float:
        return statistics.median(self.values(name))

    def spread(self, name: str) -> float:
        return spread(self.values(name))


async def interleave(configs: list[Any], repeat: int) -> None:
    """Run ``repeat`` rounds; each round times one batch of every config."""
    for _ in range(repeat):
        for c in configs:
            await c.batch()


# -- 1. measure the Go workload ----------------------------------------------------------


class GoConfig:
    """One variant of the Go workload, timed plain (headline) and wrapped (split)."""

    def __init__(self, cls: type[GoWorkload], label: str, wrapped: bool) -> None:
        self.cls, self.label, self.wrapped = cls, label, wrapped
        self.timed_cls, self.acc = timed_subclass(cls)
        self.samples = Samples()
        self.runs = 1
        self.def_calls = self.transitions = self.steps = 0
        self.checkpoints: Counter[str] = Counter()

    async def prepare(self, target: float) -> None:
        """Check the workload on an instrumented run, count, warm up and size the batches."""
        wf = self.timed_cls()
        steps = 0

        def counted(action: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                nonlocal steps
                steps += 1
                action()

            return run

        def counting_checkpoint(kind: pf.CheckpointType) -> None:
            self.checkpoints[kind.value] += 1

        wf.inc, wf.reset = counted(wf.inc), counted(wf.reset)
        self.acc.reset()
        await go_workload_run(wf, counting_checkpoint)
        if wf.state.status != pf.WorkflowStatus.FINISHED or wf.received != 2 or steps != 8:
            raise SystemExit(f"{self.label}: the workload went wrong ({steps} steps): {wf.state!r}")
        self.def_calls, self.transitions, self.steps = self.acc.calls, wf.state.pc, steps

        cls = self.timed_cls if self.wrapped else self.cls
        for _ in range(50):
            await go_workload_run(cls(), noop_checkpoint)
        t0 = perf_counter_ns()
        for _ in range(100):
            await go_workload_run(cls(), noop_checkpoint)
        self.runs = runs_per_batch((perf_counter_ns() - t0) / 100 / 1e9, target)

    async def batch(self) -> None:
        cls = self.timed_cls if self.wrapped else self.cls
        wfs = [cls() for _ in range(self.runs)]
        gc.collect()
        self.acc.reset()
        t0 = perf_counter_ns()
        for w in wfs:
            await go_workload_run(w, noop_checkpoint)
        elapsed = perf_counter_ns() - t0
        self.samples.add(elapsed, self.acc if self.wrapped else None, units=self.runs)


# -- 2. measure the scaling shapes --------------------------------------------------------


class ScaleConfig:
    """One shape at one N (or its control), timed wrapped."""

    def __init__(self, shape: Shape, n: int, control_for: int = 0) -> None:
        self.shape, self.n, self.control_for = shape, n, control_for
        cls = shape.control if control_for else shape.cls
        assert cls is not None
        self.timed_cls, self.acc = timed_subclass(cls)
        self.steps = shape.steps(n)
        self.max_transitions = 10 * n + 100
        self.samples = Samples()
        self.runs = 1
        self.def_calls = self.transitions = 0

    def new(self) -> Any:
        if self.control_for:
            return self.timed_cls(self.n, extra=self.control_for - self.n)
        return self.timed_cls(self.n)

    async def run(self, w: Any) -> None:
        await pf.resume(w, w.state, noop_checkpoint, max_transitions=self.max_transitions)

    async def prepare(self, target: float) -> None:
        """Check and count on a first run, warm up, size the batches."""
        wf = self.new()
        self.acc.reset()
        t0 = perf_counter_ns()
        await self.run(wf)
        per_run = (perf_counter_ns() - t0) / 1e9
        if wf.state.status != pf.WorkflowStatus.FINISHED or wf.ticks != self.steps:
            raise SystemExit(
                f"{self.shape.label} N={self.n}: ran {wf.ticks} steps, expected {self.steps}: {wf.state!r}"
            )
        self.def_calls, self.transitions = self.acc.calls, wf.state.pc
        if per_run < 0.02:  # cheap: warm up more, and size the batch on a better estimate
            t0 = perf_counter_ns()
            for _ in range(5):
                await self.run(self.new())
            per_run = (perf_counter_ns() - t0) / 5 / 1e9
        self.runs = runs_per_batch(per_run, target)

    async def batch(self) -> None:
        wfs = [self.new() for _ in range(self.runs)]
        gc.collect()
        self.acc.reset()
        t0 = perf_counter_ns()
        for w in wfs:
            await self.run(w)
        elapsed = perf_counter_ns() - t0
        self.samples.add(elapsed, self.acc, units=self.runs * self.steps)


# -- report ------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def print_header(repeat: int, quick: bool) -> None:
    print("procflow interpreter benchmark (python bench/interpreter.py)")
    print(f"date:      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"python:    {platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    print(f"platform:  {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"procflow:  {pf.__version__} from {Path(pf.__file__).parent}{git_revision()}")
    print(
        f"method:    {'quick' if quick else 'full'} mode; median of {repeat} interleaved batches after "
        "warm-up; GC enabled, gc.collect() before each batch; asyncio (anyio)"
    )
    print(f"load:      {load()} (1, 5, 15 min load averages at the start)")
    print()


def load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def print_wrapper(cal: Calibration) -> None:
    print(
        f"   timing definition() cost {cal.total_ns:.0f} ns per call here ({cal.inside_ns:.0f} ns of it "
        "inside its measured span), taken out of the numbers above"
    )


def print_go(configs: list[GoConfig]) -> None:
    print("1. The Go original's workload: For(i<5){Step}, reset Step, For(i<2){Wait(event -> Step)}")
    print("   one run = resume, callback, resume, callback, resume; no-op checkpoint; µs per run")
    print()
    print(
        f"   {'variant':<24} {'µs/run':>8} {'±':>4} {'def()':>7} {'rest':>7} {'def() calls':>11} "
        f"{'transitions':>11} {'checkpoints':>11} {'steps':>5} {'runs/batch':>10}"
    )
    pairs = [(configs[i], configs[i + 1]) for i in range(0, len(configs), 2)]
    for plain, wrapped in pairs:
        print(
            f"   {plain.label:<24} {plain.samples.us('total'):8.1f} {plain.samples.spread('total'):4.0%} "
            f"{wrapped.samples.us('definition'):7.1f} {wrapped.samples.us('rest'):7.1f} "
            f"{plain.def_calls:11d} {plain.transitions:11d} {sum(plain.checkpoints.values()):11d} "
            f"{plain.steps:5d} {plain.runs:10d}"
        )
    print("   (µs/run from plain runs; the def()/rest split from interleaved runs with the timing wrapper)")
    print()
    main = pairs[0][0]
    us = main.samples.us("total")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(main.checkpoints.items()))
    print(f"   checkpoints per run by kind: {kinds}")
    print(f"   definition() calls per transition: {main.def_calls / main.transitions:.2f}")
    print(
        f"   target <= {TARGET_US_PER_RUN} µs/run: {us:.1f} µs/run {verdict(us <= TARGET_US_PER_RUN)} "
        f"({us / TARGET_US_PER_RUN:.2f}x the target)"
    )
    go_lo, go_hi = QUOTED_GO_US_PER_RUN
    print(
        f"   quoted from issue 2, not measured here: Go original {go_lo}-{go_hi} µs/run "
        f"({QUOTED_GO_CHECKPOINTS_PER_RUN} checkpoints), "
        f"SpiffWorkflow about {QUOTED_SPIFF_US_PER_RUN:,} µs/run"
    )
    print(
        f"   -> {us / go_hi:.1f}-{us / go_lo:.1f}x the Go original's time, "
        f"{QUOTED_SPIFF_US_PER_RUN / us:.0f}x faster than SpiffWorkflow"
    )
    print()


def print_scaling(configs: list[ScaleConfig], sizes: tuple[int, ...]) -> None:
    print("2. Scaling: one resume per run; µs per step (a step = one step action run)")
    print("   total = def() + rest; def() = the workflow's own definition() (building the tree and")
    print("   freeing the one it replaces); rest = everything else: the interpreter's own work")
    print()
    head = (
        f"   {'shape':<13} {'N':>6} {'steps':>5} {'trans.':>6} {'def/trans':>9} {'total':>9} "
        f"{'def()':>9} {'(freeing)':>9} {'rest':>7} {'±':>4} {'rest growth':>11} {'runs/batch':>10}"
    )
    print(head)
    print("   " + "-" * (len(head) - 3))
    lo, hi = sizes[0], sizes[-1]
    summary = []
    for shape in SHAPES:
        rows = [c for c in configs if c.shape is shape]
        base = next(c for c in rows if c.n == lo and not c.control_for).samples.us("rest")
        for c in rows:
            s = c.samples
            growth = s.us("rest") / base
            n = f"{c.n}*" if c.control_for else str(c.n)
            print(
                f"   {shape.label:<13} {n:>6} {c.steps:5d} {c.transitions:6d} "
                f"{c.def_calls / c.transitions:9.2f} {s.us('total'):9.2f} {s.us('definition'):9.2f} "
                f"{s.us('freeing'):9.2f} {s.us('rest'):7.2f} {s.spread('rest'):4.0%} {growth:10.2f}x "
                f"{c.runs:10d}"
            )
        print()
        top = next(c for c in rows if c.n == hi and not c.control_for)
        control = next((c for c in rows if c.control_for), None)
        worst = max(c.def_calls / c.transitions for c in rows)
        control_growth = None if control is None else control.samples.us("rest") / base
        summary.append((shape, top.samples.us("rest") / base, worst, control_growth))
    if any(c.control_for for c in configs):
        print(f"   * control: the N={lo} tree, but definition() also builds (and holds until its next call)")
        print(
            f"     the statements the N={hi} tree adds: the same allocation, freeing and GC work as N={hi};"
        )
        print(f"     its rest growth is what a definition() of N={hi}'s size costs the rest by itself")
        print()
    print(
        f"   target: rest per step grows <= {TARGET_GROWTH}x from N={lo} to N={hi}, "
        f"and <= {TARGET_DEF_CALLS_PER_TRANSITION:.0f} definition() call per transition"
    )
    for shape, growth, worst, control_growth in summary:
        ok = growth <= TARGET_GROWTH and worst <= TARGET_DEF_CALLS_PER_TRANSITION
        line = f"   {shape.label:<13} growth {growth:5.2f}x, def/trans <= {worst:.2f}: {verdict(ok)}"
        if control_growth is not None:
            line += f" (its control alone: {control_growth:.2f}x)"
        print(line)
    quoted = ", ".join(f"{k} about {v}x" for k, v in QUOTED_GO_GROWTH.items())
    print(f"   quoted from issue 2, not measured here: the Go original's growth: {quoted}")


async def main_async(repeat: int, quick: bool) -> None:
    print_header(repeat, quick)
    target = 0.01 if quick else 0.05  # seconds per batch
    calibration_calls = 20_000 if quick else 100_000

    go_cal = CalibrationConfig(calibration_calls)
    go_configs = []
    for cls, label in ((GoWorkload, "OnEvent(int payload)"), (GoWorkloadHandler, "On(custom Handler)")):
        go_configs += [GoConfig(cls, label, wrapped=False), GoConfig(cls, label, wrapped=True)]
    for go_config in go_configs:
        await go_config.prepare(target)
    await interleave([go_cal, *go_configs], repeat)
    for go_config in go_configs:
        go_config.samples.cal = go_cal.result()
    print_go(go_configs)
    print_wrapper(go_cal.result())
    print()
    sys.stdout.flush()

    sizes = QUICK_SIZES if quick else SIZES
    scale_cal = CalibrationConfig(calibration_calls)
    scale_configs = []
    for shape in SHAPES:
        scale_configs += [ScaleConfig(shape, n) for n in sizes]
        if shape.control is not None:
            scale_configs.append(ScaleConfig(shape, sizes[0], control_for=sizes[-1]))
    for c in scale_configs:
        await c.prepare(target)
    await interleave([scale_cal, *scale_configs], repeat)
    for c in scale_configs:
        c.samples.cal = scale_cal.result()
    print_scaling(scale_configs, sizes)
    print_wrapper(scale_cal.result())


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark of procflow's interpreter (issue 2).")
    parser.add_argument("--quick", action="store_true", help="smoke mode: short batches, N up to 100")
    parser.add_argument(
        "--repeat", type=int, default=None, help="batches per measurement (default 9, quick 3)"
    )
    args = parser.parse_args()
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 9)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    t0 = time.perf_counter()
    anyio.run(main_async, repeat, args.quick)
    print(f"\n(took {time.perf_counter() - t0:.0f} s; load averages at the end: {load()})")


if __name__ == "__main__":
    main()
