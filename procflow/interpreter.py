"""The interpreter: ``resume``, ``handle_callback`` and ``cancel``.

It is pure: no clock, no I/O. Every change of state is handed to the caller's
``checkpoint`` so that the caller can store it.

How a run is scheduled (deterministic, so a run can be replayed):

* Threads run one at a time; a thread runs until it parks or ends. Then the
  first runnable thread in the order of ``state.threads`` runs. A thread
  started by ``Go`` is appended to ``state.threads``; a thread woken because
  its ``WaitFor`` condition became true moves to the end of it. So runnable
  threads run first come, first served: the main thread and the threads
  runnable when ``resume`` starts, in list order, then started and woken
  threads in the order they became runnable. A thread that was running when
  the state was checkpointed (status ``EXECUTING``) goes first, so a run
  continued from any stored state schedules exactly as the uninterrupted run.
* After every step, and when ``resume`` starts, the conditions of the threads
  parked on a ``WaitFor`` are checked in thread order.
* ``definition()`` is called once when ``resume`` starts and once after each
  transition that can change the workflow's data (a step, a ``WaitFor``
  handler, a compensation); the thread then finds its place in the new tree by
  name, so a new version of the definition takes effect at the next step.

Errors leave the ``State`` as it was at the last checkpoint: every change made
since is undone before the error propagates.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

from ._calling import call, isawaitable
from .errors import (
    CallbackNotFound,
    DefinitionError,
    HandlerError,
    PayloadError,
    ProcflowError,
    SetupError,
    StaleCallback,
    StepError,
    WorkflowFinishedError,
    describe_exception,
)
from .handlers import FunctionHandler, Handler
from .hooks import RunHooks
from .state import (
    MAIN_THREAD,
    CallbackRequest,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
    new_thread,
    new_wait_event,
)
from .statements import (
    CHOICE,
    LOOP,
    SEQUENCE,
    THREAD,
    Break,
    Continue,
    For,
    Go,
    On,
    OnEvent,
    Path,
    Return,
    Section,
    ShapeCache,
    Step,
    Stmt,
    Switch,
    Wait,
    WaitFor,
)

__all__ = ["Checkpoint", "CheckpointType", "Workflow", "cancel", "handle_callback", "resume"]

logger = logging.getLogger("procflow")


class CheckpointType(StrEnum):
    """What changed before a call to ``checkpoint``."""

    AFTER_STEP = "AFTER_STEP"
    """A step (or, during ``cancel``, a compensation) completed."""
    AFTER_RESUME = "AFTER_RESUME"
    """Threads moved without running a step: they parked, started or ended,
    or the workflow finished or was cancelled."""
    AFTER_CONDITION = "AFTER_CONDITION"
    """A ``WaitFor`` condition became true and its handler ran."""
    AFTER_SETUP = "AFTER_SETUP"
    """An event's setup ran (successfully, or recorded as ``SETUP_ERROR``)."""
    AFTER_TEARDOWN = "AFTER_TEARDOWN"
    """An event's teardown ran (successfully, or recorded as ``TEARDOWN_ERROR``)."""


Checkpoint = Callable[[CheckpointType], "Awaitable[None] | None"]
"""Called after each change of state; sync or async. Raising stops the run."""


class Workflow(Protocol):
    """Anything with a ``definition()`` returning the statement tree."""

    def definition(self) -> Stmt: ...


_RUNNABLE = (ThreadStatus.RESUMING, ThreadStatus.EXECUTING)
_PARKED_EVENT = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP, WaitEventStatus.SETUP_ERROR)
_LEFT_EVENT = (WaitEventStatus.PENDING_TEARDOWN, WaitEventStatus.TEARDOWN_ERROR)
_DONE = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)
_NEEDS_SETUP = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP_ERROR)
# Enum members as globals: looking one up on its enum class costs eight times as much.
_AFTER_STEP = CheckpointType.AFTER_STEP
_AFTER_RESUME = CheckpointType.AFTER_RESUME
_AFTER_CONDITION = CheckpointType.AFTER_CONDITION
_AFTER_SETUP = CheckpointType.AFTER_SETUP
_AFTER_TEARDOWN = CheckpointType.AFTER_TEARDOWN
_EXECUTING = ThreadStatus.EXECUTING
_THREAD_RESUMING = ThreadStatus.RESUMING
_WAITING_EVENT = ThreadStatus.WAITING_EVENT
_WAITING_CONDITION = ThreadStatus.WAITING_CONDITION
_PENDING_TEARDOWN = WaitEventStatus.PENDING_TEARDOWN
_SET_UP = WaitEventStatus.SETUP
_SETUP_ERROR = WaitEventStatus.SETUP_ERROR
_TEARDOWN_ERROR = WaitEventStatus.TEARDOWN_ERROR
_WORKFLOW_RESUMING = WorkflowStatus.RESUMING
_WORKFLOW_WAITING = WorkflowStatus.WAITING
_FINISHED = WorkflowStatus.FINISHED
_CANCELLED = WorkflowStatus.CANCELLED

# The WaitEvent.type of an OnEvent, read without making its handler (see _listener).
_FUNCTION_HANDLER = FunctionHandler.type

# The checked trees of every workflow class: see ShapeCache.
_shapes = ShapeCache()


# The statement classes the interpreter runs; any other is a subclass of one of them.
_BUILTIN = frozenset({Step, For, Section, Switch, Wait, WaitFor, Go, Return, Break, Continue})

# The tree of a _Run until definition() is called.
_EMPTY = Section()

# Returned by run_other when the thread parked.
_PARKED = Stmt()

# A thread's place while it runs is two lists of one length, from the root down:
# the containers it is in, and the index of the child it is at in each. The
# statement at the place is ``containers[-1]._kids[positions[-1]]``. Two lists
# rather than one of (container, index) pairs: moving on writes an int, and the
# containers can be dropped and found again in a new tree without a tuple made
# per level.


# The kinds of containers whose next child runs when one finishes.
_GOES_ON = frozenset({SEQUENCE, LOOP})


def _advance(containers: list[Stmt], positions: list[int]) -> Stmt | None:
    """The statement at the place finished: return the next one to run.

    Moves the place to it. Returns the ``For`` itself when its body finished,
    so that its condition is evaluated again, and ``None`` when the thread ends.
    """
    while containers:
        container = containers[-1]
        kind = container._kind
        if kind in _GOES_ON:
            pos = positions[-1] + 1
            kids = container._kids
            if pos < len(kids):
                positions[-1] = pos
                return kids[pos]
            containers.pop()
            positions.pop()
            if kind == LOOP:
                return container
        elif kind == CHOICE:
            containers.pop()
            positions.pop()
        else:
            return None
    return None


def _refind(containers: list[Stmt], positions: list[int], root: Stmt, cls: type[Stmt], name: str) -> bool:
    """Fill the empty ``containers`` from the new tree ``root``, following ``positions``.

    Returns whether the statement there has class ``cls`` and ``name``; if
    not, the definition changed shape and the place must be looked up.
    """
    node = root
    for i in positions:
        kids = node._kids
        if i >= len(kids):
            return False
        containers.append(node)
        node = kids[i]
    return type(node) is cls and node.name == name


def _listener(on: On) -> Handler | None:
    """``on``'s handler, or ``None`` when its setup and teardown would do nothing.

    An ``OnEvent`` makes its ``FunctionHandler``, which listens for nothing,
    only when asked for it: parking on the event, setting it up and tearing it
    down never ask, so only the delivery of an event makes one.
    """
    if type(on) is OnEvent and on._handler is None:
        return None
    return on.handler


def _enter(containers: list[Stmt], positions: list[int], container: Stmt, pos: int = 0) -> Stmt | None:
    """Start running ``container``'s children at ``pos``; an empty body finishes at once."""
    kids = container._kids
    if pos < len(kids):
        containers.append(container)
        positions.append(pos)
        return kids[pos]
    return _advance(containers, positions)


def _innermost_loop(containers: list[Stmt], jump: Stmt, thread: Thread) -> int:
    """The index in ``containers`` of the innermost ``For`` of the thread."""
    for k in range(len(containers) - 1, -1, -1):
        kind = containers[k]._kind
        if kind == LOOP:
            return k
        if kind == THREAD:
            break
    raise DefinitionError(f"{type(jump).__name__}() outside a For loop in thread {thread.id!r}")


_restore_fields = dict.update


def _writable(obj: BaseModel) -> dict[str, Any]:
    """``obj``'s fields, all marked as set, for writing (see ``_Run.touch``)."""
    values = obj.__dict__
    fields_set = obj.__pydantic_fields_set__
    if len(fields_set) != len(values):
        fields_set.update(values)
    return values


def _restore_transition(fields: tuple[dict[str, Any], dict[str, Any]], saved: tuple[int, int, Any]) -> None:
    state_values, thread_values = fields
    state_values["pc"], thread_values["pc"], thread_values["status"] = saved


def _truncate(lst: list[Any], length: int) -> None:
    del lst[length:]


def _reinsert(lst: list[Any], at: tuple[int, Any]) -> None:
    lst.insert(*at)


def _instance(state: State) -> str:
    """How messages name an instance: its workflow and id, ``'order' 'o-1'``."""
    return f"{state.workflow!r} {state.id!r}"


class _Run:
    """One call of ``resume``, ``handle_callback`` or ``cancel``."""

    __slots__ = (
        "_checkpoint",
        "cond_waiters",
        "finished",
        "hooks",
        "loops_entered",
        "max_transitions",
        "paths",
        "queue",
        "root",
        "state",
        "thread_ids",
        "transitions",
        "undo",
        "workflow",
    )

    def __init__(
        self,
        workflow: Workflow,
        state: State,
        checkpoint: Checkpoint | None = None,
        max_transitions: int = 10_000,
        hooks: RunHooks | None = None,
    ) -> None:
        _require_state(state)
        self.workflow = workflow
        self.state = state
        self._checkpoint = checkpoint
        self.hooks = hooks
        self.max_transitions = max_transitions
        self.transitions = 0
        # What a rollback to the last checkpoint needs: one (undo, target, saved)
        # entry per change since, undone newest first by undo(target, saved).
        # Only the State is rolled back; a _Run is not used again after an error.
        self.undo: list[tuple[Callable[[Any, Any], object], Any, Any]] = []
        self.root: Stmt = _EMPTY
        # Position names to paths in the first tree of the run (None until it is built).
        self.paths: dict[str, Path] | None = None
        self.loops_entered: set[int] = set()
        # Runnable threads, first to run first: the thread that was running
        # at the last checkpoint, so that a run continued from a stored state
        # schedules exactly as the uninterrupted run did, then the others in
        # state.threads order. Filled in by resume. A thread started or woken
        # later is appended, as it is to state.threads: the queue stays in
        # state.threads order without being sorted.
        self.queue: deque[Thread] = deque()
        self.cond_waiters: list[Thread] = []
        # The ids of the threads, made when a Go first needs them.
        self.thread_ids: set[str] | None = None
        self.finished = False

    # -- bookkeeping ---------------------------------------------------------

    def touch(self, obj: BaseModel) -> dict[str, Any]:
        """Log ``obj``'s fields for a rollback; return them for writing.

        The interpreter writes fields through the returned ``__dict__``:
        pydantic's ``__setattr__`` costs more than the rest of a step's
        bookkeeping. Every field is marked as set, so ``exclude_unset`` dumps
        keep them.
        """
        values = obj.__dict__
        self.undo.append((_restore_fields, values, values.copy()))
        fields_set = obj.__pydantic_fields_set__
        if len(fields_set) != len(values):
            fields_set.update(values)
        return values

    def set(self, obj: BaseModel, field: str, value: Any) -> None:
        self.touch(obj)[field] = value

    def append(self, lst: list[Any], item: Any) -> None:
        self.undo.append((_truncate, lst, len(lst)))
        lst.append(item)

    def remove(self, lst: list[Any], i: int) -> None:
        """Delete ``lst[i]`` in place (no copy of a long list of threads)."""
        self.undo.append((_reinsert, lst, (i, lst[i])))
        del lst[i]

    @property
    def dirty(self) -> bool:
        """Whether the State changed since the last checkpoint."""
        return bool(self.undo)

    def rollback(self) -> None:
        """Put the State back as it was at the last checkpoint."""
        for undo, target, saved in reversed(self.undo):
            undo(target, saved)
        self.undo.clear()

    async def checkpoint(self, kind: CheckpointType) -> None:
        if self._checkpoint is not None:
            result = self._checkpoint(kind)
            if result is not None and isawaitable(result):
                await result
        self.undo.clear()

    def build(self) -> None:
        """Call ``definition()``; check the first tree of the run as a whole."""
        self.root = built_tree(self.workflow)
        self.loops_entered.clear()
        if self.paths is None:
            self.reindex()  # validate first; later builds of this run are checked by locate

    def reindex(self) -> None:
        """Validate the current tree and map its position names to paths."""
        self.paths = _indexed(self.root, self.workflow)

    def descend(self, path: Path) -> tuple[list[Stmt], Stmt | None]:
        """The containers along ``path`` in the current tree, and the statement at its end."""
        containers: list[Stmt] = []
        node = self.root
        for i in path:
            kids = node._kids
            if i >= len(kids):
                return containers, None
            containers.append(node)
            node = kids[i]
        return containers, node

    def locate(
        self, name: str, kind: type[Stmt] | tuple[type[Stmt], ...], thread: Thread
    ) -> tuple[list[Stmt], list[int], Any]:
        """Find the statement a stored thread points at, checked for its kind.

        Returns the place of the statement (its containers and positions, see
        ``_advance``) and the statement. Follows the path the name had in the
        last indexed tree; the tree is indexed again only when its shape changed.
        """
        assert self.paths is not None
        path = self.paths.get(name)
        if path is not None:
            containers, stmt = self.descend(path)
            if stmt is not None and stmt.name == name and isinstance(stmt, kind):
                return containers, list(path), stmt
        self.reindex()  # the shape changed since the tree was indexed
        assert self.paths is not None
        path = self.paths.get(name)
        stmt = None
        if path is not None:
            containers, stmt = self.descend(path)
            if isinstance(stmt, kind):
                return containers, list(path), stmt
        found = "nothing" if stmt is None else f"a {type(stmt).__name__}"
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(k.__name__ for k in kinds)
        raise DefinitionError(
            f"thread {thread.id!r} of {self.state.workflow!r} {self.state.id!r} is at "
            f"{wanted} {name!r}, but the definition has {found} by that name; "
            "keep the names at which in-flight instances are parked"
        )

    def find(self, name: str, kind: type[Stmt] | tuple[type[Stmt], ...], thread: Thread) -> Any:
        """``locate`` for callers that need the statement only."""
        assert self.paths is not None
        path = self.paths.get(name)
        if path is not None:
            stmt = self.root
            for i in path:
                kids = stmt._kids
                if i >= len(kids):
                    break
                stmt = kids[i]
            else:
                if stmt.name == name and isinstance(stmt, kind):
                    return stmt
        return self.locate(name, kind, thread)[2]

    def in_thread(self, thread: Thread) -> str:
        """Where a statement runs, for messages: ``in thread 'x' of 'order' 'o-1'``."""
        return f"in thread {thread.id!r} of {_instance(self.state)}"

    def too_many_transitions(self, thread: Thread) -> DefinitionError:
        return DefinitionError(
            f"more than {self.max_transitions} transitions in one resume, {self.in_thread(thread)}; "
            "a loop that never waits? Raise max_transitions if the work is real"
        )

    def count_transition(self, thread: Thread) -> dict[str, Any]:
        """Count a transition of ``thread``; return its fields for writing.

        A rollback restores the ``pc`` of both and the thread's ``status``;
        any other field written through the returned dict must be logged.
        """
        self.transitions += 1
        if self.transitions > self.max_transitions:
            raise self.too_many_transitions(thread)
        # One undo entry for the three fields a transition changes, not the
        # copies of both objects' fields that touch() would log.
        state = self.state
        state_values = state.__dict__
        values = thread.__dict__
        saved = (state_values["pc"], values["pc"], values["status"])
        self.undo.append((_restore_transition, (state_values, values), saved))
        state_values["pc"] += 1
        values["pc"] += 1
        fields_set = state.__pydantic_fields_set__
        if len(fields_set) != len(state_values):
            fields_set.update(state_values)
        fields_set = thread.__pydantic_fields_set__
        if len(fields_set) != len(values):
            fields_set.update(values)
        return values

    def evaluate(self, cond: Any, stmt: Stmt, thread: Thread) -> bool:
        if cond is True or cond is False:
            return cond
        try:
            result = cond()
            if result is True or result is False:
                return result
            if not isawaitable(result):
                return bool(result)
        except Exception as e:
            raise DefinitionError(
                f"the condition of {type(stmt).__name__} {stmt.name!r} {self.in_thread(thread)} "
                f"raised {type(e).__name__}: {e}"
            ) from e
        close = getattr(result, "close", None)
        if close is not None:
            close()  # a coroutine never awaited: no warning about it
        raise DefinitionError(
            f"the condition of {type(stmt).__name__} {stmt.name!r} {self.in_thread(thread)} returned "
            f"{type(result).__name__}: a condition must be a bool or a plain function returning one, "
            "not async; await in a step or a handler and keep the answer in the workflow's data"
        )

    # -- running threads (resume() below drives them) -------------------------

    async def run_thread(self, t: Thread) -> None:
        """Run one thread until it parks or ends."""
        self.loops_entered.clear()  # another thread's iterations say nothing about this one's
        values = self.count_transition(t)
        values["status"] = _EXECUTING
        containers, positions, node = self.continue_at(t)

        # This loop runs for every statement a thread passes: steps and loops
        # are run inline, exact types are tested first.
        hooks = self.hooks
        state = self.state
        state_values = state.__dict__
        values = t.__dict__
        loops_entered = self.loops_entered
        workflow = self.workflow
        checkpoint = self._checkpoint
        undo = self.undo
        cond_waiters = self.cond_waiters
        while node is not None:
            cls = type(node)
            if cls is Step or (cls not in _BUILTIN and isinstance(node, Step)):
                if hooks is not None:
                    await hooks.before_effect()
                    hooks.transition("step_started", node.name, t.id)
                try:
                    result = node.action()  # type: ignore[attr-defined]
                    if result is not None and isawaitable(result):
                        await result
                except Exception as e:
                    if hooks is not None:
                        hooks.transition("step_failed", node.name, t.id, describe_exception(e))
                    raise StepError(node.name, t.id, e, instance=_instance(state)) from e
                name = node.name
                if hooks is not None:
                    hooks.transition("step", name, t.id)
                self.transitions += 1
                if self.transitions > self.max_transitions:
                    raise self.too_many_transitions(t)
                # count_transition() without the undo log: should the tree or the
                # checkpoint fail, the except clause below undoes these changes,
                # which costs a step less than copying both objects' fields would.
                # (count_transition above marked every field of both as set.)
                saved = (state_values["pc"], values["pc"], values["cur_step"], values["cur_callback"])
                state_values["pc"] = saved[0] + 1
                values["pc"] = saved[1] + 1
                values["cur_step"] = name
                values["cur_callback"] = ""
                try:
                    if node.compensate is not None:  # type: ignore[attr-defined]
                        self.append(state.completed, name)
                    # The thread's place as child indexes, and no reference
                    # into the old tree: it is freed before definition() builds
                    # the new one, which then reuses its (cached) memory.
                    containers.clear()
                    node = self.root = _EMPTY
                    # built_tree() inline: a call less per step
                    try:
                        root = workflow.definition()
                    except Exception as e:
                        raise _definition_raised(workflow, e) from e
                    if not isinstance(root, Stmt):
                        raise _not_a_statement(workflow, root)
                    self.root = root
                    del root  # held by self.root alone, so that the next step can free it
                    loops_entered.clear()
                    if checkpoint is not None:
                        result = checkpoint(_AFTER_STEP)
                        if result is not None and isawaitable(result):
                            await result
                except BaseException:
                    state_values["pc"], values["pc"], values["cur_step"], values["cur_callback"] = saved
                    raise
                undo.clear()
                if cond_waiters:
                    await self.check_conditions()
                # self.root: a WaitFor handler run by check_conditions rebuilds the tree
                if not _refind(containers, positions, self.root, cls, name):
                    containers, positions, _ = self.locate(name, Step, t)
                node = _advance(containers, positions)
            elif cls is For or (cls not in _BUILTIN and isinstance(node, For)):
                cond = node.cond  # type: ignore[attr-defined]
                if cond is not True and (cond is False or not self.evaluate(cond, node, t)):
                    loops_entered.discard(id(node))
                    node = _advance(containers, positions)
                    continue
                key = id(node)
                if key in loops_entered or not node._kids:
                    raise DefinitionError(
                        f"an iteration of For {node.name!r} {self.in_thread(t)} neither ran a step "
                        "nor waited; every iteration must park at least once: give its body a Step, "
                        "Wait or WaitFor on every path, or let its condition become false"
                    )
                loops_entered.add(key)
                containers.append(node)
                positions.append(0)
                node = node._kids[0]
            elif cls is Section:
                node = _enter(containers, positions, node)
            elif cls is Switch:
                node = self.enter_switch(t, node, containers, positions)  # type: ignore[arg-type]
            elif cls is Wait:
                self.park_on_wait(t, node)  # type: ignore[arg-type]
                return
            else:
                node = await self.run_other(t, node, containers, positions)
                if node is _PARKED:
                    return
        if containers and containers[-1]._kids[positions[-1]] is None:
            # Not the end of the thread: a tree rebuilt since the first one holds None
            # where the thread goes next. Checking that tree as a whole says where.
            self.reindex()
            raise DefinitionError(
                f"{type(workflow).__name__}.definition() holds None where thread {t.id!r} of "
                f"{_instance(state)} goes next; every child must be a statement"
            )
        self.end_thread(t)

    def continue_at(self, t: Thread) -> tuple[list[Stmt], list[int], Stmt | None]:
        """Where the runnable thread ``t`` goes on: its place and the statement to run next."""
        event = t.cur_callback
        if event:
            assert self.paths is not None
            path = self.paths.get(event)
            if path is not None:  # the event by its own path, if it is still in the thread's Wait
                containers, on = self.descend(path)
                if isinstance(on, On) and on.name == event and containers:
                    wait = containers[-1]
                    if isinstance(wait, Wait) and wait.name == t.cur_step:
                        positions = list(path)
                        return containers, positions, _enter(containers, positions, on)
            # the tree changed shape since it was indexed, or the event left the Wait
            containers, positions, wait = self.locate(t.cur_step, Wait, t)
            i = self.event_index(wait, event, t)
            containers.append(wait)
            positions.append(i)
            return containers, positions, _enter(containers, positions, wait._kids[i])
        if t.cur_step:
            containers, positions, _ = self.locate(t.cur_step, (Step, WaitFor), t)
            return containers, positions, _advance(containers, positions)
        if t.id == MAIN_THREAD:
            return [], [], self.root
        containers, positions, go = self.locate(t.name, Go, t)
        containers.append(go)
        positions.append(0)
        return containers, positions, go.body

    async def run_other(
        self, t: Thread, node: Stmt, containers: list[Stmt], positions: list[int]
    ) -> Stmt | None:
        """Run the statements not special-cased in ``run_thread``, and subclasses.

        Moves the place (``containers``, ``positions``) in place.
        """
        if isinstance(node, Section):
            return _enter(containers, positions, node)
        if isinstance(node, Switch):
            return self.enter_switch(t, node, containers, positions)
        if isinstance(node, Wait):
            self.park_on_wait(t, node)
            return _PARKED
        if isinstance(node, WaitFor):
            if not self.evaluate(node.cond, node, t):
                self.park_on_condition(t, node)
                return _PARKED
            if node.handler is not None:
                await self.run_condition_handler(t, node)
                if self.cond_waiters:
                    await self.check_conditions()
                containers[:], positions[:], _ = self.locate(node.name, WaitFor, t)
            return _advance(containers, positions)
        if isinstance(node, Go):
            self.start_thread(t, node)
            return _advance(containers, positions)
        if isinstance(node, Return):
            return None
        if isinstance(node, Break):
            k = _innermost_loop(containers, node, t)
            self.loops_entered.discard(id(containers[k]))
            del containers[k:], positions[k:]
            return _advance(containers, positions)
        if isinstance(node, Continue):
            k = _innermost_loop(containers, node, t)
            loop = containers[k]
            del containers[k:], positions[k:]
            return loop
        raise DefinitionError(
            f"thread {t.id!r} of {_instance(self.state)} reached {node!r}, which the interpreter cannot run; "
            "derive custom statements from a procflow statement class (Step, Wait, ...)"
        )

    def enter_switch(
        self, t: Thread, switch: Switch, containers: list[Stmt], positions: list[int]
    ) -> Stmt | None:
        for i, case in enumerate(switch._kids):
            cond = case.cond
            if cond is True or (cond is not False and self.evaluate(cond, case, t)):
                containers.append(switch)
                positions.append(i)
                return _enter(containers, positions, case)
        return _advance(containers, positions)

    def check_parked(self, t: Thread) -> None:
        """The definition must still have the Wait a thread is parked on, with its events."""
        wait = self.find(t.cur_step, Wait, t)
        for e in t.wait_events:
            if e.status in _PARKED_EVENT:
                self.event_index(wait, e.req.name, t)

    def event_index(self, wait: Wait, name: str, t: Thread) -> int:
        for i, on in enumerate(wait._kids):
            if on.name == name:
                return i
        raise DefinitionError(
            f"thread {t.id!r} of {_instance(self.state)} is parked on Wait "
            f"{wait.name!r}, but the definition no longer has event {name!r} in it; keep the "
            "events of the Waits at which in-flight instances are parked"
        )

    def start_thread(self, t: Thread, go: Go) -> None:
        if go.id is None:
            tid = go.name
        else:
            try:
                tid = go.id()
            except Exception as e:
                raise DefinitionError(
                    f"the id of Go {go.name!r} {self.in_thread(t)} raised {type(e).__name__}: {e}"
                ) from e
            if not isinstance(tid, str) or not tid:
                raise DefinitionError(
                    f"the id of Go {go.name!r} {self.in_thread(t)} returned {tid!r}, not a non-empty str"
                )
        thread_ids = self.thread_ids
        if thread_ids is None:
            thread_ids = self.thread_ids = {x.id for x in self.state.threads}
        if tid in thread_ids:
            raise DefinitionError(
                f"Go {go.name!r} {self.in_thread(t)} would start thread {tid!r}, but a thread with "
                "that id is running; give Go an id=... that differs per thread"
            )
        new = new_thread(tid, go.name)
        self.append(self.state.threads, new)
        thread_ids.add(tid)
        self.enqueue(new)

    def enqueue(self, t: Thread) -> None:
        """Make ``t``, the last of state.threads, runnable after every thread queued before it."""
        self.queue.append(t)

    def wake(self, t: Thread) -> None:
        """Make a parked thread runnable: it moves to the end of state.threads and the queue."""
        threads = self.state.threads
        if threads[-1] is not t:
            self.set(self.state, "threads", [x for x in threads if x is not t] + [t])
        self.enqueue(t)

    def park_on_wait(self, t: Thread, wait: Wait) -> None:
        events = [e for e in t.wait_events if e.status in _LEFT_EVENT] if t.wait_events else []
        state_id = self.state.id
        for on in wait._kids:
            handler = _listener(on)
            if handler is None:
                kind = _FUNCTION_HANDLER
            else:
                kind = handler.type
                if type(kind) is not str or not kind:  # a class checks its own; an instance may set another
                    raise DefinitionError(
                        f"the handler of event {on.name!r} {self.in_thread(t)} has type {kind!r}; "
                        f"{type(handler).__name__}.type must be a non-empty str"
                    )
            events.append(new_wait_event(kind, state_id, t.id, on.name, t.pc))
        values = self.touch(t)
        values["wait_events"] = events
        values["status"] = _WAITING_EVENT
        values["cur_step"] = wait.name
        if values["cur_callback"]:
            values["cur_callback"] = ""

    def park_on_condition(self, t: Thread, wait_for: WaitFor) -> None:
        self.set(t, "status", _WAITING_CONDITION)
        self.set(t, "cur_step", wait_for.name)
        if t.cur_callback:
            self.set(t, "cur_callback", "")
        waiters = self.cond_waiters
        waiters.append(t)
        if len(waiters) > 1:  # in thread order, as a resume from the stored state lists them
            rank = {id(x): i for i, x in enumerate(self.state.threads)}
            waiters.sort(key=lambda x: rank[id(x)])

    async def run_condition_handler(self, t: Thread, wait_for: WaitFor) -> None:
        """The condition of ``wait_for`` is true: run its handler, rebuild and checkpoint."""
        if self.hooks is not None:
            await self.hooks.before_effect()
        try:
            await call(wait_for.handler)  # type: ignore[arg-type]
        except Exception as e:
            raise StepError(
                wait_for.name, t.id, e, what="the handler of WaitFor", instance=_instance(self.state)
            ) from e
        if self.hooks is not None:
            self.hooks.transition("condition", wait_for.name, t.id)
        self.count_transition(t)
        self.set(t, "cur_step", wait_for.name)
        if t.cur_callback:
            self.set(t, "cur_callback", "")
        self.build()
        await self.checkpoint(_AFTER_CONDITION)

    async def check_conditions(self) -> None:
        """Wake the threads whose ``WaitFor`` condition is true, in thread order."""
        i = 0
        while i < len(self.cond_waiters):
            t = self.cond_waiters[i]
            wait_for = self.find(t.cur_step, WaitFor, t)
            if not self.evaluate(wait_for.cond, wait_for, t):
                i += 1
                continue
            del self.cond_waiters[i]
            self.set(t, "status", _THREAD_RESUMING)
            if self.state.status != _WORKFLOW_RESUMING:
                self.set(self.state, "status", _WORKFLOW_RESUMING)
            self.wake(t)
            if wait_for.handler is not None:
                await self.run_condition_handler(t, wait_for)
                i = 0  # the handler may have changed what the other conditions see

    def end_thread(self, t: Thread) -> None:
        """The thread finished its body or returned."""
        if t.id == MAIN_THREAD:
            self.finished = True
            return
        if t.wait_events:
            # Failed teardowns outlive their thread: the main thread keeps them
            # for the next resume to retry (teardown looks handlers up by name).
            main = next(m for m in self.state.threads if m.id == MAIN_THREAD)
            self.set(main, "wait_events", [*main.wait_events, *t.wait_events])
        threads = self.state.threads
        i = 0
        for other in threads:
            if other is t:
                break
            i += 1
        self.remove(threads, i)
        if self.thread_ids is not None:
            self.thread_ids.discard(t.id)

    async def finish(self) -> None:
        """The main thread returned: tear down every parked event, drop the threads.

        Nothing is checkpointed between the main thread's end and the final
        FINISHED checkpoint: the main thread's stored position is older than
        the rest of its run (a ``Go`` it passed since, say), so a state stored
        in between could not be continued. A crash among these teardowns
        repeats the main thread's last stretch and the teardowns, which run
        at least once anyway.
        """
        for t in self.state.threads:
            if t.wait_events:
                await self.teardown_all(checkpoints=False)
                break
        values = self.touch(self.state)
        values["status"] = _FINISHED
        values["threads"] = []
        if self.hooks is not None:
            self.hooks.transition("finished")
        save = self._checkpoint  # checkpoint() without its coroutine
        if save is not None:
            result = save(_AFTER_RESUME)
            if result is not None and isawaitable(result):
                await result
        self.undo.clear()

    # -- events --------------------------------------------------------------

    def event_of(self, t: Thread, e: WaitEvent) -> On:
        return self.find(e.req.name, On, t)  # type: ignore[no-any-return]

    async def teardown(self, t: Thread, e: WaitEvent, *, keep_failed: bool, checkpoint: bool = True) -> None:
        """Tear ``e`` down; with ``checkpoint``, tell the hooks first and checkpoint after."""
        handler = _listener(self.find(e.req.name, On, t))
        if handler is not None:
            if checkpoint and self.hooks is not None and handler.side_effects:
                await self.hooks.before_effect()
            try:
                result = handler.teardown(e.req, e.handled)
                if result is not None and isawaitable(result):
                    await result
            except Exception as exc:
                if self.hooks is not None:
                    self.hooks.transition("teardown_error", e.req.name, t.id, describe_exception(exc))
                logger.warning(
                    "teardown of event %r of thread %r of %r %r failed: %s",
                    e.req.name,
                    t.id,
                    self.state.workflow,
                    self.state.id,
                    exc,
                )
                if keep_failed:
                    values = self.touch(e)
                    values["status"] = _TEARDOWN_ERROR
                    values["error"] = describe_exception(exc)
                    await self.checkpoint(_AFTER_TEARDOWN)
                    return
        if self.hooks is not None:
            self.hooks.transition("teardown", e.req.name, t.id)
        self.set(t, "wait_events", [x for x in t.wait_events if x is not e])
        if checkpoint:
            save = self._checkpoint
            if save is not None:
                result = save(_AFTER_TEARDOWN)
                if result is not None and isawaitable(result):
                    await result
            self.undo.clear()

    async def teardown_all(self, *, checkpoints: bool = True) -> None:
        """Tear down every event that was set up or left; failures are logged."""
        for t in list(self.state.threads):
            for e in list(t.wait_events):
                if e.status in _LEFT_EVENT or e.status == _SET_UP:
                    await self.teardown(t, e, keep_failed=False, checkpoint=checkpoints)

    async def setup_parked_events(self) -> _Failures | None:
        """Set up the events of parked threads that are not (yet) set up; return the failures."""
        failures = None
        hooks = self.hooks
        for t in self.state.threads:
            if t.status != _WAITING_EVENT:
                continue
            for e in t.wait_events:
                if e.status not in _NEEDS_SETUP:
                    continue
                req = e.req
                handler = _listener(self.find(req.name, On, t))
                if hooks is not None and handler is not None and handler.side_effects:
                    await hooks.before_effect()
                try:
                    data: Any = ""
                    if handler is not None:
                        data = handler.setup(req)
                        if data is not None and isawaitable(data):
                            data = await data
                        if data is None:
                            data = ""
                        elif not isinstance(data, str):
                            raise TypeError(
                                f"{type(handler).__name__}.setup must return a str, got {type(data).__name__}"
                            )
                except Exception as exc:
                    if failures is None:
                        failures = _Failures()
                    failures[(t.id, req.name)] = describe_exception(exc)
                    failures.cause = failures.cause or exc
                    values = self.touch(e)
                    values["status"] = _SETUP_ERROR
                    values["error"] = describe_exception(exc)
                    if hooks is not None:
                        hooks.transition("setup_error", req.name, t.id, describe_exception(exc))
                else:
                    if hooks is not None:
                        hooks.transition("setup", req.name, t.id)
                    if data == req.setup_data:
                        _writable(req)  # unchanged: nothing to undo
                    else:
                        self.set(req, "setup_data", data)
                    values = self.touch(e)
                    values["status"] = _SET_UP
                    if values["error"]:
                        values["error"] = ""
                save = self._checkpoint
                if save is not None:
                    result = save(_AFTER_SETUP)
                    if result is not None and isawaitable(result):
                        await result
                self.undo.clear()
        return failures

    # -- cancel --------------------------------------------------------------

    async def cancel(self, reason: str, compensate: bool) -> None:
        state = self.state
        if state.status in _DONE:
            raise WorkflowFinishedError(
                f"workflow {state.workflow!r} {state.id!r} is {state.status.value}; it cannot be cancelled"
            )
        try:
            self.build()
            # Saved with the first compensation or teardown: from then on, a cancel
            # cut short leaves the workflow half undone, and resume and
            # handle_callback refuse it until cancel is called again.
            if state.reason != reason:
                self.set(state, "reason", reason)
            if compensate:
                await self.compensate()
            await self.teardown_all()
            self.set(state, "status", _CANCELLED)
            if self.hooks is not None:
                self.hooks.transition("cancelled", detail=reason)
            self.set(state, "threads", [])
            await self.checkpoint(_AFTER_RESUME)
        except BaseException:
            self.rollback()
            raise

    async def compensate(self) -> None:
        """Run the compensations of completed steps, newest first."""
        completed = self.state.completed
        while completed:
            name = completed[-1]
            try:
                step = self.locate(name, Step, _COMPENSATING)[2]
            except DefinitionError:
                step = None
            if step is None or step.compensate is None:
                raise DefinitionError(
                    f"{_instance(self.state)} completed Step {name!r}, but the definition has no Step "
                    "by that name with a compensate; keep it while such instances may be cancelled "
                    "with compensate=True, or cancel them with compensate=False"
                )
            if self.hooks is not None:
                await self.hooks.before_effect()
            try:
                await call(step.compensate)
            except Exception as e:
                raise StepError(
                    name, "", e, what="the compensation of Step", instance=_instance(self.state)
                ) from e
            if self.hooks is not None:
                self.hooks.transition("compensated", name)
            self.set(self.state, "completed", completed[:-1])
            completed = self.state.completed
            self.set(self.state, "pc", self.state.pc + 1)
            self.build()
            await self.checkpoint(_AFTER_STEP)


# Stands for the thread in messages about compensations, which belong to no thread.
_COMPENSATING = Thread(id=MAIN_THREAD, name=MAIN_THREAD)


class _Failures(dict[tuple[str, str], str]):
    cause: BaseException | None = None


def _require_state(state: object) -> None:
    """Raise ``TypeError`` unless ``state`` is a ``State`` (a dict of one, say, is not)."""
    if not isinstance(state, State):
        raise TypeError(
            f"state must be a procflow.State, got {type(state).__name__}; "
            "load a stored one with State.model_validate_json(...)"
        )


def built_tree(workflow: Workflow) -> Stmt:
    """Call ``workflow.definition()``.

    Raises:
        DefinitionError: it raised, or returned something that is no statement.
    """
    try:
        root = workflow.definition()
    except Exception as e:
        raise _definition_raised(workflow, e) from e
    if not isinstance(root, Stmt):
        raise _not_a_statement(workflow, root)
    return root


def _definition_raised(workflow: Workflow, e: Exception) -> DefinitionError:
    """``definition()`` raised ``e``: a statement it built refused its arguments, or its own code failed."""
    if isinstance(e, DefinitionError):
        return DefinitionError(f"{type(workflow).__name__}.definition(): {e}")
    return DefinitionError(f"{type(workflow).__name__}.definition() raised {type(e).__name__}: {e}")


def _not_a_statement(workflow: Workflow, root: object) -> DefinitionError:
    return DefinitionError(
        f"{type(workflow).__name__}.definition() must return a statement (usually S(...)), got {root!r}"
    )


def _indexed(root: Stmt, workflow: Workflow) -> dict[str, Path]:
    """Check the tree ``root`` as a whole; return the paths of its names (see ``ShapeCache``).

    Raises:
        DefinitionError: the tree is invalid; the message names the workflow's class.
    """
    try:
        return _shapes.index(root, type(workflow))
    except DefinitionError as e:
        raise DefinitionError(f"{type(workflow).__name__}.definition(): {e}") from None


def _event_in(root: Stmt, paths: dict[str, Path], wait_name: str, name: str) -> On | None:
    """The event ``name`` of the Wait ``wait_name`` in ``root``, whose ``paths`` are exact; else ``None``."""
    path = paths.get(name)
    if not path:
        return None
    wait = root
    for i in path[:-1]:
        wait = wait._kids[i]
    if not isinstance(wait, Wait) or wait.name != wait_name:
        return None
    return wait._kids[path[-1]]


def _not_running(state: State, consequence: str) -> WorkflowFinishedError:
    """The workflow ended, or a cancel of it was cut short (``reason`` set, not ``CANCELLED`` yet)."""
    if state.status in _DONE:
        return WorkflowFinishedError(f"workflow {_instance(state)} is {state.status.value}; {consequence}")
    return WorkflowFinishedError(
        f"workflow {_instance(state)} is being cancelled ({state.reason!r}), but the cancel was cut "
        f"short; {consequence}: call cancel again to finish it"
    )


def _undeliverable(req: CallbackRequest, state: State, stale: WaitEvent | None) -> ProcflowError:
    """Why no thread takes the event ``req`` names: a stale ``pc`` (``stale``), or none parked on it."""
    if stale is not None:
        return StaleCallback(
            f"event {req.name!r} carries pc {req.pc}, but thread {stale.req.thread_id!r} of "
            f"{_instance(state)} is parked on it at pc {stale.req.pc}; send that pc, or none (0) "
            "for whichever parking is current"
        )
    events = [
        (t.id, e.req.name)
        for t in state.threads
        if t.status == _WAITING_EVENT
        for e in t.wait_events
        if e.status in _PARKED_EVENT
    ]
    parked = sorted({name for thread, name in events if not req.thread_id or thread == req.thread_id})
    if parked:
        now = f"parked events: {', '.join(map(repr, parked))}"
    elif req.thread_id and events:
        elsewhere = sorted({f"{name!r} in thread {thread!r}" for thread, name in events})
        now = f"it is parked on no event; other threads are: {', '.join(elsewhere)}"
    else:
        conditions = sorted(t.cur_step for t in state.threads if t.status == _WAITING_CONDITION)
        now = "no event is parked"
        if conditions:
            now += f"; threads wait for conditions: {', '.join(map(repr, conditions))}"
    if req.thread_id:
        return CallbackNotFound(
            f"thread {req.thread_id!r} of {_instance(state)} is not parked on event {req.name!r} "
            f"({now}); it was already delivered, its Wait was left, or the thread or the event "
            "never existed"
        )
    return CallbackNotFound(
        f"no thread of {_instance(state)} is parked on event {req.name!r} ({now}); it was already "
        "delivered, its Wait was left, or it never existed"
    )


async def resume(
    workflow: Workflow,
    state: State,
    checkpoint: Checkpoint,
    *,
    max_transitions: int = 10_000,
    hooks: RunHooks | None = None,
) -> None:
    """Run every thread of ``state`` until all are parked or the workflow finished.

    Pending teardowns run first, then the runnable threads, then the setups of
    the events of new Waits. ``checkpoint(kind)`` is called after each change
    of state; its last call reflects the state ``resume`` returns with.
    ``hooks`` (optional) is told what happens and called before side effects.

    Raises:
        TypeError: ``state`` is not a ``State`` (validate stored JSON into one first).
        WorkflowFinishedError: the workflow is finished or cancelled, or a
            cancel of it was cut short (``cancel`` again finishes it).
        DefinitionError: the tree is invalid, a loop never parks, a stored
            position is missing, or more than ``max_transitions`` transitions.
        StepError: a step raised; the next ``resume`` retries it.
        SetupError: setups failed (after every pending setup was tried).
        Exception: whatever ``checkpoint`` raised.

    On any error the ``State`` is left as at the last successful checkpoint.
    """
    # The body of the call, not a method of _Run: a coroutine less per call.
    run = _Run(workflow, state, checkpoint, max_transitions, hooks)
    if state.status in _DONE or state.reason:
        raise _not_running(state, "it cannot be resumed")
    try:
        run.build()
        # Retry the teardowns of events whose Wait was left. teardown()
        # replaces a thread's list of events rather than changing it, and
        # ends no thread: both loops may run over the lists as they are.
        for t in state.threads:
            for e in t.wait_events:
                if e.status in _LEFT_EVENT:
                    await run.teardown(t, e, keep_failed=True)
        queue = run.queue
        for t in state.threads:
            status = t.status
            if status in _RUNNABLE:
                if status == _EXECUTING:
                    queue.appendleft(t)
                else:
                    queue.append(t)
            elif status == _WAITING_CONDITION:
                run.cond_waiters.append(t)
            elif status == _WAITING_EVENT:
                run.check_parked(t)
        if queue and state.status != _WORKFLOW_RESUMING:
            run.set(state, "status", _WORKFLOW_RESUMING)
        if run.cond_waiters:
            await run.check_conditions()
        held = False
        while queue and not run.finished:
            t = queue.popleft()
            if hooks is not None and not hooks.may_run(t.id):
                held = True
                continue
            await run.run_thread(t)
        if run.finished:
            await run.finish()
            return
        done = _WORKFLOW_RESUMING if held else _WORKFLOW_WAITING
        if state.status != done:
            run.set(state, "status", done)
        failures = await run.setup_parked_events()
        if run.undo:
            await run.checkpoint(_AFTER_RESUME)
    except BaseException:
        run.rollback()
        raise
    if failures is not None:
        raise SetupError(failures, instance=_instance(state)) from failures.cause


async def handle_callback(
    req: CallbackRequest,
    workflow: Workflow,
    state: State,
    payload: Any,
    *,
    hooks: RunHooks | None = None,
) -> Any:
    """Deliver the event ``req`` names to the thread parked on it, and return the reply.

    The handler runs, the Wait's events are marked for teardown and the thread
    is made ready; save the state, then call ``resume``.

    Raises:
        TypeError: ``req`` is not a ``CallbackRequest``, or ``state`` is not a
            ``State`` (validate stored JSON into one first).
        WorkflowFinishedError: the workflow is finished or cancelled, or a
            cancel of it was cut short (``cancel`` again finishes it).
        CallbackNotFound: no thread is parked on that event.
        StaleCallback: ``req.pc`` is set and differs from the parking's pc.
        PayloadError: an ``OnEvent`` payload failed validation; the message
            names the event, the thread and the instance.
        HandlerError: the handler raised (the cause is chained).
        DefinitionError: the tree is invalid or lacks the Wait or event.

    On any error the ``State`` is unchanged.
    """
    if not isinstance(req, CallbackRequest):
        raise TypeError(
            f"req must be a procflow.CallbackRequest, got {type(req).__name__}; "
            'build one with CallbackRequest(name="...")'
        )
    _require_state(state)
    if state.status in _DONE or state.reason:
        raise _not_running(state, f"event {req.name!r} cannot be delivered")
    root = built_tree(workflow)
    paths = _indexed(root, workflow)
    thread, event, stale = None, None, None
    for t in state.threads:
        if t.status != _WAITING_EVENT or (req.thread_id and t.id != req.thread_id):
            continue
        for e in t.wait_events:
            if e.req.name == req.name and e.status in _PARKED_EVENT:
                if req.pc and req.pc != e.req.pc:
                    stale = e
                    continue
                thread, event = t, e
                break
        if event is not None:
            break
    if thread is None or event is None:
        raise _undeliverable(req, state, stale)
    on = _event_in(root, paths, thread.cur_step, req.name)
    if on is None:  # not in the Wait the thread is parked on: say what the tree has instead
        run = _Run(workflow, state, hooks=hooks)
        run.root, run.paths = root, paths
        wait = run.find(thread.cur_step, Wait, thread)
        on = wait._kids[run.event_index(wait, req.name, thread)]
    try:
        reply = on.handler.handle(event.req, payload)
        if reply is not None and isawaitable(reply):
            reply = await reply
    except (PayloadError, DefinitionError) as e:
        # The handler knows its function only; say where the event was sent.
        e.args = (f"event {req.name!r} in thread {thread.id!r} of {_instance(state)}: {e}",)
        raise
    except ProcflowError:
        raise
    except Exception as e:
        raise HandlerError(
            f"the handler of event {req.name!r} in thread {thread.id!r} of "
            f"{state.workflow!r} {state.id!r} raised {type(e).__name__}: {e}",
            event=req.name,
            thread_id=thread.id,
        ) from e
    # Nothing below can fail, so these changes need no undo log.
    events: list[WaitEvent] = []
    for ev in thread.wait_events:
        if ev.status == _SET_UP:
            values = _writable(ev)
            values["status"] = _PENDING_TEARDOWN
            values["handled"] = ev is event
        elif ev.status not in _LEFT_EVENT:
            continue  # never set up, so there is nothing to tear down
        events.append(ev)
    values = _writable(thread)
    values["wait_events"] = events
    values["status"] = _THREAD_RESUMING
    values["cur_callback"] = req.name
    values["pc"] += 1
    values = _writable(state)
    values["pc"] += 1
    values["status"] = _WORKFLOW_RESUMING
    if hooks is not None:
        hooks.transition("event", req.name, thread.id)
    return reply


async def cancel(
    workflow: Workflow,
    state: State,
    checkpoint: Checkpoint,
    *,
    reason: str,
    compensate: bool = False,
    hooks: RunHooks | None = None,
) -> None:
    """Cancel the workflow: tear down every parked event, set ``CANCELLED`` and ``reason``.

    With ``compensate=True`` the compensations of the completed steps run
    first, newest first, with a checkpoint after each, so that a cancel cut
    short carries on where it stopped when called again. ``reason`` is saved
    with the first of its checkpoints: from then until the cancel completes,
    ``resume`` and ``handle_callback`` refuse the workflow, which is partly
    undone.

    Raises:
        TypeError: ``state`` is not a ``State`` (validate stored JSON into one first).
        ValueError: ``reason`` is empty (it is what marks a cancel in progress).
        WorkflowFinishedError: the workflow is already finished or cancelled.
        StepError: a compensation raised (``.step`` names its step).
        DefinitionError: a completed step is no longer in the definition.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(
            f"cancel needs a reason, got {reason!r}: it is saved with the cancel's first checkpoint "
            "and marks the workflow as being cancelled until the cancel completes"
        )
    await _Run(workflow, state, checkpoint, hooks=hooks).cancel(reason, compensate)
