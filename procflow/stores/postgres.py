"""``PostgresStore``: instances in PostgreSQL, shared by many processes on many hosts.

psycopg is an optional extra (``pip install 'procflow[postgres]'``): this
module imports it only when a ``PostgresStore`` is made, so ``procflow.stores``
imports without it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import logging
import select
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import ProcflowError, StoreError
from . import _postgres_schema as schema
from ._columns import (
    COLUMNS,
    as_float_seconds,
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
from ._listing import check_filters, check_limit, page_query, status_filter
from ._migrations import pending
from ._purging import OVER_SQL, check_purge
from .base import HistoryEntry, InstanceRecord, not_open

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]

__all__ = ["PostgresStore"]

# A new instance's id may not be another's correlation id, nor its correlation id another's
# id: then nothing is inserted and no row returned. No unique index spans the two columns, so
# the check alone would let two transactions that started together each miss the other's row
# (an id k and a correlation id k). Each insert first takes a transaction-scoped advisory lock
# on the hash of each of its keys, smallest first (no deadlock): inserts that share a key take
# turns, and the check, a statement of its own, sees the committed row of the one before.
# Chosen over a table of keys with a unique index: no migration, no second copy of every key
# to keep in step on updates, nothing to write but the row; a hash collision between two keys
# (one in 2^64) only makes two inserts wait for each other.
_LOCK_KEYS = (
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(key, 0) AS h"
    " FROM unnest(ARRAY[%(id)s, %(correlation_id)s]::text[]) AS key WHERE key IS NOT NULL ORDER BY h)"
    " AS keys"
)
_KEY_OF_ANOTHER = (
    "SELECT id, correlation_id FROM procflow_instance"
    " WHERE correlation_id = %(id)s OR id = %(correlation_id)s LIMIT 1"
)
_INSERT = (
    "INSERT INTO procflow_instance"
    " (id, workflow, status, correlation_id, due_at, version, created_at, updated_at, data, state, meta)"
    " SELECT %(id)s, %(workflow)s, %(status)s, %(correlation_id)s, %(due_at)s, 1, %(now)s, %(now)s,"
    " %(data)s, %(state)s, %(meta)s"
    f" WHERE NOT EXISTS ({_KEY_OF_ANOTHER}) RETURNING k"
)
_INSERT_WITH_HISTORY = (
    f"WITH i AS ({_INSERT})"
    " INSERT INTO procflow_history (k, version, at, entries) SELECT k, 1, %(at)s, %(entries)s FROM i"
    " RETURNING k"
)
# An update keeps a correlation id as unique as an insert does: not another instance's
# correlation id (the unique index) nor its id. Nearly every update keeps the correlation id the
# row has, checked when it was set, so the plain update writes only a row whose correlation id
# stays (_KEEPING): one prepared statement, no lock, no look-up. One that changes it writes
# nothing there and goes again as a moving update (_MOVING), only if no other instance has that
# id, under the lock of the new key, which inserts take too (_LOCK_KEYS): it and an insert of an
# instance with that id take turns, and the later one sees the other's row.
_UPDATE = (
    "UPDATE procflow_instance SET workflow = %(workflow)s, status = %(status)s,"
    " correlation_id = %(correlation_id)s, due_at = %(due_at)s, version = version + 1, updated_at = %(now)s,"
    " data = %(data)s, state = %(state)s, meta = %(meta)s"
    " WHERE id = %(id)s AND version = %(version)s"
)
_KEEPING = " AND correlation_id IS NOT DISTINCT FROM %(correlation_id)s"
_MOVING = " AND NOT EXISTS (SELECT 1 FROM procflow_instance WHERE id = %(correlation_id)s AND id <> %(id)s)"
_LOCK_CORRELATION = "SELECT pg_advisory_xact_lock(hashtextextended(%(correlation_id)s, 0))"
# Why an update wrote nothing: no such row, another version, or a correlation id that is another's id.
_NOT_UPDATED = (
    "SELECT version, EXISTS (SELECT 1 FROM procflow_instance WHERE id = %(correlation_id)s AND id <> %(id)s)"
    " FROM procflow_instance WHERE id = %(id)s"
)
_WITH_HISTORY = (
    " h AS (INSERT INTO procflow_history (k, version, at, entries)"
    " SELECT k, version, %(at)s, %(entries)s FROM u),"
)
# The first reply kept for a key stays: a key names one delivery, whatever retries follow.
_WITH_REPLY = (
    " r AS (INSERT INTO procflow_reply (k, key, reply) SELECT k, %(key)s, %(reply)s FROM u"
    " ON CONFLICT DO NOTHING),"
)
_CLAIM = (
    "WITH due AS (SELECT k, due_at FROM procflow_instance"
    " WHERE due_at IS NOT NULL AND due_at <= %(now)s ORDER BY due_at LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE procflow_instance AS i SET due_at = %(until)s, version = i.version + 1, updated_at = %(stamp)s"
    " FROM due WHERE i.k = due.k RETURNING due.due_at, "
    + ", ".join(f"i.{column}" for column in COLUMNS.split(", "))
)
_RENEW = (
    "UPDATE procflow_instance SET due_at = %s, version = version + 1"
    " WHERE id = %s AND version = %s RETURNING k"
)
# The old rows are locked as they are found, skipping those another transaction is writing
# (a purge running beside this one takes others; a writer keeps its row). FOR UPDATE re-checks
# a row that changed since the statement began against its newest version, and so does the
# DELETE, which says the condition again: an instance written meanwhile stays.
_PURGE = (
    "WITH old AS (SELECT k FROM procflow_instance"
    f" WHERE {OVER_SQL} AND updated_at < %(before)s ORDER BY updated_at LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED),"
    " gone AS (DELETE FROM procflow_instance USING old WHERE procflow_instance.k = old.k"
    f" AND {OVER_SQL} AND updated_at < %(before)s RETURNING procflow_instance.k, id),"
    " h AS (DELETE FROM procflow_history WHERE k IN (SELECT k FROM gone)),"
    " r AS (DELETE FROM procflow_reply WHERE k IN (SELECT k FROM gone))"
    " SELECT id FROM gone"
)


def _update_sql(*, history: bool, reply: bool, moving: bool) -> str:
    """One statement that updates, appends the history and keeps the reply: one round trip, one commit.

    ``moving``: the update that changes the correlation id, else the one that keeps it.
    """
    update = f"{_UPDATE}{_MOVING if moving else _KEEPING} RETURNING k, version, created_at"
    if not history and not reply:
        return update
    parts = (_WITH_HISTORY if history else "") + (_WITH_REPLY if reply else "")
    return f"WITH u AS ({update}),{parts.rstrip(',')} SELECT k, version, created_at FROM u"


class PostgresStore:
    """Instances in a PostgreSQL database, through a psycopg connection pool.

    ``PostgresStore("postgresql://user@host/db")`` keeps instances in two
    tables (``procflow_instance``, ``procflow_history``) that ``open`` creates
    or upgrades. Every write is a single round trip and a single commit,
    checked against the version that was loaded; any number of processes on
    any number of hosts may share the database.

    Runs under asyncio only: psycopg's async connections and pool are built
    on asyncio and do not support trio, so ``open`` under trio raises
    ``StoreError``. Timestamps are kept in whole milliseconds.

    Raises:
        StoreError: psycopg 3 or psycopg_pool is not installed.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 30.0) -> None:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise StoreError(
                "PostgresStore needs psycopg 3 and psycopg_pool: pip install 'procflow[postgres]'"
            ) from exc
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self._pool: Pool | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where()})"

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect the pool, and create or upgrade the schema. Idempotent.

        Raises:
            StoreError: not running under asyncio, the server cannot be
                reached within ``timeout`` seconds, or the schema was written
                by a newer procflow.
        """
        if self._pool is not None:
            return
        _require_asyncio()
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        logging.getLogger("psycopg.pool").addFilter(_QUIET_HANDLED_DISCARD)  # a no-op once added

        pool: Pool = AsyncConnectionPool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            kwargs={"autocommit": True},
            timeout=self.timeout,
            open=False,
            name="procflow",
        )
        try:
            # One connection first: a server that refuses it (down, wrong port, bad
            # password) fails now with its own words, not after the pool's timeout.
            probe = await psycopg.AsyncConnection.connect(
                self.dsn, connect_timeout=max(1, round(self.timeout))
            )
            await probe.close()
            await pool.open(wait=True, timeout=self.timeout)
            await self._migrate(pool)
        except psycopg.Error as exc:
            await pool.close()
            raise StoreError(
                f"could not open the PostgreSQL store at {self._where()}: {exc}; "
                "check that the server is running and that the DSN is right"
            ) from exc
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool's connections. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def insert(self, record: InstanceRecord, history: Sequence[HistoryEntry] = ()) -> InstanceRecord:
        """Store a new instance with its first history lines, in one round trip and one commit.

        The store sets ``version`` to 1 and both timestamps to now. Inserts
        that share a key (one's id, another's correlation id) take turns, so
        of two racing for a key exactly one is stored.

        Raises:
            DuplicateInstanceError: the id or the correlation id is taken.
            StoreError: the id or the correlation id holds a lone surrogate or a
                NUL character, which not every database can keep; or the database
                failed or could not be reached.
        """
        check_key(record.id, "id")
        check_key(record.correlation_id, "correlation id")
        now = now_ms()
        params = _params(record, now, history)
        if not await self._locked(
            _LOCK_KEYS, _INSERT_WITH_HISTORY if history else _INSERT, params, record, new=True
        ):
            rows = await self._fetch(_KEY_OF_ANOTHER, params)
            if rows:
                owner, owner_correlation = rows[0]
                raise key_of_another(
                    record, as_text(owner), None if owner_correlation is None else as_text(owner_correlation)
                )
            raise StoreError(
                f"instance {record.id!r} was not inserted: the instance in its way went away; try again"
            )
        stamp = now / 1000
        return stored_as(record, version=1, created_at=stamp, updated_at=stamp)

    async def update(
        self,
        record: InstanceRecord,
        history: Sequence[HistoryEntry] = (),
        *,
        reply: tuple[str, str] | None = None,
    ) -> InstanceRecord:
        """Replace an instance and append history lines, in one statement and one commit.

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
                or the database failed or could not be reached.
        """
        if not storable(record.id):
            raise not_found(record.id)
        check_key(record.correlation_id, "correlation id")
        if reply is not None:
            check_key(reply[0], "idempotency key")
        now = now_ms()
        params = _params(record, now, history)
        params["version"] = record.version
        if reply is not None:
            params["key"], params["reply"] = reply
        sql = _update_sql(history=bool(history), reply=reply is not None, moving=False)
        rows = await self._run(sql, params, record, new=False)
        if not rows:  # not stored, another version, or the correlation id changes
            if error := await self._not_updated(record, params):
                raise error
            sql = _update_sql(history=bool(history), reply=reply is not None, moving=True)
            if record.correlation_id is None or record.correlation_id == record.id:
                rows = await self._run(sql, params, record, new=False)  # a key no other instance can have
            else:
                rows = await self._locked(_LOCK_CORRELATION, sql, params, record, new=False)
            if not rows:
                raise await self._not_updated(record, params) or StoreError(
                    f"instance {record.id!r} was not updated and its stored row gives no reason "
                    "(it may have changed meanwhile): load it again and retry"
                )
        _, version, created_at = rows[0]
        return stored_as(
            record, version=as_int(version), created_at=as_float_seconds(created_at), updated_at=now / 1000
        )

    async def get(self, id: str) -> InstanceRecord:
        """The instance with this id.

        Raises:
            InstanceNotFound: there is none.
            StoreError: the database failed or could not be reached.
        """
        if not storable(id):  # no store keeps such an id
            raise not_found(id)
        rows = await self._fetch(f"SELECT {COLUMNS} FROM procflow_instance WHERE id = %s", (id,))
        if not rows:
            raise not_found(id)
        return record_from_row(rows[0])

    async def find(self, correlation_id: str) -> InstanceRecord:
        """The instance with this correlation id.

        Raises:
            InstanceNotFound: there is none.
            StoreError: the database failed or could not be reached.
        """
        if not storable(correlation_id):
            raise correlation_not_found(correlation_id)
        sql = f"SELECT {COLUMNS} FROM procflow_instance WHERE correlation_id = %s"
        rows = await self._fetch(sql, (correlation_id,))
        if not rows:
            raise correlation_not_found(correlation_id)
        return record_from_row(rows[0])

    async def lookup(self, key: str) -> InstanceRecord:
        """The instance whose id is ``key``, else the one whose correlation id is ``key``.

        Raises:
            InstanceNotFound: neither exists.
            StoreError: the database failed or could not be reached.
        """
        if not storable(key):
            raise key_not_found(key)
        sql = f"SELECT {COLUMNS} FROM procflow_instance WHERE id = %s OR correlation_id = %s"
        rows = await self._fetch(sql, (key, key))
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
                or the database failed or could not be reached.
        """
        check_limit(limit)
        statuses = status_filter(status)
        check_filters(workflow=workflow, statuses=statuses, after=after)
        if statuses == []:  # no status is asked for: no instance has one of them
            return []
        queries = [
            page_query(COLUMNS, status=one, workflow=workflow, after=after, limit=limit, mark="%s")
            for one in (statuses if statuses is not None else [None])
        ]
        if len(queries) == 1:
            sql, params = queries[0]
        else:
            # One indexed range per status, merged in id order by the server.
            parts = " UNION ALL ".join(f"({query})" for query, _ in queries)
            sql = f"SELECT * FROM ({parts}) AS pages ORDER BY id LIMIT %s"
            params = [param for _, part in queries for param in part] + [limit]
        return [record_from_row(row) for row in await self._fetch(sql, params)]

    async def history(self, id: str) -> builtins.list[HistoryEntry]:
        """The instance's history, oldest first (empty for an unknown id).

        Raises:
            StoreError: the database failed or could not be reached.
        """
        if not storable(id):
            return []
        sql = (
            "SELECT h.at, h.entries FROM procflow_history AS h"
            " JOIN procflow_instance AS i ON h.k = i.k WHERE i.id = %s ORDER BY h.version"
        )
        rows = await self._fetch(sql, (id,))
        return [entry for at, entries in rows for entry in decode_entries(at, entries)]

    async def reply(self, id: str, key: str) -> str | None:
        """The reply kept for idempotency key ``key`` of instance ``id``, or ``None``.

        Raises:
            StoreError: the database failed or could not be reached.
        """
        if not (storable(id) and storable(key)):
            return None
        sql = (
            "SELECT r.reply FROM procflow_reply AS r JOIN procflow_instance AS i ON r.k = i.k"
            " WHERE i.id = %s AND r.key = %s"
        )
        rows = await self._fetch(sql, (id, key))
        return as_text(rows[0][0]) if rows else None

    async def claim_due(self, now: float, *, limit: int, lease: float) -> builtins.list[InstanceRecord]:
        """Take up to ``limit`` instances whose ``due_at`` is at or before ``now``, earliest first.

        In one statement and one commit each one's ``due_at`` moves to
        ``now + lease`` and its version grows, so no other worker takes it
        until the lease runs out. Rows another worker is claiming at the same
        moment are skipped, not waited for (``FOR UPDATE SKIP LOCKED``).
        Returns the records as stored.

        Raises:
            ValueError: ``limit`` is below 1.
            StoreError: the database failed or could not be reached.
        """
        check_limit(limit)
        params = {"now": to_ms(now), "limit": limit, "until": to_ms(now + lease), "stamp": now_ms()}
        rows = await self._fetch(_CLAIM, params)
        # RETURNING keeps no order: sort by the due time each row had.
        rows.sort(key=lambda row: (as_int(row[0]), as_text(row[1])))
        return [record_from_row(row[1:]) for row in rows]

    async def renew_lease(self, id: str, version: int, until: float) -> bool:
        """Hold instance ``id`` until ``until`` if it is still at ``version`` (see ``Store.renew_lease``).

        One ``UPDATE`` of ``due_at`` and the version (which grows by one), one
        round trip and one commit; everything else stays. Returns ``False``,
        changing nothing, if the version differs or there is no such instance.

        Raises:
            StoreError: the database failed or could not be reached, or the store is not open.
        """
        if not storable(id):  # no store keeps such an id
            return False
        return bool(await self._fetch(_RENEW, (to_ms(until), id, version)))

    async def purge(self, before: float, *, limit: int) -> builtins.list[str]:
        """Delete up to ``limit`` finished or cancelled instances last written before ``before``.

        Oldest first, each with its history and kept replies, in one statement
        and one commit (see ``Store.purge``), found as a range of the index of
        instances that are over. Rows another transaction is writing are
        skipped, not waited for, so purges running at once share the work.
        Returns the ids deleted.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is NaN.
            StoreError: the database failed or could not be reached, or the store is not open.
        """
        cutoff = check_purge(before, limit)
        rows = await self._fetch(_PURGE, {"before": cutoff, "limit": limit})
        return [as_text(row[0]) for row in rows]

    async def size_bytes(self) -> int:
        """Bytes used by the store's tables, indexes and TOAST data.

        Raises:
            StoreError: the database failed or could not be reached.
        """
        rows = await self._fetch(
            "SELECT pg_total_relation_size('procflow_instance') + pg_total_relation_size('procflow_history')",
            (),
        )
        return as_int(rows[0][0])

    async def _migrate(self, pool: Pool) -> None:
        where = f"the PostgreSQL database at {self._where()}"
        async with pool.connection() as connection:
            # Most opens find the schema current: check without locking or
            # writing, so a role without CREATE rights can use a ready database.
            cursor = await connection.execute("SELECT to_regclass('procflow_schema') IS NOT NULL")
            row = await cursor.fetchone()
            if row is not None and row[0]:
                cursor = await connection.execute("SELECT max(version) FROM procflow_schema")
                row = await cursor.fetchone()
                if not pending(schema.MIGRATIONS, as_int(row[0] if row else 0), where=where):
                    return
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (schema.ADVISORY_LOCK,))
                await connection.execute(schema.CREATE_VERSION_TABLE)
                cursor = await connection.execute("SELECT max(version) FROM procflow_schema")
                row = await cursor.fetchone()
                current = as_int(row[0] if row else 0)
                steps = pending(schema.MIGRATIONS, current, where=where)
                for migration in steps:
                    for statement in migration.statements:
                        await connection.execute(statement)
                if steps:
                    await connection.execute("DELETE FROM procflow_schema")
                    await connection.execute(
                        "INSERT INTO procflow_schema (version) VALUES (%s)", (steps[-1].version,)
                    )

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> builtins.list[TupleRow]:
        import psycopg

        try:
            async with self._connection() as connection:
                cursor = await connection.execute(sql, params)
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    async def _run(
        self, sql: str, params: dict[str, Any], record: InstanceRecord, *, new: bool
    ) -> builtins.list[TupleRow]:
        import psycopg
        import psycopg.errors

        try:
            async with self._connection() as connection:
                cursor = await connection.execute(sql, params)
                return await cursor.fetchall() if cursor.description else []
        except psycopg.errors.UniqueViolation as exc:
            raise await self._duplicate(record, exc, new=new) from exc
        except psycopg.Error as exc:
            raise self._error(exc, record.id) from exc

    async def _locked(
        self, lock: str, sql: str, params: dict[str, Any], record: InstanceRecord, *, new: bool
    ) -> builtins.list[TupleRow]:
        """Take the advisory locks of ``lock``, then run the write ``sql``: one transaction, one round trip.

        The two statements go as one simple query (bound on the client), which
        PostgreSQL runs as one transaction, each statement with a fresh snapshot:
        the write's checks see what the lock's last holder committed.
        """
        import psycopg
        import psycopg.errors

        try:
            async with self._connection() as connection:
                cursor = psycopg.AsyncClientCursor(connection)
                await cursor.execute(f"{lock}; {sql}", params)
                cursor.nextset()  # past the lock's result, to the write's
                return await cursor.fetchall()
        except psycopg.errors.UniqueViolation as exc:
            raise await self._duplicate(record, exc, new=new) from exc
        except psycopg.Error as exc:
            raise self._error(exc, record.id) from exc

    async def _not_updated(self, record: InstanceRecord, params: dict[str, Any]) -> ProcflowError | None:
        """Why an update of ``record`` wrote nothing; ``None`` if only its correlation id differs.

        Raises:
            StoreError: the database failed or could not be reached.
        """
        found = await self._fetch(_NOT_UPDATED, params)
        if not found:
            return not_found(record.id)
        stored_version, correlation_is_an_id = found[0]
        if stored_version != record.version:
            return conflict(record.id, record.version, stored_version)
        if correlation_is_an_id and record.correlation_id is not None:
            return correlation_is_anothers_id(record.correlation_id, record.id)
        return None

    async def _duplicate(self, record: InstanceRecord, exc: psycopg.Error, *, new: bool) -> ProcflowError:
        constraint = exc.diag.constraint_name or ""
        if new and constraint == "procflow_instance_id_key":
            return duplicate_id(record.id)
        if record.correlation_id is not None and constraint == "procflow_instance_correlation_id_key":
            rows = await self._fetch(
                "SELECT id FROM procflow_instance WHERE correlation_id = %s", (record.correlation_id,)
            )
            owner = as_text(rows[0][0]) if rows else "?"
            return duplicate_correlation(record.correlation_id, owner, record.id)
        return self._error(exc, record.id)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A connection of the pool that the server has not dropped, given back to the pool after use.

        A server that restarts (or fails over, or ends idle sessions) leaves the
        pool holding dead connections. Handed out, each would fail its call once;
        psycopg_pool's own ``check=`` finds them but sleeps 1 s, 2 s, 4 s, ...
        between dead ones, so a pool of ten dead connections outlasts ``timeout``.
        Here each dead one is dropped at once (the pool opens another in its
        place). A dropped connection has something to read (the server's
        goodbye, or the end of the stream), so an idle socket with nothing to
        read is taken as is; only one with something waiting costs a round trip.
        The pool's warning about each dead one handed back is dropped: it is
        handled here, not a failure (see ``_QuietHandledDiscard``).
        """
        import psycopg

        pool = self._running()
        for attempt in range(pool.max_size + 1):
            connection = await pool.getconn()
            try:
                if _has_input(connection.fileno()):
                    await pool.check_connection(connection)
            except psycopg.Error:
                discarding = _DISCARDING.set(connection)
                try:
                    await pool.putconn(connection)  # broken: the pool replaces it
                finally:
                    _DISCARDING.reset(discarding)
                if attempt == pool.max_size:
                    raise
                continue
            except BaseException:
                await pool.putconn(connection)
                raise
            try:
                yield connection
            finally:
                await pool.putconn(connection)
            return

    def _running(self) -> Pool:
        if self._pool is None:
            raise not_open(repr(self))
        return self._pool

    def _error(self, exc: psycopg.Error, id: str | None = None) -> StoreError:
        about = (
            f" while writing instance {id!r} (load it again to see whether the write took effect)"
            if id
            else ""
        )
        return StoreError(f"PostgreSQL at {self._where()} failed{about}: {type(exc).__name__}: {exc}")

    def _where(self) -> str:
        """The DSN's host, port and database, without credentials."""
        try:
            from psycopg.conninfo import conninfo_to_dict

            parts = conninfo_to_dict(self.dsn)
        except Exception:
            return "<unreadable DSN>"
        host = parts.get("host") or "localhost"
        port = parts.get("port") or "5432"
        return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


# The connection ``PostgresStore._connection`` found dead and is handing back to the pool.
_DISCARDING: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "procflow_discarding", default=None
)


class _QuietHandledDiscard(logging.Filter):
    """Drops psycopg_pool's warnings about the connection the store found dead and is handing back.

    After a server restart every pooled connection is dead; the store finds each one before use
    and hands it back for the pool to replace (see ``PostgresStore._connection``), and the pool
    warns "discarding closed connection" for each: noise about a case that is handled. Only
    the records about that connection, logged while the store hands it back, are dropped; the
    pool's other warnings (a connection that died in use, a failed connect) stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        discarding = _DISCARDING.get()
        if discarding is None or record.levelno != logging.WARNING:
            return True
        return not (isinstance(record.args, tuple) and any(arg is discarding for arg in record.args))


_QUIET_HANDLED_DISCARD = _QuietHandledDiscard()


def _has_input(fd: int) -> bool:
    """Whether the socket has something to read; ``True`` where that cannot be told cheaply (Windows)."""
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise StoreError(
            "PostgresStore runs under asyncio only: psycopg's async connections do not support trio; "
            "run the engine with asyncio (e.g. anyio.run(main, backend='asyncio'))"
        ) from None


def _params(record: InstanceRecord, now: int, history: Sequence[HistoryEntry]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": record.id,
        "workflow": record.workflow,
        "status": record.status,
        "correlation_id": record.correlation_id,
        "due_at": optional_ms(record.due_at),
        "now": now,
        "data": record.data,
        "state": record.state,
        "meta": record.meta,
    }
    if history:
        params["at"], params["entries"] = encode_entries(history)
    return params
