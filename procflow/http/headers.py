"""Request headers of the HTTP edge that carry procflow's options, parsed strictly."""

from __future__ import annotations

from starlette.requests import Request

from .errors import BadRequest

__all__ = ["IDEMPOTENCY_KEY", "MAX_IDEMPOTENCY_KEY", "idempotency_key"]

IDEMPOTENCY_KEY = "Idempotency-Key"
"""The header of a sender's key for one delivery: a repeat returns the first reply."""

MAX_IDEMPOTENCY_KEY = 255
"""The longest idempotency key accepted, in characters."""


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header, or ``None`` when the request has none.

    Raises:
        BadRequest: it is empty or longer than ``MAX_IDEMPOTENCY_KEY`` characters.
    """
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(f"the {IDEMPOTENCY_KEY} header must have 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return key
