"""The ``Store`` protocol: how the engine keeps instances in a database.

A store holds one row per workflow instance (``InstanceRecord``) and an
append-only history per instance (``HistoryEntry``). It knows nothing of the
interpreter: workflow data and ``State`` arrive as JSON text. Every write is
one transaction (one commit), checked against the version the caller loaded.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import StoreError

__all__ = ["HistoryEntry", "InstanceRecord", "Store", "not_open"]


def not_open(store: str) -> StoreError:
    """The error of a store used before it was opened; ``store`` names it in the message."""
    return StoreError(
        f"the store {store} is not open: open its engine first (`async with engine:` or "
        "`await engine.open()`), or the store itself (`await store.open()`)"
    )


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One stored workflow instance.

    ``data`` is the workflow's data as JSON, ``state`` its ``State`` as JSON
    (the store keeps both as given). ``status`` is the ``WorkflowStatus``
    value (or ``FAILED``), kept in its own column for look-ups. ``version``
    is 1 after the first insert and grows by one with every update.
    ``due_at`` (Unix seconds, or ``None``) is when a worker should next look
    at the instance: a timer falls due, a retry is due; it is indexed. A
    due time past what a 64-bit millisecond count holds (the year 292
    million, or infinity) is kept as the latest one that fits: never due.
    ``meta`` is the engine's own bookkeeping as JSON text ("" when none):
    the event inbox, step attempts, the failure, rejected payloads.
    """

    id: str
    workflow: str
    status: str
    data: str
    state: str
    version: int = 0
    correlation_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    due_at: float | None = None
    meta: str = ""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of an instance's history: what happened, where, and when.

    ``kind`` is one of ``started``, ``step``, ``event``, ``setup``,
    ``setup_error``, ``teardown``, ``teardown_error``, ``condition``,
    ``compensated``, ``finished``, ``cancelled``, ``failed`` (or another
    short word the engine adds); ``name`` is the statement or event name,
    ``thread`` the thread id, ``detail`` free text (an error, a reason).
    ``at`` is a Unix timestamp in seconds.
    """

    at: float
    kind: str
    name: str = ""
    thread: str = ""
    detail: str = ""


@runtime_checkable
class Store(Protocol):
    """Where the engine keeps instances. All methods are async.

    Implementations: ``MemoryStore`` (tests, examples), ``SQLiteStore``
    (embedded default) and ``PostgresStore`` (many processes, many hosts).
    """

    async def open(self) -> None:
        """Connect, and create or upgrade the schema. Idempotent."""

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    async def insert(self, record: InstanceRecord, history: Sequence[HistoryEntry] = ()) -> InstanceRecord:
        """Store a new instance with its first history lines, in one commit.

        Returns the record as stored (``version`` 1).

        Raises:
            DuplicateInstanceError: the id or the correlation id is taken.
        """
        ...

    async def update(
        self,
        record: InstanceRecord,
        history: Sequence[HistoryEntry] = (),
        *,
        reply: tuple[str, str] | None = None,
    ) -> InstanceRecord:
        """Replace an instance and append history lines, in one commit.

        ``record.version`` is the version that was loaded; the write happens
        only if the stored row still has it, and stores ``version + 1``.
        ``reply`` is an idempotency key and the text to keep for it (the
        reply and the request it answered, see ``procflow.idempotency``;
        opaque to the store), written in the same commit. Returns the record
        as stored.

        A correlation id must find this instance alone, as at ``insert``: it
        may not be another instance's correlation id, nor another instance's
        id (it may be the instance's own id).

        Raises:
            ConflictError: the stored version differs (someone else saved).
            InstanceNotFound: there is no such instance.
            DuplicateInstanceError: the correlation id is another instance's
                correlation id or id; nothing is written.
        """
        ...

    async def get(self, id: str) -> InstanceRecord:
        """The instance with this id.

        Raises:
            InstanceNotFound: there is none.
        """
        ...

    async def find(self, correlation_id: str) -> InstanceRecord:
        """The instance with this correlation id.

        Raises:
            InstanceNotFound: there is none.
        """
        ...

    async def lookup(self, key: str) -> InstanceRecord:
        """The instance whose id is ``key``, else the one whose correlation id is ``key``.

        One round trip where ``get`` then ``find`` would take two.

        Raises:
            InstanceNotFound: neither exists.
        """
        ...

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: str | Sequence[str] | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[InstanceRecord]:
        """Instances ordered by id, filtered by workflow name and status.

        Paging is by key: pass the last id of a page as ``after`` to get the
        next one.

        Raises:
            ValueError: ``limit`` is below 1.
            StoreError: ``workflow``, a status or ``after`` holds a lone
                surrogate or a NUL character, which not every database can
                keep (as ``insert`` refuses such a key), or the database failed.
        """
        ...

    async def history(self, id: str) -> builtins.list[HistoryEntry]:
        """The instance's history, oldest first (empty for an unknown id)."""
        ...

    async def reply(self, id: str, key: str) -> str | None:
        """The reply kept for idempotency key ``key`` of instance ``id``, or ``None``."""
        ...

    async def claim_due(self, now: float, *, limit: int, lease: float) -> builtins.list[InstanceRecord]:
        """Take up to ``limit`` instances whose ``due_at`` is at or before ``now``.

        Earliest due first. In one commit, each claimed row's ``due_at`` moves
        to ``now + lease`` (and its version grows), so no other worker takes
        it until the lease runs out; the records are returned as stored. Rows
        another worker is claiming at the same moment are skipped, not waited
        for (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). The look-up is an
        index range scan over ``due_at``, whatever the number of rows.
        """
        ...

    async def renew_lease(self, id: str, version: int, until: float) -> bool:
        """Hold instance ``id`` until ``until``, if it is still at ``version``.

        The engine runs the instance from the row it loaded or last committed
        at ``version``; before a step runs on a row held for less than the
        engine's ``stale_after`` (a worker's claim holds it for its lease
        only), it moves the row's due time to ``until``, so that no worker
        takes the run for abandoned and runs the step a second time. The
        version grows by one, as at a claim, so of two processes that loaded
        one version only one holds the row: the other's hold (and any
        ``update`` at ``version``) fails. Nothing else changes (``updated_at``,
        data, state, meta and history stay). ``until`` is kept like any due
        time (to the millisecond, clamped).

        Returns ``True`` if the row is now held, at ``version + 1``; ``False``
        (changing nothing) if the stored version differs or there is no such
        instance (a key no store can keep included).

        Raises:
            StoreError: the database failed, or the store is not open.
        """
        ...

    async def purge(self, before: float, *, limit: int) -> builtins.list[str]:
        """Delete up to ``limit`` instances that are over and were last written before ``before``.

        Over means status ``FINISHED`` or ``CANCELLED``: an instance that is
        waiting, running or ``FAILED`` (it waits for a human) is never
        deleted. ``before`` is a Unix timestamp compared with ``updated_at``
        (to the millisecond); the oldest go first. Each instance goes with its
        history and its kept replies, all in one transaction, and the
        statement that deletes it checks its status and ``updated_at`` as it
        deletes: an instance written meanwhile (by a worker, a send, an
        ``edit``) is kept. Its id and correlation id are free again afterwards.
        The look-up is an index range scan over the instances that are over,
        however many are live; call it again until it returns fewer than
        ``limit`` ids.

        Returns the ids deleted (at most ``limit``), so that the caller can log
        them, or delete rows of its own kept for those instances.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is NaN.
            StoreError: the database failed, or the store is not open.
        """
        ...
