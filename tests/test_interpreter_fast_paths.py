"""The interpreter's fast paths behave as the plain ones they stand for.

``ShapeCache`` (a tree of a known shape is checked by comparison, not by a
full ``index``), the lazily made handler of ``OnEvent``, the quick
``isawaitable`` and the step's own undo of its bookkeeping.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import procflow as pf
from procflow._calling import isawaitable
from procflow.handlers import FunctionHandler
from procflow.state import new_thread, new_wait_event
from procflow.statements import ShapeCache, _compile_shape, _Known, _same_kids, index

pytestmark = pytest.mark.anyio


def noop() -> None:
    pass


def on_event(n: int) -> int:
    return n


class Labelled(pf.Section):
    """A Section whose instances have a ``__dict__``, so each may have a name of its own."""


def labelled(name: str, *stmts: pf.Stmt) -> Labelled:
    section = Labelled(stmts)
    section.name = name
    return section


def trees() -> list[pf.Stmt]:
    """Trees of many shapes, some of them differing only slightly."""
    return [
        pf.S(labelled("x", pf.Step("a", noop))),
        pf.S(labelled("y", pf.Step("a", noop))),
        pf.S(),
        pf.S(pf.Step("a", noop)),
        pf.S(pf.Step("b", noop)),
        pf.S(pf.Step("a", noop), pf.Step("b", noop)),
        pf.S(pf.For("loop", True, pf.Step("a", noop))),
        pf.S(pf.For("loop", True, pf.Step("a", noop), pf.Break())),
        pf.S(pf.For("loop", True, pf.Step("a", noop), pf.Continue())),
        pf.S(pf.For("other", True, pf.Step("a", noop))),
        pf.S(pf.If(True, "yes", pf.Step("a", noop)).else_("no", pf.Step("b", noop))),
        pf.S(pf.If(True, "yes", pf.Step("a", noop)).elif_(False, "no", pf.Step("b", noop))),
        pf.S(pf.Wait("w", pf.OnEvent("e", on_event, pf.Step("a", noop)))),
        pf.S(pf.Wait("w", pf.OnEvent("e", on_event), pf.OnEvent("f", on_event))),
        pf.S(pf.Go("g", pf.S(pf.Step("a", noop)))),
        pf.S(pf.Go("g", pf.Step("a", noop))),
        pf.S(pf.WaitFor("cond", True), pf.Return()),
        pf.S(pf.S(pf.Step("a", noop))),
        pf.S(pf.S(), pf.Step("a", noop)),
        pf.Step("a", noop),
    ]


def test_a_shape_matches_exactly_the_trees_of_that_shape_looped_or_compiled() -> None:
    for i, a in enumerate(trees()):
        compiled = _compile_shape(a)
        for j, b in enumerate(trees()):
            same = i == j
            looped = type(b) is type(a) and b.name == a.name and _same_kids(b._kids, _Known(a, {}).kids)
            assert looped is same
            assert compiled(b) is same


def test_a_compiled_shape_takes_children_it_cannot_unpack_for_another_shape() -> None:
    compiled = _compile_shape(pf.S(labelled("x", pf.Step("a", noop))))
    for kids in (None, 7, (), (pf.Step("a", noop), pf.Step("b", noop))):
        tree = labelled("x")
        tree._kids = kids  # type: ignore[assignment]
        assert compiled(pf.S(tree)) is False


def test_the_cache_returns_what_index_returns_and_compiles_a_shape_seen_again() -> None:
    cache = ShapeCache()
    for i, tree in enumerate(trees()):
        first = cache.index(tree, "key")
        assert first == index(tree)
        for _ in range(3):
            assert cache.index(trees()[i], "key") is first  # a new tree of the same shape
    known = cache._known["key"]
    assert len(known) == cache.max_shapes
    assert all(shape.same is not None for shape in known)


def test_a_duplicate_name_raises_on_every_call_though_the_shape_was_seen() -> None:
    cache = ShapeCache()
    good = pf.S(pf.Step("a", noop), pf.Step("b", noop))
    cache.index(good, "key")
    cache.index(good, "key")
    for _ in range(3):
        with pytest.raises(pf.DefinitionError, match="duplicate name 'a'"):
            cache.index(pf.S(pf.Step("a", noop), pf.Step("a", noop)), "key")


def test_a_child_that_is_no_statement_is_reported_not_read() -> None:
    class Nameless:
        @property
        def name(self) -> str:
            raise AssertionError("the shape check read the name of a non-statement")

    cache = ShapeCache()
    good = pf.S(pf.Step("a", noop))
    cache.index(good, "key")
    cache.index(good, "key")  # compiled now
    bad = pf.S(pf.Step("a", noop))
    bad._kids = (Nameless(),)  # type: ignore[assignment]
    with pytest.raises(pf.DefinitionError, match="not a statement"):
        cache.index(bad, "key")


def test_the_cache_is_bounded_in_keys_and_shapes() -> None:
    cache = ShapeCache(keys=3, shapes=2)
    for key in range(10):
        for n in range(5):
            cache.index(pf.S(*[pf.Step(f"s{k}", noop) for k in range(n)]), key)
    assert list(cache._known) == [7, 8, 9]
    assert all(len(shapes) == 2 for shapes in cache._known.values())


def test_big_shapes_are_compared_without_being_compiled() -> None:
    cache = ShapeCache()
    big = [pf.S(*[pf.Step(f"s{k}", noop) for k in range(ShapeCache.compile_below)]) for _ in range(3)]
    paths = [cache.index(tree, "key") for tree in big]
    assert paths[0] is paths[1] is paths[2]
    assert cache._known["key"][0].same is None


def test_the_cache_is_safe_from_many_threads() -> None:
    cache = ShapeCache(keys=4, shapes=2)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                n = (seed + i) % 7
                tree = pf.S(*[pf.Step(f"s{k}", noop) for k in range(n)])
                assert cache.index(tree, (seed + i) % 5) == index(tree)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@dataclass
class Shifting:
    """A workflow whose tree depends on its data: ``dup`` repeats a name, ``extra`` adds a step."""

    dup: bool = False
    extra: bool = False
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("shifting-1", "shifting"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Step("first", lambda: self.log.append("first")),
            *([pf.Step("extra", lambda: self.log.append("extra"))] if self.extra else []),
            pf.Wait("wait", pf.OnEvent("go", self.go)),
            pf.Step("last" if not self.dup else "first", lambda: self.log.append("last")),
        )

    def go(self) -> None:
        self.log.append("go")


async def test_a_duplicate_in_a_tree_of_a_later_call_raises_on_that_call() -> None:
    wf = Shifting()
    await pf.resume(wf, wf.state, lambda kind: None)
    wf.dup = True
    before = wf.state.model_dump()
    with pytest.raises(pf.DefinitionError, match="duplicate name 'first'"):
        await pf.handle_callback(pf.CallbackRequest(name="go"), wf, wf.state, None)
    with pytest.raises(pf.DefinitionError, match="duplicate name 'first'"):
        await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.state.model_dump() == before
    wf.dup = False
    await pf.handle_callback(pf.CallbackRequest(name="go"), wf, wf.state, None)
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.log == ["first", "go", "last"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED


async def test_a_tree_that_changes_shape_between_calls_is_followed_by_name() -> None:
    wf = Shifting()
    await pf.resume(wf, wf.state, lambda kind: None)
    wf.extra = True  # the Wait moves one place down
    await pf.handle_callback(pf.CallbackRequest(name="go"), wf, wf.state, None)
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.log == ["first", "go", "last"]


def test_on_event_makes_its_handler_once_when_asked() -> None:
    event = pf.OnEvent("e", on_event)
    assert event.fn is on_event
    handler = event.handler
    assert isinstance(handler, FunctionHandler)
    assert handler.fn is on_event
    assert event.handler is handler
    other = FunctionHandler(noop)
    event.handler = other
    assert event.handler is other


@dataclass
class Approval:
    """Parks on an OnEvent whose handler is replaced when ``listener`` is set."""

    listener: pf.Handler | None = None
    events: list[pf.OnEvent] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("approval-1", "approval"))

    def definition(self) -> pf.Stmt:
        event = pf.OnEvent("approve", on_event)
        if self.listener is not None:
            event.handler = self.listener
        self.events.append(event)
        return pf.S(pf.Wait("decision", event), pf.Step("after", noop))


async def test_an_on_event_makes_its_handler_only_when_the_event_arrives() -> None:
    wf = Approval()
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.state.threads[0].wait_events[0].type == FunctionHandler.type
    assert wf.state.threads[0].wait_events[0].status == pf.WaitEventStatus.SETUP
    assert all(event._handler is None for event in wf.events)

    await pf.handle_callback(pf.CallbackRequest(name="approve"), wf, wf.state, 1)
    delivered = len(wf.events)
    await pf.resume(wf, wf.state, lambda kind: None)

    assert wf.state.status == pf.WorkflowStatus.FINISHED
    made = [i for i, event in enumerate(wf.events) if event._handler is not None]
    assert made == [delivered - 1]  # in the tree handle_callback built, to handle the event


async def test_an_on_event_given_another_handler_has_that_one_set_up_and_torn_down() -> None:
    calls: list[str] = []

    class Listener(pf.Handler):
        type = "listener"

        def setup(self, req: pf.CallbackRequest) -> str:
            calls.append("setup")
            return "subscribed"

        def handle(self, req: pf.CallbackRequest, payload: Any) -> Any:
            calls.append(f"handle {req.setup_data}")

        def teardown(self, req: pf.CallbackRequest, handled: bool) -> None:
            calls.append(f"teardown {handled}")

    wf = Approval(listener=Listener())
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.state.threads[0].wait_events[0].type == "listener"
    await pf.handle_callback(pf.CallbackRequest(name="approve"), wf, wf.state, 1)
    await pf.resume(wf, wf.state, lambda kind: None)

    assert calls == ["setup", "handle subscribed", "teardown True"]


def test_a_started_thread_equals_a_validated_one_with_every_field_set() -> None:
    started = new_thread("worker-1", "worker")
    validated = pf.Thread(id="worker-1", name="worker")

    assert started == validated
    assert started.model_fields_set == set(pf.Thread.model_fields)
    assert pf.Thread.model_validate_json(started.model_dump_json()) == validated
    started.pc = 3  # still a model pydantic can assign to
    assert started.pc == 3 and validated.pc == 0


def test_a_parked_event_equals_a_validated_one_with_every_field_set() -> None:
    built = new_wait_event("event", "order-1", "_main_", "approve", 3)
    validated = pf.WaitEvent(
        type="event", req=pf.CallbackRequest(workflow_id="order-1", thread_id="_main_", name="approve", pc=3)
    )

    assert built == validated
    assert built.model_fields_set == set(pf.WaitEvent.model_fields)
    assert built.req.model_fields_set == set(pf.CallbackRequest.model_fields)
    assert pf.WaitEvent.model_validate_json(built.model_dump_json()) == validated
    built.req.setup_data = "subscribed"  # still models pydantic can assign to
    assert built.req.setup_data == "subscribed" and validated.req.setup_data == ""


async def test_isawaitable_answers_as_inspect_does() -> None:
    class Awaitable:
        def __await__(self) -> Any:
            return iter(())

    async def coroutine() -> None:
        pass

    pending = coroutine()
    future = asyncio.get_running_loop().create_future() if _on_asyncio() else None
    cases: list[Any] = [None, "", "x", 1, 1.5, True, b"", {}, [], (), object(), Awaitable(), pending]
    if future is not None:
        cases.append(future)
    import inspect

    for value in cases:
        assert isawaitable(value) is inspect.isawaitable(value), value
    await pending


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class Steps:
    fail_checkpoint_at: int = 0
    fail_definition: bool = False
    log: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("steps-1", "steps"))

    def definition(self) -> pf.Stmt:
        if self.fail_definition and self.log:
            raise RuntimeError("no tree today")
        return pf.S(
            pf.Step("one", lambda: self.log.append("one"), compensate=noop),
            pf.Step("two", lambda: self.log.append("two"), compensate=noop),
        )


@pytest.mark.parametrize("fail", ["checkpoint", "definition"])
async def test_a_failure_after_a_step_leaves_the_state_at_the_last_checkpoint(fail: str) -> None:
    wf = Steps(fail_definition=fail == "definition")
    saved: list[dict[str, Any]] = []
    failing = [fail == "checkpoint"]

    def checkpoint(kind: pf.CheckpointType) -> None:
        if failing[0] and len(saved) == 1:
            raise RuntimeError("disk full")
        saved.append(wf.state.model_dump())

    first = wf.state.model_dump()
    with pytest.raises((RuntimeError, pf.DefinitionError)):
        await pf.resume(wf, wf.state, checkpoint)
    assert wf.state.model_dump() == (saved[-1] if saved else first)
    wf.fail_definition = failing[0] = False
    await pf.resume(wf, wf.state, checkpoint)
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.state.completed == ["one", "two"]


def _threads_run_in(order: list[str]) -> Callable[[str], Callable[[], None]]:
    return lambda name: lambda: order.append(name)


@dataclass
class Parallel:
    order: list[str] = field(default_factory=list)
    state: pf.State = field(default_factory=lambda: pf.State.new("parallel-1", "parallel"))

    def definition(self) -> pf.Stmt:
        log = _threads_run_in(self.order)
        return pf.S(
            pf.Go("a", pf.S(pf.Step("a1", log("a1")), pf.Step("a2", log("a2")))),
            pf.Go("b", pf.S(pf.Step("b1", log("b1")), pf.Go("c", pf.Step("c1", log("c1"))))),
            pf.Step("main", log("main")),
            pf.WaitFor("all ran", lambda: len(self.order) == 5),
        )


async def test_threads_run_first_come_first_served_and_a_stored_running_thread_first() -> None:
    wf = Parallel()
    states: list[str] = []
    await pf.resume(wf, wf.state, lambda kind: states.append(wf.state.model_dump_json()))
    assert wf.order == ["main", "a1", "a2", "b1", "c1"]
    for k, text in enumerate(states[:-1]):
        again = Parallel(order=[])
        again.state = pf.State.model_validate_json(text)
        await pf.resume(again, again.state, lambda kind: None)
        assert again.order == wf.order[len(wf.order) - len(again.order) :], k


@dataclass
class StoppedByCondition:
    """A thread ticks while ``stopped`` is false; the main thread's WaitFor handler sets it."""

    ticks: int = 0
    stopped: bool = False
    state: pf.State = field(default_factory=lambda: pf.State.new("stopped-1", "stopped"))

    def definition(self) -> pf.Stmt:
        return pf.S(
            pf.Go("ticker", pf.For("loop", not self.stopped, pf.Step("tick", self.tick))),
            pf.WaitFor("ticked", lambda: self.ticks >= 1, self.stop),
        )

    def tick(self) -> None:
        self.ticks += 1

    def stop(self) -> None:
        self.stopped = True


async def test_a_step_goes_on_in_the_tree_a_condition_handler_after_it_built() -> None:
    wf = StoppedByCondition()
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.ticks == 1
    assert wf.state.status == pf.WorkflowStatus.FINISHED


class Tick:
    """A step action that can be weakly referenced: it lives as long as its Step."""

    def __init__(self, wf: CountsLiveTrees) -> None:
        self.wf = wf

    def __call__(self) -> None:
        self.wf.i += 1


@dataclass
class CountsLiveTrees:
    """Records, at each definition() call, whether any part of the tree it returned last is alive."""

    state: pf.State = field(default_factory=lambda: pf.State.new("trees-1", "counts-live-trees"))
    i: int = 0
    last: list[weakref.ref[Tick]] = field(default_factory=list)  # one action at each level
    alive_at_call: list[bool] = field(default_factory=list)

    def definition(self) -> pf.Stmt:
        if self.last:
            self.alive_at_call.append(any(ref() is not None for ref in self.last))
        actions = [Tick(self) for _ in range(4)]
        self.last = [weakref.ref(a) for a in actions]
        return pf.S(
            pf.Step("first", actions[0]),
            pf.For("loop", self.i < 4, pf.If(True, "inner", pf.Step("tick", actions[1]))),
            pf.Go("worker", pf.S(pf.Step("work", actions[2]))),
            pf.WaitFor("worked", self.i == 5),
            pf.Step("last", actions[3]),
        )


async def test_a_step_lets_go_of_the_old_tree_before_definition_builds_the_new_one() -> None:
    # So the new tree reuses the old one's memory: a big definition() then
    # costs less and evicts less of the interpreter's data from the caches.
    wf = CountsLiveTrees()
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.state.status == pf.WorkflowStatus.FINISHED
    assert wf.i == 6  # first, three ticks, work, last
    assert wf.alive_at_call == [False] * 6  # one call after each step
