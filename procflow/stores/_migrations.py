"""Versioned schema migrations: an ordered list the SQL stores apply on open."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StoreError

__all__ = ["Migration", "pending"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a schema's history: the SQL that takes it to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


def pending(migrations: Sequence[Migration], current: int, *, where: str) -> list[Migration]:
    """The migrations to apply to a schema at version ``current``, in order.

    Raises:
        StoreError: the schema is newer than these migrations (a newer
            procflow wrote it), or the list is not numbered 1, 2, 3, ...
    """
    for number, migration in enumerate(migrations, start=1):
        if migration.version != number:
            raise StoreError(f"schema migrations must be numbered 1, 2, 3, ...: found {migration.version}")
    latest = len(migrations)
    if current > latest:
        raise StoreError(
            f"{where} has schema version {current}, newer than the {latest} this procflow knows: "
            "upgrade procflow to open it"
        )
    return list(migrations[current:])
