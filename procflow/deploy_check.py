"""Safe deploys: would the current definitions strand an instance that is in flight?

A stored instance points at statement names: the Step a thread completed last,
the Wait or WaitFor it is parked on, the events it listens for, the Go that
started it. ``check_deploy`` loads every in-flight instance (``RESUMING``,
``WAITING``, ``FAILED``) of an engine's store, builds each one's definition
from its own data with the registered classes, and reports every position the
definition no longer has (or has as another kind of statement), every row
whose data no longer validates or that names an unregistered workflow::

    report = await check_deploy(engine)
    if not report.ok:
        print(report.render())      # per workflow: how many are fine, which are stranded and where
        raise SystemExit(1)

``procflow check --app module:engine`` runs it from the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .engine import Engine
from .errors import CorruptInstanceError, DefinitionError, UnknownWorkflowError
from .state import MAIN_THREAD, State, Thread, ThreadStatus, WaitEventStatus, WorkflowStatus
from .state_codec import decode_state
from .statements import Go, On, Path, Step, Stmt, Wait, WaitFor, at, index
from .stores.base import InstanceRecord
from .workflow_type import WorkflowType

__all__ = ["IN_FLIGHT", "DeployReport", "Stranded", "WorkflowCheck", "check_deploy", "check_instance"]

IN_FLIGHT: tuple[str, ...] = (WorkflowStatus.RESUMING, WorkflowStatus.WAITING, WorkflowStatus.FAILED)
"""The statuses of the instances a deploy must not strand."""

_PARKED = (WaitEventStatus.PENDING_SETUP, WaitEventStatus.SETUP, WaitEventStatus.SETUP_ERROR)
_LEFT = (WaitEventStatus.PENDING_TEARDOWN, WaitEventStatus.TEARDOWN_ERROR)


@dataclass(frozen=True, slots=True)
class Stranded:
    """One reason an in-flight instance would be stranded by the current definitions.

    ``thread`` is the thread id and ``position`` the statement name the
    instance points at; both are ``""`` when the problem is the whole row
    (unregistered workflow, undecodable state, data that no longer validates).
    """

    instance: str
    workflow: str
    thread: str
    position: str
    problem: str

    def __str__(self) -> str:
        where = []
        if self.thread:
            where.append(f"thread {self.thread}")
        if self.position:
            where.append(f"at {self.position!r}")
        return f"{self.instance}  {'  '.join(where) + ': ' if where else ''}{self.problem}"


@dataclass(frozen=True, slots=True)
class WorkflowCheck:
    """The in-flight instances of one workflow name: how many were checked, what is stranded."""

    workflow: str
    checked: int
    stranded: tuple[Stranded, ...] = ()

    @property
    def stranded_instances(self) -> tuple[str, ...]:
        """The ids of the instances that would be stranded, in listing order."""
        return tuple(dict.fromkeys(s.instance for s in self.stranded))

    @property
    def fine(self) -> int:
        """How many of the checked instances match the current definition."""
        return self.checked - len(self.stranded_instances)

    @property
    def ok(self) -> bool:
        """Whether no instance of this workflow would be stranded."""
        return not self.stranded


@dataclass(frozen=True, slots=True)
class DeployReport:
    """What ``check_deploy`` found, per workflow name (sorted)."""

    workflows: tuple[WorkflowCheck, ...]

    @property
    def ok(self) -> bool:
        """Whether no in-flight instance would be stranded: safe to deploy."""
        return all(w.ok for w in self.workflows)

    @property
    def checked(self) -> int:
        """How many in-flight instances were checked."""
        return sum(w.checked for w in self.workflows)

    @property
    def stranded(self) -> tuple[Stranded, ...]:
        """Every problem found, workflow by workflow."""
        return tuple(s for w in self.workflows for s in w.stranded)

    @property
    def stranded_instances(self) -> tuple[str, ...]:
        """The ids of every instance that would be stranded."""
        return tuple(i for w in self.workflows for i in w.stranded_instances)

    def workflow(self, name: str) -> WorkflowCheck:
        """The check of workflow ``name``.

        Raises:
            KeyError: no instance of that name was checked and it is not registered.
        """
        for w in self.workflows:
            if w.workflow == name:
                return w
        raise KeyError(name)

    def render(self) -> str:
        """The report as text: a line per workflow, a line per problem, and a verdict."""
        lines = []
        for w in self.workflows:
            if w.checked == 0:
                lines.append(f"{w.workflow}: no instances in flight")
                continue
            head = f"{w.workflow}: {w.checked} in flight, {w.fine} fine"
            if w.stranded:
                head += f", {len(w.stranded_instances)} would be stranded"
            lines.append(head)
            lines += (f"  {s}" for s in w.stranded)
        if self.ok:
            lines.append(f"ok: all {self.checked} in-flight instance(s) match the current definitions")
        else:
            lines.append(
                f"not safe: {len(self.stranded_instances)} of {self.checked} in-flight instance(s) "
                "would be stranded; keep the names they are parked at, or repair them first "
                "(procflow goto / edit)"
            )
        return "\n".join(lines)


async def check_deploy(engine: Engine, *, workflow: str | None = None, page_size: int = 100) -> DeployReport:
    """Check every in-flight instance in ``engine``'s store against its registered definitions.

    Each instance's definition is built from its own stored data (with the
    class registered for its workflow name). ``workflow`` limits the check to
    one workflow name. Rows that cannot be decoded, or whose workflow is not
    registered, are reported, never raised. The engine must be open.

    Raises:
        UnknownWorkflowError: ``workflow`` names no registered workflow.
        StoreError: the store failed (a row it cannot read is reported, not raised).
    """
    types = {name: WorkflowType(cls, name) for name, cls in engine.workflows.items()}
    if workflow is not None and workflow not in types:
        registered = ", ".join(sorted(types)) or "none"
        raise UnknownWorkflowError(
            f"workflow {workflow!r} is not registered (registered: {registered}); register its class "
            "(with the CLI: --app module:engine) to check its instances"
        )
    checked: dict[str, int] = {name: 0 for name in types if workflow in (None, name)}
    found: dict[str, list[Stranded]] = {}
    after: str | None = None
    while True:
        page = await engine.store.list(workflow=workflow, status=IN_FLIGHT, after=after, limit=page_size)
        for record in page:
            checked[record.workflow] = checked.get(record.workflow, 0) + 1
            found.setdefault(record.workflow, []).extend(_check_record(types, record))
        if len(page) < page_size:
            break
        after = page[-1].id
    return DeployReport(
        tuple(WorkflowCheck(name, checked[name], tuple(found.get(name, ()))) for name in sorted(checked))
    )


def _check_record(types: dict[str, WorkflowType], record: InstanceRecord) -> list[Stranded]:
    """The problems of one stored row with the workflow types ``types`` (by stored name)."""

    def whole(problem: str) -> list[Stranded]:
        return [Stranded(record.id, record.workflow, "", "", problem)]

    wtype = types.get(record.workflow)
    if wtype is None:
        registered = ", ".join(sorted(types)) or "none"
        return whole(f"workflow {record.workflow!r} is not registered (registered: {registered})")
    try:
        state = decode_state(record.state, record.id, record.workflow, record.status)
    except ValueError as e:
        return whole(f"its stored state cannot be decoded: {_short(e)}")
    try:
        data = wtype.decode(record.id, record.data, state)
    except CorruptInstanceError as e:
        cls = wtype.cls.__qualname__
        return whole(f"its stored data no longer validates as {cls}: {_short(e.__cause__ or e)}")
    except Exception as e:
        return whole(f"decoding its stored data raised {type(e).__name__}: {e}")
    # check_instance names the instance by its state; the row's names are the same.
    return check_instance(data, state)


def check_instance(workflow: Any, state: State) -> list[Stranded]:
    """The positions of ``state`` that ``workflow.definition()`` no longer has, or not as that kind.

    Works on any workflow object and ``State`` (no store needed), e.g. in a
    test that loads saved instances. Checked: every thread's position (a
    ``WAITING_EVENT`` thread's Wait with each event it listens for, a
    ``WAITING_CONDITION`` thread's WaitFor, a runnable thread's Step or
    WaitFor, or Wait and event while it runs an event's statements), the Go
    of every thread but the main one (and that the position is inside it),
    the event of every pending teardown, and every completed step that
    ``cancel(compensate=True)`` would undo.
    """
    try:
        root = workflow.definition()
        paths = index(root)
    except DefinitionError as e:
        return [Stranded(state.id, state.workflow, "", "", f"the definition is invalid: {e}")]
    except Exception as e:
        return [Stranded(state.id, state.workflow, "", "", f"definition() raised {type(e).__name__}: {e}")]
    tree = _Tree(root, paths)
    problems = [
        Stranded(state.id, state.workflow, t.id, position, problem)
        for t in state.threads
        for position, problem in _thread_problems(tree, t)
    ]
    for name in dict.fromkeys(state.completed):
        stmt = tree.get(name)
        if not isinstance(stmt, Step) or stmt.compensate is None:
            what = "no compensate any more" if isinstance(stmt, Step) else f"become {_a(stmt)}"
            problems.append(
                Stranded(
                    state.id,
                    state.workflow,
                    "",
                    name,
                    f"completed step {name!r} has {what}; cancel(compensate=True) could not undo it",
                )
            )
    return problems


class _Tree:
    """A definition and its positions by name."""

    def __init__(self, root: Stmt, paths: dict[str, Path]) -> None:
        self.root = root
        self.paths = paths

    def get(self, name: str) -> Stmt | None:
        path = self.paths.get(name)
        return None if path is None else at(self.root, path)

    def go_around(self, name: str) -> Go | None:
        """The innermost Go whose body holds the statement ``name``."""
        inner: Go | None = None
        stmt = self.root
        for i in self.paths.get(name, ()):
            if isinstance(stmt, Go):
                inner = stmt
            stmt = stmt.children()[i]
        return inner


def _a(stmt: Stmt | None) -> str:
    if stmt is None:
        return "nothing"
    kind = type(stmt).__name__
    return f"an {kind}" if kind[0] in "AEIOU" else f"a {kind}"


def _expect(tree: _Tree, name: str, kinds: Sequence[type[Stmt]]) -> tuple[Stmt | None, str]:
    """The statement ``name`` if it is one of ``kinds``, else ``None`` and what is wrong."""
    stmt = tree.get(name)
    if stmt is not None and isinstance(stmt, tuple(kinds)):
        return stmt, ""
    wanted = " or ".join(k.__name__ for k in kinds)
    return None, f"expected {_a_kind(wanted)} by that name, the definition has {_a(stmt)}"


def _a_kind(kinds: str) -> str:
    return f"an {kinds}" if kinds[0] in "AEIOU" else f"a {kinds}"


def _thread_problems(tree: _Tree, t: Thread) -> Iterable[tuple[str, str]]:
    """(position, problem) for each thing thread ``t`` points at that the tree lacks."""
    position = t.cur_step
    found: Stmt | None = None
    if t.status == ThreadStatus.WAITING_EVENT:
        found, problem = _expect(tree, position, [Wait])
        if found is None:
            yield position, f"parked on a Wait: {problem}"
        else:
            assert isinstance(found, Wait)
            names = {on.name for on in found.events}
            for e in t.wait_events:
                if e.status in _PARKED and e.req.name not in names:
                    yield (
                        position,
                        (
                            f"listens for event {e.req.name!r}, which is no longer in this Wait"
                            + _elsewhere(tree, e.req.name)
                        ),
                    )
    elif t.status == ThreadStatus.WAITING_CONDITION:
        found, problem = _expect(tree, position, [WaitFor])
        if found is None:
            yield position, f"parked on a WaitFor: {problem}"
    elif t.cur_callback:
        event = t.cur_callback
        found, problem = _expect(tree, position, [Wait])
        if found is None:
            yield position, f"runs the statements of event {event!r} of a Wait: {problem}"
        elif isinstance(found, Wait) and event not in {on.name for on in found.events}:
            yield (
                position,
                (
                    f"runs the statements of event {event!r}, which is no longer in this Wait"
                    + _elsewhere(tree, event)
                ),
            )
    elif position:
        found, problem = _expect(tree, position, [Step, WaitFor])
        if found is None:
            yield position, f"continues after it: {problem}"
    yield from _thread_code(tree, t, position if found is not None else "")
    for e in t.wait_events:
        if e.status in _LEFT and not isinstance(tree.get(e.req.name), On):
            yield (
                e.req.name,
                (
                    f"its teardown needs the handler of event {e.req.name!r}: the definition has "
                    f"{_a(tree.get(e.req.name))} by that name"
                ),
            )


def _thread_code(tree: _Tree, t: Thread, position: str) -> Iterable[tuple[str, str]]:
    """A thread but the main one needs its Go; its position must be in the code of that thread."""
    if t.id != MAIN_THREAD:
        go = tree.get(t.name)
        if not isinstance(go, Go):
            yield t.name, f"the thread was started by Go {t.name!r}; the definition has {_a(go)} by that name"
            return
    if not position:
        return
    around = tree.go_around(position)
    if t.id == MAIN_THREAD and around is not None:
        yield position, f"it is now inside Go {around.name!r}, not in the main thread's code"
    elif t.id != MAIN_THREAD and (around is None or around.name != t.name):
        inside = "the main thread's code" if around is None else f"Go {around.name!r}"
        yield position, f"it is now in {inside}, not inside Go {t.name!r} that runs this thread"


def _elsewhere(tree: _Tree, event: str) -> str:
    stmt = tree.get(event)
    if not isinstance(stmt, On):
        return ""
    for name, path in tree.paths.items():
        if path == tree.paths[event][:-1]:
            return f" (it is in Wait {name!r} now)"
    return ""


def _short(e: BaseException) -> str:
    if isinstance(e, ValidationError):
        errors = e.errors(include_url=False)
        parts = [f"{'.'.join(str(x) for x in err['loc']) or '(root)'}: {err['msg']}" for err in errors[:3]]
        more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
        return f"{len(errors)} error(s): {'; '.join(parts)}{more}"
    return str(e)
