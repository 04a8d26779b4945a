"""Query parameters of the HTTP edge, parsed strictly."""

from __future__ import annotations

from starlette.requests import Request

from ..state import WorkflowStatus
from .errors import BadRequest

__all__ = ["MAX_PAGE", "int_param", "key_param", "statuses_param"]

MAX_PAGE = 1000
"""The largest page a listing returns."""

_STATUSES = {s.value for s in WorkflowStatus}


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``, or ``default`` when absent.

    Raises:
        BadRequest: it is not an integer or out of range.
    """
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be between {low} and {high}, got {value}")
    return value


def statuses_param(request: Request) -> list[str] | None:
    """The ``status`` filters (repeatable, any case), or ``None`` for any status.

    Raises:
        BadRequest: one is not a ``WorkflowStatus``.
    """
    values = [v.upper() for v in request.query_params.getlist("status")]
    for v in values:
        if v not in _STATUSES:
            raise BadRequest(f"status must be one of {sorted(_STATUSES)} (any case), got {v.lower()!r}")
    return values or None


def key_param(request: Request, name: str) -> str | None:
    """An optional id-like query parameter that fits in a path segment: non-empty,
    without ``/``, and not ``.`` or ``..`` (which clients resolve away in a URL).

    Raises:
        BadRequest: it is empty, holds a ``/``, or is ``.`` or ``..``.
    """
    value = request.query_params.get(name)
    if value is not None and (not value or "/" in value or value in (".", "..")):
        raise BadRequest(
            f"query parameter {name!r} must be non-empty, without '/' and not '.' or '..' "
            f"(it becomes part of the instance's URL), got {value!r}"
        )
    return value
