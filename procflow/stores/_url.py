"""``open_store``: a store from a URL, as the command line takes it."""

from __future__ import annotations

import os
from typing import cast
from urllib.parse import parse_qsl, unquote_to_bytes

from ..errors import StoreError
from .base import Store
from .memory import MemoryStore
from .postgres import PostgresStore
from .sqlite import SQLiteStore, Synchronous

__all__ = ["open_store"]

_KNOWN = "use sqlite:///relative/path.db, sqlite:////absolute/path.db, memory:// or postgresql://user@host/database"
_SQLITE_PARAMETERS = "timeout=<seconds> and synchronous=OFF|NORMAL|FULL|EXTRA"


def open_store(url: str) -> Store:
    """The store a URL names (not yet opened: the engine opens it). The scheme may be in any case.

    - ``sqlite:///orders.db``: a file relative to the current folder;
      ``sqlite:////var/lib/orders.db``: an absolute path. The path is
      percent-decoded (``my%20orders.db`` is ``my orders.db``; write ``?``
      and ``#`` in a file name as ``%3F`` and ``%23``). The query may set
      ``timeout`` (seconds, how long to wait for another process's write)
      and ``synchronous`` (``OFF``, ``NORMAL``, ``FULL`` or ``EXTRA``), as
      ``SQLiteStore`` takes them: ``sqlite:///orders.db?timeout=10``.
    - ``memory://``: a ``MemoryStore``.
    - ``postgresql://user@host:5432/db`` (or ``postgres://...``): a
      ``PostgresStore`` with that DSN, its scheme in lower case as libpq
      wants it.

    Raises:
        StoreError: the URL names no store procflow knows, a SQLite URL has a
            query parameter other than ``timeout`` and ``synchronous`` (or a
            bad value for one) or a fragment, or a PostgreSQL URL is given and
            psycopg is not installed.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return _sqlite(url, rest[1:])
    if sep and scheme == "memory" and rest == "":
        return MemoryStore()
    if sep and scheme in ("postgresql", "postgres"):
        return PostgresStore(f"{scheme}://{rest}")
    raise StoreError(f"cannot open a store from {url!r}: {_KNOWN}")


def _sqlite(url: str, rest: str) -> SQLiteStore:
    """The SQLite store of ``url``, whose part after ``sqlite:///`` is ``rest``."""
    if "#" in rest:
        raise StoreError(
            f"cannot open a store from {url!r}: a SQLite URL has no fragment; write a # in a file name as %23"
        )
    quoted_path, _, query = rest.partition("?")
    path = os.fsdecode(unquote_to_bytes(quoted_path))  # bytes that are not UTF-8 name files too
    if not path or "\x00" in path:
        raise StoreError(f"cannot open a store from {url!r}: it names no file; {_KNOWN}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        pairs = [("", query)]
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in ("timeout", "synchronous") or name in options:
            what = f"parameter {name!r} twice" if name in options else f"parameter {name or query!r}"
            raise StoreError(
                f"cannot open a store from {url!r}: a SQLite URL takes {_SQLITE_PARAMETERS}, "
                f"not {what}; write a ? in a file name as %3F"
            )
        options[name] = value
    timeout = 5.0
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 <= timeout < float("inf"):
            raise StoreError(
                f"cannot open a store from {url!r}: timeout must be a number of seconds, "
                f"not {options['timeout']!r}"
            )
    synchronous = options.get("synchronous", "FULL").upper()
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise StoreError(
            f"cannot open a store from {url!r}: synchronous must be OFF, NORMAL, FULL or EXTRA, "
            f"not {options['synchronous']!r}"
        )
    return SQLiteStore(path, timeout=timeout, synchronous=cast(Synchronous, synchronous))
