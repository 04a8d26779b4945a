"""The compact form in which SQL stores keep history lines.

Each write stores its history lines as one row: the time of the first line
in milliseconds, and a JSON array with one array per line,
``[ms after the first line, kind, name, thread, detail]`` with trailing
empty strings left out, and the main thread written as ``1`` rather than
its id. A parked instance's history costs a few dozen bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic_core import from_json, to_json

from ..errors import StoreError
from ..state import MAIN_THREAD
from ._columns import as_int, as_text, to_ms
from .base import HistoryEntry

__all__ = ["decode_entries", "encode_entries"]

_MAIN = 1
"""How a line names the main thread (its id would cost seven bytes more)."""


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
        thread: int | str = _MAIN if entry.thread == MAIN_THREAD else entry.thread
        line: list[int | str] = [to_ms(entry.at) - base, entry.kind, entry.name, thread, entry.detail]
        while len(line) > 2 and line[-1] == "":
            line.pop()
        lines.append(line)
    return base, to_json(lines).decode()


def decode_entries(at: object, text: object) -> list[HistoryEntry]:
    """The history lines of one stored row.

    Never raises: a row that cannot be read becomes one line of kind
    ``unreadable`` whose detail is the stored text, so an audit still shows it.
    """
    base = as_int(at)
    raw = as_text(text)
    try:
        lines = from_json(raw)
        return [_line(base, line) for line in lines]
    except (ValueError, TypeError, IndexError):
        return [HistoryEntry(at=base / 1000, kind="unreadable", detail=raw)]


def _line(base: int, line: list[object]) -> HistoryEntry:
    if not isinstance(line, list) or len(line) < 2:
        raise ValueError(f"not a history line: {line!r}")
    kind, name, thread, detail = [*line[1:5], "", "", ""][:4]
    return HistoryEntry(
        at=(base + as_int(line[0])) / 1000,
        kind=as_text(kind),
        name=as_text(name),
        thread=MAIN_THREAD if type(thread) is int and thread == _MAIN else as_text(thread),
        detail=as_text(detail),
    )
