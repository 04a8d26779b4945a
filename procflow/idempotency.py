"""The replies the engine keeps for idempotency keys, and the request each one answered.

A send with an ``idempotency_key`` keeps its reply under that key, so that a
repeat runs nothing and gets the same reply. A key names one request: the
kept text starts with a digest of the request (event, thread id, pc and
payload), and a send that reuses the key for another request is refused
rather than answered with a reply that was never its own.

Stored text is ``"<64 hex digits>\\n<reply JSON>"``. Replies kept before
requests were recorded are the reply JSON alone (compact JSON never holds a
raw newline), and are returned to any repeat, as they were then.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .errors import IdempotencyKeyReused, PayloadError, UnstorableDataError

__all__ = ["kept_reply", "reply_json", "reply_to_keep", "request_digest"]

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_DIGEST_LENGTH = 64


def request_digest(event: str, thread_id: str, pc: int, payload: Any) -> str:
    """A SHA-256 digest of a send's request, for telling a repeat from another request.

    The payload is taken as JSON values with the keys of its objects sorted,
    so a repeat may list them in another order; infinities and NaN stay
    themselves (not ``null``). A dict and its JSON text still differ: send a
    payload in the same form each time.

    Raises:
        PayloadError: the payload has no JSON form, so a repeat cannot be told
            from another request.
    """
    try:
        value = to_jsonable_python(payload, by_alias=False, inf_nan_mode="constants")
        body = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (PydanticSerializationError, TypeError, ValueError) as e:
        raise PayloadError(
            f"a payload sent with an idempotency key must have a JSON form, to tell a repeat from another "
            f"request; {payload!r} has none ({e}): send JSON values or a pydantic model"
        ) from None
    request = json.dumps([event, thread_id, pc, body])
    return hashlib.sha256(request.encode()).hexdigest()


def reply_json(reply: Any, event: str, key: str) -> str:
    """The JSON text of a handler's ``reply`` to ``event``, to keep under ``key``.

    Raises:
        UnstorableDataError: ``reply`` has no JSON form, so a repeat could not
            be answered with it.
    """
    try:
        return _ANY.dump_json(reply).decode()
    except PydanticSerializationError as e:
        raise UnstorableDataError(
            f"event {event!r} was not delivered, nothing was saved: its handler's reply {reply!r} "
            f"must be kept for idempotency key {key!r}, but it does not serialise to JSON ({e}); "
            "return JSON values or a pydantic model, or send without an idempotency key"
        ) from None


def reply_to_keep(digest: str, reply_json: str) -> str:
    """The text to store for a reply to the request of ``digest``."""
    return f"{digest}\n{reply_json}"


def kept_reply(kept: str, digest: str, key: str) -> str:
    """The reply JSON of stored text ``kept``, for a repeat whose request has ``digest``.

    Raises:
        IdempotencyKeyReused: ``kept`` answered another request.
    """
    head, newline, reply_json = kept.partition("\n")
    if not newline or len(head) != _DIGEST_LENGTH:
        return kept  # kept before requests were recorded
    if head != digest:
        raise IdempotencyKeyReused(
            f"idempotency key {key!r} was first sent with another event or payload; a key names one "
            "request, and its reply is kept for that request only: send a new request with a new key"
        )
    return reply_json
