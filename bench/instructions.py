"""Instructions per run of the Go workload: this checkout against another git revision.

Run from the repository root (needs valgrind, ``apt-get install valgrind``):

    python bench/instructions.py HEAD~1             # this checkout (with its changes) vs HEAD~1
    python bench/instructions.py --runs 800 main    # more runs per count

``bench/compare.py`` times the two versions, and its ratio moves by 1-2% from
one invocation to the next: the machine drifts and the memory layout of each
version's code differs. Most single changes to the interpreter are worth less
than that. This script counts instead: it runs the Go workload (``bench/
interpreter.py``'s) under valgrind's callgrind, which counts every machine
instruction the process executes, once with ``--runs`` runs and once with none,
with the same warm-up and ``PYTHONHASHSEED``. The difference divided by the runs
is the instructions per run, repeatable to about 0.05%. Instructions are not
time (a cache miss costs many), so a change this script approves should still
not be slower in ``bench/compare.py``; but it tells whether a change does less
work, which timing on this machine cannot.

The other revision is checked out with ``git worktree`` into a temporary
directory, removed at the end. Nothing here asserts on anything.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compare import BENCH, ROOT, checkout_of, load, workload_on

WARM_UP_RUNS = 50
_TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def child(checkout: Path, runs: int) -> None:
    """Warm up, then run the Go workload ``runs`` times on fresh workflows (under callgrind)."""
    import anyio

    sys.path.insert(0, str(BENCH))  # for bench/interpreter.py's own imports
    bench = workload_on(load("procflow_counted", checkout), "bench_counted")

    async def main() -> None:
        for _ in range(WARM_UP_RUNS):
            await bench.go_workload_run(bench.GoWorkload(), bench.noop_checkpoint)
        workflows = [bench.GoWorkload() for _ in range(runs)]
        gc.collect()
        for wf in workflows:
            await bench.go_workload_run(wf, bench.noop_checkpoint)
        if runs and workflows[-1].state.status != bench.pf.WorkflowStatus.FINISHED:
            raise SystemExit("the workload did not finish")

    anyio.run(main)


def instructions(checkout: Path, runs: int) -> int:
    """All instructions of one child process that runs the workload ``runs`` times in ``checkout``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, __file__, "--child", str(checkout), "--runs", str(runs)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    total = _TOTAL.search(out.stderr)
    if out.returncode != 0 or total is None:
        raise SystemExit(f"the count under valgrind failed ({' '.join(command)}):\n{out.stderr[-2000:]}")
    return int(total.group(1).replace(",", ""))


def per_run(checkouts: list[Path], runs: int) -> list[float]:
    """Instructions per run of the workload in each checkout: the process with runs less the one without.

    The four processes run side by side, as many at once as there are cores.
    """
    counts = [(checkout, n) for checkout in checkouts for n in (runs, 0)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = list(pool.map(lambda count: instructions(*count), counts))
    return [(totals[2 * k] - totals[2 * k + 1]) / runs for k in range(len(checkouts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", nargs="?", help="the git revision to compare this checkout with")
    parser.add_argument("--runs", type=int, default=400, help="workload runs counted per version")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runs)
        return
    if not args.revision:
        parser.error("give the git revision to compare with, e.g. HEAD~1")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind, or time with bench/compare.py")

    print(f"Go workload under callgrind, this checkout ({ROOT}) vs {args.revision}: {args.runs} runs each")
    with tempfile.TemporaryDirectory(prefix="procflow-instructions-") as tmp:
        other = checkout_of(args.revision, Path(tmp) / "other")
        try:
            this, that = per_run([ROOT, other], args.runs)
        finally:
            remove = ["git", "worktree", "remove", "--force", str(other)]
            subprocess.run(remove, cwd=ROOT, capture_output=True)
    print(f"  this checkout      {this:12,.0f} instructions per run")
    print(f"  {args.revision:18s} {that:12,.0f} instructions per run")
    print(f"  this / {args.revision}: {this / that:.4f} ({this - that:+,.0f} per run)")


if __name__ == "__main__":
    main()
