"""Exports of a definition tree and of the stored state, for tools and docs.

``to_json`` turns a definition into plain JSON (valid against
``DEFINITION_SCHEMA``), ``to_mermaid`` draws it as a Mermaid flowchart, and
``STATE_SCHEMA`` is the JSON Schema of a stored ``State``. Nothing here runs a
workflow: the exports describe the tree's structure, so conditions are reported
as what they are (a bool fixed when the tree was built, or a callable), never
evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import PydanticUserError

from .errors import DefinitionError, ProcflowError
from .handlers import FunctionHandler
from .state import State
from .statements import (
    Break,
    Case,
    Continue,
    Default,
    For,
    Go,
    On,
    OnEvent,
    Return,
    Section,
    Step,
    Stmt,
    Switch,
    Wait,
    WaitFor,
    validate,
)

__all__ = ["DEFINITION_SCHEMA", "STATE_SCHEMA", "ExportError", "to_json", "to_mermaid"]


class ExportError(ProcflowError, ValueError):
    """An export cannot render what it was given.

    Raised for an ``OnEvent`` whose payload or reply type has no JSON Schema,
    and for a ``highlight`` class name that is not a Mermaid identifier.
    """


# Most derived first, so that a subclass of OnEvent is typed OnEvent, not On.
_TYPES: Final[tuple[type[Stmt], ...]] = (
    OnEvent,
    On,
    Default,
    Case,
    Section,
    Step,
    Switch,
    For,
    Break,
    Continue,
    Return,
    Go,
    Wait,
    WaitFor,
)
_TYPE_NAMES: Final[tuple[str, ...]] = tuple(sorted(t.__name__ for t in _TYPES))


def _check(definition: Stmt) -> None:
    """``validate``, and check that cases and events are where the interpreter can run them."""
    validate(definition)
    stack: list[tuple[Stmt, Stmt | None]] = [(definition, None)]
    while stack:
        stmt, parent = stack.pop()
        if isinstance(stmt, Case) and not isinstance(parent, Switch):
            raise DefinitionError(f"invalid definition: {stmt!r} is not a case of a Switch (use If)")
        if isinstance(stmt, On) and not isinstance(parent, Wait):
            raise DefinitionError(f"invalid definition: {stmt!r} is not an event of a Wait")
        stack += ((kid, stmt) for kid in stmt.children())


def _type_of(stmt: Stmt) -> type[Stmt]:
    """The procflow statement class ``stmt`` is (or derives from)."""
    for t in _TYPES:
        if isinstance(stmt, t):
            return t
    raise DefinitionError(f"{stmt!r} is not a procflow statement this version can export")


# -- JSON ------------------------------------------------------------------------------


def to_json(definition: Stmt) -> dict[str, Any]:
    """Return the definition tree as JSON-serialisable data.

    Each node is ``{"type", "name", ..., "children"}``: ``type`` is the
    statement's class name, ``name`` is ``""`` for the statements that have
    none, ``children`` lists the nodes directly inside it, in order. Extra keys
    by type: ``Step`` ``has_compensate``; ``Case``, ``Default``, ``For`` and
    ``WaitFor`` ``condition`` (``{"kind": "bool", "value": ...}`` for a bool
    fixed when the tree was built, ``{"kind": "callable"}`` otherwise);
    ``WaitFor`` ``has_handler``; ``Go`` ``has_id``; ``On`` and ``OnEvent``
    ``handler`` (the handler's ``type``) and, for a function handler, the JSON
    Schemas ``payload_schema`` and ``reply_schema``. The result is valid
    against ``DEFINITION_SCHEMA``.

    Raises:
        DefinitionError: the definition is invalid (see ``validate``), has
            a ``Case`` outside a ``Switch`` or an event outside a ``Wait``, or
            holds a statement type this module does not know.
        ExportError: an ``OnEvent``'s payload or reply type has no JSON Schema.
    """
    _check(definition)
    return _node(definition)


def _condition(cond: bool | Callable[[], bool]) -> dict[str, Any]:
    if cond is True or cond is False:
        return {"kind": "bool", "value": cond}
    return {"kind": "callable"}


def _event_schemas(event: On) -> dict[str, Any]:
    handler = event.handler
    if not isinstance(handler, FunctionHandler):
        return {}
    try:
        return {"payload_schema": handler.payload_schema(), "reply_schema": handler.reply_schema()}
    except PydanticUserError as e:  # a type pydantic validates but cannot describe
        raise ExportError(f"event {event.name!r}: its payload or reply type has no JSON Schema: {e}") from e


def _node(stmt: Stmt) -> dict[str, Any]:
    kind = _type_of(stmt)
    node: dict[str, Any] = {"type": kind.__name__, "name": stmt.name}
    if isinstance(stmt, Step):
        node["has_compensate"] = stmt.compensate is not None
    elif isinstance(stmt, (Case, For)):
        node["condition"] = _condition(stmt.cond)
    elif isinstance(stmt, WaitFor):
        node["condition"] = _condition(stmt.cond)
        node["has_handler"] = stmt.handler is not None
    elif isinstance(stmt, Go):
        node["has_id"] = stmt.id is not None
    elif isinstance(stmt, On):
        node["handler"] = stmt.handler.type
        node.update(_event_schemas(stmt))
    node["children"] = [_node(kid) for kid in stmt.children()]
    return node


# -- DEFINITION_SCHEMA ---------------------------------------------------------------

_NAMED: Final = {"type": "string", "minLength": 1}
_UNNAMED: Final = {"const": ""}
_A_SCHEMA: Final = {"type": ["object", "boolean"]}


# Cases and events are only children of a Switch or a Wait.
_NESTED_ONLY: Final = ("Case", "Default", "On", "OnEvent")


def _children(*, types: Iterable[str] | None = None, min_items: int = 0, max_items: int | None = None) -> Any:
    allowed = list(types) if types is not None else [t for t in _TYPE_NAMES if t not in _NESTED_ONLY]
    items = {"allOf": [{"$ref": "#/$defs/node"}, {"properties": {"type": {"enum": allowed}}}]}
    schema: dict[str, Any] = {"type": "array", "items": items}
    if min_items:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


_LEAF: Final = {"type": "array", "maxItems": 0}


def _node_schema(
    type_name: str,
    description: str,
    name: Any,
    children: Any,
    required: Mapping[str, Any] | None = None,
    optional: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    required = dict(required or {})
    optional = dict(optional or {})
    return {
        "description": description,
        "type": "object",
        "properties": {
            "type": {"const": type_name},
            "name": name,
            **required,
            **optional,
            "children": children,
        },
        "required": ["type", "name", *required, "children"],
        "additionalProperties": False,
    }


def _definition_schema() -> dict[str, Any]:
    condition = {"$ref": "#/$defs/condition"}
    kinds = {
        "Section": _node_schema("Section", "A block: its children run in order.", _UNNAMED, _children()),
        "Step": _node_schema(
            "Step",
            "Runs an action once.",
            _NAMED,
            _LEAF,
            required={"has_compensate": {"type": "boolean"}},
        ),
        "Switch": _node_schema(
            "Switch",
            "Runs the first case whose condition is true.",
            _UNNAMED,
            _children(types=["Case", "Default"]),
        ),
        "Case": _node_schema(
            "Case", "A branch of a Switch.", _NAMED, _children(), required={"condition": condition}
        ),
        "Default": _node_schema(
            "Default",
            "The branch of a Switch taken when no case before it is.",
            _NAMED,
            _children(),
            required={"condition": condition},
        ),
        "For": _node_schema(
            "For",
            "A while loop over its children.",
            _NAMED,
            _children(),
            required={"condition": condition},
        ),
        "Break": _node_schema("Break", "Leaves the innermost For.", _UNNAMED, _LEAF),
        "Continue": _node_schema(
            "Continue", "Goes to the next iteration of the innermost For.", _UNNAMED, _LEAF
        ),
        "Return": _node_schema("Return", "Ends the current thread.", _UNNAMED, _LEAF),
        "Go": _node_schema(
            "Go",
            "Starts a thread that runs its only child.",
            _NAMED,
            _children(min_items=1, max_items=1),
            required={"has_id": {"type": "boolean"}},
        ),
        "Wait": _node_schema(
            "Wait",
            "Parks the thread until one of its events arrives.",
            _NAMED,
            _children(types=["On", "OnEvent"], min_items=1),
        ),
        "On": _node_schema(
            "On",
            "An event of a Wait; the schemas are present when its handler is a function.",
            _NAMED,
            _children(),
            required={"handler": _NAMED},
            optional={"payload_schema": _A_SCHEMA, "reply_schema": _A_SCHEMA},
        ),
        "OnEvent": _node_schema(
            "OnEvent",
            "An event of a Wait whose handler is a function with a typed payload.",
            _NAMED,
            _children(),
            required={"handler": _NAMED, "payload_schema": _A_SCHEMA, "reply_schema": _A_SCHEMA},
        ),
        "WaitFor": _node_schema(
            "WaitFor",
            "Parks the thread until its condition is true.",
            _NAMED,
            _LEAF,
            required={"condition": condition, "has_handler": {"type": "boolean"}},
        ),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:procflow:schema:definition",
        "title": "procflow definition",
        "description": "A workflow's definition tree, as procflow.to_json returns it.",
        "allOf": [
            {"$ref": "#/$defs/node"},
            {"properties": {"type": {"not": {"enum": list(_NESTED_ONLY)}}}},
        ],
        "$defs": {
            # Dispatching on "type" with if/then (rather than oneOf) makes a
            # validator report the errors of the one schema that applies.
            "node": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": list(_TYPE_NAMES)}},
                "allOf": [
                    {
                        "if": {"properties": {"type": {"const": name}}},
                        "then": {"$ref": f"#/$defs/{name}"},
                    }
                    for name in _TYPE_NAMES
                ],
            },
            "condition": {
                "description": "A bool fixed when the tree was built, or a callable evaluated when reached.",
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "bool"}, "value": {"type": "boolean"}},
                        "required": ["kind", "value"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "callable"}},
                        "required": ["kind"],
                        "additionalProperties": False,
                    },
                ],
            },
            **kinds,
        },
    }


DEFINITION_SCHEMA: Final[dict[str, Any]] = _definition_schema()
"""The JSON Schema (draft 2020-12) of ``to_json``'s output. Treat it as read-only."""


def _state_schema() -> dict[str, Any]:
    schema = State.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:procflow:schema:state",
        **schema,
    }


STATE_SCHEMA: Final[dict[str, Any]] = _state_schema()
"""The JSON Schema (draft 2020-12) of a stored ``State`` (``State.model_dump_json()``).
Treat it as read-only."""


# -- Mermaid ---------------------------------------------------------------------------

_CLASS_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS_DEFS: Final = (
    "classDef parked fill:#fff3cd,stroke:#b8860b,stroke-width:3px",
    "classDef done fill:#d4edda,stroke:#2e7d32",
)
# Characters that would end a quoted label or be read as markup, as Mermaid
# entity codes (``#35;`` is a literal ``#``, so entities in names stay text).
_ESCAPES: Final = {
    "#": "#35;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "|": "#124;",
    "`": "#96;",
    "\n": " ",
    "\r": " ",
    "\t": " ",
}
_ESCAPE_TABLE: Final = str.maketrans(_ESCAPES)


def _label(text: str) -> str:
    """``text`` as a quoted Mermaid label."""
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def to_mermaid(definition: Stmt, *, highlight: Mapping[str, str] | None = None) -> str:
    """Return a Mermaid ``flowchart TD`` of the definition tree.

    Steps are boxes, Waits hexagons with one edge per event (labelled with the
    event's name), WaitFors parallelograms, Switches and Fors diamonds (a
    Switch's edges are labelled with its cases' names, ``else`` when it has no
    Default; a For has a ``loop`` edge into its body, a back edge from the end
    of the body, and an ``exit`` edge), and each Go is a fork to a subgraph
    holding its thread. ``Return`` leads to the end of its thread (the ``end``
    node in the main thread); ``Break`` and ``Continue`` are labelled edges.
    Names are escaped, so any text is safe in a name.

    ``highlight`` maps statement names to Mermaid class names (``parked`` and
    ``done`` are defined) and marks the nodes of those statements: Steps,
    Waits, WaitFors, Gos and Fors. Names with no node (say, from an older
    version of the definition) are ignored.

    Raises:
        DefinitionError: the definition is invalid (see ``validate``), has
            a ``Case`` outside a ``Switch`` or an event outside a ``Wait``, or
            holds a statement type this module does not know.
        ExportError: a ``highlight`` class is not a Mermaid identifier.
    """
    _check(definition)
    if highlight:
        for cls in highlight.values():
            if not isinstance(cls, str) or not _CLASS_NAME.fullmatch(cls):
                raise ExportError(f"highlight class {cls!r} is not a Mermaid identifier")
    diagram = _Diagram()
    diagram.draw(definition)
    return diagram.render(highlight)


@dataclass(frozen=True, slots=True)
class _Edge:
    """An edge whose target is not known yet: it leads to whatever comes next."""

    src: str
    label: str = ""
    dotted: bool = False

    def relabel(self, what: str) -> _Edge:
        return _Edge(self.src, f"{self.label}: {what}" if self.label else what, self.dotted)


@dataclass(slots=True)
class _Loop:
    decision: str
    breaks: list[_Edge] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Context:
    end: str
    """Where a ``Return`` leads: the end of the current thread."""
    loop: _Loop | None = None


class _Diagram:
    """Builds the flowchart: nodes (grouped by subgraph) and edges.

    ``_emit`` draws a statement reached by ``incoming`` edges and returns the
    edges that leave it, still without a target; the caller connects them to
    whatever runs next.
    """

    def __init__(self) -> None:
        self._count = 0
        self._lines: list[str] = []
        self._indent = "    "
        self._edges: list[str] = []
        self._ids_by_name: dict[str, list[str]] = {}

    def draw(self, root: Stmt) -> None:
        self._node("start", '(["start"])')
        out = self._emit(root, [_Edge("start")], _Context(end="finish"))
        self._connect(out, "finish")
        self._node("finish", '(["end"])')

    def render(self, highlight: Mapping[str, str] | None) -> str:
        lines = ["flowchart TD", *self._lines]
        lines += ("    " + e for e in self._edges)
        if highlight is not None:
            lines += ("    " + c for c in _CLASS_DEFS)
            members: dict[str, list[str]] = {}
            for name, cls in highlight.items():
                members.setdefault(cls, []).extend(self._ids_by_name.get(name, ()))
            for cls in sorted(members):
                if members[cls]:
                    lines.append(f"    class {','.join(sorted(set(members[cls]), key=_id_order))} {cls}")
        return "\n".join(lines) + "\n"

    def _new_id(self, prefix: str = "n") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _node(self, node_id: str, shape: str) -> None:
        self._lines.append(f"{self._indent}{node_id}{shape}")

    def _named_node(self, stmt: Stmt, left: str, right: str) -> str:
        node_id = self._new_id()
        self._node(node_id, f"{left}{_label(stmt.name)}{right}")
        self._ids_by_name.setdefault(stmt.name, []).append(node_id)
        return node_id

    def _connect(self, edges: Iterable[_Edge], dst: str) -> None:
        for e in edges:
            arrow = "-.->" if e.dotted else "-->"
            label = f"|{_label(e.label)}|" if e.label else ""
            self._edges.append(f"{e.src} {arrow}{label} {dst}")

    def _emit_all(self, stmts: Iterable[Stmt], incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        for stmt in stmts:
            incoming = self._emit(stmt, incoming, ctx)
        return incoming

    def _emit(self, stmt: Stmt, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        _type_of(stmt)
        if isinstance(stmt, Step):
            return self._simple(stmt, incoming, "[", "]")
        if isinstance(stmt, WaitFor):
            return self._simple(stmt, incoming, "[/", "/]")
        if isinstance(stmt, Wait):
            return self._wait(stmt, incoming, ctx)
        if isinstance(stmt, Switch):
            return self._switch(stmt, incoming, ctx)
        if isinstance(stmt, For):
            return self._loop(stmt, incoming, ctx)
        if isinstance(stmt, Go):
            return self._go(stmt, incoming, ctx)
        if isinstance(stmt, Return):
            self._connect(incoming, ctx.end)
            return []
        if isinstance(stmt, Break):
            # validate() checked that a For of this thread encloses every Break and Continue.
            assert ctx.loop is not None
            ctx.loop.breaks += (e.relabel("break") for e in incoming)
            return []
        if isinstance(stmt, Continue):
            assert ctx.loop is not None
            self._connect((e.relabel("continue") for e in incoming), ctx.loop.decision)
            return []
        # A Section (cases and events are drawn by their Switch or Wait).
        return self._emit_all(stmt.children(), incoming, ctx)

    def _simple(self, stmt: Stmt, incoming: list[_Edge], left: str, right: str) -> list[_Edge]:
        node = self._named_node(stmt, left, right)
        self._connect(incoming, node)
        return [_Edge(node)]

    def _wait(self, stmt: Wait, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._named_node(stmt, "{{", "}}")
        self._connect(incoming, node)
        out: list[_Edge] = []
        for event in stmt.events:
            out += self._emit_all(event.children(), [_Edge(node, event.name)], ctx)
        return out

    def _switch(self, stmt: Switch, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._new_id()
        self._node(node, '{"?"}')
        self._connect(incoming, node)
        out: list[_Edge] = []
        for case in stmt.cases:
            out += self._emit_all(case.children(), [_Edge(node, case.name)], ctx)
        if not any(isinstance(case, Default) for case in stmt.cases):
            out.append(_Edge(node, "else"))
        return out

    def _loop(self, stmt: For, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._named_node(stmt, "{", "}")
        self._connect(incoming, node)
        loop = _Loop(node)
        body_out = self._emit_all(stmt.children(), [_Edge(node, "loop")], _Context(ctx.end, loop))
        self._connect(body_out, node)
        return [_Edge(node, "exit"), *loop.breaks]

    def _go(self, stmt: Go, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._named_node(stmt, "[[", "]]")
        self._connect(incoming, node)
        self._lines.append(f"{self._indent}subgraph {self._new_id('g')}[{_label(stmt.name)}]")
        outer_indent, self._indent = self._indent, self._indent + "    "
        self._lines.append(f"{self._indent}direction TB")
        end = self._new_id()
        body_out = self._emit(stmt.body, [_Edge(node, "", dotted=True)], _Context(end))
        self._connect(body_out, end)
        self._node(end, '(("end"))')
        self._indent = outer_indent
        self._lines.append(f"{self._indent}end")
        return [_Edge(node)]


def _id_order(node_id: str) -> int:
    return int(node_id[1:])
