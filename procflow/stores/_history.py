"""The compact form in which SQL stores keep history lines.

Each write stores its history lines as one row: the time of the first line
in milliseconds, and a JSON array with one array per line,
``[ms after the first line, kind, name, thread, detail]`` with trailing
empty strings left out. A parked instance's history costs a few dozen bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..errors import StoreError
from ._columns import as_int, as_text, to_ms
from .base import HistoryEntry

__all__ = ["decode_entries", "encode_entries"]

_COMPACT = (",", ":")


def encode_entries(entries: Sequence[HistoryEntry]) -> tuple[int, str]:
    """The ``(first at in ms, JSON text)`` of one write's history lines.

    Raises:
        StoreError: ``entries`` is empty (the caller writes no history row then).
    """
    if not entries:
        raise StoreError("no history lines to encode")
    base = to_ms(entries[0].at)
    lines: list[list[int | str]] = []
    for entry in entries:
        line: list[int | str] = [to_ms(entry.at) - base, entry.kind, entry.name, entry.thread, entry.detail]
        while len(line) > 2 and line[-1] == "":
            line.pop()
        lines.append(line)
    return base, json.dumps(lines, separators=_COMPACT, ensure_ascii=False)


def decode_entries(at: object, text: object) -> list[HistoryEntry]:
    """The history lines of one stored row.

    Never raises: a row that cannot be read becomes one line of kind
    ``unreadable`` whose detail is the stored text, so an audit still shows it.
    """
    base = as_int(at)
    raw = as_text(text)
    try:
        lines = json.loads(raw)
        return [_line(base, line) for line in lines]
    except (ValueError, TypeError, IndexError):
        return [HistoryEntry(at=base / 1000, kind="unreadable", detail=raw)]


def _line(base: int, line: list[object]) -> HistoryEntry:
    if not isinstance(line, list) or len(line) < 2:
        raise ValueError(f"not a history line: {line!r}")
    fields = [as_text(value) for value in line[1:5]]
    fields += [""] * (4 - len(fields))
    return HistoryEntry(
        at=(base + as_int(line[0])) / 1000,
        kind=fields[0],
        name=fields[1],
        thread=fields[2],
        detail=fields[3],
    )
