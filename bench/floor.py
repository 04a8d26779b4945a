"""How far procflow's interpreter is from the floor of the Go workload (issue 2, "Speed").

Run from the repository root:

    python bench/floor.py              # a few seconds
    python bench/floor.py --repeat 31  # more batches per measurement

The floor is the Go original's workload (``bench/interpreter.py``'s
``GoWorkload``: ``For(i<5){Step}``, a reset Step, ``For(i<2){Wait(event ->
Step)}``; resume, callback, resume, callback, resume) run by code written for
this one tree: every position, condition and branch is known in advance, so it
does no navigation, no lookup by name and no check but the ones below. It keeps
every obligation the API puts on any interpreter of this workload:

* ``definition()`` is called at the start of each call and after every step and
  event (13 calls), and the first tree of each call is checked as a whole
  against its remembered shape (``procflow.statements.ShapeCache``, as
  procflow does);
* the ``State``, its ``Thread`` and the ``WaitEvent`` are procflow's pydantic
  models, written through their ``__dict__`` with every field marked as set,
  and each parking builds its event with ``procflow.state.new_wait_event``,
  procflow's own unvalidated builder;
* the payload is validated and the handler called by the ``OnEvent``'s
  ``FunctionHandler`` (``handler.handle``);
* every change of state logs an undo entry, and the 13 checkpoints are the
  same as procflow's: before it times anything, the script checks that both
  pass the same (kind, ``State`` JSON, fields set, workflow data) to every
  checkpoint, and stops if they differ;
* the five calls are coroutines, as procflow's are.

What the floor leaves out is what makes an interpreter general: walking the
tree, finding statements by name, the thread queue, hooks, error messages,
counting transitions, rollback, subclasses of statements. So procflow's time
above the floor is the price of its generality, and no interpreter that keeps
the API can take less than the floor. It prints, from interleaved batches:
µs per run of both, the 13 ``definition()`` calls alone, and for each of the
five calls the time outside ``definition()`` of both.

Nothing here asserts on time. A floor that does not do what procflow does
stops the script.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
from _revision import git_revision
from interpreter import CalibrationConfig, GoWorkload, go_workload_run, noop_checkpoint, timed_subclass

import procflow as pf
from procflow.state import new_wait_event
from procflow.statements import ShapeCache

perf_counter_ns = time.perf_counter_ns

AFTER_STEP = pf.CheckpointType.AFTER_STEP
AFTER_SETUP = pf.CheckpointType.AFTER_SETUP
AFTER_TEARDOWN = pf.CheckpointType.AFTER_TEARDOWN
AFTER_RESUME = pf.CheckpointType.AFTER_RESUME
EXECUTING = pf.ThreadStatus.EXECUTING
THREAD_RESUMING = pf.ThreadStatus.RESUMING
WAITING_EVENT = pf.ThreadStatus.WAITING_EVENT
SET_UP = pf.WaitEventStatus.SETUP
PENDING_TEARDOWN = pf.WaitEventStatus.PENDING_TEARDOWN
RESUMING = pf.WorkflowStatus.RESUMING
WAITING = pf.WorkflowStatus.WAITING
FINISHED = pf.WorkflowStatus.FINISHED
DONE = (pf.WorkflowStatus.FINISHED, pf.WorkflowStatus.CANCELLED)

Checkpoint = Callable[[pf.CheckpointType], None]
Undo = list[tuple[dict[str, Any], str, Any]]

_shapes = ShapeCache()


# -- the floor: the Go workload's tree, run by code that knows it -------------------------


def writable(model: pf.State | pf.Thread | pf.WaitEvent) -> dict[str, Any]:
    """The model's fields for writing, every one marked as set (as procflow marks them)."""
    values = model.__dict__
    fields_set = model.__pydantic_fields_set__
    if len(fields_set) != len(values):
        fields_set.update(values)
    return values


def first_tree(wf: GoWorkload, state: pf.State) -> Any:
    """The call's first tree, checked against its remembered shape (read by position, so untyped)."""
    if state.status in DONE:
        raise pf.WorkflowFinishedError(f"{state.id!r} is {state.status.value}")
    root = wf.definition()
    _shapes.index(root, "GoWorkload")  # the key only narrows the shapes compared with
    return root


def step(
    wf: GoWorkload, stmt: Any, st: dict[str, Any], tv: dict[str, Any], undo: Undo, ck: Checkpoint
) -> Any:
    """Run a step as procflow does (its counters, a new tree, a checkpoint); return the new tree."""
    stmt.action()
    undo.append((tv, "pc", tv["pc"]))
    st["pc"] += 1
    tv["pc"] += 1
    tv["cur_step"] = stmt.name
    tv["cur_callback"] = ""
    root = wf.definition()
    ck(AFTER_STEP)
    undo.clear()
    return root


async def floor_resume(wf: GoWorkload, state: pf.State, ck: Checkpoint) -> None:
    root = first_tree(wf, state)
    undo: Undo = []
    st = writable(state)
    thread = state.threads[0]
    tv = writable(thread)
    if tv["wait_events"]:  # the event the callback handled: tear it down (an OnEvent: nothing to call)
        undo.append((tv, "wait_events", tv["wait_events"]))
        tv["wait_events"] = []
        ck(AFTER_TEARDOWN)
        undo.clear()
    undo.append((tv, "status", tv["status"]))
    st["pc"] += 1
    tv["pc"] += 1
    tv["status"] = EXECUTING
    if tv["cur_callback"]:  # in the event: its step, then loop2 again
        root = step(wf, root._kids[2]._kids[0]._kids[0]._kids[0], st, tv, undo, ck)
    else:  # from the start: loop1, then the reset step
        while root._kids[0].cond:
            root = step(wf, root._kids[0]._kids[0], st, tv, undo, ck)
        root = step(wf, root._kids[1], st, tv, undo, ck)
    loop2 = root._kids[2]
    if not loop2.cond:
        undo.append((st, "status", st["status"]))
        st["status"] = FINISHED
        st["threads"] = []
        ck(AFTER_RESUME)
        undo.clear()
        return
    wait = loop2._kids[0]
    event = new_wait_event("event", st["id"], tv["id"], wait._kids[0].name, tv["pc"])
    undo.append((tv, "wait_events", tv["wait_events"]))
    tv["wait_events"] = [event]
    tv["status"] = WAITING_EVENT
    tv["cur_step"] = wait.name
    st["status"] = WAITING
    event.__dict__["status"] = SET_UP  # the OnEvent's setup: nothing to call
    ck(AFTER_SETUP)
    undo.clear()


async def floor_callback(req: pf.CallbackRequest, wf: GoWorkload, state: pf.State, payload: Any) -> Any:
    root = first_tree(wf, state)
    thread = state.threads[0]
    event = thread.wait_events[0]
    if thread.status != WAITING_EVENT or event.req.name != req.name:
        raise pf.CallbackNotFound(req.name)
    reply = root._kids[2]._kids[0]._kids[0].handler.handle(event.req, payload)
    ev = writable(event)
    ev["status"] = PENDING_TEARDOWN
    ev["handled"] = True
    tv = writable(thread)
    tv["status"] = THREAD_RESUMING
    tv["cur_callback"] = req.name
    tv["pc"] += 1
    st = writable(state)
    st["pc"] += 1
    st["status"] = RESUMING
    return reply


async def floor_run(wf: GoWorkload, checkpoint: Checkpoint) -> None:
    """One run, as ``go_workload_run`` does it: resume, callback, resume, callback, resume."""
    state = wf.state
    await floor_resume(wf, state, checkpoint)
    await floor_callback(pf.CallbackRequest(name="event"), wf, state, 1)
    await floor_resume(wf, state, checkpoint)
    await floor_callback(pf.CallbackRequest(name="event"), wf, state, 1)
    await floor_resume(wf, state, checkpoint)


# -- the check: the floor does what procflow does ------------------------------------------


async def check() -> None:
    """Stop unless both pass the same thing to every checkpoint and call definition() as often."""
    seen: dict[str, list[tuple[Any, ...]]] = {}
    counted, acc = timed_subclass(GoWorkload)
    for label, run in (("procflow", go_workload_run), ("floor", floor_run)):
        wf = counted()
        log = seen[label] = []

        def record(kind: pf.CheckpointType, wf: Any = wf, log: list[tuple[Any, ...]] = log) -> None:
            state = wf.state
            unset_left_out = state.model_dump_json(exclude_unset=True)
            log.append((kind, state.model_dump_json(), unset_left_out, wf.i, wf.received))

        acc.reset()
        await run(wf, record)
        log.append(("definition() calls", acc.calls))
    if seen["floor"] != seen["procflow"]:
        for k, (a, b) in enumerate(zip(seen["procflow"], seen["floor"], strict=False)):
            if a != b:
                raise SystemExit(f"the floor differs from procflow at checkpoint {k}:\n  {a}\n  {b}")
        raise SystemExit("the floor made a different number of checkpoints than procflow")


# -- timing ----------------------------------------------------------------------------------------------

CALLS = ("resume", "callback", "resume", "callback", "resume")


async def timed_batch(run: Callable[..., Any], runs: int) -> float:
    """µs per run of ``runs`` fresh workflows."""
    workflows = [GoWorkload() for _ in range(runs)]
    gc.collect()
    start = perf_counter_ns()
    for wf in workflows:
        await run(wf, noop_checkpoint)
    return (perf_counter_ns() - start) / runs / 1000


async def definitions_batch(runs: int) -> float:
    """µs of the 13 definition() calls of a run, called back to back on fresh workflows."""
    workflows = [GoWorkload() for _ in range(runs)]
    gc.collect()
    start = perf_counter_ns()
    for wf in workflows:
        definition = wf.definition
        for _ in range(13):
            definition()
    return (perf_counter_ns() - start) / runs / 1000


async def split_batch(floor: bool, runs: int, acc: Any, counted: type[Any]) -> list[tuple[int, int, int]]:
    """Per call of a run: (elapsed ns, ns inside definition(), definition() calls), summed over ``runs``."""
    resume, callback = (floor_resume, floor_callback) if floor else (pf.resume, pf.handle_callback)
    req = pf.CallbackRequest(name="event")
    sums = [[0, 0, 0] for _ in CALLS]
    workflows = [counted() for _ in range(runs)]
    gc.collect()
    for wf in workflows:
        state = wf.state
        for k, call in enumerate(CALLS):
            ns, calls = acc.ns, acc.calls
            start = perf_counter_ns()
            if call == "resume":
                await resume(wf, state, noop_checkpoint)
            else:
                await callback(req, wf, state, 1)
            elapsed = perf_counter_ns() - start
            s = sums[k]
            s[0] += elapsed
            s[1] += acc.ns - ns
            s[2] += acc.calls - calls
    return [(a, b, c) for a, b, c in sums]


async def main_async(repeat: int, runs: int) -> None:
    await check()
    counted, acc = timed_subclass(GoWorkload)
    calibration = CalibrationConfig(calls=20_000)
    whole: dict[str, list[float]] = {"procflow": [], "floor": [], "definitions": []}
    split: dict[str, list[list[float]]] = {"procflow": [[] for _ in CALLS], "floor": [[] for _ in CALLS]}
    raw_split: dict[str, list[list[tuple[int, int, int]]]] = {"procflow": [], "floor": []}
    for k in range(2 + repeat):  # two warm-up rounds
        order = ("procflow", "floor") if k % 2 else ("floor", "procflow")
        for label in order:
            run = go_workload_run if label == "procflow" else floor_run
            us = await timed_batch(run, runs)
            sums = await split_batch(label == "floor", runs // 2, acc, counted)
            if k >= 2:
                whole[label].append(us)
                raw_split[label].append(sums)
        us = await definitions_batch(runs)
        await calibration.batch()
        if k >= 2:
            whole["definitions"].append(us)
    cal = calibration.result()
    outside = cal.total_ns - cal.inside_ns  # the wrapper's cost outside its measured span, per call
    for label, batches in raw_split.items():
        for sums in batches:
            for k, (elapsed, inside, calls) in enumerate(sums):
                rest = elapsed - inside - calls * outside
                split[label][k].append(rest / (runs // 2) / 1000)

    med = {label: statistics.median(xs) for label, xs in whole.items()}
    print(f"procflow interpreter vs the floor of the Go workload (python bench/floor.py){git_revision()}")
    python = f"{sys.implementation.name} {sys.version.split()[0]}"
    print(f"python:  {python}; median of {repeat} interleaved batches of {runs} runs")
    print()
    print("   checked first: the floor passes the same State, fields set and workflow data to all 13")
    print("   checkpoints as procflow, and calls definition() as often (13 times per run)")
    print()
    print(f"   {'':34s} {'µs/run':>8s}")
    print(f"   {'procflow':34s} {med['procflow']:8.1f}")
    print(f"   {'floor':34s} {med['floor']:8.1f}")
    definitions = med["definitions"]
    print(f"   {'of which 13 definition() calls':34s} {definitions:8.1f}   (back to back, outside any run)")
    gap = med["procflow"] - med["floor"]
    times = med["procflow"] / med["floor"]
    print(f"   procflow above the floor: {gap:.1f} µs per run ({times:.2f}x the floor)")
    print()
    print("   per call, µs outside definition() (the timing wrapper's own cost taken out):")
    print(f"   {'call':10s} {'procflow':>9s} {'floor':>7s} {'above':>7s}")
    totals = [0.0, 0.0]
    for k, call in enumerate(CALLS):
        ours = statistics.median(split["procflow"][k])
        least = statistics.median(split["floor"][k])
        totals[0] += ours
        totals[1] += least
        print(f"   {k + 1}. {call:7s} {ours:9.2f} {least:7.2f} {ours - least:7.2f}")
    print(f"   {'sum':10s} {totals[0]:9.2f} {totals[1]:7.2f} {totals[0] - totals[1]:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="timed batches per measurement")
    parser.add_argument("--runs", type=int, default=600, help="workload runs per batch")
    args = parser.parse_args()
    anyio.run(main_async, args.repeat, args.runs)


if __name__ == "__main__":
    main()
