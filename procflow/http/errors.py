"""The errors of the HTTP edge: bad requests, refused callback tokens, signing set-up.

Each is a ``procflow.ProcflowError``; ``problems.status_of`` maps every
procflow error to its HTTP status.
"""

from __future__ import annotations

from ..errors import CallbackNotFound, PayloadError, ProcflowError

__all__ = [
    "BadRequest",
    "CallbackGone",
    "CallbackTokenError",
    "CallbackTokenExpired",
    "HttpError",
    "PayloadTooLarge",
    "RequestValidationError",
    "SigningConfigError",
    "UnknownEvent",
    "UnsupportedMediaType",
    "WorkflowSampleError",
]


class HttpError(ProcflowError):
    """A request the HTTP edge refuses before it reaches the engine."""


class BadRequest(HttpError):
    """A malformed request: a body that is not JSON, a query parameter out of range (400)."""


class PayloadTooLarge(HttpError):
    """The request body is larger than the app's ``max_body_bytes`` (413)."""


class UnsupportedMediaType(HttpError):
    """A request body that is not ``application/json`` (415)."""


class RequestValidationError(PayloadError):
    """A request body (workflow data, a cancel request) fails its schema (422).

    ``errors`` holds pydantic's validation errors, as for ``PayloadError``.
    """


class UnknownEvent(CallbackNotFound):
    """The instance's workflow has no event of that name at all (404).

    A ``CallbackNotFound`` that is not this is an event the workflow has but
    is not parked on now (already delivered, not reached yet): a conflict.
    """


class CallbackTokenError(ProcflowError):
    """A signed callback token is malformed, tampered with, or signed by an unknown key (403)."""


class CallbackTokenExpired(CallbackTokenError):
    """A signed callback token is past its expiry (403)."""


class CallbackGone(ProcflowError):
    """A signed callback's event is no longer awaited: it was used, or its Wait was left (410)."""


class SigningConfigError(ProcflowError):
    """Callback signing is not configured: no secret, a weak secret, or no base URL to mint URLs."""


class WorkflowSampleError(ProcflowError):
    """A registered workflow class cannot be instantiated to read its events for the OpenAPI document.

    Pass ``create_app(..., samples={name: instance})``.
    """
