"""An observer that emits OpenTelemetry spans (``pip install 'procflow[otel]'``).

Each step becomes a span (``procflow.step <name>``) from ``step_started`` to
``step`` or ``step_failed`` (or to ``failed``, when the instance fails on the step
without either: its data could not be stored); every other transition is
recorded as a short span of its own (``procflow.<kind>``), so a trace shows an
instance's steps, events, timers and its end. Attributes: ``procflow.instance``,
``procflow.workflow``, ``procflow.name``, ``procflow.thread``.
"""

from __future__ import annotations

from typing import Any

from .errors import ProcflowError
from .observe import Observed

__all__ = ["OpenTelemetryObserver"]


class OpenTelemetryObserver:
    """Emits spans through an OpenTelemetry tracer (the global one by default).

    Raises:
        ProcflowError: ``opentelemetry-api`` is not installed.
    """

    def __init__(self, tracer: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError as e:
            raise ProcflowError(
                "OpenTelemetryObserver needs opentelemetry-api: pip install 'procflow[otel]'"
            ) from e
        self._trace = trace
        self.tracer = tracer or trace.get_tracer("procflow")
        self._open: dict[tuple[str, str, str], Any] = {}

    def __call__(self, event: Observed) -> None:
        attributes = {
            "procflow.instance": event.instance,
            "procflow.workflow": event.workflow,
            "procflow.name": event.name,
            "procflow.thread": event.thread,
        }
        key = (event.instance, event.thread, event.name)
        at_ns = int(event.at * 1e9) if event.at else None
        if event.kind == "step_started":
            superseded = self._open.pop(key, None)  # a run that was undone, then run again
            if superseded is not None:
                superseded.end(end_time=at_ns)
            self._open[key] = self.tracer.start_span(
                f"procflow.step {event.name}", attributes=attributes, start_time=at_ns
            )
            return
        if event.kind == "failed":
            step = self._open.pop(key, None)
            if step is not None:
                step.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.detail))
                step.end(end_time=at_ns)
        is_step = event.kind in ("step", "step_failed")
        span = self._open.pop(key, None) if is_step else None
        if span is None:
            name = f"procflow.step {event.name}" if is_step else f"procflow.{event.kind}"
            span = self.tracer.start_span(name, attributes=attributes, start_time=at_ns)
        if event.kind == "step_failed":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.detail))
        if event.detail:
            span.set_attribute("procflow.detail", event.detail)
        span.end(end_time=at_ns)
