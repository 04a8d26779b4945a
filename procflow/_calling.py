"""Calling user code that may be sync or async."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` and await the result when it is awaitable."""
    result = fn(*args)
    if result is not None and inspect.isawaitable(result):
        return await result
    return result
