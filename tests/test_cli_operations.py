"""procflow check, goto, edit, graph --instance and purge: run as a user runs them, on a SQLite file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import ok, procflow, seed, seeded_app

from procflow.cli.errors import CommandError
from procflow.cli.operations import parse_age

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


@pytest.fixture(scope="module")
def demo_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in which `procflow demo` ran once: order-004 is parked at decision."""
    folder = tmp_path_factory.mktemp("demo")
    ok(folder, "demo")
    return folder


@pytest.fixture
def demo(demo_once: Path, tmp_path: Path) -> Path:
    """A copy of the demo's database, for a test to change."""
    for file in demo_once.glob("procflow.db*"):
        shutil.copy(file, tmp_path / file.name)
    return tmp_path


# -- check ------------------------------------------------------------------------------------

TICKETS = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Ticket:
    def definition(self) -> pf.Section:
        return pf.S(pf.Step("open", lambda: None), pf.Wait({wait!r}, pf.OnEvent("close", lambda: "closed")))

engine = pf.Engine(pf.MemoryStore(), workflows=[Ticket])

async def seed(url: str, count: int) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Ticket]) as e:
        for n in range(count):
            await e.start(Ticket(), id=f"t-{{n + 1}}")
"""


@pytest.fixture
def tickets(tmp_path: Path) -> str:
    """Two tickets parked at 'triage' (tickets_v1), a finished one; tickets_v2 renames the Wait."""
    (tmp_path / "tickets_v1.py").write_text(TICKETS.format(wait="triage"))
    (tmp_path / "tickets_v2.py").write_text(TICKETS.format(wait="review"))
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    seed(tmp_path, "tickets_v1", url, 3)
    ok(tmp_path, "--db", url, "--app", "tickets_v1:engine", "send", "t-3", "close")
    return url


def test_check_exits_0_and_counts_the_fine_instances_when_every_position_remains(
    tmp_path: Path, tickets: str
) -> None:
    result = procflow(tmp_path, "--db", tickets, "--app", "tickets_v1:engine", "check")
    assert result.returncode == 0, result.stderr
    assert "Ticket: 2 in flight, 2 fine" in result.stdout
    assert "ok: all 2 in-flight instance(s) match the current definitions" in result.stdout


def test_check_exits_1_and_names_each_stranded_instance_thread_and_position(
    tmp_path: Path, tickets: str
) -> None:
    result = procflow(tmp_path, "--db", tickets, "--app", "tickets_v2:engine", "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "Ticket: 2 in flight, 0 fine, 2 would be stranded" in lines
    assert (
        "  t-1  thread _main_  at 'triage': parked on a Wait: expected a Wait by that name, "
        "the definition has nothing"
    ) in lines
    assert lines[-1].startswith("not safe: 2 of 2 in-flight instance(s) would be stranded")


def test_check_reports_an_unregistered_workflow_instead_of_failing(tmp_path: Path, tickets: str) -> None:
    result = procflow(tmp_path, "--db", tickets, "check")
    assert result.returncode == 1
    assert "t-1  workflow 'Ticket' is not registered (registered: DemoOrder)" in result.stdout


def test_an_apps_engine_gets_its_own_workflows_and_not_the_demos(tmp_path: Path, tickets: str) -> None:
    out = ok(tmp_path, "--db", tickets, "--app", "tickets_v1:engine", "check")
    assert "Ticket: 2 in flight, 2 fine" in out
    assert "DemoOrder" not in out


def test_check_of_a_workflow_that_is_not_registered_exits_1_naming_it(tmp_path: Path, tickets: str) -> None:
    result = procflow(tmp_path, "--db", tickets, "--app", "tickets_v1:engine", "check", "--workflow", "Tickt")
    assert result.returncode == 1
    assert "UnknownWorkflowError: workflow 'Tickt' is not registered (registered: Ticket)" in result.stderr


def test_check_of_an_empty_store_is_ok(tmp_path: Path) -> None:
    out = ok(tmp_path, "--db", "memory://", "check")
    assert "DemoOrder: no instances in flight" in out


# -- goto ---------------------------------------------------------------------------------------


def test_goto_moves_the_thread_runs_on_and_prints_where_it_is(demo: Path) -> None:
    out = ok(demo, "goto", "order-004", "--step", "reserve stock", "--who", "ann", "--why", "charge again")
    assert out.strip() == "order-004: WAITING, parked at decision(approve)"
    show = ok(demo, "show", "order-004")
    assert re.search(r"goto +reserve stock +_main_ +from decision by ann: charge again", show)
    assert len(re.findall(r"step +charge card", show)) == 2


def test_goto_with_no_run_leaves_the_thread_ready_to_run(demo: Path) -> None:
    out = ok(demo, "goto", "order-004", "--step", "charge card", "--why", "skip", "--no-run")
    assert out.strip() == "order-004: RESUMING"


def test_goto_records_the_os_user_when_who_is_not_given(demo: Path) -> None:
    result = procflow(demo, "goto", "order-004", "--step", "decision", "--why", "re-park", user="carol")
    assert result.returncode == 0, result.stderr
    assert "from decision by carol: re-park" in ok(demo, "show", "order-004")


def test_goto_a_statement_the_definition_lacks_exits_1_naming_it(demo: Path) -> None:
    result = procflow(demo, "goto", "order-004", "--step", "refund", "--why", "x")
    assert result.returncode == 1
    assert "DefinitionError" in result.stderr and "'refund'" in result.stderr


def test_goto_needs_a_reason(demo: Path) -> None:
    result = procflow(demo, "goto", "order-004", "--step", "decision")
    assert result.returncode == 2
    assert "--why" in result.stderr


def test_goto_with_a_blank_reason_exits_2(demo: Path) -> None:
    result = procflow(demo, "goto", "order-004", "--step", "decision", "--why", "")
    assert result.returncode == 2
    assert "--why: it is empty" in result.stderr


SWITCHED = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Shipment:
    carrier: str = "post"

    def definition(self) -> pf.Section:
        ship = {"post": pf.Step("post it", lambda: None)}[self.carrier]
        return pf.S(pf.Wait("packed", pf.OnEvent("pack", lambda: None)), ship)

engine = pf.Engine(pf.MemoryStore(), workflows=[Shipment])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Shipment]) as e:
        await e.start(Shipment(), id="s-1")
        await e.edit("s-1", {"carrier": "drone"}, who="ann", why="a carrier the definition lacks")
"""


@pytest.fixture
def switched(tmp_path: Path) -> tuple[str, ...]:
    """``--db``/``--app`` of a store whose instance s-1 has data its definition() raises KeyError on."""
    url = seeded_app(tmp_path, "shipments", SWITCHED)
    return ("--db", url, "--app", "shipments:engine")


DEFINITION_RAISED = (
    "procflow: CommandError: the definition() of instance 's-1' (Shipment) raised KeyError: 'drone'; "
    "fix the definition, or the data it uses (procflow edit), then try again\n"
)


def test_goto_of_an_instance_whose_definition_raises_exits_1_with_a_one_line_error(
    tmp_path: Path, switched: tuple[str, ...]
) -> None:
    result = procflow(tmp_path, *switched, "goto", "s-1", "--step", "packed", "--why", "x")
    assert result.returncode == 1
    assert result.stderr == DEFINITION_RAISED


JOBS = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Job:
    fail: bool = False
    spin: bool = False

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("prepare", lambda: None),
            pf.Step("work", self.work),
            pf.For("spin", lambda: self.spin, pf.S()),
            pf.Wait("review", pf.OnEvent("close", lambda: None)),
        )

    def work(self) -> None:
        if self.fail:
            raise RuntimeError("tool broke")

engine = pf.Engine(pf.MemoryStore(), workflows=[Job])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Job]) as e:
        await e.start(Job(), id="j-1")
"""


@pytest.fixture
def jobs(tmp_path: Path) -> tuple[str, ...]:
    """``--db``/``--app`` of a store whose job j-1 is parked at 'review'."""
    url = seeded_app(tmp_path, "jobs", JOBS)
    return ("--db", url, "--app", "jobs:engine")


def test_goto_whose_run_fails_a_step_exits_1_saying_which_step_failed(
    tmp_path: Path, jobs: tuple[str, ...]
) -> None:
    ok(tmp_path, *jobs, "edit", "j-1", "--set", "fail=true", "--why", "break it")
    result = procflow(tmp_path, *jobs, "goto", "j-1", "--step", "prepare", "--why", "work again")
    assert result.returncode == 1
    assert result.stdout == "j-1: FAILED (step 'work' failed after 1 attempt(s): RuntimeError: tool broke)\n"


def test_goto_whose_run_the_definition_cannot_continue_exits_1_saying_the_run_failed(
    tmp_path: Path, jobs: tuple[str, ...]
) -> None:
    ok(tmp_path, *jobs, "edit", "j-1", "--set", "spin=true", "--why", "loop forever")
    result = procflow(tmp_path, *jobs, "goto", "j-1", "--step", "work", "--why", "run on")
    assert result.returncode == 1
    assert result.stdout.startswith(
        "j-1: FAILED (the run failed: DefinitionError: an iteration of For 'spin'"
    )
    assert result.stdout.endswith("(fix the definition, then retry))\n")


# -- edit ---------------------------------------------------------------------------------------


def test_edit_sets_fields_from_json_and_records_who_and_why(demo: Path) -> None:
    sets = ["--set", "amount=99", "--set", 'item="lamp"']
    out = ok(demo, "edit", "order-004", *sets, "--who", "bob", "--why", "typo")
    assert out.splitlines() == [
        "order-004: WAITING, parked at decision(approve)",
        "  amount = 99",
        '  item = "lamp"',
    ]
    show = ok(demo, "show", "order-004")
    assert '"amount": 99' in show
    assert re.search(r"edit +amount, item +- +by bob: typo", show)


def test_edit_with_data_the_model_rejects_exits_1_and_changes_nothing(demo: Path) -> None:
    result = procflow(demo, "edit", "order-004", "--set", 'amount="lots"', "--why", "x")
    assert result.returncode == 1
    assert "PayloadError" in result.stderr and "amount" in result.stderr
    assert '"amount": 99' not in ok(demo, "show", "order-004")


def test_edit_with_a_value_that_is_not_json_says_how_to_quote_it(demo: Path) -> None:
    result = procflow(demo, "edit", "order-004", "--set", "item=lamp", "--why", "x")
    assert result.returncode == 1
    assert """quote a string as JSON: --set item='"lamp"'""" in result.stderr


def test_edit_of_an_unknown_field_exits_1_naming_it(demo: Path) -> None:
    result = procflow(demo, "edit", "order-004", "--set", "colour=1", "--why", "x")
    assert result.returncode == 1
    assert "colour" in result.stderr


# -- graph --------------------------------------------------------------------------------------


def test_graph_of_an_instance_marks_where_it_is_parked_and_which_steps_are_done(demo: Path) -> None:
    out = ok(demo, "graph", "--instance", "order-004")
    assert '    n1["reserve stock"]\n    n2["charge card"]\n    n3{{"decision"}}\n' in out
    assert "    class n1,n2 done\n    class n3 parked\n" in out


def test_graph_of_a_finished_instance_marks_every_step_it_ran(demo: Path) -> None:
    out = ok(demo, "graph", "--instance", "order-001")
    assert "class n1,n2,n4 done" in out
    assert "parked" not in out.split("classDef failed")[1]


def test_graph_of_an_instance_whose_definition_raises_exits_1_with_a_one_line_error(
    tmp_path: Path, switched: tuple[str, ...]
) -> None:
    result = procflow(tmp_path, *switched, "graph", "--instance", "s-1")
    assert result.returncode == 1
    assert result.stderr == DEFINITION_RAISED


SHAPES = """
import procflow as pf

class Hold:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("hold", pf.OnEvent("release", lambda: None)))
"""


def test_graph_of_a_workflow_class_prints_mermaid(tmp_path: Path) -> None:
    (tmp_path / "shapes.py").write_text(SHAPES)
    out = ok(tmp_path, "graph", "shapes:Hold")
    assert out.startswith("flowchart TD\n")
    assert "classDef" not in out


def test_graph_needs_a_workflow_or_an_instance(tmp_path: Path) -> None:
    result = procflow(tmp_path, "graph")
    assert result.returncode == 1
    assert "graph needs a MODULE:WORKFLOW, or --instance ID" in result.stderr


@needs_dot
def test_graph_svg_writes_an_svg_of_the_instance_with_graphviz(demo: Path) -> None:
    dot_dir = str(Path(shutil.which("dot") or "").parent)
    args = ["graph", "--instance", "order-004", "--svg", "order.svg"]
    result = procflow(demo, *args, path=f"{dot_dir}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote order.svg"
    svg = (demo / "order.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and 'class="node parked"' in svg


def test_graph_svg_into_a_folder_that_does_not_exist_exits_1_with_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "shapes.py").write_text(SHAPES)
    result = procflow(tmp_path, "graph", "shapes:Hold", "--svg", "charts/hold.svg")
    assert result.returncode == 1
    assert result.stderr == (
        "procflow: CommandError: --svg charts/hold.svg: there is no folder charts; make it first, "
        "or write elsewhere\n"
    )


def test_graph_svg_without_graphviz_says_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    (tmp_path / "shapes.py").write_text(SHAPES)
    result = procflow(tmp_path, "graph", "shapes:Hold", "--svg", "x.svg", path=str(empty))
    assert result.returncode == 1
    assert "--svg needs Graphviz's dot on PATH; install graphviz" in result.stderr
    assert not (tmp_path / "x.svg").exists()


# -- purge --------------------------------------------------------------------------------------
# The demo's store holds order-001 and order-002 FINISHED, order-003 CANCELLED, order-004 WAITING.


def test_purge_removes_the_finished_and_cancelled_instances_older_than_the_age_and_says_how_many(
    demo: Path,
) -> None:
    assert ok(demo, "purge", "--older-than", "30d").startswith("removed 0 finished or cancelled instance(s)")
    out = ok(demo, "purge", "--older-than", "0")
    assert out.startswith("removed 3 finished or cancelled instance(s) last written before ")
    assert [line.split()[0] for line in ok(demo, "list").splitlines()[2:]] == ["order-004"]
    assert "no instance has id or correlation id 'order-001'" in procflow(demo, "show", "order-001").stderr


def test_purge_prints_how_many_are_gone_after_each_full_batch(demo: Path) -> None:
    result = procflow(demo, "purge", "--older-than", "0s", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["procflow purge: 2 removed so far"]
    assert result.stdout.startswith("removed 3 ")


def test_purge_dry_run_counts_what_it_would_remove_and_removes_nothing(demo: Path) -> None:
    out = ok(demo, "purge", "--older-than", "0", "--dry-run")
    assert out.startswith("would remove 3 finished or cancelled instance(s) last written before ")
    assert len(ok(demo, "list").splitlines()[2:]) == 4


@pytest.mark.parametrize("age", ["3x", "-1d", "30 days", "d", "", "1e3"])
def test_purge_refuses_an_age_it_cannot_read_and_removes_nothing(demo: Path, age: str) -> None:
    result = procflow(demo, "purge", f"--older-than={age}")
    assert result.returncode == 2
    assert "is not an age; write seconds, or a number with s, m, h or d" in result.stderr
    assert len(ok(demo, "list").splitlines()[2:]) == 4


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("0", 0),
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43200),
        ("30d", 2_592_000),
        ("1.5d", 129_600),
    ],
)
def test_an_age_is_seconds_or_a_number_with_s_m_h_or_d(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


def test_an_age_in_another_unit_is_a_command_error_listing_the_forms() -> None:
    with pytest.raises(CommandError, match=r"'2w' is not an age; .* 3600, 90m, 12h, 30d"):
        parse_age("2w")
