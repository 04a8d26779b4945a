"""Delivery: the event inbox (early events), idempotent sends, and limits on invalid payloads.

The stores are real (memory, SQLite on a temporary file, PostgreSQL on the
throwaway cluster); handler calls are counted outside the workflow
(``CALLS``), so that "runs nothing again" means the handler was not called.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from process_death import ProcessDied
from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

import procflow as pf
from procflow import Sleep, TestClock
from procflow.engine import Engine
from procflow.idempotency import request_digest
from procflow.stores import SQLiteStore, Store, open_store

pytestmark = pytest.mark.anyio

PROGRAMS = Path(__file__).parent / "programs"

# Handler calls of the test in progress: "event:payload".
CALLS: list[str] = []
# How many more times Strict's release raises.
RELEASE_FAILURES: list[int] = [0]


class Item(BaseModel):
    sku: str
    qty: int = 1


@dataclass
class Cart:
    """Opens, then takes three items in a loop; "item" events sent before it opens are refused."""

    items: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("opening", pf.OnEvent("open", lambda: CALLS.append("open"))),
            pf.For(
                "filling",
                lambda: len(self.items) < 3,
                pf.Wait("adding", pf.OnEvent("item", self.add)),
            ),
            pf.Wait("paying", pf.OnEvent("checkout", lambda: CALLS.append("checkout"))),
        )

    def add(self, item: Item) -> int:
        CALLS.append(f"item:{item.sku}")
        self.items.append(item.sku)
        return len(self.items)


@dataclass
class EagerCart(Cart):
    """The same cart, but "item" buffers by default: items may come before it opens."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("opening", pf.OnEvent("open", lambda: CALLS.append("open"))),
            pf.For(
                "filling",
                lambda: len(self.items) < 3,
                pf.Wait("adding", pf.OnEvent("item", self.add, buffer=True)),
            ),
            pf.Wait("paying", pf.OnEvent("checkout", lambda: CALLS.append("checkout"))),
        )


@dataclass
class Webhook:
    """Waits for a 1 h cooling-off period, then for the payment webhook (buffered by default)."""

    paid: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            Sleep("cooling off", 3600),
            pf.Wait("payment", pf.OnEvent("paid", self.on_paid, buffer=True)),
        )

    def on_paid(self, cents: int) -> str:
        CALLS.append(f"paid:{cents}")
        self.paid += cents
        return f"paid {cents}"


@dataclass
class Till:
    """Takes "pay" (an int) until paid three times; each reply is a fresh receipt number."""

    paid: int = 0

    def definition(self) -> pf.Section:
        return pf.S(pf.For("paying", lambda: self.paid < 3, pf.Wait("till", pf.OnEvent("pay", self.pay))))

    def pay(self, cents: int) -> dict[str, int]:
        CALLS.append(f"pay:{cents}")
        self.paid += 1
        return {"receipt": self.paid, "cents": cents}


class Receipt:
    """A reply with no JSON form."""

    def __init__(self, cents: int) -> None:
        self.cents = cents


@dataclass
class OpaqueTill(Till):
    """The till, replying with a ``Receipt`` object instead of JSON values."""

    def pay(self, cents: int) -> Any:  # the reply type is Any: pydantic has no schema for Receipt
        super().pay(cents)
        return Receipt(cents)


class Payment(BaseModel):
    """A payload whose JSON names are camelCase aliases."""

    model_config = ConfigDict(alias_generator=to_camel)
    order_id: str
    amount_cents: int


class Card(BaseModel):
    number: SecretStr


@dataclass
class Invoice:
    """Approval first; a payment or a card may come before it (buffered)."""

    paid: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("approval", pf.OnEvent("approve", lambda: None)),
            pf.Wait(
                "payment",
                pf.OnEvent("paid", self.on_paid, buffer=True),
                pf.OnEvent("card", self.on_card, buffer=True),
            ),
        )

    def on_paid(self, payment: Payment) -> None:
        assert isinstance(payment, Payment)
        self.paid.append(f"{payment.order_id}: {payment.amount_cents}")

    def on_card(self, card: Card) -> None:
        self.paid.append("card")


class Amount(BaseModel):
    cents: int
    currency: str = "EUR"


@dataclass
class Strict:
    """Reserves, then waits for a payment; three invalid payloads cancel it (with compensation)."""

    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve"), compensate=self.release),
            pf.Step("hold", lambda: self.log.append("hold"), compensate=lambda: self.log.append("unhold")),
            pf.Wait("payment", pf.OnEvent("pay", self.pay, max_attempts=3)),
            pf.Step("ship", lambda: self.log.append("ship")),
        )

    def pay(self, amount: Amount) -> int:
        self.log.append(f"paid {amount.cents}")
        return amount.cents

    def release(self) -> None:
        if RELEASE_FAILURES[0] > 0:
            RELEASE_FAILURES[0] -= 1
            raise ConnectionError("the stock service is down")
        self.log.append("release")


def _lenient_pay(amount: Amount) -> int:
    return amount.cents


@dataclass
class Lenient:
    """The same without a limit: invalid payloads never cancel it."""

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("payment", pf.OnEvent("pay", _lenient_pay)))


@dataclass
class Retries:
    """A payment is asked for twice in a loop; each asking is a new parking with its own count."""

    got: list[int] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For(
                "asking",
                lambda: len(self.got) < 2,
                pf.Wait("payment", pf.OnEvent("pay", self.pay, max_attempts=2)),
            )
        )

    def pay(self, amount: Amount) -> None:
        self.got.append(amount.cents)


class HookDown(pf.Handler):
    """A webhook whose registration always fails."""

    type = "hook-down"

    def setup(self, req: pf.CallbackRequest) -> str:
        raise ConnectionError("the webhook service is down")


@dataclass
class Deposits:
    """Opens, then takes two deposits ("d", buffered by default) at a Wait whose other event's setup fails."""

    got: list[int] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("opening", pf.OnEvent("open", lambda: None)),
            pf.For(
                "deposits",
                lambda: len(self.got) < 2,
                pf.Wait("deposit", pf.OnEvent("d", self.got.append, buffer=True), pf.On("hook", HookDown())),
            ),
        )


# Whether Parcel's "ship" step dies with its process.
SHIP_DIES: list[bool] = [False]


@dataclass
class Parcel:
    """Opens, then takes "paid" (buffered by default), then ships."""

    paid: list[int] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("opening", pf.OnEvent("open", lambda: None)),
            pf.Wait("payment", pf.OnEvent("paid", self.on_paid, buffer=True)),
            pf.Step("ship", self.ship),
        )

    def on_paid(self, cents: int) -> None:
        CALLS.append(f"paid:{cents}")
        self.paid.append(cents)

    def ship(self) -> None:
        if SHIP_DIES[0]:
            raise ProcessDied


# Awaited by Capped.pay before it decides: a test's way to change the instance meanwhile.
BEFORE_DECIDING: list[Callable[[], Awaitable[object]]] = []


@dataclass
class Capped:
    """Takes a payment of at most ``limit`` cents: its handler refuses more, after noting the attempt."""

    attempts: list[int] = field(default_factory=list)
    limit: int = 100

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("payment", pf.OnEvent("pay", self.pay, max_attempts=2)))

    async def pay(self, amount: Amount) -> int:
        while BEFORE_DECIDING:
            await BEFORE_DECIDING.pop(0)()
        self.attempts.append(amount.cents)
        if amount.cents > self.limit:
            raise pf.PayloadError(f"at most {self.limit} cents, got {amount.cents}")
        return amount.cents


@dataclass
class Rounds:
    """Three rounds; each starts a "collect" thread (the same id each time) that waits for a payment."""

    paid: list[int] = field(default_factory=list)
    done: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For(
                "rounds",
                lambda: self.done < 3,
                pf.Go("collect", pf.Wait("payment", pf.OnEvent("pay", self.pay, max_attempts=3))),
                pf.WaitFor("collected", lambda: len(self.paid) > self.done),
                pf.Step("next", self.next_round),
            )
        )

    def pay(self, amount: Amount) -> None:
        self.paid.append(amount.cents)

    def next_round(self) -> None:
        self.done += 1


@dataclass
class Prepaid(Capped):
    """Opens, then takes ``Capped``'s payment, buffered when it comes before the opening."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("opening", pf.OnEvent("open", lambda: None)),
            pf.Wait("payment", pf.OnEvent("pay", self.pay, buffer=True)),
        )


@dataclass
class Echo:
    """Takes "note" (any JSON values) for ever; each reply is the note's number and its payload."""

    notes: int = 0

    def definition(self) -> pf.Section:
        return pf.S(pf.For("noting", True, pf.Wait("notes", pf.OnEvent("note", self.note))))

    def note(self, payload: Any) -> dict[str, Any]:
        CALLS.append(f"note:{payload!r}")
        self.notes += 1
        return {"note": self.notes, "payload": payload}


class Gauge(BaseModel):
    """A reading as a model, which writes NaN as null in its JSON (pydantic's default)."""

    ratio: float


class ConstantGauge(Gauge):
    """The same reading, whose JSON writes NaN as the constant ``NaN``."""

    model_config = ConfigDict(ser_json_inf_nan="constants")


@dataclass
class Meter:
    """Takes "read" for ever; replies with a gauge of the model named by the payload, reading NaN."""

    reads: int = 0

    def definition(self) -> pf.Section:
        return pf.S(pf.For("reading", True, pf.Wait("reads", pf.OnEvent("read", self.read))))

    def read(self, model: str) -> Gauge:
        CALLS.append(f"read:{model}")
        self.reads += 1
        return (ConstantGauge if model == "constant" else Gauge)(ratio=math.nan)


WORKFLOWS = [
    Cart,
    EagerCart,
    Webhook,
    Invoice,
    Rounds,
    Till,
    OpaqueTill,
    Strict,
    Lenient,
    Retries,
    Deposits,
    Parcel,
    Capped,
    Prepaid,
    Echo,
    Meter,
]


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()
    BEFORE_DECIDING.clear()
    RELEASE_FAILURES[0] = 0
    SHIP_DIES[0] = False


@pytest.fixture
async def engine(new_store: Callable[[], Store], clock: TestClock) -> AsyncIterator[Engine]:
    async with Engine(new_store(), workflows=WORKFLOWS, clock=clock) as e:
        yield e


@pytest.fixture
async def on_sqlite(tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine on a SQLite file of its own: kept replies go through a real database's text."""
    async with Engine(SQLiteStore(tmp_path / "idempotency.db"), workflows=WORKFLOWS) as e:
        yield e


async def _kinds(engine: Engine, id: str) -> list[tuple[str, str]]:
    return [(h.kind, h.name) for h in await engine.history(id)]


# -- the inbox ---------------------------------------------------------------------------------


async def test_an_early_event_is_refused_unless_buffered(engine: Engine) -> None:
    await engine.start(Cart(), id="c")
    before = await engine.store.get("c")
    with pytest.raises(pf.CallbackNotFound):
        await engine.send("c", "item", {"sku": "pen"})
    after = await engine.store.get("c")
    assert after.version == before.version  # nothing saved
    assert (await engine.get("c")).inbox == []
    assert CALLS == []


async def test_the_inbox_delivers_in_arrival_order_when_another_events_setup_fails(engine: Engine) -> None:
    await engine.start(Deposits(), id="a")
    await engine.send("a", "d", 1)  # early: buffered
    await engine.send("a", "open")  # parks on "deposit"; the hook's setup fails, "d" is set up
    await engine.send("a", "d", 2)
    inst = await engine.get("a")
    assert inst.data.got == [1, 2]
    assert inst.inbox == []


async def test_a_send_for_one_parking_is_never_buffered(engine: Engine) -> None:
    await engine.start(EagerCart(), id="c")  # "item" buffers by default; the cart is not open yet
    with pytest.raises(pf.CallbackNotFound):
        await engine.send("c", "item", {"sku": "pen"}, pc=5)
    assert (await engine.get("c")).inbox == []


async def test_buffered_early_events_wait_in_the_inbox_and_are_delivered_in_order(
    engine: Engine, clock: TestClock
) -> None:
    await engine.start(Cart(), id="c")
    for sku in ("pen", "ink", "pad"):
        assert await engine.send("c", "item", {"sku": sku}, buffer=True) is None
        clock.advance(1)
    inst = await engine.get("c")
    assert [(b.event, b.payload) for b in inst.inbox] == [
        ("item", {"sku": "pen"}),
        ("item", {"sku": "ink"}),
        ("item", {"sku": "pad"}),
    ]
    assert [b.at for b in inst.inbox] == [inst.inbox[0].at, inst.inbox[0].at + 1, inst.inbox[0].at + 2]
    assert CALLS == []
    assert (await _kinds(engine, "c")).count(("buffered", "item")) == 3

    await engine.send("c", "open")
    inst = await engine.get("c")
    assert CALLS == ["open", "item:pen", "item:ink", "item:pad"]
    assert inst.data.items == ["pen", "ink", "pad"]
    assert inst.inbox == []
    assert inst.accepts == ["checkout"]


async def test_a_buffered_event_goes_to_the_first_wait_that_takes_it_the_rest_wait_on(engine: Engine) -> None:
    await engine.start(Cart(), id="c")
    await engine.send("c", "checkout", buffer=True)
    await engine.send("c", "open")
    assert [b.event for b in (await engine.get("c")).inbox] == ["checkout"]
    for sku in ("a", "b", "c"):
        await engine.send("c", "item", {"sku": sku})
    inst = await engine.get("c")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert CALLS == ["open", "item:a", "item:b", "item:c", "checkout"]
    assert inst.inbox == []


async def test_an_event_can_buffer_by_default_and_a_sender_can_still_refuse(engine: Engine) -> None:
    await engine.start(EagerCart(), id="c")
    assert await engine.send("c", "item", {"sku": "pen"}) is None  # OnEvent(..., buffer=True)
    with pytest.raises(pf.CallbackNotFound):
        await engine.send("c", "item", {"sku": "ink"}, buffer=False)
    with pytest.raises(pf.CallbackNotFound):
        await engine.send("c", "checkout")  # its own default: off
    await engine.send("c", "open")
    assert (await engine.get("c")).data.items == ["pen"]


async def test_an_event_the_definition_does_not_have_is_refused_even_with_buffer(engine: Engine) -> None:
    await engine.start(Cart(), id="c")
    with pytest.raises(pf.CallbackNotFound):
        await engine.send("c", "refund", buffer=True)
    assert (await engine.get("c")).inbox == []


async def test_buffering_for_a_finished_instance_is_refused(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    for cents in (1, 2, 3):
        await engine.send("t", "pay", cents)
    with pytest.raises(pf.WorkflowFinishedError):
        await engine.send("t", "pay", 4, buffer=True)


async def test_the_inbox_is_kept_in_the_store_and_a_worker_delivers_it_after_a_timer(
    new_store: Callable[[], Store], clock: TestClock
) -> None:
    async with Engine(new_store(), workflows=WORKFLOWS, clock=clock) as engine:
        await engine.start(Webhook(), id="w")
        assert await engine.send("w", "paid", 500) is None  # the webhook came during the cooling off
    async with Engine(new_store(), workflows=WORKFLOWS, clock=clock) as engine:
        assert [(b.event, b.payload) for b in (await engine.get("w")).inbox] == [("paid", 500)]
        clock.advance(3600)
        assert await engine.work_once() == 1
        inst = await engine.get("w")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.paid == 500
    assert CALLS == ["paid:500"]


async def test_a_cancelled_instance_drops_its_inbox(engine: Engine) -> None:
    await engine.start(Cart(), id="c")
    await engine.send("c", "item", {"sku": "pen"}, buffer=True)
    inst = await engine.cancel("c", reason="abandoned")
    assert inst.inbox == []


async def test_a_buffered_event_with_an_invalid_payload_is_refused_when_sent(engine: Engine) -> None:
    await engine.start(Cart(), id="c")
    with pytest.raises(pf.PayloadError):
        await engine.send("c", "item", {"sku": 42, "qty": "many"}, buffer=True)


async def test_a_buffered_model_payload_is_delivered_as_the_same_model(engine: Engine) -> None:
    await engine.start(Invoice(), id="i")
    await engine.send("i", "paid", Payment(orderId="o-42", amountCents=1250))
    assert [b.payload for b in (await engine.get("i")).inbox] == [{"orderId": "o-42", "amountCents": 1250}]
    await engine.send("i", "approve")
    inst = await engine.get("i")
    assert inst.data.paid == ["o-42: 1250"]
    assert inst.status == pf.WorkflowStatus.FINISHED


async def test_a_payload_that_json_does_not_give_back_the_same_is_refused_for_the_inbox(
    engine: Engine,
) -> None:
    await engine.start(Invoice(), id="i")
    version = (await engine.store.get("i")).version
    with pytest.raises(pf.PayloadError, match="cannot wait in the inbox"):
        await engine.send("i", "card", Card(number=SecretStr("4242 4242 4242 4242")))
    assert (await engine.store.get("i")).version == version


# -- idempotent sends --------------------------------------------------------------------------


async def test_a_repeat_with_the_same_idempotency_key_returns_the_first_reply_and_runs_nothing(
    engine: Engine,
) -> None:
    await engine.start(Till(), id="t")
    first = await engine.send("t", "pay", 100, idempotency_key="charge-1")
    assert first == {"receipt": 1, "cents": 100}
    version = (await engine.store.get("t")).version
    for _ in range(3):
        assert await engine.send("t", "pay", 100, idempotency_key="charge-1") == first
    assert CALLS == ["pay:100"]
    assert (await engine.store.get("t")).version == version  # nothing saved either
    assert (await engine.get("t")).data.paid == 1


async def test_different_idempotency_keys_are_delivered_separately(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    replies = [await engine.send("t", "pay", 5, idempotency_key=f"k{n}") for n in range(3)]
    assert [r["receipt"] for r in replies] == [1, 2, 3]
    assert CALLS == ["pay:5"] * 3
    # Once finished, a repeat of any of them still gets its own first reply.
    assert await engine.send("t", "pay", 5, idempotency_key="k1") == replies[1]
    with pytest.raises(pf.WorkflowFinishedError):
        await engine.send("t", "pay", 5, idempotency_key="k3")


async def test_an_idempotency_key_sent_again_with_another_payload_is_refused_and_runs_nothing(
    engine: Engine,
) -> None:
    await engine.start(Till(), id="t")
    await engine.send("t", "pay", 100, idempotency_key="charge-1")
    version = (await engine.store.get("t")).version
    with pytest.raises(pf.IdempotencyKeyReused, match="'charge-1' was first sent with another"):
        await engine.send("t", "pay", 250, idempotency_key="charge-1")
    assert CALLS == ["pay:100"]
    assert (await engine.store.get("t")).version == version


async def test_a_repeat_whose_payload_lists_its_keys_in_another_order_is_the_same_request(
    engine: Engine,
) -> None:
    await engine.start(Strict(), id="s")
    first = await engine.send("s", "pay", {"cents": 100, "currency": "EUR"}, idempotency_key="charge-1")
    again = await engine.send("s", "pay", {"currency": "EUR", "cents": 100}, idempotency_key="charge-1")
    assert again == first == 100
    assert (await engine.get("s")).data.log == ["reserve", "hold", "paid 100", "ship"]


async def test_an_idempotency_key_sent_again_for_another_thread_is_refused(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    await engine.send("t", "pay", 100, idempotency_key="charge-1")
    with pytest.raises(pf.IdempotencyKeyReused):
        await engine.send("t", "pay", 100, thread_id=pf.MAIN_THREAD, idempotency_key="charge-1")


async def test_a_reply_kept_before_requests_were_recorded_still_answers_its_key(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    record = await engine.store.get("t")
    await engine.store.update(record, reply=("old-key", '{"receipt":1,"cents":100}'))
    assert await engine.send("t", "pay", 999, idempotency_key="old-key") == {"receipt": 1, "cents": 100}
    assert CALLS == []


async def test_an_idempotency_key_sent_again_for_another_parking_is_refused(engine: Engine) -> None:
    inst = await engine.start(Till(), id="t")
    first_pc = inst.state.threads[0].wait_events[0].req.pc
    await engine.send("t", "pay", 100, pc=first_pc, idempotency_key="charge-1")
    second_pc = (await engine.get("t")).state.threads[0].wait_events[0].req.pc
    with pytest.raises(pf.IdempotencyKeyReused):
        await engine.send("t", "pay", 100, pc=second_pc, idempotency_key="charge-1")
    assert CALLS == ["pay:100"]


async def test_an_idempotency_key_belongs_to_one_instance(engine: Engine) -> None:
    await engine.start(Till(), id="a")
    await engine.start(Till(), id="b")
    assert (await engine.send("a", "pay", 1, idempotency_key="same"))["receipt"] == 1
    assert (await engine.send("b", "pay", 2, idempotency_key="same"))["cents"] == 2
    assert CALLS == ["pay:1", "pay:2"]


def test_an_infinite_or_nan_payload_is_not_the_same_request_as_none() -> None:
    digests = {request_digest("pay", "", 0, p) for p in (None, math.inf, -math.inf, math.nan, "Infinity")}
    assert len(digests) == 5


async def test_a_repeat_gets_the_nan_and_infinities_of_the_first_reply(on_sqlite: Engine) -> None:
    await on_sqlite.start(Echo(), id="e")
    reading = {"ratio": math.nan, "peak": math.inf, "floor": -math.inf}
    first = await on_sqlite.send("e", "note", reading, idempotency_key="k")
    again = await on_sqlite.send("e", "note", reading, idempotency_key="k")
    for reply in (first, again):
        assert reply["note"] == 1
        assert math.isnan(reply["payload"]["ratio"])
        assert (reply["payload"]["peak"], reply["payload"]["floor"]) == (math.inf, -math.inf)
    assert len(CALLS) == 1


async def test_a_model_reply_whose_json_turns_nan_into_null_cannot_be_kept_and_nothing_is_saved(
    on_sqlite: Engine,
) -> None:
    await on_sqlite.start(Meter(), id="m")
    version = (await on_sqlite.store.get("m")).version
    with pytest.raises(pf.UnstorableDataError, match=r"turns an infinity or NaN into null.*ser_json_inf_nan"):
        await on_sqlite.send("m", "read", "default", idempotency_key="k")
    assert (await on_sqlite.store.get("m")).version == version
    assert await on_sqlite.store.reply("m", "k") is None
    inst = await on_sqlite.get("m")
    assert inst.data.reads == 0
    assert [str(p) for p in inst.parked] == ["reads(read)"]


async def test_a_model_reply_whose_json_writes_nan_as_a_constant_is_kept_for_a_repeat(
    on_sqlite: Engine,
) -> None:
    await on_sqlite.start(Meter(), id="m")
    assert math.isnan((await on_sqlite.send("m", "read", "constant", idempotency_key="k")).ratio)
    assert math.isnan((await on_sqlite.send("m", "read", "constant", idempotency_key="k"))["ratio"])
    assert CALLS == ["read:constant"]


@pytest.mark.parametrize(
    ("payload", "repeat"),
    [
        (100, 100.0),
        ({"cents": 100, "tags": [1, 2]}, {"tags": [1.0, 2e0], "cents": 1e2}),
        (0, -0.0),
        (2**60, float(2**60)),
        (1.5, 15e-1),
    ],
)
async def test_a_repeat_whose_numbers_are_written_another_way_is_the_same_request(
    on_sqlite: Engine, payload: Any, repeat: Any
) -> None:
    await on_sqlite.start(Echo(), id="e")
    first = await on_sqlite.send("e", "note", payload, idempotency_key="k")
    assert await on_sqlite.send("e", "note", repeat, idempotency_key="k") == first
    assert len(CALLS) == 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (True, 1),
        (False, 0),
        (1.0, True),
        (2**53 + 1, float(2**53)),
        (10**300, 1e300),
        (1.5, 1),
        ("100", 100),
        ("100", "100.0"),  # texts: a str payload may reach its handler as it is
        (math.inf, 2**1024),
    ],
)
def test_numbers_and_texts_that_differ_in_value_are_other_requests(one: Any, other: Any) -> None:
    assert request_digest("pay", "", 0, one) != request_digest("pay", "", 0, other)


@pytest.mark.parametrize(
    ("payload", "body"),
    [({"cents": 100}, '{"cents":100}'), ({"cents": 100.0}, '{"cents":100.0}'), (1.5, "1.5")],
)
async def test_a_reply_kept_by_earlier_versions_still_answers_the_repeat_of_its_request(
    on_sqlite: Engine, payload: Any, body: str
) -> None:
    await on_sqlite.start(Echo(), id="e")
    # The digest as procflow wrote it before numbers were compared by value.
    digest = hashlib.sha256(json.dumps(["note", "", 0, body]).encode()).hexdigest()
    record = await on_sqlite.store.get("e")
    await on_sqlite.store.update(record, reply=("k", f'{digest}\n{{"note":1,"payload":{body}}}'))
    assert await on_sqlite.send("e", "note", payload, idempotency_key="k") == {"note": 1, "payload": payload}
    assert CALLS == []


async def test_a_payload_with_no_json_form_cannot_be_sent_with_an_idempotency_key(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    with pytest.raises(pf.PayloadError, match="must have a JSON form"):
        await engine.send("t", "pay", Receipt(5), idempotency_key="k")
    assert CALLS == []


async def test_a_send_that_failed_keeps_no_reply_for_its_key(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    with pytest.raises(pf.PayloadError):
        await engine.send("t", "pay", "not a number", idempotency_key="k")
    assert await engine.send("t", "pay", 9, idempotency_key="k") == {"receipt": 1, "cents": 9}


async def test_a_reply_with_no_json_form_is_returned_without_a_key(engine: Engine) -> None:
    await engine.start(OpaqueTill(), id="t")
    assert (await engine.send("t", "pay", 7)).cents == 7
    assert (await engine.get("t")).data.paid == 1


async def test_a_reply_with_no_json_form_cannot_be_kept_for_a_key_and_nothing_is_saved(
    engine: Engine,
) -> None:
    await engine.start(OpaqueTill(), id="t")
    version = (await engine.store.get("t")).version
    with pytest.raises(pf.UnstorableDataError, match=r"idempotency key 'k'.*does not serialise to JSON"):
        await engine.send("t", "pay", 7, idempotency_key="k")
    assert (await engine.store.get("t")).version == version
    inst = await engine.get("t")
    assert inst.data.paid == 0
    assert [str(p) for p in inst.parked] == ["till(pay)"]


async def test_idempotency_holds_across_engines_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with Engine(SQLiteStore(path), workflows=WORKFLOWS) as first:
        await first.start(Till(), id="t")
        reply = await first.send("t", "pay", 3, idempotency_key="webhook-77")
    async with Engine(SQLiteStore(path), workflows=WORKFLOWS) as second:
        assert await second.send("t", "pay", 3, idempotency_key="webhook-77") == reply
        assert (await second.get("t")).data.paid == 1
    assert CALLS == ["pay:3"]


def test_idempotency_holds_across_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'till.db'}"
    sys.path.insert(0, str(PROGRAMS))
    try:
        import worker_app
    finally:
        sys.path.pop(0)

    async def start() -> None:
        async with Engine(open_store(url), workflows=worker_app.WORKFLOWS) as engine:
            await engine.start(worker_app.Till(), id="t")

    anyio.run(start)
    env = {**os.environ, "WORKER_WORKDIR": str(tmp_path)}
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(PROGRAMS / "worker_app.py"), "send", url, "t", "order-9"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    assert outputs == ["{'receipt': 1, 'cents': 7}"] * 2
    assert (tmp_path / "effects").read_text().split() == ["pay:7"]


async def test_a_buffered_event_is_saved_as_delivered_before_the_steps_it_unblocks_run(
    engine: Engine,
) -> None:
    await engine.start(Parcel(), id="p")
    await engine.send("p", "paid", 500)  # early: buffered
    SHIP_DIES[0] = True
    with pytest.raises(ProcessDied):  # "paid" is delivered from the inbox, then "ship" dies
        await engine.send("p", "open")
    SHIP_DIES[0] = False
    assert (await engine.get("p")).inbox == []
    assert await engine.recover() == ["p"]
    assert (await engine.get("p")).status == pf.WorkflowStatus.FINISHED
    assert CALLS == ["paid:500"]  # delivered once


async def test_a_repeated_idempotent_send_that_was_buffered_is_buffered_once(engine: Engine) -> None:
    await engine.start(Cart(), id="c")
    await engine.send("c", "item", {"sku": "pen"}, buffer=True, idempotency_key="k")
    await engine.send("c", "item", {"sku": "pen"}, buffer=True, idempotency_key="k")
    assert len((await engine.get("c")).inbox) == 1


@dataclass
class SlowTill(Till):
    """A till whose handler takes a moment (it calls a payment service)."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.For("paying", lambda: self.paid < 3, pf.Wait("till", pf.OnEvent("pay", self.slow_pay)))
        )

    async def slow_pay(self, cents: int) -> dict[str, int]:
        await anyio.sleep(0.05)
        return self.pay(cents)


async def test_concurrent_repeats_of_an_idempotent_send_deliver_once_and_get_the_first_reply(
    tmp_path: Path,
) -> None:
    path = tmp_path / "race.db"
    async with (
        Engine(SQLiteStore(path), workflows=[SlowTill]) as a,
        Engine(SQLiteStore(path), workflows=[SlowTill]) as b,
    ):
        await a.start(SlowTill(), id="t")
        results: dict[str, Any] = {}

        async def send(engine: Engine, name: str) -> None:
            results[name] = await engine.send("t", "pay", 5, idempotency_key="once")

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, a, "a")
            tg.start_soon(send, b, "b")
        paid = (await a.get("t")).data.paid
    assert (paid, results["a"], results["b"]) == (1, {"receipt": 1, "cents": 5}, {"receipt": 1, "cents": 5})


# -- invalid payloads --------------------------------------------------------------------------


async def test_invalid_payloads_below_the_limit_are_refused_and_the_instance_stays_parked(
    engine: Engine,
) -> None:
    await engine.start(Strict(), id="s")
    for _n in (1, 2):
        with pytest.raises(pf.PayloadError):
            await engine.send("s", "pay", {"cents": "lots"})
        inst = await engine.get("s")
        assert inst.status == pf.WorkflowStatus.WAITING
        assert inst.accepts == ["pay"]
    assert [k for k in await _kinds(engine, "s") if k[0] == "rejected"] == [("rejected", "pay")] * 2
    # A good payload still goes through.
    assert await engine.send("s", "pay", {"cents": 300}) == 300
    inst = await engine.get("s")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.log == ["reserve", "hold", "paid 300", "ship"]


async def test_the_nth_invalid_payload_is_a_payload_error_even_when_its_cancel_is_cut_short(
    engine: Engine,
) -> None:
    await engine.start(Strict(), id="s")
    RELEASE_FAILURES[0] = 1
    for _ in range(3):
        with pytest.raises(pf.PayloadError):
            await engine.send("s", "pay", "{not json")
    inst = await engine.get("s")
    assert inst.data.log == ["reserve", "hold", "unhold"]  # "hold" was undone, "reserve" was not


async def test_an_instance_whose_automatic_cancel_was_cut_short_fails_on_the_compensation(
    engine: Engine,
) -> None:
    await engine.start(Strict(), id="s")
    RELEASE_FAILURES[0] = 1
    for _ in range(3):
        with pytest.raises(pf.PayloadError):
            await engine.send("s", "pay", "{not json")
    inst = await engine.get("s")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.state.cancelling
    assert inst.meta.failure is not None
    assert (inst.meta.failure.step, inst.meta.failure.thread) == ("reserve", "")
    assert "the stock service is down" in inst.meta.failure.error


async def test_an_instance_whose_cancel_was_cut_short_refuses_even_a_valid_payload(engine: Engine) -> None:
    await engine.start(Strict(), id="s")
    RELEASE_FAILURES[0] = 1
    for _ in range(3):
        with pytest.raises(pf.PayloadError):
            await engine.send("s", "pay", "{not json")
    with pytest.raises(pf.WorkflowFinishedError, match="being cancelled"):
        await engine.send("s", "pay", {"cents": 300})
    inst = await engine.get("s")
    assert inst.data.log == ["reserve", "hold", "unhold"]  # not paid, not shipped


async def test_retry_carries_a_cancel_cut_short_on(engine: Engine) -> None:
    await engine.start(Strict(), id="s")
    RELEASE_FAILURES[0] = 1
    for _ in range(3):
        with pytest.raises(pf.PayloadError):
            await engine.send("s", "pay", "{not json")
    inst = await engine.retry("s")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.meta.failure is None
    assert inst.data.log == ["reserve", "hold", "unhold", "release"]


async def test_the_nth_invalid_payload_cancels_the_instance_with_compensation(engine: Engine) -> None:
    await engine.start(Strict(), id="s")
    for _ in range(2):
        with pytest.raises(pf.PayloadError):
            await engine.send("s", "pay", "{not json")
    with pytest.raises(pf.PayloadError):
        await engine.send("s", "pay", {"cents": None})
    inst = await engine.get("s")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert "pay" in inst.state.reason and "3 invalid payloads" in inst.state.reason
    assert inst.data.log == ["reserve", "hold", "unhold", "release"]  # newest first
    history = [(h.kind, h.name, h.detail) for h in await engine.history("s")]
    assert [h[2] for h in history if h[0] == "rejected"] == [
        "invalid payload 1 of 3",
        "invalid payload 2 of 3",
        "invalid payload 3 of 3",
    ]
    assert [h[1] for h in history if h[0] == "compensated"] == ["hold", "reserve"]
    assert history[-1][0] == "cancelled"
    with pytest.raises(pf.WorkflowFinishedError):
        await engine.send("s", "pay", {"cents": 1})


async def test_without_a_limit_invalid_payloads_never_cancel(engine: Engine) -> None:
    await engine.start(Lenient(), id="l")
    for _ in range(10):
        with pytest.raises(pf.PayloadError):
            await engine.send("l", "pay", {"cents": "x"})
    inst = await engine.get("l")
    assert inst.status == pf.WorkflowStatus.WAITING
    assert await engine.send("l", "pay", {"cents": 1}) == 1


async def test_the_count_of_invalid_payloads_is_per_parking(engine: Engine) -> None:
    await engine.start(Retries(), id="r")
    with pytest.raises(pf.PayloadError):
        await engine.send("r", "pay", {})
    await engine.send("r", "pay", {"cents": 1})  # the loop parks again: a fresh count
    with pytest.raises(pf.PayloadError):
        await engine.send("r", "pay", {})
    assert (await engine.get("r")).status == pf.WorkflowStatus.WAITING
    with pytest.raises(pf.PayloadError):
        await engine.send("r", "pay", {})
    assert (await engine.get("r")).status == pf.WorkflowStatus.CANCELLED


async def test_a_thread_started_again_under_the_same_id_counts_invalid_payloads_from_zero(
    engine: Engine,
) -> None:
    await engine.start(Rounds(), id="r")
    for _ in range(2):
        with pytest.raises(pf.PayloadError):
            await engine.send("r", "pay", {"cents": "many"})
    await engine.send("r", "pay", {"cents": 1})  # round 1 is paid; round 2's "collect" parks
    assert (await engine.get("r")).meta.rejected == {}  # the counts of a parking that is over go
    with pytest.raises(pf.PayloadError):
        await engine.send("r", "pay", {"cents": "many"})
    inst = await engine.get("r")
    assert inst.status == pf.WorkflowStatus.WAITING  # 1 of 3, not 3 of 3
    assert list(inst.meta.rejected.values()) == [1]


def test_max_attempts_must_be_at_least_one() -> None:
    with pytest.raises(pf.DefinitionError, match="max_attempts"):
        pf.OnEvent("pay", _lenient_pay, max_attempts=0)


async def test_a_payload_its_handler_refuses_is_counted_and_what_the_handler_changed_is_not_saved(
    engine: Engine,
) -> None:
    await engine.start(Capped(), id="c")
    with pytest.raises(pf.PayloadError, match="at most 100 cents, got 500"):
        await engine.send("c", "pay", {"cents": 500})
    inst = await engine.get("c")
    assert (inst.status, inst.data.attempts) == (pf.WorkflowStatus.WAITING, [])
    assert [h.detail for h in await engine.history("c") if h.kind == "rejected"] == ["invalid payload 1 of 2"]
    assert await engine.send("c", "pay", {"cents": 80}) == 80


async def test_a_refusal_resting_on_data_another_writer_changed_meanwhile_is_tried_again_on_the_new_data(
    engine: Engine, clock: TestClock
) -> None:
    other = Engine(engine.store, workflows=WORKFLOWS, clock=clock)  # another process's engine
    await engine.start(Capped(), id="c")
    BEFORE_DECIDING.append(lambda: other.edit("c", {"limit": 1000}, who="ops", why="raise the cap"))
    assert await engine.send("c", "pay", {"cents": 500}) == 500
    inst = await engine.get("c")
    assert (inst.status, inst.data.attempts) == (pf.WorkflowStatus.FINISHED, [500])
    assert [h for h in await engine.history("c") if h.kind == "rejected"] == []


async def test_a_buffered_event_its_handler_refuses_is_dropped_and_what_the_handler_changed_is_not_saved(
    engine: Engine,
) -> None:
    await engine.start(Prepaid(), id="p")
    assert await engine.send("p", "pay", {"cents": 500}) is None  # buffered: nobody waits for it yet
    await engine.send("p", "open")
    inst = await engine.get("p")
    assert (inst.status, inst.data.attempts, inst.inbox) == (pf.WorkflowStatus.WAITING, [], [])
    [dropped] = [h.detail for h in await engine.history("p") if h.kind == "dropped"]
    assert dropped.endswith("at most 100 cents, got 500")


async def test_an_unknown_event_is_not_counted_as_an_invalid_payload(engine: Engine) -> None:
    await engine.start(Strict(), id="s")
    for _ in range(5):
        with pytest.raises(pf.CallbackNotFound):
            await engine.send("s", "refund", {"cents": "x"})
    assert (await engine.get("s")).status == pf.WorkflowStatus.WAITING


async def test_handler_calls_are_counted_once_per_delivery(engine: Engine) -> None:
    await engine.start(Till(), id="t")
    await engine.send("t", "pay", 1)
    await engine.send("t", "pay", 2)
    assert Counter(CALLS) == {"pay:1": 1, "pay:2": 1}
