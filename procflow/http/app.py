"""``create_app``: the ASGI application of an engine, to mount or to serve alone."""

from __future__ import annotations

import contextlib
import functools
import http
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..engine import Engine
from .callbacks import Callbacks
from .catalog import Catalog
from .management import Management, base_path
from .openapi import build_openapi
from .problems import problem
from .responses import Endpoint, guarded, json_response
from .signing import CallbackSigner

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def _http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) as problem details."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    title = http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    detail = str(exc.detail) if isinstance(exc, HTTPException) else "the server failed"
    response = problem(status, title, detail, instance=request.url.path)
    if isinstance(exc, HTTPException):
        response.headers.update(exc.headers or {})
    return response


def _route(path: str, *, public: bool = False, **endpoints: Endpoint) -> Route:
    """One route for a path that several methods serve (by name: ``GET=..., POST=...``).

    Starlette answers a method no route of a path takes with 405 and the
    ``Allow`` header of the first route it tried; one route per path makes that
    header list every method the path takes. A ``public`` route (one third
    parties call) answers its server errors without their text (see ``guarded``).
    """
    handlers = {method: guarded(endpoint, public=public) for method, endpoint in endpoints.items()}

    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))


def create_app(
    engine: Engine,
    *,
    signer: CallbackSigner | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    samples: Mapping[str, Any] | None = None,
    management: bool = True,
    open_engine: bool = True,
    worker: bool = False,
    worker_poll_interval: float = 0.5,
    title: str = "procflow",
) -> Starlette:
    """An ASGI app (Starlette) serving ``engine``'s instances over HTTP.

    - ``signer`` enables the signed callback endpoints (``/callbacks/{token}``);
      without one they are not served.
    - ``max_body_bytes``: larger request bodies are refused (413).
    - ``samples``: a workflow object per registered name, for workflows
      whose class cannot be made without arguments; its ``definition()``
      lists the events for the OpenAPI document.
    - ``management=False`` serves only the callbacks and ``/openapi.json``:
      the shape to expose to third parties. The management endpoints have no
      authentication of their own.
    - ``open_engine``: the app's lifespan opens the engine at startup and
      closes it at shutdown. A mounted app's lifespan does not run: open the
      engine in your own application's lifespan.
    - ``worker=True``: the app's lifespan also runs ``engine.run_worker``
      (polling every ``worker_poll_interval`` seconds when idle) until
      shutdown, so that one process serves callbacks and delivers due timers
      and retries. Other workers may share the store.

    Raises:
        WorkflowSampleError: a workflow's events cannot be read (pass ``samples``).
        ExportError: an event's payload or reply type has no JSON Schema.
        ValueError: ``max_body_bytes`` or ``worker_poll_interval`` is not positive.
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    if not worker_poll_interval > 0:
        raise ValueError(
            f"worker_poll_interval must be a positive number of seconds, got {worker_poll_interval}"
        )
    catalog = Catalog(engine, samples)
    document = build_openapi(
        catalog, title=title, version=__version__, management=management, callbacks=signer is not None
    )

    async def openapi(request: Request) -> Response:
        base = base_path(request)
        return json_response({**document, "servers": [{"url": base}]} if base else document)

    routes = [Route("/openapi.json", guarded(openapi), methods=["GET"], name="openapi")]
    if management:
        m = Management(engine, catalog, max_body_bytes)
        instance = "/workflows/{workflow}/instances/{key}"
        routes += [
            Route("/workflows", guarded(m.list_workflows), methods=["GET"]),
            Route("/instances", guarded(m.list_instances), methods=["GET"]),
            _route("/workflows/{workflow}/instances", GET=m.list_workflow_instances, POST=m.start),
            Route(instance, guarded(m.get), methods=["GET"]),
            Route(instance + "/history", guarded(m.history), methods=["GET"]),
            Route(instance + "/cancel", guarded(m.cancel), methods=["POST"]),
            Route(instance + "/events/{event}", guarded(m.send), methods=["POST"]),
        ]
    if signer is not None:
        c = Callbacks(engine, signer, max_body_bytes)
        routes += [
            _route("/callbacks/{token}", public=True, GET=c.describe, POST=c.deliver),
        ]

    @contextlib.asynccontextmanager
    async def running_worker() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(engine.run_worker, poll_interval=worker_poll_interval))
            yield
            tg.cancel_scope.cancel()  # the worker finishes the batch in hand first

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if open_engine:
                await stack.enter_async_context(engine)
            if worker:
                await stack.enter_async_context(running_worker())
            yield

    return Starlette(routes=routes, exception_handlers={HTTPException: _http_problem}, lifespan=lifespan)
