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

__all__ = ["HistoryEntry", "InstanceRecord", "Store"]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One stored workflow instance.

    ``data`` is the workflow's data as JSON, ``state`` its ``State`` as JSON
    (the store keeps both as given). ``status`` is the ``WorkflowStatus``
    value, kept in its own column for look-ups. ``version`` is 1 after the
    first insert and grows by one with every update.
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

    async def update(self, record: InstanceRecord, history: Sequence[HistoryEntry] = ()) -> InstanceRecord:
        """Replace an instance and append history lines, in one commit.

        ``record.version`` is the version that was loaded; the write happens
        only if the stored row still has it, and stores ``version + 1``.
        Returns the record as stored.

        Raises:
            ConflictError: the stored version differs (someone else saved).
            InstanceNotFound: there is no such instance.
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
        """
        ...

    async def history(self, id: str) -> builtins.list[HistoryEntry]:
        """The instance's history, oldest first (empty for an unknown id)."""
        ...
