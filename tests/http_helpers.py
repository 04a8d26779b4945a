"""Workflows, fixtures and a clock for the HTTP edge's tests (tests/test_http_*.py).

A test module imports the fixtures it uses (``from http_helpers import
env_fixture``); each is registered under the name without ``_fixture``.

``server_engine`` is what ``procflow serve --app http_helpers:server_engine``
loads in the real-server test; its signed links read ``$PROCFLOW_SECRET``.
``napping_engine`` adds a workflow with a timer, for ``serve --worker``.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

import procflow as pf
from procflow.http import CallbackLink, CallbackSigner, create_app

SECRET = "test-secret-0123456789-abcdefghijklmnop"
OLD_SECRET = "older-secret-0123456789-abcdefghijklmno"
BASE_URL = "http://testserver"


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- an order: typed events, a handler that refuses, compensation ----------------------


class Approval(BaseModel):
    approver: str = Field(min_length=1)


class Denial(BaseModel):
    reason: str


class Receipt(BaseModel):
    item: str
    approved_by: str


@dataclass
class Order:
    item: str
    amount: int = 0
    approved_by: str = ""
    log: list[str] = field(default_factory=list)
    meta: pf.State = field(default_factory=lambda: pf.State.new("-", "Order"))

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserved"), compensate=self.release),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.approve, pf.Step("ship", lambda: self.log.append("shipped"))),
                pf.OnEvent("deny", self.deny, pf.Return()),
            ),
        )

    def release(self) -> None:
        self.log.append("released")

    def approve(self, approval: Approval) -> Receipt:
        if approval.approver == "mallory":
            raise PermissionError("mallory may not approve orders")
        self.approved_by = approval.approver
        return Receipt(item=self.item, approved_by=approval.approver)

    def deny(self, denial: Denial) -> str:
        if not denial.reason.strip():
            raise pf.PayloadError("a denial needs a reason the customer can read")
        self.log.append(f"denied: {denial.reason}")
        return "denied"


# -- a concurrent writer: its handler saves the instance behind the engine's back ------

meddling_store: contextvars.ContextVar[pf.Store] = contextvars.ContextVar("meddling_store")


class Meddler(pf.Handler):
    """Each delivery, another writer saves the instance first (as a second process would)."""

    async def handle(self, req: pf.CallbackRequest, payload: Any) -> None:
        store = meddling_store.get()
        await store.update(await store.get(req.workflow_id))


@dataclass
class Contested:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("hold", pf.On("touch", Meddler())))


# -- an expense approved through signed callback URLs ----------------------------------

current_signer: contextvars.ContextVar[CallbackSigner] = contextvars.ContextVar("current_signer")
outbox: contextvars.ContextVar[list[tuple[str, str, str]]] = contextvars.ContextVar("outbox")


def signer() -> CallbackSigner:
    """The test's signer, or (in a served process) one from ``$PROCFLOW_SECRET``."""
    try:
        return current_signer.get()
    except LookupError:
        return CallbackSigner.from_env(base_url=os.environ.get("PROCFLOW_BASE_URL", BASE_URL))


def mail(req: pf.CallbackRequest, url: str) -> None:
    """The "e-mail" of a link: kept in the test's outbox (nowhere in a served process)."""
    box = outbox.get(None)
    if box is not None:
        box.append((req.workflow_id, req.name, url))


class Verdict(BaseModel):
    note: str = ""


@dataclass
class Expense:
    amount: int
    decision: str = ""
    rounds: int = 1

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For(
                "rounds",
                lambda: self.rounds > 0,
                pf.Wait(
                    "review",
                    pf.On("approve", CallbackLink(self.approve, signer, notify=mail, expires_in=3600)),
                    pf.On("deny", CallbackLink(self.deny, signer, notify=mail, expires_in=3600)),
                ),
            ),
        )

    def approve(self, verdict: Verdict) -> str:
        if verdict.note == "crash":
            raise RuntimeError("ledger unavailable: token=abc123")
        if verdict.note == "maybe":
            raise pf.PayloadError("an approval must be firm, not 'maybe'")
        self.rounds -= 1
        self.decision = f"approved {verdict.note}".strip()
        return self.decision

    def deny(self) -> str:
        self.rounds = 0
        self.decision = "denied"
        return self.decision


WORKFLOWS = [Order, Contested, Expense]


def server_engine() -> pf.Engine:
    """The engine ``procflow serve`` runs in the real-server test (its --db gives the store)."""
    return pf.Engine(pf.MemoryStore(), WORKFLOWS)


@dataclass
class Nap:
    """Sleeps a fifth of a second (on the engine's clock), then one step."""

    woke: bool = False

    def definition(self) -> pf.Section:
        return pf.S(pf.Sleep("nap", 0.2), pf.Step("wake", self.wake))

    def wake(self) -> None:
        self.woke = True


def napping_engine() -> pf.Engine:
    """``server_engine`` with a workflow that waits on a timer, for ``procflow serve --worker``."""
    return pf.Engine(pf.MemoryStore(), [*WORKFLOWS, Nap])


# -- fixtures --------------------------------------------------------------------------


@dataclass
class Env:
    """One app over one engine, and what its handlers did."""

    client: httpx.AsyncClient
    engine: pf.Engine
    clock: Clock
    signer: CallbackSigner
    mails: list[tuple[str, str, str]]

    def link(self, instance: str, event: str) -> str:
        """The last URL mailed for ``event`` of ``instance``, as a path the client can post to."""
        urls = [url for i, e, url in self.mails if (i, e) == (instance, event)]
        assert urls, f"no link was mailed for {event!r} of {instance!r}: {self.mails}"
        return urls[-1].removeprefix(BASE_URL)


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture(name="store")
def store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> pf.Store:
    """A MemoryStore, or a SQLiteStore on a temp file for a test marked
    ``parametrize("store", ["sqlite"], indirect=True)``."""
    if getattr(request, "param", "memory") == "sqlite":
        return pf.SQLiteStore(str(tmp_path / "http.db"))
    return pf.MemoryStore()


@pytest.fixture(name="signing")
def signing_fixture(clock: Clock) -> Iterator[CallbackSigner]:
    s = CallbackSigner([SECRET, OLD_SECRET], base_url=BASE_URL, clock=clock)
    token = current_signer.set(s)
    yield s
    current_signer.reset(token)


@pytest.fixture(name="env")
async def env_fixture(store: pf.Store, clock: Clock, signing: CallbackSigner) -> AsyncIterator[Env]:
    engine = pf.Engine(store, WORKFLOWS)
    app = create_app(engine, signer=signing, max_body_bytes=4096)
    mails: list[tuple[str, str, str]] = []
    outbox_token = outbox.set(mails)
    meddling = meddling_store.set(store)
    try:
        async with engine, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
            yield Env(c, engine, clock, signing, mails)
    finally:
        meddling_store.reset(meddling)
        outbox.reset(outbox_token)


def assert_problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    """Check that ``response`` is RFC 9457 problem details for ``title``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["status"], body["title"], body["type"]) == (status, title, f"urn:procflow:error:{title}")
    assert body["detail"]
    return body


async def start_order(env: Env, id: str = "o-1", **data: Any) -> httpx.Response:
    """Start an ``Order`` over HTTP (201 expected)."""
    response = await env.client.post(f"/workflows/Order/instances?id={id}", json={"item": "lamp", **data})
    assert response.status_code == 201, response.text
    return response


async def start_expense(env: Env, id: str = "e-1", amount: int = 120, rounds: int = 1) -> httpx.Response:
    """Start an ``Expense`` over HTTP; its setups mail signed links (201 expected)."""
    response = await env.client.post(
        f"/workflows/Expense/instances?id={id}", json={"amount": amount, "rounds": rounds}
    )
    assert response.status_code == 201, response.text
    return response
