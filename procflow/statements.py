"""The statement tree a workflow's ``definition()`` returns.

Statements are small immutable objects, cheap to build because
``definition()`` runs again after every step. Constructors check only their
own arguments; ``validate`` (and ``index``, which the interpreter uses) walks
a tree once to check it as a whole and to map each position name to its path
of child indices. After that, a rebuilt tree of the same shape is navigated by
path, so the interpreter never walks the whole tree on a step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from .errors import DefinitionError
from .handlers import FunctionHandler, Handler
from .retry import Retry

__all__ = [
    "Action",
    "Break",
    "Case",
    "Condition",
    "Continue",
    "Default",
    "For",
    "Go",
    "If",
    "On",
    "OnEvent",
    "Path",
    "Return",
    "S",
    "Section",
    "Step",
    "Stmt",
    "Switch",
    "Wait",
    "WaitFor",
    "at",
    "index",
    "validate",
    "walk",
]

Action: TypeAlias = Callable[[], Any]
"""A step action, compensation or condition handler: no arguments, sync or async."""

Condition: TypeAlias = "bool | Callable[[], bool]"
"""A bool evaluated when the tree is built, or a callable evaluated when reached."""


# Navigation kinds of containers: what happens when a child finishes.
SEQUENCE = 1  # go on with the next child, then finish (Section, Case, On)
LOOP = 2  # go on with the next child, then evaluate the condition again (For)
CHOICE = 3  # finish (Switch, Wait)
THREAD = 4  # the thread ends (Go)


class Stmt:
    """Base class of every statement.

    ``name`` is ``""`` for the statements that have none (``Section``,
    ``Switch``, ``Return``, ``Break``, ``Continue``).
    """

    __slots__ = ()

    name: str = ""
    # Whether stored threads can point at this statement (Step, Wait, event, WaitFor, Go).
    _positional: bool = False
    # How navigation treats this statement's children: 0 for leaves, else a kind above.
    _kind: int = 0
    # The children, in order, on containers.
    _kids: tuple[Stmt, ...] = ()
    # The container class this statement must sit in directly (events, cases).
    _belongs_in: type[Stmt] | None = None

    def children(self) -> tuple[Stmt, ...]:
        """The statements directly inside this one, in order."""
        return self._kids

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})" if self.name else f"{type(self).__name__}()"


# The checks below run on every definition() call, so they test the common case
# first and build messages only on failure.


def _bad_name(kind: str, name: object) -> DefinitionError:
    return DefinitionError(f"{kind} needs a non-empty str name, got {name!r}")


def _bad_condition(kind: str, name: str, cond: object) -> DefinitionError:
    return DefinitionError(
        f"{kind} {name!r}: the condition must be a bool or a zero-argument callable, got {cond!r}"
    )


def _bad_child(owner: Stmt, child: object) -> DefinitionError:
    return DefinitionError(
        f"{type(owner).__name__} {owner.name!r} holds {child!r}, which is not a statement; "
        "use Step, S, If, For, Go, Wait, WaitFor, Return, Break or Continue"
    )


class _Container(Stmt):
    """A statement with children."""

    __slots__ = ("_kids",)


class Section(_Container):
    """A block: its statements run in order. ``S(*stmts)`` is the short form."""

    __slots__ = ("stmts",)
    _kind = SEQUENCE

    def __init__(self, stmts: Sequence[Stmt] = ()) -> None:
        self.stmts = self._kids = stmts if type(stmts) is tuple else tuple(stmts)



def S(*stmts: Stmt) -> Section:
    """Return a ``Section`` of ``stmts``, run in order."""
    return Section(stmts)


class Step(Stmt):
    """Runs ``action()`` once; the thread checkpoints after it.

    ``compensate`` is the undo of a completed step, run by
    ``cancel(..., compensate=True)``. Both may be sync or async. ``retry``
    tells the engine how often to try the step again when it raises (the
    interpreter itself raises ``StepError`` and retries on the next resume).
    """

    __slots__ = ("action", "compensate", "name", "retry")
    _positional = True

    def __init__(
        self,
        name: str,
        action: Action,
        *,
        compensate: Action | None = None,
        retry: Retry | None = None,
    ) -> None:
        if type(name) is not str or not name:
            raise _bad_name("Step", name)
        self.name = name
        if not callable(action):
            raise DefinitionError(f"Step {name!r}: action must be callable, got {action!r}")
        if compensate is not None and not callable(compensate):
            raise DefinitionError(f"Step {name!r}: compensate must be callable, got {compensate!r}")
        self.action = action
        self.compensate = compensate
        self.retry = retry


class Case(_Container):
    """A branch of a ``Switch``: runs ``stmts`` when ``cond`` is true."""

    __slots__ = ("cond", "name", "stmts")
    _kind = SEQUENCE

    def __init__(self, cond: Condition, name: str, *stmts: Stmt) -> None:
        if type(name) is not str or not name:
            raise _bad_name(type(self).__name__, name)
        if cond is not True and cond is not False and not callable(cond):
            raise _bad_condition(type(self).__name__, name, cond)
        self.name = name
        self.cond = cond
        self.stmts = self._kids = stmts



class Default(Case):
    """The branch of a ``Switch`` taken when no ``Case`` before it is."""

    __slots__ = ()

    def __init__(self, name: str, *stmts: Stmt) -> None:
        super().__init__(True, name, *stmts)


class Switch(_Container):
    """Runs the first case whose condition is true, then continues after itself."""

    __slots__ = ("cases",)
    _kind = CHOICE

    def __init__(self, *cases: Case) -> None:
        for c in cases:
            if not isinstance(c, Case):
                raise DefinitionError(f"Switch takes Case and Default statements, got {c!r}")
        self.cases: tuple[Case, ...] = cases
        self._kids = cases


    def elif_(self, cond: Condition, name: str, *stmts: Stmt) -> Switch:
        """Return this switch with one more ``Case`` at the end."""
        return Switch(*self.cases, Case(cond, name, *stmts))

    def else_(self, name: str, *stmts: Stmt) -> Switch:
        """Return this switch with a ``Default`` at the end."""
        return Switch(*self.cases, Default(name, *stmts))


def If(cond: Condition, name: str, *stmts: Stmt) -> Switch:
    """Return a ``Switch`` whose first case runs ``stmts`` when ``cond`` is true.

    Chain ``.elif_(cond, name, *stmts)`` and ``.else_(name, *stmts)``.
    """
    return Switch(Case(cond, name, *stmts))


class For(_Container):
    """A while loop: runs ``stmts`` as long as ``cond`` is true.

    Every iteration must park at least once (run a step or wait); otherwise
    ``resume`` raises ``DefinitionError``.
    """

    __slots__ = ("cond", "name", "stmts")
    _kind = LOOP

    def __init__(self, name: str, cond: Condition, *stmts: Stmt) -> None:
        if type(name) is not str or not name:
            raise _bad_name("For", name)
        if cond is not True and cond is not False and not callable(cond):
            raise _bad_condition("For", name, cond)
        self.name = name
        self.cond = cond
        self.stmts = self._kids = stmts



class _Jump(Stmt):
    __slots__ = ()


class Break(_Jump):
    """Leaves the innermost enclosing ``For`` at once."""

    __slots__ = ()


class Continue(_Jump):
    """Goes to the next iteration of the innermost enclosing ``For`` at once."""

    __slots__ = ()


class Return(Stmt):
    """Ends the current thread; in the main thread it finishes the workflow."""

    __slots__ = ()


class Go(_Container):
    """Starts a parallel thread that runs ``body``.

    ``id`` is a zero-argument callable giving the new thread's id, called when
    the thread starts; by default the id is ``name``. Threads of one name with
    distinct ids may run side by side.
    """

    __slots__ = ("body", "id", "name")
    _kind = THREAD
    _positional = True

    def __init__(self, name: str, body: Stmt, *, id: Callable[[], str] | None = None) -> None:
        if type(name) is not str or not name:
            raise _bad_name("Go", name)
        self.name = name
        self.body = body
        if id is not None and not callable(id):
            raise DefinitionError(f"Go {name!r}: id must be a zero-argument callable, got {id!r}")
        self.id = id
        self._kids = (body,)



class On(_Container):
    """An event of a ``Wait``: its ``Handler`` and the statements run once it was handled.

    ``buffer=True`` tells the engine to keep this event in the instance's
    inbox when it arrives before a thread is parked on it, and to deliver it
    once one is (by default such an event is refused with ``CallbackNotFound``).
    """

    __slots__ = ("buffer", "handler", "max_attempts", "name", "stmts")
    _kind = SEQUENCE
    _positional = True

    def __init__(self, name: str, handler: Handler, *stmts: Stmt, buffer: bool = False) -> None:
        if type(name) is not str or not name:
            raise _bad_name(type(self).__name__, name)
        self.name = name
        self.buffer = buffer
        self.max_attempts: int | None = None
        if not isinstance(handler, Handler):
            raise DefinitionError(
                f"{type(self).__name__} {name!r}: the handler must be a procflow.Handler, got {handler!r}"
            )
        self.handler = handler
        self.stmts = self._kids = stmts



class OnEvent(On):
    """An event whose handler is ``fn(payload: T) -> R``, sync or async.

    The payload (JSON ``str``/``bytes``, a ``dict`` or a ``T``) is validated
    against ``T`` before ``fn`` runs; a bad one raises ``PayloadError``.
    With ``max_attempts=N`` the engine cancels the instance, with
    compensation, once N invalid payloads were sent to one parking of the
    event (below N it stays parked and each sender gets the ``PayloadError``).
    """

    __slots__ = ()

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *stmts: Stmt,
        buffer: bool = False,
        max_attempts: int | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"OnEvent {name!r}: fn must be callable, got {fn!r}")
        if max_attempts is not None and max_attempts < 1:
            raise DefinitionError(f"OnEvent {name!r}: max_attempts must be at least 1, got {max_attempts}")
        # On.__init__'s work, without its handler check: calling it through
        # super() with *stmts and a keyword costs as much as the rest of this.
        if type(name) is not str or not name:
            raise _bad_name(type(self).__name__, name)
        self.name = name
        self.buffer = buffer
        self.max_attempts = max_attempts
        self.handler = FunctionHandler(fn)
        self.stmts = self._kids = stmts

    @property
    def fn(self) -> Callable[..., Any]:
        """The function that handles the event."""
        return self.handler.fn  # type: ignore[attr-defined, no-any-return]


class Wait(_Container):
    """Parks the thread until one of ``events`` arrives, runs that event's
    statements, then continues after itself."""

    __slots__ = ("events", "name")
    _kind = CHOICE
    _positional = True

    def __init__(self, name: str, *events: On) -> None:
        if type(name) is not str or not name:
            raise _bad_name("Wait", name)
        self.name = name
        for e in events:
            if not isinstance(e, On):
                raise DefinitionError(f"Wait {name!r} takes On and OnEvent events, got {e!r}")
        if not events:
            raise DefinitionError(f"Wait {name!r} needs at least one event")
        self.events: tuple[On, ...] = events
        self._kids = events



class WaitFor(Stmt):
    """Parks the thread until ``cond`` is true.

    Conditions are checked after every step of any thread; ``handler()`` (sync
    or async) runs once, when the condition becomes true.
    """

    __slots__ = ("cond", "handler", "name")
    _positional = True

    def __init__(self, name: str, cond: Condition, handler: Action | None = None) -> None:
        if type(name) is not str or not name:
            raise _bad_name("WaitFor", name)
        if cond is not True and cond is not False and not callable(cond):
            raise _bad_condition("WaitFor", name, cond)
        self.name = name
        self.cond = cond
        if handler is not None and not callable(handler):
            raise DefinitionError(f"WaitFor {name!r}: handler must be callable, got {handler!r}")
        self.handler = handler


On._belongs_in = Wait
Case._belongs_in = Switch


def walk(stmt: Stmt, fn: Callable[[Stmt], bool | None]) -> bool:
    """Visit ``stmt`` and every statement below it depth-first, in order.

    Stops as soon as ``fn`` returns ``True`` and returns ``True`` then;
    returns ``False`` when every statement was visited.
    """
    stack = [stmt]
    while stack:
        s = stack.pop()
        if fn(s):
            return True
        kids = s.children()
        if kids:
            stack.extend(reversed(kids))
    return False


Path: TypeAlias = tuple[int, ...]
"""Where a statement is: the child index at each level, from the root down."""


def index(definition: Stmt) -> dict[str, Path]:
    """Check a definition tree and map each position name to its path.

    Positions are the statements a stored thread can point at: Step, Wait,
    event (On/OnEvent), WaitFor and Go.

    Raises:
        DefinitionError: the root or a child is not a statement, a name is
            used twice (naming it), or a ``Break``/``Continue`` is not inside
            a ``For`` of its own thread.
    """
    if not isinstance(definition, Stmt):
        raise DefinitionError(f"a definition must be a statement (usually S(...)), got {definition!r}")
    _check_placement(None, definition)
    paths: dict[str, Path] = {}
    if definition._positional:
        paths[definition.name] = ()
    if definition._kids:
        _index_children(definition, (), False, paths, None)
    elif isinstance(definition, _Jump):
        raise DefinitionError(f"invalid definition: {type(definition).__name__}() outside a For loop")
    return paths


def _index_children(
    stmt: Stmt, path: Path, in_loop: bool, paths: dict[str, Path], holder: Stmt | None
) -> None:
    # Runs once per resume/handle_callback call over the whole tree: kept lean.
    # ``holder`` is the nearest named statement around ``stmt``'s children; it
    # names the place in messages, which are built only on failure.
    if stmt.name:
        holder = stmt
    kind = stmt._kind
    if kind == LOOP:
        in_loop = True
    elif kind == THREAD:
        in_loop = False
    i = 0  # counted by hand: enumerate() costs a tenth of this walk
    for kid in stmt._kids:
        if not isinstance(kid, Stmt):
            raise _bad_child(stmt, kid)
        if kid._belongs_in is not None and not isinstance(stmt, kid._belongs_in):
            _check_placement(stmt, kid)
        if kid._positional:
            name = kid.name
            if name in paths:
                raise DefinitionError(
                    f"invalid definition: duplicate name {name!r}; every Step, Wait, "
                    "event, WaitFor and Go name must be unique within the whole definition"
                )
            paths[name] = kid_path = (*path, i)
            if kid._kids:
                _index_children(kid, kid_path, in_loop, paths, holder)
        elif kid._kids:
            _index_children(kid, (*path, i), in_loop, paths, holder)
        elif not in_loop and isinstance(kid, _Jump):
            where = "the root" if holder is None else f"{type(holder).__name__} {holder.name!r}"
            raise DefinitionError(
                f"invalid definition: {type(kid).__name__}() in {where} is outside a For loop"
                + (" of its own thread" if kind == THREAD or "Go " in where else "")
            )
        i += 1  # noqa: SIM113


def _check_placement(parent: Stmt | None, stmt: Stmt) -> None:
    """Events belong in a Wait and cases in a Switch, and nowhere else.

    Raises:
        DefinitionError: ``stmt`` is an event or a case outside its container.
    """
    if isinstance(stmt, On) and not isinstance(parent, Wait):
        raise DefinitionError(f"invalid definition: event {stmt.name!r} is not inside a Wait")
    if isinstance(stmt, Case) and not isinstance(parent, Switch):
        kind = type(stmt).__name__
        raise DefinitionError(f"invalid definition: {kind} {stmt.name!r} is not inside a Switch (or If)")


def validate(definition: Stmt) -> None:
    """Check a definition tree as a whole.

    Raises:
        DefinitionError: the root or a child is not a statement, a name is
            used twice (naming it), or a ``Break``/``Continue`` is not inside
            a ``For`` of its own thread.
    """
    index(definition)


def at(definition: Stmt, path: Path) -> Stmt | None:
    """The statement at ``path`` below ``definition``, or ``None`` if there is none."""
    stmt = definition
    for i in path:
        kids = stmt._kids
        if i >= len(kids):
            return None
        stmt = kids[i]
    return stmt
