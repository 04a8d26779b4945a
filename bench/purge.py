"""Benchmark of retention: ``engine.purge`` on a SQLite store where most instances are live.

Run from the repository root:

    python bench/purge.py              # 100,000 instances, 10,000 of them old and over; ~half a minute
    python bench/purge.py --quick      # 10,000 instances, 1,000 old and over; a few seconds
    python bench/purge.py --dir /data  # put the databases on another disk

The store's defaults (WAL, synchronous=FULL). One database holds ``--rows``
instances: ``--old`` finished or cancelled 60 days ago (one in ten
cancelled), ``--recent`` finished yesterday, the rest parked (WAITING); each
with two history rows, and every tenth with a kept reply. The rows are
copies of instances a real engine started and finished, written in bulk
(``executemany``), untimed.

1. ``engine.purge(older_than=30 days, batch=--batch)``, as ``procflow purge``
   runs it: total time, rate, and the longest batch (each batch is one write
   transaction: other writers wait for it). Then the purge's last look, the
   one that finds nothing left: its time.
2. For contrast, on a copy of the same database: the same batched delete
   made to walk the status index ``(status, id)``, as SQLite plans it when
   not told to use ``procflow_instance_over`` (through every finished
   instance, the recent ones too, in each batch).

Numbers, not assertions: nothing here fails on time.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio

import procflow as pf
from procflow.stores import sqlite as sqlite_store

DAY = 86_400_000  # in milliseconds, as the store keeps times


@dataclass
class Ticket:
    note: str = "a ticket of a help desk, with a line of text"

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("open", lambda: None),
            pf.Wait("triage", pf.OnEvent("close", lambda: "closed")),
        )


def templates(path: Path) -> dict[str, tuple[str, str, str]]:
    """(data, state, meta) of a parked and of a finished Ticket, as a real engine stored them."""

    async def make() -> None:
        async with pf.Engine(pf.SQLiteStore(path), workflows=[Ticket], observers=[]) as engine:
            await engine.start(Ticket(), id="waiting")
            await engine.start(Ticket(), id="finished")
            await engine.send("finished", "close", idempotency_key="k")

    anyio.run(make)
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT id, data, state, meta FROM procflow_instance").fetchall()
        connection.execute("DELETE FROM procflow_instance")
        connection.execute("DELETE FROM procflow_history")
        connection.execute("DELETE FROM procflow_reply")
    connection.close()
    return {id: (data, state, meta) for id, data, state, meta in rows}


def build(path: Path, rows: int, old: int, recent: int) -> None:
    shapes = templates(path)
    now = int(time.time() * 1000)
    instances = []
    for n in range(rows):
        if n % (rows // old) == 0 and n // (rows // old) < old:
            status, when = ("CANCELLED" if n % 10 == 0 else "FINISHED"), now - 60 * DAY + n
        elif n % (rows // recent) == 1 and n // (rows // recent) < recent:
            status, when = "FINISHED", now - DAY + n
        else:
            status, when = "WAITING", now - 60 * DAY + n
        data, state, meta = shapes["waiting" if status == "WAITING" else "finished"]
        instances.append((f"t-{n:07}", status, when, data, state, meta))
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO procflow_instance"
            " (id, workflow, status, version, created_at, updated_at, data, state, meta)"
            " VALUES (?, 'Ticket', ?, 2, ?3, ?3, ?, ?, ?)",
            instances,
        )
        connection.execute(
            "INSERT INTO procflow_history (k, version, at, entries)"
            ' SELECT k, v.version, created_at, \'[[0,"started"],[0,"setup","close",1]]\''
            " FROM procflow_instance, (SELECT 1 AS version UNION ALL SELECT 2) AS v"
        )
        connection.execute(
            "INSERT INTO procflow_reply (k, key, reply) SELECT k, 'k', '{\"reply\":\"closed\"}'"
            " FROM procflow_instance WHERE k % 10 = 0"
        )
        connection.execute("ANALYZE")
    connection.close()


def count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as connection:
        value = int(connection.execute(sql).fetchone()[0])
    connection.close()
    return value


async def purge(path: Path, batch: int) -> tuple[int, float, float, float]:
    """(removed, seconds, longest batch in seconds, seconds of the last, empty look)."""
    longest = 0.0
    async with pf.Engine(pf.SQLiteStore(path), workflows=[Ticket], observers=[]) as engine:
        mark = time.perf_counter()

        def on_batch(ids: list[str]) -> None:
            nonlocal mark, longest
            now = time.perf_counter()
            longest = max(longest, now - mark)
            mark = now

        start = time.perf_counter()
        removed = await engine.purge(older_than=timedelta(days=30), batch=batch, on_batch=on_batch)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        await engine.purge(older_than=timedelta(days=30), batch=batch)
        empty = time.perf_counter() - start
    return removed, elapsed, longest, empty


def purge_by_status_index(path: Path, batch: int) -> tuple[int, float, float, float]:
    """The same batches, walking the status index: (removed, seconds, longest batch in seconds,
    seconds of the last look, which finds fewer than a batch)."""
    sql = sqlite_store._PURGE.replace("procflow_instance_over", "procflow_instance_status")
    cutoff = int(time.time() * 1000) - 30 * DAY
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    removed, longest, last = 0, 0.0, 0.0
    start = time.perf_counter()
    while True:
        began = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        gone = connection.execute(sql, (cutoff, batch)).fetchall()
        keys = [(key,) for key, _ in gone]
        connection.executemany(sqlite_store._PURGE_HISTORY, keys)
        connection.executemany(sqlite_store._PURGE_REPLIES, keys)
        connection.execute("COMMIT")
        last = time.perf_counter() - began
        longest = max(longest, last)
        removed += len(gone)
        if len(gone) < batch:
            break
    elapsed = time.perf_counter() - start
    connection.close()
    return removed, elapsed, longest, last


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 instances, 1,000 old: a few seconds")
    parser.add_argument("--rows", type=int, default=None, help="instances in all (default 100,000)")
    parser.add_argument(
        "--old", type=int, default=None, help="old finished or cancelled ones (default 10,000)"
    )
    parser.add_argument("--recent", type=int, default=None, help="ones finished yesterday (default rows / 5)")
    parser.add_argument("--batch", type=int, default=1000, help="instances per transaction (default 1000)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases")
    args = parser.parse_args(argv)
    rows = args.rows or (10_000 if args.quick else 100_000)
    old = args.old or rows // 10
    recent = args.recent or rows // 5
    print(f"procflow purge benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "purge.db"
        start = time.perf_counter()
        build(path, rows, old, recent)
        print(
            f"built {rows:,} instances ({old:,} old and over, {recent:,} finished yesterday) in "
            f"{time.perf_counter() - start:.1f} s, untimed below"
        )
        copy = Path(folder) / "copy.db"
        shutil.copy(path, copy)

        removed, elapsed, longest, empty = anyio.run(purge, path, args.batch)
        left = count(path, "SELECT count(*) FROM procflow_instance")
        orphans = count(
            path, "SELECT count(*) FROM procflow_history WHERE k NOT IN (SELECT k FROM procflow_instance)"
        )
        print(
            f"1. engine.purge(batch={args.batch}): removed {removed:,} in {elapsed:.3f} s "
            f"({removed / elapsed:,.0f}/s), longest batch {longest * 1000:.1f} ms; "
            f"{left:,} instances left, {orphans} history rows left behind"
        )
        print(f"   the last look, finding nothing left: {empty * 1000:.2f} ms")

        removed_s, elapsed_s, longest_s, last_s = purge_by_status_index(copy, args.batch)
        print(
            f"2. the same through the status index: removed {removed_s:,} in {elapsed_s:.3f} s, "
            f"longest batch {longest_s * 1000:.1f} ms: {elapsed_s / elapsed:.1f}x the time of 1, "
            f"{longest_s / longest:.1f}x its longest batch"
        )
        print(f"   its last look (a commit included): {last_s * 1000:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
