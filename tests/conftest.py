"""Shared fixtures: every async test runs under asyncio and trio."""

from __future__ import annotations

import pytest

pytest_plugins = ["postgres_cluster"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
