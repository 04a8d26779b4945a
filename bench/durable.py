"""Benchmark of procflow's durable engine (issue 3, "Speed and size").

Run from the repository root:

    python bench/durable.py                  # full run: a few minutes
    python bench/durable.py --quick          # smoke mode: small counts, one round
    python bench/durable.py --no-postgres    # SQLite only
    python bench/durable.py --big            # then also bench/bigstore.py (1,000,000 parked)

In one process and one run it measures, on one disk (``--dir``, default the
system's temporary folder):

1. The physical limit: a raw ``sqlite3`` loop of one small INSERT + COMMIT per
   iteration with the SQLite store's settings (WAL, synchronous=FULL); and on
   a throwaway PostgreSQL cluster started by this script (default settings,
   fsync on), one autocommitted INSERT per iteration over one connection.
2. "Approval fan-in" through ``Engine``: start 1000 instances of ``Order``
   (a step, then a ``Wait`` on ``OnEvent("approve")``), each parks; then send
   one ``approve`` event to each by correlation id, which runs one more step
   to the end. Printed: instances/s, events/s, the ratio of events/s to the
   raw commit loop's rate, commits per start and per event (each store
   ``insert``/``update`` is one transaction; for SQLite the transactions that
   reached the disk are counted too, since concurrent writes share one group
   commit), and the bytes stored per parked instance (database size after
   the starts, indexes and history included, less the empty schema, / 1000).
   Once with one sender (each send waits for its commits), once with
   ``--senders`` concurrent tasks. The same on SQLite and on PostgreSQL.
3. Where the bytes go: per table and index (SQLite's ``dbstat``, PostgreSQL's
   relation sizes), and the average stored length of each column.
4. Where the time of one sequential event goes: time spent awaiting each
   store method (wrapped), the rest (engine + interpreter + JSON), the same
   with ``synchronous=OFF`` (no fsync) and with ``MemoryStore`` (no I/O at
   all), and a cProfile of the in-memory run split by category (interpreter,
   pydantic JSON encode/decode and validation, engine, asyncio, ...).

Method: every measurement runs on a fresh database. ``--rounds`` rounds (3 by
default, 1 with ``--quick``) interleave all the measurements, so a change in
machine load hits them alike; tables show the median and the range over the
rounds, and each round's events/s ratio uses that round's raw commit rate.
The GC stays enabled. Numbers, not assertions: nothing here fails on time.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import importlib.util
import inspect
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Measure the procflow of the checkout this script lives in.
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
from _revision import git_revision  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import procflow as pf  # noqa: E402
from procflow.stores import _worker as sqlite_worker  # noqa: E402

# Quoted from issue 3 ("Speed and size"); NOT measured by this script.
QUOTED_RAW_COMMITS = 9_500  # SQLite WAL + synchronous=FULL, "on these machines"
QUOTED_TARGET_EVENTS = 4_700  # "so at least ~4,700 events/s"
QUOTED_EVENTS = {"SpiffWorkflow": 778, "DBOS": 167, "edda": 54}  # events/s, same workload
QUOTED_BYTES = {"DBOS": 819, "edda": 1_311, "SpiffWorkflow": 8_221}  # bytes per parked instance
# Issue 3's targets for procflow.
TARGET_EVENT_RATIO = 0.5  # events/s >= 50% of the raw commit loop's rate (SQLite, full durability)
TARGET_BYTES = 500  # bytes per parked instance, indexes included
TARGET_P99_MS = 2.0  # send by correlation id, 1,000,000 parked (bench/bigstore.py)


# -- the workload ------------------------------------------------------------------------


class Approval(BaseModel):
    approver: str


@dataclass
class Order:
    """Reserve, park until someone approves, ship."""

    amount: int = 0
    approved_by: str = ""
    shipped: bool = False

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", self.reserve),
            pf.Wait("decision", pf.OnEvent("approve", self.approve, pf.Step("ship", self.ship))),
        )

    def reserve(self) -> None:
        pass

    def approve(self, approval: Approval) -> str:
        self.approved_by = approval.approver
        return "approved"

    def ship(self) -> None:
        self.shipped = True


WORKLOAD = 'Order = S(Step "reserve", Wait "decision"(OnEvent "approve"(Approval) -> Step "ship"))'


def correlation_id(i: int) -> str:
    return f"order-{i:07d}"


# -- counting and timing what the engine asks of its store -------------------------------


class Spans:
    """Own time per named span: wall time inside a wrapped function, less the wrapped calls it made.

    Only meaningful while one task runs at a time (the sequential runs): the
    spans nest by a plain stack. Time while a coroutine awaits its store is
    the store's span's, so every microsecond of an event lands in exactly one
    span, or in "unaccounted" (the benchmark's loop, the event loop between awaits).
    """

    def __init__(self) -> None:
        self.own: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.active = False
        self._stack: list[float] = []
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.own.clear()
        self.calls.clear()

    def _close(self, name: str, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        self.own[name] += elapsed - self._stack.pop()
        self.calls[name] += 1
        if self._stack:
            self._stack[-1] += elapsed

    def wrap_sync(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return fn(*args, **kwargs)
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._close(name, t0)

        return wrapper

    def wrap_async(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return await fn(*args, **kwargs)
            self._stack.append(0.0)
            t0 = time.perf_counter()
            key = name
            try:
                return await fn(*args, **kwargs)
            except pf.InstanceNotFound:
                key = f"{name} (miss)"
                raise
            finally:
                self._close(key, t0)

        return wrapper

    def patch(self, owner: Any, attr: str, name: str) -> None:
        """Wrap ``owner.attr`` (a module function or a class's plain method) until ``unpatch``."""
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if original is None or isinstance(original, classmethod | staticmethod | property):
            return  # the code changed: measure without this span
        is_async = inspect.iscoroutinefunction(original)
        setattr(owner, attr, (self.wrap_async if is_async else self.wrap_sync)(name, original))
        self._undo.append(lambda: setattr(owner, attr, original))

    def unpatch(self) -> None:
        while self._undo:
            self._undo.pop()()

    def overhead_us(self) -> float:
        """The cost of one span (wrapper call plus bookkeeping), in µs, calibrated here."""
        probe = self.wrap_sync("probe", lambda: None)
        self.active = True
        n = 20_000
        t0 = time.perf_counter()
        for _ in range(n):
            probe()
        elapsed = time.perf_counter() - t0
        self.active = False
        self.own.pop("probe", None)
        self.calls.pop("probe", None)
        return elapsed / n * 1e6


# The spans of one event, in the order they are printed; labels say what each holds.
SPAN_LABELS: list[tuple[str, str]] = [
    ("store.lookup", "store: look up by id or correlation id"),
    ("store.get", "store: get by id"),
    ("store.find", "store: find by correlation id"),
    ("store.update", "store: update (history JSON, SQL, commit)"),
    ("store.insert", "store: insert"),
    ("decode_state", "decode: State JSON -> pydantic models"),
    ("WorkflowType.decode", "decode: workflow data JSON -> Order"),
    ("Engine._decode", "decode: the rest (meta, Session)"),
    ("handle_callback", "interpreter: handle_callback (payload, handler)"),
    ("resume", "interpreter: resume (step, teardown, finish)"),
    ("Order.definition", "  of which the workflow's definition()"),
    ("encode_state", "encode: State -> JSON"),
    ("WorkflowType.encode", "encode: workflow data -> JSON"),
    ("Session.due_at", "encode: due time"),
    ("Session.commit", "commit: the rest (record, meta.dump)"),
    ("Engine.send", "engine: the rest of send"),
    ("Engine.start", "engine: the rest of start"),
]

SPANS = Spans()


def install_spans() -> None:
    """Wrap the engine's parts for ``SPANS`` (process-wide, until ``SPANS.unpatch()``)."""
    from procflow import engine as engine_module
    from procflow import session as session_module
    from procflow.session import Session
    from procflow.workflow_type import WorkflowType

    SPANS.patch(engine_module, "decode_state", "decode_state")
    SPANS.patch(engine_module, "handle_callback", "handle_callback")
    SPANS.patch(engine_module, "resume", "resume")
    SPANS.patch(session_module, "encode_state", "encode_state")
    SPANS.patch(WorkflowType, "decode", "WorkflowType.decode")
    SPANS.patch(WorkflowType, "encode", "WorkflowType.encode")
    SPANS.patch(pf.Engine, "_decode", "Engine._decode")
    SPANS.patch(pf.Engine, "send", "Engine.send")
    SPANS.patch(pf.Engine, "start", "Engine.start")
    SPANS.patch(Session, "due_at", "Session.due_at")
    SPANS.patch(Session, "commit", "Session.commit")
    SPANS.patch(Order, "definition", "Order.definition")


@dataclass
class StoreCalls:
    """Calls to each store method (every run) and failed writes."""

    calls: Counter[str] = field(default_factory=Counter)
    writes_failed: int = 0

    @property
    def writes(self) -> int:
        return self.calls["insert"] + self.calls["update"]

    def reset(self) -> None:
        self.calls.clear()
        self.writes_failed = 0


def instrument(store: Any) -> StoreCalls:
    """Wrap the store's methods on the instance: count calls; spans time them in sequential runs.

    Calls that raise ``InstanceNotFound`` are counted as ``(miss)``.
    """
    calls = StoreCalls()
    for name in ("lookup", "get", "find", "insert", "update"):
        timed = SPANS.wrap_async(f"store.{name}", getattr(store, name))

        async def wrapped(*args: Any, _timed: Any = timed, _name: str = name, **kwargs: Any) -> Any:
            try:
                result = await _timed(*args, **kwargs)
            except pf.InstanceNotFound:
                calls.calls[f"{_name} (miss)"] += 1
                raise
            except Exception:
                if _name in ("insert", "update"):
                    calls.writes_failed += 1
                raise
            calls.calls[_name] += 1
            return result

        setattr(store, name, wrapped)
    return calls


class SQLiteTransactions:
    """Counts the transactions the SQLite store's worker thread commits.

    Concurrent writes that queue up share one ``BEGIN IMMEDIATE ... COMMIT``
    (group commit), so under load transactions (fsyncs) < writes. This wraps
    ``procflow.stores._worker._run_writes`` (one call per transaction) for the
    whole process; nothing in procflow is changed.
    """

    def __init__(self) -> None:
        self.count = 0
        self.jobs = 0
        original = sqlite_worker._run_writes

        def counting(connection: sqlite3.Connection, jobs: list[Any]) -> None:
            original(connection, jobs)
            if any(job.error is None for job in jobs):
                self.count += 1
                self.jobs += len(jobs)

        sqlite_worker._run_writes = counting  # type: ignore[assignment]


TRANSACTIONS = SQLiteTransactions()


RAW_WIDE_TABLES = 6

# -- the physical limits -----------------------------------------------------------------


def raw_sqlite_commits(path: Path, n: int, tables: int = 1) -> tuple[float, float]:
    """Commits/s of a bare INSERT + COMMIT loop with the store's pragmas (WAL, synchronous=FULL).

    Each commit inserts one small row into each of ``tables`` tables, so it
    writes ``tables`` pages. Also returns the WAL pages written per commit
    (over the first ``WAL_SAMPLE`` commits).
    """
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    names = [f"t{i}" for i in range(tables)]
    for name in names:
        connection.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    value = "x" * 64
    probe = WalProbe(path)
    probe.reset()
    frames = 0.0
    start = time.perf_counter()
    for i in range(n):
        connection.execute("BEGIN")
        for name in names:
            connection.execute(f"INSERT INTO {name} (v) VALUES (?)", (value,))
        connection.execute("COMMIT")
        if i + 1 == WAL_SAMPLE:
            frames = probe.frames() / WAL_SAMPLE  # a stat() call: noise next to a commit
    elapsed = time.perf_counter() - start
    connection.close()
    return n / elapsed, frames


def raw_postgres_commits(dsn: str, n: int) -> float:
    """Commits/s of one autocommitted INSERT per iteration (one statement, one commit) on one connection."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE raw_commits (id bigint GENERATED ALWAYS AS IDENTITY, v text NOT NULL)"
        )
        value = "x" * 64
        start = time.perf_counter()
        for _ in range(n):
            connection.execute("INSERT INTO raw_commits (v) VALUES (%s)", (value,))
        elapsed = time.perf_counter() - start
    return n / elapsed


# -- approval fan-in ---------------------------------------------------------------------


@dataclass
class FanIn:
    """One fan-in run: rates, commits, and the size after the starts."""

    n: int
    senders: int
    starts_per_s: float
    events_per_s: float
    writes_per_start: float
    writes_per_event: float
    transactions_per_start: float | None  # SQLite only: what reached the disk
    transactions_per_event: float | None
    size: Size | None
    calls_by_call: dict[str, float]  # store calls per event
    event_s: float  # seconds per event (wall)
    spans: dict[str, float]  # own seconds per event by span (sequential runs only)
    span_calls: dict[str, float]  # calls per event by span
    hop_s: float | None  # SQLite: one round trip to the store's thread (a no-op call)


@dataclass
class Size:
    """The bytes a store holds for ``n`` parked instances."""

    n: int
    total: int  # after the starts (checkpointed), schema included
    empty: int  # the empty schema
    objects: list[tuple[str, int, int, int]]  # (name, bytes, empty bytes, payload bytes)
    columns: dict[str, float]  # average stored length per column

    @property
    def per_instance(self) -> float:
        return (self.total - self.empty) / self.n


async def run_senders(senders: int, items: range, one: Callable[[int], Awaitable[None]]) -> float:
    """Call ``one(i)`` for each i of ``items`` from ``senders`` tasks; return the seconds it took."""
    start = time.perf_counter()
    if senders == 1:
        for i in items:
            await one(i)
    else:
        todo = iter(items)

        async def worker() -> None:
            for i in todo:
                await one(i)

        async with anyio.create_task_group() as group:
            for _ in range(senders):
                group.start_soon(worker)
    return time.perf_counter() - start


class WalProbe:
    """WAL frames (pages) written by SQLite: checkpoint and truncate the WAL, then read its length.

    Exact while fewer than ``wal_autocheckpoint`` (1000) frames are written
    after ``reset``, so only the first ``WAL_SAMPLE`` operations of a phase are probed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wal = Path(f"{path}-wal")
        self.page_size = 4096

    def reset(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            self.page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise SystemExit("the WAL could not be checkpointed: the store was busy")
        finally:
            connection.close()

    def frames(self) -> int:
        size = self.wal.stat().st_size if self.wal.exists() else 0
        return max(0, size - 32) // (self.page_size + 24)


WAL_SAMPLE = 50


async def fan_in(
    store: Any,
    n: int,
    senders: int,
    measure: Callable[[], Awaitable[Size]] | None,
    transactions: bool,
) -> FanIn:
    """Start ``n`` Orders (each parks), measure the size, then approve each by correlation id."""
    calls = instrument(store)
    async with pf.Engine(store, workflows=[Order]) as engine:
        empty = await measure() if measure is not None else None

        async def start(i: int) -> None:
            await engine.start(Order(amount=i), correlation_id=correlation_id(i))

        async def send(i: int) -> None:
            reply = await engine.send(correlation_id(i), "approve", {"approver": "ann"})
            if reply != "approved":
                raise SystemExit(f"fan-in: instance {correlation_id(i)} replied {reply!r}")

        t0 = TRANSACTIONS.count
        start_s = await run_senders(senders, range(n), start)
        start_writes = calls.writes
        start_tx = TRANSACTIONS.count - t0
        size = None
        if measure is not None:
            size = await measure()
            assert empty is not None
            size.empty, size.objects = empty.total, _with_empty(size.objects, empty.objects)
        parked = [s async for s in engine.list(status=pf.WorkflowStatus.WAITING, page_size=1000)]
        if len(parked) != n:
            raise SystemExit(f"fan-in: {len(parked)} of {n} instances parked after the starts")
        calls.reset()
        SPANS.reset()
        if senders == 1:
            install_spans()
            SPANS.active = True
        t0 = TRANSACTIONS.count
        try:
            event_s = await run_senders(senders, range(n), send)
        finally:
            SPANS.active = False
            SPANS.unpatch()
        event_tx = TRANSACTIONS.count - t0
        spans = {k: v / n for k, v in SPANS.own.items()}
        span_calls = {k: v / n for k, v in SPANS.calls.items()}
        hop_s = await worker_round_trip(store) if senders == 1 else None
        done = [s async for s in engine.list(status=pf.WorkflowStatus.FINISHED, page_size=1000)]
        if len(done) != n or calls.writes_failed:
            raise SystemExit(f"fan-in: {len(done)} of {n} finished, {calls.writes_failed} failed writes")
        check = await engine.get(correlation_id(n - 1))
        if not (check.data.shipped and check.data.approved_by == "ann"):
            raise SystemExit(f"fan-in: the last instance did not run to the end: {check.data!r}")
    return FanIn(
        n=n,
        senders=senders,
        starts_per_s=n / start_s,
        events_per_s=n / event_s,
        writes_per_start=start_writes / n,
        writes_per_event=calls.writes / n,
        transactions_per_start=start_tx / n if transactions else None,
        transactions_per_event=event_tx / n if transactions else None,
        size=size,
        calls_by_call={k: v / n for k, v in calls.calls.items()},
        event_s=event_s / n,
        spans=spans,
        span_calls=span_calls,
        hop_s=hop_s,
    )


async def worker_round_trip(store: Any, n: int = 1000) -> float | None:
    """Seconds per no-op call on the SQLite store's thread: the hop every store call pays.

    Uses the store's private worker (``_worker.call``); ``None`` for other stores.
    """
    worker = getattr(store, "_worker", None)
    if worker is None or not hasattr(worker, "call"):
        return None
    t0 = time.perf_counter()
    for _ in range(n):
        await worker.call(_noop)
    return (time.perf_counter() - t0) / n


def _noop(connection: sqlite3.Connection) -> None:
    return None


def _with_empty(
    objects: list[tuple[str, int, int, int]], empty: list[tuple[str, int, int, int]]
) -> list[tuple[str, int, int, int]]:
    before = {name: size for name, size, _, _ in empty}
    return [(name, size, before.get(name, 0), payload) for name, size, _, payload in objects]


# -- sizes -------------------------------------------------------------------------------


def sqlite_size(path: Path, n: int) -> Size:
    """Checkpoint the WAL, then page_count * page_size, and a dbstat breakdown if compiled in."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        try:
            rows = connection.execute(
                "SELECT name, sum(pgsize), sum(payload) FROM dbstat GROUP BY name ORDER BY name"
            ).fetchall()
            objects = [(name, int(size), 0, int(payload)) for name, size, payload in rows]
            counted = sum(size for _, size, _, _ in objects)
            free = pages * page_size - counted
            if free:
                objects.append(("(free pages, header)", free, 0, 0))
        except sqlite3.OperationalError:  # dbstat not compiled in: whole-file numbers only
            objects = []
        columns: dict[str, float] = {}
        if n:
            row = connection.execute(
                "SELECT avg(length(id)), avg(length(correlation_id)), avg(length(workflow)),"
                " avg(length(status)), avg(length(data)), avg(length(state)), avg(length(meta))"
                " FROM procflow_instance"
            ).fetchone()
            names = ("id", "correlation_id", "workflow", "status", "data", "state", "meta")
            columns = {name: float(value or 0) for name, value in zip(names, row, strict=True)}
            row = connection.execute("SELECT count(*), avg(length(entries)) FROM procflow_history").fetchone()
            columns["history rows per instance"] = row[0] / n
            columns["history entries"] = float(row[1] or 0)
    finally:
        connection.close()
    return Size(n=n, total=pages * page_size, empty=0, objects=objects, columns=columns)


async def postgres_size(dsn: str, n: int) -> Size:
    """pg_total_relation_size of the store's tables, with each relation (heap, TOAST, indexes)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute("CHECKPOINT")  # not needed for the sizes; keeps rounds alike
        cursor = await connection.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " WHERE c.relname IN ('procflow_instance', 'procflow_history', 'procflow_reply')"
            " AND c.relnamespace = current_schema()::regnamespace"
        )
        total = int((await cursor.fetchone())[0] or 0)
        cursor = await connection.execute(
            "SELECT c.relname, c.relkind, pg_relation_size(c.oid, 'main'),"
            " pg_relation_size(c.oid, 'fsm') + pg_relation_size(c.oid, 'vm'),"
            " coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)"
            " FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
            " AND c.relkind IN ('r', 'i') AND c.relname LIKE 'procflow%' ORDER BY c.relkind DESC, c.relname"
        )
        objects = []
        for name, kind, main, forks, toast in await cursor.fetchall():
            objects.append((f"{name}{'' if kind == 'r' else ' (index)'}", int(main), 0, 0))
            if forks:
                objects.append((f"{name} (free space + visibility maps)", int(forks), 0, 0))
            if toast:
                objects.append((f"{name} (TOAST, with its index)", int(toast), 0, 0))
        objects = [o for o in objects if not o[0].startswith("procflow_schema")]
        columns: dict[str, float] = {}
        if n:
            cursor = await connection.execute(
                "SELECT avg(pg_column_size(id)), avg(pg_column_size(correlation_id)),"
                " avg(pg_column_size(data)), avg(pg_column_size(state)), avg(pg_column_size(meta)),"
                " avg(pg_column_size(i.*)) FROM procflow_instance i"
            )
            row = await cursor.fetchone()
            names = ("id", "correlation_id", "data", "state", "meta", "whole row (tuple data)")
            columns = {name: float(value or 0) for name, value in zip(names, row, strict=True)}
    return Size(n=n, total=total, empty=0, objects=objects, columns=columns)


# -- PostgreSQL --------------------------------------------------------------------------


def load_cluster_class() -> type[Any]:
    """``TemporaryCluster`` from tests/postgres_cluster.py, without needing pytest.

    That module is also a pytest plugin and imports pytest at the top; when
    pytest is not installed, a stand-in with the few names it touches at
    import time is put in its place (its fixtures are never called here).
    """
    try:
        import pytest  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("pytest")

        class StashKey:
            def __class_getitem__(cls, item: object) -> type[StashKey]:
                return cls

        def fixture(*args: Any, **kwargs: Any) -> Any:
            if args and callable(args[0]):
                return args[0]
            return lambda fn: fn

        stand_in.StashKey = StashKey  # type: ignore[attr-defined]
        stand_in.fixture = fixture  # type: ignore[attr-defined]
        sys.modules["pytest"] = stand_in
    spec = importlib.util.spec_from_file_location(
        "procflow_bench_postgres_cluster", ROOT / "tests" / "postgres_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TemporaryCluster  # type: ignore[no-any-return]


class Postgres:
    """A throwaway cluster with default settings (fsync on); a fresh schema per measurement."""

    def __init__(self) -> None:
        self.cluster = load_cluster_class()(durable=True)
        self.cluster.start()
        self.base = self.cluster.dsn()
        self.version = self._query("SHOW server_version")
        self.settings = ", ".join(
            f"{name}={self._query(f'SHOW {name}')}"
            for name in ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
        )

    def _query(self, sql: str) -> str:
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as connection:
            row = connection.execute(sql).fetchone()
        return str(row[0]) if row else ""

    def fresh(self) -> str:
        """A DSN whose tables land in a new, empty schema."""
        import psycopg

        schema = f"b_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.base, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        return f"{self.base}?options=-csearch_path%3D{schema}"

    def stop(self) -> None:
        self.cluster.stop()


# -- where the time goes -----------------------------------------------------------------

CATEGORIES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("pydantic: JSON decode + validate (validate_json)", lambda f, n: "validate_json" in n),
    ("pydantic: JSON encode (to_json / dump_json)", lambda f, n: "to_json" in n),
    ("pydantic: validate/build models (validate_python, copies)", lambda f, n: "pydantic" in f + n),
    ("stdlib json (history lines)", lambda f, n: f.endswith(("json/encoder.py", "json/__init__.py"))),
    (
        "interpreter (interpreter, statements, handlers, state)",
        lambda f, n: any(
            f.endswith(f"procflow/{m}.py")
            for m in ("interpreter", "statements", "handlers", "state", "waitgroup", "_calling", "hooks")
        ),
    ),
    ("MemoryStore (its copies of records; not in a real store)", lambda f, n: "procflow/stores/" in f),
    ("dataclasses.replace (mostly the stores' stored_as)", lambda f, n: f.endswith("dataclasses.py")),
    ("engine + session", lambda f, n: "procflow/" in f),
    ("the workflow's own code (definition(), steps)", lambda f, n: f.endswith("bench/durable.py")),
    ("asyncio / anyio (tasks, awaits)", lambda f, n: "asyncio" in f or "anyio" in f),
    ("uuid, time, other builtins and stdlib", lambda f, n: True),
]


def categorize(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time (tottime) per category, in seconds."""
    totals: Counter[str] = Counter()
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for label, test in CATEGORIES:
            if test(filename, name):
                totals[label] += tottime
                break
    return [(label, totals[label]) for label, _ in CATEGORIES]


async def profile_events(n: int) -> tuple[list[tuple[str, float]], list[tuple[str, float, int]], float]:
    """cProfile of ``n`` sequential sends on MemoryStore (no I/O): seconds per category and top functions."""
    store = pf.MemoryStore()
    async with pf.Engine(store, workflows=[Order]) as engine:
        for i in range(n):
            await engine.start(Order(amount=i), correlation_id=correlation_id(i))
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(n):
            await engine.send(correlation_id(i), "approve", {"approver": "ann"})
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:12]  # type: ignore[attr-defined]
    functions = [(_function_name(key), value[2], value[1]) for key, value in top]
    return categorize(stats), functions, total


def _function_name(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if "procflow" in parts or "bench" in parts else Path(filename).name
    return f"{short}:{line}({name})"


# -- running it all ----------------------------------------------------------------------


@dataclass
class Results:
    raw_sqlite: list[float] = field(default_factory=list)
    raw_frames: list[float] = field(default_factory=list)
    raw_sqlite_wide: list[float] = field(default_factory=list)
    raw_wide_frames: list[float] = field(default_factory=list)
    raw_postgres: list[float] = field(default_factory=list)
    runs: dict[str, list[FanIn]] = field(default_factory=dict)

    def add(self, key: str, run: FanIn) -> None:
        self.runs.setdefault(key, []).append(run)


async def sqlite_fan_in(folder: Path, n: int, senders: int, synchronous: str = "FULL") -> FanIn:
    path = folder / f"fanin-{uuid.uuid4().hex[:8]}.db"
    store = pf.SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]

    async def measure() -> Size:
        return await anyio.to_thread.run_sync(sqlite_size, path, n)

    try:
        full = synchronous == "FULL"
        return await fan_in(
            store,
            n,
            senders,
            measure if full else None,
            transactions=True,
        )
    finally:
        _remove(path)


async def postgres_fan_in(postgres: Postgres, n: int, senders: int) -> FanIn:
    dsn = postgres.fresh()
    # The pool holds a connection per sender from the start: the steady state, not its growth.
    store = pf.PostgresStore(dsn, min_size=senders, max_size=max(10, senders))

    async def measure() -> Size:
        return await postgres_size(dsn, n)

    return await fan_in(store, n, senders, measure, transactions=False)


async def memory_fan_in(n: int) -> FanIn:
    return await fan_in(pf.MemoryStore(), n, 1, None, transactions=False)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def run_all(args: argparse.Namespace, folder: Path, postgres: Postgres | None) -> Results:
    results = Results()
    n, k = args.n, args.senders
    # Warm-up: imports, pydantic's schema caches, the disk's first writes.
    await sqlite_fan_in(folder, min(n, 50), 1)
    await memory_fan_in(min(n, 50))
    if postgres is not None:
        await postgres_fan_in(postgres, min(n, 50), 1)
    for r in range(1, args.rounds + 1):
        progress(f"round {r}/{args.rounds}: raw SQLite commits")
        raw = folder / f"raw-{r}.db"
        rate, frames = raw_sqlite_commits(raw, args.raw)
        results.raw_sqlite.append(rate)
        results.raw_frames.append(frames)
        _remove(raw)
        rate, frames = raw_sqlite_commits(raw, args.raw, tables=RAW_WIDE_TABLES)
        results.raw_sqlite_wide.append(rate)
        results.raw_wide_frames.append(frames)
        _remove(raw)
        progress(f"round {r}/{args.rounds}: SQLite fan-in, 1 sender")
        results.add("sqlite 1", await sqlite_fan_in(folder, n, 1))
        progress(f"round {r}/{args.rounds}: SQLite fan-in, {k} senders")
        results.add(f"sqlite {k}", await sqlite_fan_in(folder, n, k))
        progress(f"round {r}/{args.rounds}: SQLite synchronous=OFF and MemoryStore, 1 sender")
        results.add("sqlite-off 1", await sqlite_fan_in(folder, n, 1, synchronous="OFF"))
        results.add("memory 1", await memory_fan_in(n))
        if postgres is not None:
            progress(f"round {r}/{args.rounds}: raw PostgreSQL commits")
            results.raw_postgres.append(raw_postgres_commits(postgres.fresh(), args.raw))
            progress(f"round {r}/{args.rounds}: PostgreSQL fan-in, 1 sender")
            results.add("postgres 1", await postgres_fan_in(postgres, n, 1))
            progress(f"round {r}/{args.rounds}: PostgreSQL fan-in, {k} senders")
            results.add(f"postgres {k}", await postgres_fan_in(postgres, n, k))
    if args.sweep:
        for senders in SWEEP:
            progress(f"sweep: SQLite fan-in, {senders} senders")
            results.add(f"sweep {senders}", await sqlite_fan_in(folder, n, senders))
    return results


SWEEP = (1, 2, 4, 8, 16, 32, 64)


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


# -- report ------------------------------------------------------------------------------


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def rng(xs: Sequence[float], fmt: str = ",.0f") -> str:
    if len(xs) < 2:
        return ""
    return f"({min(xs):{fmt}}..{max(xs):{fmt}})"


def cell(xs: Sequence[float], fmt: str = ",.0f") -> str:
    if not xs:
        return ""
    return f"{med(xs):{fmt}} {rng(xs, fmt)}".strip()


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def filesystem(folder: Path) -> str:
    try:
        out = (
            subprocess.run(["df", "-T", str(folder)], capture_output=True, text=True, timeout=5, check=True)
            .stdout.splitlines()[-1]
            .split()
        )
        return f"{out[0]} ({out[1]})"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def print_header(args: argparse.Namespace, folder: Path, postgres: Postgres | None) -> None:
    print("procflow durable engine benchmark (python bench/durable.py)")
    print(f"date:      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"python:    {platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    print(f"platform:  {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"procflow:  {pf.__version__} from {Path(pf.__file__).parent}{git_revision()}")
    print(f"sqlite:    {sqlite3.sqlite_version} (WAL, synchronous=FULL unless said)")
    if postgres is not None:
        print(f"postgres:  {postgres.version}, throwaway cluster on 127.0.0.1 ({postgres.settings})")
    print(f"disk:      {folder} on {filesystem(folder)}; the PostgreSQL cluster in a temporary folder")
    print(f"workload:  {WORKLOAD}")
    print(
        f"           {args.n} instances with correlation ids, each started (runs reserve, parks), then sent "
        "approve by correlation id (runs ship, finishes)"
    )
    print(
        f"method:    {'quick' if args.quick else 'full'} mode; {args.rounds} interleaved round(s), each on "
        f"fresh databases; median (min..max over rounds); raw loops of {args.raw} commits; asyncio (anyio)"
    )
    print(f"load:      {load()} (1, 5, 15 min load averages at the start)")
    print()


def print_results(args: argparse.Namespace, res: Results, postgres: Postgres | None) -> None:
    k = args.senders
    sq1, sqk = res.runs["sqlite 1"], res.runs[f"sqlite {k}"]
    pg1 = res.runs.get("postgres 1", [])
    pgk = res.runs.get(f"postgres {k}", [])
    has_pg = postgres is not None and bool(pg1)
    w = 30

    def row(label: str, sq: str, pg: str = "", note: str = "") -> None:
        print(f"   {label:<44} {sq:<{w}} {pg if has_pg else '':<{w if has_pg else 0}} {note}".rstrip())

    print("1. The physical limit: raw INSERT + COMMIT loop, one small row per commit, one connection")
    row("", "SQLite (WAL, synchronous=FULL)", "PostgreSQL (fsync on)")
    row("commits/s", cell(res.raw_sqlite), cell(res.raw_postgres) if has_pg else "")
    row(
        "µs per commit",
        cell([1e6 / x for x in res.raw_sqlite]),
        cell([1e6 / x for x in res.raw_postgres]) if has_pg else "",
    )
    row(
        f"SQLite, {RAW_WIDE_TABLES} pages per commit: commits/s",
        cell(res.raw_sqlite_wide),
        "",
        f"(a row into each of {RAW_WIDE_TABLES} tables: {med(res.raw_wide_frames):.1f} WAL pages per commit, "
        f"about as many as a procflow commit changes: row, indexes, history; the loop above writes "
        f"{med(res.raw_frames):.1f})",
    )
    print(f"   (quoted from issue 3, not measured here: ~{QUOTED_RAW_COMMITS:,} commits/s on SQLite)")
    print()

    print(f"2. Approval fan-in: {args.n} instances; 1 sender (each call waits for its commits), then {k}")
    row("", "SQLite", "PostgreSQL")
    for senders, sq, pg in ((1, sq1, pg1), (k, sqk, pgk)):
        tag = f"{senders} sender{'s' if senders > 1 else ''}"
        row(f"starts/s, {tag}", cell([r.starts_per_s for r in sq]), cell([r.starts_per_s for r in pg]))
        row(f"events/s, {tag}", cell([r.events_per_s for r in sq]), cell([r.events_per_s for r in pg]))
        row(
            f"  events/s ÷ raw commits/s, {tag}",
            cell([r.events_per_s / raw for r, raw in zip(sq, res.raw_sqlite, strict=False)], ".2f"),
            cell([r.events_per_s / raw for r, raw in zip(pg, res.raw_postgres, strict=False)], ".2f"),
        )
        row(
            f"  ms per event, {tag}",
            cell([1e3 / r.events_per_s for r in sq], ".3f"),
            cell([1e3 / r.events_per_s for r in pg], ".3f"),
        )
    row(
        "commits (store writes) per start",
        cell([r.writes_per_start for r in sq1], ".2f"),
        cell([r.writes_per_start for r in pg1], ".2f"),
    )
    row(
        "commits (store writes) per event",
        cell([r.writes_per_event for r in sq1], ".2f"),
        cell([r.writes_per_event for r in pg1], ".2f"),
        "(each insert/update is one transaction)",
    )
    for senders, sq in ((1, sq1), (k, sqk)):
        tag = f"{senders} sender{'s' if senders > 1 else ''}"
        row(
            f"SQLite transactions per event, {tag}",
            cell([r.transactions_per_event or 0 for r in sq], ".2f"),
            "",
            "(fsyncs: group commit shares one)" if senders > 1 else "",
        )
    row(
        "bytes per parked instance",
        cell([r.size.per_instance for r in sq1 if r.size]),
        cell([r.size.per_instance for r in pg1 if r.size]),
        "(after the starts; tables + indexes + history, less the empty schema)",
    )
    print()
    print("   targets (quoted from issue 3):")
    raw = med(res.raw_sqlite)
    print(
        f"   - events/s >= 50% of the raw commit loop on SQLite with full durability "
        f"(~{QUOTED_RAW_COMMITS:,}/s -> >= ~4,700 events/s); this run's raw loop: {raw:,.0f} commits/s"
    )
    for senders, sq in ((1, sq1), (k, sqk)):
        ratio = med([r.events_per_s / x for r, x in zip(sq, res.raw_sqlite, strict=False)])
        events = med([r.events_per_s for r in sq])
        absolute = "at least" if events >= QUOTED_TARGET_EVENTS else "below"
        print(
            f"     {senders} sender{'s' if senders > 1 else ' '}: {events:,.0f} events/s = {ratio:.0%} "
            f"of this run's raw loop: {verdict(ratio >= TARGET_EVENT_RATIO)} "
            f"({absolute} the quoted ~{QUOTED_TARGET_EVENTS:,} events/s)"
        )
    quoted = ", ".join(f"{name} {value:,}" for name, value in QUOTED_EVENTS.items())
    print(f"     same workload, quoted from issue 3, not measured here: {quoted} events/s")
    size = med([r.size.per_instance for r in sq1 if r.size])
    line = f"   - <= {TARGET_BYTES} bytes per parked instance, indexes included: SQLite {size:,.0f}"
    if has_pg:
        pg_size = med([r.size.per_instance for r in pg1 if r.size])
        line += f" ({verdict(size <= TARGET_BYTES)}); "
        line += f"PostgreSQL {pg_size:,.0f} ({verdict(pg_size <= TARGET_BYTES)})"
    else:
        line += f": {verdict(size <= TARGET_BYTES)}"
    print(line)
    quoted = ", ".join(f"{name} {value:,}" for name, value in QUOTED_BYTES.items())
    print(f"     quoted from issue 3, not measured here: {quoted} bytes")
    print(
        f"   - p99 send by correlation id < {TARGET_P99_MS:g} ms with 1,000,000 parked: "
        "bench/bigstore.py (or --big)"
    )
    print()

    print(f"3. Where the bytes of {args.n} parked instances go (first round)")
    for label, runs in (("SQLite (dbstat; pages of 4 KiB)", sq1), ("PostgreSQL (8 KiB pages)", pg1)):
        if not runs or runs[0].size is None:
            continue
        s = runs[0].size
        print(f"   {label}: {s.total:,} bytes in all, {s.empty:,} of them the empty schema")
        if s.objects:
            print(f"     {'table / index':<52} {'bytes/inst':>10} {'payload/inst':>13}")
            for name, total, empty, payload in s.objects:
                pay = f"{payload / s.n:13.0f}" if payload else f"{'':13}"
                print(f"     {name:<52} {(total - empty) / s.n:10.0f} {pay}")
        cols = ", ".join(f"{name} {value:.0f}" for name, value in s.columns.items() if "rows" not in name)
        print(f"     average stored length (bytes): {cols}")
        if "history rows per instance" in s.columns:
            print(f"     history rows per parked instance: {s.columns['history rows per instance']:.1f}")
    print()

    print("4. Where the time of one sequential event goes (µs per event, 1 sender, medians over rounds)")
    print("   own time of each part (wrapped; nested parts are taken out of their callers)")
    off = res.runs["sqlite-off 1"]
    mem = res.runs["memory 1"]
    cols = [("SQLite FULL", sq1), ("SQLite sync=OFF", off), ("MemoryStore", mem)]
    if has_pg:
        cols.append(("PostgreSQL", pg1))
    print(f"   {'':<58}{'calls':>6}" + "".join(f"{name:>17}" for name, _ in cols))

    def line(label: str, calls: str, values: list[float]) -> None:
        print(f"   {label:<58}{calls:>6}" + "".join(f"{v * 1e6:17.0f}" for v in values))

    line("wall time per event", "", [med([r.event_s for r in runs]) for _, runs in cols])
    seen = {key for _, runs in cols for r in runs for key in r.spans}
    for key, label in SPAN_LABELS:
        if key not in seen:
            continue
        calls = med([r.span_calls.get(key, 0) for r in sq1])
        line(f"  {label}", f"{calls:.3g}", [med([r.spans.get(key, 0) for r in runs]) for _, runs in cols])
    line(
        "  unaccounted (benchmark loop, event loop)",
        "",
        [med([r.event_s - sum(r.spans.values()) for r in runs]) for _, runs in cols],
    )
    cpu = [
        med([sum(v for k, v in r.spans.items() if not k.startswith("store.")) for r in runs])
        for _, runs in cols
    ]
    line("engine + interpreter + JSON (all but store:)", "", cpu)
    spans_per_event = med([sum(r.span_calls.values()) for r in sq1])
    print(
        f"   (the timing wrappers cost about {SPAN_OVERHEAD_US[0]:.1f} µs per span here, "
        f"{spans_per_event:.0f} spans per event: ~{SPAN_OVERHEAD_US[0] * spans_per_event:.0f} µs per event "
        "inside the numbers above)"
    )
    hops = [r.hop_s for r in sq1 if r.hop_s is not None]
    hops_off = [r.hop_s for r in off if r.hop_s is not None]
    per_commit = 1e6 / raw
    writes = med([r.writes_per_event for r in sq1])
    print(
        "   SQLite: a round trip to the store's thread (no-op call) costs "
        f"{cell([h * 1e6 for h in hops])} µs "
        f"(sync=OFF run: {cell([h * 1e6 for h in hops_off])} µs); every store call pays one"
    )
    print(
        f"   physical floor: {writes:.0f} commits x {per_commit:.0f} µs (raw loop) = "
        f"{writes * per_commit:.0f} µs per event on SQLite"
        + (
            f"; {med([r.writes_per_event for r in pg1]):.0f} x {1e6 / med(res.raw_postgres):.0f} µs = "
            f"{med([r.writes_per_event for r in pg1]) * 1e6 / med(res.raw_postgres):.0f} µs on PostgreSQL"
            if has_pg
            else ""
        )
    )


SPAN_OVERHEAD_US = [0.0]


def print_sweep(res: Results) -> None:
    print()
    print("   SQLite by number of concurrent senders (one run each, after the rounds):")
    print(f"   {'senders':>9}{'starts/s':>10}{'events/s':>10}{'tx/event':>10}")
    for senders in SWEEP:
        runs = res.runs.get(f"sweep {senders}")
        if not runs:
            continue
        r = runs[0]
        print(
            f"   {senders:>9}{r.starts_per_s:>10,.0f}{r.events_per_s:>10,.0f}"
            f"{r.transactions_per_event or 0:>10.2f}"
        )


def print_profile(
    profile: tuple[list[tuple[str, float]], list[tuple[str, float, int]], float], n: int
) -> None:
    categories, functions, total = profile
    print()
    print(
        f"5. cProfile of {n} sequential sends on MemoryStore (no I/O): own time by category "
        "(profiling inflates Python-level calls; read the shares, not the µs)"
    )
    for label, seconds in categories:
        print(f"   {label:<62} {seconds / n * 1e6:7.1f} µs  {seconds / total:5.1%}")
    print(f"   {'total':<62} {total / n * 1e6:7.1f} µs")
    print("   top functions by own time:")
    for name, seconds, _calls in functions:
        print(f"   {seconds / n * 1e6:7.1f} µs/event  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round (a smoke test)")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--big", action="store_true", help="then run bench/bigstore.py (1,000,000 parked)")
    parser.add_argument("--n", type=int, default=None, help="instances per fan-in (default 1000; quick 200)")
    parser.add_argument("--senders", type=int, default=16, help="concurrent senders in the second run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument(
        "--raw", type=int, default=None, help="commits per raw loop (default 3000; quick 500)"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also SQLite events/s for 1 to 64 concurrent senders (one run each)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile part")
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder on the disk to measure (default: a temp dir)"
    )
    args = parser.parse_args()
    args.n = args.n or (200 if args.quick else 1000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.raw = args.raw or (500 if args.quick else 3000)
    t0 = time.perf_counter()
    SPAN_OVERHEAD_US[0] = SPANS.overhead_us()
    postgres: Postgres | None = None
    if not args.no_postgres:
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            print("(PostgreSQL skipped: initdb / pg_ctl are not on PATH)\n")
        else:
            progress("starting a throwaway PostgreSQL cluster (fsync on)")
            postgres = Postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="procflow-bench-", dir=args.dir) as name:
            folder = Path(name)
            print_header(args, folder, postgres)
            results = anyio.run(run_all, args, folder, postgres, backend="asyncio")
    finally:
        if postgres is not None:
            postgres.stop()
    print_results(args, results, postgres)
    if args.sweep:
        print_sweep(results)
    if not args.no_profile:
        progress("profiling sends on MemoryStore")
        print_profile(anyio.run(profile_events, args.n, backend="asyncio"), args.n)
    print(f"\n(took {time.perf_counter() - t0:.0f} s; load averages at the end: {load()})")
    if args.big:
        print()
        sys.stdout.flush()
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bigstore

        bigstore.main(["--quick"] if args.quick else [])


if __name__ == "__main__":
    main()
