"""The Store contract, run against every store: memory, SQLite, PostgreSQL.

Each test states one rule of ``procflow.stores.base.Store`` and runs on a
real store: SQLite on a temporary file, PostgreSQL on the throwaway cluster
of ``postgres_cluster`` (one fresh schema per test). The async tests run
under asyncio and trio, except PostgreSQL's: psycopg's async connections run
on asyncio only. After the contract come the rules of the database stores
(reopening, schema upgrades, processes racing) and of each store alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from store_helpers import (  # noqa: F401
    Backend,
    backend_fixture,
    durable_fixture,
    store_fixture,
)

from procflow.errors import ConflictError, DuplicateInstanceError, InstanceNotFound, StoreError
from procflow.stores import (
    HistoryEntry,
    InstanceRecord,
    MemoryStore,
    PostgresStore,
    SQLiteStore,
    Store,
    _postgres_schema,
    _sqlite_schema,
    open_store,
)

# -- the stores under test -------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def record(
    id: str = "o-1",
    *,
    workflow: str = "order",
    status: str = "WAITING",
    data: str = '{"total": 12}',
    state: str = '{"pc": 1}',
    version: int = 0,
    correlation_id: str | None = None,
) -> InstanceRecord:
    return InstanceRecord(
        id=id,
        workflow=workflow,
        status=status,
        data=data,
        state=state,
        version=version,
        correlation_id=correlation_id,
    )


def line(
    kind: str, name: str = "", *, at: float = 1_700_000_000.0, thread: str = "", detail: str = ""
) -> HistoryEntry:
    return HistoryEntry(at=at, kind=kind, name=name, thread=thread, detail=detail)


def same_content(a: InstanceRecord, b: InstanceRecord) -> bool:
    """Equal but for the timestamps, which the store sets."""
    return dataclasses.replace(a, created_at=0.0, updated_at=0.0) == dataclasses.replace(
        b, created_at=0.0, updated_at=0.0
    )


# -- insert, get, find ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_store_implements_the_store_protocol(store: Store) -> None:
    assert isinstance(store, Store)


@pytest.mark.anyio
async def test_insert_stores_version_1_and_get_returns_the_same_record(store: Store) -> None:
    stored = await store.insert(record(correlation_id="c-1", version=7))
    assert stored.version == 1
    assert same_content(stored, record(correlation_id="c-1", version=1))
    assert await store.get("o-1") == stored


@pytest.mark.anyio
async def test_insert_sets_both_timestamps_to_the_stores_clock(store: Store) -> None:
    before = time.time()
    stored = await store.insert(record())
    after = time.time()
    assert before - 0.001 <= stored.created_at == stored.updated_at <= after + 0.001


@pytest.mark.anyio
async def test_insert_of_a_taken_id_raises_duplicate_and_keeps_the_first(store: Store) -> None:
    first = await store.insert(record(data='{"first": true}'))
    with pytest.raises(DuplicateInstanceError, match="'o-1'"):
        await store.insert(record(data='{"second": true}', correlation_id="c-2"))
    assert await store.get("o-1") == first
    with pytest.raises(InstanceNotFound):
        await store.find("c-2")


@pytest.mark.anyio
async def test_insert_of_a_taken_correlation_id_raises_duplicate_and_stores_nothing(store: Store) -> None:
    await store.insert(record("o-1", correlation_id="order-42"))
    with pytest.raises(DuplicateInstanceError, match=r"'order-42'.*'o-1'"):
        await store.insert(record("o-2", correlation_id="order-42"), [line("started")])
    with pytest.raises(InstanceNotFound):
        await store.get("o-2")
    assert await store.history("o-2") == []


@pytest.mark.anyio
async def test_insert_of_an_id_that_is_anothers_correlation_id_raises_duplicate_and_stores_nothing(
    store: Store,
) -> None:
    await store.insert(record("o-1", correlation_id="order-42"))
    with pytest.raises(DuplicateInstanceError, match=r"'order-42' already finds instance 'o-1'"):
        await store.insert(record("order-42"), [line("started")])
    assert (await store.lookup("order-42")).id == "o-1"
    assert await store.history("order-42") == []


@pytest.mark.anyio
async def test_insert_of_a_correlation_id_that_is_anothers_id_raises_duplicate_and_stores_nothing(
    store: Store,
) -> None:
    await store.insert(record("o-1"))
    with pytest.raises(DuplicateInstanceError, match=r"'o-1' already finds instance 'o-1'.*instance 'o-2'"):
        await store.insert(record("o-2", correlation_id="o-1"), [line("started")])
    with pytest.raises(InstanceNotFound):
        await store.get("o-2")


@pytest.mark.anyio
async def test_inserts_racing_for_one_key_as_id_and_as_correlation_id_exactly_one_wins(
    backend: Backend,
) -> None:
    first, second = backend.make(), backend.make()
    stored: dict[str, list[str]] = {}

    async def insert(store: Store, new: InstanceRecord, key: str) -> None:
        try:
            await store.insert(new, [line("started")] if len(stored) % 3 else [])
        except DuplicateInstanceError:
            return
        stored[key].append(new.id)

    async with first, second:
        for n in range(60):
            key = f"k-{n}"
            stored[key] = []
            by_id, by_correlation = (first, second) if n % 2 else (second, first)
            async with anyio.create_task_group() as group:
                group.start_soon(insert, by_id, record(key), key)
                group.start_soon(insert, by_correlation, record(f"x-{n}", correlation_id=key), key)
        for key, winners in stored.items():
            assert len(winners) == 1, (key, winners)
            loser = f"x-{key[2:]}" if winners == [key] else key
            with pytest.raises(InstanceNotFound):
                await first.get(loser)


@pytest.mark.anyio
async def test_many_instances_may_have_no_correlation_id(store: Store) -> None:
    for id in ("a", "b", "c"):
        await store.insert(record(id))
    assert [r.correlation_id for r in await store.list()] == [None, None, None]


@pytest.mark.anyio
async def test_get_of_an_unknown_id_raises_instance_not_found_naming_it(store: Store) -> None:
    with pytest.raises(InstanceNotFound, match="'nope'"):
        await store.get("nope")


@pytest.mark.anyio
async def test_find_returns_the_instance_with_that_correlation_id(store: Store) -> None:
    await store.insert(record("o-1", correlation_id="order-41"))
    stored = await store.insert(record("o-2", correlation_id="order-42"))
    assert await store.find("order-42") == stored


@pytest.mark.anyio
async def test_find_of_an_unknown_correlation_id_raises_instance_not_found_naming_it(store: Store) -> None:
    await store.insert(record("o-1", correlation_id="order-41"))
    with pytest.raises(InstanceNotFound, match="'order-99'"):
        await store.find("order-99")


@pytest.mark.anyio
async def test_lookup_finds_an_instance_by_its_id(store: Store) -> None:
    stored = await store.insert(record("o-1", correlation_id="order-41"))
    assert await store.lookup("o-1") == stored


@pytest.mark.anyio
async def test_lookup_finds_an_instance_by_its_correlation_id(store: Store) -> None:
    await store.insert(record("o-1", correlation_id="order-41"))
    stored = await store.insert(record("o-2", correlation_id="order-42"))
    assert await store.lookup("order-42") == stored


@pytest.mark.anyio
async def test_lookup_prefers_the_id_over_another_instances_equal_correlation_id(durable: Backend) -> None:
    # insert and update refuse such a pair; rows written before those checks may hold one
    async with durable.make() as store:
        by_id = await store.insert(record("x", correlation_id="o-2"))
        await store.insert(record("o-1"))
        durable.execute("UPDATE procflow_instance SET correlation_id = 'x' WHERE id = 'o-1'")
        assert (await store.get("o-1")).correlation_id == "x"
        assert await store.lookup("x") == by_id


@pytest.mark.anyio
async def test_lookup_of_an_unknown_key_raises_instance_not_found_naming_it(store: Store) -> None:
    await store.insert(record("o-1", correlation_id="order-41"))
    with pytest.raises(InstanceNotFound, match="'nope'"):
        await store.lookup("nope")


UNSTORABLE_KEYS = pytest.mark.parametrize("key", ["o-\ud800", "o-1\x00"], ids=["lone surrogate", "NUL"])


@pytest.mark.anyio
@UNSTORABLE_KEYS
async def test_a_key_no_store_can_keep_is_found_nowhere(store: Store, key: str) -> None:
    await store.insert(record("o-1"))
    for look_up in (store.get, store.find, store.lookup):
        with pytest.raises(InstanceNotFound):
            await look_up(key)
    assert await store.history(key) == []
    assert await store.reply(key, "k-1") is None
    assert await store.reply("o-1", key) is None


@pytest.mark.anyio
@UNSTORABLE_KEYS
async def test_insert_of_an_id_no_store_can_keep_raises_store_error_saying_why(
    store: Store, key: str
) -> None:
    with pytest.raises(StoreError, match=r"the id .* cannot be stored: it holds (a lone surrogate|a NUL)"):
        await store.insert(record(key), [line("started")])
    assert await store.list() == []


@pytest.mark.anyio
@UNSTORABLE_KEYS
async def test_insert_of_a_correlation_id_no_store_can_keep_raises_store_error_saying_why(
    store: Store, key: str
) -> None:
    with pytest.raises(StoreError, match=r"the correlation id .* cannot be stored"):
        await store.insert(record("o-1", correlation_id=key))
    assert await store.list() == []


@pytest.mark.anyio
@UNSTORABLE_KEYS
async def test_update_to_a_correlation_id_no_store_can_keep_raises_store_error_and_changes_nothing(
    store: Store, key: str
) -> None:
    stored = await store.insert(record("o-1"))
    with pytest.raises(StoreError, match=r"the correlation id .* cannot be stored"):
        await store.update(dataclasses.replace(stored, correlation_id=key))
    assert await store.get("o-1") == stored


@pytest.mark.anyio
@UNSTORABLE_KEYS
async def test_update_keeping_a_reply_for_an_idempotency_key_no_store_can_keep_raises_store_error(
    store: Store, key: str
) -> None:
    stored = await store.insert(record("o-1"))
    with pytest.raises(StoreError, match=r"the idempotency key .* cannot be stored"):
        await store.update(stored, reply=(key, "reply"))
    assert await store.get("o-1") == stored


@pytest.mark.anyio
async def test_update_of_an_id_no_store_can_keep_raises_instance_not_found(store: Store) -> None:
    with pytest.raises(InstanceNotFound):
        await store.update(record("o-\ud800", version=1))


@pytest.mark.anyio
async def test_reads_see_every_write_that_returned(store: Store) -> None:
    stored = await store.insert(record("o-1", correlation_id="c-1"))
    for _ in range(20):
        stored = await store.update(stored)
        assert (await store.lookup("c-1")).version == stored.version
        assert (await store.get("o-1")).version == stored.version


# -- update -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_update_stores_the_next_version_and_replaces_every_field(store: Store) -> None:
    stored = await store.insert(record(correlation_id="c-1"))
    changed = dataclasses.replace(
        stored,
        workflow="order-v2",
        status="FINISHED",
        data='{"total": 13}',
        state='{"pc": 9}',
        correlation_id="c-2",
    )
    updated = await store.update(changed)
    assert updated.version == 2
    assert same_content(updated, dataclasses.replace(changed, version=2))
    assert await store.get("o-1") == updated


@pytest.mark.anyio
async def test_every_update_adds_one_to_the_version(store: Store) -> None:
    current = await store.insert(record())
    for expected in (2, 3, 4):
        current = await store.update(current)
        assert current.version == expected
    assert (await store.get("o-1")).version == 4


@pytest.mark.anyio
async def test_update_keeps_created_at_and_moves_updated_at(store: Store) -> None:
    stored = await store.insert(record())
    await anyio.sleep(0.01)
    updated = await store.update(stored)
    assert updated.created_at == stored.created_at
    assert updated.updated_at >= stored.updated_at + 0.005
    assert await store.get("o-1") == updated


@pytest.mark.anyio
async def test_update_with_a_stale_version_raises_conflict_and_changes_nothing(store: Store) -> None:
    loaded = await store.insert(record())
    saved = await store.update(
        dataclasses.replace(loaded, data='{"by": "first"}'), [line("event", "approve")]
    )
    with pytest.raises(ConflictError, match=r"'o-1'.*version 1.*version 2"):
        await store.update(dataclasses.replace(loaded, data='{"by": "second"}'), [line("event", "deny")])
    assert await store.get("o-1") == saved
    assert [entry.name for entry in await store.history("o-1")] == ["approve"]


@pytest.mark.anyio
async def test_update_of_an_unknown_id_raises_instance_not_found(store: Store) -> None:
    with pytest.raises(InstanceNotFound, match="'ghost'"):
        await store.update(record("ghost", version=1))


@pytest.mark.anyio
async def test_update_may_change_and_clear_the_correlation_id(store: Store) -> None:
    stored = await store.insert(record(correlation_id="old"))
    moved = await store.update(dataclasses.replace(stored, correlation_id="new"))
    assert await store.find("new") == moved
    with pytest.raises(InstanceNotFound):
        await store.find("old")
    cleared = await store.update(dataclasses.replace(moved, correlation_id=None))
    assert cleared.correlation_id is None
    with pytest.raises(InstanceNotFound):
        await store.find("new")
    await store.insert(record("o-2", correlation_id="old"))


@pytest.mark.anyio
async def test_update_to_a_taken_correlation_id_raises_duplicate_and_changes_nothing(store: Store) -> None:
    await store.insert(record("o-1", correlation_id="taken"))
    other = await store.insert(record("o-2", correlation_id="mine"))
    with pytest.raises(DuplicateInstanceError, match=r"'taken'.*'o-1'"):
        await store.update(dataclasses.replace(other, correlation_id="taken", data="{}"), [line("event")])
    assert await store.get("o-2") == other
    assert await store.find("mine") == other
    assert await store.history("o-2") == []


@pytest.mark.anyio
async def test_update_to_a_correlation_id_that_is_anothers_id_raises_duplicate_and_changes_nothing(
    store: Store,
) -> None:
    await store.insert(record("o-1"))
    other = await store.insert(record("o-2", correlation_id="mine"))
    with pytest.raises(DuplicateInstanceError, match=r"'o-1' already finds instance 'o-1'.*instance 'o-2'"):
        await store.update(dataclasses.replace(other, correlation_id="o-1", data="{}"), [line("event")])
    assert await store.get("o-2") == other
    assert (await store.lookup("o-1")).id == "o-1"
    assert await store.history("o-2") == []


@pytest.mark.anyio
async def test_update_may_make_the_instances_own_id_its_correlation_id(store: Store) -> None:
    stored = await store.insert(record("o-1"))
    updated = await store.update(dataclasses.replace(stored, correlation_id="o-1"))
    assert await store.find("o-1") == updated == await store.lookup("o-1")


@pytest.mark.anyio
async def test_update_with_a_stale_version_to_anothers_id_as_correlation_id_raises_conflict(
    store: Store,
) -> None:
    await store.insert(record("o-1"))
    loaded = await store.insert(record("o-2"))
    saved = await store.update(loaded)
    with pytest.raises(ConflictError, match=r"'o-2'.*version 1.*version 2"):
        await store.update(dataclasses.replace(loaded, correlation_id="o-1"))
    assert await store.get("o-2") == saved


@pytest.mark.anyio
async def test_an_update_and_an_insert_racing_for_one_key_as_correlation_id_and_as_id_exactly_one_wins(
    backend: Backend,
) -> None:
    first, second = backend.make(), backend.make()

    async def write(
        winners: list[str], name: str, call: Callable[[], Awaitable[object]], wait: float
    ) -> None:
        await anyio.sleep(wait)
        try:
            await call()
        except DuplicateInstanceError:
            return
        winners.append(name)

    async with first, second:
        for n in range(100):
            key = f"k-{n}"
            moved = dataclasses.replace(await first.insert(record(f"x-{n}")), correlation_id=key)
            updater, inserter = (first, second) if n % 2 else (second, first)
            winners: list[str] = []
            # An update that changes the correlation id may take more round trips than an insert:
            # start the insert a little later, by a different time each round, to meet every step.
            wait = (n % 10) * 0.0001
            async with anyio.create_task_group() as group:
                update = functools.partial(updater.update, moved, [line("e")])
                group.start_soon(write, winners, "update", update, 0.0)
                group.start_soon(
                    write, winners, "insert", functools.partial(inserter.insert, record(key)), wait
                )
            assert len(winners) == 1, (key, winners)
            assert (await first.lookup(key)).id == (f"x-{n}" if winners == ["update"] else key)


@pytest.mark.anyio
async def test_two_tasks_updating_the_same_version_exactly_one_wins(store: Store) -> None:
    loaded = await store.insert(record())
    outcomes: list[str] = []

    async def save(data: str) -> None:
        try:
            await store.update(dataclasses.replace(loaded, data=data), [line("event", data)])
            outcomes.append(data)
        except ConflictError:
            outcomes.append("conflict")

    async with anyio.create_task_group() as group:
        group.start_soon(save, '"a"')
        group.start_soon(save, '"b"')
    assert len(outcomes) == 2 and outcomes.count("conflict") == 1
    winner = next(outcome for outcome in outcomes if outcome != "conflict")
    assert (await store.get("o-1")).data == winner
    assert [entry.name for entry in await store.history("o-1")] == [winner]


@pytest.mark.anyio
async def test_concurrent_writes_succeed_or_fail_each_on_their_own(store: Store) -> None:
    loaded = [await store.insert(record(f"o-{n:02d}")) for n in range(20)]
    stale = loaded[7]
    await store.update(stale)
    outcomes: dict[str, str] = {}

    async def save(current: InstanceRecord, key: str) -> None:
        try:
            await store.update(dataclasses.replace(current, data=json.dumps(key)), [line("event", key)])
            outcomes[key] = "saved"
        except ConflictError:
            outcomes[key] = "conflict"

    async def add(id: str) -> None:
        try:
            await store.insert(record(id), [line("started")])
            outcomes[f"insert {id}"] = "saved"
        except DuplicateInstanceError:
            outcomes[f"insert {id}"] = "duplicate"

    async with anyio.create_task_group() as group:
        for current in loaded:
            group.start_soon(save, current, current.id)
        group.start_soon(add, "o-05")
        group.start_soon(add, "o-99")

    assert outcomes.pop("o-07") == "conflict"
    assert outcomes.pop("insert o-05") == "duplicate"
    assert set(outcomes.values()) == {"saved"}
    for current in loaded:
        stored = await store.get(current.id)
        if current.id == "o-07":
            assert (stored.version, stored.data) == (2, current.data)
        else:
            assert (stored.version, stored.data) == (2, json.dumps(current.id))
            assert [entry.name for entry in await store.history(current.id)] == [current.id]
    assert [entry.kind for entry in await store.history("o-99")] == ["started"]


# -- history ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_history_holds_the_lines_of_every_write_oldest_first(store: Store) -> None:
    stored = await store.insert(record(), [line("started", at=10.0), line("step", "reserve", at=10.5)])
    stored = await store.update(stored, [line("setup", "approve", at=11.0)])
    stored = await store.update(stored)
    await store.update(stored, [line("event", "approve", at=12.0), line("step", "ship", at=12.25)])
    history = await store.history("o-1")
    assert [(entry.kind, entry.name, entry.at) for entry in history] == [
        ("started", "", 10.0),
        ("step", "reserve", 10.5),
        ("setup", "approve", 11.0),
        ("event", "approve", 12.0),
        ("step", "ship", 12.25),
    ]


@pytest.mark.anyio
async def test_history_keeps_every_field_to_the_millisecond(store: Store) -> None:
    entries = [
        HistoryEntry(at=1_700_000_000.1234, kind="step", name="reserve", thread="_main_", detail=""),
        HistoryEntry(
            at=1_700_000_000.9876, kind="failed", name="ship", thread="t-2", detail='boom: "quoted", ünïcode'
        ),
        HistoryEntry(at=1_699_999_999.0, kind="cancelled", name="", thread="", detail="customer left"),
    ]
    await store.insert(record(), entries)
    assert await store.history("o-1") == [
        dataclasses.replace(entries[0], at=1_700_000_000.123),
        dataclasses.replace(entries[1], at=1_700_000_000.988),
        entries[2],
    ]


@pytest.mark.anyio
async def test_history_keeps_thread_ids_exactly_the_main_thread_and_no_thread_included(store: Store) -> None:
    threads = ["_main_", "", "1", "t-2", "0"]
    await store.insert(record(), [line("step", f"s{i}", thread=t) for i, t in enumerate(threads)])
    assert [entry.thread for entry in await store.history("o-1")] == threads


@pytest.mark.anyio
async def test_history_of_an_unknown_id_is_empty(store: Store) -> None:
    assert await store.history("nope") == []


@pytest.mark.anyio
async def test_history_belongs_to_its_own_instance(store: Store) -> None:
    await store.insert(record("a"), [line("started", "a")])
    await store.insert(record("b"), [line("started", "b")])
    assert [entry.name for entry in await store.history("a")] == ["a"]
    assert [entry.name for entry in await store.history("b")] == ["b"]


# -- list ---------------------------------------------------------------------------------------


async def _fill(store: Store) -> None:
    rows = [
        ("o-3", "order", "WAITING"),
        ("o-1", "order", "FINISHED"),
        ("i-2", "invoice", "WAITING"),
        ("o-2", "order", "RESUMING"),
        ("i-1", "invoice", "CANCELLED"),
        ("o-4", "order", "WAITING"),
    ]
    for id, workflow, status in rows:
        await store.insert(record(id, workflow=workflow, status=status))


@pytest.mark.anyio
async def test_list_returns_instances_ordered_by_id(store: Store) -> None:
    await _fill(store)
    assert [r.id for r in await store.list()] == ["i-1", "i-2", "o-1", "o-2", "o-3", "o-4"]


@pytest.mark.anyio
async def test_list_of_an_empty_store_is_empty(store: Store) -> None:
    assert await store.list() == []


@pytest.mark.anyio
async def test_list_pages_by_id_cover_every_instance_once(store: Store) -> None:
    await _fill(store)
    pages: list[list[str]] = []
    after: str | None = None
    while page := await store.list(after=after, limit=4):
        pages.append([r.id for r in page])
        after = page[-1].id
    assert pages == [["i-1", "i-2", "o-1", "o-2"], ["o-3", "o-4"]]


@pytest.mark.anyio
async def test_list_returns_whole_records(store: Store) -> None:
    stored = await store.insert(record(correlation_id="c-1"))
    assert await store.list() == [stored]


@pytest.mark.anyio
async def test_list_filters_by_workflow(store: Store) -> None:
    await _fill(store)
    assert [r.id for r in await store.list(workflow="invoice")] == ["i-1", "i-2"]


@pytest.mark.anyio
async def test_list_filters_by_one_status(store: Store) -> None:
    await _fill(store)
    assert [r.id for r in await store.list(status="WAITING")] == ["i-2", "o-3", "o-4"]


@pytest.mark.anyio
async def test_list_filters_by_several_statuses_in_id_order_and_pages(store: Store) -> None:
    await _fill(store)
    statuses = ["WAITING", "RESUMING"]
    first = await store.list(status=statuses, limit=3)
    assert [r.id for r in first] == ["i-2", "o-2", "o-3"]
    assert [r.id for r in await store.list(status=statuses, after=first[-1].id, limit=3)] == ["o-4"]


@pytest.mark.anyio
async def test_list_filtered_by_an_empty_list_of_statuses_is_empty(store: Store) -> None:
    await _fill(store)
    assert await store.list(status=[]) == []


@pytest.mark.anyio
async def test_list_filters_by_workflow_and_status_together(store: Store) -> None:
    await _fill(store)
    assert [r.id for r in await store.list(workflow="order", status="WAITING", after="o-3")] == ["o-4"]
    assert await store.list(workflow="invoice", status="RESUMING") == []


@pytest.mark.anyio
async def test_list_orders_ids_by_code_point_in_every_store(store: Store) -> None:
    ids = ["b", "B", "a-10", "a-9", "é", "z", "Z", "10", "9", "日本"]
    for id in ids:
        await store.insert(record(id))
    assert [r.id for r in await store.list()] == sorted(ids)
    assert [r.id for r in await store.list(after="Z", limit=3)] == ["a-10", "a-9", "b"]


@pytest.mark.anyio
@UNSTORABLE_KEYS
@pytest.mark.parametrize("filter", ["workflow", "status", "statuses", "after"])
async def test_list_by_a_filter_no_store_can_keep_raises_store_error_saying_why(
    store: Store, key: str, filter: str
) -> None:
    await _fill(store)
    what, value = {
        "workflow": ("workflow", {"workflow": key}),
        "status": ("status", {"status": key}),
        "statuses": ("status", {"status": ["WAITING", key]}),
        "after": ("after", {"after": key}),
    }[filter]
    with pytest.raises(
        StoreError, match=rf"cannot list instances with {what} .*: it holds (a lone surrogate|a NUL)"
    ):
        await store.list(**value)


@pytest.mark.anyio
async def test_list_with_a_limit_below_one_raises_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list(limit=0)


# -- due times, claims and replies -----------------------------------------------------------------


@pytest.mark.anyio
async def test_due_at_and_meta_are_kept_with_due_at_to_the_millisecond(store: Store) -> None:
    stored = await store.insert(dataclasses.replace(record(), due_at=1234.5678, meta='{"inbox": []}'))
    assert (stored.due_at, stored.meta) == (1234.568, '{"inbox": []}')
    assert await store.get("o-1") == stored
    cleared = await store.update(dataclasses.replace(stored, due_at=None, meta=""))
    assert (cleared.due_at, cleared.meta) == (None, "")
    assert await store.get("o-1") == cleared


LATEST_DUE = (2**63 - 1) / 1000
"""The latest due time a store keeps: a 64-bit millisecond count."""


@pytest.mark.anyio
@pytest.mark.parametrize("due_at", [1e16, 1e300, float("inf"), float("nan")])
async def test_a_due_time_past_the_year_292_million_is_kept_as_the_latest_and_never_claimed(
    store: Store, due_at: float
) -> None:
    stored = await store.insert(dataclasses.replace(record(), due_at=due_at))
    assert stored.due_at == LATEST_DUE
    assert await store.get("o-1") == stored
    updated = await store.update(dataclasses.replace(stored, due_at=due_at))
    assert (await store.get("o-1")).due_at == updated.due_at == LATEST_DUE
    assert await store.claim_due(1e15, limit=10, lease=60) == []


@pytest.mark.anyio
async def test_a_due_time_before_the_64_bit_range_is_kept_as_the_earliest(store: Store) -> None:
    stored = await store.insert(dataclasses.replace(record(), due_at=float("-inf")))
    assert stored.due_at == -(2**63) / 1000
    assert await store.get("o-1") == stored
    assert [r.id for r in await store.claim_due(0.0, limit=10, lease=60)] == ["o-1"]


async def _due(store: Store, *due: tuple[str, float | None]) -> None:
    for id, at in due:
        await store.insert(dataclasses.replace(record(id), due_at=at))


@pytest.mark.anyio
async def test_claim_due_takes_due_instances_earliest_first_up_to_the_limit(store: Store) -> None:
    await _due(store, ("late", 30.0), ("early", 10.0), ("middle", 20.0), ("later", 40.0))
    assert [r.id for r in await store.claim_due(35.0, limit=2, lease=100)] == ["early", "middle"]
    assert [r.id for r in await store.claim_due(35.0, limit=2, lease=100)] == ["late"]


@pytest.mark.anyio
async def test_claim_due_leaves_instances_not_yet_due_or_without_a_due_time(store: Store) -> None:
    await _due(store, ("future", 50.0), ("never", None))
    assert await store.claim_due(49.999, limit=10, lease=100) == []
    assert [r.id for r in await store.claim_due(50.0, limit=10, lease=100)] == ["future"]


@pytest.mark.anyio
async def test_claim_due_moves_due_at_by_the_lease_and_adds_one_to_the_version(store: Store) -> None:
    await _due(store, ("o-1", 10.0))
    [claimed] = await store.claim_due(12.5, limit=10, lease=30)
    assert (claimed.version, claimed.due_at) == (2, 42.5)
    assert await store.get("o-1") == claimed


@pytest.mark.anyio
async def test_a_claimed_instance_is_claimed_again_only_once_its_lease_runs_out(store: Store) -> None:
    await _due(store, ("o-1", 10.0))
    await store.claim_due(10.0, limit=10, lease=30)
    assert await store.claim_due(39.9, limit=10, lease=30) == []
    assert [r.version for r in await store.claim_due(40.0, limit=10, lease=30)] == [3]


@pytest.mark.anyio
async def test_an_update_from_before_a_claim_raises_conflict(store: Store) -> None:
    loaded = await store.insert(dataclasses.replace(record(), due_at=10.0))
    await store.claim_due(10.0, limit=1, lease=30)
    with pytest.raises(ConflictError):
        await store.update(dataclasses.replace(loaded, due_at=None))


@pytest.mark.anyio
async def test_renew_lease_moves_due_at_and_the_version_alone(store: Store) -> None:
    loaded = await store.insert(dataclasses.replace(record(correlation_id="c-1"), due_at=10.0, meta="{}"))
    assert await store.renew_lease("o-1", 1, 500.0126) is True
    assert await store.get("o-1") == dataclasses.replace(loaded, due_at=500.013, version=2)
    assert (await store.update(dataclasses.replace(loaded, version=2, due_at=None))).version == 3


@pytest.mark.anyio
async def test_of_two_renew_leases_at_one_version_only_the_first_holds_the_row(store: Store) -> None:
    loaded = await store.insert(dataclasses.replace(record(), due_at=10.0))
    assert await store.renew_lease("o-1", loaded.version, 500.0) is True
    assert await store.renew_lease("o-1", loaded.version, 600.0) is False
    with pytest.raises(ConflictError):
        await store.update(loaded)
    assert (await store.get("o-1")).due_at == 500.0


@pytest.mark.anyio
async def test_renew_lease_at_a_stale_version_returns_false_and_changes_nothing(store: Store) -> None:
    loaded = await store.insert(dataclasses.replace(record(), due_at=10.0))
    saved = await store.update(loaded)
    assert await store.renew_lease("o-1", loaded.version, 500.0) is False
    assert await store.get("o-1") == saved


@pytest.mark.anyio
@pytest.mark.parametrize("id", ["ghost", "o-\ud800", "o-1\x00"], ids=["unknown", "lone surrogate", "NUL"])
async def test_renew_lease_of_an_instance_that_is_not_stored_returns_false(store: Store, id: str) -> None:
    await store.insert(record("o-1"))
    assert await store.renew_lease(id, 1, 500.0) is False


@pytest.mark.anyio
async def test_claim_due_leaves_an_instance_whose_lease_was_renewed_past_now(store: Store) -> None:
    await _due(store, ("o-1", 10.0))
    [claimed] = await store.claim_due(10.0, limit=10, lease=30)
    assert await store.renew_lease("o-1", claimed.version, 100.0)
    assert await store.claim_due(99.0, limit=10, lease=30) == []
    assert [r.id for r in await store.claim_due(100.0, limit=10, lease=30)] == ["o-1"]


@pytest.mark.anyio
async def test_renew_lease_on_a_closed_store_raises_store_error(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(StoreError, match="not open"):
        await store.renew_lease("o-1", 1, 500.0)


@pytest.mark.anyio
async def test_claim_due_with_a_limit_below_one_raises_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.claim_due(10.0, limit=0, lease=30)


@pytest.mark.anyio
async def test_tasks_claiming_at_once_never_share_an_instance(store: Store) -> None:
    await _due(store, *((f"o-{n:02d}", float(n)) for n in range(30)))
    claimed: list[str] = []

    async def claim() -> None:
        while batch := await store.claim_due(100.0, limit=4, lease=1000):
            claimed.extend(r.id for r in batch)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(claim)
    assert sorted(claimed) == [f"o-{n:02d}" for n in range(30)]


@pytest.mark.anyio
async def test_update_keeps_the_reply_of_an_idempotency_key_in_the_same_write(store: Store) -> None:
    loaded = await store.insert(record())
    await store.update(loaded, [line("event", "approve")], reply=("req-1", '{"ok": true}'))
    assert await store.reply("o-1", "req-1") == '{"ok": true}'


@pytest.mark.anyio
async def test_reply_of_an_unknown_key_or_instance_is_none(store: Store) -> None:
    loaded = await store.insert(record())
    await store.update(loaded, reply=("req-1", "1"))
    assert await store.reply("o-1", "req-2") is None
    assert await store.reply("o-2", "req-1") is None


@pytest.mark.anyio
async def test_the_first_reply_of_a_key_is_the_one_kept(store: Store) -> None:
    loaded = await store.insert(record())
    saved = await store.update(loaded, reply=("req-1", '"first"'))
    await store.update(saved, reply=("req-1", '"second"'))
    assert await store.reply("o-1", "req-1") == '"first"'


@pytest.mark.anyio
async def test_an_update_that_fails_keeps_no_reply(store: Store) -> None:
    loaded = await store.insert(record())
    await store.update(loaded)
    with pytest.raises(ConflictError):
        await store.update(loaded, reply=("req-1", '"stale"'))
    assert await store.reply("o-1", "req-1") is None


@pytest.mark.anyio
async def test_replies_belong_to_their_own_instance(store: Store) -> None:
    first = await store.insert(record("a"))
    second = await store.insert(record("b"))
    await store.update(first, reply=("req-1", '"a"'))
    await store.update(second, reply=("req-1", '"b"'))
    assert (await store.reply("a", "req-1"), await store.reply("b", "req-1")) == ('"a"', '"b"')


# -- what the store keeps as given ---------------------------------------------------------------


@pytest.mark.anyio
async def test_data_and_state_that_are_not_json_are_kept_and_returned_as_text(store: Store) -> None:
    stored = await store.insert(record(data="{not json", state="nor this ü"))
    assert (stored.data, stored.state) == ("{not json", "nor this ü")
    assert await store.get("o-1") == stored
    assert await store.list() == [stored]


@pytest.mark.anyio
async def test_open_and_close_may_be_called_twice(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    await store.open()
    await store.insert(record())
    await store.close()
    await store.close()


# -- the database stores: reopening, schema, processes ------------------------------------------


@pytest.mark.anyio
async def test_instances_and_history_survive_closing_and_reopening(durable: Backend) -> None:
    store = durable.make()
    await store.open()
    stored = await store.insert(record(correlation_id="c-1"), [line("started")])
    stored = await store.update(stored, [line("step", "reserve")])
    await store.close()

    reopened = durable.make()
    await reopened.open()
    try:
        assert await reopened.get("o-1") == stored
        assert await reopened.find("c-1") == stored
        assert [entry.kind for entry in await reopened.history("o-1")] == ["started", "step"]
        await reopened.update(stored)
    finally:
        await reopened.close()


@pytest.mark.anyio
async def test_a_closed_store_refuses_work_with_store_error(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(StoreError, match="not open"):
        await store.get("o-1")
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.insert(record())


def _race_update(url: str, id: str, barrier: Any, results: Any) -> None:
    """In a child process: load ``id``, wait for the others, then try to save it."""

    async def main() -> None:
        store = open_store(url)
        await store.open()
        try:
            loaded = await store.get(id)
            barrier.wait(timeout=60)
            mine = dataclasses.replace(loaded, data=json.dumps(os.getpid()))
            try:
                await store.update(mine, [line("event", "approve", detail=str(os.getpid()))])
                results.put(("won", os.getpid()))
            except ConflictError:
                results.put(("conflict", os.getpid()))
        except Exception as exc:
            results.put((f"error {exc!r}", os.getpid()))
        finally:
            await store.close()

    anyio.run(main, backend="asyncio")


@pytest.mark.slow
def test_processes_racing_on_one_version_exactly_one_wins(durable: Backend) -> None:
    async def prepare() -> None:
        store = durable.make()
        await store.open()
        await store.insert(record())
        await store.close()

    anyio.run(prepare, backend="asyncio")
    processes = 4
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(target=_race_update, args=(durable.url, "o-1", barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=120) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    assert sorted(outcome for outcome, _ in outcomes) == ["conflict"] * (processes - 1) + ["won"]
    winner = next(pid for outcome, pid in outcomes if outcome == "won")

    async def check() -> None:
        store = durable.make()
        await store.open()
        try:
            stored = await store.get("o-1")
            assert (stored.version, stored.data) == (2, json.dumps(winner))
            assert [entry.detail for entry in await store.history("o-1")] == [str(winner)]
        finally:
            await store.close()

    anyio.run(check, backend="asyncio")


def _claim_all(url: str, barrier: Any, results: Any) -> None:
    """In a child process: claim due instances, a few at a time, until none are left."""

    async def main() -> None:
        store = open_store(url)
        await store.open()
        claimed: list[str] = []
        try:
            barrier.wait(timeout=60)
            while batch := await store.claim_due(1000.0, limit=3, lease=10_000):
                claimed.extend(r.id for r in batch)
            results.put(claimed)
        except Exception as exc:
            results.put([f"error {exc!r}"])
        finally:
            await store.close()

    anyio.run(main, backend="asyncio")


@pytest.mark.slow
def test_processes_claiming_at_once_never_share_an_instance(durable: Backend) -> None:
    ids = [f"o-{n:02d}" for n in range(40)]

    async def prepare() -> None:
        store = durable.make()
        await store.open()
        await _due(store, *((id, float(n)) for n, id in enumerate(ids)))
        await store.close()

    anyio.run(prepare, backend="asyncio")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    children = [context.Process(target=_claim_all, args=(durable.url, barrier, results)) for _ in range(4)]
    for child in children:
        child.start()
    try:
        claimed = [id for _ in children for id in results.get(timeout=120)]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    assert sorted(claimed) == ids


# -- schema migrations --------------------------------------------------------------------------


def _sqlite_user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])


_SCHEMA_1_ROW = (
    "INSERT INTO procflow_instance"
    " (id, workflow, status, correlation_id, version, created_at, updated_at, data, state)"
    " VALUES ('o-1', 'order', 'WAITING', 'c-1', 3, 1000, 2000, '{}', '{\"pc\": 1}')"
)
_SCHEMA_1_RECORD = InstanceRecord(
    "o-1", "order", "WAITING", "{}", '{"pc": 1}', 3, "c-1", created_at=1.0, updated_at=2.0
)


@pytest.mark.anyio
async def test_sqlite_creates_the_latest_schema_in_a_new_file(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "new.db"):
        pass
    assert _sqlite_user_version(tmp_path / "new.db") == len(_sqlite_schema.MIGRATIONS)


@pytest.mark.anyio
async def test_sqlite_reopening_a_current_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SQLiteStore(path) as store:
        stored = await store.insert(record())
    for _ in range(2):
        async with SQLiteStore(path) as store:
            assert await store.get("o-1") == stored
    assert _sqlite_user_version(path) == len(_sqlite_schema.MIGRATIONS)


@pytest.mark.anyio
async def test_sqlite_upgrades_a_file_at_an_older_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as connection:  # as procflow at schema version 1 left it
        for statement in _sqlite_schema.MIGRATIONS[0].statements:
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 1")
        connection.execute(_SCHEMA_1_ROW)
    async with SQLiteStore(path) as store:
        assert await store.get("o-1") == _SCHEMA_1_RECORD
        updated = await store.update(dataclasses.replace(_SCHEMA_1_RECORD, due_at=5.0, meta='{"inbox": []}'))
        claimed = await store.claim_due(5.0, limit=10, lease=60)
        assert [(r.id, r.version, r.due_at) for r in claimed] == [("o-1", updated.version + 1, 65.0)]
    assert _sqlite_user_version(path) == len(_sqlite_schema.MIGRATIONS) == 3


@pytest.mark.anyio
async def test_sqlite_refuses_a_file_written_by_a_newer_procflow(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade procflow"):
        await SQLiteStore(path).open()


def _postgres_schema_versions(dsn: str) -> list[tuple[int]]:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return connection.execute("SELECT version FROM procflow_schema").fetchall()


def _closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_that_refuses_the_connection_fails_with_the_servers_reason_not_a_pool_timeout() -> (
    None
):
    store = PostgresStore(f"postgresql://procflow@127.0.0.1:{_closed_loopback_port()}/procflow", timeout=30)
    with pytest.raises(StoreError, match="Connection refused") as caught:
        await store.open()
    assert "check that the server is running" in str(caught.value)


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_creates_the_latest_schema_once_when_several_stores_open_it_together(
    postgres_database: str,
) -> None:
    stores = [PostgresStore(postgres_database, max_size=1) for _ in range(5)]
    async with anyio.create_task_group() as group:
        for store in stores:
            group.start_soon(store.open)
    for store in stores:
        await store.close()
    assert _postgres_schema_versions(postgres_database) == [(len(_postgres_schema.MIGRATIONS),)]


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_upgrades_a_database_at_an_older_schema_version(postgres_database: str) -> None:
    import psycopg

    with psycopg.connect(postgres_database) as connection:  # as procflow at schema version 1 left it
        for statement in _postgres_schema.MIGRATIONS[0].statements:
            connection.execute(statement)  # type: ignore[arg-type]
        connection.execute(_postgres_schema.CREATE_VERSION_TABLE)
        connection.execute("INSERT INTO procflow_schema (version) VALUES (1)")
        connection.execute(_SCHEMA_1_ROW)
    async with PostgresStore(postgres_database) as store:
        assert await store.get("o-1") == _SCHEMA_1_RECORD
        updated = await store.update(dataclasses.replace(_SCHEMA_1_RECORD, due_at=5.0, meta='{"inbox": []}'))
        claimed = await store.claim_due(5.0, limit=10, lease=60)
        assert [(r.id, r.version, r.due_at) for r in claimed] == [("o-1", updated.version + 1, 65.0)]
    assert _postgres_schema_versions(postgres_database) == [(len(_postgres_schema.MIGRATIONS),)]


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_refuses_a_database_written_by_a_newer_procflow(
    postgres_database: str,
) -> None:
    async with PostgresStore(postgres_database):
        pass
    import psycopg

    with psycopg.connect(postgres_database) as connection:
        connection.execute("UPDATE procflow_schema SET version = 99")
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade procflow"):
        await PostgresStore(postgres_database).open()


@contextlib.contextmanager
def _fresh_database(postgres_dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database of the test cluster (not a schema of one), dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"fresh_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_two_stores_opening_a_fresh_database_at_once_both_open_it(postgres_dsn: str) -> None:
    for _ in range(5):  # creating the schema unserialised failed in most rounds
        with _fresh_database(postgres_dsn) as dsn:
            stores = [PostgresStore(dsn, max_size=1) for _ in range(2)]
            try:
                async with anyio.create_task_group() as group:
                    for store in stores:
                        group.start_soon(store.open)
            finally:
                for store in stores:
                    await store.close()
            assert _postgres_schema_versions(dsn) == [(len(_postgres_schema.MIGRATIONS),)]


# -- SQLite alone -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sqlite_returns_unexpected_column_content_instead_of_failing(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    await sqlite_store.insert(record("bad"))
    await sqlite_store.insert(record("good"))
    with sqlite3.connect(tmp_path / "store.db") as connection:
        connection.execute(
            "UPDATE procflow_instance SET data = x'00ff', state = CAST(x'7bff' AS TEXT), version = 'two',"
            " created_at = 'yesterday', workflow = 42 WHERE id = 'bad'"
        )
    bad = await sqlite_store.get("bad")
    assert (bad.data, bad.state, bad.version, bad.created_at, bad.workflow) == (
        "\x00\ufffd",
        "{\ufffd",
        0,
        0.0,
        "42",
    )
    assert [r.id for r in await sqlite_store.list()] == ["bad", "good"]
    with pytest.raises(ConflictError, match=r"'bad'.*stored version two"):
        await sqlite_store.update(bad)


@pytest.mark.anyio
async def test_sqlite_shows_an_unreadable_history_row_as_one_unreadable_line(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    await sqlite_store.insert(record(), [line("started", at=5.0)])
    with sqlite3.connect(tmp_path / "store.db") as connection:
        connection.execute("UPDATE procflow_history SET entries = '[[0, \"started\"' WHERE version = 1")
    assert await sqlite_store.history("o-1") == [line("unreadable", at=5.0, detail='[[0, "started"')]


@pytest.mark.anyio
async def test_sqlite_a_write_whose_caller_is_cancelled_is_done_when_the_caller_returns(
    sqlite_store: SQLiteStore,
) -> None:
    stored = await sqlite_store.insert(record())
    with anyio.CancelScope() as scope:
        scope.cancel()
        await sqlite_store.update(stored)
    assert scope.cancelled_caught
    assert (await sqlite_store.get("o-1")).version == 2


@pytest.mark.anyio
async def test_sqlite_reads_history_rows_that_name_the_main_thread_by_its_id(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    await sqlite_store.insert(record(), [line("started", at=5.0)])
    with sqlite3.connect(tmp_path / "store.db") as connection:
        old_row = '[[0,"started"],[250,"step","reserve","_main_"]]'  # as procflow 0.1 wrote it
        connection.execute("UPDATE procflow_history SET entries = ? WHERE version = 1", (old_row,))
    assert await sqlite_store.history("o-1") == [
        line("started", at=5.0),
        line("step", "reserve", at=5.25, thread="_main_"),
    ]


@pytest.mark.anyio
async def test_sqlite_opens_files_in_wal_mode_with_full_synchronous(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "store.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert sqlite_store.synchronous == "FULL"


@pytest.mark.anyio
async def test_sqlite_write_blocked_by_another_process_beyond_the_timeout_raises_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with SQLiteStore(path, timeout=0.2) as store:
        stored = await store.insert(record())
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match=r"locked by another process.*longer timeout"):
                await store.update(stored)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await store.update(stored)).version == 2


@pytest.mark.anyio
async def test_sqlite_writes_that_queue_up_behind_a_lock_succeed_or_fail_each_on_their_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with SQLiteStore(path) as store:
        loaded = [await store.insert(record(f"o-{n}")) for n in range(8)]
        await store.update(loaded[3])
        bad = await store.insert(record("o-bad"))
        outcomes: dict[str, str] = {}

        async def save(current: InstanceRecord, data: str) -> None:
            try:
                await store.update(dataclasses.replace(current, data=data), [line("event")])
                outcomes[current.id] = "saved"
            except StoreError as exc:
                outcomes[current.id] = type(exc).__name__

        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # every write now queues up behind this process
        async with anyio.create_task_group() as group:
            for current in loaded:
                group.start_soon(save, current, json.dumps(current.id))
            group.start_soon(save, bad, cast(str, None))  # NOT NULL: SQLite refuses it
            await anyio.sleep(0.2)
            blocker.execute("ROLLBACK")
        blocker.close()

        expected = {f"o-{n}": "saved" for n in range(8)} | {"o-3": "ConflictError", "o-bad": "StoreError"}
        assert outcomes == expected
        for current in loaded:
            if current.id != "o-3":
                assert (await store.get(current.id)).data == json.dumps(current.id)
        assert (await store.get("o-bad")).version == 1


@pytest.mark.anyio
async def test_sqlite_a_value_sqlite_refuses_fails_only_its_own_write(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="'o-1'"):
        await sqlite_store.insert(record("o-1", data=cast(str, None)))
    await sqlite_store.insert(record("o-2"))
    assert [r.id for r in await sqlite_store.list()] == ["o-2"]


@pytest.mark.anyio
async def test_sqlite_in_a_missing_folder_raises_store_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await SQLiteStore(tmp_path / "missing" / "store.db").open()


@pytest.mark.anyio
async def test_sqlite_on_a_file_that_is_not_a_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are not the pages you are looking for " * 100)
    with pytest.raises(StoreError, match=r"notes\.db"):
        await SQLiteStore(path).open()


def _threads_of(path: Path) -> list[threading.Thread]:
    return [
        thread for thread in threading.enumerate() if thread.name.startswith(f"procflow-sqlite {str(path)!r}")
    ]


@pytest.mark.anyio
async def test_sqlite_tasks_opening_one_store_at_once_share_its_threads_and_close_them_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(store.open)
    assert len(_threads_of(path)) == 2  # one writer, one reader
    await store.close()
    for thread in _threads_of(path):
        thread.join(timeout=5)
    assert _threads_of(path) == []


@pytest.mark.anyio
async def test_sqlite_size_bytes_grows_with_the_instances(sqlite_store: SQLiteStore) -> None:
    empty = await sqlite_store.size_bytes()
    for n in range(200):
        await sqlite_store.insert(record(f"o-{n:03d}", state="x" * 300), [line("started")])
    assert empty > 0
    assert await sqlite_store.size_bytes() >= empty + 200 * 300


# -- PostgreSQL alone ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_size_bytes_counts_tables_and_indexes(
    postgres_database: str,
) -> None:
    async with PostgresStore(postgres_database) as store:
        empty = await store.size_bytes()
        for n in range(100):
            await store.insert(record(f"o-{n:03d}", state="x" * 300))
        assert await store.size_bytes() >= empty + 100 * 300


@contextlib.asynccontextmanager
async def _store_whose_pooled_connections_the_server_dropped(
    postgres_database: str, name: str
) -> AsyncIterator[PostgresStore]:
    """A PostgresStore holding "o-1", whose four pooled connections the server has just
    terminated, as a server restart would."""
    import psycopg

    name = f"{name}-{os.getpid()}"
    async with PostgresStore(f"{postgres_database}&application_name={name}", min_size=4, max_size=4) as store:
        await store.insert(record())
        await _wait_for_backends(postgres_database, name, 4)
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)
            )
        await _wait_for_backends(postgres_database, name, 0)
        yield store


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_calls_succeed_at_once_after_the_server_dropped_every_pooled_connection(
    postgres_database: str,
) -> None:
    async with _store_whose_pooled_connections_the_server_dropped(
        postgres_database, "procflow-dropped"
    ) as store:
        with anyio.fail_after(3):  # not after a pause per dead connection
            for _ in range(8):
                assert (await store.get("o-1")).id == "o-1"


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_logs_no_pool_warning_for_pooled_connections_the_server_dropped(
    postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _store_whose_pooled_connections_the_server_dropped(
        postgres_database, "procflow-quiet"
    ) as store:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            for _ in range(8):
                assert (await store.get("o-1")).id == "o-1"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_still_logs_the_pool_warning_for_a_connection_that_died_in_use(
    postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    name = f"procflow-in-use-{os.getpid()}"
    async with PostgresStore(f"{postgres_database}&application_name={name}", max_size=1) as store:
        await store.insert(record())
        async with await psycopg.AsyncConnection.connect(postgres_database) as locker:
            await locker.execute("LOCK TABLE procflow_instance IN ACCESS EXCLUSIVE MODE")  # get waits
            async with anyio.create_task_group() as group:

                async def get() -> None:
                    with pytest.raises(StoreError, match="terminating connection"):
                        await store.get("o-1")

                group.start_soon(get)
                await _terminate_the_backend_waiting_for_a_lock(postgres_database, name)
    assert any(r.name == "psycopg.pool" and r.levelno == logging.WARNING for r in caplog.records)


async def _terminate_the_backend_waiting_for_a_lock(dsn: str, application_name: str) -> None:
    """Wait until a connection of that application name waits for a lock, then end it on the server."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        with anyio.fail_after(10):
            while True:
                cursor = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (application_name,),
                )
                if await cursor.fetchall():
                    return
                await anyio.sleep(0.02)


async def _wait_for_backends(dsn: str, application_name: str, count: int) -> None:
    """Wait until the server has ``count`` connections of that application name."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        with anyio.fail_after(10):
            while True:
                cursor = await admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
                )
                row = await cursor.fetchone()
                if row is not None and row[0] == count:
                    return
                await anyio.sleep(0.02)


def test_postgres_under_trio_raises_store_error_saying_to_use_asyncio() -> None:
    async def open_under_trio() -> None:
        await PostgresStore("postgresql://nobody@127.0.0.1:1/none").open()

    with pytest.raises(StoreError, match="asyncio only"):
        anyio.run(open_under_trio, backend="trio")


def test_postgres_without_a_server_raises_store_error_naming_host_and_port() -> None:
    async def open_without_server() -> None:
        await PostgresStore("postgresql://nobody:secret@127.0.0.1:1/none", timeout=0.5).open()

    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/none") as raised:
        anyio.run(open_without_server, backend="asyncio")
    assert "secret" not in str(raised.value)


def test_postgres_store_without_psycopg_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError, match=r"pip install 'procflow\[postgres\]'"):
        PostgresStore("postgresql://localhost/db")


def test_procflow_stores_imports_without_psycopg() -> None:
    program = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None\n"
        "import procflow.stores, procflow\n"
        "print(sorted(name for name in sys.modules if name.startswith('psycopg')))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['psycopg', 'psycopg_pool']"


# -- open_store -----------------------------------------------------------------------------------


def test_open_store_makes_a_memory_store_from_memory_url() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


def test_open_store_reads_a_relative_sqlite_path_after_three_slashes() -> None:
    store = open_store("sqlite:///data/orders.db")
    assert isinstance(store, SQLiteStore) and store.path == "data/orders.db"


def test_open_store_reads_an_absolute_sqlite_path_after_four_slashes() -> None:
    store = open_store("sqlite:////var/lib/orders.db")
    assert isinstance(store, SQLiteStore) and store.path == "/var/lib/orders.db"


@pytest.mark.parametrize("url", ["postgresql://ann@db.example/orders", "postgres://ann@db.example/orders"])
def test_open_store_makes_a_postgres_store_with_the_url_as_dsn(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, PostgresStore) and store.dsn == url


@pytest.mark.parametrize("url", ["PostgreSQL://ann@db.example/orders", "POSTGRES://ann@db.example/orders"])
def test_open_store_gives_a_postgres_store_the_url_with_its_scheme_in_lower_case(url: str) -> None:
    store = open_store(url)
    assert (
        isinstance(store, PostgresStore)
        and store.dsn == url.split("://")[0].lower() + "://ann@db.example/orders"
    )


def test_open_store_percent_decodes_a_sqlite_path() -> None:
    store = open_store("sqlite:///data/my%20orders%3F%23.db")
    assert isinstance(store, SQLiteStore) and store.path == "data/my orders?#.db"


def test_open_store_keeps_percent_encoded_bytes_that_are_not_utf_8_in_a_sqlite_path() -> None:
    store = open_store("sqlite:///orders-%FF.db")
    assert isinstance(store, SQLiteStore) and os.fsencode(store.path) == b"orders-\xff.db"


def test_open_store_takes_timeout_and_synchronous_from_a_sqlite_query() -> None:
    store = open_store("sqlite:///orders.db?timeout=10.5&synchronous=normal")
    assert isinstance(store, SQLiteStore)
    assert (store.path, store.timeout, store.synchronous) == ("orders.db", 10.5, "NORMAL")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:///orders.db?mode=ro", r"takes timeout=<seconds> and synchronous=.*not parameter 'mode'"),
        ("sqlite:///orders.db?timeout=1&timeout=2", r"not parameter 'timeout' twice"),
        ("sqlite:///orders.db?timeout", r"not parameter 'timeout'"),
        ("sqlite:///orders.db?timeout=soon", r"timeout must be a number of seconds, not 'soon'"),
        ("sqlite:///orders.db?timeout=-1", r"timeout must be a number of seconds"),
        ("sqlite:///orders.db?synchronous=always", r"synchronous must be OFF, NORMAL, FULL or EXTRA"),
        ("sqlite:///orders#1.db", r"no fragment; write a # in a file name as %23"),
        ("sqlite:///?timeout=1", r"names no file"),
    ],
)
def test_open_store_refuses_a_sqlite_url_it_cannot_follow_saying_why(url: str, says: str) -> None:
    with pytest.raises(StoreError, match=says):
        open_store(url)


@pytest.mark.parametrize("url", ["orders.db", "sqlite://", "sqlite:///", "mysql://db/orders", "memory://x"])
def test_open_store_refuses_other_urls_listing_those_it_knows(url: str) -> None:
    with pytest.raises(StoreError, match=r"sqlite:///.*memory://.*postgresql://"):
        open_store(url)
