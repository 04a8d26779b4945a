"""Exports of a definition tree and of the stored state, for tools and docs.

``to_json`` turns a definition into plain JSON (valid against
``DEFINITION_SCHEMA``), ``to_mermaid`` and ``to_dot`` draw it as a Mermaid or
Graphviz flowchart, and ``STATE_SCHEMA`` is the JSON Schema of a stored
``State``. Nothing here runs a workflow: the exports describe the tree's
structure, so conditions are reported as what they are (a bool fixed when the
tree was built, or a callable), never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pydantic import PydanticUserError

from ._flowchart import Flowchart
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
    walk,
)

__all__ = ["DEFINITION_SCHEMA", "STATE_SCHEMA", "ExportError", "to_dot", "to_json", "to_mermaid"]


class ExportError(ProcflowError, ValueError):
    """An export cannot render what it was given.

    Raised for an ``OnEvent`` whose payload or reply type has no JSON Schema,
    and for a ``highlight`` class name that is not an identifier.
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
    raise DefinitionError(
        f"{stmt!r} is not a procflow statement this version can export; "
        "derive custom statements from a procflow statement class (Step, Wait, ...)"
    )


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
        first_line = str(e).splitlines()[0]
        raise ExportError(
            f"OnEvent {event.name!r}: its payload or reply type has no JSON Schema ({first_line}); "
            "use a pydantic model, a dataclass or a standard type"
        ) from e


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


# -- flowcharts: Mermaid and Graphviz DOT ---------------------------------------------

_CLASS_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words Mermaid's flowchart grammar reads as keywords wherever they stand: no class name.
_MERMAID_KEYWORDS: Final = frozenset(
    {
        "_blank",
        "_parent",
        "_self",
        "_top",
        "call",
        "class",
        "classDef",
        "click",
        "end",
        "flowchart",
        "graph",
        "href",
        "interpolate",
        "linkStyle",
        "style",
        "subgraph",
    }
)


def _flowchart(definition: Stmt, highlight: Mapping[str, str] | None) -> Flowchart:
    """Check the definition and the highlight classes, and draw the tree."""
    _check(definition)
    walk(definition, _unknown)
    if highlight is not None and not isinstance(highlight, Mapping):
        raise TypeError(f"highlight must map statement names to class names, got {type(highlight).__name__}")
    if highlight:
        for name, cls in highlight.items():
            if not isinstance(cls, str) or not _CLASS_NAME.fullmatch(cls):
                raise ExportError(
                    f"highlight[{name!r}] = {cls!r} is not a class name ([A-Za-z_][A-Za-z0-9_]*)"
                )
            if cls in _MERMAID_KEYWORDS:
                raise ExportError(
                    f"highlight[{name!r}] = {cls!r} is a Mermaid keyword, which cannot name a class; "
                    "choose another name"
                )
    return Flowchart(definition)


def _unknown(stmt: Stmt) -> bool:
    _type_of(stmt)  # raises for a statement type this module does not know
    return False


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

    ``highlight`` maps statement names to Mermaid class names (``parked``,
    ``done`` and ``failed`` are defined) and marks the nodes of those
    statements: Steps, Waits, WaitFors, Gos and Fors. Names with no node
    (say, from an older version of the definition) are ignored.

    Raises:
        DefinitionError: the definition is invalid (see ``validate``), has
            a ``Case`` outside a ``Switch`` or an event outside a ``Wait``, or
            holds a statement type this module does not know.
        ExportError: a ``highlight`` class is not an identifier, or is a
            Mermaid keyword (``end``, ``style``, ``class``, ...).
        TypeError: ``highlight`` is not a mapping.
    """
    return _flowchart(definition, highlight).mermaid(highlight)


def to_dot(definition: Stmt, *, highlight: Mapping[str, str] | None = None) -> str:
    """Return a Graphviz ``digraph`` of the definition tree, for ``dot -Tsvg``.

    The same flowchart as ``to_mermaid``, node for node (same ids): Steps are
    boxes, Waits hexagons, WaitFors parallelograms, Switches and Fors
    diamonds, Gos double boxes leading (dashed) into a cluster holding their
    thread. Names are escaped, so any text is safe in a name.

    ``highlight`` maps statement names to class names: each marked node gets
    a ``class`` attribute (which Graphviz keeps in SVG output), and the
    classes ``parked``, ``done`` and ``failed`` are also filled and outlined
    as in ``to_mermaid``. Names with no node are ignored.

    Raises:
        DefinitionError: as ``to_mermaid``.
        ExportError: a ``highlight`` class is not an identifier, or is a
            Mermaid keyword (the same classes serve both formats).
        TypeError: ``highlight`` is not a mapping.
    """
    return _flowchart(definition, highlight).dot(highlight)
