"""Benchmark of procflow's timers (issue 4, "Speed").

Run from the repository root:

    python bench/timers.py              # full run: 100,000 pending timers, 1,000 due; about a minute
    python bench/timers.py --quick      # smoke mode: 10,000 pending, 200 due; a few seconds
    python bench/timers.py --dir /data  # put the databases on another disk

Everything runs on SQLite files (the store's defaults: WAL, synchronous=FULL)
in one process, through the engine and the store as an application uses them.
The workflow, ``Alarm``, parks on a ``Wait`` with ``On("ring", Timer(at=...))``
beside an ordinary event; the timer's branch runs one step that notes the
time it ran ("handled").

0. The disk: a raw INSERT + COMMIT loop, for the commit rate of the disk.
1. Building the databases. ``engine.start`` of ``--starts`` alarms (one at a
   time, then from 32 concurrent tasks, whose commits SQLite groups): the
   real path, and its rate. Pending timers in bulk: the row of one alarm
   started by a real engine, copied with new ids and due times in one
   transaction (``sqlite3`` ``executemany``), which is what makes a 100,000-row
   database quick to build; its time is printed too.
2. Finding due timers. Two databases hold the same ``--due`` due timers; the
   small one holds nothing else (``--due`` pending), the large one
   ``--pending`` in all (the rest due tomorrow). On each, repeatedly and
   interleaved: (a) the look-up alone, the store's query for the 20 earliest
   due rows (``SELECT ... WHERE due_at <= ? ORDER BY due_at LIMIT 20``, read
   only); (b) ``SQLiteStore.claim_due(limit=20)`` until nothing is due, as one
   worker does (each claim is one write transaction, a commit), and (c) the
   same with ``synchronous=OFF``, without the fsync that dominates (b). The
   claimed rows are put back between rounds, untimed. Target: the large database
   costs at most 1.5x the small one.
3. Delivering. One worker (``work_once(batch=20)`` until it claims nothing)
   delivers the ``--due`` overdue timers of the large database: time, rate.
4. Lateness. ``--due`` more alarms, due spread evenly over ``--spread``
   seconds (20 s; 4 s with ``--quick``: 50 timers/s) starting 1.5 s ahead,
   in the large database; one ``run_worker(poll_interval=--poll)`` on the
   real clock delivers them. Lateness is the time the timer's step ran minus
   the due time; p50, p99, max. Target: p99 under 1 s. A worker delivers at
   most the rate of part 3 (bound by commits); asked for more, lateness grows
   with the backlog, whatever the polling (try ``--spread 2``).

Numbers, not assertions: nothing here fails on time.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import procflow as pf
from procflow import Timer
from procflow.engine import Engine
from procflow.stores import SQLiteStore

# When each alarm's timer step ran (time.time()), by alarm name.
HANDLED: dict[str, float] = {}

TEMPLATE_DUE = 1_234_567_890.125  # a due time whose text is easy to find in the template's state


@dataclass
class Alarm:
    """Rings at ``due`` (Unix seconds) unless dismissed first."""

    name: str = ""
    due: float = 0.0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "alarm",
                pf.OnEvent("dismiss", lambda: None),
                pf.On("ring", Timer(at=self.due), pf.Step("handled", self.handled)),
            ),
        )

    def handled(self) -> None:
        HANDLED[self.name] = time.time()


class CountingStore(SQLiteStore):
    """A SQLiteStore that counts its write transactions (inserts, updates, claims)."""

    writes = 0

    async def insert(self, *args: Any, **kwargs: Any) -> Any:
        CountingStore.writes += 1
        return await super().insert(*args, **kwargs)

    async def update(self, *args: Any, **kwargs: Any) -> Any:
        CountingStore.writes += 1
        return await super().update(*args, **kwargs)

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        CountingStore.writes += 1
        return await super().claim_due(*args, **kwargs)


def engine_for(path: Path) -> Engine:
    return Engine(CountingStore(path), workflows=[Alarm], observers=[])


def raw_commit_rate(path: Path, n: int) -> float:
    """Commits per second of a bare INSERT + COMMIT loop with the store's pragmas (the disk's limit)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        began = time.perf_counter()
        for _ in range(n):
            connection.execute("BEGIN")
            connection.execute("INSERT INTO t (v) VALUES (?)", ("x" * 64,))
            connection.execute("COMMIT")
        return n / (time.perf_counter() - began)
    finally:
        connection.close()


# -- building databases ------------------------------------------------------------------------


async def start_rates(folder: Path, count: int) -> tuple[float, float]:
    """engine.start per second: one at a time, then from 32 concurrent tasks."""
    rates = []
    for concurrency in (1, 32):
        path = folder / f"starts-{concurrency}.db"
        due = time.time() + 86400
        async with engine_for(path) as engine:
            began = time.perf_counter()

            async def starter(
                first: int, engine: Engine = engine, due: float = due, step: int = concurrency
            ) -> None:
                for n in range(first, count, step):
                    await engine.start(Alarm(name=f"a{n}", due=due + n), id=f"a{n}")

            async with anyio.create_task_group() as tg:
                for first in range(concurrency):
                    tg.start_soon(starter, first)
            rates.append(count / (time.perf_counter() - began))
        path.unlink()
    return rates[0], rates[1]


@dataclass
class Template:
    """The stored row of one alarm started by a real engine: copied for the bulk rows."""

    workflow: str
    status: str
    data: str
    state: str
    meta: str
    history_at: int
    history: str


async def make_template(folder: Path) -> Template:
    path = folder / "template.db"
    async with engine_for(path) as engine:
        await engine.start(Alarm(name="template", due=TEMPLATE_DUE), id="template")
    with sqlite3.connect(path) as connection:
        workflow, status, data, state, meta, k = connection.execute(
            "SELECT workflow, status, data, state, meta, k FROM procflow_instance WHERE id = 'template'"
        ).fetchone()
        history_at, history = connection.execute(
            "SELECT at, entries FROM procflow_history WHERE k = ? ORDER BY version LIMIT 1", (k,)
        ).fetchone()
    connection.close()
    if repr(TEMPLATE_DUE) not in state:
        raise SystemExit(f"the template's state does not hold its due time as expected: {state}")
    return Template(workflow, status, data, state, meta, history_at, history)


async def create_empty(path: Path) -> None:
    async with SQLiteStore(path):
        pass  # creates the schema


def bulk_insert(path: Path, template: Template, rows: list[tuple[str, float]]) -> float:
    """Insert (id, due) alarms copied from the template in one transaction; seconds taken."""
    data = json.loads(template.data)
    began = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        now = time.time_ns() // 1_000_000
        first_k = (connection.execute("SELECT coalesce(max(k), 0) FROM procflow_instance").fetchone()[0]) + 1
        instances = []
        history = []
        for offset, (id, due) in enumerate(rows):
            data["name"], data["due"] = id, due
            state = template.state.replace(repr(TEMPLATE_DUE), repr(due))
            k = first_k + offset
            instances.append(
                (
                    k,
                    id,
                    template.workflow,
                    template.status,
                    round(due * 1000),
                    now,
                    now,
                    json.dumps(data),
                    state,
                    template.meta,
                )
            )
            history.append((k, template.history_at, template.history))
        connection.executemany(
            "INSERT INTO procflow_instance (k, id, workflow, status, due_at, version, created_at, updated_at,"
            " data, state, meta) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
            instances,
        )
        connection.executemany(
            "INSERT INTO procflow_history (k, version, at, entries) VALUES (?, 1, ?, ?)", history
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return time.perf_counter() - began


# -- finding -----------------------------------------------------------------------------------

LOOKUP = "SELECT k FROM procflow_instance WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT 20"


def lookup_us(path: Path, now_ms: int, repeat: int) -> float:
    """Median µs of the due-time look-up for a batch of 20 (read only)."""
    connection = sqlite3.connect(path)
    try:
        connection.execute(LOOKUP, (now_ms,)).fetchall()  # warm the cache
        times = []
        for _ in range(repeat):
            began = time.perf_counter_ns()
            connection.execute(LOOKUP, (now_ms,)).fetchall()
            times.append(time.perf_counter_ns() - began)
    finally:
        connection.close()
    return statistics.median(times) / 1000


async def claim_all(path: Path, now: float, synchronous: Any = "FULL") -> tuple[float, int]:
    """Seconds to claim every due row in batches of 20, and how many were claimed."""
    async with SQLiteStore(path, synchronous=synchronous) as store:
        await store.claim_due(0.0, limit=1, lease=1)  # connect and warm up; nothing is due at 0
        began = time.perf_counter()
        claimed = 0
        while batch := await store.claim_due(now, limit=20, lease=3600):
            claimed += len(batch)
        return time.perf_counter() - began, claimed


def put_back(path: Path, due: list[tuple[str, float]]) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "UPDATE procflow_instance SET due_at = ? WHERE id = ?", [(round(d * 1000), id) for id, d in due]
        )
        connection.execute("COMMIT")
        # Start every timed run from an empty write-ahead log, so that no run pays for
        # checkpointing the pages of the previous one.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


# -- delivering --------------------------------------------------------------------------------


async def deliver_backlog(path: Path) -> tuple[float, int]:
    async with engine_for(path) as engine:
        began = time.perf_counter()
        delivered = 0
        while got := await engine.work_once(batch=20):
            delivered += got
        return time.perf_counter() - began, delivered


async def lateness(path: Path, due: list[tuple[str, float]], poll: float) -> list[float]:
    last = max(d for _, d in due)
    async with engine_for(path) as engine, anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(engine.run_worker, poll_interval=poll, batch=20))
        deadline = last + 30
        while not all(id in HANDLED for id, _ in due) and time.time() < deadline:
            await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    return [HANDLED[id] - d for id, d in due if id in HANDLED]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- the run -----------------------------------------------------------------------------------


def header(args: argparse.Namespace, folder: Path) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"procflow timers benchmark (python bench/timers.py{' --quick' if args.quick else ''})")
    print(f"date:      {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    print(f"python:    {platform.python_implementation()} {platform.python_version()}")
    print(f"platform:  {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"procflow:  {pf.__version__} from {Path(pf.__file__).parent}")
    print(f"sqlite:    {sqlite3.sqlite_version}; databases in {folder} (WAL, synchronous=FULL)")
    print(f"load:      {load} (1, 5, 15 min load averages at the start)")
    print()


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="procflow-timers-", dir=args.dir))
    try:
        await run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def run(args: argparse.Namespace, folder: Path) -> None:
    began_all = time.perf_counter()
    header(args, folder)
    pending, due_count = args.pending, args.due

    commits = raw_commit_rate(folder / "raw.db", args.starts)
    print(f"0. The disk: a raw sqlite3 INSERT + COMMIT loop makes {commits:.0f} commits/s here")
    print()
    print("1. Building the databases")
    one, many = await start_rates(folder, args.starts)
    print(f"   engine.start, one at a time:      {one:8.0f} alarms/s  ({args.starts} alarms)")
    print(
        f"   engine.start, 32 concurrent tasks: {many:8.0f} alarms/s  "
        f"(so {pending:,} would take {pending / many:.0f} s)"
    )
    template = await make_template(folder)
    now = time.time()
    due = [(f"due-{n:05d}", now - 60 + n * 0.01) for n in range(due_count)]  # all overdue
    later = [(f"later-{n:06d}", now + 86400 + n) for n in range(pending - due_count)]
    small, large = folder / "small.db", folder / "large.db"
    await create_empty(small)
    await create_empty(large)
    bulk_insert(small, template, due)
    took = bulk_insert(large, template, due + later)
    print(
        f"   bulk copies of one engine-made row: {pending / took:8.0f} rows/s   "
        f"({pending:,} rows in {took:.1f} s, one transaction)"
    )
    for path in (small, large):
        wal = Path(f"{path}-wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        print(f"   {path.name:9} {path.stat().st_size / 1e6:7.1f} MB on disk ({size / 1e6:.1f} MB with WAL)")
    print()

    print(
        f"2. Finding due timers: {due_count:,} due; "
        f"small = {due_count:,} pending, large = {pending:,} pending"
    )
    now_ms = round(time.time() * 1000)
    lookups: dict[str, list[float]] = {"small": [], "large": []}
    claims: dict[str, list[float]] = {"small": [], "large": []}
    unsynced: dict[str, list[float]] = {"small": [], "large": []}
    for _ in range(args.rounds):
        for name, path in (("small", small), ("large", large)):
            lookups[name].append(lookup_us(path, now_ms, args.lookups))
            for sync, into in (("FULL", claims), ("OFF", unsynced)):
                seconds, claimed = await claim_all(path, time.time(), sync)
                assert claimed == due_count, (name, claimed)
                into[name].append(seconds)
                put_back(path, due)
    rows = [
        ("look-up of 20 due (read)", lookups, 1, "µs", "", "look-up"),
        (f"claim_due, all {due_count:,} in 20s", claims, 1000, "ms", "a commit per 20", "claim_due"),
        ("the same, synchronous=OFF", unsynced, 1000, "ms", "no fsync", "claim_due, synchronous=OFF"),
    ]
    print(f"   {'':33} {'small':>10} {'large':>10} {'large/small':>12} {'best of rounds':>16}")
    verdicts = []
    for label, runs, scale, unit, note, short in rows:
        small_t, large_t = statistics.median(runs["small"]), statistics.median(runs["large"])
        best = min(runs["large"]) / min(runs["small"])
        print(
            f"   {label:33} {small_t * scale:7.1f} {unit} {large_t * scale:7.1f} {unit} "
            f"{large_t / small_t:11.2f}x {best:15.2f}x   {note}"
        )
        verdicts.append((short, large_t / small_t))
    print(
        f"   (medians of {args.rounds} interleaved rounds, each look-up the median of {args.lookups}; "
        "'best of rounds' compares the fastest round of each)"
    )
    for label, ratio in verdicts:
        verdict = "meets" if ratio <= 1.5 else "MISSES"
        print(f"   target: large <= 1.5x small: {label} {ratio:.2f}x {verdict} the target")
    with sqlite3.connect(large) as connection:
        plan = " ".join(row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {LOOKUP}", (now_ms,)))
    connection.close()
    print(f"   query plan: {plan}")
    print()

    print(f"3. Delivering the {due_count:,} overdue timers of the large database, one worker")
    HANDLED.clear()
    CountingStore.writes = 0
    seconds, delivered = await deliver_backlog(large)
    per_timer = CountingStore.writes / delivered
    capacity = delivered / seconds
    print(
        f"   work_once(batch=20) until idle: {delivered:,} timers in {seconds:.2f} s = "
        f"{capacity:.0f} timers/s, {seconds / delivered * 1000:.2f} ms each"
    )
    print(
        f"   {per_timer:.2f} commits per timer (its share of a claim, the delivery, the step's run); "
        f"{capacity * per_timer / commits:.0%} of the disk's raw commit rate"
    )
    assert len(HANDLED) == due_count, len(HANDLED)
    print()

    print(
        f"4. Lateness: {due_count:,} timers due over {args.spread:g} s in the large database, "
        f"one run_worker(poll_interval={args.poll:g})"
    )
    HANDLED.clear()
    start_at = time.time() + 1.5
    upcoming = [(f"soon-{n:05d}", start_at + n * args.spread / due_count) for n in range(due_count)]
    bulk_insert(large, template, upcoming)
    late = await lateness(large, upcoming, args.poll)
    missing = due_count - len(late)
    p50, p99 = percentile(late, 50), percentile(late, 99)
    print(
        f"   lateness (step ran - due):  p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
        f"max {max(late) * 1000:7.1f} ms   min {min(late) * 1000:6.1f} ms"
        + (f"   ({missing} never handled!)" if missing else "")
    )
    asked = due_count / args.spread
    print(f"   rate asked: {asked:.0f} timers/s (one worker delivered {capacity:.0f}/s in part 3)")
    verdict = "meets" if p99 < 1.0 and not missing else "MISSES"
    print(f"   target: p99 < 1 s with one worker polling: {p99:.3f} s {verdict} the target")
    print()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(took {time.perf_counter() - began_all:.0f} s; load averages at the end: {load})")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 pending, 200 due: a few seconds")
    parser.add_argument("--pending", type=int, default=None, help="pending timers in the large database")
    parser.add_argument("--due", type=int, default=None, help="due timers (in both databases)")
    parser.add_argument("--starts", type=int, default=None, help="engine.start calls timed")
    parser.add_argument("--spread", type=float, default=None, help="seconds over which timers fall due")
    parser.add_argument("--poll", type=float, default=0.2, help="the worker's poll interval (default 0.2)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds of part 2")
    parser.add_argument("--lookups", type=int, default=200, help="look-ups per round (default 200)")
    parser.add_argument("--dir", default=None, help="folder for the databases (default: the temp folder)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.pending = args.pending or (10_000 if quick else 100_000)
    args.due = args.due or (200 if quick else 1_000)
    args.starts = args.starts or (200 if quick else 1_000)
    args.spread = args.spread or (4.0 if quick else 20.0)
    args.rounds = args.rounds or (3 if quick else 9)
    if args.due > args.pending:
        parser.error("--due cannot exceed --pending")
    return args


if __name__ == "__main__":
    anyio.run(main, parse(sys.argv[1:]))
