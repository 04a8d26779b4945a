"""The engine: load, run and save workflow instances kept in a ``Store``.

Users should not have to write the load-resume-save loop themselves::

    engine = procflow.Engine(procflow.SQLiteStore("orders.db"), workflows=[Order])
    async with engine:
        run = await engine.start(Order(...), correlation_id="order-42")
        reply = await engine.send("order-42", "approve", {"approver": "ann"})

Commits. The durable path is bound by commits, so the engine spends at most
one per executed step plus one per delivered event:

* the interpreter's checkpoints only mark the instance as changed;
* the engine commits right before user code with side effects runs (a step, a
  compensation, the setup or teardown of a ``Handler`` with side effects), and
  when an operation ends;
* a delivered event is committed before the steps it unblocks run, so that of
  two racing senders exactly one wins (optimistic concurrency on a version).

So a step runs at least once, and exactly once unless the process dies
between the step and the commit that follows it (the commit before the next
side effect, or at the end of the operation).
"""

from __future__ import annotations

import builtins
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from .errors import (
    CallbackNotFound,
    ConflictError,
    CorruptInstanceError,
    InstanceNotFound,
    ProcflowError,
    SetupError,
    StepError,
    UnknownWorkflowError,
)
from .hooks import RunHooks
from .instance import Instance, InstanceSummary, summarize
from .interpreter import CheckpointType, cancel, handle_callback, resume
from .state import CallbackRequest, State, WorkflowStatus
from .stores.base import HistoryEntry, InstanceRecord, Store
from .workflow_type import WorkflowType

__all__ = ["Engine"]


class _Session(RunHooks):
    """One instance loaded for an operation: collects changes and commits them."""

    def __init__(
        self,
        engine: Engine,
        wtype: WorkflowType,
        workflow: Any,
        state: State,
        *,
        version: int = 0,
        correlation_id: str | None = None,
        created_at: float = 0.0,
    ) -> None:
        self.engine = engine
        self.wtype = wtype
        self.workflow = workflow
        self.state = state
        self.version = version
        self.correlation_id = correlation_id
        self.created_at = created_at
        self.updated_at = created_at
        self.dirty = False
        # Whether user code with side effects ran since the last commit: its
        # result must be committed before the next one runs.
        self.effect_ran = False
        self.history: list[HistoryEntry] = []

    def checkpoint(self, kind: CheckpointType) -> None:
        self.dirty = True

    async def before_effect(self) -> None:
        if self.effect_ran:
            await self.commit()
        self.effect_ran = True

    def transition(self, kind: str, name: str = "", thread: str = "", detail: str = "") -> None:
        self.history.append(HistoryEntry(self.engine.clock(), kind, name, thread, detail))

    async def commit(self) -> None:
        """Save data, state and new history in one commit (an insert the first time)."""
        now = self.engine.clock()
        record = InstanceRecord(
            id=self.state.id,
            workflow=self.wtype.name,
            status=self.state.status.value,
            data=self.wtype.encode(self.workflow),
            state=self.state.model_dump_json(exclude_defaults=True),
            version=self.version,
            correlation_id=self.correlation_id,
            created_at=self.created_at or now,
            updated_at=now,
        )
        store = self.engine.store
        if self.version == 0:
            stored = await store.insert(record, self.history)
        else:
            stored = await store.update(record, self.history)
        self.version = stored.version
        self.created_at = stored.created_at
        self.updated_at = stored.updated_at
        self.history = []
        self.dirty = False
        self.effect_ran = False

    async def commit_if_changed(self) -> None:
        if self.dirty or self.history or self.version == 0:
            await self.commit()

    def instance(self) -> Instance[Any]:
        return Instance(
            id=self.state.id,
            workflow=self.wtype.name,
            data=self.workflow,
            state=self.state,
            version=self.version,
            correlation_id=self.correlation_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class Engine:
    """Runs workflow instances kept in a ``Store``.

    ``workflows`` registers the workflow classes the engine may load: an
    iterable of classes (stored under their class name) or a mapping of
    stored name to class. ``clock`` returns the time in Unix seconds (inject
    one in tests). Use the engine as an async context manager, or call
    ``open()`` and ``close()``.
    """

    def __init__(
        self,
        store: Store,
        workflows: Iterable[type[Any]] | Mapping[str, type[Any]] = (),
        *,
        clock: Callable[[], float] = time.time,
        max_transitions: int = 10_000,
        conflict_retries: int = 5,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_transitions = max_transitions
        self.conflict_retries = conflict_retries
        self._types: dict[str, WorkflowType] = {}
        self._by_class: dict[type[Any], WorkflowType] = {}
        items = workflows.items() if isinstance(workflows, Mapping) else ((None, c) for c in workflows)
        for name, cls in items:
            self.register(cls, name)

    # -- set-up --------------------------------------------------------------

    def register(self, cls: type[Any], name: str | None = None) -> None:
        """Register a workflow class under ``name`` (default: the class name).

        Raises:
            DefinitionError: the class is not a workflow pydantic can store.
            ValueError: another class is registered under that name.
        """
        wtype = WorkflowType(cls, name)
        existing = self._types.get(wtype.name)
        if existing is not None and existing.cls is not cls:
            raise ValueError(
                f"workflow name {wtype.name!r} is taken by {existing.cls.__qualname__}; "
                "register one of them under another name"
            )
        self._types[wtype.name] = wtype
        self._by_class[cls] = wtype

    @property
    def workflows(self) -> dict[str, type[Any]]:
        """The registered workflow classes by stored name."""
        return {name: t.cls for name, t in self._types.items()}

    async def open(self) -> None:
        """Open the store (creating or upgrading its schema)."""
        await self.store.open()

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- operations ----------------------------------------------------------

    async def start(
        self,
        workflow: Any,
        *,
        id: str | None = None,
        correlation_id: str | None = None,
    ) -> Instance[Any]:
        """Start a new instance of ``workflow`` and run it until every thread is parked.

        ``id`` defaults to a random UUID; ``correlation_id`` is an optional
        second, unique key (an order number, a payment id) for ``send``. The
        instance exists once its first commit is done; if the process dies
        before, nothing is stored and ``start`` can be called again.

        Raises:
            UnknownWorkflowError: the workflow's class is not registered.
            DuplicateInstanceError: the id or correlation id is taken.
            StepError, SetupError, DefinitionError: as ``resume`` raises them,
                after saving what was done.
        """
        wtype = self._by_class.get(type(workflow))
        if wtype is None:
            raise UnknownWorkflowError(
                f"{type(workflow).__qualname__} is not registered; pass it in Engine(workflows=[...])"
            )
        state = State.new(id or str(uuid.uuid4()), wtype.name)
        wtype.attach(workflow, state)
        session = _Session(self, wtype, workflow, state, correlation_id=correlation_id)
        session.transition("started")
        await self._resume(session)
        return session.instance()

    async def send(
        self,
        key: str,
        event: str,
        payload: Any = None,
        *,
        thread_id: str = "",
        pc: int = 0,
    ) -> Any:
        """Deliver ``event`` to the instance with id or correlation id ``key``.

        Runs the event's handler, commits, resumes the instance until every
        thread is parked again, and returns the handler's reply. Of two
        senders racing for one event exactly one succeeds; the other gets
        ``CallbackNotFound``.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            CallbackNotFound: no thread is parked on the event (already
                handled, or its Wait was left).
            StaleCallback, PayloadError, HandlerError, WorkflowFinishedError:
                as ``handle_callback`` raises them; nothing is saved.
            ConflictError: the instance kept changing under us after
                ``conflict_retries`` attempts.
        """
        req = CallbackRequest(name=event, thread_id=thread_id, pc=pc)
        for _ in range(self.conflict_retries):
            session = await self._load(key)
            reply = await self._deliver(session, req, payload)
            try:
                await session.commit()
            except ConflictError:
                continue  # someone saved first: try again on what they saved
            await self._resume(session)
            return reply
        raise ConflictError(
            f"instance {key!r} changed on every one of {self.conflict_retries} attempts to deliver "
            f"{event!r}; try again"
        )

    async def resume(self, key: str) -> Instance[Any]:
        """Run the instance's runnable threads (after a crash or a failed step).

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            StepError, SetupError, DefinitionError: as ``resume`` raises them.
        """
        session = await self._load(key)
        if session.state.status == WorkflowStatus.RESUMING:
            await self._resume(session)
        return session.instance()

    async def cancel(self, key: str, *, reason: str, compensate: bool = False) -> Instance[Any]:
        """Cancel the instance: tear down its events, optionally compensate completed steps.

        A cancel cut short (a compensation raised, the process died) carries
        on where it stopped when called again.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            WorkflowFinishedError: it is already finished or cancelled.
            StepError: a compensation raised (what ran before it is saved).
        """
        for _ in range(self.conflict_retries):
            session = await self._load(key)
            try:
                await cancel(
                    session.workflow,
                    session.state,
                    session.checkpoint,
                    reason=reason,
                    compensate=compensate,
                    hooks=session,
                )
            except ConflictError:
                continue
            except StepError:
                await self._save_failure(session)
                raise
            try:
                await session.commit_if_changed()
            except ConflictError:
                continue
            return session.instance()
        raise ConflictError(f"instance {key!r} changed on every attempt to cancel it; try again")

    async def recover(self) -> builtins.list[str]:
        """Resume every instance left runnable (``RESUMING``), e.g. after a crash.

        Returns the ids resumed. An instance that fails again (a step raises)
        is left as it is and the others are still resumed.
        """
        resumed = []
        async for summary in self.list(status=WorkflowStatus.RESUMING):
            try:
                await self.resume(summary.id)
            except ProcflowError:
                continue
            resumed.append(summary.id)
        return resumed

    # -- reading -------------------------------------------------------------

    async def get(self, key: str) -> Instance[Any]:
        """The instance with id or correlation id ``key``, loaded.

        Raises:
            InstanceNotFound: there is none.
            UnknownWorkflowError: its workflow name is not registered.
            CorruptInstanceError: its stored data or state cannot be decoded.
        """
        return (await self._load(key)).instance()

    async def find(self, correlation_id: str) -> Instance[Any]:
        """The instance with this correlation id, loaded.

        Raises:
            InstanceNotFound: there is none.
        """
        return self._decode(await self.store.find(correlation_id)).instance()

    async def list(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | Sequence[WorkflowStatus | str] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[InstanceSummary]:
        """Every stored instance (filtered by workflow name and status), ordered by id.

        Pages through the store ``page_size`` rows at a time. A row that
        cannot be decoded is listed with its ``error`` set.
        """
        statuses = status if status is None or isinstance(status, str) else [str(s) for s in status]
        after: str | None = None
        while True:
            page = await self.store.list(workflow=workflow, status=statuses, after=after, limit=page_size)
            for record in page:
                yield summarize(record)
            if len(page) < page_size:
                return
            after = page[-1].id

    def dump_data(self, instance: Instance[Any]) -> str:
        """The instance's workflow data as JSON, as the store keeps it."""
        return self._types[instance.workflow].encode(instance.data)

    async def history(self, key: str) -> builtins.list[HistoryEntry]:
        """The instance's history, oldest first.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
        """
        record = await self._record(key)
        return await self.store.history(record.id)

    # -- internals -----------------------------------------------------------

    async def _record(self, key: str) -> InstanceRecord:
        try:
            return await self.store.get(key)
        except InstanceNotFound:
            try:
                return await self.store.find(key)
            except InstanceNotFound:
                raise InstanceNotFound(f"no instance has id or correlation id {key!r}") from None

    async def _load(self, key: str) -> _Session:
        return self._decode(await self._record(key))

    def _decode(self, record: InstanceRecord) -> _Session:
        wtype = self._types.get(record.workflow)
        if wtype is None:
            raise UnknownWorkflowError(
                f"instance {record.id!r} is a {record.workflow!r}, which is not registered; "
                f"registered: {sorted(self._types) or 'none'}"
            )
        try:
            state = State.model_validate_json(record.state)
        except ValueError as e:
            raise CorruptInstanceError(
                f"instance {record.id!r}: its stored state cannot be decoded ({e}); repair or delete the row"
            ) from e
        workflow = wtype.decode(record.id, record.data, state)
        return _Session(
            self,
            wtype,
            workflow,
            state,
            version=record.version,
            correlation_id=record.correlation_id,
            created_at=record.created_at,
        )

    async def _deliver(self, session: _Session, req: CallbackRequest, payload: Any) -> Any:
        try:
            return await handle_callback(req, session.workflow, session.state, payload, hooks=session)
        except CallbackNotFound:
            if session.state.status != WorkflowStatus.RESUMING:
                raise
        # A crash left the instance runnable: it may park on the event once resumed.
        await self._resume(session)
        return await handle_callback(req, session.workflow, session.state, payload, hooks=session)

    async def _resume(self, session: _Session) -> None:
        """Resume, then commit what is left; on a conflict, reload and resume again."""
        for _ in range(self.conflict_retries):
            try:
                await resume(
                    session.workflow,
                    session.state,
                    session.checkpoint,
                    max_transitions=self.max_transitions,
                    hooks=session,
                )
            except ConflictError:
                session = await self._reload(session)
                if session.state.status != WorkflowStatus.RESUMING:
                    return
                continue
            except (StepError, SetupError):
                await self._save_failure(session)
                raise
            try:
                await session.commit_if_changed()
            except ConflictError:
                session = await self._reload(session)
                if session.state.status != WorkflowStatus.RESUMING:
                    return
                continue
            return
        raise ConflictError(f"instance {session.state.id!r} changed on every attempt to resume it; try again")

    async def _reload(self, session: _Session) -> _Session:
        return self._decode(await self.store.get(session.state.id))

    async def _save_failure(self, session: _Session) -> None:
        """After a failed step or setup: save what was done and the history of the failure."""
        # On a conflict someone else saved; the failure shows again when they resume.
        with contextlib.suppress(ConflictError):
            await session.commit_if_changed()
