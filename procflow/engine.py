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

Time. Timer events, retries and runs left behind by a dead process give an
instance a due time (an indexed column). ``run_worker`` claims due instances
and works on them; without a worker, an instance catches up the next time a
``send`` or ``resume`` touches it: overdue timers first, in thread order.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Self

import anyio
from pydantic import TypeAdapter, ValidationError

from .bookkeeping import Bookkeeping, Buffered, Failure
from .clock import Clock, SystemClock, use_clock
from .errors import (
    CallbackNotFound,
    ConflictError,
    CorruptInstanceError,
    DefinitionError,
    PayloadError,
    ProcflowError,
    SetupError,
    StepError,
    StoreError,
    UnknownWorkflowError,
    UnstorableDataError,
    WorkflowFinishedError,
    describe_exception,
)
from .handlers import FunctionHandler
from .idempotency import RequestDigest, kept_reply, reply_json, reply_to_keep, request_digest
from .ids import new_id
from .instance import Instance, InstanceSummary, summarize
from .interpreter import built_tree, cancel, handle_callback, resume
from .observe import LoggingObserver, Observed, Observer
from .retention import OnBatch
from .retention import purge as purge_old
from .retry import Retry
from .session import Session
from .state import (
    MAIN_THREAD,
    CallbackRequest,
    State,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
)
from .state_codec import decode_state
from .statements import Go, On, Step, Stmt, Wait, WaitFor, at, index
from .stores._keys import check_key
from .stores.base import HistoryEntry, InstanceRecord, Store
from .timers import due_at as timer_due_at
from .turns import Turns
from .workflow_type import WorkflowType

__all__ = ["Engine"]

logger = logging.getLogger("procflow")

_NO_RETRY = Retry(max_attempts=1)
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


_STATUS_VALUES = tuple(s.value for s in WorkflowStatus)

# At most this many overdue timers are delivered in one catch-up: a loop whose timer is
# always due (Timer(after=0), a deadline in the past) would otherwise never let go of
# the worker or the send that caught it up. The rest are due at the next touch or poll.
_TIMERS_PER_CATCH_UP = 100


def _known_statuses(
    status: WorkflowStatus | str | Sequence[WorkflowStatus | str] | None,
) -> builtins.list[str] | None:
    """``status`` as a list of status values, each checked to be a ``WorkflowStatus``."""
    if status is None:
        return None
    given = [status] if isinstance(status, str) else builtins.list(status)
    values = []
    for s in given:
        value = s.value if isinstance(s, WorkflowStatus) else str(s).upper()
        if value not in _STATUS_VALUES:
            raise ValueError(f"unknown status {s!r}; the statuses are {', '.join(_STATUS_VALUES)}")
        values.append(value)
    return values


def _thread_body_of(root: Stmt, name: str) -> str:
    """Which thread's body the statement ``name`` is in: the innermost ``Go``'s name, or ``MAIN_THREAD``."""
    owner = MAIN_THREAD
    node = root
    for i in index(root).get(name, ())[:-1]:
        node = node.children()[i]
        if isinstance(node, Go):
            owner = node.name
    return owner


def _body(go: str) -> str:
    """A thread's body in messages, by the name of its ``Go`` (``MAIN_THREAD`` for the main one)."""
    return "the main body" if go == MAIN_THREAD else f"the body of Go {go!r}"


def _require_store(store: object) -> None:
    if not all(callable(getattr(store, m, None)) for m in ("insert", "update", "lookup", "claim_due")):
        raise TypeError(
            f"Engine's first argument is the store, got {store!r}; "
            "write Engine(store, workflows=[...]), e.g. Engine(SQLiteStore('app.db'), workflows=[Order])"
        )


class Engine:
    """Runs workflow instances kept in a ``Store``.

    ``workflows`` registers the workflow classes the engine may load: an
    iterable of classes (stored under their class name) or a mapping of
    stored name to class. ``clock`` is where the engine reads time (a
    ``TestClock`` in tests). ``stale_after`` is how long a run may go without
    a commit before a worker takes it for abandoned (keep it above your
    longest step). ``observers`` are told every transition (default: a
    ``LoggingObserver``; pass ``[]`` for none, or add an
    ``OpenTelemetryObserver``). Use the engine as an async context manager,
    or call ``open()`` and ``close()``.

    Raises:
        TypeError: ``store`` is not a store, or ``workflows`` is one class
            rather than a list of them (the arguments swapped, say).
        DefinitionError: a class is not a workflow pydantic can store.
    """

    def __init__(
        self,
        store: Store,
        workflows: Iterable[type[Any]] | Mapping[str, type[Any]] = (),
        *,
        clock: Clock | None = None,
        max_transitions: int = 10_000,
        conflict_retries: int = 5,
        stale_after: float = 300.0,
        setup_retry_delay: float = 30.0,
        observers: Sequence[Observer] | None = None,
    ) -> None:
        _require_store(store)
        if isinstance(workflows, (type, str, bytes)):
            raise TypeError(
                f"workflows is a list of workflow classes, got {workflows!r}; write workflows=[...]"
            )
        self.store = store
        self.observers: list[Observer] = [LoggingObserver()] if observers is None else list(observers)
        self.clock: Clock = clock or SystemClock()
        self.max_transitions = max_transitions
        self.conflict_retries = conflict_retries
        self.stale_after = stale_after
        self.setup_retry_delay = setup_retry_delay
        self._turns = Turns()
        self._types: dict[str, WorkflowType] = {}
        self._by_class: dict[type[Any], WorkflowType] = {}
        items = workflows.items() if isinstance(workflows, Mapping) else ((None, c) for c in workflows)
        for name, cls in items:
            self.register(cls, name)

    # -- set-up --------------------------------------------------------------

    def with_store(self, store: Store) -> Self:
        """A new engine over ``store`` with this one's workflows, clock, limits and observers.

        It is a copy of this engine, of its class: a subclass's own methods
        and attributes come along. Registering a workflow on one later does
        not change the other. The command line uses it to run an ``--app``
        engine against the ``--db`` store, configured as the application
        configured it.

        Raises:
            TypeError: ``store`` is not a store.
        """
        _require_store(store)
        engine = copy.copy(self)
        engine.store = store
        engine.observers = list(self.observers)
        engine._turns = Turns()
        engine._types = dict(self._types)
        engine._by_class = dict(self._by_class)
        return engine

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

    def name_of(self, workflow: Any) -> str:
        """The name a new instance of ``workflow`` (an object or its class) is stored under.

        A class registered under several names (an old one kept so that old rows
        still load) starts instances under the one registered last.

        Raises:
            UnknownWorkflowError: the class is not registered.
        """
        return self._type_of(workflow if isinstance(workflow, type) else type(workflow)).name

    def _type_of(self, cls: type[Any]) -> WorkflowType:
        """How the registered class ``cls`` is stored.

        Raises:
            UnknownWorkflowError: it is not registered.
        """
        wtype = self._by_class.get(cls)
        if wtype is None:
            raise UnknownWorkflowError(
                f"{cls.__qualname__} is not registered; pass it in Engine(workflows=[...])"
            )
        return wtype

    def observe(self, event: Observed) -> None:
        """Tell every observer about ``event``; an observer that raises is logged, not obeyed."""
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                logger.exception("observer %r failed on %s", observer, event.kind)

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

    def __enter__(self) -> Engine:
        raise TypeError(
            "an Engine opens and closes its store asynchronously: use `async with Engine(...) as engine:`"
        )

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        return None

    # -- operations ----------------------------------------------------------

    async def start(
        self,
        workflow: Any,
        *,
        id: str | None = None,
        correlation_id: str | None = None,
    ) -> Instance[Any]:
        """Start a new instance of ``workflow`` and run it until every thread is parked.

        ``id`` defaults to a new 20-character id that sorts by creation time
        (see ``procflow.ids``); ``correlation_id`` is an optional
        second, unique key (an order number, a payment id) for ``send``. The
        instance exists once its first commit is done; if the process dies
        before, nothing is stored and ``start`` can be called again. A step
        that fails is retried by its ``Retry`` policy (the returned instance
        shows it), or fails the instance (status ``FAILED``).

        Raises:
            TypeError: ``workflow`` is a class rather than an object of it, or
                ``id`` or ``correlation_id`` is not a str.
            UnknownWorkflowError: the workflow's class is not registered.
            DuplicateInstanceError: the id or correlation id is taken.
            StoreError: the id or correlation id holds a NUL character or a
                lone surrogate, which not every store can keep; nothing ran.
            DefinitionError: the definition is invalid.
        """
        if isinstance(workflow, type):
            raise TypeError(
                f"start takes a workflow object, got the class {workflow.__qualname__}; "
                f"write start({workflow.__qualname__}(...))"
            )
        for what, key in (("id", id), ("correlation_id", correlation_id)):
            if key is not None and not isinstance(key, str):
                raise TypeError(f"start: {what} must be a str, got {type(key).__name__} {key!r}")
            check_key(key, what)  # before any step runs, not at the first commit after it
        wtype = self._type_of(type(workflow))
        state = State.new(id or new_id(), wtype.name)
        wtype.attach(workflow, state)
        session = Session(self, wtype, workflow, state, correlation_id=correlation_id)
        session.transition("started")
        # The turn: a send made while this run's steps run (the instance is stored
        # before its second one) waits for it, and a step calling the engine on
        # this very instance is a ReentrantCallError.
        with use_clock(self.clock):
            async with self._turns.take(state.id):
                session = await self._run(session)
        return session.instance()

    async def send(
        self,
        key: str,
        event: str,
        payload: Any = None,
        *,
        thread_id: str = "",
        pc: int = 0,
        buffer: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Deliver ``event`` to the instance with id or correlation id ``key``.

        Overdue timers of the instance are delivered first. Then the event's
        handler runs, the delivery is committed, and the instance runs until
        every thread is parked again; the handler's reply is returned. Of two
        senders racing for one event exactly one succeeds; the other gets
        ``CallbackNotFound``.

        ``buffer``: when no thread is parked on the event yet, keep it in the
        instance's inbox and deliver it, in order, once one is (returns
        ``None`` then). ``None`` means the event's own default
        (``OnEvent(..., buffer=...)``, off unless set): an event nobody waits
        for is usually a mistake or a duplicate, and refusing it says so.

        ``idempotency_key``: a repeat with the same key (and the same event,
        thread id, pc and payload) returns the first reply (as JSON values)
        and runs nothing again.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            CallbackNotFound: no thread is parked on the event (already
                handled, or its Wait was left) and it is not buffered.
            PayloadError: the payload is invalid, or the event's handler
                refused it (after ``max_attempts`` of them, the instance is
                also cancelled with compensation).
            StaleCallback, HandlerError, WorkflowFinishedError: as
                ``handle_callback`` raises them; nothing is saved.
            IdempotencyKeyReused: ``idempotency_key`` was first sent with
                another event or payload; nothing runs.
            UnstorableDataError: with an ``idempotency_key``, the handler's
                reply does not serialise to JSON, so it cannot be kept;
                nothing is saved and the thread stays parked.
            ConflictError: the instance kept changing under us after
                ``conflict_retries`` attempts.
        """
        req = CallbackRequest(name=event, thread_id=thread_id, pc=pc)
        digest = None if idempotency_key is None else request_digest(event, thread_id, pc, payload)
        with use_clock(self.clock):
            async with self._turn(key) as session:
                return await self._send(session, req, payload, buffer, idempotency_key, digest)

    async def _send(
        self,
        session: Session,
        req: CallbackRequest,
        payload: Any,
        buffer: bool | None,
        idempotency_key: str | None,
        digest: RequestDigest | None,
    ) -> Any:
        """``send`` on the loaded ``session``, whose turn the caller holds."""
        for attempt in range(self.conflict_retries):
            if attempt:
                session = await self._reload(session)
            if idempotency_key is not None and digest is not None:
                # Checked on every attempt: a racing repeat may have won meanwhile.
                kept = await self.store.reply(session.id, idempotency_key)
                if kept is not None:
                    return _ANY.validate_json(kept_reply(kept, digest, idempotency_key))
            try:
                session = await self._catch_up(session)
                reply = await self._deliver(session, req, payload, buffer)
            except ConflictError:
                continue
            buffered = reply is _BUFFERED
            if idempotency_key is not None and digest is not None:
                kept_json = "null" if buffered else reply_json(reply, req.name, idempotency_key)
                session.reply = (idempotency_key, reply_to_keep(digest, kept_json))
            try:
                await session.commit()
            except ConflictError:
                continue  # someone saved first: try again on what they saved
            except UnstorableDataError as e:
                raise UnstorableDataError(
                    f"event {req.name!r} was not delivered, nothing was saved: {e}"
                ) from e
            if buffered:
                return None
            await self._run(session)
            return reply
        raise ConflictError(
            f"instance {session.id!r} changed on every one of {self.conflict_retries} attempts to deliver "
            f"{req.name!r}; try again"
        )

    async def resume(self, key: str) -> Instance[Any]:
        """Catch the instance up: deliver overdue timers, run what is runnable.

        A step waiting for its retry's backoff is not run early. When another
        process saves the instance meanwhile, it is caught up again from what
        that process saved.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            ConflictError: the instance changed on every one of
                ``conflict_retries`` attempts.
        """
        with use_clock(self.clock):
            async with self._turn(key) as session:
                for attempt in range(self.conflict_retries):
                    if attempt:
                        session = await self._reload(session)
                    try:
                        session = await self._catch_up(session)
                        await session.commit_if_changed()
                    except ConflictError:
                        continue
                    return session.instance()
        raise ConflictError(f"instance {key!r} changed on every attempt to catch it up; try again")

    async def retry(self, key: str) -> Instance[Any]:
        """Try a ``FAILED`` instance's failed step again, now.

        An instance that failed because a compensation raised (its cancel was
        cut short) carries its cancel on instead.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            ProcflowError: the instance has not failed.
            StepError: a compensation raised again (the instance stays ``FAILED``).
        """
        with use_clock(self.clock):
            async with self._turn(key) as session:
                failure = session.meta.failure
                if failure is None:
                    raise ProcflowError(f"instance {session.id!r} has not failed; there is nothing to retry")
                if session.state.cancelling:
                    session.transition("retried", failure.step, detail="the cancel, by hand")
                    await self._cancel(session, session.state.reason, session.meta.compensating)
                    return session.instance()
                session.meta.failure = None
                session.meta.attempts.pop(failure.thread, None)
                session.meta.retries.pop(failure.thread, None)
                session.transition("retried", failure.step, failure.thread, "by hand")
                session = await self._run(session)
                return session.instance()

    async def cancel(self, key: str, *, reason: str, compensate: bool = False) -> Instance[Any]:
        """Cancel the instance: tear down its events, optionally compensate completed steps.

        A cancel cut short (a compensation raised, the process died) carries
        on where it stopped when called again, as it was first asked: with
        its first ``reason``, and compensating if either call asked to.

        Raises:
            ValueError: ``reason`` is empty.
            InstanceNotFound: no instance has that id or correlation id.
            WorkflowFinishedError: it is already finished or cancelled.
            StepError: a compensation raised (what ran before it is saved).
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(
                f"cancel needs a reason (it is kept in the history and the state), got {reason!r}"
            )
        with use_clock(self.clock):
            async with self._turn(key) as session:
                for attempt in range(self.conflict_retries):
                    if attempt:
                        session = await self._reload(session)
                    asked = (reason, compensate)
                    if session.state.cancelling:  # carry the cancel cut short on, as it was asked
                        asked = (session.state.reason, compensate or session.meta.compensating)
                    try:
                        await self._cancel(session, *asked)
                    except ConflictError:
                        continue
                    return session.instance()
        raise ConflictError(f"instance {key!r} changed on every attempt to cancel it; try again")

    async def goto(
        self,
        key: str,
        *,
        thread: str,
        step: str,
        who: str,
        why: str,
        run: bool = True,
    ) -> Instance[Any]:
        """Move a thread of an instance to another named statement (a repair).

        ``step`` names a Step, Wait or WaitFor of the current definition. To a
        Step, the thread continues as if that step had just completed (to run
        step X again, go to the step before it); to a Wait or WaitFor, the
        thread parks there (its events are set up by the next resume). The
        events the thread was parked on are torn down. The move is saved with
        ``who`` and ``why`` in the history, then the instance runs on (unless
        ``run=False``).

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            WorkflowFinishedError: the instance is finished or cancelled, or being cancelled.
            DefinitionError: no thread ``thread``, no Step/Wait/WaitFor ``step``,
                or the instance's ``definition()`` raised.
            ConflictError: another process saved the instance meanwhile (a worker
                ran it); nothing is moved: look at it again and repeat the move.
        """
        with use_clock(self.clock):
            async with self._turn(key) as session:
                state = session.state
                if state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
                    raise WorkflowFinishedError(
                        f"instance {session.id!r} is {state.status.value}; there is nothing to move"
                    )
                if state.cancelling:
                    raise WorkflowFinishedError(
                        f"instance {session.id!r} is being cancelled ({state.reason!r}); there is nothing "
                        "to move: cancel it again (or retry) to finish the cancel"
                    )
                target = self._statement(session, step)
                if not isinstance(target, (Step, Wait, WaitFor)):
                    found = "nothing" if target is None else f"a {type(target).__name__}"
                    raise DefinitionError(
                        f"goto {step!r}: the definition of {session.wtype.name!r} has {found} by that name; "
                        "name a Step, Wait or WaitFor"
                    )
                moved = next((t for t in state.threads if t.id == thread), None)
                if moved is None:
                    raise DefinitionError(
                        f"instance {session.id!r} has no thread {thread!r}; threads: "
                        f"{', '.join(t.id for t in state.threads) or 'none'}"
                    )
                owner = _thread_body_of(built_tree(session.workflow), step)
                if owner != moved.name:
                    raise DefinitionError(
                        f"goto {step!r}: it is in {_body(owner)}, but thread {thread!r} runs "
                        f"{_body(moved.name)}; a thread can only be moved within its own body"
                    )
                was = moved.cur_step
                events = []
                for e in moved.wait_events:
                    if e.status == WaitEventStatus.SETUP:
                        events.append(e.model_copy(update={"status": WaitEventStatus.PENDING_TEARDOWN}))
                    elif e.status in (WaitEventStatus.PENDING_TEARDOWN, WaitEventStatus.TEARDOWN_ERROR):
                        events.append(e)
                moved.wait_events = events
                moved.cur_step = step
                moved.cur_callback = ""
                moved.pc += 1
                state.pc += 1
                if isinstance(target, Wait):
                    moved.status = ThreadStatus.WAITING_EVENT
                    moved.wait_events = [
                        *events,
                        *(
                            WaitEvent(
                                type=on.handler.type,
                                req=CallbackRequest(
                                    workflow_id=state.id, thread_id=moved.id, name=on.name, pc=moved.pc
                                ),
                            )
                            for on in target.events
                        ),
                    ]
                elif isinstance(target, WaitFor):
                    moved.status = ThreadStatus.WAITING_CONDITION
                else:
                    moved.status = ThreadStatus.RESUMING
                state.status = WorkflowStatus.RESUMING
                failure = session.meta.failure
                if failure is not None and failure.thread in ("", thread):  # another thread's stays
                    session.meta.failure = None
                # A repair starts the moved thread's retry policy over, as ``retry`` does.
                session.meta.attempts.pop(thread, None)
                session.meta.retries.pop(thread, None)
                session.transition("goto", step, thread, f"from {was or 'the start'} by {who}: {why}")
                State.model_validate(state.model_dump())  # the result must be a valid State
                await session.commit()
                if run:
                    session = await self._run(session)
                return session.instance()

    async def edit(self, key: str, changes: Mapping[str, Any], *, who: str, why: str) -> Instance[Any]:
        """Change fields of an instance's workflow data (a repair), validated by its model.

        ``changes`` maps field names to new values (as JSON values), applied
        to the data as stored; the result is validated by the workflow's class
        before it is saved, with ``who`` and ``why`` in the history. Nothing
        runs. Stored data that no longer validates (a new version changed a
        field's type) can be repaired this way: only the result must validate.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            WorkflowFinishedError: the instance is finished or cancelled.
            PayloadError: the changed data does not validate (nothing is saved).
            ConflictError: another process saved the instance meanwhile (a worker
                ran it); nothing is saved: look at it again and repeat the edit.
        """
        with use_clock(self.clock):
            async with self._turn(key, load_data=False) as session:
                if session.state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
                    raise WorkflowFinishedError(
                        f"instance {session.id!r} is {session.state.status.value}; its data is final"
                    )
                data = json.loads(session.stored_data)
                unknown = sorted(set(changes) - set(data) - set(session.wtype.data_fields))
                if unknown:
                    raise PayloadError(
                        f"instance {session.id!r}: {session.wtype.name} has no field(s) {', '.join(unknown)}",
                        [
                            {"type": "unknown_field", "loc": [name], "msg": "no such field"}
                            for name in unknown
                        ],
                    )
                data.update(changes)
                try:
                    session.workflow = session.wtype.decode(session.id, json.dumps(data), session.state)
                except CorruptInstanceError as e:
                    invalid = e.__cause__
                    if not isinstance(invalid, ValidationError):
                        raise
                    errors = json.loads(invalid.json(include_url=False))
                    raise PayloadError(
                        f"edit of {session.id!r} rejected, nothing was saved: the changed data does not "
                        f"validate as workflow {session.wtype.name!r} ({invalid.error_count()} error(s): "
                        f"{errors[:3]})",
                        errors,
                    ) from invalid
                fields = ", ".join(sorted(changes))
                session.transition("edit", fields, "", f"by {who}: {why}")
                await session.commit()
                return session.instance()

    async def recover(self) -> builtins.list[str]:
        """Resume every instance left runnable (``RESUMING``) by a process that died.

        Call it when no other process is working on the store's instances
        (at start-up of the only process, say): it does not wait for a run to
        look abandoned (``stale_after``), as workers do. Returns the ids of
        the instances that ran; one whose failed step waits for its backoff
        is left to it, and one that fails again to its step's retry policy,
        while the others still run.
        """
        resumed = []
        async for summary in self.list(status=WorkflowStatus.RESUMING):
            try:
                with use_clock(self.clock):
                    async with self._turn(summary.id) as session:
                        loaded = session.version
                        session = await self._catch_up(session, abandoned=True)
                        await session.commit_if_changed()
            except ProcflowError as e:
                logger.warning("recover: instance %r: %s", summary.id, e)
                continue
            if session.version != loaded:  # something ran and was saved
                resumed.append(summary.id)
        return resumed

    # -- the worker ----------------------------------------------------------

    async def work_once(self, *, batch: int = 20, lease: float = 60.0) -> int:
        """Claim the instances that are due now and work on them; return how many.

        Due are: timer events whose time came, steps whose retry backoff
        ran out, and runs abandoned by a dead process. The claimed batch is
        finished even if the calling task is cancelled meanwhile.
        """
        with use_clock(self.clock):
            records = await self.store.claim_due(self.clock.now(), limit=batch, lease=lease)
            with anyio.CancelScope(shield=True):
                for record in records:
                    try:
                        await self._work_on(record)
                    except ProcflowError as e:
                        logger.warning("worker: instance %r: %s", record.id, e)
                    except Exception:
                        # A bug (procflow's, or a handler's that escaped it) stays with its instance.
                        logger.exception("worker: instance %r: unexpected error", record.id)
        return len(records)

    async def run_worker(self, *, poll_interval: float = 0.5, batch: int = 20, lease: float = 60.0) -> None:
        """Work on due instances until cancelled (``procflow worker`` runs this).

        Several workers, in one process or many, may run against one store:
        each instance is claimed by one of them at a time (with row locks that
        skip rows others hold, on PostgreSQL), and a delivered timer is
        committed before anything it unblocks runs, so it is never delivered
        twice. Cancel the task (or send SIGTERM to ``procflow worker``) to
        stop: the batch in hand is finished first. A store that fails is
        logged and tried again after ``poll_interval``; the worker stops only
        when cancelled.
        """
        while True:
            try:
                claimed = await self.work_once(batch=batch, lease=lease)
            except StoreError as e:
                logger.warning("worker: the store failed (%s); trying again in %ss", e, poll_interval)
                claimed = 0
            except Exception:
                # A store of the application's own may raise anything: the worker,
                # perhaps running inside a web server's lifespan, must not die of it.
                logger.exception("worker: claiming due instances failed; trying again in %ss", poll_interval)
                claimed = 0
            if claimed == 0:
                await self.clock.sleep(poll_interval)
            else:
                await anyio.lowlevel.checkpoint()  # a busy worker still notices cancellation

    # -- retention -----------------------------------------------------------

    async def purge(
        self,
        *,
        older_than: timedelta | float,
        batch: int = 1000,
        dry_run: bool = False,
        on_batch: OnBatch | None = None,
    ) -> int:
        """Delete the instances that finished or were cancelled ``older_than`` ago or longer; return how many.

        ``older_than`` is a ``timedelta`` or seconds, counted back from the
        engine's clock to the time an instance was last written. Each goes
        with its history and its kept replies; its id and correlation id are
        free again. Waiting, running and ``FAILED`` instances stay, however
        old. It deletes ``batch`` instances per transaction, batch after
        batch, until none is left, and tells ``on_batch`` (sync or async) the
        ids of each batch once it is committed. Safe while workers and senders
        run: each delete checks status and last write itself, so an instance
        written meanwhile stays. ``dry_run`` counts them instead, deleting nothing.

        Raises:
            TypeError: ``older_than`` is no number or ``timedelta``, or ``batch`` no whole number.
            ValueError: ``older_than`` is negative, NaN or infinite, or ``batch`` is below 1.
            PurgeNotSupported: the store has no ``purge`` method (see ``Store.purge``).
            StoreError: the store failed; the batches committed before stay deleted.
        """
        return await purge_old(
            self.store,
            self.clock.now(),
            older_than=older_than,
            batch=batch,
            dry_run=dry_run,
            on_batch=on_batch,
        )

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

        Raises:
            ValueError: a status is not a ``WorkflowStatus`` (a typo would
                otherwise list nothing), or ``page_size`` is below 1.
        """
        statuses = _known_statuses(status)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        after: str | None = None
        while True:
            page = await self.store.list(workflow=workflow, status=statuses, after=after, limit=page_size)
            for record in page:
                yield self.summarize(record)
            if len(page) < page_size:
                return
            after = page[-1].id

    def summarize(self, record: InstanceRecord) -> InstanceSummary:
        """The listing line of a stored row; its ``error`` says why it cannot be loaded.

        A row whose state cannot be decoded, or whose data no longer validates
        as its (registered) workflow class, is listed with ``error`` set.
        """
        summary = summarize(record)
        wtype = self._types.get(record.workflow)
        if summary.error or wtype is None:
            return summary
        try:
            wtype.adapter.validate_json(record.data)
        except Exception as e:
            return dataclasses.replace(summary, error=f"stored data cannot be loaded: {type(e).__name__}")
        return summary

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

    # -- loading -------------------------------------------------------------

    async def _record(self, key: str) -> InstanceRecord:
        return await self.store.lookup(key)

    async def _load(self, key: str) -> Session:
        return self._decode(await self._record(key))

    @contextlib.asynccontextmanager
    async def _turn(self, key: str, *, load_data: bool = True) -> AsyncIterator[Session]:
        """Load the instance and hold its turn (see ``Turns``); loaded again if another task had it.

        ``load_data=False`` leaves the workflow data as stored (``Session.stored_data``),
        unvalidated, and ``Session.workflow`` ``None``.

        Raises:
            InstanceNotFound: no instance has that id or correlation id.
            ReentrantCallError: the calling task is running this instance.
        """
        record = await self._record(key)
        async with self._turns.take(record.id) as waited:
            if waited:
                record = await self.store.get(record.id)
            yield self._decode(record, load_data=load_data)

    async def _reload(self, session: Session) -> Session:
        return self._decode(await self.store.get(session.id))

    def _decode(self, record: InstanceRecord, *, load_data: bool = True) -> Session:
        wtype = self._types.get(record.workflow)
        if wtype is None:
            raise UnknownWorkflowError(
                f"instance {record.id!r} is a {record.workflow!r}, which is not registered; "
                f"registered: {sorted(self._types) or 'none'}"
            )
        try:
            state = decode_state(record.state, record.id, record.workflow, record.status)
            meta = Bookkeeping.load(record.meta)
        except ValueError as e:
            raise CorruptInstanceError(
                f"instance {record.id!r}: its stored state cannot be decoded ({e}); repair or delete the row"
            ) from e
        workflow = wtype.decode(record.id, record.data, state) if load_data else None
        return Session(
            self,
            wtype,
            workflow,
            state,
            version=record.version,
            correlation_id=record.correlation_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
            meta=meta,
            stored_due_at=record.due_at,
            stored_data=record.data,
        )

    # -- running -------------------------------------------------------------

    async def _work_on(self, record: InstanceRecord) -> None:
        """A worker claimed ``record``: catch it up, and store its next due time."""
        async with self._turns.take(record.id) as waited:
            claimed = True
            if waited:
                fresh = await self.store.get(record.id)
                claimed = fresh.version == record.version
                record = fresh
            await self._work_on_claimed(record, claimed=claimed)

    async def _work_on_claimed(self, record: InstanceRecord, *, claimed: bool = True) -> None:
        """Catch up a claimed instance (``claimed``: the row is as the claim left it).

        Once someone else saved the row since the claim, it is theirs: it is
        worked on only if it is due now, as what they saved says, and a run
        of it counts as abandoned only once its own due time passed.
        """
        for _ in range(self.conflict_retries):
            if not claimed and (record.due_at is None or record.due_at > self.clock.now()):
                return  # someone else holds it (a run of theirs), or nothing of it is due
            session = self._decode(record)
            try:
                session = await self._catch_up(session, abandoned=claimed)
                if not session.committed:
                    await session.commit()  # the claim moved due_at; put the real one back
            except ConflictError:
                record = await self.store.get(record.id)
                claimed = False
                continue
            return

    async def _catch_up(self, session: Session, *, abandoned: bool = False) -> Session:
        """Deliver overdue timers (the earliest due first), then run what is runnable and due.

        A run in flight (``RESUMING``) is resumed only once it looks abandoned
        (its row's due time, set ``stale_after`` ahead at each commit it makes,
        has passed), when ``abandoned`` says it is, or when a failed step's
        retry is due. Threads whose failed step waits for its retry are held
        by ``Session.may_run``.
        """
        if session.meta.failure is not None:
            return session
        if session.state.cancelling:
            stale = session.stored_due_at is None or session.stored_due_at <= self.clock.now()
            if abandoned or stale:  # the process of a cancel died: carry it on
                try:
                    await self._cancel(session, session.state.reason, session.meta.compensating)
                except StepError as e:
                    logger.warning("instance %r: cancel cut short again: %s", session.id, e)
            return session
        for _ in range(_TIMERS_PER_CATCH_UP):
            req = self._next_due_timer(session)
            if req is None:
                break
            await handle_callback(req, session.workflow, session.state, None, hooks=session)
            session.transition("timer", req.name, req.thread_id)
            await session.commit()
            session = await self._run(session)
            if session.meta.failure is not None:
                return session
        now = self.clock.now()
        if session.state.status == WorkflowStatus.RESUMING:
            # Threads whose retry is not due yet stay held (Session.may_run): the others of a
            # run that looks abandoned run on, whenever that retry comes.
            retry_at = session.meta.retry_at
            stale = session.stored_due_at is None or session.stored_due_at <= now
            if abandoned or stale or (retry_at is not None and retry_at <= now):
                session = await self._run(session)
        elif session.setups_pending():
            session = await self._run(session)
        return session

    def _next_due_timer(self, session: Session) -> CallbackRequest | None:
        """The overdue timer that came due first (of two due at once, the first in thread
        order), as a worker that never fell behind would have delivered it."""
        now = self.clock.now()
        first: tuple[float, CallbackRequest] | None = None
        for t in session.state.threads:
            if t.status != ThreadStatus.WAITING_EVENT:
                continue
            for e in t.wait_events:
                due = timer_due_at(e)
                if due is not None and due <= now and (first is None or due < first[0]):
                    first = due, CallbackRequest(name=e.req.name, thread_id=t.id, pc=e.req.pc)
        return None if first is None else first[1]

    async def _run(self, session: Session) -> Session:
        """Resume until parked, deliver what the inbox holds for new Waits, commit.

        A failing step is retried later by its policy or fails the instance
        (see ``_resume``). On a conflict someone else saved the instance: it
        is reloaded, and resumed again only if it is runnable and nobody is
        running it (its stale mark passed). Returns the session as it ended.
        """
        for _ in range(self.conflict_retries * 4):
            if session.state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED) or (
                session.state.cancelling  # only its cancel moves it on
            ):
                await session.commit_if_changed()
                return session
            try:
                setup_failed = False
                try:
                    if await self._resume(session):
                        await self._commit_quietly(session)
                        return session
                except SetupError as e:
                    # The failed setups are retried later; the threads are parked, and an
                    # event of theirs that set up may be waiting in the inbox: deliver it now.
                    logger.warning("instance %r: %s", session.id, e)
                    setup_failed = True
                if await self._deliver_from_inbox(session):
                    continue
                if setup_failed:
                    await self._commit_quietly(session)
                else:
                    await session.commit_if_changed()
                return session
            except ConflictError:
                session = await self._reload(session)
                in_flight = session.stored_due_at is not None and session.stored_due_at > self.clock.now()
                if session.state.status != WorkflowStatus.RESUMING or in_flight:
                    return session
            except UnstorableDataError as e:
                return await self._unstorable(session, e)
            except DefinitionError as e:
                return await self._definition_failed(session, e)
        raise ConflictError(f"instance {session.id!r} changed on every attempt to resume it; try again")

    async def _definition_failed(self, session: Session, error: DefinitionError) -> Session:
        """The definition cannot run the instance on (a loop that never parks, a position
        lost by a deploy): fail it, at its last checkpoint, until a fix and ``retry`` (or ``goto``).

        Raises:
            DefinitionError: the instance was never stored (``start``).
        """
        if session.version == 0:
            raise error
        return await self._fail(session, "", "", f"DefinitionError: {error}")

    async def _unstorable(self, session: Session, error: UnstorableDataError) -> Session:
        """A run left data that cannot be stored: fail the instance, as its last commit left it.

        The failure names the last step that ran (the one whose data could
        not be saved), so that ``retry`` runs it again once its code is fixed.

        Raises:
            UnstorableDataError: the instance was never stored (``start``).
        """
        if session.version == 0:
            raise error
        step, thread = next(
            ((h.name, h.thread) for h in reversed(session.history) if h.kind == "step"), ("", "")
        )
        reloaded = await self._reload(session)
        # The step did start, though the run around it is undone: its observers
        # hear that before they hear it failed.
        reloaded.observed += [
            o for o in session.observed if o.kind == "step_started" and (o.name, o.thread) == (step, thread)
        ][-1:]
        return await self._fail(reloaded, step, thread, f"UnstorableDataError: {error}")

    async def _fail(self, session: Session, step: str, thread: str, error: str) -> Session:
        """Mark the instance ``FAILED`` on ``step`` in ``thread`` (both may be empty) and commit it."""
        session.meta.retries.pop(thread, None)
        session.meta.failure = Failure(step=step, thread=thread, error=error, attempts=1, at=self.clock.now())
        session.transition("failed", step, thread, error)
        logger.warning("instance %r failed: %s", session.id, error)
        await self._commit_quietly(session)
        return session

    async def _resume(self, session: Session) -> bool:
        """``resume``; whether a failing step stopped it.

        The failure is counted (``_step_failed``). While a failed step waits
        for its retry, ``Session.may_run`` holds its thread, so the instance
        is resumed again at once and its other threads run on meanwhile. A
        step that failed for good (the instance is ``FAILED``) or whose retry
        is already due stops the run; a worker takes it from there.

        Raises:
            SetupError: as ``resume`` raises it.
        """
        session.left_to_worker = False
        while True:
            try:
                await resume(
                    session.workflow,
                    session.state,
                    session.checkpoint,
                    max_transitions=self.max_transitions,
                    hooks=session,
                )
                return False
            except StepError as e:
                self._step_failed(session, e)
                retry_at = session.meta.retries.get(e.thread_id)
                if session.meta.failure is not None or retry_at is None or retry_at <= self.clock.now():
                    session.left_to_worker = True
                    return True

    async def _commit_quietly(self, session: Session) -> None:
        # On a conflict someone else saved; what failed shows again when they resume.
        with contextlib.suppress(ConflictError):
            await session.commit_if_changed()

    def _step_failed(self, session: Session, error: StepError) -> None:
        """Count the failure; schedule the retry, or fail the instance."""
        name, cause = error.step, error.__cause__
        attempts = session.meta.count_failure(error.thread_id, name)
        step = self._statement(session, name)
        policy = step.retry if isinstance(step, Step) and step.retry is not None else _NO_RETRY
        now = self.clock.now()
        if policy.retries(attempts, cause):
            session.meta.retries[error.thread_id] = now + policy.backoff.delay(attempts)
            session.transition("retry", name, error.thread_id, f"attempt {attempts} failed: {cause}")
            return
        session.meta.retries.pop(error.thread_id, None)
        session.meta.failure = Failure(
            step=name,
            thread=error.thread_id,
            error=describe_exception(cause or error),
            attempts=attempts,
            at=now,
        )
        session.transition("failed", name, error.thread_id, f"after {attempts} attempt(s): {cause}")

    def _compensation_failed(self, session: Session, error: StepError) -> None:
        """Fail the instance on the compensation that cut its cancel short (no thread: ``""``)."""
        before = session.meta.failure
        attempts = 1
        if before is not None and (before.step, before.thread) == (error.step, ""):
            attempts = before.attempts + 1
        cause = error.__cause__
        session.meta.failure = Failure(
            step=error.step,
            thread="",
            error=describe_exception(cause or error),
            attempts=attempts,
            at=self.clock.now(),
        )
        session.transition("failed", error.step, detail=f"its compensation raised: {cause}")

    def _statement(self, session: Session, name: str) -> Stmt | None:
        """The statement named ``name`` in the instance's current definition.

        Raises:
            DefinitionError: ``definition()`` raised, or returned no statement.
        """
        root = built_tree(session.workflow)
        path = index(root).get(name)
        return None if path is None else at(root, path)

    async def _deliver(
        self, session: Session, req: CallbackRequest, payload: Any, buffer: bool | None
    ) -> Any:
        """``handle_callback`` with the engine's rules for early and invalid events."""
        try:
            return await handle_callback(req, session.workflow, session.state, payload, hooks=session)
        except CallbackNotFound:
            if req.pc:  # a send for one parking (a signed callback URL, say) is for that parking only
                raise
            event = self._statement(session, req.name)
            wanted = event.buffer if buffer is None and isinstance(event, On) else buffer
            if not wanted or not isinstance(event, On):
                raise
            if isinstance(event.handler, FunctionHandler):
                stored = event.handler.storable(payload)  # a bad payload is refused now, not when delivered
            else:
                stored = _ANY.dump_python(payload, mode="json", by_alias=True)
            session.meta.inbox.append(
                Buffered(
                    event=req.name,
                    payload=stored,
                    thread_id=req.thread_id,
                    at=self.clock.now(),
                )
            )
            session.transition("buffered", req.name, req.thread_id)
            return _BUFFERED
        except PayloadError:
            await self._payload_rejected(session, req)
            raise

    async def _payload_rejected(self, session: Session, req: CallbackRequest) -> None:
        """Count an invalid payload against its parked event; cancel after ``max_attempts``.

        The count is saved on the instance as its last commit left it: a
        handler that refuses a payload (raises ``PayloadError``) may have
        changed the data first, and a refused event changes nothing.

        Raises:
            ConflictError: another process saved the instance meanwhile; the
                payload is delivered again to what it saved.
        """
        event = self._statement(session, req.name)
        limit = event.max_attempts if isinstance(event, On) else None
        if limit is None:
            return
        loaded = session.version
        session = await self._reload(session)  # what ran before the delivery is committed
        if session.version != loaded:  # the refusal may rest on data that changed since
            raise ConflictError(f"instance {session.id!r} changed while its event {req.name!r} was refused")
        parked = next(
            (
                (t.id, e.req.pc)
                for t in session.state.threads
                if not req.thread_id or t.id == req.thread_id
                for e in t.wait_events
                if e.req.name == req.name and e.status == WaitEventStatus.SETUP
            ),
            None,
        )
        if parked is None:
            return
        key = Bookkeeping.parking_key(parked[0], req.name, parked[1])
        count = session.meta.rejected.get(key, 0) + 1
        session.meta.rejected[key] = count
        session.transition("rejected", req.name, parked[0], f"invalid payload {count} of {limit}")
        if count >= limit:
            reason = f"{count} invalid payloads for event {req.name!r}"
            try:
                await self._cancel(session, reason, compensate=True)
            except StepError as e:
                # The sender sent a bad payload and is told so; the cancel, cut short
                # (what it undid is saved), left the instance FAILED until it is carried
                # on by a cancel or a retry.
                logger.warning("instance %r: cancel after %s cut short: %s", session.id, reason, e)
        else:
            await session.commit()

    async def _deliver_from_inbox(self, session: Session) -> bool:
        """Deliver the oldest buffered event a thread is now parked on; whether one was."""
        for i, item in enumerate(session.meta.inbox):
            req = CallbackRequest(name=item.event, thread_id=item.thread_id)
            # The data before the handler runs: a refused event changes nothing.
            before = session.wtype.encode(session.workflow, session.id)
            try:
                await handle_callback(req, session.workflow, session.state, item.payload, hooks=session)
            except CallbackNotFound:
                continue
            except ProcflowError as e:
                session.workflow = session.wtype.decode(session.id, before, session.state)
                del session.meta.inbox[i]
                session.transition("dropped", item.event, item.thread_id, f"buffered event refused: {e}")
                return True
            del session.meta.inbox[i]
            await session.commit()
            return True
        return False

    async def _cancel(self, session: Session, reason: str, compensate: bool) -> None:
        """Cancel (or carry on a cancel cut short); a compensation that raises fails the instance.

        The instance is then ``FAILED`` with the compensation's step as its
        failure, and stays so until its cancel completes (``cancel`` again,
        or ``retry``, which carries it on as it was asked).
        """
        session.meta.compensating = compensate
        try:
            await cancel(
                session.workflow,
                session.state,
                session.checkpoint,
                reason=reason,
                compensate=compensate,
                hooks=session,
            )
        except StepError as e:
            if session.state.cancelling:  # else nothing was undone, and nothing changed
                self._compensation_failed(session, e)
            await self._commit_quietly(session)
            raise
        session.meta.failure = None
        session.meta.retries.clear()
        session.meta.inbox.clear()
        session.meta.compensating = False
        await session.commit_if_changed()


# Returned by _deliver when the event went to the inbox.
_BUFFERED: Any = object()
