"""The replies the engine keeps for idempotency keys, and the request each one answered.

A send with an ``idempotency_key`` keeps its reply under that key, so that a
repeat runs nothing and gets the same reply. A key names one request: the
kept text starts with a digest of the request (event, thread id, pc and
payload), and a send that reuses the key for another request is refused
rather than answered with a reply that was never its own.

Stored text is ``"<64 hex digits>\\n<reply JSON>"``. Replies kept before
requests were recorded are the reply JSON alone (compact JSON never holds a
raw newline), and are returned to any repeat, as they were then. The reply
JSON writes infinities and NaN as ``Infinity``, ``-Infinity`` and ``NaN``
(replies kept before they were are ``null`` there, as they were then).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .errors import IdempotencyKeyReused, PayloadError, UnstorableDataError

__all__ = ["RequestDigest", "kept_reply", "reply_json", "reply_to_keep", "request_digest"]

# Infinities and NaN as JSON's non-standard constants, not null: a repeat gets
# them back as they were (request digests write them the same way).
_KEPT: TypeAdapter[Any] = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="constants"))
_DIGEST_LENGTH = 64
# What a pydantic model may have written for an infinity or NaN of its own
# (its ser_json_inf_nan is "null" unless set, or "strings").
_LOST_NUMBER_MARKS = ("null", '"NaN"', '"Infinity"', '"-Infinity"')


@dataclass(frozen=True)
class RequestDigest:
    """A request's digest (64 hex digits), and the one it had before numbers were compared by value.

    Digests written before then took ``100.0`` and ``100`` for other numbers.
    ``legacy`` is that older digest when it differs (the payload holds a float
    that is a whole number), so that a reply kept under it still answers a
    repeat of its request; otherwise ``None``.
    """

    current: str
    legacy: str | None = None

    def matches(self, kept: str) -> bool:
        """Whether ``kept``, the digest a reply was kept under, is this request's."""
        return kept == self.current or (self.legacy is not None and kept == self.legacy)


def request_digest(event: str, thread_id: str, pc: int, payload: Any) -> RequestDigest:
    """A SHA-256 digest of a send's request, for telling a repeat from another request.

    The payload is taken as JSON values with the keys of its objects sorted,
    so a repeat may list them in another order. Numbers are compared by value,
    as JSON has one kind of number: a float that is a whole number counts as
    that int (``100.0`` repeats ``100``, ``-0.0`` repeats ``0``), exactly, so
    an int beyond 2**53 is not taken for the float nearest to it; ``True``
    is not ``1``. Infinities and NaN stay themselves (not ``null``). A dict
    and its JSON text still differ, as do two texts (a ``str`` payload may
    reach its handler as it is): send a payload in the same form each time.

    Raises:
        PayloadError: the payload has no JSON form, so a repeat cannot be told
            from another request.
    """
    try:
        value = to_jsonable_python(payload, by_alias=False, inf_nan_mode="constants")
        canonical = _whole_floats_as_ints(value)
        body = _json_text(canonical)
        legacy = None if canonical is value else _json_text(value)
    except (PydanticSerializationError, TypeError, ValueError) as e:
        raise PayloadError(
            f"a payload sent with an idempotency key must have a JSON form, to tell a repeat from another "
            f"request; {payload!r} has none ({e}): send JSON values or a pydantic model"
        ) from None
    return RequestDigest(
        _digest(event, thread_id, pc, body),
        None if legacy is None else _digest(event, thread_id, pc, legacy),
    )


def _json_text(value: Any) -> str:
    """JSON values as compact text, the keys of objects sorted."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(event: str, thread_id: str, pc: int, body: str) -> str:
    """The SHA-256 hex digest of a request whose payload's JSON text is ``body``."""
    return hashlib.sha256(json.dumps([event, thread_id, pc, body]).encode()).hexdigest()


def _whole_floats_as_ints(value: Any) -> Any:
    """JSON values with each float that is a whole number as that (exact) int.

    Returns ``value`` itself when nothing changes, so a payload without such
    a float keeps the digest it always had.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() else value  # is_integer() is False for inf and NaN
    if isinstance(value, list):
        items = [_whole_floats_as_ints(item) for item in value]
        return items if any(new is not old for new, old in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        fields = {k: _whole_floats_as_ints(v) for k, v in value.items()}
        return fields if any(fields[k] is not v for k, v in value.items()) else value
    return value


def reply_json(reply: Any, event: str, key: str) -> str:
    """The JSON text of a handler's ``reply`` to ``event``, to keep under ``key``.

    A repeat gets this text back as JSON values, so it must hold them all:
    infinities and NaN are written as ``Infinity``, ``-Infinity`` and ``NaN``.

    Raises:
        UnstorableDataError: ``reply`` has no JSON form, or its JSON would not
            give a repeat what it holds (a pydantic model whose config writes
            an infinity or NaN as ``null`` or a string), so a repeat could not
            be answered with it.
    """
    try:
        text = _KEPT.dump_json(reply).decode()
        lost = _loses_non_finite_numbers(reply, text)
    except PydanticSerializationError as e:
        raise UnstorableDataError(
            f"event {event!r} was not delivered, nothing was saved: its handler's reply {reply!r} "
            f"must be kept for idempotency key {key!r}, but it does not serialise to JSON ({e}); "
            "return JSON values or a pydantic model, or send without an idempotency key"
        ) from None
    if lost:
        raise UnstorableDataError(
            f"event {event!r} was not delivered, nothing was saved: its handler's reply {reply!r} "
            f"must be kept for idempotency key {key!r}, but its JSON ({text}) turns an infinity or NaN "
            "into null or a string, so a repeat would get another reply; give its model "
            "model_config = ConfigDict(ser_json_inf_nan='constants'), reply with None or a finite number "
            "instead, or send without an idempotency key"
        )
    return text


def _loses_non_finite_numbers(reply: Any, text: str) -> bool:
    """Whether ``text``, the kept JSON of ``reply``, holds fewer infinities and NaN than ``reply``.

    Only a pydantic model can do that, by its own ``ser_json_inf_nan``; its
    JSON values (``model_dump(mode="json")``) keep them, and a repeat must
    get those.
    """
    if not any(mark in text for mark in _LOST_NUMBER_MARKS):
        return False  # the common case: nothing could have been lost, no need to walk the reply
    expected = _non_finite_count(to_jsonable_python(reply, inf_nan_mode="constants"))
    return expected > 0 and _non_finite_count(json.loads(text)) < expected


def _non_finite_count(value: Any) -> int:
    """How many infinities and NaN JSON values hold."""
    if isinstance(value, float):
        return 0 if math.isfinite(value) else 1
    if isinstance(value, list):
        return sum(_non_finite_count(item) for item in value)
    if isinstance(value, dict):
        return sum(_non_finite_count(item) for item in value.values())
    return 0


def reply_to_keep(digest: RequestDigest, reply_json: str) -> str:
    """The text to store for a reply to the request of ``digest``."""
    return f"{digest.current}\n{reply_json}"


def kept_reply(kept: str, digest: RequestDigest, key: str) -> str:
    """The reply JSON of stored text ``kept``, for a repeat whose request has ``digest``
    (its current digest, or its ``legacy`` one).

    Raises:
        IdempotencyKeyReused: ``kept`` answered another request.
    """
    head, newline, reply_json = kept.partition("\n")
    if not newline or len(head) != _DIGEST_LENGTH:
        return kept  # kept before requests were recorded
    if not digest.matches(head):
        raise IdempotencyKeyReused(
            f"idempotency key {key!r} was first sent with another event or payload; a key names one "
            "request, and its reply is kept for that request only: send a new request with a new key"
        )
    return reply_json
