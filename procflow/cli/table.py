"""Plain-text tables for the terminal, with colour when the output is a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["Style", "render_table"]

_STATUS_COLOURS = {
    "FINISHED": "32",  # green
    "WAITING": "33",  # yellow
    "RESUMING": "36",  # cyan
    "CANCELLED": "31",  # red
    "FAILED": "31",
}


class Style:
    """ANSI styling, switched off when ``out`` is not a terminal or ``NO_COLOR`` is set."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.enabled = out.isatty() and "NO_COLOR" not in os.environ

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def status(self, text: str) -> str:
        code = _STATUS_COLOURS.get(text)
        return self._wrap(code, text) if code else text


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    style: Style,
    *,
    status_column: int | None = None,
) -> str:
    """Render ``rows`` under ``headers`` with aligned columns.

    Widths are computed on the plain text, so colouring one column (the
    status column) does not break the alignment.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [
        "  ".join(style.bold(h.ljust(w)) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join(style.dim("─" * w) for w in widths),
    ]
    for row in rows:
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(w)
            cells.append(style.status(cell) + padded[len(cell) :] if i == status_column else padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
