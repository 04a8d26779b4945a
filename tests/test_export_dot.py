"""to_dot: the definition as a Graphviz digraph, node for node the flowchart to_mermaid draws."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

import procflow as pf
from procflow.export import to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def noop() -> None:
    return None


@dataclass
class Everything:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", noop),
            pf.Go("packing", pf.S(pf.Step("pack", noop))),
            pf.Wait("decision", pf.OnEvent("approve", noop, pf.Step("ship", noop)), pf.OnEvent("deny", noop)),
            pf.If(lambda: True, "big?", pf.Step("insure", noop)),
            pf.For("retries", lambda: False, pf.WaitFor("ready", lambda: True), pf.Break()),
        )


def nodes(text: str) -> dict[str, str]:
    """Node id to its attribute list (the node and edge defaults left out)."""
    found = re.findall(r"^\s+(\w+) \[(.*)\];$", text, re.M)
    return {name: attrs for name, attrs in found if name not in ("node", "edge")}


def by_label(text: str) -> dict[str, str]:
    """A node's label to its attribute list."""
    return {re.findall(r'label="([^"]*)"', attrs)[0]: attrs for attrs in nodes(text).values()}


def edges(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r"^\s+(\w+) -> (\w+)(?: \[(.*)\])?;$", text, re.M)


def test_to_dot_is_a_digraph() -> None:
    text = to_dot(Everything().definition())
    assert text.startswith("digraph workflow {\n")
    assert text.endswith("}\n")


def test_to_dot_has_the_nodes_and_edges_of_to_mermaid() -> None:
    definition = Everything().definition()
    mermaid = pf.to_mermaid(definition)
    mermaid_nodes = re.findall(r"^\s+(\w+)[\[({]", mermaid, re.M)
    mermaid_edges = re.findall(r"^\s+(\w+) -\.?->(?:\|[^|]*\|)? (\w+)$", mermaid, re.M)
    dot = to_dot(definition)
    assert list(nodes(dot)) == mermaid_nodes
    assert [(src, dst) for src, dst, _ in edges(dot)] == mermaid_edges


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("reserve", "shape=box"),
        ("decision", "shape=hexagon"),
        ("ready", "shape=parallelogram"),
        ("retries", "shape=diamond"),
        ("packing", "shape=box, peripheries=2"),
    ],
)
def test_each_kind_of_statement_has_its_shape(name: str, shape: str) -> None:
    assert by_label(to_dot(Everything().definition()))[name].startswith(shape + ",")


def test_event_and_case_edges_are_labelled_with_their_names() -> None:
    labels = {attrs for _, _, attrs in edges(to_dot(Everything().definition()))}
    assert {'label="approve"', 'label="deny"', 'label="big?"', 'label="else"', 'label="loop"'} <= labels


def test_a_go_thread_is_a_cluster_entered_by_a_dashed_edge() -> None:
    text = to_dot(Everything().definition())
    assert re.search(r'subgraph cluster_g\d+ \{\n\s+label="packing";', text)
    assert any(attrs == "style=dashed" for _, _, attrs in edges(text))


def test_names_are_escaped_inside_quoted_labels() -> None:
    definition = pf.S(pf.Step('say "hi" \\ bye\nnow', noop))
    assert 'label="say \\"hi\\" \\\\ bye now"' in to_dot(definition)


def test_highlight_gives_marked_nodes_a_class_and_known_classes_a_style() -> None:
    highlight = {"reserve": "done", "decision": "parked", "pack": "mine"}
    marked = by_label(to_dot(Everything().definition(), highlight=highlight))
    assert 'class="done", style=filled, fillcolor="#d4edda"' in marked["reserve"]
    assert 'class="parked", style=filled, fillcolor="#fff3cd"' in marked["decision"]
    assert marked["pack"].endswith('class="mine"')
    assert "class=" not in marked["ship"]


def test_highlight_ignores_names_that_have_no_node() -> None:
    assert to_dot(Everything().definition(), highlight={"gone": "done"}) == to_dot(Everything().definition())


@pytest.mark.parametrize("cls", ["two words", "", 'x"y', "9lives"])
def test_highlight_rejects_a_class_that_is_not_an_identifier(cls: str) -> None:
    with pytest.raises(pf.ExportError):
        to_dot(Everything().definition(), highlight={"reserve": cls})


def test_to_dot_raises_definition_error_for_an_invalid_definition() -> None:
    with pytest.raises(pf.DefinitionError, match="duplicate name 'x'"):
        to_dot(pf.S(pf.Step("x", noop), pf.Step("x", noop)))


def test_the_failed_class_is_styled_in_both_renderings() -> None:
    highlight = {"reserve": "failed"}
    assert "classDef failed " in pf.to_mermaid(Everything().definition(), highlight=highlight)
    assert 'class="failed", style=filled' in to_dot(Everything().definition(), highlight=highlight)


@needs_dot
def test_graphviz_renders_it_to_svg_with_the_classes() -> None:
    definition = pf.S(Everything().definition(), pf.Step('odd "name" \\ here', noop))
    text = to_dot(definition, highlight={"decision": "parked"})
    result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, check=True)
    assert "<svg" in result.stdout
    assert 'class="node parked"' in result.stdout
    assert "odd &quot;name&quot; \\ here" in result.stdout
