"""A thread that owns one ``sqlite3`` connection and runs jobs for async callers.

Every call hops to this one thread and back, which is cheaper than a thread
pool and keeps the connection on the thread that made it. Writes that queue
up while a commit is in flight are committed together (group commit): each
runs inside its own savepoint, so it succeeds or fails alone, and each caller
learns its outcome only after the shared commit is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from ..errors import StoreError

__all__ = ["SQLiteWorker"]

T = TypeVar("T")

_MAX_BATCH = 64
"""At most this many queued jobs are taken at once, bounding each caller's wait."""

_BUSY_CHECKPOINT = 500
"""Commits after which the WAL is checkpointed even if the queue never empties."""

_IDLE_CHECKPOINT = 300
"""Commits after which the WAL is checkpointed once the queue is empty.

Not after every commit: a checkpoint fsyncs twice, and the next write, which
usually arrives while it runs, would wait for it. Every 300 commits keeps the
WAL at a few MB, rewritten in place, and makes the wait rare (about one
event in 150 on a steady stream of sends, so it stays out of the p99).
"""


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "result", "token", "write")

    def __init__(self, fn: Callable[[sqlite3.Connection], T] | None, write: bool) -> None:
        self.fn = fn
        self.write = write
        self.token = anyio.lowlevel.current_token()
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SQLiteWorker:
    """Runs functions of a connection on one dedicated thread.

    ``connect`` is called on that thread. ``call`` runs a function as is
    (reads, or work that manages its own transaction); ``write`` runs it
    inside ``BEGIN IMMEDIATE ... COMMIT``, possibly together with other
    queued writes. A write that raises is rolled back alone (to its
    savepoint); only a failure of the transaction itself (it cannot begin or
    commit, or SQLite aborted it) fails the whole group, and then every
    caller in it gets that error.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._writes_since_checkpoint = 0
        self._lock = threading.Lock()
        self._closing = False
        self._closed_message = f"the store {name} is closed"
        self._thread = threading.Thread(target=self._run, name=f"procflow-sqlite {name}", daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the worker thread and return its result (or raise its error)."""
        return await self._submit(_Job(fn, write=False))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a write transaction; return once it is committed."""
        return await self._submit(_Job(fn, write=True))

    async def stop(self) -> None:
        """Finish the queued jobs, close the connection and end the thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            job: _Job[None] = _Job(None, write=False)
            self._queue.put(job)
        with anyio.CancelScope(shield=True):
            await job.done.wait()

    async def _submit(self, job: _Job[T]) -> T:
        with self._lock:
            if self._closing:
                raise StoreError(self._closed_message)
            self._queue.put(job)
        # Once queued, a job runs whatever happens to its caller; so the caller
        # waits for the outcome even when cancelled, and never abandons a write
        # whose fate it does not know. (Shielding only once cancelled spares
        # every other call the cost of a cancel scope.)
        try:
            await job.done.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await job.done.wait()
            raise
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        broken: BaseException | None = None
        try:
            connection = self._connect()
        except BaseException as exc:  # every job is answered with it instead
            broken = exc
        stopped = False
        while not stopped:
            batch = self._next_batch(connection)
            try:
                if connection is None:
                    stopped = self._refuse(batch, broken)
                else:
                    stopped = self._process(connection, batch)
            except BaseException as exc:  # a bug here must not leave callers waiting forever
                for job in batch:
                    job.error = exc
                stopped = True
            if stopped:
                if connection is not None:
                    connection.close()
                with self._lock:
                    self._closing = True
                self._refuse_after_stop(batch)
                drained = self._drain()
                for job in drained:
                    job.error = StoreError(self._closed_message)
                batch += drained
            _notify(batch)

    def _refuse(self, batch: list[_Job[Any]], broken: BaseException | None) -> bool:
        """Answer a batch when the connection could not be made; True at the stop job."""
        for job in batch:
            if job.fn is None:
                return True
            job.error = broken
        return False

    def _refuse_after_stop(self, batch: list[_Job[Any]]) -> None:
        seen_stop = False
        for job in batch:
            if seen_stop:
                job.error = StoreError(self._closed_message)
            seen_stop = seen_stop or job.fn is None

    def _drain(self) -> list[_Job[Any]]:
        jobs: list[_Job[Any]] = []
        while True:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                return jobs

    def _next_batch(self, connection: sqlite3.Connection | None) -> list[_Job[Any]]:
        try:
            first = self._queue.get_nowait()
        except queue.Empty:
            if connection is not None and self._writes_since_checkpoint >= _IDLE_CHECKPOINT:
                self._checkpoint(connection)  # idle: nobody waits behind it
            first = self._queue.get()
        else:
            if connection is not None and self._writes_since_checkpoint >= _BUSY_CHECKPOINT:
                self._checkpoint(connection)  # never idle: keep the WAL bounded anyway
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        # SQLite's automatic checkpoint would run inside a commit and make that
        # caller wait for it; the store turns it off and checkpoints here.
        # If another process holds the database, the next idle moment tries again.
        with contextlib.suppress(sqlite3.Error):
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._writes_since_checkpoint = 0

    def _process(self, connection: sqlite3.Connection, batch: list[_Job[Any]]) -> bool:
        """Run a batch in order; True once the stop job was reached."""
        index = 0
        while index < len(batch):
            job = batch[index]
            if job.fn is None:
                return True
            if not job.write:
                _run_one(connection, job)
                index += 1
                continue
            end = index
            while end < len(batch) and batch[end].write:
                end += 1
            _run_writes(connection, batch[index:end])
            self._writes_since_checkpoint += 1
            index = end
        return False


def _run_one(connection: sqlite3.Connection, job: _Job[Any]) -> None:
    assert job.fn is not None
    try:
        job.result = job.fn(connection)
    except Exception as exc:  # handed to the caller
        job.error = exc


def _run_writes(connection: sqlite3.Connection, jobs: list[_Job[Any]]) -> None:
    alone = len(jobs) == 1
    committed = False
    try:
        connection.execute("BEGIN IMMEDIATE")
        for job in jobs:
            assert job.fn is not None
            if not alone:
                connection.execute("SAVEPOINT job")
            try:
                job.result = job.fn(connection)
            except Exception as exc:  # this job's own failure (a conflict, a bad value, ...)
                if not connection.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O
                    # error): the writes of the jobs before this one are gone too.
                    raise
                job.error = exc
                if not alone:
                    connection.execute("ROLLBACK TO job")
            if not alone:
                connection.execute("RELEASE job")
        if all(job.error is not None for job in jobs):
            connection.execute("ROLLBACK")
        else:
            connection.execute("COMMIT")
        committed = True
    except Exception as exc:  # nothing of the group was committed: every caller is told
        for job in jobs:
            job.result = None
            job.error = exc
    finally:
        if not committed and connection.in_transaction:
            connection.rollback()


def _notify(jobs: list[_Job[Any]]) -> None:
    by_loop: dict[int, tuple[anyio.lowlevel.EventLoopToken, list[anyio.Event]]] = {}
    for job in jobs:
        key = id(job.token.native_token)
        by_loop.setdefault(key, (job.token, []))[1].append(job.done)
    for token, events in by_loop.values():
        # An event loop that has ended (RuntimeError on asyncio and trio alike)
        # has nobody waiting on it any more.
        with contextlib.suppress(RuntimeError):
            _call_soon(token, _set_all, events)


def _call_soon(token: anyio.lowlevel.EventLoopToken, fn: Callable[..., object], *args: Any) -> None:
    """Schedule ``fn(*args)`` on the event loop of ``token`` without waiting for it to run.

    ``anyio.from_thread.run_sync`` would hold this thread until the loop got
    round to the call, and every job queued behind would wait with it.
    """
    native: Any = token.native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        native.call_soon_threadsafe(fn, *args)
    else:  # trio's TrioToken
        native.run_sync_soon(fn, *args)


def _set_all(events: list[anyio.Event]) -> None:
    for event in events:
        event.set()
