"""JSON answers and the guard that turns errors into problem details."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ProcflowError
from .problems import problem, problem_for, status_of

__all__ = ["Endpoint", "guarded", "json_response", "logger", "model_response"]

logger = logging.getLogger("procflow.http")

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as JSON (pydantic-serialisable values; anything else as its ``str``).

    Infinities and NaN, which JSON has no way to write, are ``null``: strict
    JSON parsers (a browser's, most webhooks') refuse the bare ``NaN`` that
    Python writes.
    """
    body = to_json(value, fallback=str, inf_nan_mode="null")
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def model_response(
    model: BaseModel | list[Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A view model (or a list of them) as JSON."""
    return json_response(model, status, headers)


def guarded(endpoint: Endpoint, *, public: bool = False) -> Endpoint:
    """``endpoint`` answering every error as problem details.

    A procflow error gets its status (``problems.status_of``); any other
    exception is logged and answered 500 without its text. On a ``public``
    endpoint (one that third parties call, such as a signed callback URL), a
    procflow error of status 500 or above is logged and answered without its
    text too: it may quote the user's exceptions.
    """

    @functools.wraps(endpoint)
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ProcflowError as e:
            status = status_of(e)
            if public and status >= 500:
                return _logged(request, e, status, type(e).__name__)
            return problem_for(e, instance=request.url.path)
        except Exception as e:
            return _logged(request, e, 500, "InternalServerError")

    return run


def _logged(request: Request, error: Exception, status: int, title: str) -> Response:
    """Log ``error`` with its traceback; answer problem details that keep its text from the client."""
    logger.error("procflow.http: %s %s failed: %s", request.method, request.url.path, error, exc_info=error)
    return problem(status, title, "the server failed; its log has the details", instance=request.url.path)
