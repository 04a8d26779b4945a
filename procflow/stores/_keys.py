"""Which keys (ids, correlation ids, idempotency keys) every store can keep.

A key must be storable in every store, so that an instance can move from one
to another: text that encodes as UTF-8 (no lone surrogate, which a file name
that is not UTF-8 may hold) and holds no NUL character (PostgreSQL's text
refuses it). Stores refuse other keys when writing them, and find nothing for
them when looking them up, without asking the database.
"""

from __future__ import annotations

from ..errors import StoreError

__all__ = ["check_key", "storable"]


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
    why = "a NUL character" if "\x00" in key else "a lone surrogate (text that is not valid Unicode)"
    raise StoreError(
        f"the {what} {key!r} cannot be stored: it holds {why}, which not every database can keep; "
        "make it plain text (decode bytes as UTF-8 or escape them, and leave out NUL characters)"
    )
