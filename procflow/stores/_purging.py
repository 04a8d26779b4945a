"""What every store's ``purge`` deletes: instances that are over, last written before a time."""

from __future__ import annotations

import math

from ._columns import to_ms
from ._listing import check_limit

__all__ = ["OVER", "OVER_SQL", "check_purge"]

OVER = frozenset({"FINISHED", "CANCELLED"})
"""The statuses of instances that are over: nothing runs them again, no event reaches them."""

OVER_SQL = "status IN ('FINISHED', 'CANCELLED')"
"""``OVER`` as SQL, word for word the predicate of the ``procflow_instance_over`` index: a query must
say it in literals, as the index does, for the database to know the index covers it."""


def check_purge(before: float, limit: int) -> int:
    """``before`` in whole milliseconds, as ``updated_at`` is kept, once the arguments are checked.

    Raises:
        ValueError: ``limit`` is below 1, or ``before`` is NaN (before no time
            and after none: ``to_ms`` would read it as the end of time).
    """
    check_limit(limit)
    if math.isnan(before):
        raise ValueError("purge needs a time to compare updated_at with, got NaN")
    return to_ms(before)
