"""Observability: what the engine tells observers as instances move.

An observer is any callable taking an ``Observed``. The engine calls each of
its observers after every transition: ``started``, ``step_started``,
``step`` (done), ``step_failed``, ``event`` (handled), ``timer`` (fired),
``retry``, ``failed``, ``finished``, ``cancelled``, and the others its
history records. By default the engine logs them with the standard
``logging`` module (logger ``procflow.events``); ``procflow.otel`` has an
observer that emits OpenTelemetry spans.

An observer must not raise: an exception is logged and otherwise ignored,
so that watching a workflow can never change what it does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoggingObserver", "Observed", "Observer"]


@dataclass(frozen=True, slots=True)
class Observed:
    """One thing that happened to an instance."""

    kind: str
    instance: str
    workflow: str
    name: str = ""
    thread: str = ""
    detail: str = ""
    at: float = 0.0


Observer = Callable[[Observed], None]
"""Called with each ``Observed``; must return quickly and not raise."""

_QUIET = {"step_started", "setup", "teardown"}


class LoggingObserver:
    """Logs every transition to ``logging.getLogger("procflow.events")``.

    Failures (``step_failed``, ``failed``, ``setup_error``,
    ``teardown_error``) at WARNING, frequent inner events (step started,
    setup, teardown) at DEBUG, the rest at INFO; each record carries the
    ``Observed`` as ``record.procflow`` for structured handlers.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("procflow.events")

    def __call__(self, event: Observed) -> None:
        if event.kind in {"step_failed", "failed", "setup_error", "teardown_error"}:
            level = logging.WARNING
        elif event.kind in _QUIET:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        where = " ".join(x for x in (event.name, f"[{event.thread}]" if event.thread else "") if x)
        self.logger.log(
            level,
            "%s %s %s%s",
            event.workflow,
            event.instance,
            event.kind,
            f" {where}" if where else "",
            extra={"procflow": event},
        )
