"""The endpoints that start, inspect, list, cancel and send events to instances.

They have no authentication of their own: serve them behind your
application's, and expose only the signed callbacks to third parties.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..engine import Engine
from ..errors import (
    CallbackNotFound,
    InstanceNotFound,
    SetupError,
    StepError,
    UnknownWorkflowError,
    WorkflowFinishedError,
)
from ..ids import new_id
from ..instance import Instance
from .body import NO_BODY, read_json
from .catalog import Catalog, WorkflowEntry
from .errors import RequestValidationError, UnknownEvent
from .events import accepted_events, event_schemas, events_of
from .headers import idempotency_key
from .problems import problem_for
from .query import MAX_PAGE, int_param, key_param, statuses_param
from .responses import json_response, model_response
from .views import (
    CancelRequest,
    EventView,
    InstancePage,
    WorkflowView,
    history_view,
    instance_path,
    instance_view,
    summary_view,
    workflow_path,
)

__all__ = ["Management"]


def base_path(request: Request) -> str:
    """Where the app is mounted: the prefix of every link it gives."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


class Management:
    """The management endpoints of one app, over one engine."""

    def __init__(self, engine: Engine, catalog: Catalog, max_body_bytes: int) -> None:
        self.engine = engine
        self.catalog = catalog
        self.max_body_bytes = max_body_bytes

    # -- helpers -----------------------------------------------------------------

    def _entry(self, request: Request) -> WorkflowEntry:
        name: str = request.path_params["workflow"]
        entry = self.catalog.get(name)
        if entry is None:
            raise UnknownWorkflowError(
                f"no workflow is registered as {name!r}; registered: {sorted(self.catalog.entries) or 'none'}"
            )
        return entry

    async def _instance(self, request: Request) -> Instance[Any]:
        entry = self._entry(request)
        key: str = request.path_params["key"]
        instance = await self.engine.get(key)
        if instance.workflow != entry.name:
            raise InstanceNotFound(f"no {entry.name!r} instance has id or correlation id {key!r}")
        return instance

    def _view(self, request: Request, instance: Instance[Any], status: int = 200) -> Response:
        view = instance_view(
            instance, self.engine.dump_data(instance), accepted_events(instance), base_path(request)
        )
        return model_response(view, status)

    async def _page(self, request: Request, workflow: str | None) -> Response:
        limit = int_param(request, "limit", 100, low=1, high=MAX_PAGE)
        statuses = statuses_param(request)
        after = request.query_params.get("after") or None
        records = await self.engine.store.list(
            workflow=workflow, status=statuses, after=after, limit=limit + 1
        )
        items = [summary_view(self.engine.summarize(r), base_path(request)) for r in records[:limit]]
        next_url = None
        if len(records) > limit:
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
            next_url = f"{quote(request.url.path)}?{urlencode([*query, ('after', items[-1].id)])}"
        return model_response(InstancePage(items=items, next=next_url))

    # -- endpoints ---------------------------------------------------------------

    async def list_workflows(self, request: Request) -> Response:
        """``GET /workflows``: the registered workflows and their events."""
        views = []
        for entry in self.catalog.entries.values():
            events = []
            for name, on in entry.events.items():
                payload, reply = event_schemas(on.handler)
                events.append(
                    EventView(event=name, handler=on.handler.type, payload_schema=payload, reply_schema=reply)
                )
            url = workflow_path(base_path(request), entry.name)
            views.append(WorkflowView(name=entry.name, instances_url=url, events=events))
        return model_response(views)

    async def list_instances(self, request: Request) -> Response:
        """``GET /instances``: a page of instances of any (or one ``?workflow=``) workflow."""
        return await self._page(request, request.query_params.get("workflow") or None)

    async def list_workflow_instances(self, request: Request) -> Response:
        """``GET /workflows/{workflow}/instances``: a page of one workflow's instances."""
        return await self._page(request, self._entry(request).name)

    async def start(self, request: Request) -> Response:
        """``POST /workflows/{workflow}/instances``: start an instance from the body's data."""
        entry = self._entry(request)
        id = key_param(request, "id") or new_id()
        correlation_id = key_param(request, "correlation_id")
        data = await read_json(request, self.max_body_bytes)
        workflow = entry.new_workflow({} if data is NO_BODY else data)
        # Under the name the engine stores it under: a class registered under an old
        # name as well starts instances under its last one, whichever path was posted to.
        url = instance_path(base_path(request), self.engine.name_of(workflow), id)
        try:
            instance = await self.engine.start(workflow, id=id, correlation_id=correlation_id)
        except (StepError, SetupError) as e:  # started and saved, but stopped by a failure
            return problem_for(e, instance=request.url.path, instance_id=id, instance_url=url)
        response = self._view(request, instance, 201)
        response.headers["Location"] = url
        return response

    async def get(self, request: Request) -> Response:
        """``GET /workflows/{workflow}/instances/{key}``: the instance and what it accepts now."""
        return self._view(request, await self._instance(request))

    async def history(self, request: Request) -> Response:
        """``GET /workflows/{workflow}/instances/{key}/history``: its history, oldest first."""
        instance = await self._instance(request)
        return model_response([history_view(h) for h in await self.engine.history(instance.id)])

    async def cancel(self, request: Request) -> Response:
        """``POST /workflows/{workflow}/instances/{key}/cancel``: body ``{"reason", "compensate"}``."""
        instance = await self._instance(request)
        body = await read_json(request, self.max_body_bytes)
        try:
            order = CancelRequest.model_validate({} if body is NO_BODY else body)
        except ValidationError as e:
            errors: list[dict[str, Any]] = json.loads(e.json(include_url=False))
            raise RequestValidationError(f"invalid cancel request: {e.error_count()} error(s)", errors) from e
        cancelled = await self.engine.cancel(instance.id, reason=order.reason, compensate=order.compensate)
        return self._view(request, cancelled)

    async def send(self, request: Request) -> Response:
        """``POST /workflows/{workflow}/instances/{key}/events/{event}``: deliver; answers the reply."""
        instance = await self._instance(request)
        event: str = request.path_params["event"]
        thread = request.query_params.get("thread", "")
        pc = int_param(request, "pc", 0, low=1, high=2**62)
        payload = await read_json(request, self.max_body_bytes)
        try:
            reply = await self.engine.send(
                instance.id,
                event,
                None if payload is NO_BODY else payload,
                thread_id=thread,
                pc=pc,
                idempotency_key=idempotency_key(request),
            )
        except (CallbackNotFound, WorkflowFinishedError) as e:
            # An event the workflow does not have is 404 whatever state the instance is in.
            if event not in events_of(instance.data.definition()):
                raise UnknownEvent(f"workflow {instance.workflow!r} has no event {event!r}") from e
            raise
        return json_response(reply)
