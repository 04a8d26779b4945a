"""The durable engine: start, send, cancel, get, list, history, commits and bad rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

import procflow as pf
from procflow.engine import Engine
from procflow.stores import InstanceRecord, MemoryStore, SQLiteStore, Store

pytestmark = pytest.mark.anyio


class Approval(BaseModel):
    approver: str


@dataclass
class Order:
    item: str = "book"
    steps: list[str] = field(default_factory=list)
    approved_by: str = ""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.steps.append("reserve"), compensate=self.release),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.approve, pf.Step("ship", lambda: self.steps.append("ship"))),
            ),
        )

    def approve(self, approval: Approval) -> str:
        self.approved_by = approval.approver
        return f"approved by {approval.approver}"

    def release(self) -> None:
        self.steps.append("release")


@dataclass
class WithMeta:
    meta: pf.State = field(default_factory=lambda: pf.State.new("x", "WithMeta"))
    seen: str = ""

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("look", self.look), pf.Wait("hold", pf.OnEvent("go", lambda: None)))

    def look(self) -> None:
        self.seen = self.meta.id


class CountingStore(MemoryStore):
    """A MemoryStore that counts writes (each insert/update is one commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    async def insert(self, record: InstanceRecord, history: Any = ()) -> InstanceRecord:
        self.commits += 1
        return await super().insert(record, history)

    async def update(
        self, record: InstanceRecord, history: Any = (), *, reply: tuple[str, str] | None = None
    ) -> InstanceRecord:
        self.commits += 1
        return await super().update(record, history, reply=reply)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "engine.db")
    yield s


@pytest.fixture
async def engine(store: Store) -> AsyncIterator[Engine]:
    async with Engine(store, workflows=[Order, WithMeta]) as e:
        yield e


def test_an_engine_used_in_a_plain_with_says_to_use_async_with(tmp_path: Path) -> None:
    with (
        pytest.raises(TypeError, match="use `async with Engine"),
        Engine(pf.SQLiteStore(tmp_path / "o.db"), [Order]),
    ):
        pass


async def test_an_engine_that_was_not_opened_says_how_to_open_it(tmp_path: Path) -> None:
    engine = Engine(pf.SQLiteStore(tmp_path / "o.db"), [Order])
    with pytest.raises(pf.StoreError, match=r"is not open: open its engine first \(`async with engine:`"):
        await engine.start(Order(), id="o-1")


async def test_with_store_runs_the_same_workflows_and_settings_over_another_store(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = pf.TestClock()
    first = Engine(
        MemoryStore(),
        {"order": Order},
        clock=clock,
        max_transitions=50,
        conflict_retries=2,
        stale_after=900.0,
        setup_retry_delay=5.0,
        observers=[lambda event: seen.append(event.kind)],
    )
    store = SQLiteStore(tmp_path / "other.db")
    second = first.with_store(store)
    settings = ("clock", "max_transitions", "conflict_retries", "stale_after", "setup_retry_delay")
    assert [getattr(second, a) for a in settings] == [getattr(first, a) for a in settings]
    assert second.store is store and second.workflows == {"order": Order}
    async with second:
        await second.start(Order(), id="o-1")
        assert (await second.get("o-1")).status == pf.WorkflowStatus.WAITING
    assert seen[0] == "started"


class AuditedEngine(Engine):
    """An application's engine: its own attribute, and a method of its own around ``start``."""

    def __init__(self, store: Store, audit: list[str]) -> None:
        super().__init__(store, [Order])
        self.audit = audit

    async def start(self, workflow: Any, **kwargs: Any) -> pf.Instance[Any]:
        self.audit.append(f"start {kwargs.get('id')}")
        return await super().start(workflow, **kwargs)


async def test_with_store_keeps_the_engines_class_and_its_attributes(tmp_path: Path) -> None:
    audit: list[str] = []
    second = AuditedEngine(MemoryStore(), audit).with_store(SQLiteStore(tmp_path / "other.db"))
    assert type(second) is AuditedEngine
    async with second:
        await second.start(Order(), id="o-1")
    assert audit == ["start o-1"]


async def test_a_workflow_registered_on_an_engine_with_another_store_is_not_registered_on_the_first(
    tmp_path: Path,
) -> None:
    first = Engine(MemoryStore(), [Order])
    second = first.with_store(SQLiteStore(tmp_path / "other.db"))
    second.register(Order, "order-v2")
    assert set(first.workflows) == {"Order"}


async def test_start_runs_until_the_instance_is_parked(engine: Engine) -> None:
    run = await engine.start(Order(), id="o-1")
    assert run.status == pf.WorkflowStatus.WAITING
    assert run.data.steps == ["reserve"]
    assert [str(p) for p in run.parked] == ["decision(approve)"]
    assert run.accepts == ["approve"]


async def test_start_generates_an_id_when_none_is_given(engine: Engine) -> None:
    a = await engine.start(Order())
    b = await engine.start(Order())
    assert a.id and b.id and a.id != b.id


async def test_get_loads_the_stored_data_and_state(engine: Engine) -> None:
    await engine.start(Order(item="lamp"), id="o-1")
    inst = await engine.get("o-1")
    assert inst.data == Order(item="lamp", steps=["reserve"])
    assert inst.state.threads[0].cur_step == "decision"
    assert inst.version >= 1


async def test_get_says_when_the_instance_last_changed_as_list_does(engine: Engine) -> None:
    started = await engine.start(Order(), id="o-1")
    await anyio.sleep(0.01)  # the stores keep milliseconds
    await engine.send("o-1", "approve", {"approver": "ann"})
    inst = await engine.get("o-1")
    [summary] = [s async for s in engine.list()]
    assert inst.updated_at == summary.updated_at
    assert inst.updated_at > started.created_at == inst.created_at


async def test_send_by_correlation_id_returns_the_handlers_reply_and_runs_on(engine: Engine) -> None:
    await engine.start(Order(), id="o-1", correlation_id="order-42")
    reply = await engine.send("order-42", "approve", {"approver": "ann"})
    assert reply == "approved by ann"
    inst = await engine.get("o-1")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.steps == ["reserve", "ship"]
    assert inst.data.approved_by == "ann"


async def test_find_loads_by_correlation_id(engine: Engine) -> None:
    await engine.start(Order(), id="o-1", correlation_id="order-42")
    assert (await engine.find("order-42")).id == "o-1"


async def test_a_second_delivery_of_the_same_event_is_refused(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    await engine.send("o-1", "approve", {"approver": "ann"})
    with pytest.raises(pf.WorkflowFinishedError):
        await engine.send("o-1", "approve", {"approver": "bob"})


async def test_an_event_nobody_waits_for_raises_callback_not_found(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    with pytest.raises(pf.CallbackNotFound):
        await engine.send("o-1", "refund", None)


async def test_a_bad_payload_raises_payload_error_and_saves_nothing(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    before = await engine.get("o-1")
    with pytest.raises(pf.PayloadError):
        await engine.send("o-1", "approve", {"approver": 42})
    after = await engine.get("o-1")
    assert after.version == before.version
    assert after.state == before.state


async def test_an_unknown_key_raises_instance_not_found(engine: Engine) -> None:
    with pytest.raises(pf.InstanceNotFound, match="nope"):
        await engine.send("nope", "approve", None)
    with pytest.raises(pf.InstanceNotFound):
        await engine.get("nope")


async def test_a_taken_id_or_correlation_id_raises_duplicate_instance(engine: Engine) -> None:
    await engine.start(Order(), id="o-1", correlation_id="c-1")
    with pytest.raises(pf.DuplicateInstanceError):
        await engine.start(Order(), id="o-1")
    with pytest.raises(pf.DuplicateInstanceError):
        await engine.start(Order(), id="o-2", correlation_id="c-1")


@pytest.mark.parametrize("workflows", [[Order()], {"order": Order()}], ids=["list", "mapping"])
def test_registering_a_workflow_object_instead_of_its_class_is_a_definition_error(workflows: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="pass the class Order, not an instance of it"):
        Engine(MemoryStore(), workflows=workflows)


@pytest.mark.parametrize("name", ["order\udcff", "order\x00", 42], ids=["lone surrogate", "NUL", "int"])
def test_a_workflow_name_no_store_could_keep_is_refused_when_registered(name: Any) -> None:
    with pytest.raises(pf.DefinitionError, match="a workflow name is a str that every store can keep"):
        Engine(MemoryStore(), workflows={name: Order})


async def test_starting_an_unregistered_class_raises_unknown_workflow(engine: Engine) -> None:
    @dataclass
    class Stray:
        def definition(self) -> pf.Section:
            return pf.S()

    with pytest.raises(pf.UnknownWorkflowError, match="Stray"):
        await engine.start(Stray())


async def test_cancel_with_compensation_undoes_completed_steps_and_keeps_the_reason(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    inst = await engine.cancel("o-1", reason="customer left", compensate=True)
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.state.reason == "customer left"
    assert (await engine.get("o-1")).data.steps == ["reserve", "release"]


async def test_cancel_without_compensation_leaves_completed_steps_alone(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    await engine.cancel("o-1", reason="duplicate order")
    inst = await engine.get("o-1")
    assert inst.status == pf.WorkflowStatus.CANCELLED
    assert inst.data.steps == ["reserve"]


async def test_list_filters_by_status_and_pages_through_everything(engine: Engine) -> None:
    for n in range(7):
        await engine.start(Order(), id=f"o-{n}")
    await engine.send("o-3", "approve", {"approver": "ann"})
    waiting = [s.id async for s in engine.list(status=pf.WorkflowStatus.WAITING, page_size=2)]
    assert waiting == ["o-0", "o-1", "o-2", "o-4", "o-5", "o-6"]
    finished = [s async for s in engine.list(status="FINISHED")]
    assert [s.id for s in finished] == ["o-3"]
    assert finished[0].describe_parked() == ""


@pytest.mark.parametrize("status", ["BOGUS", "waitng"])
async def test_list_refuses_a_status_that_is_no_workflow_status(engine: Engine, status: str) -> None:
    await engine.start(Order(), id="o-1")
    with pytest.raises(ValueError, match=f"unknown status '{status}'; the statuses are RESUMING, WAITING"):
        [s async for s in engine.list(status=status)]


async def test_list_takes_a_status_in_any_case(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    assert [s.id async for s in engine.list(status="waiting")] == ["o-1"]


async def test_an_engine_whose_arguments_are_swapped_says_how_to_write_it(store: Store) -> None:
    with pytest.raises(
        TypeError, match=r"first argument is the store.*Engine\(store, workflows=\[\.\.\.\]\)"
    ):
        Engine([Order], store)  # type: ignore[arg-type]


async def test_workflows_given_as_one_class_are_refused(store: Store) -> None:
    with pytest.raises(TypeError, match=r"write workflows=\[\.\.\.\]"):
        Engine(store, workflows=Order)  # type: ignore[arg-type]


async def test_start_of_a_class_rather_than_an_object_says_to_make_one(engine: Engine) -> None:
    with pytest.raises(TypeError, match=r"got the class Order; write start\(Order\(\.\.\.\)\)"):
        await engine.start(Order)
    assert [s async for s in engine.list()] == []


@pytest.mark.parametrize("key", ["id", "correlation_id"])
async def test_start_refuses_an_id_or_correlation_id_that_is_not_a_str(engine: Engine, key: str) -> None:
    with pytest.raises(TypeError, match=f"start: {key} must be a str, got int 42"):
        await engine.start(Order(), **{key: 42})  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["id", "correlation_id"])
@pytest.mark.parametrize("value", ["o\x00-1", "o-\udcff"], ids=["nul", "lone-surrogate"])
async def test_start_refuses_a_key_no_store_can_keep_before_any_step_runs(
    engine: Engine, key: str, value: str
) -> None:
    order = Order()
    with pytest.raises(pf.StoreError, match="cannot be stored"):
        await engine.start(order, **{key: value})
    assert order.steps == []


async def test_list_summaries_say_where_each_instance_is_parked(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    [summary] = [s async for s in engine.list(workflow="Order")]
    assert summary.describe_parked() == "decision(approve)"
    assert summary.error == ""


async def test_history_records_each_transition_in_order(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    await engine.send("o-1", "approve", {"approver": "ann"})
    kinds = [(h.kind, h.name) for h in await engine.history("o-1")]
    assert kinds == [
        ("started", ""),
        ("step", "reserve"),
        ("setup", "approve"),
        ("event", "approve"),
        ("teardown", "approve"),
        ("step", "ship"),
        ("finished", ""),
    ]
    times = [h.at for h in await engine.history("o-1")]
    assert times == sorted(times)


async def test_a_state_field_of_the_workflow_holds_the_instances_state(engine: Engine) -> None:
    await engine.start(WithMeta(), id="meta-1")
    inst = await engine.get("meta-1")
    assert inst.data.seen == "meta-1"
    assert inst.data.meta is inst.state
    assert json.loads(engine.dump_data(inst)) == {"seen": "meta-1"}


async def test_start_of_a_one_step_workflow_that_parks_costs_one_commit() -> None:
    store = CountingStore()
    async with Engine(store, workflows=[Order]) as engine:
        await engine.start(Order(), id="o-1")
        assert store.commits == 1


async def test_an_event_that_runs_one_step_to_the_end_costs_two_commits() -> None:
    store = CountingStore()
    async with Engine(store, workflows=[Order]) as engine:
        await engine.start(Order(), id="o-1")
        store.commits = 0
        await engine.send("o-1", "approve", {"approver": "ann"})
        assert store.commits == 2


async def test_a_corrupt_row_names_the_instance_and_spares_the_others(store: Store) -> None:
    async with Engine(store, workflows=[Order]) as engine:
        await engine.start(Order(), id="good")
        await store.insert(
            InstanceRecord(id="bad", workflow="Order", status="WAITING", data="{}", state="{not json")
        )
        with pytest.raises(pf.CorruptInstanceError, match="'bad'"):
            await engine.get("bad")
        summaries = {s.id: s for s in [s async for s in engine.list()]}
        assert summaries["bad"].error
        assert summaries["good"].error == ""
        await engine.send("good", "approve", {"approver": "ann"})


async def test_a_row_whose_bookkeeping_is_corrupt_is_listed_with_an_error(store: Store) -> None:
    async with Engine(store, workflows=[Order]) as engine:
        await engine.start(Order(), id="good")
        good = await store.get("good")
        await store.insert(dataclasses.replace(good, id="bad", meta="{not json", version=0))
        with pytest.raises(pf.CorruptInstanceError, match="'bad'"):
            await engine.get("bad")
        summaries = {s.id: s for s in [s async for s in engine.list()]}
        assert summaries["bad"].error.startswith("stored bookkeeping (meta) cannot be decoded")
        assert summaries["good"].error == ""


async def test_a_row_of_an_unregistered_workflow_raises_unknown_workflow(store: Store) -> None:
    async with Engine(store, workflows=[Order]) as engine:
        await store.insert(
            InstanceRecord(id="alien", workflow="Invoice", status="WAITING", data="{}", state="{}")
        )
        with pytest.raises(pf.UnknownWorkflowError, match=r"'alien'.*'Invoice'"):
            await engine.get("alien")


async def test_a_definition_without_the_parked_position_raises_definition_error(store: Store) -> None:
    async with Engine(store, workflows={"Order": Order}) as engine:
        await engine.start(Order(), id="o-1")

    @dataclass
    class OrderV2(Order):
        def definition(self) -> pf.Section:
            return pf.S(
                pf.Step("reserve", lambda: None),
                pf.Wait("approval", pf.OnEvent("approve", self.approve)),
            )

    async with Engine(store, workflows={"Order": OrderV2}) as engine:
        with pytest.raises(pf.DefinitionError, match="decision"):
            await engine.send("o-1", "approve", {"approver": "ann"})


# Whether Fanout's Go gives each worker thread an id of its own (the fix of its bug).
DISTINCT_WORKER_IDS: list[bool] = [False]


@dataclass
class Fanout:
    """Waits for "go", then starts two workers from a loop: without distinct ids the second is refused."""

    started: int = 0
    done: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        worker_id = (lambda: f"worker-{self.started}") if DISTINCT_WORKER_IDS[0] else None
        return pf.S(
            pf.Wait("ready", pf.OnEvent("go", lambda: "going")),
            pf.For(
                "spawn",
                lambda: self.started < 2,
                pf.Step("count", self.count),
                pf.Go("worker", pf.Step("work", lambda: self.done.append("work")), id=worker_id),
            ),
            pf.WaitFor("all done", lambda: len(self.done) == 2),
        )

    def count(self) -> None:
        self.started += 1


@pytest.fixture
async def fanout(store: Store) -> AsyncIterator[Engine]:
    DISTINCT_WORKER_IDS[0] = False
    async with Engine(store, workflows=[Fanout]) as engine:
        await engine.start(Fanout(), id="f-1")
        yield engine


async def test_a_definition_that_fails_mid_run_fails_the_instance_and_says_why(fanout: Engine) -> None:
    assert await fanout.send("f-1", "go") == "going"  # delivered: the failure came after
    inst = await fanout.get("f-1")
    assert inst.status == pf.WorkflowStatus.FAILED
    assert inst.failure is not None
    assert inst.failure.error.startswith("DefinitionError: ") and "'worker'" in inst.failure.error
    assert [h.kind for h in await fanout.history("f-1")][-1] == "failed"
    assert [s.id async for s in fanout.list(status="FAILED")] == ["f-1"]


async def test_an_instance_failed_by_its_definition_keeps_its_last_checkpoint(fanout: Engine) -> None:
    await fanout.send("f-1", "go")
    inst = await fanout.get("f-1")
    assert inst.data.started == 2  # the second count ran and was saved; its Go was refused
    assert [t.id for t in inst.state.threads] == [pf.MAIN_THREAD, "worker"]


async def test_retry_runs_an_instance_failed_by_its_definition_once_the_definition_is_fixed(
    fanout: Engine,
) -> None:
    await fanout.send("f-1", "go")
    DISTINCT_WORKER_IDS[0] = True
    inst = await fanout.retry("f-1")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.done == ["work", "work"]


async def test_data_that_no_longer_validates_raises_corrupt_instance(store: Store) -> None:
    async with Engine(store, workflows=[Order]) as engine:
        await engine.start(Order(), id="o-1")
        record = await store.get("o-1")
        broken = json.loads(record.data)
        broken["steps"] = "not a list"
        await store.update(
            InstanceRecord(
                id=record.id,
                workflow=record.workflow,
                status=record.status,
                data=json.dumps(broken),
                state=record.state,
                version=record.version,
            )
        )
        with pytest.raises(pf.CorruptInstanceError, match="'o-1'"):
            await engine.get("o-1")


async def test_a_step_without_a_retry_policy_fails_the_instance_and_keeps_the_error(store: Store) -> None:
    @dataclass
    class Flaky:
        def definition(self) -> pf.Section:
            return pf.S(pf.Step("call api", self.call))

        def call(self) -> None:
            raise RuntimeError("503 from the payment api")

    async with Engine(store, workflows=[Flaky]) as engine:
        run = await engine.start(Flaky(), id="f-1")
        assert run.status == pf.WorkflowStatus.FAILED
        assert run.failure is not None
        assert (run.failure.step, run.failure.attempts) == ("call api", 1)
        assert "503" in run.failure.error
        assert [h.kind for h in await engine.history("f-1")][-2:] == ["step_failed", "failed"]
        assert [s.id async for s in engine.list(status="FAILED")] == ["f-1"]


async def test_retry_by_hand_runs_the_failed_step_again(store: Store) -> None:
    attempts: list[int] = []

    @dataclass
    class Flaky:
        def definition(self) -> pf.Section:
            return pf.S(pf.Step("call api", self.call))

        def call(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("503 from the payment api")

    async with Engine(store, workflows=[Flaky]) as engine:
        await engine.start(Flaky(), id="f-1")
        inst = await engine.retry("f-1")
        assert inst.status == pf.WorkflowStatus.FINISHED
        assert inst.failure is None
        assert len(attempts) == 2


async def test_goto_a_step_continues_the_thread_as_if_that_step_had_just_completed(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    inst = await engine.goto("o-1", thread=pf.MAIN_THREAD, step="reserve", who="ops", why="re-park")
    assert [str(p) for p in inst.parked] == ["decision(approve)"]
    inst = await engine.goto("o-1", thread=pf.MAIN_THREAD, step="ship", who="ops", why="approved by phone")
    assert inst.status == pf.WorkflowStatus.FINISHED
    assert inst.data.steps == ["reserve"]
    goto = [h for h in await engine.history("o-1") if h.kind == "goto"]
    assert [(h.name, h.detail) for h in goto][-1] == ("ship", "from decision by ops: approved by phone")


async def test_goto_an_unknown_statement_or_thread_is_refused_and_changes_nothing(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    before = await engine.get("o-1")
    with pytest.raises(pf.DefinitionError, match="'nowhere'"):
        await engine.goto("o-1", thread=pf.MAIN_THREAD, step="nowhere", who="ops", why="typo")
    with pytest.raises(pf.DefinitionError, match="'worker-9'"):
        await engine.goto("o-1", thread="worker-9", step="ship", who="ops", why="typo")
    assert (await engine.get("o-1")).version == before.version


CATALOG = {"book": "shelf 4"}


@dataclass
class Shelved(Order):
    """An order whose definition looks its item up: an unknown item makes definition() raise."""

    def definition(self) -> pf.Section:
        CATALOG[self.item]
        return super().definition()


async def test_goto_on_an_instance_whose_definition_raises_is_a_definition_error(store: Store) -> None:
    async with Engine(store, workflows=[Shelved]) as engine:
        await engine.start(Shelved(), id="s-1")
        await engine.edit("s-1", {"item": "lamp"}, who="ops", why="customer asked")
        before = await engine.get("s-1")
        with pytest.raises(pf.DefinitionError, match=r"Shelved\.definition\(\) raised KeyError: 'lamp'"):
            await engine.goto("s-1", thread=pf.MAIN_THREAD, step="decision", who="ops", why="again")
        assert (await engine.get("s-1")).version == before.version


@dataclass
class Packing:
    """The main thread starts a packer (a step, then a Wait) and waits for its own event."""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Go(
                "packer",
                pf.S(pf.Step("pack", lambda: None), pf.Wait("packed", pf.OnEvent("done", lambda: None))),
            ),
            pf.Wait("shipping", pf.OnEvent("ship", lambda: None)),
        )


@pytest.mark.parametrize(
    ("thread", "step", "complaint"),
    [
        (pf.MAIN_THREAD, "pack", "it is in the body of Go 'packer', but thread '_main_' runs the main body"),
        ("packer", "shipping", "it is in the main body, but thread 'packer' runs the body of Go 'packer'"),
    ],
    ids=["main-into-go", "go-into-main"],
)
async def test_goto_a_statement_of_another_threads_body_is_refused_and_changes_nothing(
    store: Store, thread: str, step: str, complaint: str
) -> None:
    async with Engine(store, workflows=[Packing]) as engine:
        before = await engine.start(Packing(), id="p-1")
        with pytest.raises(pf.DefinitionError, match=complaint):
            await engine.goto("p-1", thread=thread, step=step, who="ops", why="wrong thread")
        assert (await engine.get("p-1")).version == before.version


async def test_goto_within_a_go_threads_own_body_moves_it(store: Store) -> None:
    async with Engine(store, workflows=[Packing]) as engine:
        await engine.start(Packing(), id="p-1")
        inst = await engine.goto("p-1", thread="packer", step="pack", who="ops", why="pack again", run=False)
        assert [(t.id, t.cur_step) for t in inst.state.threads] == [
            (pf.MAIN_THREAD, "shipping"),
            ("packer", "pack"),
        ]


async def test_edit_changes_data_fields_after_validating_them_and_records_who_and_why(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    inst = await engine.edit("o-1", {"item": "desk lamp"}, who="ann", why="customer changed the order")
    assert inst.data.item == "desk lamp"
    assert (await engine.get("o-1")).data.item == "desk lamp"
    edit = [h for h in await engine.history("o-1") if h.kind == "edit"][-1]
    assert (edit.name, edit.detail) == ("item", "by ann: customer changed the order")


async def test_an_edit_the_model_rejects_blames_the_edit_and_lists_the_errors(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    with pytest.raises(pf.PayloadError) as caught:
        await engine.edit("o-1", {"steps": "not a list"}, who="ann", why="oops")
    assert str(caught.value).startswith(
        "edit of 'o-1' rejected, nothing was saved: the changed data does not"
    )
    assert [e["loc"] for e in caught.value.errors] == [["steps"]]


async def test_edit_with_data_the_model_rejects_saves_nothing(engine: Engine) -> None:
    await engine.start(Order(), id="o-1")
    with pytest.raises(pf.PayloadError):
        await engine.edit("o-1", {"steps": "not a list"}, who="ann", why="oops")
    with pytest.raises(pf.PayloadError, match="colour"):
        await engine.edit("o-1", {"colour": "red"}, who="ann", why="oops")
    assert (await engine.get("o-1")).data.steps == ["reserve"]
