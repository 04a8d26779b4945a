"""Retention: removing instances that are over once they are old enough (``Engine.purge``).

An instance that finished or was cancelled stays in the store, with its
history and its kept replies, until it is purged: ``purge`` deletes those
last written longer ago than a given age, in batches, one transaction each,
through the store's ``purge`` (see ``procflow.stores.base.Store.purge``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ._calling import call
from .errors import StoreError
from .state import WorkflowStatus
from .stores._columns import to_ms

__all__ = ["OnBatch", "PurgeNotSupported", "age_seconds", "check_batch", "purge"]

logger = logging.getLogger("procflow")

OnBatch = Callable[[list[str]], Any]
"""Told the ids of each batch once it is deleted (sync or async)."""

_OVER = [WorkflowStatus.FINISHED.value, WorkflowStatus.CANCELLED.value]


class PurgeNotSupported(StoreError):
    """The engine's store has no ``purge`` method (a store of the application's own, written before it).

    Nothing was deleted. Give the store a ``purge(before, *, limit)`` as
    ``procflow.Store`` describes it, or keep the instances in one of
    procflow's stores.
    """


def age_seconds(older_than: timedelta | float) -> float:
    """``older_than`` in seconds: a ``timedelta`` or a number of seconds, finite and not negative.

    Raises:
        TypeError: it is neither a number nor a ``timedelta`` (a ``bool`` or a
            string such as ``"30d"`` included).
        ValueError: it is negative, NaN or infinite.
    """
    if isinstance(older_than, timedelta):
        seconds = older_than.total_seconds()
    elif isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        seconds = float(older_than)
    else:
        raise TypeError(
            f"older_than is seconds (a number) or a timedelta, e.g. timedelta(days=30); got {older_than!r}"
        )
    if not 0 <= seconds < math.inf:  # NaN fails both comparisons
        raise ValueError(f"older_than must be a finite duration of at least 0 seconds, got {older_than!r}")
    return seconds


def check_batch(batch: int) -> None:
    """Check how many instances one transaction may delete.

    Raises:
        TypeError: ``batch`` is not a whole number.
        ValueError: ``batch`` is below 1.
    """
    if not isinstance(batch, int) or isinstance(batch, bool):
        raise TypeError(f"batch is a whole number of instances, got {batch!r}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")


async def purge(
    store: Any,
    now: float,
    *,
    older_than: timedelta | float,
    batch: int,
    dry_run: bool = False,
    on_batch: OnBatch | None = None,
) -> int:
    """Delete the instances of ``store`` that are over and were last written ``older_than`` before ``now``.

    ``now`` is the engine's clock; ``updated_at`` is stamped by the store with
    the system's time, so the two agree unless a test clock was set elsewhere.
    Batch after batch of at most ``batch`` instances, each deleted with its
    history and kept replies in one transaction, until a batch comes back
    short; ``on_batch`` (sync or async) is told the ids of each one, once it
    is committed. Returns how many were deleted. With ``dry_run``, deletes
    nothing and returns how many would be deleted now, counted from a listing
    of the instances that are over (it reads each one of them).

    Raises:
        TypeError: ``older_than`` is no number or ``timedelta``, or ``batch``
            no whole number.
        ValueError: ``older_than`` is negative, NaN or infinite, or ``batch``
            is below 1.
        PurgeNotSupported: the store has no ``purge`` method.
        StoreError: the store failed; the batches committed before stay deleted.
    """
    before = now - age_seconds(older_than)
    check_batch(batch)
    delete = getattr(store, "purge", None)
    if not callable(delete):
        raise PurgeNotSupported(
            f"the store {store!r} has no purge(before, *, limit) method, so old instances cannot be "
            f"removed from it; give {type(store).__name__} one (see procflow.Store.purge: delete up to "
            "limit FINISHED and CANCELLED instances whose updated_at is before `before`, with their "
            "history and kept replies, in one transaction, and return their ids), or use one of "
            "procflow's stores"
        )
    if dry_run:
        return await _count_old(store, before)
    total = 0
    while True:
        ids = list(await delete(before, limit=batch))
        total += len(ids)
        if ids and on_batch is not None:
            await call(on_batch, ids)
        if len(ids) < batch:
            break
    if total:
        logger.info("purge: removed %d instance(s) finished or cancelled before %s", total, _when(before))
    return total


def _when(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):  # before the year 1 (an age of millennia)
        return f"{timestamp:.3f}"


async def _count_old(store: Any, before: float) -> int:
    cutoff = to_ms(before)
    count = 0
    after: str | None = None
    while True:
        page = await store.list(status=_OVER, after=after, limit=1000)
        count += sum(1 for record in page if to_ms(record.updated_at) < cutoff)
        if len(page) < 1000:
            return count
        after = page[-1].id
