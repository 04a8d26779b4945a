"""The HTTP edge in-process (httpx over ASGI): start, get, list, send, cancel, history, errors.

Every error is RFC 9457 problem details named after the procflow error.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import http_helpers
import httpx
import pytest
from http_helpers import (  # noqa: F401
    Env,
    assert_problem,
    clock_fixture,
    env_fixture,
    signing_fixture,
    start_order,
    store_fixture,
)

import procflow as pf
from procflow.http import create_app

pytestmark = pytest.mark.anyio


# -- start ---------------------------------------------------------------------------


async def test_start_answers_201_with_the_parked_instance_and_its_location(env: Env) -> None:
    response = await start_order(env, "o-1")
    body = response.json()
    assert response.headers["location"] == "/workflows/Order/instances/o-1"
    assert (body["id"], body["workflow"], body["status"]) == ("o-1", "Order", "WAITING")
    assert body["parked"] == [{"thread": "_main_", "at": "decision", "events": ["approve", "deny"]}]
    assert body["data"]["log"] == ["reserved"]


async def test_start_stores_the_correlation_id_from_the_query(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances?correlation_id=web-7", json={"item": "lamp"})
    assert r.json()["correlation_id"] == "web-7"
    assert (await env.engine.find("web-7")).id == r.json()["id"]


async def test_start_without_an_id_generates_one(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances", json={"item": "lamp"})
    assert r.status_code == 201
    assert (await env.engine.get(r.json()["id"])).data.item == "lamp"


async def test_start_ignores_state_fields_in_the_data(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances?id=o-9", json={"item": "lamp", "meta": {"x": 1}})
    assert r.status_code == 201
    assert "meta" not in r.json()["data"]


async def test_start_with_invalid_data_is_422_with_the_schema_errors(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances", json={"amount": "lots"})
    body = assert_problem(r, 422, "RequestValidationError")
    assert {tuple(e["loc"]) for e in body["errors"]} == {("item",), ("amount",)}
    assert [s async for s in env.engine.list()] == []


async def test_start_of_an_unregistered_workflow_is_404(env: Env) -> None:
    assert_problem(await env.client.post("/workflows/Nope/instances", json={}), 404, "UnknownWorkflowError")


async def test_start_with_a_taken_id_is_409(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances?id=o-1", json={"item": "desk"})
    assert_problem(r, 409, "DuplicateInstanceError")
    assert (await env.engine.get("o-1")).data.item == "lamp"


async def test_start_with_a_slash_in_the_id_is_400(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances?id=a/b", json={"item": "lamp"})
    assert_problem(r, 400, "BadRequest")


@pytest.mark.parametrize("id", [".", ".."])
async def test_start_with_an_id_a_url_would_resolve_away_is_400_and_stores_nothing(env: Env, id: str) -> None:
    r = await env.client.post(f"/workflows/Order/instances?id={id}", json={"item": "lamp"})
    assert_problem(r, 400, "BadRequest")
    assert [s async for s in env.engine.list()] == []


async def test_a_body_that_is_not_json_is_400(env: Env) -> None:
    r = await env.client.post(
        "/workflows/Order/instances", content=b"{item:", headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "BadRequest")


@pytest.mark.parametrize(
    "body",
    [
        b'{"item": "lamp", "amount": NaN}',
        b'{"item": "lamp", "amount": 1e400}',
        b'{"item": "\\ud800"}',
    ],
    ids=["nan", "infinity", "lone-surrogate"],
)
async def test_a_body_json_cannot_carry_back_is_400_and_starts_nothing(env: Env, body: bytes) -> None:
    r = await env.client.post(
        "/workflows/Order/instances", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "BadRequest")
    assert [s async for s in env.engine.list()] == []


async def test_a_body_nested_deeper_than_python_parses_is_400_and_starts_nothing(env: Env) -> None:
    # 100,000 levels: more than any supported Python parses (3.13 parses the 2,048
    # that fit the env's 4 KiB limit), so this app takes the default limit of 1 MiB.
    app = create_app(env.engine)
    body = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        r = await c.post(
            "/workflows/Order/instances", content=body, headers={"content-type": "application/json"}
        )
    assert_problem(r, 400, "BadRequest")
    assert [s async for s in env.engine.list()] == []


async def test_an_integer_of_more_digits_than_python_converts_is_400(env: Env) -> None:
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the smallest limit Python allows, to fit the body limit
    try:
        r = await env.client.post(
            "/workflows/Order/instances",
            content=b'{"item": "lamp", "amount": ' + b"9" * 700 + b"}",
            headers={"content-type": "application/json"},
        )
    finally:
        sys.set_int_max_str_digits(limit)
    assert_problem(r, 400, "BadRequest")


@pytest.mark.parametrize(
    ("media_type", "body"),
    [
        pytest.param("application/x-www-form-urlencoded", b"item=lamp", id="form"),
        pytest.param("application/x-ndjson", b'{"item": "lamp"}', id="merely-ending-in-json"),
    ],
)
async def test_a_body_that_is_not_declared_json_is_415_and_starts_nothing(
    env: Env, media_type: str, body: bytes
) -> None:
    headers = {"content-type": media_type}
    r = await env.client.post("/workflows/Order/instances", content=body, headers=headers)
    assert_problem(r, 415, "UnsupportedMediaType")
    assert [s async for s in env.engine.list()] == []


async def test_a_json_body_without_a_content_type_is_415_saying_so(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances", content=b'{"item": "lamp"}')
    assert_problem(r, 415, "UnsupportedMediaType")
    assert r.json()["detail"] == "the body must be application/json; it was sent without a Content-Type"


async def test_a_json_suffix_media_type_is_accepted(env: Env) -> None:
    r = await env.client.post(
        "/workflows/Order/instances",
        content=b'{"item": "lamp"}',
        headers={"content-type": "application/vnd.acme+json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text


async def test_a_body_above_the_limit_is_413_and_starts_nothing(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances", json={"item": "x" * 5000})
    assert_problem(r, 413, "PayloadTooLarge")
    assert [s async for s in env.engine.list()] == []


async def test_a_streamed_body_above_the_limit_is_413(env: Env) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    r = await env.client.post(
        "/workflows/Order/instances", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "PayloadTooLarge")


async def test_a_body_of_exactly_the_limit_is_accepted(env: Env) -> None:  # max_body_bytes=4096
    shell = b'{"item": ""}'
    body = b'{"item": "' + b"x" * (4096 - len(shell)) + b'"}'
    assert len(body) == 4096
    r = await env.client.post(
        "/workflows/Order/instances?id=o-1", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 201, r.text


async def test_a_body_of_only_whitespace_counts_as_no_body(env: Env) -> None:
    r = await env.client.post("/workflows/Contested/instances?id=c-1", content=b" \r\n\t ")
    assert r.status_code == 201, r.text


# -- get, list, history ---------------------------------------------------------------


async def test_get_lists_the_accepted_events_with_their_payload_and_reply_schemas(env: Env) -> None:
    await start_order(env, "o-1")
    body = (await env.client.get("/workflows/Order/instances/o-1")).json()
    approve, deny = body["accepts"]
    assert (approve["event"], approve["thread"], approve["wait"], approve["handler"]) == (
        "approve",
        "_main_",
        "decision",
        "event",
    )
    assert approve["pc"] > 0
    assert approve["url"] == "/workflows/Order/instances/o-1/events/approve"
    assert approve["payload_schema"]["required"] == ["approver"]
    assert set(approve["reply_schema"]["properties"]) == {"item", "approved_by"}
    assert deny["reply_schema"] == {"type": "string"}


async def test_get_by_correlation_id_returns_the_instance(env: Env) -> None:
    await env.client.post("/workflows/Order/instances?id=o-1&correlation_id=web-1", json={"item": "lamp"})
    assert (await env.client.get("/workflows/Order/instances/web-1")).json()["id"] == "o-1"


async def test_get_of_an_unknown_instance_is_404(env: Env) -> None:
    assert_problem(await env.client.get("/workflows/Order/instances/none"), 404, "InstanceNotFound")


async def test_get_through_another_workflows_path_is_404(env: Env) -> None:
    await start_order(env, "o-1")
    assert_problem(await env.client.get("/workflows/Expense/instances/o-1"), 404, "InstanceNotFound")


async def test_a_finished_instance_accepts_nothing(env: Env) -> None:
    await start_order(env, "o-1")
    await env.client.post("/workflows/Order/instances/o-1/events/deny", json={"reason": "no"})
    body = (await env.client.get("/workflows/Order/instances/o-1")).json()
    assert (body["status"], body["parked"], body["accepts"]) == ("FINISHED", [], [])


async def test_list_filters_by_workflow_and_status(env: Env) -> None:
    await start_order(env, "o-1")
    await start_order(env, "o-2")
    await env.client.post("/workflows/Order/instances/o-2/events/deny", json={"reason": "no"})
    await env.client.post("/workflows/Contested/instances?id=c-1")
    r = await env.client.get("/instances", params={"workflow": "Order", "status": "WAITING"})
    assert [i["id"] for i in r.json()["items"]] == ["o-1"]
    r = await env.client.get(
        "/workflows/Order/instances", params=[("status", "WAITING"), ("status", "FINISHED")]
    )
    assert [i["id"] for i in r.json()["items"]] == ["o-1", "o-2"]


async def test_list_takes_a_status_in_any_case(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.get("/instances", params={"status": "waiting"})
    assert [i["id"] for i in r.json()["items"]] == ["o-1"]


async def test_list_pages_by_id_with_a_next_link(env: Env) -> None:
    for n in range(5):
        await start_order(env, f"o-{n}")
    first = (await env.client.get("/instances", params={"limit": 2})).json()
    assert [i["id"] for i in first["items"]] == ["o-0", "o-1"]
    second = (await env.client.get(first["next"])).json()
    assert [i["id"] for i in second["items"]] == ["o-2", "o-3"]
    last = (await env.client.get(second["next"])).json()
    assert ([i["id"] for i in last["items"]], last["next"]) == (["o-4"], None)


async def test_the_next_link_of_a_workflow_whose_name_needs_encoding_leads_to_the_next_page(
    env: Env,
) -> None:
    engine = pf.Engine(env.engine.store, {"my order": http_helpers.Order})
    app = create_app(engine, open_engine=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        for n in range(3):
            r = await c.post(
                "/workflows/my%20order/instances", params={"id": f"o-{n}"}, json={"item": "lamp"}
            )
            assert r.status_code == 201, r.text
        first = (await c.get("/workflows/my%20order/instances", params={"limit": 2})).json()
        assert first["next"].startswith("/workflows/my%20order/instances?")
        second = (await c.get(first["next"])).json()
    assert [i["id"] for i in second["items"]] == ["o-2"]


async def test_a_start_under_an_old_name_of_a_class_links_to_the_instance_under_its_current_name(
    env: Env,
) -> None:
    engine = pf.Engine(env.engine.store, {"order_v1": http_helpers.Order, "Order": http_helpers.Order})
    app = create_app(engine, open_engine=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        r = await c.post("/workflows/order_v1/instances", params={"id": "o-1"}, json={"item": "lamp"})
        assert (r.status_code, r.json()["workflow"]) == (201, "Order")
        assert r.headers["location"] == "/workflows/Order/instances/o-1" == r.json()["url"]
        assert (await c.get(r.headers["location"])).status_code == 200


@dataclass
class Ratio:
    """Parks on "measure", whose reply holds a NaN and an infinity."""

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("measuring", pf.OnEvent("measure", lambda: {"ratio": math.nan, "top": math.inf})))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", [{}, {"Idempotency-Key": "m-1"}], ids=["once", "kept for a repeat"])
async def test_a_reply_holding_nan_or_an_infinity_is_sent_as_strict_json_with_null(
    env: Env, key: dict[str, str]
) -> None:
    engine = pf.Engine(env.engine.store, [Ratio])
    app = create_app(engine, open_engine=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        assert (await c.post("/workflows/Ratio/instances", params={"id": "r-1"})).status_code == 201
        r = await c.post("/workflows/Ratio/instances/r-1/events/measure", headers=key)
    assert r.status_code == 200, r.text
    assert json.loads(r.text, parse_constant=_refuse_constant) == {"ratio": None, "top": None}


async def test_list_items_link_to_their_instance(env: Env) -> None:
    await start_order(env, "o-1")
    [item] = (await env.client.get("/instances")).json()["items"]
    assert (await env.client.get(item["url"])).json()["id"] == "o-1"


@pytest.mark.parametrize(
    "query", [{"status": "ASLEEP"}, {"limit": "0"}, {"limit": "many"}, {"limit": "100000"}]
)
async def test_list_with_a_bad_query_parameter_is_400(env: Env, query: dict[str, str]) -> None:
    assert_problem(await env.client.get("/instances", params=query), 400, "BadRequest")


async def test_history_lists_what_happened_oldest_first(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.get("/workflows/Order/instances/o-1/history")
    kinds = [h["kind"] for h in r.json()]
    assert kinds[0] == "started"
    assert "step" in kinds


async def test_workflows_lists_each_registered_workflow_with_its_events(env: Env) -> None:
    body = (await env.client.get("/workflows")).json()
    assert {w["name"]: [e["event"] for e in w["events"]] for w in body} == {
        "Order": ["approve", "deny"],
        "Contested": ["touch"],
        "Expense": ["approve", "deny"],
    }


# -- send ------------------------------------------------------------------------------


async def test_send_answers_the_handlers_reply_and_runs_on(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances/o-1/events/approve", json={"approver": "ann"})
    assert (r.status_code, r.json()) == (200, {"item": "lamp", "approved_by": "ann"})
    instance = await env.engine.get("o-1")
    assert (instance.status, instance.data.log) == (pf.WorkflowStatus.FINISHED, ["reserved", "shipped"])


async def test_send_by_correlation_id_delivers(env: Env) -> None:
    await env.client.post("/workflows/Order/instances?id=o-1&correlation_id=web-1", json={"item": "lamp"})
    r = await env.client.post("/workflows/Order/instances/web-1/events/deny", json={"reason": "late"})
    assert r.json() == "denied"


async def test_send_with_an_invalid_payload_is_422_with_the_schema_errors(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances/o-1/events/approve", json={"approver": ""})
    body = assert_problem(r, 422, "PayloadError")
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["approver"], "string_too_short")]
    assert (await env.engine.get("o-1")).status == pf.WorkflowStatus.WAITING


async def test_send_without_a_payload_to_an_event_that_needs_one_is_422(env: Env) -> None:
    await start_order(env, "o-1")
    assert_problem(
        await env.client.post("/workflows/Order/instances/o-1/events/approve"), 422, "PayloadError"
    )


async def test_send_of_an_event_the_workflow_lacks_is_404(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances/o-1/events/refund", json={})
    assert_problem(r, 404, "UnknownEvent")


async def test_send_of_an_event_the_workflow_lacks_is_404_even_once_the_instance_ended(env: Env) -> None:
    await start_order(env, "o-1")
    await env.engine.cancel("o-1", reason="test")
    r = await env.client.post("/workflows/Order/instances/o-1/events/refund", json={})
    assert_problem(r, 404, "UnknownEvent")


async def test_send_to_an_unknown_instance_is_404(env: Env) -> None:
    r = await env.client.post("/workflows/Order/instances/o-404/events/approve", json={"approver": "a"})
    assert_problem(r, 404, "InstanceNotFound")


async def test_send_of_an_event_not_awaited_now_is_409(env: Env) -> None:
    await start_order(env, "o-1")
    await env.client.post("/workflows/Order/instances/o-1/events/approve", json={"approver": "ann"})
    r = await env.client.post("/workflows/Order/instances/o-1/events/approve", json={"approver": "bob"})
    assert_problem(r, 409, "WorkflowFinishedError")


async def test_a_send_repeated_with_its_idempotency_key_gets_the_first_reply_and_runs_nothing(
    env: Env,
) -> None:
    await start_order(env, "o-1")
    url, key = "/workflows/Order/instances/o-1/events/approve", {"Idempotency-Key": "webhook-81"}
    first = await env.client.post(url, json={"approver": "ann"}, headers=key)
    version = (await env.engine.get("o-1")).version
    again = await env.client.post(url, json={"approver": "ann"}, headers=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert (await env.engine.get("o-1")).version == version


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_a_send_repeated_with_a_number_of_its_body_written_another_way_is_the_same_request(
    env: Env,
) -> None:
    await start_order(env, "o-1")
    url = "/workflows/Order/instances/o-1/events/approve"
    headers = {"Idempotency-Key": "webhook-81", "Content-Type": "application/json"}
    first = await env.client.post(url, content=b'{"approver": "ann", "amount": 100}', headers=headers)
    version = (await env.engine.get("o-1")).version
    again = await env.client.post(url, content=b'{"approver": "ann", "amount": 1.0e2}', headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert (await env.engine.get("o-1")).version == version


async def test_an_idempotency_key_reused_with_another_body_is_422(env: Env) -> None:
    await start_order(env, "o-1")
    url, key = "/workflows/Order/instances/o-1/events/approve", {"Idempotency-Key": "webhook-81"}
    await env.client.post(url, json={"approver": "ann"}, headers=key)
    r = await env.client.post(url, json={"approver": "bob"}, headers=key)
    assert_problem(r, 422, "IdempotencyKeyReused")


async def test_an_idempotency_key_of_255_characters_is_accepted_and_one_of_256_is_400(env: Env) -> None:
    await start_order(env, "o-1")
    await start_order(env, "o-2")
    ok = await env.client.post(
        "/workflows/Order/instances/o-1/events/approve",
        json={"approver": "ann"},
        headers={"Idempotency-Key": "k" * 255},
    )
    assert ok.status_code == 200, ok.text
    r = await env.client.post(
        "/workflows/Order/instances/o-2/events/approve",
        json={"approver": "ann"},
        headers={"Idempotency-Key": "k" * 256},
    )
    assert_problem(r, 400, "BadRequest")


async def test_an_empty_idempotency_key_is_400(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post(
        "/workflows/Order/instances/o-1/events/approve",
        json={"approver": "ann"},
        headers={"Idempotency-Key": ""},
    )
    assert_problem(r, 400, "BadRequest")


async def test_send_with_the_pc_of_another_parking_is_409_stale(env: Env) -> None:
    await start_order(env, "o-1")
    pc = (await env.client.get("/workflows/Order/instances/o-1")).json()["accepts"][0]["pc"]
    r = await env.client.post(
        f"/workflows/Order/instances/o-1/events/approve?pc={pc + 1}", json={"approver": "ann"}
    )
    assert_problem(r, 409, "StaleCallback")
    ok = await env.client.post(
        f"/workflows/Order/instances/o-1/events/approve?pc={pc}", json={"approver": "a"}
    )
    assert ok.status_code == 200


async def test_send_to_another_thread_is_409(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post(
        "/workflows/Order/instances/o-1/events/approve?thread=t-9", json={"approver": "ann"}
    )
    assert_problem(r, 409, "CallbackNotFound")


async def test_a_handler_that_raises_is_500_and_changes_nothing(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances/o-1/events/approve", json={"approver": "mallory"})
    body = assert_problem(r, 500, "HandlerError")
    assert "mallory may not approve" in body["detail"]
    assert (await env.engine.get("o-1")).accepts == ["approve", "deny"]


async def test_a_payload_its_handler_refuses_is_422_with_the_handlers_reason_and_changes_nothing(
    env: Env,
) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances/o-1/events/deny", json={"reason": " "})
    body = assert_problem(r, 422, "PayloadError")
    assert body["detail"].endswith("a denial needs a reason the customer can read")
    inst = await env.engine.get("o-1")
    assert (inst.accepts, inst.data.log) == (["approve", "deny"], ["reserved"])


async def test_an_instance_changed_by_another_writer_on_every_attempt_is_409_conflict(env: Env) -> None:
    await env.client.post("/workflows/Contested/instances?id=c-1")
    r = await env.client.post("/workflows/Contested/instances/c-1/events/touch")
    assert_problem(r, 409, "ConflictError")


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_of_two_racing_deliveries_one_wins_and_the_other_is_409(env: Env) -> None:
    await start_order(env, "o-1")
    statuses: list[int] = []

    async def approve(who: str) -> None:
        r = await env.client.post("/workflows/Order/instances/o-1/events/approve", json={"approver": who})
        statuses.append(r.status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(approve, "ann")
        tg.start_soon(approve, "bob")
    assert sorted(statuses) == [200, 409]
    assert (await env.engine.get("o-1")).data.approved_by in ("ann", "bob")


# -- cancel ----------------------------------------------------------------------------


async def test_cancel_with_compensation_undoes_completed_steps(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post(
        "/workflows/Order/instances/o-1/cancel", json={"reason": "customer left", "compensate": True}
    )
    body = r.json()
    assert (r.status_code, body["status"], body["reason"]) == (200, "CANCELLED", "customer left")
    assert body["data"]["log"] == ["reserved", "released"]


async def test_cancel_without_a_reason_is_422(env: Env) -> None:
    await start_order(env, "o-1")
    body = assert_problem(
        await env.client.post("/workflows/Order/instances/o-1/cancel", json={}), 422, "RequestValidationError"
    )
    assert body["errors"][0]["loc"] == ["reason"]


async def test_cancel_with_a_blank_reason_is_422(env: Env) -> None:
    await start_order(env, "o-1")
    r = await env.client.post("/workflows/Order/instances/o-1/cancel", json={"reason": "  "})
    assert assert_problem(r, 422, "RequestValidationError")["errors"][0]["loc"] == ["reason"]
    assert (await env.client.get("/workflows/Order/instances/o-1")).json()["status"] == "WAITING"


async def test_cancel_of_a_finished_instance_is_409(env: Env) -> None:
    await start_order(env, "o-1")
    await env.client.post("/workflows/Order/instances/o-1/events/deny", json={"reason": "no"})
    r = await env.client.post("/workflows/Order/instances/o-1/cancel", json={"reason": "late"})
    assert_problem(r, 409, "WorkflowFinishedError")


# -- routing ---------------------------------------------------------------------------


async def test_an_unknown_path_is_a_404_problem(env: Env) -> None:
    assert_problem(await env.client.get("/nowhere"), 404, "NotFound")


async def test_a_wrong_method_is_a_405_problem_with_allow(env: Env) -> None:
    r = await env.client.delete("/instances")
    assert_problem(r, 405, "MethodNotAllowed")
    assert "GET" in r.headers["allow"]


@pytest.mark.parametrize(
    "path", ["/workflows/Order/instances", "/callbacks/v1.x.y.z"], ids=["instances", "callback"]
)
async def test_a_405_allows_every_method_its_path_takes(env: Env, path: str) -> None:
    r = await env.client.put(path)
    assert_problem(r, 405, "MethodNotAllowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


@dataclass
class Ticket:
    """A workflow with an event whose name holds a '/'."""

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("w", pf.OnEvent("status/closed", lambda: None)))


def test_create_app_refuses_an_event_name_no_url_path_can_hold() -> None:
    engine = pf.Engine(pf.MemoryStore(), [Ticket])
    with pytest.raises(
        pf.DefinitionError, match=r"event 'status/closed' of workflow 'Ticket'.*rename the event"
    ):
        create_app(engine)


@pytest.mark.parametrize("name", ["orders/eu", ".."])
def test_create_app_refuses_a_workflow_name_no_url_path_can_hold(name: str) -> None:
    engine = pf.Engine(pf.MemoryStore(), {name: Ticket})
    with pytest.raises(pf.DefinitionError, match=f"workflow '{re.escape(name)}'.*under another name"):
        create_app(engine)
