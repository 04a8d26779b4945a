"""The `procflow` command, run as a user runs it: in a subprocess, on a SQLite file."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import ok, procflow, seed, seeded_app

import procflow as pf


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in which `procflow demo` ran once."""
    folder = tmp_path_factory.mktemp("demo")
    result = procflow(folder, "demo")
    assert result.returncode == 0, result.stderr
    return folder


def test_demo_parks_approves_denies_and_prints_every_instance(demo_dir: Path) -> None:
    out = procflow(demo_dir, "list").stdout
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[2:]}
    assert rows == {
        "order-001": "FINISHED",
        "order-002": "FINISHED",
        "order-003": "CANCELLED",
        "order-004": "WAITING",
    }
    assert (demo_dir / "procflow.db").exists()


def test_demo_shows_the_compensation_of_the_denied_order_newest_step_first(tmp_path: Path) -> None:
    out = procflow(tmp_path, "demo").stdout
    refund = out.index("order-003: compensate → refunded")
    release = out.index("order-003: compensate → released")
    assert refund < release


def test_a_second_demo_run_continues_the_order_the_first_left_parked(tmp_path: Path) -> None:
    procflow(tmp_path, "demo")
    second = procflow(tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    assert "order-004: approved by night shift (it was parked by the previous run)" in second.stdout
    assert "order-008" in second.stdout


def test_demo_on_another_db_suggests_next_commands_that_use_it(tmp_path: Path) -> None:
    out = ok(tmp_path, "--db", "sqlite:///my orders.db", "demo")
    hint = next(
        line.strip() for line in out.splitlines() if line.strip().startswith("procflow") and " show " in line
    )
    assert hint == "procflow --db 'sqlite:///my orders.db' show order-004"
    assert "order-004" in ok(tmp_path, *shlex.split(hint)[1:]).splitlines()[0]


def test_demo_on_an_apps_store_suggests_next_commands_with_that_store(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(
        "import procflow as pf\nengine = pf.Engine(pf.SQLiteStore('shop.db'))\n"
    )
    out = ok(tmp_path, "--app", "shop:engine", "demo")
    assert "  procflow --db sqlite:///shop.db show order-004\n" in out


def test_demo_on_the_default_db_suggests_next_commands_without_db(tmp_path: Path) -> None:
    out = ok(tmp_path, "--db", "sqlite:///procflow.db", "demo")
    assert "  procflow show order-004\n" in out


def test_show_prints_where_an_instance_is_parked_and_its_history(demo_dir: Path) -> None:
    out = procflow(demo_dir, "show", "order-004").stdout
    assert "parked at       decision(approve)" in out
    assert "accepts         approve" in out
    assert "step     reserve stock" in out


def test_send_delivers_an_event_by_correlation_id_and_prints_the_reply(tmp_path: Path) -> None:
    procflow(tmp_path, "demo")
    result = procflow(tmp_path, "send", "web-order-004", "approve", json.dumps({"approver": "cli"}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0]) == "approved by cli"
    assert "order-004: FINISHED" in result.stdout


def test_send_with_a_bad_payload_exits_1_with_the_typed_error(demo_dir: Path) -> None:
    result = procflow(demo_dir, "send", "order-004", "approve", '{"approver": 7}')
    assert result.returncode == 1
    assert "PayloadError" in result.stderr


def test_send_to_an_unknown_instance_exits_1_and_names_it(demo_dir: Path) -> None:
    result = procflow(demo_dir, "send", "order-999", "approve", "{}")
    assert result.returncode == 1
    assert "InstanceNotFound" in result.stderr and "order-999" in result.stderr


def test_cancel_with_compensate_prints_the_new_status_and_reason(tmp_path: Path) -> None:
    procflow(tmp_path, "demo")
    result = procflow(tmp_path, "cancel", "order-004", "--reason", "out of stock", "--compensate")
    assert result.returncode == 0, result.stderr
    assert "order-004: CANCELLED (out of stock)" in result.stdout


def test_cancel_with_a_blank_reason_exits_2_and_cancels_nothing(demo_dir: Path) -> None:
    result = procflow(demo_dir, "cancel", "order-004", "--reason", " ")
    assert result.returncode == 2
    assert "--reason: it is empty" in result.stderr
    assert "WAITING" in procflow(demo_dir, "show", "order-004").stdout


def test_send_repeated_with_its_idempotency_key_prints_the_first_reply_and_runs_nothing(
    tmp_path: Path,
) -> None:
    procflow(tmp_path, "demo")
    send = ("send", "order-004", "approve", json.dumps({"approver": "cli"}), "--idempotency-key", "mail-17")
    first, repeat = ok(tmp_path, *send), ok(tmp_path, *send)
    assert json.loads(first.splitlines()[0]) == json.loads(repeat.splitlines()[0]) == "approved by cli"
    history = [line.split()[2:4] for line in ok(tmp_path, "show", "order-004").splitlines()]
    assert history.count(["event", "approve"]) == 1


REPLYING = """
from dataclasses import dataclass
from datetime import date
from pydantic import BaseModel
import procflow as pf

class Receipt(BaseModel):
    approved: bool
    by: str
    on: date

@dataclass
class Claim:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("review", pf.OnEvent("approve", self.approve)))

    def approve(self) -> Receipt:
        return Receipt(approved=True, by="ann", on=date(2030, 1, 2))

engine = pf.Engine(pf.MemoryStore(), workflows=[Claim])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Claim]) as e:
        await e.start(Claim(), id="c-1")
"""


def test_send_prints_a_model_reply_as_json_as_a_repeat_with_its_key_does(tmp_path: Path) -> None:
    url = seeded_app(tmp_path, "claims", REPLYING)
    send = ("--db", url, "--app", "claims:engine", "send", "c-1", "approve", "--idempotency-key", "k-1")
    first, repeat = ok(tmp_path, *send).splitlines()[0], ok(tmp_path, *send).splitlines()[0]
    assert first == '{"approved": true, "by": "ann", "on": "2030-01-02"}'
    assert repeat == first


def test_send_with_a_blank_idempotency_key_exits_2_and_delivers_nothing(demo_dir: Path) -> None:
    payload = json.dumps({"approver": "cli"})
    result = procflow(demo_dir, "send", "order-004", "approve", payload, "--idempotency-key", "")
    assert result.returncode == 2
    assert "--idempotency-key: it is empty" in result.stderr
    assert "WAITING" in procflow(demo_dir, "show", "order-004").stdout


def test_resume_of_a_parked_instance_says_where_it_is_parked(demo_dir: Path) -> None:
    assert ok(demo_dir, "resume", "order-004").strip() == "order-004: WAITING (parked at decision(approve))"


def test_resume_delivers_an_overdue_timer_and_prints_the_new_status(tmp_path: Path) -> None:
    url = seed_hold(tmp_path)
    time.sleep(0.4)  # the timer falls due; no worker runs
    out = ok(tmp_path, "--db", url, "--app", "holdapp:engine", "resume", "h-1")
    assert out.strip() == "h-1: FINISHED"


CRASHING = """
import os
from dataclasses import dataclass
import procflow as pf

@dataclass
class Import:
    loaded: bool = False

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("upload", pf.OnEvent("uploaded", lambda: None)), pf.Step("load", self.load))

    def load(self) -> None:
        if not os.path.exists("crashed"):
            open("crashed", "w").close()
            os._exit(3)  # the process dies in the middle of the step
        self.loaded = True

engine = pf.Engine(pf.MemoryStore(), workflows=[Import])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Import]) as e:
        await e.start(Import(), id="i-1")
        await e.send("i-1", "uploaded")  # committed, then the step runs and the process dies
"""


def seed_dead_import(tmp_path: Path, source: str = CRASHING) -> str:
    """A store whose instance i-1 was left RESUMING: its process died in the middle of step "load"."""
    (tmp_path / "importer.py").write_text(source)
    url = f"sqlite:///{tmp_path / 'import.db'}"
    code = f"import anyio, importer; anyio.run(importer.seed, {url!r})"
    died = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert died.returncode == 3, died.stderr
    return url


def test_recover_resumes_an_instance_a_dead_process_left_running_and_names_it(tmp_path: Path) -> None:
    app = ("--db", seed_dead_import(tmp_path), "--app", "importer:engine")
    assert "RESUMING" in ok(tmp_path, *app, "show", "i-1").splitlines()[0]
    assert ok(tmp_path, *app, "recover").splitlines() == ["i-1: FINISHED", "resumed 1 instance(s)"]
    assert "FINISHED" in ok(tmp_path, *app, "show", "i-1").splitlines()[0]


def test_recover_exits_1_when_a_step_it_ran_failed(tmp_path: Path) -> None:
    url = seed_dead_import(tmp_path, CRASHING.replace("self.loaded = True", "raise OSError('disk full')"))
    result = procflow(tmp_path, "--db", url, "--app", "importer:engine", "recover")
    assert result.returncode == 1
    failed = "i-1: FAILED (step 'load' failed after 1 attempt(s): OSError: disk full)"
    assert result.stdout.splitlines() == [failed, "resumed 1 instance(s)"]


def test_recover_with_nothing_left_running_resumes_nothing(demo_dir: Path) -> None:
    assert ok(demo_dir, "recover").strip() == "resumed 0 instance(s)"


ORDERS = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Order:
    amount: str = "ten"

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("decision", pf.OnEvent("approve", lambda: None)))

engine = pf.Engine(pf.MemoryStore(), workflows=[Order])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Order]) as e:
        await e.start(Order(), id="o-1")
"""


def test_list_shows_the_error_of_a_parked_row_whose_data_no_longer_loads(tmp_path: Path) -> None:
    url = seeded_app(tmp_path, "orders", ORDERS)
    (tmp_path / "orders.py").write_text(ORDERS.replace('amount: str = "ten"', "amount: int = 10"))

    (row,) = ok(tmp_path, "--db", url, "--app", "orders:engine", "list").splitlines()[2:]

    assert row.split()[:2] == ["o-1", "Order"]
    assert "decision(approve); stored data cannot be loaded: ValidationError" in row


def test_list_filters_by_status(demo_dir: Path) -> None:
    out = procflow(demo_dir, "list", "--status", "CANCELLED").stdout
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["order-003"]


def test_list_takes_a_status_in_any_case(demo_dir: Path) -> None:
    out = procflow(demo_dir, "list", "--status", "cancelled").stdout
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["order-003"]


def test_list_refuses_a_status_that_does_not_exist(demo_dir: Path) -> None:
    result = procflow(demo_dir, "list", "--status", "WAITNG")
    assert result.returncode == 2
    assert "'WAITNG' is not a status; use one of RESUMING, WAITING" in result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["worker", "--batch", "0"], "argument --batch: 0 is below 1"),
        (["worker", "--poll", "-1"], "argument --poll: -1 is not above 0"),
        (["list", "--limit", "-1"], "argument --limit: -1 is below 1"),
        (["serve", "--port", "65536"], "argument --port: 65536 is not a port; use 1 to 65535"),
        (["serve", "--port", "-1"], "argument --port: -1 is not a port; use 1 to 65535"),
    ],
    ids=["batch", "poll", "limit", "port above 65535", "negative port"],
)
def test_an_option_out_of_range_is_refused_before_anything_runs(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    result = procflow(tmp_path, *args)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert not (tmp_path / "procflow.db").exists()


def test_db_may_follow_the_commands_name(demo_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{demo_dir / 'procflow.db'}"
    out = procflow(tmp_path, "list", "--status", "CANCELLED", "--db", url).stdout
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["order-003"]


@pytest.mark.parametrize("command", [["list"], ["show", "order-001"], ["check"]], ids=lambda c: c[0])
def test_a_command_that_reads_instances_refuses_a_sqlite_file_that_does_not_exist(
    tmp_path: Path, command: list[str]
) -> None:
    result = procflow(tmp_path, "--db", "sqlite:///typo.db", *command)
    assert result.returncode == 1
    assert "there is no SQLite database at typo.db" in result.stderr
    assert not (tmp_path / "typo.db").exists()


def test_a_missing_sqlite_file_is_refused_whatever_the_case_of_its_scheme(
    tmp_path: Path,
) -> None:
    result = procflow(tmp_path, "--db", "SQLite:///typo.db", "list")
    assert result.returncode == 1
    assert "there is no SQLite database at typo.db" in result.stderr
    assert not (tmp_path / "typo.db").exists()


def test_a_command_refuses_the_sqlite_file_of_an_app_engine_that_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "fileapp.py").write_text(
        "import procflow as pf\nengine = pf.Engine(pf.SQLiteStore('elsewhere.db'), workflows=[])\n"
    )
    result = procflow(tmp_path, "--app", "fileapp:engine", "list")
    assert result.returncode == 1
    assert "there is no SQLite database at elsewhere.db" in result.stderr
    assert not (tmp_path / "elsewhere.db").exists()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param(
            "class Purchase:\n    def __init__(self, item: str) -> None: ...\n",
            "--app 'badapp:Purchase' is the class Purchase, not a procflow.Engine",
            id="a class",
        ),
        pytest.param(
            "def Purchase():\n    raise RuntimeError('no config')\n",
            "--app 'badapp:Purchase': calling it for the engine raised RuntimeError: no config",
            id="a function that raises",
        ),
        pytest.param(
            "raise RuntimeError('no config')\n",
            "importing 'badapp' for --app raised RuntimeError: no config",
            id="a module that raises",
        ),
    ],
)
def test_an_app_that_yields_no_engine_exits_1_with_a_one_line_error(
    tmp_path: Path, source: str, error: str
) -> None:
    (tmp_path / "badapp.py").write_text(source)
    result = procflow(tmp_path, "--app", "badapp:Purchase", "list")
    assert result.returncode == 1
    assert error in result.stderr
    assert "Traceback" not in result.stderr


def test_send_of_a_payload_that_is_not_json_says_how_to_quote_a_string(demo_dir: Path) -> None:
    result = procflow(demo_dir, "send", "order-004", "approve", "ann")
    assert result.returncode == 1
    assert "the payload is not valid JSON" in result.stderr and "'\"ann\"'" in result.stderr


def test_an_unknown_workflow_without_app_says_to_pass_app(tmp_path: Path, failed: str) -> None:
    result = procflow(tmp_path, "--db", failed, "show", "c-1")
    assert result.returncode == 1
    assert "UnknownWorkflowError" in result.stderr
    assert "pass --app module:engine to register your workflow classes" in result.stderr


def test_version_prints_the_packages_version(tmp_path: Path) -> None:
    assert procflow(tmp_path, "--version").stdout.strip() == f"procflow {pf.__version__}"


def test_a_commands_help_says_what_it_does(tmp_path: Path) -> None:
    assert "start, approve and deny demo orders" in procflow(tmp_path, "demo", "--help").stdout


def test_graph_prints_a_mermaid_flowchart_of_a_workflow_class(tmp_path: Path) -> None:
    result = procflow(tmp_path, "graph", "procflow.cli.demo:DemoOrder")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart")
    assert '"reserve stock"' in result.stdout


GRAPHED = """
from dataclasses import dataclass
from pydantic import BaseModel
import procflow as pf

@dataclass
class Needs:
    item: str
    count: int

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("pack " + self.item * self.count + "item", self.pack))

    def pack(self) -> None:
        pass

@dataclass
class Broken:
    def definition(self) -> pf.Section:
        raise RuntimeError("boom")

class Ticket(BaseModel):
    title: str

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("file " + self.title + "ticket", lambda: None))

def unconfigured() -> Needs:
    raise RuntimeError("no config")
"""


def test_graph_draws_a_class_that_needs_arguments_from_zero_values(tmp_path: Path) -> None:
    (tmp_path / "graphed.py").write_text(GRAPHED)
    result = procflow(tmp_path, "graph", "graphed:Needs")
    assert result.returncode == 0, result.stderr
    assert '"pack item"' in result.stdout


def test_graph_draws_a_pydantic_model_that_needs_fields_from_zero_values(tmp_path: Path) -> None:
    (tmp_path / "graphed.py").write_text(GRAPHED)
    result = procflow(tmp_path, "graph", "graphed:Ticket")
    assert result.returncode == 0, result.stderr
    assert '"file ticket"' in result.stdout


def test_graph_of_a_function_that_raises_exits_1_with_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "graphed.py").write_text(GRAPHED)
    result = procflow(tmp_path, "graph", "graphed:unconfigured")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "procflow: CommandError: graph 'graphed:unconfigured': calling it for a workflow raised "
        "RuntimeError: no config"
    )
    assert "Traceback" not in result.stderr


def test_graph_of_a_definition_that_raises_exits_1_with_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "graphed.py").write_text(GRAPHED)
    result = procflow(tmp_path, "graph", "graphed:Broken")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "procflow: CommandError: graphed:Broken.definition() raised RuntimeError: boom"
    )
    assert "Traceback" not in result.stderr


def test_an_app_registers_its_workflow_classes_and_db_selects_the_store(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "from dataclasses import dataclass\n"
        "import procflow as pf\n"
        "@dataclass\n"
        "class Ticket:\n"
        "    def definition(self) -> pf.Section:\n"
        "        return pf.S(pf.Wait('triage', pf.OnEvent('close', lambda: 'closed')))\n"
        "engine = pf.Engine(pf.MemoryStore(), workflows=[Ticket])\n"
        "async def seed(url: str) -> None:\n"
        "    async with pf.Engine(pf.open_store(url), workflows=[Ticket]) as e:\n"
        "        await e.start(Ticket(), id='t-1')\n"
    )
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    seed(tmp_path, "myapp", url)
    result = procflow(tmp_path, "--db", url, "--app", "myapp:engine", "send", "t-1", "close")
    assert result.returncode == 0, result.stderr
    assert "t-1: FINISHED" in result.stdout


BESIDE = """
import os
import sys
from dataclasses import dataclass
import procflow as pf

@dataclass
class Lookup:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("asked", pf.OnEvent("ask", self.ask), pf.OnEvent("count", self.count)))

    def ask(self) -> str:
        import answers  # a module beside the app, imported only when the event comes

        return answers.ANSWER

    def count(self) -> int:
        return sys.path.count(os.getcwd())

engine = pf.Engine(pf.SQLiteStore("lookup.db"), workflows=[Lookup])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Lookup]) as e:
        await e.start(Lookup(), id="l-1")
"""


@pytest.fixture
def beside(tmp_path: Path) -> Path:
    """A folder with an app (lookup.py) whose handler imports answers.py from beside it; l-1 waits."""
    (tmp_path / "lookup.py").write_text(BESIDE)
    (tmp_path / "answers.py").write_text("ANSWER = 'forty-two'\n")
    seed(tmp_path, "lookup", f"sqlite:///{tmp_path / 'lookup.db'}")
    return tmp_path


def test_a_handler_imports_a_module_beside_the_app_while_the_command_runs(beside: Path) -> None:
    out = ok(beside, "--app", "lookup:engine", "send", "l-1", "ask")
    assert json.loads(out.splitlines()[0]) == "forty-two"


@pytest.mark.parametrize("as_module", [False, True], ids=["procflow", "python -m procflow"])
def test_the_apps_folder_is_on_the_import_path_once(beside: Path, as_module: bool) -> None:
    result = procflow(beside, "--app", "lookup:engine", "send", "l-1", "count", as_module=as_module)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0]) == 1


OBSERVED = """
import sys
from dataclasses import dataclass
import procflow as pf

@dataclass
class Ticket:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("triage", pf.OnEvent("close", lambda: "closed")),
            pf.Step("archive", lambda: None),
            pf.Step("notify", lambda: None),
        )

def tell(event: pf.Observed) -> None:
    print(f"observed {event.kind} {event.name}", file=sys.stderr)

engine = pf.Engine(pf.SQLiteStore("app.db"), workflows=[Ticket], observers=[tell])
limited = pf.Engine(pf.MemoryStore(), workflows=[Ticket], max_transitions=2)

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Ticket]) as e:
        await e.start(Ticket(), id="t-1")
"""


@pytest.mark.parametrize("store", ["--db", "the app's own store"])
def test_an_apps_engine_keeps_its_observers_on_either_store(tmp_path: Path, store: str) -> None:
    (tmp_path / "observed.py").write_text(OBSERVED)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    seed(tmp_path, "observed", url)
    db = ("--db", url) if store == "--db" else ()
    result = procflow(tmp_path, *db, "--app", "observed:engine", "send", "t-1", "close")
    assert result.returncode == 0, result.stderr
    assert "observed step archive" in result.stderr


def test_an_apps_engine_keeps_its_limits_on_the_db_store(tmp_path: Path) -> None:
    (tmp_path / "observed.py").write_text(OBSERVED)
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    seed(tmp_path, "observed", url)
    result = procflow(tmp_path, "--db", url, "--app", "observed:limited", "send", "t-1", "close")
    assert "more than 2 transitions" in result.stdout + result.stderr


FAILING = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Charge:
    def definition(self) -> pf.Section:
        return pf.S(pf.Step("charge", self.charge))

    def charge(self) -> None:
        raise ConnectionError("card service down")

engine = pf.Engine(pf.MemoryStore(), workflows=[Charge])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Charge]) as e:
        try:
            await e.start(Charge(), id="c-1")
        except pf.StepError:
            pass
"""


@pytest.fixture
def failed(tmp_path: Path) -> str:
    """A store whose instance c-1 is FAILED: its step raised and has no retry policy."""
    url = seeded_app(tmp_path, "failing", FAILING)
    return url


BUFFERING = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Parcel:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("packed", pf.OnEvent("pack", lambda: None)),
            pf.Wait("payment", pf.OnEvent("paid", lambda: "thanks", buffer=True)),
        )

engine = pf.Engine(pf.MemoryStore(), workflows=[Parcel])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Parcel]) as e:
        await e.start(Parcel(), id="p-1")
"""


def test_send_of_an_event_that_is_buffered_says_so(tmp_path: Path) -> None:
    (tmp_path / "buffering.py").write_text(BUFFERING)
    url = f"sqlite:///{tmp_path / 'parcels.db'}"
    seed(tmp_path, "buffering", url)
    out = ok(tmp_path, "--db", url, "--app", "buffering:engine", "send", "p-1", "paid")
    assert out.startswith("buffered: no thread is parked on 'paid' yet; it is delivered once one is")
    assert "p-1: WAITING" in out


def test_show_of_a_failed_instance_says_which_step_failed_and_why(tmp_path: Path, failed: str) -> None:
    out = procflow(tmp_path, "--db", failed, "--app", "failing:engine", "show", "c-1").stdout
    assert (
        "retries         step 'charge' failed after 1 attempt(s): ConnectionError: card service down" in out
    )


def show_of_a_two_line_failure(tmp_path: Path) -> list[str]:
    """The lines `procflow show` prints of c-1, FAILED by "ConnectionError: card service down" and a
    second line, "since 09:00"."""
    (tmp_path / "failing.py").write_text(FAILING.replace('down")', 'down\\nsince 09:00")'))
    url = f"sqlite:///{tmp_path / 'failing.db'}"
    seed(tmp_path, "failing", url)
    return ok(tmp_path, "--db", url, "--app", "failing:engine", "show", "c-1").splitlines()


def test_show_continues_a_history_detail_of_several_lines_under_its_column(tmp_path: Path) -> None:
    lines = show_of_a_two_line_failure(tmp_path)
    row = next(n for n, line in enumerate(lines) if "step_failed" in line)
    assert lines[row + 1] == " " * lines[row].index("ConnectionError") + "since 09:00"


def test_show_continues_a_failure_of_several_lines_under_its_field(tmp_path: Path) -> None:
    lines = show_of_a_two_line_failure(tmp_path)
    retries = next(n for n, line in enumerate(lines) if line.startswith("  retries "))
    assert lines[retries + 1] == " " * 18 + "since 09:00"


def test_a_retry_whose_step_fails_again_exits_1_saying_so(tmp_path: Path, failed: str) -> None:
    result = procflow(tmp_path, "--db", failed, "--app", "failing:engine", "retry", "c-1")
    assert result.returncode == 1
    assert result.stdout.startswith("c-1: FAILED (step 'charge' failed after ")


LOOPING = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Poll:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait("ready", pf.OnEvent("go", lambda: None)),
            pf.For("poll", True, pf.S()),
        )

engine = pf.Engine(pf.MemoryStore(), workflows=[Poll])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Poll]) as e:
        await e.start(Poll(), id="p-1")
        await e.send("p-1", "go")
"""


def test_show_of_an_instance_its_definition_failed_says_why_and_what_to_do(tmp_path: Path) -> None:
    url = seeded_app(tmp_path, "looping", LOOPING)
    out = procflow(tmp_path, "--db", url, "--app", "looping:engine", "show", "p-1").stdout
    assert "retries         the run failed: DefinitionError: " in out
    assert "For 'poll'" in out and "(fix the definition, then retry)" in out


CANCEL_FAILING = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Trip:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("flight", lambda: None, compensate=self.cancel_flight),
            pf.Step("hotel", lambda: None, compensate=lambda: None),
            pf.Wait("confirmation", pf.OnEvent("confirm", lambda: None)),
        )

    def cancel_flight(self) -> None:
        raise ConnectionError("airline down")

engine = pf.Engine(pf.MemoryStore(), workflows=[Trip])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Trip]) as e:
        await e.start(Trip(), id="t-1")
        try:
            await e.cancel("t-1", reason="plans changed", compensate=True)
        except pf.StepError:
            pass
"""


def test_show_of_an_instance_whose_cancel_was_cut_short_says_how_to_finish_it(tmp_path: Path) -> None:
    url = seeded_app(tmp_path, "trips", CANCEL_FAILING)
    out = ok(tmp_path, "--db", url, "--app", "trips:engine", "show", "t-1")
    assert "FAILED" in out.splitlines()[0]
    assert "reason          plans changed (cancel cut short: cancel or retry finishes it)" in out
    assert "the compensation of step 'flight' failed: ConnectionError: airline down" in out


HOLDING = """
from dataclasses import dataclass
import procflow as pf

@dataclass
class Hold:
    expired: bool = False

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("hold", pf.On("expired", pf.Timer(after=0.3), pf.Step("expire", self.expire))))

    def expire(self) -> None:
        self.expired = True

engine = pf.Engine(pf.MemoryStore(), workflows=[Hold])
unobserved = pf.Engine(pf.MemoryStore(), workflows=[Hold], observers=[])

async def seed(url: str) -> None:
    async with pf.Engine(pf.open_store(url), workflows=[Hold]) as e:
        await e.start(Hold(), id="h-1")
"""


def seed_hold(tmp_path: Path) -> str:
    """A store whose instance h-1 waits on a timer due 0.3 s after it was seeded."""
    (tmp_path / "holdapp.py").write_text(HOLDING)
    url = f"sqlite:///{tmp_path / 'hold.db'}"
    seed(tmp_path, "holdapp", url)
    return url


def run_worker_until_finished(tmp_path: Path, *options: str, app: str = "holdapp:engine") -> str:
    """Run `procflow worker` on the ``app`` engine until it delivered a timer, then SIGTERM it; its stderr."""
    url = seed_hold(tmp_path)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procflow",
            "--db",
            url,
            "--app",
            app,
            "worker",
            "--poll",
            ".05",
            *options,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = ""
        while time.monotonic() < deadline and "FINISHED" not in status:
            time.sleep(0.2)
            status = procflow(tmp_path, "--db", url, "--app", "holdapp:engine", "list").stdout
        assert "FINISHED" in status
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    return err


def test_worker_delivers_a_due_timer_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    assert "SIGTERM, stopping" in run_worker_until_finished(tmp_path)


def test_worker_prints_each_transition_as_it_happens(tmp_path: Path) -> None:
    assert "Hold h-1 step expire [_main_]" in run_worker_until_finished(tmp_path)


def test_worker_prints_each_transition_also_for_an_app_engine_without_observers(tmp_path: Path) -> None:
    assert "Hold h-1 step expire [_main_]" in run_worker_until_finished(tmp_path, app="holdapp:unobserved")


def test_a_quiet_worker_prints_no_transition(tmp_path: Path) -> None:
    assert "Hold h-1" not in run_worker_until_finished(tmp_path, "--quiet")
