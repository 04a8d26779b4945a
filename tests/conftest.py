"""Shared fixtures: every async test runs under asyncio and trio; stores and a test clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from procflow import MemoryStore, PostgresStore, SQLiteStore, Store, TestClock

pytest_plugins = ["postgres_cluster"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> TestClock:
    """A clock that moves only when the test advances it."""
    return TestClock()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes store objects that all reach one database (one shared MemoryStore)."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "procflow.db")
    dsn = request.getfixturevalue("postgres_database")
    return lambda: PostgresStore(dsn, max_size=2)
