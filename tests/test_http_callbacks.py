"""Signed callback URLs over HTTP: one event, one parking, one instance; refused without touching state."""

from __future__ import annotations

import anyio
import httpx
import pytest
from http_helpers import (  # noqa: F401
    BASE_URL,
    OLD_SECRET,
    Env,
    assert_problem,
    clock_fixture,
    current_signer,
    env_fixture,
    signing_fixture,
    start_expense,
    store_fixture,
)

import procflow as pf
from procflow.http import CallbackSigner, create_app

pytestmark = pytest.mark.anyio


async def snapshot(env: Env, key: str) -> tuple[int, str]:
    """The stored version and state of an instance: unchanged means untouched."""
    instance = await env.engine.get(key)
    return instance.version, instance.state.model_dump_json()


def swap(token: str, part: int, value: str) -> str:
    parts = token.split(".")
    parts[part] = value
    return ".".join(parts)


async def test_setup_mails_one_signed_link_per_event(env: Env) -> None:
    await start_expense(env, "e-1")
    assert [(i, e) for i, e, _ in env.mails] == [("e-1", "approve"), ("e-1", "deny")]
    assert all(url.startswith(f"{BASE_URL}/callbacks/v1.") for _, _, url in env.mails)


async def test_a_signed_link_delivers_its_event_and_answers_the_reply(env: Env) -> None:
    await start_expense(env, "e-1")
    r = await env.client.post(env.link("e-1", "approve"), json={"note": "ok"})
    assert (r.status_code, r.json()) == (200, "approved ok")
    instance = await env.engine.get("e-1")
    assert (instance.status, instance.data.decision) == (pf.WorkflowStatus.FINISHED, "approved ok")


async def test_a_link_whose_event_takes_no_payload_needs_no_body(env: Env) -> None:
    await start_expense(env, "e-1")
    r = await env.client.post(env.link("e-1", "deny"))
    assert (r.status_code, r.json()) == (200, "denied")


async def test_a_used_link_is_410_gone(env: Env) -> None:
    await start_expense(env, "e-1")
    link = env.link("e-1", "approve")
    await env.client.post(link, json={})
    assert_problem(await env.client.post(link, json={}), 410, "CallbackGone")


async def test_a_used_link_repeated_with_its_idempotency_key_gets_the_first_reply(env: Env) -> None:
    await start_expense(env, "e-1")
    link, key = env.link("e-1", "approve"), {"Idempotency-Key": "mail-click-1"}
    first = await env.client.post(link, json={"note": "ok"}, headers=key)
    again = await env.client.post(link, json={"note": "ok"}, headers=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() == "approved ok"


async def test_a_server_error_behind_a_link_is_logged_not_told_to_the_third_party(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    await start_expense(env, "e-1")
    r = await env.client.post(env.link("e-1", "approve"), json={"note": "crash"})
    body = assert_problem(r, 500, "HandlerError")
    assert body["detail"] == "the server failed; its log has the details"
    assert "token=abc123" not in r.text
    assert "token=abc123" in caplog.text


async def test_a_payload_refused_by_the_handler_behind_a_link_is_422_with_its_reason(env: Env) -> None:
    await start_expense(env, "e-1")
    link = env.link("e-1", "approve")
    body = assert_problem(await env.client.post(link, json={"note": "maybe"}), 422, "PayloadError")
    assert body["detail"].endswith("an approval must be firm, not 'maybe'")
    assert (await env.client.post(link, json={"note": "ok"})).json() == "approved ok"  # still usable


async def test_the_sibling_link_is_gone_once_the_other_event_was_delivered(env: Env) -> None:
    await start_expense(env, "e-1")
    await env.client.post(env.link("e-1", "deny"))
    assert_problem(await env.client.post(env.link("e-1", "approve"), json={}), 410, "CallbackGone")


async def test_a_used_link_cannot_deliver_to_the_next_parking_of_its_event(env: Env) -> None:
    await start_expense(env, "e-1", rounds=2)
    first = env.link("e-1", "approve")
    assert (await env.client.post(first, json={})).status_code == 200
    assert env.link("e-1", "approve") != first  # parked again, with a new link
    before = await snapshot(env, "e-1")
    assert_problem(await env.client.post(first, json={}), 410, "CallbackGone")
    assert await snapshot(env, "e-1") == before


async def test_a_tampered_signature_is_403_and_touches_nothing(env: Env) -> None:
    await start_expense(env, "e-1")
    link = env.link("e-1", "approve")
    before = await snapshot(env, "e-1")
    mac = link.rsplit(".", 1)[1]
    forged = link[: -len(mac)] + ("A" if mac[0] != "A" else "B") + mac[1:]
    assert_problem(await env.client.post(forged, json={}), 403, "CallbackTokenError")
    assert await snapshot(env, "e-1") == before


async def test_a_link_cannot_be_replayed_against_another_instance(env: Env) -> None:
    await start_expense(env, "e-1")
    await start_expense(env, "e-2")
    mine = env.link("e-1", "approve")
    theirs = env.link("e-2", "approve")
    before = await snapshot(env, "e-2")
    grafted = swap(mine, 2, theirs.split(".")[2])  # e-2's claims under e-1's signature
    assert_problem(await env.client.post(grafted, json={}), 403, "CallbackTokenError")
    assert await snapshot(env, "e-2") == before


async def test_a_link_cannot_be_replayed_against_another_event(env: Env) -> None:
    await start_expense(env, "e-1")
    approve = env.link("e-1", "approve")
    deny = env.link("e-1", "deny")
    before = await snapshot(env, "e-1")
    grafted = swap(deny, 2, approve.split(".")[2])  # approve's claims under deny's signature
    assert_problem(await env.client.post(grafted, json={}), 403, "CallbackTokenError")
    assert await snapshot(env, "e-1") == before


async def test_an_expired_link_is_403_and_touches_nothing(env: Env) -> None:
    await start_expense(env, "e-1")
    env.clock.now += 3601
    before = await snapshot(env, "e-1")
    assert_problem(await env.client.post(env.link("e-1", "approve"), json={}), 403, "CallbackTokenExpired")
    assert await snapshot(env, "e-1") == before


async def test_a_link_still_works_just_before_it_expires(env: Env) -> None:
    await start_expense(env, "e-1")
    env.clock.now += 3599
    assert (await env.client.post(env.link("e-1", "approve"), json={})).status_code == 200


@pytest.mark.parametrize("token", ["garbage", "v1.x.y.z", "v2.a.b.c", "v1..."])
async def test_a_malformed_token_is_403(env: Env, token: str) -> None:
    assert_problem(await env.client.post(f"/callbacks/{token}", json={}), 403, "CallbackTokenError")


async def test_a_link_signed_with_a_retired_secret_is_403(env: Env) -> None:
    await start_expense(env, "e-1")
    rotated = create_app(env.engine, signer=CallbackSigner(["a-brand-new-secret-0123456789abcdef"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rotated), base_url=BASE_URL) as c:
        assert_problem(await c.post(env.link("e-1", "approve"), json={}), 403, "CallbackTokenError")


async def test_a_link_signed_with_the_previous_secret_still_works_after_rotation(env: Env) -> None:
    minted_before_rotation = current_signer.set(CallbackSigner([OLD_SECRET], base_url=BASE_URL))
    try:
        await start_expense(env, "e-1")
    finally:
        current_signer.reset(minted_before_rotation)
    app = create_app(env.engine, signer=CallbackSigner(["a-brand-new-secret-0123456789abcdef", OLD_SECRET]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        assert (await c.post(env.link("e-1", "approve"), json={})).status_code == 200


async def test_an_invalid_payload_through_a_link_is_422_and_the_link_stays_usable(env: Env) -> None:
    await start_expense(env, "e-1")
    link = env.link("e-1", "approve")
    body = assert_problem(await env.client.post(link, json={"note": 7}), 422, "PayloadError")
    assert body["errors"][0]["loc"] == ["note"]
    assert (await env.client.post(link, json={"note": "fine"})).status_code == 200


async def test_a_non_json_body_through_a_link_is_415(env: Env) -> None:
    await start_expense(env, "e-1")
    r = await env.client.post(
        env.link("e-1", "approve"), content=b"note=x", headers={"content-type": "text/plain"}
    )
    assert_problem(r, 415, "UnsupportedMediaType")


async def test_a_body_above_the_limit_through_a_link_is_413(env: Env) -> None:
    await start_expense(env, "e-1")
    r = await env.client.post(env.link("e-1", "approve"), json={"note": "x" * 5000})
    assert_problem(r, 413, "PayloadTooLarge")


async def test_a_bad_token_is_refused_before_the_body_is_read(env: Env) -> None:
    r = await env.client.post("/callbacks/garbage", json={"note": "x" * 5000})
    assert_problem(r, 403, "CallbackTokenError")


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_of_two_racing_uses_of_a_link_one_delivers_and_the_other_is_410(env: Env) -> None:
    await start_expense(env, "e-1")
    link = env.link("e-1", "approve")
    statuses: list[int] = []

    async def use() -> None:
        statuses.append((await env.client.post(link, json={})).status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        tg.start_soon(use)
    assert sorted(statuses) == [200, 410]


async def test_get_describes_the_callback_and_delivers_nothing(env: Env) -> None:
    await start_expense(env, "e-1")
    before = await snapshot(env, "e-1")
    r = await env.client.get(env.link("e-1", "approve"))
    body = r.json()
    assert (body["instance_id"], body["workflow"], body["event"]) == ("e-1", "Expense", "approve")
    assert body["expires_at"] == env.clock.now + 3600
    assert body["payload_schema"]["properties"] == {
        "note": {"default": "", "title": "Note", "type": "string"}
    }
    assert await snapshot(env, "e-1") == before


async def test_get_of_a_used_link_is_410(env: Env) -> None:
    await start_expense(env, "e-1")
    link = env.link("e-1", "approve")
    await env.client.post(link, json={})
    assert_problem(await env.client.get(link), 410, "CallbackGone")


async def test_an_app_without_a_signer_serves_no_callbacks(env: Env) -> None:
    app = create_app(env.engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        assert_problem(await c.post("/callbacks/v1.a.b.c", json={}), 404, "NotFound")


async def test_a_callbacks_only_app_serves_no_management_endpoints(env: Env) -> None:
    await start_expense(env, "e-1")
    app = create_app(env.engine, signer=env.signer, management=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        assert_problem(await c.get("/workflows/Expense/instances/e-1"), 404, "NotFound")
        assert (await c.post(env.link("e-1", "approve"), json={})).status_code == 200


async def test_a_link_to_an_instance_that_was_cancelled_is_410(env: Env) -> None:
    await start_expense(env, "e-1")
    await env.engine.cancel("e-1", reason="withdrawn")
    assert_problem(await env.client.post(env.link("e-1", "approve"), json={}), 410, "CallbackGone")


async def test_a_valid_link_to_an_instance_not_stored_is_404_not_gone(env: Env) -> None:
    req = pf.CallbackRequest(workflow_id="not-yet", thread_id="_main_", name="approve", pc=1)
    token = env.signer.token(req, expires_in=60)
    assert_problem(await env.client.post(f"/callbacks/{token}", json={}), 404, "InstanceNotFound")


async def test_get_of_a_used_link_whose_event_is_parked_again_is_410(env: Env) -> None:
    await start_expense(env, "e-1", rounds=2)
    first = env.link("e-1", "approve")
    assert (await env.client.post(first, json={})).status_code == 200
    assert env.link("e-1", "approve") != first  # parked on approve again, at another pc
    assert_problem(await env.client.get(first), 410, "CallbackGone")
