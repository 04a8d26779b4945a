"""Timer events: ``On("expired", Timer(after=...))`` and the ``Sleep`` statement.

A timer's setup computes its due time from the current clock and keeps it in
the event's ``setup_data``, so it is stored with the instance's state and
removed with it when the Wait is left (its teardown has nothing else to do).
The engine indexes the earliest due time of each instance; a worker, or the
next touch of the instance, delivers the event when it is due.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from .clock import current_clock
from .errors import DefinitionError
from .handlers import Handler
from .state import CallbackRequest, WaitEvent, WaitEventStatus
from .statements import On, Wait

__all__ = ["Sleep", "Timer", "due_at"]

TIMER_TYPE = "timer"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _seconds(value: timedelta | float) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if not _is_number(value):
        raise DefinitionError(
            f"Timer(after={value!r}) needs seconds (a number) or a timedelta, e.g. timedelta(minutes=10)"
        )
    return float(value)


def _timestamp(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DefinitionError(f"Timer(at={value!r}) needs a timezone-aware datetime")
        return value.timestamp()
    if not _is_number(value):
        raise DefinitionError(
            f"Timer(at={value!r}) needs a timezone-aware datetime or a Unix timestamp; "
            "for a day, write datetime(2030, 1, 1, tzinfo=UTC)"
        )
    return float(value)


class Timer(Handler):
    """An event that arrives by itself: ``after`` a duration from parking, or ``at`` a time.

    ``after`` is a ``timedelta`` or seconds; ``at`` an aware ``datetime`` or a
    Unix timestamp (an absolute deadline, e.g. from the workflow's data).

    Raises:
        DefinitionError: neither or both of ``after`` and ``at`` are given,
            ``after`` is no number or ``timedelta``, or ``at`` is no aware
            ``datetime`` or number.
    """

    type = TIMER_TYPE
    side_effects = False  # the due time is stored with the state itself

    def __init__(self, after: timedelta | float | None = None, *, at: datetime | float | None = None) -> None:
        if (after is None) == (at is None):
            raise DefinitionError("Timer takes exactly one of after=... and at=...")
        self.after = None if after is None else _seconds(after)
        self.at = None if at is None else _timestamp(at)

    def setup(self, req: CallbackRequest) -> str:
        due = self.at if self.at is not None else current_clock().now() + (self.after or 0.0)
        return repr(due)

    def handle(self, req: CallbackRequest, payload: Any) -> None:
        return None


def Sleep(name: str, duration_or_until: timedelta | float | datetime) -> Wait:
    """A statement that parks the thread for a duration, or until an aware ``datetime``.

    It is a ``Wait`` named ``name`` with one timer event, ``"<name> elapsed"``.
    """
    if isinstance(duration_or_until, (datetime, date)):
        timer = Timer(at=duration_or_until)  # a date that is no datetime is refused there
    else:
        timer = Timer(after=duration_or_until)
    return Wait(name, On(f"{name} elapsed", timer))


def due_at(event: WaitEvent) -> float | None:
    """When a parked timer event is due, or ``None`` for other events."""
    if event.type != TIMER_TYPE or event.status != WaitEventStatus.SETUP:
        return None
    try:
        return float(event.req.setup_data)
    except ValueError:
        return None
