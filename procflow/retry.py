"""Retry policies for steps: ``Step(..., retry=Retry(max_attempts=5, backoff=Backoff(...)))``."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

__all__ = ["Backoff", "Retry"]


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter and a cap.

    The wait before attempt ``n + 1`` is ``initial * multiplier ** (n - 1)``,
    at most ``cap``, then moved by up to ``jitter`` (a fraction) either way,
    so that instances failing together do not retry together.
    """

    initial: timedelta | float = 1.0
    multiplier: float = 2.0
    cap: timedelta | float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name in ("initial", "cap"):
            value = getattr(self, name)
            if (
                not isinstance(value, (timedelta, int, float))
                or isinstance(value, bool)
                or _seconds(value) < 0
            ):
                raise ValueError(
                    f"Backoff: {name} must be seconds (or a timedelta) of at least 0, got {value!r}"
                )
        if (
            isinstance(self.multiplier, bool)
            or not isinstance(self.multiplier, (int, float))
            or self.multiplier < 1
        ):
            raise ValueError(f"Backoff: multiplier must be a number of at least 1, got {self.multiplier!r}")
        if (
            isinstance(self.jitter, bool)
            or not isinstance(self.jitter, (int, float))
            or not 0 <= self.jitter <= 1
        ):
            raise ValueError(f"Backoff: jitter must be a fraction from 0 to 1, got {self.jitter!r}")

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failed_attempts`` failures (1 or more)."""
        initial, cap = _seconds(self.initial), _seconds(self.cap)
        try:
            grown = initial * float(self.multiplier) ** max(failed_attempts - 1, 0)
        except OverflowError:  # a policy that retries for ever, after a thousand failures
            grown = math.inf
        base = min(grown, cap) if initial > 0 else 0.0
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a failing step is tried, and how long to wait in between.

    ``max_attempts`` counts the first try. An error that is an instance of one
    of ``non_retryable`` fails the instance at once.

    ``non_retryable`` may be any iterable of exception classes (or one
    class); it is kept as a tuple.

    Raises:
        ValueError: ``max_attempts`` is not an int of at least 1.
        TypeError: ``backoff`` is not a ``Backoff``, or ``non_retryable``
            holds something that is not an exception class.
    """

    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise ValueError(f"Retry: max_attempts must be an int of at least 1, got {self.max_attempts!r}")
        if not isinstance(self.backoff, Backoff):
            raise TypeError(f"Retry: backoff must be a procflow.Backoff, got {self.backoff!r}")
        kinds: Any = self.non_retryable
        try:
            kinds = (kinds,) if isinstance(kinds, type) else tuple(kinds)
        except TypeError:
            kinds = (kinds,)
        for kind in kinds:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"Retry: non_retryable must hold exception classes, got {kind!r}")
        object.__setattr__(self, "non_retryable", kinds)

    def retries(self, failed_attempts: int, error: BaseException | None) -> bool:
        """Whether to try again after ``failed_attempts`` failures, the last with ``error``."""
        if error is not None and isinstance(error, self.non_retryable):
            return False
        return failed_attempts < self.max_attempts
