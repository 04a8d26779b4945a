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
    status column) does not break the alignment. A cell of several lines (a
    traceback-like error) takes as many lines in its row, each continuing
    under its own column.
    """
    cells_lines = [[cell.splitlines() or [""] for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells_lines:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    out = [
        "  ".join(style.bold(h.ljust(w)) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join(style.dim("─" * w) for w in widths),
    ]
    for row in cells_lines:
        for k in range(max(len(lines) for lines in row)):
            cells = []
            for i, (lines, w) in enumerate(zip(row, widths, strict=True)):
                text = lines[k] if k < len(lines) else ""
                padded = text.ljust(w)
                cells.append(style.status(text) + padded[len(text) :] if i == status_column else padded)
            out.append("  ".join(cells).rstrip())
    return "\n".join(out)
