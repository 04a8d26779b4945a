"""``open_store``: a store from a URL, as the command line takes it."""

from __future__ import annotations

from ..errors import StoreError
from .base import Store
from .memory import MemoryStore
from .postgres import PostgresStore
from .sqlite import SQLiteStore

__all__ = ["open_store"]


def open_store(url: str) -> Store:
    """The store a URL names (not yet opened: the engine opens it).

    - ``sqlite:///orders.db``: a file relative to the current folder;
      ``sqlite:////var/lib/orders.db``: an absolute path.
    - ``memory://``: a ``MemoryStore``.
    - ``postgresql://user@host:5432/db`` (or ``postgres://...``): a
      ``PostgresStore`` with that DSN.

    Raises:
        StoreError: the URL names no store procflow knows, or a PostgreSQL
            URL is given and psycopg is not installed.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return SQLiteStore(rest[1:])
    if sep and scheme == "memory" and rest == "":
        return MemoryStore()
    if sep and scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise StoreError(
        f"cannot open a store from {url!r}: use sqlite:///relative/path.db, sqlite:////absolute/path.db, "
        "memory:// or postgresql://user@host/database"
    )
