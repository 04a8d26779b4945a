"""``WaitGroup``: a serialisable counter of unfinished work, like Go's ``sync.WaitGroup``."""

from __future__ import annotations

from pydantic import BaseModel

from .statements import WaitFor

__all__ = ["WaitGroup"]


class WaitGroup(BaseModel):
    """A counter kept in the workflow's data; ``wait(name)`` parks until it is zero.

    Typical use: ``add()`` before each ``Go``, ``done()`` as the thread's last
    step, and ``self.wg.wait("all done")`` in the thread that collects them.
    """

    count: int = 0

    def add(self, n: int = 1) -> None:
        """Add ``n`` (may be negative) to the counter.

        Raises:
            ValueError: the counter would go below zero.
        """
        count = self.count + n
        if count < 0:
            raise ValueError(
                f"WaitGroup counter would go below zero ({self.count} {'+' if n >= 0 else '-'} {abs(n)}): "
                "done() was called more often than add(); call add() before each Go whose thread calls done()"
            )
        # What pydantic's __setattr__ does for an int field, without its
        # microsecond of checks: done() is the last step of many threads.
        self.__dict__["count"] = count
        self.__pydantic_fields_set__.add("count")

    def done(self) -> None:
        """Subtract one from the counter.

        Raises:
            ValueError: the counter is already zero.
        """
        self.add(-1)

    def wait(self, name: str) -> WaitFor:
        """Return a ``WaitFor`` named ``name`` that parks until the counter is zero."""
        return WaitFor(name, lambda: self.count == 0)
