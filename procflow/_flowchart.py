"""The flowchart of a definition tree, drawn once and rendered as Mermaid or Graphviz DOT.

``Flowchart.draw`` walks the tree and records nodes (in subgraphs, one per
``Go`` thread) and edges; ``mermaid`` and ``dot`` turn that into text. Both
renderings have the same nodes, in the same order, with the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .statements import Break, Continue, Default, For, Go, Return, Step, Stmt, Switch, Wait, WaitFor

__all__ = ["Flowchart"]

# Node shapes: Mermaid's brackets around the quoted label, and Graphviz's attributes.
_MERMAID_SHAPES: Final = {
    "terminal": ("([", "])"),
    "step": ("[", "]"),
    "waitfor": ("[/", "/]"),
    "wait": ("{{", "}}"),
    "decision": ("{", "}"),
    "go": ("[[", "]]"),
    "thread_end": ("((", "))"),
}
_DOT_SHAPES: Final = {
    "terminal": "shape=oval",
    "step": "shape=box",
    "waitfor": "shape=parallelogram",
    "wait": "shape=hexagon",
    "decision": "shape=diamond",
    "go": "shape=box, peripheries=2",
    "thread_end": "shape=circle",
}

_MERMAID_CLASS_DEFS: Final = (
    "classDef parked fill:#fff3cd,stroke:#b8860b,stroke-width:3px",
    "classDef done fill:#d4edda,stroke:#2e7d32",
    "classDef failed fill:#f8d7da,stroke:#c62828,stroke-width:3px",
)
_DOT_CLASS_STYLES: Final = {
    "parked": 'style=filled, fillcolor="#fff3cd", color="#b8860b", penwidth=3',
    "done": 'style=filled, fillcolor="#d4edda", color="#2e7d32"',
    "failed": 'style=filled, fillcolor="#f8d7da", color="#c62828", penwidth=3',
}

# Characters that would end a quoted Mermaid label or be read as markup, as
# entity codes (``#35;`` is a literal ``#``, so entities in names stay text).
_MERMAID_ESCAPES: Final = str.maketrans(
    {
        "#": "#35;",
        "%": "#37;",  # "%%" starts a Mermaid comment or directive, even inside quotes
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
)
# In a quoted DOT string only ``"`` and ``\`` are special (``\n``, ``\l``, ``\N``
# ... are escape sequences in labels, so a literal backslash is doubled).
_DOT_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": " ", "\r": " ", "\t": " "})


def _mermaid_label(text: str) -> str:
    return '"' + text.translate(_MERMAID_ESCAPES) + '"'


def _dot_label(text: str) -> str:
    return '"' + text.translate(_DOT_ESCAPES) + '"'


@dataclass(frozen=True, slots=True)
class _Node:
    id: str
    shape: str
    label: str


@dataclass(frozen=True, slots=True)
class _Open:
    """The start of a thread's subgraph."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class _Close:
    """The end of the innermost open subgraph."""


@dataclass(frozen=True, slots=True)
class _Line:
    src: str
    dst: str
    label: str
    dotted: bool


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


class Flowchart:
    """The nodes and edges of a definition tree (checked beforehand by the caller).

    ``_emit`` draws a statement reached by ``incoming`` edges and returns the
    edges that leave it, still without a target; the caller connects them to
    whatever runs next.
    """

    def __init__(self, root: Stmt) -> None:
        self._count = 0
        self._items: list[_Node | _Open | _Close] = []
        self._lines: list[_Line] = []
        self._ids_by_name: dict[str, list[str]] = {}
        self._node("start", "terminal", "start")
        out = self._emit(root, [_Edge("start")], _Context(end="finish"))
        self._connect(out, "finish")
        self._node("finish", "terminal", "end")

    def marked(self, highlight: Mapping[str, str]) -> dict[str, list[str]]:
        """The node ids of each highlight class, in drawing order (names without a node are left out)."""
        members: dict[str, list[str]] = {}
        for name, cls in highlight.items():
            members.setdefault(cls, []).extend(self._ids_by_name.get(name, ()))
        return {cls: sorted(set(ids), key=_id_order) for cls, ids in sorted(members.items()) if ids}

    # -- rendering -----------------------------------------------------------

    def mermaid(self, highlight: Mapping[str, str] | None) -> str:
        """A Mermaid ``flowchart TD``; with ``highlight``, class definitions and memberships."""
        lines = ["flowchart TD"]
        indent = "    "
        for item in self._items:
            if isinstance(item, _Node):
                left, right = _MERMAID_SHAPES[item.shape]
                lines.append(f"{indent}{item.id}{left}{_mermaid_label(item.label)}{right}")
            elif isinstance(item, _Open):
                lines.append(f"{indent}subgraph {item.id}[{_mermaid_label(item.label)}]")
                indent += "    "
                lines.append(f"{indent}direction TB")
            else:
                indent = indent[:-4]
                lines.append(f"{indent}end")
        for e in self._lines:
            arrow = "-.->" if e.dotted else "-->"
            label = f"|{_mermaid_label(e.label)}|" if e.label else ""
            lines.append(f"    {e.src} {arrow}{label} {e.dst}")
        if highlight is not None:
            lines += ("    " + c for c in _MERMAID_CLASS_DEFS)
            for cls, ids in self.marked(highlight).items():
                lines.append(f"    class {','.join(ids)} {cls}")
        return "\n".join(lines) + "\n"

    def dot(self, highlight: Mapping[str, str] | None) -> str:
        """A Graphviz ``digraph``; highlighted nodes get a ``class`` (kept in SVG) and a style."""
        classes = {node: cls for cls, ids in self.marked(highlight or {}).items() for node in ids}
        lines = [
            "digraph workflow {",
            "    rankdir=TB;",
            '    node [fontname="Helvetica", fontsize=11];',
            '    edge [fontname="Helvetica", fontsize=10];',
        ]
        indent = "    "
        for item in self._items:
            if isinstance(item, _Node):
                attrs = f"{_DOT_SHAPES[item.shape]}, label={_dot_label(item.label)}"
                cls = classes.get(item.id)
                if cls is not None:
                    attrs += f', class="{cls}"'
                    if cls in _DOT_CLASS_STYLES:
                        attrs += ", " + _DOT_CLASS_STYLES[cls]
                lines.append(f"{indent}{item.id} [{attrs}];")
            elif isinstance(item, _Open):
                lines.append(f"{indent}subgraph cluster_{item.id} {{")
                indent += "    "
                lines.append(f"{indent}label={_dot_label(item.label)};")
                lines.append(f'{indent}style=dashed; color="#888888";')
            else:
                indent = indent[:-4]
                lines.append(f"{indent}}}")
        for e in self._lines:
            edge_attrs = []
            if e.label:
                edge_attrs.append(f"label={_dot_label(e.label)}")
            if e.dotted:
                edge_attrs.append("style=dashed")
            suffix = f" [{', '.join(edge_attrs)}]" if edge_attrs else ""
            lines.append(f"    {e.src} -> {e.dst}{suffix};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    # -- drawing -------------------------------------------------------------

    def _new_id(self, prefix: str = "n") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _node(self, node_id: str, shape: str, label: str) -> None:
        self._items.append(_Node(node_id, shape, label))

    def _named_node(self, stmt: Stmt, shape: str) -> str:
        node_id = self._new_id()
        self._node(node_id, shape, stmt.name)
        self._ids_by_name.setdefault(stmt.name, []).append(node_id)
        return node_id

    def _connect(self, edges: Iterable[_Edge], dst: str) -> None:
        self._lines += (_Line(e.src, dst, e.label, e.dotted) for e in edges)

    def _emit_all(self, stmts: Iterable[Stmt], incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        for stmt in stmts:
            incoming = self._emit(stmt, incoming, ctx)
        return incoming

    def _emit(self, stmt: Stmt, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        if isinstance(stmt, Step):
            return self._simple(stmt, incoming, "step")
        if isinstance(stmt, WaitFor):
            return self._simple(stmt, incoming, "waitfor")
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

    def _simple(self, stmt: Stmt, incoming: list[_Edge], shape: str) -> list[_Edge]:
        node = self._named_node(stmt, shape)
        self._connect(incoming, node)
        return [_Edge(node)]

    def _wait(self, stmt: Wait, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._named_node(stmt, "wait")
        self._connect(incoming, node)
        out: list[_Edge] = []
        for event in stmt.events:
            out += self._emit_all(event.children(), [_Edge(node, event.name)], ctx)
        return out

    def _switch(self, stmt: Switch, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._new_id()
        self._node(node, "decision", "?")
        self._connect(incoming, node)
        out: list[_Edge] = []
        for case in stmt.cases:
            out += self._emit_all(case.children(), [_Edge(node, case.name)], ctx)
        if not any(isinstance(case, Default) for case in stmt.cases):
            out.append(_Edge(node, "else"))
        return out

    def _loop(self, stmt: For, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._named_node(stmt, "decision")
        self._connect(incoming, node)
        loop = _Loop(node)
        body_out = self._emit_all(stmt.children(), [_Edge(node, "loop")], _Context(ctx.end, loop))
        self._connect(body_out, node)
        return [_Edge(node, "exit"), *loop.breaks]

    def _go(self, stmt: Go, incoming: list[_Edge], ctx: _Context) -> list[_Edge]:
        node = self._named_node(stmt, "go")
        self._connect(incoming, node)
        self._items.append(_Open(self._new_id("g"), stmt.name))
        end = self._new_id()
        body_out = self._emit(stmt.body, [_Edge(node, "", dotted=True)], _Context(end))
        self._connect(body_out, end)
        self._node(end, "thread_end", "end")
        self._items.append(_Close())
        return [_Edge(node)]


def _id_order(node_id: str) -> int:
    return int(node_id[1:])
