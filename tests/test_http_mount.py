"""The app mounted under a prefix in another Starlette app: every link it gives carries the prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from http_helpers import WORKFLOWS, assert_problem
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import procflow as pf
from procflow.http import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    engine = pf.Engine(pf.MemoryStore(), WORKFLOWS)
    outer = Starlette(
        routes=[
            Route("/", lambda request: PlainTextResponse("the host app")),
            Mount("/flow", app=create_app(engine)),
        ]
    )
    async with engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as c:
        yield c


async def test_the_host_app_keeps_its_own_routes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/")).text == "the host app"


async def test_start_gives_a_location_under_the_mount(client: httpx.AsyncClient) -> None:
    r = await client.post("/flow/workflows/Order/instances?id=o-1", json={"item": "lamp"})
    assert r.headers["location"] == "/flow/workflows/Order/instances/o-1"
    assert (await client.get(r.headers["location"])).json()["id"] == "o-1"


async def test_accepted_event_urls_are_under_the_mount(client: httpx.AsyncClient) -> None:
    body = (await client.post("/flow/workflows/Order/instances?id=o-1", json={"item": "lamp"})).json()
    approve = body["accepts"][0]["url"]
    assert approve == "/flow/workflows/Order/instances/o-1/events/approve"
    assert (await client.post(approve, json={"approver": "ann"})).status_code == 200


async def test_the_next_page_link_is_under_the_mount(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await client.post(f"/flow/workflows/Order/instances?id=o-{n}", json={"item": "lamp"})
    first = (await client.get("/flow/instances?limit=2")).json()
    assert first["next"].startswith("/flow/instances?")
    assert [i["id"] for i in (await client.get(first["next"])).json()["items"]] == ["o-2"]


async def test_an_unknown_path_under_the_mount_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/flow/nowhere"), 404, "NotFound")
