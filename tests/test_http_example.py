"""examples/starlette_approval.py: an expense approved or denied through mailed signed links."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from http_helpers import SECRET

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "starlette_approval.py"
PUBLIC = "http://approvals.test"

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("starlette_approval", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def client(example: ModuleType) -> AsyncIterator[httpx.AsyncClient]:
    example.OUTBOX.clear()
    app = example.create_example_app("memory://", secret=SECRET, public_url=PUBLIC)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as c,
    ):
        yield c


async def submit(client: httpx.AsyncClient) -> str:
    r = await client.post("/expenses", json={"employee": "ann", "amount": 120, "approver": "bob@example.com"})
    assert r.status_code == 201, r.text
    expense: str = r.json()["id"]
    return expense


async def link(client: httpx.AsyncClient, expense: str, event: str) -> str:
    mails: list[dict[str, Any]] = (await client.get("/outbox")).json()
    [url] = [m["url"] for m in mails if (m["expense"], m["event"]) == (expense, event)]
    assert url.startswith(f"{PUBLIC}/hooks/callbacks/")
    return url


async def expense_data(client: httpx.AsyncClient, expense: str) -> dict[str, Any]:
    data: dict[str, Any] = (await client.get(f"/admin/procflow/workflows/Expense/instances/{expense}")).json()
    return data


async def test_submitting_mails_the_approver_an_approve_and_a_deny_link(client: httpx.AsyncClient) -> None:
    expense = await submit(client)
    mails = (await client.get("/outbox")).json()
    assert [(m["to"], m["event"]) for m in mails] == [
        ("bob@example.com", "approve"),
        ("bob@example.com", "deny"),
    ]
    assert (await expense_data(client, expense))["status"] == "WAITING"


async def test_the_approve_link_approves_and_pays(client: httpx.AsyncClient) -> None:
    expense = await submit(client)
    r = await client.post(await link(client, expense, "approve"), json={"comment": "fine"})
    assert (r.status_code, r.json()) == (200, "approved ann's 120")
    body = await expense_data(client, expense)
    assert (body["status"], body["data"]["status"], body["data"]["comment"]) == ("FINISHED", "paid", "fine")


async def test_the_deny_link_denies(client: httpx.AsyncClient) -> None:
    expense = await submit(client)
    assert (await client.post(await link(client, expense, "deny"), json={})).json() == "denied ann's 120"
    assert (await expense_data(client, expense))["data"]["status"] == "denied"


async def test_after_a_decision_both_links_are_gone(client: httpx.AsyncClient) -> None:
    expense = await submit(client)
    approve, deny = await link(client, expense, "approve"), await link(client, expense, "deny")
    await client.post(approve, json={})
    assert [(await client.post(url, json={})).status_code for url in (approve, deny)] == [410, 410]


async def test_the_public_mount_serves_no_management_endpoints(client: httpx.AsyncClient) -> None:
    expense = await submit(client)
    assert (await client.get(f"/hooks/workflows/Expense/instances/{expense}")).status_code == 404


def test_the_example_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROCFLOW_SECRET"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "$PROCFLOW_SECRET" in result.stderr
