"""The SQLite store's schema and how a database file is brought up to date.

The schema version lives in ``PRAGMA user_version``. Upgrades run in one
``BEGIN IMMEDIATE`` transaction, so two processes opening an old file at once
take turns and the second finds nothing left to do.
"""

from __future__ import annotations

import sqlite3

from ._migrations import Migration, pending

__all__ = ["MIGRATIONS", "migrate"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "instances and their history",
        (
            # ``k`` is the rowid history rows point at: an integer costs a few
            # bytes per history row where the text id would cost dozens, and
            # AUTOINCREMENT never hands a deleted instance's key to a new one.
            """CREATE TABLE procflow_instance (
                k INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                workflow TEXT NOT NULL,
                status TEXT NOT NULL,
                correlation_id TEXT UNIQUE,
                version INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                data TEXT NOT NULL,
                state TEXT NOT NULL
            )""",
            "CREATE INDEX procflow_instance_status ON procflow_instance (status, id)",
            # One row per write: the write's history lines as a compact JSON array.
            """CREATE TABLE procflow_history (
                k INTEGER NOT NULL,
                version INTEGER NOT NULL,
                at INTEGER NOT NULL,
                entries TEXT NOT NULL,
                PRIMARY KEY (k, version)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "due times, the engine's bookkeeping, and replies kept for idempotency keys",
        (
            "ALTER TABLE procflow_instance ADD COLUMN due_at INTEGER",
            "ALTER TABLE procflow_instance ADD COLUMN meta TEXT NOT NULL DEFAULT ''",
            # Only instances that are due at some time are in the index, so
            # instances parked on plain events cost nothing here.
            "CREATE INDEX procflow_instance_due ON procflow_instance (due_at) WHERE due_at IS NOT NULL",
            """CREATE TABLE procflow_reply (
                k INTEGER NOT NULL,
                key TEXT NOT NULL,
                reply TEXT NOT NULL,
                PRIMARY KEY (k, key)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "instances that are over, by the time of their last write, for retention",
        (
            # What ``purge`` deletes, oldest first, as a range of this index: only finished
            # and cancelled instances are in it, so live ones cost nothing here, and a purge
            # never reads past the old ones (neither the live nor the recently finished).
            "CREATE INDEX IF NOT EXISTS procflow_instance_over ON procflow_instance (updated_at)"
            " WHERE status IN ('FINISHED', 'CANCELLED')",
        ),
    ),
)


def migrate(connection: sqlite3.Connection, *, where: str) -> int:
    """Create or upgrade the schema; return the schema version now in the file.

    Raises:
        StoreError: the file was written by a newer procflow.
        sqlite3.Error: the file is not a database, or is locked for too long.
    """
    current = _user_version(connection)
    if not pending(MIGRATIONS, current, where=where):
        return current
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have upgraded the file while we waited for the lock.
        current = _user_version(connection)
        for migration in pending(MIGRATIONS, current, where=where):
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {migration.version:d}")
            current = migration.version
        connection.execute("COMMIT")
    except BaseException:
        connection.rollback()
        raise
    return current


def _user_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])
