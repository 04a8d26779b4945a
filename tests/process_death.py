"""A stand-in for the death of the process, for tests of what the engine saved before it."""

from __future__ import annotations


class ProcessDied(BaseException):
    """Raised where the process would die: no ``except Exception`` catches it, as none survives a crash."""
