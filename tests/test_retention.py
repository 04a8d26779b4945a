"""Retention: ``Store.purge`` on every store, its index and migration, and ``Engine.purge``.

The stores stamp ``updated_at`` with the time of each write, so a test that
needs instances on both sides of a cutoff writes some, takes a moment
strictly after them (``a_moment``), then writes the others. The engine's
tests run it on a ``TestClock`` that starts at the real time, and move it on
to make what they wrote old.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from store_helpers import (  # noqa: F401
    Backend,
    backend_fixture,
    durable_fixture,
    opened,
    store_fixture,
)

import procflow as pf
from procflow.errors import InstanceNotFound
from procflow.stores import (
    HistoryEntry,
    InstanceRecord,
    PostgresStore,
    SQLiteStore,
    Store,
    _postgres_schema,
    _sqlite_schema,
    postgres,
    sqlite,
)

pytestmark = pytest.mark.anyio


def record(id: str, status: str = "FINISHED", *, correlation_id: str | None = None) -> InstanceRecord:
    return InstanceRecord(id, "order", status, "{}", '{"pc": 1}', correlation_id=correlation_id)


def line(kind: str) -> HistoryEntry:
    return HistoryEntry(at=time.time(), kind=kind)


async def a_moment() -> float:
    """A time strictly after every write so far and strictly before every write from now on
    (stores keep times to the millisecond)."""
    await anyio.sleep(0.003)
    moment = time.time()
    await anyio.sleep(0.003)
    return moment


async def ids_of(store: Store) -> list[str]:
    return [r.id for r in await store.list(limit=1000)]


# -- what purge deletes -------------------------------------------------------------------------


async def test_purge_deletes_finished_and_cancelled_instances_last_written_before_the_time(
    store: Store,
) -> None:
    await store.insert(record("done", "FINISHED"))
    await store.insert(record("dropped", "CANCELLED"))
    before = await a_moment()
    assert sorted(await store.purge(before, limit=100)) == ["done", "dropped"]
    assert await ids_of(store) == []


@pytest.mark.parametrize("status", ["WAITING", "RESUMING", "FAILED"])
async def test_purge_keeps_an_instance_that_is_not_over_however_old(store: Store, status: str) -> None:
    await store.insert(record("live", status))
    before = await a_moment()
    assert await store.purge(before, limit=100) == []
    assert (await store.get("live")).status == status


async def test_purge_keeps_a_finished_instance_last_written_at_or_after_the_time(store: Store) -> None:
    await store.insert(record("old"))
    before = await a_moment()
    newer = await store.insert(record("new"))
    assert await store.purge(before, limit=100) == ["old"]
    assert await store.purge(newer.updated_at, limit=100) == []  # not before its own time
    assert await ids_of(store) == ["new"]


async def test_an_instance_written_after_the_time_is_kept_though_it_was_old_and_over_before(
    store: Store,
) -> None:
    # The delete judges each row as it stands when it runs, not as it stood when the time was
    # taken: a worker, a send or an edit that wrote it meanwhile keeps it.
    finished = await store.insert(record("edited", "FINISHED"))
    waiting = await store.insert(record("finished-later", "WAITING"))
    before = await a_moment()
    await store.update(dataclasses.replace(finished, data='{"note": "edited"}'))
    await store.update(dataclasses.replace(waiting, status="FINISHED"))
    assert await store.purge(before, limit=100) == []
    assert await ids_of(store) == ["edited", "finished-later"]


async def test_purge_deletes_at_most_limit_instances_the_oldest_first(store: Store) -> None:
    for n in range(5):
        await store.insert(record(f"o-{n}"))
        await anyio.sleep(0.002)  # each one a millisecond or more after the last
    before = await a_moment()
    assert sorted(await store.purge(before, limit=2)) == ["o-0", "o-1"]
    assert sorted(await store.purge(before, limit=2)) == ["o-2", "o-3"]
    assert await store.purge(before, limit=2) == ["o-4"]
    assert await store.purge(before, limit=2) == []


async def test_purge_deletes_the_history_and_replies_of_what_it_deletes_and_nothing_elses(
    store: Store,
) -> None:
    for id, status in (("gone", "FINISHED"), ("kept", "WAITING")):
        stored = await store.insert(record(id, status), [line("started")])
        await store.update(stored, [line("event")], reply=("key-1", f"reply of {id}"))
    before = await a_moment()
    assert await store.purge(before, limit=100) == ["gone"]
    assert await store.history("gone") == []
    assert await store.reply("gone", "key-1") is None
    assert [h.kind for h in await store.history("kept")] == ["started", "event"]
    assert await store.reply("kept", "key-1") == "reply of kept"


async def test_a_purged_id_and_correlation_id_are_free_again_and_carry_nothing_over(store: Store) -> None:
    stored = await store.insert(record("o-1", correlation_id="order-42"), [line("started")])
    await store.update(stored, [line("finished")], reply=("key-1", "old reply"))
    await store.purge(await a_moment(), limit=100)
    again = await store.insert(record("o-1", "WAITING", correlation_id="order-42"), [line("restarted")])
    assert again.version == 1
    assert (await store.find("order-42")).id == "o-1"
    assert [h.kind for h in await store.history("o-1")] == ["restarted"]
    assert await store.reply("o-1", "key-1") is None


async def test_purge_leaves_no_history_or_reply_rows_behind(durable: Backend) -> None:
    async with opened(durable) as store:
        stored = await store.insert(record("gone"), [line("started")])
        await store.update(stored, [line("finished")], reply=("key-1", "reply"))
        await store.purge(await a_moment(), limit=100)
    assert durable.execute("SELECT count(*) FROM procflow_history") == [(0,)]
    assert durable.execute("SELECT count(*) FROM procflow_reply") == [(0,)]


@pytest.mark.parametrize(("before", "limit"), [(time.time(), 0), (time.time(), -1), (math.nan, 10)])
async def test_purge_refuses_a_limit_below_1_or_a_nan_time_and_deletes_nothing(
    store: Store, before: float, limit: int
) -> None:
    await store.insert(record("done"))
    await anyio.sleep(0.002)
    with pytest.raises(ValueError, match=r"limit|NaN"):
        await store.purge(before, limit=limit)
    assert await ids_of(store) == ["done"]


# -- the index, and the migration that adds it --------------------------------------------------


def _sqlite_plan(path: str, sql: str, params: tuple[Any, ...]) -> str:
    with sqlite3.connect(path) as connection:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    connection.close()
    return "\n".join(str(row[-1]) for row in plan)


async def test_sqlite_purge_reads_the_index_of_instances_that_are_over_not_the_live_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with SQLiteStore(path):
        pass
    with sqlite3.connect(path) as connection:
        connection.execute("ANALYZE")  # statistics that might tempt the planner elsewhere
    connection.close()
    plan = _sqlite_plan(str(path), sqlite._PURGE, (0, 10))
    assert "USING INDEX procflow_instance_over (updated_at<?)" in plan
    assert "SCAN" not in plan


@pytest.mark.postgres
async def test_postgres_purge_reads_the_index_of_instances_that_are_over_not_the_live_ones(
    postgres_database: str,
) -> None:
    import psycopg

    async with PostgresStore(postgres_database):
        pass
    with psycopg.connect(postgres_database) as connection:
        connection.execute(
            "INSERT INTO procflow_instance"
            " (id, workflow, status, version, created_at, updated_at, data, state)"
            " SELECT 'o-' || n, 'order', CASE WHEN n % 100 = 0 THEN 'FINISHED' ELSE 'WAITING' END,"
            " 1, n, n, '{}', '{}' FROM generate_series(1, 20000) AS n"
        )
        connection.execute("ANALYZE procflow_instance")
        plan = connection.execute(
            f"EXPLAIN {postgres._PURGE}",  # type: ignore[arg-type]
            {"before": 20_001, "limit": 1000},
        ).fetchall()
    text = "\n".join(row[0] for row in plan)
    assert "procflow_instance_over" in text
    assert "Seq Scan on procflow_instance" not in text


def _schema_2_rows() -> list[str]:
    insert = (
        "INSERT INTO procflow_instance (id, workflow, status, version, created_at, updated_at, data, state)"
        " VALUES ('{}', 'order', '{}', 2, 1000, 2000, '{{}}', '{{}}')"
    )
    return [
        insert.format("done", "FINISHED"),
        insert.format("live", "WAITING"),
        "INSERT INTO procflow_history (k, version, at, entries) SELECT k, 1, 1000, '[[0, \"started\"]]'"
        " FROM procflow_instance",
    ]


async def test_sqlite_upgrades_a_file_at_schema_2_so_that_its_old_instances_can_be_purged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as connection:  # as procflow at schema version 2 left it
        for migration in _sqlite_schema.MIGRATIONS[:2]:
            for statement in migration.statements:
                connection.execute(statement)
        connection.execute("PRAGMA user_version = 2")
        for statement in _schema_2_rows():
            connection.execute(statement)
    connection.close()
    async with SQLiteStore(path) as store:
        assert await store.purge(3.0, limit=100) == ["done"]
        assert await ids_of(store) == ["live"]
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (3,)
        indexes = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    connection.close()
    assert ("procflow_instance_over",) in indexes


@pytest.mark.postgres
async def test_postgres_upgrades_a_database_at_schema_2_so_that_its_old_instances_can_be_purged(
    postgres_database: str,
) -> None:
    import psycopg

    with psycopg.connect(postgres_database) as connection:  # as procflow at schema version 2 left it
        for migration in _postgres_schema.MIGRATIONS[:2]:
            for statement in migration.statements:
                connection.execute(statement)  # type: ignore[arg-type]
        connection.execute(_postgres_schema.CREATE_VERSION_TABLE)
        connection.execute("INSERT INTO procflow_schema (version) VALUES (2)")
        for statement in _schema_2_rows():
            connection.execute(statement)  # type: ignore[arg-type]
    async with PostgresStore(postgres_database) as store:
        assert await store.purge(3.0, limit=100) == ["done"]
        assert await ids_of(store) == ["live"]
    with psycopg.connect(postgres_database) as connection:
        assert connection.execute("SELECT version FROM procflow_schema").fetchall() == [(3,)]
        assert connection.execute("SELECT to_regclass('procflow_instance_over')::text").fetchone() == (
            "procflow_instance_over",
        )


@pytest.mark.postgres
async def test_postgres_upgrade_keeps_an_over_index_an_operator_built_beforehand(
    postgres_database: str,
) -> None:
    import psycopg

    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for migration in _postgres_schema.MIGRATIONS[:2]:
            for statement in migration.statements:
                connection.execute(statement)  # type: ignore[arg-type]
        connection.execute(_postgres_schema.CREATE_VERSION_TABLE)
        connection.execute("INSERT INTO procflow_schema (version) VALUES (2)")
        # As docs/operations.md advises for a large table: built without blocking writes.
        connection.execute(
            "CREATE INDEX CONCURRENTLY procflow_instance_over ON procflow_instance (updated_at)"
            " WHERE status IN ('FINISHED', 'CANCELLED')"
        )
    async with PostgresStore(postgres_database):
        pass
    with psycopg.connect(postgres_database) as connection:
        assert connection.execute("SELECT version FROM procflow_schema").fetchall() == [(3,)]


@pytest.mark.postgres
async def test_postgres_purge_skips_an_instance_another_transaction_is_writing_rather_than_wait(
    postgres_database: str,
) -> None:
    import psycopg

    async with PostgresStore(postgres_database) as store:
        await store.insert(record("busy"))
        await store.insert(record("idle"))
        before = await a_moment()
        with psycopg.connect(postgres_database) as writer:
            writer.execute("SELECT 1 FROM procflow_instance WHERE id = 'busy' FOR UPDATE")
            with anyio.fail_after(5):
                assert await store.purge(before, limit=100) == ["idle"]
            writer.rollback()
        assert await store.purge(before, limit=100) == ["busy"]


# -- Engine.purge ---------------------------------------------------------------------------------

DAY = timedelta(days=1)


@dataclass
class Ticket:
    """Parks on "close", which runs a step ("archive") that fails when ``broken``."""

    broken: bool = False

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("triage", pf.OnEvent("close", self.close, pf.Step("archive", self.archive))))

    def close(self) -> str:
        return "closed"

    def archive(self) -> None:
        if self.broken:
            raise RuntimeError("the archive is down")


@pytest.fixture
def clock() -> pf.TestClock:
    """The engine's clock, at the real time (which the stores stamp their writes with) until moved."""
    return pf.TestClock(time.time())


@pytest.fixture
async def engine(backend: Backend, clock: pf.TestClock) -> AsyncIterator[pf.Engine]:
    async with pf.Engine(backend.make(), workflows=[Ticket], clock=clock, observers=[]) as opened:
        yield opened


async def statuses(engine: pf.Engine) -> dict[str, str]:
    return {s.id: s.status async for s in engine.list()}


async def test_engine_purge_removes_what_finished_or_was_cancelled_longer_ago_than_older_than(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    for id in ("finished", "cancelled", "waiting"):
        await engine.start(Ticket(), id=id)
    await engine.send("finished", "close")
    await engine.cancel("cancelled", reason="duplicate")
    assert await engine.purge(older_than=30 * DAY) == 0  # nothing is that old yet
    clock.advance(31 * DAY)
    assert await engine.purge(older_than=30 * DAY) == 2
    assert await statuses(engine) == {"waiting": "WAITING"}
    with pytest.raises(InstanceNotFound):
        await engine.get("finished")


async def test_engine_purge_takes_older_than_in_seconds_as_well(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    await engine.start(Ticket(), id="t")
    await engine.send("t", "close")
    clock.advance(3600)
    assert await engine.purge(older_than=3601) == 0
    assert await engine.purge(older_than=3599.5) == 1


async def test_engine_purge_keeps_what_finished_more_recently_than_older_than(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    await engine.start(Ticket(), id="earlier")
    await engine.send("earlier", "close")
    await a_moment()
    await engine.start(Ticket(), id="later")
    await engine.send("later", "close")
    later = await engine.get("later")
    clock.set(later.updated_at + 30 * DAY.total_seconds())  # "later" finished 30 days ago, to the ms
    assert await engine.purge(older_than=30 * DAY) == 1
    assert await statuses(engine) == {"later": "FINISHED"}


async def test_engine_purge_keeps_waiting_and_failed_instances_however_old(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    await engine.start(Ticket(), id="waiting")
    await engine.start(Ticket(broken=True), id="failed")
    await engine.send("failed", "close")  # delivered; the step after it fails for good
    clock.advance(365 * DAY)
    assert await engine.purge(older_than=0) == 0
    assert await statuses(engine) == {"failed": "FAILED", "waiting": "WAITING"}


async def test_engine_purge_deletes_batch_after_batch_until_none_is_left(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    for n in range(5):
        await engine.start(Ticket(), id=f"t-{n}")
        await engine.send(f"t-{n}", "close")
    batches: list[list[str]] = []
    clock.advance(DAY)
    assert await engine.purge(older_than=DAY / 2, batch=2, on_batch=batches.append) == 5
    assert [len(ids) for ids in batches] == [2, 2, 1]
    assert sorted(id for ids in batches for id in ids) == [f"t-{n}" for n in range(5)]
    assert await statuses(engine) == {}


async def test_engine_purge_awaits_an_async_on_batch(engine: pf.Engine, clock: pf.TestClock) -> None:
    await engine.start(Ticket(), id="t")
    await engine.send("t", "close")
    told: list[str] = []

    async def on_batch(ids: list[str]) -> None:
        await anyio.sleep(0)
        told.extend(ids)

    clock.advance(DAY)
    await engine.purge(older_than=0, on_batch=on_batch)
    assert told == ["t"]


async def test_a_purged_instances_id_and_correlation_id_can_start_a_new_one(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    await engine.start(Ticket(), id="t-1", correlation_id="ticket-42")
    await engine.send("ticket-42", "close", idempotency_key="close-1")
    clock.advance(DAY)
    assert await engine.purge(older_than=0) == 1
    run = await engine.start(Ticket(), id="t-1", correlation_id="ticket-42")
    assert run.status == pf.WorkflowStatus.WAITING
    assert [h.kind for h in await engine.history("ticket-42")] == ["started", "setup"]
    assert await engine.send("ticket-42", "close", idempotency_key="close-1") == "closed"  # ran, not kept
    assert (await engine.get("t-1")).status == pf.WorkflowStatus.FINISHED


async def test_engine_purge_dry_run_counts_what_it_would_delete_and_deletes_nothing(
    engine: pf.Engine, clock: pf.TestClock
) -> None:
    for id in ("a", "b", "c"):
        await engine.start(Ticket(), id=id)
    await engine.send("a", "close")
    await engine.cancel("b", reason="spam")
    clock.advance(DAY)
    assert await engine.purge(older_than=DAY / 2, dry_run=True) == 2
    assert await engine.purge(older_than=2 * DAY, dry_run=True) == 0
    assert len(await statuses(engine)) == 3


@pytest.mark.parametrize(
    ("older_than", "error"),
    [
        (-1, ValueError),
        (-DAY, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("30d", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
async def test_engine_purge_refuses_an_age_that_is_no_finite_duration_and_deletes_nothing(
    engine: pf.Engine, clock: pf.TestClock, older_than: Any, error: type[Exception]
) -> None:
    await engine.start(Ticket(), id="t")
    await engine.send("t", "close")
    clock.advance(DAY)
    with pytest.raises(error, match="older_than"):
        await engine.purge(older_than=older_than)
    assert await statuses(engine) == {"t": "FINISHED"}


@pytest.mark.parametrize(("batch", "error"), [(0, ValueError), (-5, ValueError), (2.5, TypeError)])
async def test_engine_purge_refuses_a_batch_that_is_no_whole_number_above_0(
    engine: pf.Engine, batch: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="batch"):
        await engine.purge(older_than=DAY, batch=batch)


class WithoutPurge:
    """A store of the application's own, written before ``purge``: a SQLite store without it."""

    def __init__(self, path: Path) -> None:
        self._store = SQLiteStore(path)

    def __getattr__(self, name: str) -> Any:
        if name == "purge":
            raise AttributeError(name)
        return getattr(self._store, name)

    def __repr__(self) -> str:
        return "WithoutPurge()"


async def test_a_store_without_purge_gets_purge_not_supported_saying_what_to_add(
    tmp_path: Path, clock: pf.TestClock
) -> None:
    store: Any = WithoutPurge(tmp_path / "own.db")
    async with pf.Engine(store, workflows=[Ticket], clock=clock, observers=[]) as engine:
        await engine.start(Ticket(), id="t")
        await engine.send("t", "close")
        clock.advance(DAY)
        with pytest.raises(pf.PurgeNotSupported, match=r"WithoutPurge\(\) has no purge\(before, \*, limit\)"):
            await engine.purge(older_than=0)
        assert (await engine.get("t")).status == pf.WorkflowStatus.FINISHED
    assert issubclass(pf.PurgeNotSupported, pf.StoreError)


async def test_a_purge_running_beside_senders_deletes_only_instances_whose_run_has_ended(
    durable: Backend,
) -> None:
    ids = [f"t-{n:02}" for n in range(40)]
    purged: list[str] = []
    async with pf.Engine(durable.make(), workflows=[Ticket], observers=[]) as engine:  # the real clock
        for id in ids:
            await engine.start(Ticket(), id=id)
        senders_done = anyio.Event()

        async def purge_until_senders_are_done() -> None:
            while not senders_done.is_set():
                await engine.purge(older_than=0, batch=3, on_batch=purged.extend)
                await anyio.sleep(0.001)

        async def send(some: list[str]) -> None:
            for id in some:
                assert await engine.send(id, "close") == "closed"  # a purge mid-run would fail it

        async with anyio.create_task_group() as group:
            group.start_soon(purge_until_senders_are_done)
            async with anyio.create_task_group() as senders:
                for k in range(4):
                    senders.start_soon(send, ids[k::4])
            senders_done.set()
        left = await statuses(engine)
    assert purged, "the purge ran beside the senders and found nothing: the test shows nothing"
    assert len(purged) == len(set(purged))
    assert sorted(purged + list(left)) == ids
    assert set(left.values()) <= {"FINISHED"}
