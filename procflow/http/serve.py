"""``procflow serve``: the app of an engine, alone, under uvicorn."""

from __future__ import annotations

import os
import sys

import uvicorn

from ..engine import Engine
from .app import DEFAULT_MAX_BODY_BYTES, create_app
from .signing import SECRET_ENV, CallbackSigner

__all__ = ["serve"]


def serve(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    root_path: str = "",
    log_level: str = "info",
    worker: bool = False,
    worker_poll_interval: float = 0.5,
) -> int:
    """Serve ``engine`` over HTTP until interrupted; returns the exit status.

    Signed callbacks are served when ``$PROCFLOW_SECRET`` is set (see
    ``CallbackSigner.from_env``); the app's lifespan opens and closes the engine,
    and with ``worker=True`` runs its worker too (see ``create_app``).

    Raises:
        SigningConfigError: ``$PROCFLOW_SECRET`` is set but holds a secret that is too short.
        WorkflowSampleError, ExportError: as ``create_app`` raises them.
    """
    signer = CallbackSigner.from_env() if os.environ.get(SECRET_ENV, "").strip() else None
    if signer is None:
        print(f"procflow: ${SECRET_ENV} is not set: signed callback URLs are not served", file=sys.stderr)
    if worker:
        print(
            f"procflow: serving with a worker: due timers and retries are delivered "
            f"(polling every {worker_poll_interval}s when idle)",
            file=sys.stderr,
        )
    app = create_app(
        engine,
        signer=signer,
        max_body_bytes=max_body_bytes,
        worker=worker,
        worker_poll_interval=worker_poll_interval,
    )
    config = uvicorn.Config(app, host=host, port=port, root_path=root_path, log_level=log_level)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
