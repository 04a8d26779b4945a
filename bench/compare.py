"""A/B of the interpreter: this checkout against another git revision, on the Go workload.

Run from the repository root:

    python bench/compare.py HEAD~1             # this checkout (with its uncommitted changes) vs HEAD~1
    python bench/compare.py --batches 40 main  # more batches per ordering

On a shared VM the speed of the machine drifts by several percent from one
minute to the next, more than most changes to the interpreter are worth, so
timing the two versions one after the other says little. This script loads
both versions into one process (under two package names) and times batches of
the Go original's workload (``bench/interpreter.py``'s, run by each) alternately, so any
drift hits both alike, and reports the median of the pairwise ratios. Which
version is loaded first has shifted that ratio by up to 1% in some runs (the
memory layout of its code); each of the two child processes loads them in the
opposite order, and the result combines both (geometric mean).

The other revision is checked out with ``git worktree`` into a temporary
directory, removed at the end. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def load(name: str, checkout: Path) -> ModuleType:
    """Import ``checkout``'s procflow package under ``name``."""
    package = checkout / "procflow"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no procflow package in {checkout}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def workload_on(pf: ModuleType, name: str) -> ModuleType:
    """``bench/interpreter.py`` (its Go workload and ``go_workload_run``), importing ``pf`` as procflow."""
    spec = importlib.util.spec_from_file_location(name, BENCH / "interpreter.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {BENCH / 'interpreter.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    sys.modules["procflow"] = pf  # what its "import procflow as pf" finds
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["procflow"]
    return module


async def batch(bench: ModuleType, runs: int) -> float:
    """µs per run of ``runs`` runs of ``bench``'s Go workload (resume, callback, resume, callback, resume)."""
    workflows = [bench.GoWorkload() for _ in range(runs)]
    gc.collect()
    start = time.perf_counter_ns()
    for wf in workflows:
        await bench.go_workload_run(wf, bench.noop_checkpoint)
    elapsed = time.perf_counter_ns() - start
    if workflows[-1].state.status != bench.pf.WorkflowStatus.FINISHED:
        raise SystemExit("the workload did not finish")
    return elapsed / runs / 1000


def child(first: Path, second: Path, batches: int, runs: int) -> None:
    """Time both checkouts in this process, ``first`` loaded first; print JSON."""
    import anyio

    sys.path.insert(0, str(BENCH))  # for bench/interpreter.py's own imports
    versions = [load("procflow_first", first), load("procflow_second", second)]
    benches = [workload_on(pf, f"bench_{i}") for i, pf in enumerate(versions)]

    async def main() -> dict[str, list[float]]:
        times: list[list[float]] = [[], []]
        for k in range(3 + batches):  # three warm-up rounds
            order = (0, 1) if k % 2 else (1, 0)
            for v in order:
                us = await batch(benches[v], runs)
                if k >= 3:
                    times[v].append(us)
        return {"first": times[0], "second": times[1]}

    print(json.dumps(anyio.run(main)))


def checkout_of(revision: str, into: Path) -> Path:
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(into), revision], cwd=ROOT, check=True, capture_output=True
    )
    return into


def run_child(first: Path, second: Path, batches: int, runs: int) -> dict[str, list[float]]:
    command = [sys.executable, __file__, "--child", str(first), str(second)]
    command += ["--batches", str(batches), "--runs", str(runs)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, list[float]] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", nargs="?", help="the git revision to compare this checkout with")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per version and ordering")
    parser.add_argument("--runs", type=int, default=500, help="workload runs per batch")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batches, args.runs)
        return
    if not args.revision:
        parser.error("give the git revision to compare with, e.g. HEAD~1")

    with tempfile.TemporaryDirectory(prefix="procflow-compare-") as tmp:
        other = checkout_of(args.revision, Path(tmp) / "other")
        try:
            compare(other, args.revision, args.batches, args.runs)
        finally:
            remove = ["git", "worktree", "remove", "--force", str(other)]
            subprocess.run(remove, cwd=ROOT, capture_output=True)


def compare(other: Path, revision: str, batches: int, runs: int) -> None:
    """Print this checkout's time relative to ``other``'s, in both loading orders and combined."""
    print(f"Go workload, this checkout ({ROOT}) vs {revision}: {batches} batches of {runs} runs")
    ratios = []
    for label, this_first in (("this loaded first", True), ("this loaded second", False)):
        times = run_child(ROOT, other, batches, runs) if this_first else run_child(other, ROOT, batches, runs)
        this, that = (times["first"], times["second"]) if this_first else (times["second"], times["first"])
        pairwise = sorted(a / b for a, b in zip(this, that, strict=True))
        ratio = statistics.median(pairwise)
        ratios.append(ratio)
        print(
            f"  {label:19s} this {statistics.median(this):6.1f} µs/run, {revision} "
            f"{statistics.median(that):6.1f} µs/run, ratio {ratio:.3f} "
            f"(quartiles {pairwise[len(pairwise) // 4]:.3f}-{pairwise[3 * len(pairwise) // 4]:.3f})"
        )
    print(f"  this / {revision}: {math.sqrt(ratios[0] * ratios[1]):.3f} (both orders combined)")


if __name__ == "__main__":
    main()
