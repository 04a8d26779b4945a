"""The export layer: ``to_json`` and ``DEFINITION_SCHEMA``, ``STATE_SCHEMA``, ``to_mermaid``."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from random_workflows import MAX_DELIVERIES, Program, Store, drive, new_workflow, programs, workflow_class

import procflow as pf

DEFINITIONS = Draft202012Validator(pf.DEFINITION_SCHEMA)
STATES = Draft202012Validator(pf.STATE_SCHEMA)


class Approval(BaseModel):
    who: str
    amount: int = 0


class Webhook(pf.Handler):
    type = "webhook"


def nothing() -> None:
    return None


def never_called() -> bool:
    raise AssertionError("an export evaluated a condition")


@dataclass
class Order:
    """Data and a definition that use every statement type."""

    state: pf.State = field(default_factory=lambda: pf.State.new("order-1", "order"))
    approved: bool = False
    log: list[str] = field(default_factory=list)

    def on_approve(self, payload: Approval) -> str:
        self.approved = True
        return f"approved by {payload.who}"

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve"), compensate=nothing),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.on_approve, pf.Step("thank", nothing)),
                pf.On("deny", Webhook(), pf.Return()),
            ),
            pf.If(self.approved, "approved?", pf.Step("ship", nothing))
            .elif_(never_called, "partly?", pf.Step("ship part", nothing))
            .else_("rejected", pf.Return()),
            pf.For(
                "retry",
                never_called,
                pf.Step("try", nothing),
                pf.If(never_called, "worked?", pf.Break()),
                pf.If(never_called, "skip?", pf.Continue()),
                pf.Step("back off", nothing),
            ),
            pf.Go("notify", pf.S(pf.Step("email", nothing), pf.WaitFor("acked", never_called, nothing))),
            pf.Go("audit", pf.S(pf.Return()), id=lambda: "audit-1"),
            pf.WaitFor("all done", True),
        )


ALL_TYPES = {
    "Section",
    "Step",
    "Switch",
    "Case",
    "Default",
    "For",
    "Break",
    "Continue",
    "Return",
    "Go",
    "Wait",
    "On",
    "OnEvent",
    "WaitFor",
}


def nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a ``to_json`` tree, depth-first."""
    out = [tree]
    for kid in tree["children"]:
        out += nodes(kid)
    return out


def node(tree: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [n for n in nodes(tree) if n["name"] == name]
    return found


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(instance)]


# -- to_json ----------------------------------------------------------------------


def test_to_json_of_a_definition_is_valid_against_the_definition_schema() -> None:
    assert schema_errors(DEFINITIONS, pf.to_json(Order().definition())) == []


def test_the_published_schemas_are_valid_draft_2020_12_schemas() -> None:
    Draft202012Validator.check_schema(pf.DEFINITION_SCHEMA)
    Draft202012Validator.check_schema(pf.STATE_SCHEMA)
    assert pf.DEFINITION_SCHEMA["$schema"] == pf.STATE_SCHEMA["$schema"]
    assert pf.DEFINITION_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_each_node_is_typed_by_its_statement_class_name() -> None:
    tree = pf.to_json(Order().definition())
    assert {n["type"] for n in nodes(tree)} == ALL_TYPES
    assert node(tree, "reserve")["type"] == "Step"
    assert node(tree, "rejected")["type"] == "Default"


def test_statements_without_a_name_have_an_empty_name() -> None:
    tree = pf.to_json(pf.S(pf.For("loop", True, pf.Step("a", nothing), pf.Break())))
    assert tree["name"] == ""
    assert tree["children"][0]["children"][1] == {"type": "Break", "name": "", "children": []}


def test_children_keep_the_order_of_the_definition() -> None:
    tree = pf.to_json(pf.S(pf.Step("c", nothing), pf.Step("a", nothing), pf.Step("b", nothing)))
    assert [kid["name"] for kid in tree["children"]] == ["c", "a", "b"]


def test_a_step_says_whether_it_has_a_compensate() -> None:
    tree = pf.to_json(pf.S(pf.Step("undoable", nothing, compensate=nothing), pf.Step("final", nothing)))
    assert node(tree, "undoable")["has_compensate"] is True
    assert node(tree, "final")["has_compensate"] is False


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_condition_is_exported_with_its_value_at_build_time(value: bool) -> None:
    tree = pf.to_json(
        pf.S(pf.If(value, "if", pf.Step("a", nothing)), pf.For("for", value, pf.Step("b", nothing)))
    )
    assert node(tree, "if")["condition"] == {"kind": "bool", "value": value}
    assert node(tree, "for")["condition"] == {"kind": "bool", "value": value}


def test_a_callable_condition_is_exported_as_callable_without_calling_it() -> None:
    tree = pf.to_json(pf.S(pf.For("loop", never_called, pf.WaitFor("until", never_called))))
    assert node(tree, "loop")["condition"] == {"kind": "callable"}
    assert node(tree, "until")["condition"] == {"kind": "callable"}


def test_a_default_is_exported_with_a_condition_that_is_always_true() -> None:
    tree = pf.to_json(pf.S(pf.If(False, "no", pf.Step("a", nothing)).else_("otherwise")))
    assert node(tree, "otherwise")["condition"] == {"kind": "bool", "value": True}


def test_a_waitfor_says_whether_it_has_a_handler() -> None:
    tree = pf.to_json(pf.S(pf.WaitFor("with", True, nothing), pf.WaitFor("without", True)))
    assert node(tree, "with")["has_handler"] is True
    assert node(tree, "without")["has_handler"] is False


def test_a_go_says_whether_it_has_an_id_function() -> None:
    tree = pf.to_json(
        pf.S(pf.Go("custom", pf.Step("a", nothing), id=lambda: "x"), pf.Go("plain", pf.Step("b", nothing)))
    )
    assert node(tree, "custom")["has_id"] is True
    assert node(tree, "plain")["has_id"] is False


def test_an_on_carries_the_type_of_its_handler() -> None:
    tree = pf.to_json(Order().definition())
    assert node(tree, "deny")["handler"] == "webhook"
    assert "payload_schema" not in node(tree, "deny")


def test_an_on_event_carries_the_json_schemas_of_its_payload_and_reply() -> None:
    approve = node(pf.to_json(Order().definition()), "approve")
    assert approve["handler"] == "event"
    assert approve["payload_schema"]["title"] == "Approval"
    assert approve["payload_schema"]["required"] == ["who"]
    assert approve["reply_schema"] == {"type": "string"}


def test_the_payload_schema_of_an_on_event_accepts_good_payloads_and_rejects_bad_ones() -> None:
    payload = Draft202012Validator(node(pf.to_json(Order().definition()), "approve")["payload_schema"])
    assert payload.is_valid({"who": "ann", "amount": 3})
    assert not payload.is_valid({"amount": 3})


def test_an_unannotated_on_event_accepts_any_payload_and_reply() -> None:
    tree = pf.to_json(pf.S(pf.Wait("w", pf.OnEvent("e", lambda payload: payload))))
    assert node(tree, "e")["payload_schema"] == {}
    assert node(tree, "e")["reply_schema"] == {}


def test_to_json_survives_a_json_round_trip() -> None:
    tree = pf.to_json(Order().definition())
    assert json.loads(json.dumps(tree)) == tree


def test_to_json_is_the_same_for_every_build_of_a_definition() -> None:
    first = json.dumps(pf.to_json(Order().definition()))
    assert json.dumps(pf.to_json(Order().definition())) == first


def test_a_subclass_of_a_statement_is_exported_as_that_statement() -> None:
    class AuditedStep(pf.Step):
        __slots__ = ()

    assert pf.to_json(pf.S(AuditedStep("a", nothing)))["children"][0]["type"] == "Step"


def test_to_json_raises_definition_error_for_a_duplicate_name() -> None:
    with pytest.raises(pf.DefinitionError, match="'twice'"):
        pf.to_json(pf.S(pf.Step("twice", nothing), pf.Step("twice", nothing)))


def test_to_json_raises_definition_error_for_a_root_that_is_not_a_statement() -> None:
    with pytest.raises(pf.DefinitionError):
        pf.to_json("not a tree")  # type: ignore[arg-type]


def test_to_json_raises_definition_error_for_an_unknown_kind_of_statement() -> None:
    class Custom(pf.Stmt):
        __slots__ = ()

    with pytest.raises(pf.DefinitionError, match="Custom"):
        pf.to_json(pf.S(Custom()))


MISPLACED = [
    pytest.param(lambda: pf.S(pf.On("stray", pf.Handler())), id="event outside a wait"),
    pytest.param(lambda: pf.S(pf.Case(True, "stray", pf.Step("a", nothing))), id="case outside a switch"),
    pytest.param(lambda: pf.Default("stray"), id="default as the root"),
]


@pytest.mark.parametrize("build", MISPLACED)
def test_to_json_raises_definition_error_for_a_case_or_event_out_of_place(
    build: Callable[[], pf.Stmt],
) -> None:
    with pytest.raises(pf.DefinitionError, match="'stray'"):
        pf.to_json(build())


def test_an_event_type_without_a_json_schema_raises_export_error() -> None:
    def on_callback(payload: Callable[[], int]) -> None:
        return None

    with pytest.raises(pf.ExportError, match="'hook'"):
        pf.to_json(pf.S(pf.Wait("w", pf.OnEvent("hook", on_callback))))


# -- DEFINITION_SCHEMA ---------------------------------------------------------------


def _set(path: list[Any], key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(tree: dict[str, Any]) -> None:
        target = tree
        for step in path:
            target = target[step]
        target[key] = value

    return change


def _delete(path: list[Any], key: str) -> Callable[[dict[str, Any]], None]:
    def change(tree: dict[str, Any]) -> None:
        target = tree
        for step in path:
            target = target[step]
        del target[key]

    return change


def _children_of(path: list[Any], *kids: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return _set(path, "children", list(kids))


BREAK = {"type": "Break", "name": "", "children": []}
STEP = {"type": "Step", "name": "s", "has_compensate": False, "children": []}
# Paths into the Order tree: children[0] is "reserve", [1] "decision", [2] the Switch,
# [3] the For "retry", [4] the Go "notify".
RESERVE = ["children", 0]
DECISION = ["children", 1]
SWITCH = ["children", 2]
NOTIFY = ["children", 4]


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_set([], "type", "Loop"), id="unknown type"),
        pytest.param(_delete(RESERVE, "name"), id="missing name"),
        pytest.param(_set(RESERVE, "name", ""), id="empty step name"),
        pytest.param(_set([], "name", "root"), id="name on a section"),
        pytest.param(_set(RESERVE, "colour", "red"), id="unknown key"),
        pytest.param(_delete(RESERVE, "has_compensate"), id="step without has_compensate"),
        pytest.param(_children_of(RESERVE, BREAK), id="step with children"),
        pytest.param(_children_of(SWITCH, STEP), id="switch holding a step"),
        pytest.param(
            lambda tree: tree["children"].append(tree["children"][2]["children"][0]), id="case in a section"
        ),
        pytest.param(lambda tree: tree.update(tree["children"][2]["children"][0]), id="case as the root"),
        pytest.param(_children_of(DECISION), id="wait without events"),
        pytest.param(_children_of(NOTIFY, STEP, STEP), id="go with two bodies"),
        pytest.param(_delete([*DECISION, "children", 0], "payload_schema"), id="on event without schema"),
        pytest.param(_set([*SWITCH, "children", 0], "condition", {"kind": "bool"}), id="bool without value"),
        pytest.param(_set([*SWITCH, "children", 0], "condition", True), id="bare condition"),
        pytest.param(
            _set([*NOTIFY, "children", 0, "children", 1], "has_handler", "yes"), id="deep in a thread"
        ),
    ],
)
def test_the_definition_schema_rejects_a_malformed_tree(corrupt: Callable[[dict[str, Any]], None]) -> None:
    tree = copy.deepcopy(pf.to_json(Order().definition()))
    corrupt(tree)
    assert not DEFINITIONS.is_valid(tree)


@settings(max_examples=60, deadline=None)
@given(programs())
def test_to_json_of_any_valid_definition_matches_the_schema(program: Program) -> None:
    wf, _ = new_workflow(workflow_class(), program)
    tree = pf.to_json(wf.definition())
    assert schema_errors(DEFINITIONS, json.loads(json.dumps(tree))) == []


# -- STATE_SCHEMA ------------------------------------------------------------------


def stored(state: pf.State) -> Any:
    return json.loads(state.model_dump_json())


@pytest.mark.anyio
async def test_a_state_parked_on_a_wait_matches_the_state_schema() -> None:
    order = Order()
    await pf.resume(order, order.state, lambda kind: None)
    assert order.state.status == pf.WorkflowStatus.WAITING
    assert schema_errors(STATES, stored(order.state)) == []


@pytest.mark.anyio
async def test_a_finished_state_matches_the_state_schema() -> None:
    order = Order()
    await pf.resume(order, order.state, lambda kind: None)
    await pf.handle_callback(pf.CallbackRequest(name="deny"), order, order.state, None)
    await pf.resume(order, order.state, lambda kind: None)
    assert order.state.status == pf.WorkflowStatus.FINISHED
    assert schema_errors(STATES, stored(order.state)) == []


def _event(state: Any) -> Any:
    return state["threads"][0]["wait_events"][0]


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda s: s.update(status="SLEEPING"), id="unknown status"),
        pytest.param(lambda s: s.pop("id"), id="missing id"),
        pytest.param(lambda s: s.update(pc="seven"), id="pc not an integer"),
        pytest.param(lambda s: s.update(completed="reserve"), id="completed not a list"),
        pytest.param(lambda s: s["threads"][0].update(status="ASLEEP"), id="unknown thread status"),
        pytest.param(lambda s: s["threads"][0].pop("name"), id="thread without a name"),
        pytest.param(lambda s: _event(s).update(status="LOST"), id="unknown event status"),
        pytest.param(lambda s: _event(s)["req"].pop("name"), id="request without a name"),
    ],
)
@pytest.mark.anyio
async def test_a_corrupted_state_does_not_match_the_state_schema(corrupt: Callable[[Any], None]) -> None:
    order = Order()
    await pf.resume(order, order.state, lambda kind: None)
    state = stored(order.state)
    corrupt(state)
    assert not STATES.is_valid(state)


@settings(max_examples=30, deadline=None)
@given(programs(), st.lists(st.integers(0, 5), max_size=MAX_DELIVERIES))
def test_every_checkpoint_of_any_run_matches_the_state_schema(program: Program, choices: list[int]) -> None:
    wf, state = new_workflow(workflow_class(), program)
    store = Store(wf, state)
    anyio.run(drive, wf, state, store, choices)
    for snapshot in store.snapshots:
        assert schema_errors(STATES, json.loads(snapshot.state)) == [], snapshot.kind


# -- to_mermaid ----------------------------------------------------------------------

# What a line of the flowchart can be. Labels are quoted and hold no raw quote.
_NODE = re.compile(
    r'\s+(?P<id>[A-Za-z_][A-Za-z0-9_]*)(?P<open>[\[({/]+)"(?P<label>[^"]*)"(?P<close>[\])}/]+)'
)
_EDGE = re.compile(
    r'\s+(?P<src>[A-Za-z_]\w*) (?P<arrow>-->|-\.->)(?:\|"(?P<label>[^"]*)"\|)? (?P<dst>[A-Za-z_]\w*)'
)
_SUBGRAPH = re.compile(r'\s+subgraph (?P<id>[A-Za-z_]\w*)\["(?P<label>[^"]*)"\]')
_OTHER = re.compile(r"flowchart TD|\s+direction TB|\s+end|\s+classDef \w+ \S+|\s+class [\w,]+ \w+")
_ENTITIES = {"quot": '"', "amp": "&", "lt": "<", "gt": ">"}
# Markup (HTML, Markdown, entities, edge-label pipes, %% directives) must come as entity codes.
_SAFE_LABEL = re.compile(r"(?:[^\"<>&|`#%]|#\w+;)*")


def unescape(label: str) -> str:
    """A label as Mermaid shows it: ``#quot;``, ``#35;`` ... decoded.

    Fails on a label whose markup characters are not escaped.
    """
    assert _SAFE_LABEL.fullmatch(label), f"unescaped markup in label {label!r}"
    return re.sub(r"#(\w+);", lambda m: _ENTITIES.get(m[1]) or chr(int(m[1])), label)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    label: str
    dotted: bool


@dataclass
class Chart:
    """A parsed flowchart; every line of the text must be understood."""

    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """id -> (shape, label)"""
    edges: list[Edge] = field(default_factory=list)
    subgraphs: dict[str, list[str]] = field(default_factory=dict)
    """subgraph label -> the ids of the nodes declared in it"""
    classes: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Chart:
        chart = cls()
        lines = text.splitlines()
        assert lines[0] == "flowchart TD"
        open_groups: list[str] = []
        for line in lines:
            if m := _NODE.fullmatch(line):
                assert m["id"] not in chart.nodes, f"node {m['id']} declared twice"
                chart.nodes[m["id"]] = (m["open"] + m["close"], unescape(m["label"]))
                for group in open_groups:
                    chart.subgraphs[group].append(m["id"])
            elif m := _EDGE.fullmatch(line):
                chart.edges.append(Edge(m["src"], m["dst"], unescape(m["label"] or ""), m["arrow"] == "-.->"))
            elif m := _SUBGRAPH.fullmatch(line):
                open_groups.append(unescape(m["label"]))
                chart.subgraphs[open_groups[-1]] = []
            elif line.strip() == "end":
                open_groups.pop()
            elif line.lstrip().startswith("class "):
                _, ids, name = line.split()
                chart.classes[name] = set(ids.split(","))
            else:
                assert _OTHER.fullmatch(line), f"not a line of a flowchart: {line!r}"
        assert not open_groups
        for e in chart.edges:
            assert e.src in chart.nodes and e.dst in chart.nodes, f"edge to an undeclared node: {e}"
        return chart

    def id_of(self, label: str) -> str:
        (found,) = [i for i, (_, text) in self.nodes.items() if text == label]
        return found

    def labels(self) -> list[str]:
        return [text for _, text in self.nodes.values()]

    def out(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.src == node_id]

    def edge(self, src: str, label: str) -> Edge:
        (found,) = [e for e in self.out(src) if e.label == label]
        return found


def chart_of(definition: pf.Stmt, **kwargs: Any) -> Chart:
    return Chart.parse(pf.to_mermaid(definition, **kwargs))


def test_the_flowchart_runs_from_a_start_node_to_an_end_node() -> None:
    chart = chart_of(pf.S(pf.Step("only", nothing)))
    start, only, end = chart.id_of("start"), chart.id_of("only"), chart.id_of("end")
    assert chart.edges == [Edge(start, only, "", False), Edge(only, end, "", False)]


def test_an_empty_definition_goes_from_start_straight_to_the_end() -> None:
    chart = chart_of(pf.S())
    assert chart.edges == [Edge(chart.id_of("start"), chart.id_of("end"), "", False)]


def test_each_step_name_is_the_label_of_exactly_one_node() -> None:
    chart = chart_of(Order().definition())
    for name in ["reserve", "thank", "ship", "ship part", "try", "back off", "email"]:
        assert chart.labels().count(name) == 1, name


def test_each_event_of_a_wait_is_an_edge_from_the_wait_labelled_with_its_name() -> None:
    chart = chart_of(Order().definition())
    decision = chart.id_of("decision")
    assert sorted(e.label for e in chart.out(decision)) == ["approve", "deny"]
    assert chart.edge(decision, "approve").dst == chart.id_of("thank")


def test_a_switch_is_a_decision_with_an_edge_per_case_labelled_with_its_name() -> None:
    chart = chart_of(
        pf.S(
            pf.If(never_called, "big", pf.Step("ship", nothing)).elif_(
                never_called, "small", pf.Step("mail", nothing)
            )
        )
    )
    (decision,) = [e.dst for e in chart.out(chart.id_of("start"))]
    assert chart.nodes[decision][0] == "{}"
    assert chart.edge(decision, "big").dst == chart.id_of("ship")
    assert chart.edge(decision, "small").dst == chart.id_of("mail")


def test_a_switch_without_default_has_an_else_edge_past_it() -> None:
    chart = chart_of(pf.S(pf.If(never_called, "maybe", pf.Step("a", nothing)), pf.Step("after", nothing)))
    (decision,) = [e.dst for e in chart.out(chart.id_of("start"))]
    assert chart.edge(decision, "else").dst == chart.id_of("after")


def test_a_switch_with_a_default_has_no_else_edge() -> None:
    chart = chart_of(pf.S(pf.If(never_called, "maybe", pf.Step("a", nothing)).else_("otherwise")))
    (decision,) = [e.dst for e in chart.out(chart.id_of("start"))]
    assert sorted(e.label for e in chart.out(decision)) == ["maybe", "otherwise"]


def test_a_loop_is_a_decision_with_an_edge_into_its_body_and_an_exit_edge() -> None:
    chart = chart_of(
        pf.S(pf.For("again?", never_called, pf.Step("work", nothing)), pf.Step("after", nothing))
    )
    loop = chart.id_of("again?")
    assert chart.nodes[loop][0] == "{}"
    assert chart.edge(loop, "loop").dst == chart.id_of("work")
    assert chart.edge(loop, "exit").dst == chart.id_of("after")


def test_a_loop_has_a_back_edge_from_the_end_of_its_body() -> None:
    chart = chart_of(
        pf.S(pf.For("again?", never_called, pf.Step("first", nothing), pf.Step("last", nothing)))
    )
    assert Edge(chart.id_of("last"), chart.id_of("again?"), "", False) in chart.edges


def test_a_break_is_an_edge_out_of_the_loop() -> None:
    chart = chart_of(
        pf.S(
            pf.For(
                "again?", never_called, pf.Step("work", nothing), pf.If(never_called, "done?", pf.Break())
            ),
            pf.Step("after", nothing),
        )
    )
    breaks = [e for e in chart.edges if "break" in e.label]
    assert [(e.label, e.dst) for e in breaks] == [("done?: break", chart.id_of("after"))]


def test_a_continue_is_an_edge_back_to_the_loop_decision() -> None:
    chart = chart_of(
        pf.S(
            pf.For(
                "again?", never_called, pf.Step("work", nothing), pf.Continue(), pf.Step("skipped", nothing)
            )
        )
    )
    assert chart.edge(chart.id_of("work"), "continue").dst == chart.id_of("again?")


def test_a_return_is_an_edge_to_the_end_node() -> None:
    chart = chart_of(pf.S(pf.Step("a", nothing), pf.Return(), pf.Step("unreached", nothing)))
    assert chart.out(chart.id_of("a")) == [Edge(chart.id_of("a"), chart.id_of("end"), "", False)]


def test_a_go_forks_with_a_dotted_edge_into_a_subgraph_holding_its_thread() -> None:
    chart = chart_of(pf.S(pf.Go("notify", pf.S(pf.Step("email", nothing))), pf.Step("main goes on", nothing)))
    go = chart.id_of("notify")
    assert [(e.dst, e.dotted) for e in chart.out(go)] == [
        (chart.id_of("email"), True),
        (chart.id_of("main goes on"), False),
    ]
    assert chart.id_of("email") in chart.subgraphs["notify"]
    assert chart.id_of("main goes on") not in chart.subgraphs["notify"]


def test_a_return_in_a_thread_ends_that_thread_not_the_workflow() -> None:
    chart = chart_of(pf.S(pf.Go("worker", pf.S(pf.Step("job", nothing), pf.Return()))))
    (thread_end,) = [e.dst for e in chart.out(chart.id_of("job"))]
    ends = {i for i, (_, text) in chart.nodes.items() if text == "end"}
    assert thread_end in ends
    assert ends & set(chart.subgraphs["worker"]) == {thread_end}
    assert len(ends) == 2


def test_a_waitfor_is_a_node_on_the_path() -> None:
    chart = chart_of(pf.S(pf.WaitFor("all done", never_called), pf.Step("after", nothing)))
    assert chart.out(chart.id_of("all done")) == [
        Edge(chart.id_of("all done"), chart.id_of("after"), "", False)
    ]


@pytest.mark.parametrize(
    "name",
    [
        'say "hi"',
        "box [A] {B} (C)",
        "pipe | and ; semicolon",
        "<b>bold</b> & co",
        "#quot; is literal",
        "`markdown`",
        "%% not a comment",
        "pay %%{init: {'theme': 'forest'}}%% now",
        "end",
        "a --> b",
        "ünïcödé ✓",
    ],
)
def test_any_name_is_escaped_so_it_shows_as_written(name: str) -> None:
    chart = chart_of(pf.S(pf.Step(name, nothing), pf.Wait("wait", pf.On(name + "!", pf.Handler()))))
    (step,) = [e.dst for e in chart.out(chart.id_of("start"))]
    assert chart.nodes[step][1] == name
    assert [e.label for e in chart.out(chart.id_of("wait"))] == [name + "!"]


def test_a_line_break_in_a_name_becomes_a_space() -> None:
    chart = chart_of(pf.S(pf.Step("two\nlines", nothing)))
    assert "two lines" in chart.labels()


def test_to_mermaid_is_the_same_for_every_build_of_a_definition() -> None:
    assert pf.to_mermaid(Order().definition()) == pf.to_mermaid(Order().definition())


def test_without_highlight_no_classes_are_drawn() -> None:
    assert "class" not in pf.to_mermaid(Order().definition())


def test_highlight_gives_the_nodes_of_the_named_statements_their_classes() -> None:
    text = pf.to_mermaid(
        Order().definition(), highlight={"reserve": "done", "ship": "done", "decision": "parked"}
    )
    chart = Chart.parse(text)
    assert chart.classes == {
        "done": {chart.id_of("reserve"), chart.id_of("ship")},
        "parked": {chart.id_of("decision")},
    }
    assert re.search(r"^\s+classDef parked ", text, re.M)
    assert re.search(r"^\s+classDef done ", text, re.M)


def test_highlight_ignores_names_that_have_no_node() -> None:
    chart = chart_of(Order().definition(), highlight={"gone in this version": "done", "reserve": "done"})
    assert chart.classes == {"done": {chart.id_of("reserve")}}


@pytest.mark.parametrize("build", MISPLACED)
def test_to_mermaid_raises_definition_error_for_a_case_or_event_out_of_place(
    build: Callable[[], pf.Stmt],
) -> None:
    with pytest.raises(pf.DefinitionError, match="'stray'"):
        pf.to_mermaid(build())


@pytest.mark.parametrize("cls", ["two words", "", "x;y", "9lives"])
def test_highlight_rejects_a_class_that_is_not_a_mermaid_identifier(cls: str) -> None:
    with pytest.raises(pf.ExportError):
        pf.to_mermaid(Order().definition(), highlight={"reserve": cls})


@pytest.mark.parametrize("cls", ["end", "style", "class", "subgraph", "_self"])
def test_highlight_rejects_a_class_that_is_a_mermaid_keyword(cls: str) -> None:
    with pytest.raises(pf.ExportError, match=f"highlight\\['reserve'\\] = '{cls}' is a Mermaid keyword"):
        pf.to_mermaid(Order().definition(), highlight={"reserve": cls})


def test_to_mermaid_raises_definition_error_for_an_invalid_definition() -> None:
    with pytest.raises(pf.DefinitionError, match="outside a For"):
        pf.to_mermaid(pf.S(pf.Break()))


@settings(max_examples=60, deadline=None)
@given(programs())
def test_to_mermaid_of_any_valid_definition_is_a_well_formed_flowchart(program: Program) -> None:
    wf, _ = new_workflow(workflow_class(), program)
    steps = [s.name for s in _statements(wf.definition()) if isinstance(s, pf.Step)]
    chart = chart_of(wf.definition())
    for name in steps:
        assert chart.labels().count(name) == 1, name


def _statements(root: pf.Stmt) -> list[pf.Stmt]:
    found: list[pf.Stmt] = []
    pf.walk(root, found.append)
    return found
