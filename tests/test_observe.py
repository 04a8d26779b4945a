"""Observers: the engine tells them every transition; logging by default, OpenTelemetry on request."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

import procflow as pf
from procflow.observe import LoggingObserver, Observed
from procflow.otel import OpenTelemetryObserver

pytestmark = pytest.mark.anyio


@dataclass
class Order:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: None),
            pf.Wait("decision", pf.OnEvent("approve", lambda: "ok", pf.Step("ship", lambda: None))),
        )


@dataclass
class Broken:
    def definition(self) -> pf.Section:
        return pf.S(pf.Step("charge", self.charge))

    def charge(self) -> None:
        raise RuntimeError("card declined")


async def test_observers_see_start_steps_events_and_the_end_in_order() -> None:
    seen: list[Observed] = []
    async with pf.Engine(pf.MemoryStore(), workflows=[Order], observers=[seen.append]) as engine:
        await engine.start(Order(), id="o-1")
        await engine.send("o-1", "approve")
    kinds = [(o.kind, o.name) for o in seen if o.kind not in ("setup", "teardown", "step_started")]
    assert kinds == [
        ("started", ""),
        ("step", "reserve"),
        ("event", "approve"),
        ("step", "ship"),
        ("finished", ""),
    ]
    assert {(o.instance, o.workflow) for o in seen} == {("o-1", "Order")}


async def test_observers_are_told_when_a_step_starts_but_the_history_does_not_keep_it() -> None:
    seen: list[Observed] = []
    async with pf.Engine(pf.MemoryStore(), workflows=[Order], observers=[seen.append]) as engine:
        await engine.start(Order(), id="o-1")
        kinds = [(o.kind, o.name) for o in seen]
        assert kinds.index(("step_started", "reserve")) < kinds.index(("step", "reserve"))
        assert "step_started" not in [h.kind for h in await engine.history("o-1")]


async def test_observers_hear_nothing_of_a_start_refused_for_a_taken_id() -> None:
    seen: list[Observed] = []
    async with pf.Engine(pf.MemoryStore(), workflows=[Order], observers=[seen.append]) as engine:
        await engine.start(Order(), id="o-1")
        seen.clear()
        with pytest.raises(pf.DuplicateInstanceError):
            await engine.start(Order(), id="o-1")
    assert seen == []


async def test_observers_hear_a_teardown_once_when_the_run_after_it_was_undone_and_retried() -> None:
    seen: list[Observed] = []
    async with pf.Engine(pf.MemoryStore(), workflows=[Unstorable], observers=[seen.append]) as engine:
        await engine.start(Unstorable(), id="u-1")
        await engine.send("u-1", "go")
        FILL_STORABLY[0] = True
        try:
            await engine.retry("u-1")
        finally:
            FILL_STORABLY[0] = False
        history = [(h.kind, h.name) for h in await engine.history("u-1")]
    heard = [(o.kind, o.name) for o in seen if o.kind != "step_started"]
    assert heard == history
    assert heard.count(("teardown", "go")) == 1


async def test_an_observer_that_raises_does_not_change_what_the_workflow_does() -> None:
    def broken(event: Observed) -> None:
        raise ValueError("observer bug")

    async with pf.Engine(pf.MemoryStore(), workflows=[Order], observers=[broken]) as engine:
        await engine.start(Order(), id="o-1")
        await engine.send("o-1", "approve")
        assert (await engine.get("o-1")).status == pf.WorkflowStatus.FINISHED


async def test_the_default_observer_logs_transitions_and_failures_as_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="procflow.events")
    async with pf.Engine(pf.MemoryStore(), workflows=[Order, Broken]) as engine:
        await engine.start(Order(), id="o-1")
        await engine.start(Broken(), id="b-1")
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "procflow.events"]
    assert (logging.INFO, "Order o-1 step reserve [_main_]") in messages
    assert (logging.WARNING, "Broken b-1 step_failed charge [_main_]") in messages
    assert all(isinstance(r.procflow, Observed) for r in caplog.records if r.name == "procflow.events")


def test_the_logging_observer_logs_nothing_below_its_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="procflow.events")
    LoggingObserver()(Observed("step", "o-1", "Order", "reserve"))
    assert caplog.records == []


async def test_the_opentelemetry_observer_emits_a_span_per_step_and_per_event() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(provider.get_tracer("test"))
    async with pf.Engine(pf.MemoryStore(), workflows=[Order, Broken], observers=[observer]) as engine:
        await engine.start(Order(), id="o-1")
        await engine.send("o-1", "approve")
        await engine.start(Broken(), id="b-1")
    spans = {(s.name, s.attributes["procflow.instance"]): s for s in exporter.get_finished_spans()}
    assert {"procflow.step reserve", "procflow.step ship", "procflow.event", "procflow.finished"} <= {
        name for name, instance in spans if instance == "o-1"
    }
    failed = spans[("procflow.step charge", "b-1")]
    assert failed.status.status_code.name == "ERROR"
    assert failed.status.description and "card declined" in failed.status.description


@dataclass
class Unstorable:
    """Once sent "go", a step leaves data that dumps but does not load back."""

    items: list[str] | None = None

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("ready", pf.OnEvent("go", lambda: None)), pf.Step("fill", self.fill))

    def fill(self) -> None:
        self.items = ["ok"] if FILL_STORABLY[0] else [None]  # type: ignore[list-item]


# Whether Unstorable's step leaves storable data (its code fixed, as before a retry).
FILL_STORABLY = [False]


async def test_the_opentelemetry_observer_ends_the_span_of_a_step_whose_result_could_not_be_stored() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(provider.get_tracer("test"))
    async with pf.Engine(pf.MemoryStore(), workflows=[Unstorable], observers=[observer]) as engine:
        await engine.start(Unstorable(), id="u-1")
        await engine.send("u-1", "go")
        assert (await engine.get("u-1")).status == pf.WorkflowStatus.FAILED
    (fill,) = [s for s in exporter.get_finished_spans() if s.name == "procflow.step fill"]
    assert fill.status.status_code.name == "ERROR"
    assert fill.status.description and "UnstorableDataError" in fill.status.description
