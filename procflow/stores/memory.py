"""``MemoryStore``: instances in a dict, for tests and examples."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Sequence
from types import TracebackType

import anyio.lowlevel

from ._columns import now_ms, stored_as, to_ms
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
from ._keys import check_key
from ._listing import check_filters, check_limit, status_filter
from ._purging import OVER, check_purge
from .base import HistoryEntry, InstanceRecord, not_open

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps instances in memory, with the same rules as the database stores.

    Versions, conflicts, unique ids and correlation ids, filters, paging and
    history behave as in ``SQLiteStore``, timestamps included (whole
    milliseconds), and so does a store used before ``open`` or after
    ``close`` (``StoreError``). Nothing survives the process; ``close`` keeps
    the data, so the store can be opened again. Every method yields to the
    event loop once, like a real store, and is atomic.
    """

    def __init__(self) -> None:
        self._open = False
        self._instances: dict[str, InstanceRecord] = {}
        self._by_correlation: dict[str, str] = {}
        self._history: dict[str, list[HistoryEntry]] = {}
        self._replies: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._instances)} instances)"

    async def __aenter__(self) -> MemoryStore:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Nothing to connect to. Idempotent."""
        self._open = True

    async def close(self) -> None:
        """Nothing to release; the instances stay. Idempotent."""
        self._open = False

    async def _ready(self) -> None:
        """Yield to the event loop, as a real store's call does; refuse if not open.

        Raises:
            StoreError: the store is not open.
        """
        await anyio.lowlevel.checkpoint()
        if not self._open:
            raise not_open(repr(self))

    async def insert(self, record: InstanceRecord, history: Sequence[HistoryEntry] = ()) -> InstanceRecord:
        """Store a new instance with its first history lines.

        The store sets ``version`` to 1 and both timestamps to now.

        Raises:
            DuplicateInstanceError: the id or the correlation id is taken.
            StoreError: the id or the correlation id holds a lone surrogate or
                a NUL character, which the database stores cannot keep.
        """
        await self._ready()
        check_key(record.id, "id")
        check_key(record.correlation_id, "correlation id")
        if record.id in self._instances:
            raise duplicate_id(record.id)
        self._check_correlation(record)
        owner = self._by_correlation.get(record.id)
        if owner is not None:
            raise key_of_another(record, owner, record.id)
        if record.correlation_id is not None and record.correlation_id in self._instances:
            raise key_of_another(
                record, record.correlation_id, self._instances[record.correlation_id].correlation_id
            )
        now = now_ms() / 1000
        stored = stored_as(record, version=1, created_at=now, updated_at=now)
        self._save(stored, None)
        self._history[record.id] = [_rounded(entry) for entry in history]
        return stored

    async def update(
        self,
        record: InstanceRecord,
        history: Sequence[HistoryEntry] = (),
        *,
        reply: tuple[str, str] | None = None,
    ) -> InstanceRecord:
        """Replace an instance and append history lines, if it is still at ``record.version``.

        Stores ``version + 1``; every field is replaced (``None`` clears the
        correlation id and ``due_at``) except ``created_at``. ``reply`` is
        ``(idempotency key, kept reply text)`` (see ``procflow.idempotency``);
        if the key already has a reply, the first one stays.

        Raises:
            ConflictError: the stored version differs (someone else saved first).
            InstanceNotFound: there is no instance with this id.
            DuplicateInstanceError: the new correlation id belongs to another
                instance, or is another instance's id.
            StoreError: the correlation id or the idempotency key holds a lone
                surrogate or a NUL character, which the database stores cannot keep.
        """
        await self._ready()
        current = self._instances.get(record.id)
        if current is None:
            raise not_found(record.id)
        check_key(record.correlation_id, "correlation id")
        if reply is not None:
            check_key(reply[0], "idempotency key")
        if current.version != record.version:
            raise conflict(record.id, record.version, current.version)
        self._check_correlation(record)
        correlation_id = record.correlation_id
        if correlation_id is not None and correlation_id != record.id and correlation_id in self._instances:
            raise correlation_is_anothers_id(correlation_id, record.id)
        stored = stored_as(
            record, version=record.version + 1, created_at=current.created_at, updated_at=now_ms() / 1000
        )
        self._save(stored, current)
        self._history[record.id].extend(_rounded(entry) for entry in history)
        if reply is not None:
            self._replies.setdefault((record.id, reply[0]), reply[1])
        return stored

    async def get(self, id: str) -> InstanceRecord:
        """The instance with this id.

        Raises:
            InstanceNotFound: there is none.
        """
        await self._ready()
        try:
            return self._instances[id]
        except KeyError:
            raise not_found(id) from None

    async def find(self, correlation_id: str) -> InstanceRecord:
        """The instance with this correlation id.

        Raises:
            InstanceNotFound: there is none.
        """
        await self._ready()
        try:
            return self._instances[self._by_correlation[correlation_id]]
        except KeyError:
            raise correlation_not_found(correlation_id) from None

    async def lookup(self, key: str) -> InstanceRecord:
        """The instance whose id is ``key``, else the one whose correlation id is ``key``.

        Raises:
            InstanceNotFound: neither exists.
        """
        await self._ready()
        record = self._instances.get(key)
        if record is None:
            id = self._by_correlation.get(key)
            if id is None:
                raise key_not_found(key)
            record = self._instances[id]
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
                surrogate or a NUL character, which the database stores cannot
                compare, so no store takes it.
        """
        check_limit(limit)
        await self._ready()
        statuses = status_filter(status)
        check_filters(workflow=workflow, statuses=statuses, after=after)
        page: list[InstanceRecord] = []
        for id in sorted(self._instances):
            record = self._instances[id]
            if after is not None and id <= after:
                continue
            if workflow is not None and record.workflow != workflow:
                continue
            if statuses is not None and record.status not in statuses:
                continue
            page.append(record)
            if len(page) == limit:
                break
        return page

    async def history(self, id: str) -> builtins.list[HistoryEntry]:
        """The instance's history, oldest first (empty for an unknown id)."""
        await self._ready()
        return list(self._history.get(id, ()))

    async def reply(self, id: str, key: str) -> str | None:
        """The reply kept for idempotency key ``key`` of instance ``id``, or ``None``."""
        await self._ready()
        return self._replies.get((id, key))

    async def claim_due(self, now: float, *, limit: int, lease: float) -> builtins.list[InstanceRecord]:
        """Take up to ``limit`` instances whose ``due_at`` is at or before ``now``, earliest first.

        Each one's ``due_at`` moves to ``now + lease`` and its version grows,
        so no one takes it again until the lease runs out. Returns the
        records as stored.

        Raises:
            ValueError: ``limit`` is below 1.
        """
        check_limit(limit)
        await self._ready()
        due = sorted(
            (
                record
                for record in self._instances.values()
                if record.due_at is not None and record.due_at <= now
            ),
            key=lambda record: (record.due_at, record.id),
        )[:limit]
        until = to_ms(now + lease) / 1000
        stamp = now_ms() / 1000
        claimed = []
        for record in due:
            stored = dataclasses.replace(record, version=record.version + 1, updated_at=stamp, due_at=until)
            self._instances[record.id] = stored
            claimed.append(stored)
        return claimed

    async def renew_lease(self, id: str, version: int, until: float) -> bool:
        """Hold instance ``id`` until ``until`` if it is still at ``version`` (see ``Store.renew_lease``).

        ``due_at`` moves and the version grows by one; nothing else changes.
        Returns ``False``, changing nothing, if the version differs or there
        is no such instance.

        Raises:
            StoreError: the store is not open.
        """
        await self._ready()
        current = self._instances.get(id)
        if current is None or current.version != version:
            return False
        self._instances[id] = dataclasses.replace(current, due_at=to_ms(until) / 1000, version=version + 1)
        return True

    async def purge(self, before: float, *, limit: int) -> builtins.list[str]:
        """Delete up to ``limit`` finished or cancelled instances last written before ``before``.

        Oldest first, each with its history and kept replies, at once (see
        ``Store.purge``); their ids and correlation ids are free again.
        Returns the ids deleted. It looks at every instance: a memory store
        is for tests, not for many.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is NaN.
            StoreError: the store is not open.
        """
        cutoff = check_purge(before, limit)
        await self._ready()
        old = sorted(
            (
                record
                for record in self._instances.values()
                if record.status in OVER and to_ms(record.updated_at) < cutoff
            ),
            key=lambda record: (record.updated_at, record.id),
        )[:limit]
        gone = {record.id for record in old}
        for record in old:
            del self._instances[record.id]
            self._history.pop(record.id, None)
            if record.correlation_id is not None:
                del self._by_correlation[record.correlation_id]
        for key in [key for key in self._replies if key[0] in gone]:
            del self._replies[key]
        return [record.id for record in old]

    def _check_correlation(self, record: InstanceRecord) -> None:
        if record.correlation_id is None:
            return
        owner = self._by_correlation.get(record.correlation_id)
        if owner is not None and owner != record.id:
            raise duplicate_correlation(record.correlation_id, owner, record.id)

    def _save(self, stored: InstanceRecord, previous: InstanceRecord | None) -> None:
        if previous is not None and previous.correlation_id is not None:
            del self._by_correlation[previous.correlation_id]
        if stored.correlation_id is not None:
            self._by_correlation[stored.correlation_id] = stored.id
        self._instances[stored.id] = stored


def _rounded(entry: HistoryEntry) -> HistoryEntry:
    """The entry as the database stores keep it: to the millisecond."""
    return HistoryEntry(to_ms(entry.at) / 1000, entry.kind, entry.name, entry.thread, entry.detail)
