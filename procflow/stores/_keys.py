"""Which keys (ids, correlation ids, idempotency keys) every store can keep.

A key must be storable in every store, so that an instance can move from one
to another: text that encodes as UTF-8 (no lone surrogate, which a file name
that is not UTF-8 may hold) and holds no NUL character (PostgreSQL's text
refuses it). Stores refuse other keys when writing them, find nothing for
them when looking them up, and refuse them as filters of a listing (workflow,
status, ``after``), all without asking the database.
"""

from __future__ import annotations

from ..errors import StoreError

__all__ = ["check_filter", "check_key", "storable"]


def storable(key: str) -> bool:
    """Whether every store can keep ``key``: UTF-8 text without NUL characters."""
    if "\x00" in key:
        return False
    if key.isascii():
        return True
    try:
        key.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_key(key: str | None, what: str) -> None:
    """Refuse a key that some store could not keep; ``what`` names it ("id", "correlation id").

    Raises:
        StoreError: ``key`` holds a lone surrogate or a NUL character.
    """
    if key is None or storable(key):
        return
    raise StoreError(
        f"the {what} {key!r} cannot be stored: it holds {_fault(key)}, which not every database can keep; "
        "make it plain text (decode bytes as UTF-8 or escape them, and leave out NUL characters)"
    )


def check_filter(value: str | None, what: str) -> None:
    """Refuse a filter of ``Store.list`` that some store cannot compare; ``what`` names it ("after").

    A database refuses to be asked about such text, so the stores could not
    agree on a page for it: each refuses it alike, as a write of such a key
    is refused, rather than answer with a page that depends on the store.

    Raises:
        StoreError: ``value`` holds a lone surrogate or a NUL character.
    """
    if value is None or storable(value):
        return
    raise StoreError(
        f"cannot list instances with {what} {value!r}: it holds {_fault(value)}, "
        "which not every database can keep; pass plain text "
        "(decode bytes as UTF-8 or escape them, and leave out NUL characters)"
    )


def _fault(key: str) -> str:
    """What makes ``key`` unstorable, for a message."""
    return "a NUL character" if "\x00" in key else "a lone surrogate (text that is not valid Unicode)"
