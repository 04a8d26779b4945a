"""``SQLiteStore``: the embedded default, one database file on local disk."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

import anyio

from ..errors import ProcflowError, StoreError
from . import _sqlite_schema
from ._columns import (
    COLUMNS,
    as_int,
    as_text,
    now_ms,
    optional_ms,
    prefer_id,
    record_from_row,
    stored_as,
    to_ms,
)
from ._errors import (
    conflict,
    correlation_is_anothers_id,
    correlation_not_found,
    duplicate_correlation,
    duplicate_id,
    key_not_found,
    key_of_another,
    not_found,
)
from ._history import decode_entries, encode_entries
from ._keys import check_key, storable
from ._listing import check_filters, check_limit, merge_by_id, page_query, status_filter
from ._purging import OVER_SQL, check_purge
from ._worker import SQLiteWorker
from .base import HistoryEntry, InstanceRecord, not_open

__all__ = ["SQLiteStore"]

T = TypeVar("T")

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

_INSERT = (
    "INSERT INTO procflow_instance"
    " (id, workflow, status, correlation_id, due_at, version, created_at, updated_at, data, state, meta)"
    " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
)
# An instance's correlation id may not be another's id (see _KEY_OF_ANOTHER): then no row is
# written, and the caller tells that from a conflict by the stored version.
_UPDATE = (
    "UPDATE procflow_instance SET workflow = ?, status = ?, correlation_id = ?, due_at = ?, version = ?,"
    " updated_at = ?, data = ?, state = ?, meta = ? WHERE id = ? AND version = ?"
    " AND NOT EXISTS (SELECT 1 FROM procflow_instance WHERE id = ? AND id <> ?) RETURNING k, created_at"
)
_LOOKUP = (
    f"SELECT {COLUMNS} FROM procflow_instance WHERE id = :key"
    f" UNION ALL SELECT {COLUMNS} FROM procflow_instance WHERE correlation_id = :key"
)
# A new instance's id may not be another's correlation id, nor its correlation id another's id.
_KEY_OF_ANOTHER = (
    "SELECT id, correlation_id FROM procflow_instance"
    " WHERE correlation_id = :id OR id = :correlation_id LIMIT 1"
)
_INSERT_HISTORY = "INSERT INTO procflow_history (k, version, at, entries) VALUES (?, ?, ?, ?)"
# The first reply kept for a key stays: a key names one delivery, whatever retries follow.
_INSERT_REPLY = "INSERT OR IGNORE INTO procflow_reply (k, key, reply) VALUES (?, ?, ?)"
_CLAIM = "UPDATE procflow_instance SET due_at = ?, version = version + 1, updated_at = ? WHERE k = ?"
_RENEW = "UPDATE procflow_instance SET due_at = ?, version = version + 1 WHERE id = ? AND version = ?"
# INDEXED BY: without statistics SQLite would rather walk the status index, through every
# finished instance, the recent ones too, while it holds the write lock.
_PURGE = (
    "DELETE FROM procflow_instance WHERE k IN (SELECT k FROM procflow_instance"
    f" INDEXED BY procflow_instance_over WHERE {OVER_SQL} AND updated_at < ? ORDER BY updated_at LIMIT ?)"
    " RETURNING k, id"
)
_PURGE_HISTORY = "DELETE FROM procflow_history WHERE k = ?"
_PURGE_REPLIES = "DELETE FROM procflow_reply WHERE k = ?"


class SQLiteStore:
    """Instances in one SQLite file, safe for several processes on one machine.

    ``SQLiteStore("orders.db")`` keeps every instance in ``orders.db`` (created
    on ``open``), in WAL mode with ``synchronous=FULL``: once a write returns,
    it survives a crash or power loss. Pass ``synchronous="NORMAL"`` to trade
    the durability of the last commits before a power loss for speed.

    Database work runs off the event loop, under asyncio and trio alike: writes
    on one thread per store, reads on another with a connection of its own,
    so a look-up never waits behind a commit. Each ``insert`` or ``update`` is all-or-nothing
    and durable when it returns; writes that queue up while another commits
    share the next commit (group commit), so concurrent senders need fewer
    commits than writes. Processes that open the same file take turns to
    write, waiting up to ``timeout`` seconds for each other.

    Timestamps are kept in whole milliseconds. Use it as ``async with
    SQLiteStore(path) as store:`` or call ``open``/``close``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 5.0,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = os.fspath(path)
        self.timeout = timeout
        self.synchronous = synchronous
        self._worker: SQLiteWorker | None = None
        # Reads run on a connection and thread of their own, so that they never
        # wait behind a commit (WAL readers see the last commit, never block it).
        self._reader: SQLiteWorker | None = None
        # Set while an ``open`` is under way: a concurrent one waits for it.
        self._opening: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the file (creating it if needed) and create or upgrade its schema. Idempotent.

        Tasks that open the store at once share one opening (one writer
        thread, one reader thread); if it fails, each of them tries again.

        Raises:
            StoreError: the file cannot be opened or created, is not a SQLite
                database, was written by a newer procflow, or stayed locked by
                another process for longer than ``timeout``.
        """
        while self._opening is not None:  # another task is opening it: share its outcome
            await self._opening.wait()
        if self._worker is not None:
            return
        self._opening = opening = anyio.Event()
        try:
            await self._open()
        finally:
            self._opening = None
            opening.set()

    async def _open(self) -> None:
        worker = SQLiteWorker(self._connect, name=repr(self.path))
        reader = worker
        try:
            await worker.call(functools.partial(_sqlite_schema.migrate, where=f"database file {self.path!r}"))
            if self.path != ":memory:":  # another connection to :memory: would be another database
                reader = SQLiteWorker(self._connect_reader, name=f"{self.path!r} (reads)")
                await reader.call(_check_connected)
        except BaseException as exc:
            await worker.stop()
            if reader is not worker:
                await reader.stop()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "open the database") from exc
            raise
        self._worker = worker
        self._reader = reader

    async def close(self) -> None:
        """Finish queued work, close the connection and stop the store's thread. Idempotent."""
        worker, self._worker = self._worker, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not worker:
            await reader.stop()
        if worker is not None:
            await worker.stop()

    async def insert(self, record: InstanceRecord, history: Sequence[HistoryEntry] = ()) -> InstanceRecord:
        """Store a new instance with its first history lines, in one commit.

        The store sets ``version`` to 1 and both timestamps to now; the
        record's own values for them are ignored.

        Raises:
            DuplicateInstanceError: the id or the correlation id is taken.
            StoreError: the id or the correlation id holds a lone surrogate or a
                NUL character, which not every database can keep; or the database
                failed (disk full, locked for too long, ...).
        """
        check_key(record.id, "id")
        check_key(record.correlation_id, "correlation id")
        now = now_ms()
        rows = encode_entries(history) if history else None
        due = optional_ms(record.due_at)

        def insert(connection: sqlite3.Connection) -> None:
            params = (record.id, record.workflow, record.status, record.correlation_id, due, now, now)
            other = connection.execute(
                _KEY_OF_ANOTHER, {"id": record.id, "correlation_id": record.correlation_id}
            ).fetchone()
            if other is not None:
                raise key_of_another(
                    record, as_text(other[0]), None if other[1] is None else as_text(other[1])
                )
            try:
                cursor = connection.execute(_INSERT, (*params, record.data, record.state, record.meta))
            except sqlite3.IntegrityError as exc:
                raise _duplicate(connection, record, exc, new=True) from exc
            if rows is not None:
                connection.execute(_INSERT_HISTORY, (cursor.lastrowid, 1, *rows))

        await self._write(insert, f"insert instance {record.id!r}")
        stamp = now / 1000
        return stored_as(record, version=1, created_at=stamp, updated_at=stamp)

    async def update(
        self,
        record: InstanceRecord,
        history: Sequence[HistoryEntry] = (),
        *,
        reply: tuple[str, str] | None = None,
    ) -> InstanceRecord:
        """Replace an instance and append history lines, in one commit.

        Writes only if the stored version is still ``record.version``, and
        stores ``version + 1``. Every column is replaced, the correlation id
        and ``due_at`` too (``None`` clears them); ``created_at`` is kept.
        ``reply`` is ``(idempotency key, kept reply text)`` (see
        ``procflow.idempotency``), kept in the same commit; if the key
        already has a reply, the first one stays.

        Raises:
            ConflictError: the stored version differs (someone else saved first).
            InstanceNotFound: there is no instance with this id.
            DuplicateInstanceError: the new correlation id belongs to another
                instance, or is another instance's id.
            StoreError: the correlation id or the idempotency key holds a lone
                surrogate or a NUL character, which not every database can keep;
                or the database failed (disk full, locked for too long, ...).
        """
        if not storable(record.id):
            raise not_found(record.id)
        check_key(record.correlation_id, "correlation id")
        if reply is not None:
            check_key(reply[0], "idempotency key")
        now = now_ms()
        rows = encode_entries(history) if history else None
        version = record.version + 1
        due = optional_ms(record.due_at)

        def update(connection: sqlite3.Connection) -> int:
            params = (record.workflow, record.status, record.correlation_id, due, version, now, record.data)
            where = (record.id, record.version, record.correlation_id, record.id)
            try:
                # fetchall: a RETURNING statement is finished only once stepped to its end.
                found = connection.execute(_UPDATE, (*params, record.state, record.meta, *where)).fetchall()
            except sqlite3.IntegrityError as exc:
                raise _duplicate(connection, record, exc, new=False) from exc
            if not found:
                stored = connection.execute(
                    "SELECT version FROM procflow_instance WHERE id = ?", (record.id,)
                ).fetchone()
                if stored is None:
                    raise not_found(record.id)
                if stored[0] != record.version or record.correlation_id is None:
                    raise conflict(record.id, record.version, stored[0])
                raise correlation_is_anothers_id(record.correlation_id, record.id)
            key, created_at = found[0]
            if rows is not None:
                connection.execute(_INSERT_HISTORY, (key, version, *rows))
            if reply is not None:
                connection.execute(_INSERT_REPLY, (key, *reply))
            return as_int(created_at)

        created_at = await self._write(update, f"update instance {record.id!r}")
        return stored_as(record, version=version, created_at=created_at / 1000, updated_at=now / 1000)

    async def get(self, id: str) -> InstanceRecord:
        """The instance with this id.

        Raises:
            InstanceNotFound: there is none.
            StoreError: the database failed.
        """
        if not storable(id):  # no store keeps such an id
            raise not_found(id)
        sql = f"SELECT {COLUMNS} FROM procflow_instance WHERE id = ?"
        row = await self._read(lambda connection: connection.execute(sql, (id,)).fetchone(), f"get {id!r}")
        if row is None:
            raise not_found(id)
        return record_from_row(row)

    async def find(self, correlation_id: str) -> InstanceRecord:
        """The instance with this correlation id.

        Raises:
            InstanceNotFound: there is none.
            StoreError: the database failed.
        """
        if not storable(correlation_id):
            raise correlation_not_found(correlation_id)
        sql = f"SELECT {COLUMNS} FROM procflow_instance WHERE correlation_id = ?"
        row = await self._read(
            lambda connection: connection.execute(sql, (correlation_id,)).fetchone(),
            f"find correlation id {correlation_id!r}",
        )
        if row is None:
            raise correlation_not_found(correlation_id)
        return record_from_row(row)

    async def lookup(self, key: str) -> InstanceRecord:
        """The instance whose id is ``key``, else the one whose correlation id is ``key``.

        Raises:
            InstanceNotFound: neither exists.
            StoreError: the database failed.
        """
        if not storable(key):
            raise key_not_found(key)
        rows = await self._read(
            lambda connection: connection.execute(_LOOKUP, {"key": key}).fetchall(), f"look up {key!r}"
        )
        record = prefer_id([record_from_row(row) for row in rows], key)
        if record is None:
            raise key_not_found(key)
        return record

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[InstanceRecord]:
        """Instances ordered by id, filtered by workflow name and status.

        Pass the last id of a page as ``after`` to get the next one.

        Raises:
            ValueError: ``limit`` is below 1.
            StoreError: ``workflow``, a status or ``after`` holds a lone
                surrogate or a NUL character, which not every database can keep
                (refused without asking the database, as every store does);
                or the database failed.
        """
        check_limit(limit)
        statuses = status_filter(status)
        check_filters(workflow=workflow, statuses=statuses, after=after)

        def page(connection: sqlite3.Connection, one_status: str | None) -> list[InstanceRecord]:
            sql, params = page_query(
                COLUMNS, status=one_status, workflow=workflow, after=after, limit=limit, mark="?"
            )
            return [record_from_row(row) for row in connection.execute(sql, params).fetchall()]

        def pages(connection: sqlite3.Connection) -> list[InstanceRecord]:
            if statuses is None:
                return page(connection, None)
            connection.execute("BEGIN")  # one snapshot for all the statuses
            try:
                return merge_by_id([page(connection, one) for one in statuses], limit)
            finally:
                connection.execute("COMMIT")

        return await self._read(pages, "list instances")

    async def history(self, id: str) -> builtins.list[HistoryEntry]:
        """The instance's history, oldest first (empty for an unknown id).

        Raises:
            StoreError: the database failed.
        """
        if not storable(id):
            return []
        sql = (
            "SELECT h.at, h.entries FROM procflow_history AS h"
            " JOIN procflow_instance AS i ON h.k = i.k WHERE i.id = ? ORDER BY h.version"
        )
        rows = await self._read(
            lambda connection: connection.execute(sql, (id,)).fetchall(), f"history {id!r}"
        )
        return [entry for at, entries in rows for entry in decode_entries(at, entries)]

    async def reply(self, id: str, key: str) -> str | None:
        """The reply kept for idempotency key ``key`` of instance ``id``, or ``None``.

        Raises:
            StoreError: the database failed.
        """
        if not (storable(id) and storable(key)):
            return None
        sql = (
            "SELECT r.reply FROM procflow_reply AS r JOIN procflow_instance AS i ON r.k = i.k"
            " WHERE i.id = ? AND r.key = ?"
        )
        row = await self._read(
            lambda connection: connection.execute(sql, (id, key)).fetchone(), f"reply {id!r}"
        )
        return None if row is None else as_text(row[0])

    async def claim_due(self, now: float, *, limit: int, lease: float) -> builtins.list[InstanceRecord]:
        """Take up to ``limit`` instances whose ``due_at`` is at or before ``now``, earliest first.

        In one commit each one's ``due_at`` moves to ``now + lease`` and its
        version grows, so no other worker (in this or another process) takes
        it until the lease runs out. Returns the records as stored. Writers
        take turns on a SQLite file, so two claims never see the same rows.

        Raises:
            ValueError: ``limit`` is below 1.
            StoreError: the database failed.
        """
        check_limit(limit)
        until = to_ms(now + lease)
        sql = (
            f"SELECT k, {COLUMNS} FROM procflow_instance"
            " WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?"
        )

        def claim(connection: sqlite3.Connection) -> builtins.list[InstanceRecord]:
            stamp = now_ms()
            rows = connection.execute(sql, (to_ms(now), limit)).fetchall()
            connection.executemany(_CLAIM, [(until, stamp, key) for key, *_ in rows])
            claimed = [record_from_row(row[1:]) for row in rows]
            return [
                dataclasses.replace(
                    one, version=one.version + 1, updated_at=stamp / 1000, due_at=until / 1000
                )
                for one in claimed
            ]

        return await self._write(claim, "claim due instances")

    async def renew_lease(self, id: str, version: int, until: float) -> bool:
        """Hold instance ``id`` until ``until`` if it is still at ``version`` (see ``Store.renew_lease``).

        One ``UPDATE`` of ``due_at`` and the version (which grows by one), in
        one commit; everything else stays. Returns ``False``, changing
        nothing, if the version differs or there is no such instance.

        Raises:
            StoreError: the database failed, or the store is not open.
        """
        if not storable(id):  # no store keeps such an id
            return False
        params = (to_ms(until), id, version)

        def renew(connection: sqlite3.Connection) -> bool:
            return connection.execute(_RENEW, params).rowcount == 1

        return await self._write(renew, f"renew the lease of instance {id!r}")

    async def purge(self, before: float, *, limit: int) -> builtins.list[str]:
        """Delete up to ``limit`` finished or cancelled instances last written before ``before``.

        Oldest first, each with its history and kept replies, in one commit
        (see ``Store.purge``). One ``DELETE`` finds and deletes the instances,
        as a range of the index of instances that are over, under the write
        lock: an instance written before it ran is judged as written. Returns
        the ids deleted.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is NaN.
            StoreError: the database failed, or the store is not open.
        """
        cutoff = check_purge(before, limit)

        def purge(connection: sqlite3.Connection) -> builtins.list[str]:
            gone = connection.execute(_PURGE, (cutoff, limit)).fetchall()
            keys = [(key,) for key, _ in gone]
            connection.executemany(_PURGE_HISTORY, keys)
            connection.executemany(_PURGE_REPLIES, keys)
            return [as_text(id) for _, id in gone]

        return await self._write(purge, "purge instances that are over")

    async def size_bytes(self) -> int:
        """The size of the database: page count times page size, indexes included.

        This is what the file holds once the write-ahead log is checkpointed;
        the ``-wal`` file itself is transient and not counted.

        Raises:
            StoreError: the database failed.
        """

        def size(connection: sqlite3.Connection) -> int:
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            return int(pages) * int(page_size)

        return await self._read(size, "measure the database")

    def _open_connection(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise StoreError(
                    f"cannot create the database file {self.path!r}: "
                    f"the folder {str(parent)!r} does not exist; create it first"
                )
        connection = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=True
        )
        # Lenient decoding: a column with bytes that are not UTF-8 must
        # still come back as text rather than fail the whole query.
        connection.text_factory = functools.partial(str, encoding="utf-8", errors="replace")
        return connection

    def _connect(self) -> sqlite3.Connection:
        connection = self._open_connection()
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Checkpoints run on the store's thread when it is idle (see _worker).
            connection.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            connection.close()
            raise
        return connection

    def _connect_reader(self) -> sqlite3.Connection:
        connection = self._open_connection()
        connection.execute("PRAGMA query_only = 1")
        return connection

    def _running(self) -> SQLiteWorker:
        if self._worker is None:
            raise not_open(repr(self.path))
        return self._worker

    async def _read(self, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
        reader = self._reader
        if reader is None:
            raise not_open(repr(self.path))
        try:
            return await reader.call(fn)
        except sqlite3.Error as exc:
            raise self._error(exc, what) from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
        try:
            return await self._running().write(fn)
        except sqlite3.Error as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: sqlite3.Error, what: str) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreError(
                f"could not {what} in {self.path!r}: the database stayed locked by another process for "
                f"more than {self.timeout:g} s; retry, or open the store with a longer timeout"
            )
        return StoreError(f"could not {what} in {self.path!r}: {type(exc).__name__}: {exc}")


def _check_connected(connection: sqlite3.Connection) -> None:
    connection.execute("SELECT 1 FROM procflow_instance LIMIT 0")


def _duplicate(
    connection: sqlite3.Connection, record: InstanceRecord, exc: sqlite3.IntegrityError, *, new: bool
) -> ProcflowError:
    """The error for a failed unique constraint, or a StoreError if it was something else."""
    if new and connection.execute("SELECT 1 FROM procflow_instance WHERE id = ?", (record.id,)).fetchone():
        return duplicate_id(record.id)
    if record.correlation_id is not None:
        owner = connection.execute(
            "SELECT id FROM procflow_instance WHERE correlation_id = ?", (record.correlation_id,)
        ).fetchone()
        if owner is not None and as_text(owner[0]) != record.id:
            return duplicate_correlation(record.correlation_id, as_text(owner[0]), record.id)
    return StoreError(f"could not write instance {record.id!r}: {exc}")
