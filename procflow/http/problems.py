"""RFC 9457 problem details: every error answer of the HTTP edge.

A procflow error becomes ``application/problem+json`` with ``type``
``urn:procflow:error:<ErrorClass>``, ``title`` the error's class name,
``status``, ``detail`` its message and ``instance`` the request path;
a ``PayloadError`` adds ``errors`` (the schema errors).
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.responses import Response

from ..errors import (
    CallbackNotFound,
    ConflictError,
    CorruptInstanceError,
    DefinitionError,
    DuplicateInstanceError,
    HandlerError,
    IdempotencyKeyReused,
    InstanceNotFound,
    PayloadError,
    ProcflowError,
    SetupError,
    StaleCallback,
    StepError,
    StoreError,
    UnknownWorkflowError,
    UnstorableDataError,
    WorkflowFinishedError,
)
from .errors import (
    BadRequest,
    CallbackGone,
    CallbackTokenError,
    PayloadTooLarge,
    UnknownEvent,
    UnsupportedMediaType,
)

__all__ = ["PROBLEM_JSON", "STATUS_BY_ERROR", "TYPE_PREFIX", "problem", "problem_for", "status_of"]

PROBLEM_JSON: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:procflow:error:"

# Most specific first: the first class an error is an instance of gives its status.
STATUS_BY_ERROR: Final[tuple[tuple[type[ProcflowError], int], ...]] = (
    (BadRequest, 400),
    (CallbackTokenError, 403),
    (UnknownEvent, 404),
    (InstanceNotFound, 404),
    (UnknownWorkflowError, 404),
    (CallbackNotFound, 409),
    (StaleCallback, 409),
    (WorkflowFinishedError, 409),
    (ConflictError, 409),
    (DuplicateInstanceError, 409),
    (CallbackGone, 410),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (PayloadError, 422),
    (IdempotencyKeyReused, 422),
    (StepError, 500),
    (SetupError, 500),
    (HandlerError, 500),
    (DefinitionError, 500),
    (CorruptInstanceError, 500),
    (UnstorableDataError, 500),
    (StoreError, 503),
)


def status_of(error: ProcflowError) -> int:
    """The HTTP status of a procflow error (500 for one not in ``STATUS_BY_ERROR``)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def problem(status: int, title: str, detail: str, *, instance: str = "", **extra: Any) -> Response:
    """A problem details response; ``title`` also names the ``type``."""
    body: dict[str, Any] = {"type": TYPE_PREFIX + title, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(json.dumps(body), status_code=status, media_type=PROBLEM_JSON)


def problem_for(error: ProcflowError, *, instance: str = "", **extra: Any) -> Response:
    """The problem details response of a procflow error (with ``errors`` for a ``PayloadError``)."""
    if isinstance(error, PayloadError):
        extra.setdefault("errors", error.errors)
    return problem(status_of(error), type(error).__name__, str(error), instance=instance, **extra)
