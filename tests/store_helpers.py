"""Stores for tests, on every kind of database: memory, SQLite on a temporary file, and
PostgreSQL on the throwaway cluster of ``postgres_cluster`` (one fresh schema per test).

A test module imports the fixtures it uses (``from store_helpers import
store_fixture``); each is registered under the name without ``_fixture``:

- ``backend``: every kind of store (a ``Backend``); ``durable``: the database ones;
- ``store``: an open store of ``backend``;
- ``stores``: a factory of stores of every kind that share one database, so that
  two engines made from it act as two processes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procflow.stores import MemoryStore, PostgresStore, SQLiteStore, Store

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@dataclass
class Backend:
    """One kind of store, and how to make stores that share its data."""

    name: str
    url: str
    make: Callable[[], Store]

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` on a database store's database itself, as an older procflow or another
        tool might; return the rows it gives."""
        if self.name == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as connection:
                rows = connection.execute(sql).fetchall()
            connection.close()
            return rows
        import psycopg

        with psycopg.connect(self.url) as pg:
            cursor = pg.execute(sql)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


def backend_of(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Backend:
    """The ``Backend`` of store kind ``name``: "memory", "sqlite" or "postgres"."""
    if name == "memory":
        shared = MemoryStore()
        return Backend(name, "memory://", lambda: shared)
    if name == "sqlite":
        path = tmp_path / "store.db"
        return Backend(name, f"sqlite:///{path}", lambda: SQLiteStore(path))
    dsn = request.getfixturevalue("postgres_database")
    return Backend(name, dsn, lambda: PostgresStore(dsn, max_size=4))


@pytest.fixture(name="backend", params=["memory", "sqlite", POSTGRES])
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every store."""
    return backend_of(request, tmp_path, request.param)


@pytest.fixture(name="durable", params=["sqlite", POSTGRES])
def durable_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The stores that keep their data in a database."""
    return backend_of(request, tmp_path, request.param)


@contextlib.asynccontextmanager
async def opened(backend: Backend) -> AsyncIterator[Store]:
    """``async with opened(backend) as store``: a store of ``backend``, open for the block."""
    store = backend.make()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(name="store")
async def store_fixture(backend: Backend) -> AsyncIterator[Store]:
    """An open store of ``backend``, closed after the test."""
    async with opened(backend) as store:
        yield store


@pytest.fixture(name="stores", params=["memory", "sqlite", POSTGRES])
def stores_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory of stores sharing one database (one ``MemoryStore`` object for memory)."""
    return backend_of(request, tmp_path, request.param).make
