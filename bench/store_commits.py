"""How close ``SQLiteStore.update`` comes to the disk's commit rate.

Run ``python bench/store_commits.py [--n 3000] [--dir DIR] [--backend asyncio|trio]``.
In one run and on one disk it measures:

1. the physical limit: a raw ``sqlite3`` loop of one small INSERT + COMMIT
   per iteration, with the store's settings (WAL, synchronous=FULL);
2. ``SQLiteStore.update()`` (a ~300-byte State and one history line)
   called in a loop from async code, one at a time (each waits for its own
   commit);
3. the same updates from 32 concurrent tasks (commits are shared);
4. the bytes stored per instance for a ~300-byte State, indexes and a
   three-line history included.

and prints the rates and their ratios to (1). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import anyio

from procflow.stores import HistoryEntry, InstanceRecord, SQLiteStore

CONCURRENCY = 32


def raw_commit_rate(path: Path, n: int) -> float:
    """Commits per second of a bare INSERT + COMMIT loop with the store's pragmas."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    start = time.perf_counter()
    for _ in range(n):
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (v) VALUES (?)", ("x" * 64,))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - start
    connection.close()
    return n / elapsed


def parked_state(id: str) -> str:
    """A State like the engine's for an instance parked on one event (~300 bytes)."""
    return json.dumps(
        {
            "id": id,
            "workflow": "approval",
            "status": "WAITING",
            "threads": [
                {
                    "id": "_main_",
                    "status": "WAITING_EVENT",
                    "cur_step": "decision",
                    "wait_events": [
                        {
                            "type": "event",
                            "req": {"workflow_id": id, "thread_id": "_main_", "name": "approve", "pc": 2},
                            "status": "SETUP",
                        }
                    ],
                    "pc": 2,
                }
            ],
            "pc": 2,
        },
        separators=(",", ":"),
    )


async def update_rates(path: Path, n: int) -> tuple[float, float]:
    """Updates per second: one at a time, then from concurrent tasks."""
    async with SQLiteStore(path) as store:
        record = await store.insert(InstanceRecord("one", "approval", "WAITING", "{}", parked_state("one")))
        start = time.perf_counter()
        for _ in range(n):
            record = await store.update(record, [HistoryEntry(time.time(), "step", "ship", "_main_")])
        sequential = n / (time.perf_counter() - start)

        records = [
            await store.insert(InstanceRecord(f"c{i}", "approval", "WAITING", "{}", parked_state(f"c{i}")))
            for i in range(CONCURRENCY)
        ]
        per_task = max(1, n // CONCURRENCY)

        async def work(record: InstanceRecord) -> None:
            for _ in range(per_task):
                record = await store.update(record, [HistoryEntry(time.time(), "step", "ship", "_main_")])

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for one in records:
                group.start_soon(work, one)
        concurrent = per_task * CONCURRENCY / (time.perf_counter() - start)
    return sequential, concurrent


async def bytes_per_instance(path: Path, n: int) -> tuple[float, int]:
    """Bytes per parked instance: inserted, then updated to parked with a history."""
    async with SQLiteStore(path) as store:
        empty = await store.size_bytes()
        now = time.time()
        for i in range(n):
            id = f"order-{i:07d}"
            first = InstanceRecord(id, "approval", "RESUMING", '{"approved":false}', parked_state(id), 0, id)
            record = await store.insert(
                first, [HistoryEntry(now, "started"), HistoryEntry(now, "step", "reserve")]
            )
            await store.update(
                InstanceRecord(
                    id, "approval", "WAITING", '{"approved":false}', parked_state(id), record.version, id
                ),
                [HistoryEntry(now, "setup", "approve", "_main_")],
            )
        return (await store.size_bytes() - empty) / n, len(parked_state("order-0000000"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="commits per measurement")
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder on the disk to measure (default: a temp dir)"
    )
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        raw = raw_commit_rate(Path(folder) / "raw.db", args.n)
        sequential, concurrent = anyio.run(
            update_rates, Path(folder) / "store.db", args.n, backend=args.backend
        )
        size, state_bytes = anyio.run(
            bytes_per_instance, Path(folder) / "size.db", 5000, backend=args.backend
        )
    print(f"raw INSERT+COMMIT loop       {raw:8.0f} commits/s  ({1e6 / raw:.0f} µs per commit)")
    print(
        f"SQLiteStore.update, 1 task   {sequential:8.0f} updates/s  ratio {sequential / raw:.2f}"
        f"  (overhead {1e6 / sequential - 1e6 / raw:.0f} µs per update)"
    )
    tasks = f"{CONCURRENCY} tasks"
    print(f"SQLiteStore.update, {tasks} {concurrent:8.0f} updates/s  ratio {concurrent / raw:.2f}")
    print(
        f"bytes per parked instance    {size:8.0f}  (State of {state_bytes} bytes, 3 history lines, indexes)"
    )


if __name__ == "__main__":
    main()
