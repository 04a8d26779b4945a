"""What ``Store.list`` filters mean, shared by the stores."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from ._keys import check_filter
from .base import InstanceRecord

__all__ = ["check_filters", "check_limit", "merge_by_id", "page_query", "status_filter"]


def status_filter(status: str | Sequence[str] | None) -> list[str] | None:
    """The statuses to keep, without duplicates, or ``None`` for any status."""
    if status is None:
        return None
    if isinstance(status, str):
        return [status]
    return sorted(set(status))


def check_limit(limit: int) -> None:
    """Check a page size.

    Raises:
        ValueError: ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")


def check_filters(*, workflow: str | None, statuses: Sequence[str] | None, after: str | None) -> None:
    """Refuse filters that hold a lone surrogate or a NUL character, as every store does.

    Raises:
        StoreError: one of them does (see ``_keys.check_filter``).
    """
    check_filter(workflow, "workflow")
    for status in statuses or ():
        check_filter(status, "status")
    check_filter(after, "after")


def merge_by_id(pages: Iterable[list[InstanceRecord]], limit: int) -> list[InstanceRecord]:
    """The first ``limit`` records of several id-ordered pages, in id order.

    The SQL stores run one indexed query per status and merge them here,
    which stays fast where a single ``status IN (...) ORDER BY id`` would sort.
    """
    merged = heapq.merge(*pages, key=lambda record: record.id)
    return [record for _, record in zip(range(limit), merged, strict=False)]


def page_query(
    columns: str, *, status: str | None, workflow: str | None, after: str | None, limit: int, mark: str
) -> tuple[str, list[Any]]:
    """The SQL (with ``mark`` as its placeholder) and parameters of one page of instances.

    The query is a range on the ``(status, id)`` index when ``status`` is
    given, and on the unique id index otherwise.
    """
    where: list[str] = []
    params: list[Any] = []
    for condition, value in (("status =", status), ("workflow =", workflow), ("id >", after)):
        if value is not None:
            where.append(f"{condition} {mark}")
            params.append(value)
    sql = f"SELECT {columns} FROM procflow_instance"
    if where:
        sql += " WHERE " + " AND ".join(where)
    params.append(limit)
    return f"{sql} ORDER BY id LIMIT {mark}", params
