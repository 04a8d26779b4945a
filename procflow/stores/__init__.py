"""Where the engine keeps workflow instances.

``Store`` is the protocol; ``MemoryStore`` (tests, examples), ``SQLiteStore``
(the embedded default) and ``PostgresStore`` (many processes on many hosts)
implement it, and ``open_store`` makes one from a URL. ``PostgresStore`` needs
the ``postgres`` extra, which is imported only when one is made.
"""

from ._url import open_store
from .base import HistoryEntry, InstanceRecord, Store
from .memory import MemoryStore
from .postgres import PostgresStore
from .sqlite import SQLiteStore

__all__ = [
    "HistoryEntry",
    "InstanceRecord",
    "MemoryStore",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "open_store",
]
