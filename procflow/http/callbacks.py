"""The signed callback endpoints: what a third party holding a callback URL may do.

``POST /callbacks/{token}`` delivers the one event the token names to the
one parking it names; ``GET`` describes it and delivers nothing (mail
scanners and link previews follow GET links). The token is verified before
anything is read: a bad one (403) touches nothing, and one whose event is no
longer awaited is 410 Gone. A valid token whose instance is not stored is 404:
the instance may not be committed yet (a handler hands its URL out during
setup), so the sender should retry.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..engine import Engine
from ..errors import CallbackNotFound, StaleCallback, WorkflowFinishedError
from ..instance import Instance
from .body import NO_BODY, read_json
from .errors import CallbackGone
from .events import AcceptedEvent, accepted_events, event_schemas
from .headers import idempotency_key
from .responses import json_response, model_response
from .signing import CallbackClaims, CallbackSigner
from .views import CallbackView

__all__ = ["Callbacks"]

_GONE = (CallbackNotFound, StaleCallback, WorkflowFinishedError)


def _gone(claims: CallbackClaims, cause: Exception) -> CallbackGone:
    return CallbackGone(
        f"event {claims.event!r} of instance {claims.instance_id!r} is no longer awaited at this callback's "
        f"parking: it was delivered, its Wait was left, or the instance ended ({type(cause).__name__})"
    )


def _parking(instance: Instance[Any], claims: CallbackClaims) -> AcceptedEvent | None:
    for event in accepted_events(instance):
        if (event.name, event.thread, event.pc) == (claims.event, claims.thread_id, claims.pc):
            return event
    return None


class Callbacks:
    """The signed callback endpoints of one app."""

    def __init__(self, engine: Engine, signer: CallbackSigner, max_body_bytes: int) -> None:
        self.engine = engine
        self.signer = signer
        self.max_body_bytes = max_body_bytes

    async def describe(self, request: Request) -> Response:
        """``GET /callbacks/{token}``: the instance, event and schemas the token delivers to."""
        claims = self.signer.verify(request.path_params["token"])
        instance = await self.engine.get(claims.instance_id)
        event = _parking(instance, claims)
        if event is None:
            raise _gone(claims, CallbackNotFound(claims.event))
        payload, reply = event_schemas(event.handler) if event.handler is not None else (None, None)
        return model_response(
            CallbackView(
                instance_id=instance.id,
                workflow=instance.workflow,
                event=claims.event,
                thread=claims.thread_id,
                pc=claims.pc,
                expires_at=claims.expires_at,
                payload_schema=payload,
                reply_schema=reply,
            )
        )

    async def deliver(self, request: Request) -> Response:
        """``POST /callbacks/{token}``: deliver the body as the event's payload; answers the reply."""
        claims = self.signer.verify(request.path_params["token"])
        payload = await read_json(request, self.max_body_bytes)
        try:
            reply = await self.engine.send(
                claims.instance_id,
                claims.event,
                None if payload is NO_BODY else payload,
                thread_id=claims.thread_id,
                pc=claims.pc,
                idempotency_key=idempotency_key(request),
            )
        except _GONE as e:
            raise _gone(claims, e) from e
        return json_response(reply)
