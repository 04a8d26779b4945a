"""Time, read through one injectable clock so tests can move it instead of sleeping."""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "SystemClock", "TestClock", "current_clock", "use_clock"]


@runtime_checkable
class Clock(Protocol):
    """Where procflow reads the time: Unix seconds, and a way to wait."""

    def now(self) -> float:
        """The current time in Unix seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real time (``time.time``) and real sleeping."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))


class TestClock:
    """A clock that moves only when told to: ``advance(seconds)`` or ``set(timestamp)``.

    ``sleep`` returns once the clock has been moved past the deadline (it
    checks between short real naps), so a worker driven by a ``TestClock``
    wakes when the test advances time.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float | timedelta) -> None:
        """Move the clock forward by ``seconds`` (or a ``timedelta``).

        Raises:
            ValueError: ``seconds`` is negative or not a finite number.
        """
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 <= step < math.inf:
            raise ValueError(f"a clock only moves forward, by a finite number of seconds; got {seconds!r}")
        self._now += step

    def set(self, timestamp: float) -> None:
        """Move the clock to ``timestamp``.

        Raises:
            ValueError: ``timestamp`` is in the clock's past.
        """
        self.advance(timestamp - self._now)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has moved ``seconds`` on; like ``anyio.sleep``, it always
        lets other tasks run, even for ``0``."""
        deadline = self._now + seconds
        await anyio.lowlevel.checkpoint()
        while self._now < deadline:
            await anyio.sleep(0.001)


_SYSTEM = SystemClock()
_current: contextvars.ContextVar[Clock | None] = contextvars.ContextVar("procflow_clock", default=None)


def current_clock() -> Clock:
    """The clock of the running engine operation, else the system clock."""
    return _current.get() or _SYSTEM


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Make ``clock`` the current clock inside the ``with`` block."""
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)
