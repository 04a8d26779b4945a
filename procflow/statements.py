"""The statement tree a workflow's ``definition()`` returns.

Statements are small immutable objects, cheap to build because
``definition()`` runs again after every step. Constructors check only their
own arguments; ``validate`` (and ``index``) walks a tree once to check it as
a whole and to map each position name to its path of child indices. The
interpreter checks the first tree of each call through a ``ShapeCache``, which
compares a tree of a known shape with that shape instead of indexing it again.
After that, a rebuilt tree of the same shape is navigated by path, so the
interpreter never walks the whole tree on a step.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Hashable, Sequence
from types import MemberDescriptorType
from typing import Any, TypeAlias

from .errors import DefinitionError
from .handlers import FunctionHandler, Handler, check_event_function
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
    "ShapeCache",
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


# How each statement is written, for messages about arguments in the wrong place.
_SIGNATURES = {
    "Step": "Step(name, action)",
    "Case": "If(cond, name, *stmts) or Case(cond, name, *stmts)",
    "Default": "else_(name, *stmts) or Default(name, *stmts)",
    "For": "For(name, cond, *stmts)",
    "Go": "Go(name, body)",
    "On": "On(name, handler, *stmts)",
    "OnEvent": "OnEvent(name, fn, *stmts)",
    "Wait": "Wait(name, *events)",
    "WaitFor": "WaitFor(name, cond, handler=None)",
}


def _bad_name(kind: str, name: object) -> DefinitionError:
    signature = _SIGNATURES.get(kind)
    hint = f" (it is written {signature})" if signature else ""
    return DefinitionError(f"{kind} needs a non-empty str name, got {name!r}{hint}")


def _bad_condition(kind: str, name: str, cond: object) -> DefinitionError:
    return DefinitionError(
        f"{kind} {name!r}: the condition must be a bool or a zero-argument callable, got {cond!r}"
    )


def _label(stmt: Stmt) -> str:
    """A statement as messages name it: ``Step 'x'``, or ``a Section`` when it has no name."""
    return f"{type(stmt).__name__} {stmt.name!r}" if stmt.name else f"a {type(stmt).__name__}"


def _bad_child(owner: Stmt, child: object) -> DefinitionError:
    if isinstance(child, (list, tuple)):
        remedy = "unpack a list of statements into its place: S(*stmts)"
    else:
        remedy = "use Step, S, If, For, Go, Wait, WaitFor, Return, Break or Continue"
    return DefinitionError(f"{_label(owner)} holds {child!r}, which is not a statement; {remedy}")


class _Container(Stmt):
    """A statement with children."""

    __slots__ = ("_kids",)


class Section(_Container):
    """A block: its statements run in order. ``S(*stmts)`` is the short form."""

    __slots__ = ()
    _kind = SEQUENCE

    def __init__(self, stmts: Sequence[Stmt] = ()) -> None:
        if isinstance(stmts, Stmt):
            raise DefinitionError(
                f"Section takes a sequence of statements, got {stmts!r}; "
                "write S(stmt, ...) or Section([stmt, ...])"
            )
        try:
            self._kids = stmts if type(stmts) is tuple else tuple(stmts)
        except TypeError:
            raise DefinitionError(
                f"Section takes a sequence of statements, got {stmts!r}; "
                "write S(stmt, ...) or Section([stmt, ...])"
            ) from None

    @property
    def stmts(self) -> tuple[Stmt, ...]:
        """The statements of the block, in order."""
        return self._kids


_new = object.__new__


def S(*stmts: Stmt) -> Section:
    """Return a ``Section`` of ``stmts``, run in order."""
    # Section(stmts) without the call of __init__: S is in every definition().
    section: Section = _new(Section)
    section._kids = stmts
    return section


class Step(Stmt):
    """Runs ``action()`` once; the thread checkpoints after it.

    ``compensate`` is the undo of a completed step, run by
    ``cancel(..., compensate=True)``. Both may be sync or async. ``retry``
    tells the engine how often to try the step again when it raises (the
    interpreter itself raises ``StepError`` and retries on the next resume).

    Raises:
        DefinitionError: ``name`` is empty, ``action`` or ``compensate`` is
            not callable, or ``retry`` is not a ``Retry``.
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
        if retry is not None and type(retry) is not Retry and not isinstance(retry, Retry):
            raise DefinitionError(
                f"Step {name!r}: retry must be a procflow.Retry, got {retry!r}; "
                "write retry=Retry(max_attempts=3)"
            )
        self.action = action
        self.compensate = compensate
        self.retry = retry


class Case(_Container):
    """A branch of a ``Switch``: runs ``stmts`` when ``cond`` is true."""

    __slots__ = ("cond", "name")
    _kind = SEQUENCE

    def __init__(self, cond: Condition, name: str, *stmts: Stmt) -> None:
        if type(name) is not str or not name:
            raise _bad_name(type(self).__name__, name)
        if cond is not True and cond is not False and not callable(cond):
            raise _bad_condition(type(self).__name__, name, cond)
        self.name = name
        self.cond = cond
        self._kids = stmts

    @property
    def stmts(self) -> tuple[Stmt, ...]:
        """The statements run when the case is taken."""
        return self._kids


class Default(Case):
    """The branch of a ``Switch`` taken when no ``Case`` before it is."""

    __slots__ = ()

    def __init__(self, name: str, *stmts: Stmt) -> None:
        if type(name) is not str or not name:
            raise _bad_name(type(self).__name__, name)
        self.name = name
        self.cond = True
        self._kids = stmts


class Switch(_Container):
    """Runs the first case whose condition is true, then continues after itself.

    Raises ``DefinitionError`` when a case is not a ``Case`` or comes after a
    ``Default``, which would leave it unreachable.
    """

    __slots__ = ()
    _kind = CHOICE
    _kids: tuple[Case, ...]

    def __init__(self, *cases: Case) -> None:
        default: Case | None = None
        for c in cases:
            if not isinstance(c, Case):
                raise DefinitionError(f"Switch takes Case and Default statements, got {c!r}")
            if default is not None:
                raise DefinitionError(
                    f"Switch: {_label(c)} comes after {_label(default)}, "
                    "so it can never run; the Default (else_) must be the last case"
                )
            if isinstance(c, Default):
                default = c
        self._kids = cases

    @property
    def cases(self) -> tuple[Case, ...]:
        """The cases, in order."""
        return self._kids

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

    __slots__ = ("cond", "name")
    _kind = LOOP

    def __init__(self, name: str, cond: Condition, *stmts: Stmt) -> None:
        if type(name) is not str or not name:
            raise _bad_name("For", name)
        if cond is not True and cond is not False and not callable(cond):
            raise _bad_condition("For", name, cond)
        self.name = name
        self.cond = cond
        self._kids = stmts

    @property
    def stmts(self) -> tuple[Stmt, ...]:
        """The body of the loop."""
        return self._kids


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

    __slots__ = ("buffer", "handler", "max_attempts", "name")
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
        self._kids = stmts

    @property
    def stmts(self) -> tuple[Stmt, ...]:
        """The statements run once the event was handled."""
        return self._kids


class OnEvent(On):
    """An event whose handler is ``fn(payload: T) -> R``, sync or async.

    The payload (JSON ``str``/``bytes``, a ``dict`` or a ``T``) is validated
    against ``T`` before ``fn`` runs; a bad one raises ``PayloadError``.
    With ``max_attempts=N`` the engine cancels the instance, with
    compensation, once N invalid payloads were sent to one parking of the
    event (below N it stays parked and each sender gets the ``PayloadError``).
    """

    __slots__ = ("_handler", "fn")

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *stmts: Stmt,
        buffer: bool = False,
        max_attempts: int | None = None,
    ) -> None:
        # On.__init__'s work, without its handler check: calling it through
        # super() with *stmts and a keyword costs as much as the rest of this.
        if type(name) is not str or not name:
            raise _bad_name(type(self).__name__, name)
        if not callable(fn):
            raise DefinitionError(f"OnEvent {name!r}: fn must be callable, got {fn!r}")
        if max_attempts is not None and (type(max_attempts) is not int or max_attempts < 1):
            raise DefinitionError(
                f"OnEvent {name!r}: max_attempts must be an int of at least 1, got {max_attempts!r}"
            )
        self.name = name
        self.fn = fn
        self.buffer = buffer
        self.max_attempts = max_attempts
        self._handler: Handler | None = None
        self._kids = stmts

    # The FunctionHandler is made when first asked for: most trees a
    # definition() returns are only navigated, never asked to handle an event.
    @property
    def handler(self) -> Handler:
        """The ``FunctionHandler`` of ``fn``."""
        handler = self._handler
        if handler is None:
            handler = self._handler = FunctionHandler(self.fn)
        return handler

    @handler.setter
    def handler(self, handler: Handler) -> None:
        self._handler = handler


class Wait(_Container):
    """Parks the thread until one of ``events`` arrives, runs that event's
    statements, then continues after itself."""

    __slots__ = ("name",)
    _kind = CHOICE
    _positional = True
    _kids: tuple[On, ...]

    def __init__(self, name: str, *events: On) -> None:
        if type(name) is not str or not name:
            raise _bad_name("Wait", name)
        self.name = name
        for e in events:
            if not isinstance(e, On):
                raise DefinitionError(f"Wait {name!r} takes On and OnEvent events, got {e!r}")
        if not events:
            raise DefinitionError(f"Wait {name!r} needs at least one event")
        self._kids = events

    @property
    def events(self) -> tuple[On, ...]:
        """The events, in order."""
        return self._kids


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

# The statements the interpreter runs; a custom statement must derive from one of them.
_RUNNABLE = frozenset(
    {Section, Step, Switch, Case, Default, For, Break, Continue, Return, Go, On, OnEvent, Wait, WaitFor}
)
_RUNNABLE_BASES = tuple(_RUNNABLE)


def _check_runnable(stmt: Stmt, where: str) -> None:
    """Raise ``DefinitionError`` unless the interpreter can run ``stmt`` (``where`` says where it is)."""
    if type(stmt) not in _RUNNABLE and not isinstance(stmt, _RUNNABLE_BASES):
        raise DefinitionError(
            f"invalid definition: {stmt!r} {where} is not a statement procflow can run; "
            "derive custom statements from a procflow statement class (Step, Wait, ...)"
        )


def walk(stmt: Stmt, fn: Callable[[Stmt], bool | None]) -> bool:
    """Visit ``stmt`` and every statement below it depth-first, in order.

    Stops as soon as ``fn`` returns ``True`` and returns ``True`` then;
    returns ``False`` when every statement was visited.

    Raises:
        DefinitionError: it reached something that is not a statement.
    """
    stack = [stmt]
    while stack:
        s = stack.pop()
        if not isinstance(s, Stmt):
            raise DefinitionError(f"walk reached {s!r}, which is not a statement; validate() names its place")
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
    _check_runnable(definition, "as the root")
    _check_placement(None, definition)
    paths: dict[str, Path] = {}
    if definition._positional:
        paths[definition.name] = ()
    if definition._kids:
        try:
            _index_children(definition, (), _NO_LOOP, paths, None)
        except _DuplicateName as e:
            second = e.second
            first = at(definition, paths[second.name])
            assert first is not None
            raise DefinitionError(
                f"invalid definition: duplicate name {second.name!r}, of {_label(first)} and of "
                f"{_label(second)}; every Step, Wait, event, WaitFor and Go name must be unique "
                "within the whole definition"
            ) from None
    elif isinstance(definition, _Jump):
        raise DefinitionError(
            f"invalid definition: {type(definition).__name__}() as the root is outside a For loop"
        )
    return paths


class _DuplicateName(Exception):
    """Raised by ``_index_children`` at the second statement of a name; ``index`` finds the first."""

    def __init__(self, second: Stmt) -> None:
        self.second = second


# Where a Break or Continue would be: what _index_children knows of the loops around it.
_NO_LOOP = 0
_IN_LOOP = 1  # inside a For of the same thread
_LOOP_BEYOND_THREAD = 2  # inside a Go that is inside a For: the loop is another thread's


def _index_children(
    stmt: Stmt, path: Path, in_loop: int, paths: dict[str, Path], holder: Stmt | None
) -> None:
    # Runs once per tree of a new shape (see ShapeCache), and in validate(): kept lean.
    # ``holder`` is the nearest named statement around ``stmt``'s children; it
    # names the place in messages, which are built only on failure.
    if stmt.name:
        holder = stmt
    kind = stmt._kind
    if kind == LOOP:
        in_loop = _IN_LOOP
    elif kind == THREAD and in_loop:
        in_loop = _LOOP_BEYOND_THREAD
    i = 0  # counted by hand: enumerate() costs a tenth of this walk
    for kid in stmt._kids:
        if not isinstance(kid, Stmt):
            raise _bad_child(stmt, kid)
        if type(kid) not in _RUNNABLE:
            _check_runnable(kid, f"in {_label(stmt)}")
        if kid._belongs_in is not None and not isinstance(stmt, kid._belongs_in):
            _check_placement(stmt, kid)
        if kid._positional:
            name = kid.name
            if name in paths:
                raise _DuplicateName(kid)
            paths[name] = kid_path = (*path, i)
            if isinstance(kid, OnEvent):
                try:
                    check_event_function(kid.fn)
                except DefinitionError as e:
                    raise DefinitionError(f"invalid definition: OnEvent {name!r}: {e}") from e
            if kid._kids:
                _index_children(kid, kid_path, in_loop, paths, holder)
        elif kid._kids:
            _index_children(kid, (*path, i), in_loop, paths, holder)
        elif in_loop != _IN_LOOP and isinstance(kid, _Jump):
            where = "the root" if holder is None else _label(holder)
            raise DefinitionError(
                f"invalid definition: {type(kid).__name__}() in {where} is outside a For loop"
                + (" of its own thread: a For around a Go does not reach into it" if in_loop else "")
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


# The shape of a container's children: for each child, its exact class, its
# name and the shape of its own children, in nested tuples. It holds no
# statement and no user object.
_Kids: TypeAlias = tuple[tuple[type, str, Any], ...]


def _kids_shape(kids: tuple[Stmt, ...]) -> _Kids:
    return tuple((type(k), k.name, _kids_shape(k._kids) if k._kids else ()) for k in kids)


def _same_kids(kids: tuple[Stmt, ...], shape: _Kids) -> bool:
    if len(kids) != len(shape):
        return False
    i = 0  # indexing by hand: zip() costs half of a small tree's walk
    for cls, name, inner in shape:
        kid = kids[i]
        # The class first: a child that is no statement never gets its name read.
        if type(kid) is not cls or kid.name != name:
            return False
        if inner:
            if not _same_kids(kid._kids, inner):
                return False
        elif kid._kids:
            return False
        i += 1  # noqa: SIM113
    return True


def _instance_attribute(cls: type, attr: str) -> bool:
    """Whether instances of ``cls`` may hold their own ``attr`` (else it is the class's)."""
    return cls.__dictoffset__ != 0 or isinstance(inspect.getattr_static(cls, attr), MemberDescriptorType)


def _compile_shape(root: Stmt) -> Callable[[Stmt], bool]:
    """A function telling whether a tree has the shape of ``root``.

    It does what ``_same_kids`` does, unrolled into straight-line code for
    this one shape: no loop, no recursion. A container's children are
    unpacked into as many variables as the shape has children there; any
    other number raises ``ValueError``, which means another shape. The
    classes and names it compares with are default values of its parameters
    (read as fast as locals), never written into its source. Once a
    statement's exact class is checked, a name or children that class cannot
    hold per instance (a ``Section`` has no name, a ``Step`` no children) are
    not read.
    """
    values: dict[str, object] = {"_type": type}
    body: list[str] = []
    count = 0

    def const(value: object) -> str:
        name = f"c{len(values)}"
        values[name] = value
        return name

    def visit(node: Stmt, var: str) -> None:
        nonlocal count
        cls = type(node)
        test = f"_type({var}) is not {const(cls)}"
        if _instance_attribute(cls, "name"):
            test += f" or {var}.name != {const(node.name)}"
        body.append(f"  if {test}:")
        body.append("   return False")
        kids = node._kids
        if not kids:
            if _instance_attribute(cls, "_kids"):
                body.append(f"  if {var}._kids:")
                body.append("   return False")
            return
        names = []
        for _ in kids:
            count += 1
            names.append(f"n{count}")
        body.append(f"  {', '.join(names)}, = {var}._kids")
        for kid, name in zip(kids, names, strict=True):
            visit(kid, name)

    visit(root, "n0")
    params = "".join(f", {name}={name}" for name in values)
    lines = [f"def same(n0{params}):", " try:", *body, " except (TypeError, ValueError):", "  return False"]
    source = "\n".join([*lines, " return True"])
    namespace: dict[str, Any] = dict(values)
    exec(source, namespace)
    same: Callable[[Stmt], bool] = namespace["same"]
    return same


def _size(kids: _Kids) -> int:
    return len(kids) + sum(_size(inner) for _, _, inner in kids if inner)


class _Known:
    """A tree shape ``ShapeCache`` checked, with the paths of its names."""

    __slots__ = ("cls", "compile", "kids", "name", "paths", "same")

    def __init__(self, root: Stmt, paths: dict[str, Path]) -> None:
        self.cls = type(root)
        self.name = root.name
        self.kids = _kids_shape(root._kids)
        self.paths = paths
        # The compiled comparison, made when the shape is seen again.
        self.same: Callable[[Stmt], bool] | None = None
        self.compile = _size(self.kids) < ShapeCache.compile_below

    def matches(self, root: Stmt) -> bool:
        same = self.same
        if same is not None:
            return same(root)
        if type(root) is not self.cls or root.name != self.name or not _same_kids(root._kids, self.kids):
            return False
        if self.compile:
            self.same = _compile_shape(root)
        return True


class ShapeCache:
    """``index`` with a memory of the tree shapes it checked, for each key.

    ``definition()`` returns a new tree on every call, but usually of the same
    shape. Whether a tree is valid, and the path of each name, depend only on
    its shape: the exact class and name of every statement and how they nest
    (a condition's value or a step's action play no part). ``index`` of a tree
    whose shape equals a remembered one therefore returns that shape's paths
    after a walk that compares the two, which costs a fraction of the full
    check and allocates nothing. Every tree is still checked as a whole: a
    tree with a duplicate name never has a remembered shape, so it is indexed
    and raises. A tree of a new shape is indexed and its shape remembered.
    When a shape of fewer than ``compile_below`` statements is seen again,
    its comparison is compiled into straight-line Python code, which halves
    its cost again; the comparison of a bigger one is a loop.

    The key (the interpreter uses the workflow's class) only narrows the
    shapes a tree is compared with; the comparison decides. Memory is
    bounded: at most ``shapes`` shapes per key (the most recently used) and
    ``keys`` keys (the oldest is forgotten first). The shapes hold classes
    and names, never statements or workflow objects. The returned paths are
    shared by every caller and must not be changed. Safe to use from many
    threads: a key's shapes are replaced as a whole, under a lock.
    """

    compile_below = 200

    def __init__(self, keys: int = 64, shapes: int = 4) -> None:
        self.max_keys = keys
        self.max_shapes = shapes
        self._known: dict[Hashable, tuple[_Known, ...]] = {}
        self._lock = threading.Lock()

    def index(self, definition: Stmt, key: Hashable) -> dict[str, Path]:
        """``index(definition)``, from a remembered shape when ``definition`` has one.

        Raises:
            DefinitionError: as ``index``.
        """
        known = self._known.get(key, ())
        i = 0
        for shape in known:
            same = shape.same  # matches() without its call, when compiled
            if same(definition) if same is not None else shape.matches(definition):
                if i:  # most recently used first
                    with self._lock:
                        self._known[key] = (shape, *known[:i], *known[i + 1 :])
                return shape.paths
            i += 1  # noqa: SIM113
        paths = index(definition)
        shape = _Known(definition, paths)
        with self._lock:
            known = self._known.pop(key, ())
            if len(self._known) >= self.max_keys:
                del self._known[next(iter(self._known))]
            self._known[key] = (shape, *known[: self.max_shapes - 1])
        return paths


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
