"""procflow over HTTP: an ASGI app with signed callback URLs (``pip install 'procflow[http]'``).

``create_app(engine, signer=...)`` is a Starlette application to mount in
your own (Starlette, FastAPI, any ASGI framework) or to serve alone with
``procflow serve``. ``CallbackSigner`` mints and verifies signed callback
URLs; ``CallbackLink`` is a handler whose setup hands one to a third party.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "procflow.http needs the 'http' extra: pip install 'procflow[http]'", name=e.name
    ) from e

from .app import DEFAULT_MAX_BODY_BYTES, create_app
from .catalog import Catalog
from .errors import (
    BadRequest,
    CallbackGone,
    CallbackTokenError,
    CallbackTokenExpired,
    HttpError,
    PayloadTooLarge,
    RequestValidationError,
    SigningConfigError,
    UnknownEvent,
    UnsupportedMediaType,
    WorkflowSampleError,
)
from .link import CallbackLink
from .openapi import build_openapi
from .problems import STATUS_BY_ERROR, status_of
from .signing import CallbackClaims, CallbackSigner

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "STATUS_BY_ERROR",
    "BadRequest",
    "CallbackClaims",
    "CallbackGone",
    "CallbackLink",
    "CallbackSigner",
    "CallbackTokenError",
    "CallbackTokenExpired",
    "Catalog",
    "HttpError",
    "PayloadTooLarge",
    "RequestValidationError",
    "SigningConfigError",
    "UnknownEvent",
    "UnsupportedMediaType",
    "WorkflowSampleError",
    "build_openapi",
    "create_app",
    "status_of",
]
