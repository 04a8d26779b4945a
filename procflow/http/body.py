"""Reading a JSON request body within the app's limits."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["NO_BODY", "is_json_media_type", "read_body", "read_json"]


class _NoBody:
    """The marker for a request without a body (distinct from a JSON ``null``)."""

    def __repr__(self) -> str:
        return "NO_BODY"


NO_BODY: Any = _NoBody()


def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` is JSON: ``application/json`` or ``application/*+json``."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, read no further than ``max_bytes``.

    Raises:
        PayloadTooLarge: the declared or the actual length is above ``max_bytes``.
        BadRequest: the ``Content-Length`` header is not a number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest(f"Content-Length {declared!r} is not a number") from None
        if length > max_bytes:
            raise PayloadTooLarge(f"the body has {length} bytes; this endpoint takes at most {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes, the most this endpoint takes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body parsed as JSON, or ``NO_BODY`` when it is empty.

    Raises:
        PayloadTooLarge: the body is larger than ``max_bytes``.
        UnsupportedMediaType: a non-empty body is not declared as JSON.
        BadRequest: the body is not valid UTF-8 JSON, or holds what cannot be
            stored and sent back as JSON: ``NaN`` or ``Infinity`` (also a
            number too large for a float), a lone UTF-16 surrogate, an integer
            of more digits than Python converts, or nesting deeper than
            Python's recursion limit.
    """
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        return NO_BODY
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        sent = f"it was sent as {content_type}" if content_type else "it was sent without a Content-Type"
        raise UnsupportedMediaType(f"the body must be application/json; {sent}")
    try:
        value = json.loads(raw)
        # What the body holds is stored and sent back as strict UTF-8 JSON: check it can be.
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    except UnicodeEncodeError:
        raise BadRequest("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff): it is not text") from None
    except ValueError as e:  # NaN/Infinity, or too many digits in an integer
        raise BadRequest(f"the body holds a value JSON cannot carry back: {e}") from None
    except RecursionError:
        raise BadRequest("the body nests arrays or objects too deeply") from None
    return value
