"""The errors every store raises, worded alike."""

from __future__ import annotations

from ..errors import ConflictError, DuplicateInstanceError, InstanceNotFound
from .base import InstanceRecord

__all__ = [
    "conflict",
    "correlation_is_anothers_id",
    "correlation_not_found",
    "duplicate_correlation",
    "duplicate_id",
    "key_not_found",
    "key_of_another",
    "not_found",
]


def not_found(id: str) -> InstanceNotFound:
    """No instance has this id."""
    return InstanceNotFound(f"no instance has id {id!r}: check the id, or look it up by correlation id")


def key_not_found(key: str) -> InstanceNotFound:
    """No instance has this id, nor this correlation id."""
    return InstanceNotFound(f"no instance has id or correlation id {key!r}")


def correlation_not_found(correlation_id: str) -> InstanceNotFound:
    """No instance has this correlation id."""
    return InstanceNotFound(
        f"no instance has correlation id {correlation_id!r}: check it, or look the instance up by its id"
    )


def conflict(id: str, loaded: int, stored: object) -> ConflictError:
    """The instance was saved by someone else since version ``loaded`` was read."""
    return ConflictError(
        f"instance {id!r} changed since it was loaded (loaded version {loaded}, stored version {stored}): "
        "someone else saved it first; load it again and retry"
    )


def duplicate_id(id: str) -> DuplicateInstanceError:
    """The id is taken."""
    return DuplicateInstanceError(f"an instance with id {id!r} already exists: choose another id")


def key_of_another(new: InstanceRecord, owner: str, owner_correlation: str | None) -> DuplicateInstanceError:
    """The new instance's id is the correlation id of instance ``owner``, or its correlation id ``owner``."""
    key = new.id if owner_correlation == new.id else new.correlation_id or new.id
    return DuplicateInstanceError(
        f"{key!r} already finds instance {owner!r} (an id and a correlation id are looked up alike): "
        f"instance {new.id!r} needs another one"
    )


def duplicate_correlation(correlation_id: str, owner: str, id: str) -> DuplicateInstanceError:
    """The correlation id belongs to instance ``owner``, so instance ``id`` cannot have it."""
    return DuplicateInstanceError(
        f"correlation id {correlation_id!r} already belongs to instance {owner!r}: "
        f"instance {id!r} needs another one"
    )


def correlation_is_anothers_id(correlation_id: str, id: str) -> DuplicateInstanceError:
    """Instance ``id`` cannot take another instance's id as its correlation id."""
    return DuplicateInstanceError(
        f"{correlation_id!r} already finds instance {correlation_id!r} by its id (an id and a correlation id "
        f"are looked up alike): instance {id!r} needs another correlation id"
    )
