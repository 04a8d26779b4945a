"""Calling user code that may be sync or async."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, TypeGuard

# What user code returns most of the time, none of it awaitable.
_PLAIN = frozenset({str, int, float, bool, bytes, dict, list, tuple, type(None)})


def isawaitable(value: object) -> TypeGuard[Awaitable[Any]]:
    """``inspect.isawaitable(value)``, answered at once for coroutines and plain values.

    ``inspect.isawaitable`` ends in an ``isinstance`` check against an ABC,
    which costs more than a step's own bookkeeping.
    """
    cls = type(value)
    if cls is CoroutineType:
        return True
    if cls in _PLAIN:
        return False
    return inspect.isawaitable(value)


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` and await the result when it is awaitable."""
    result = fn(*args)
    if result is not None and isawaitable(result):
        return await result
    return result
