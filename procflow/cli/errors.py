"""Errors of the ``procflow`` command itself."""

from __future__ import annotations

from ..errors import ProcflowError

__all__ = ["CommandError"]


class CommandError(ProcflowError):
    """A command-line argument that cannot be used (a bad --app, JSON payload, ...)."""
