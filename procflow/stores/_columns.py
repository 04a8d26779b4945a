"""Reading stored columns defensively, and the stores' millisecond clock.

A row may hold anything: a hand-edited file, a foreign tool, a disk error.
The stores turn whatever a column holds into the type the record needs and
leave the judgement (bad JSON, unknown workflow) to the engine, so one bad
row never takes a listing or the store down.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .base import InstanceRecord

__all__ = [
    "COLUMNS",
    "MAX_MS",
    "MIN_MS",
    "as_float_seconds",
    "as_int",
    "as_optional_seconds",
    "as_optional_text",
    "as_text",
    "now_ms",
    "optional_ms",
    "prefer_id",
    "record_from_row",
    "stored_as",
    "to_ms",
]


COLUMNS = "id, workflow, status, data, state, version, correlation_id, created_at, updated_at, due_at, meta"
"""The columns, in the order :func:`record_from_row` reads them."""


def now_ms() -> int:
    """The current time in whole milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


MAX_MS = 2**63 - 1
"""The latest time a store keeps, in milliseconds: the largest 64-bit integer (year 292 million)."""

MIN_MS = -(2**63)
"""The earliest time a store keeps, in milliseconds: the smallest 64-bit integer."""

_BEYOND = 2.0**63  # the first float past MAX_MS


def to_ms(seconds: float) -> int:
    """A Unix timestamp in seconds, rounded to whole milliseconds, clamped to what a store keeps.

    SQLite's and PostgreSQL's integer columns hold 64 bits, so a time past
    :data:`MAX_MS` (a timer set for the year 292 million, or for infinity)
    becomes :data:`MAX_MS`, and one before :data:`MIN_MS` becomes that: a
    due time so far off is "never" in practice, and every store keeps it
    alike instead of failing the write. NaN, which is before or after no
    time, becomes :data:`MAX_MS` too: never due.
    """
    ms = seconds * 1000
    if ms < _BEYOND:
        return round(ms) if ms >= -_BEYOND else MIN_MS
    return MAX_MS  # past the range, infinite, or NaN


def optional_ms(seconds: float | None) -> int | None:
    """Like :func:`to_ms` (clamped alike), but ``None`` stays ``None``."""
    return None if seconds is None else to_ms(seconds)


def as_text(value: object) -> str:
    """A column as text: bytes are decoded leniently, ``NULL`` becomes ``""``."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def as_optional_text(value: object) -> str | None:
    """Like :func:`as_text`, but ``NULL`` stays ``None``."""
    return None if value is None else as_text(value)


def as_int(value: object) -> int:
    """A column as an integer; anything that is not one becomes 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(as_text(value))
    except ValueError:
        return 0


def as_float_seconds(value: object) -> float:
    """A millisecond column as Unix seconds; anything that is not a number becomes 0.0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000
    try:
        return float(as_text(value)) / 1000
    except ValueError:
        return 0.0


def as_optional_seconds(value: object) -> float | None:
    """A nullable millisecond column as Unix seconds; ``NULL`` (or junk) becomes ``None``."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000
    try:
        return float(as_text(value)) / 1000
    except ValueError:
        return None


def record_from_row(row: Sequence[object]) -> InstanceRecord:
    """The record of a row of :data:`COLUMNS`, whatever the columns hold."""
    id, workflow, status, data, state, version, correlation_id, created_at, updated_at, due_at, meta = row
    return InstanceRecord(
        id=as_text(id),
        workflow=as_text(workflow),
        status=as_text(status),
        data=as_text(data),
        state=as_text(state),
        version=as_int(version),
        correlation_id=as_optional_text(correlation_id),
        created_at=as_float_seconds(created_at),
        updated_at=as_float_seconds(updated_at),
        due_at=as_optional_seconds(due_at),
        meta=as_text(meta),
    )


def stored_as(
    record: InstanceRecord, *, version: int, created_at: float, updated_at: float
) -> InstanceRecord:
    """The record as a store keeps it: new version and timestamps, ``due_at`` to the millisecond.

    ``due_at`` is clamped as :func:`to_ms` clamps it, so a due time past the
    year 292 million comes back the same from every store.
    """
    # Built directly: dataclasses.replace costs as much as the rest of a write's Python.
    due = record.due_at
    return InstanceRecord(
        record.id,
        record.workflow,
        record.status,
        record.data,
        record.state,
        version,
        record.correlation_id,
        created_at,
        updated_at,
        None if due is None else to_ms(due) / 1000,
        record.meta,
    )


def prefer_id(records: Sequence[InstanceRecord], key: str) -> InstanceRecord | None:
    """Of the rows a look-up by id or correlation id found, the one whose id is ``key``.

    Ids and correlation ids are unique each, so there are at most two rows;
    an id wins over another instance's equal correlation id.
    """
    for record in records:
        if record.id == key:
            return record
    return records[0] if records else None
