"""examples/order_json_file.py: each command runs in its own process, from the JSON file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import procflow as pf

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "order_json_file.py"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(cwd: Path, *args: str) -> str:
    result = run(cwd, *args)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def saved(path: Path) -> tuple[dict[str, Any], pf.State]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc["workflow"], pf.State.model_validate(doc["state"])


def checkpoints(output: str) -> list[str]:
    return [line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith("  checkpoint ")]


@pytest.fixture
def started(tmp_path: Path) -> Path:
    ok(tmp_path, "start", "order.json", "--id", "o-42", "--item", "book", "--item", "lamp")
    return tmp_path / "order.json"


def test_start_runs_until_the_order_parks_on_the_decision(tmp_path: Path) -> None:
    out = ok(tmp_path, "start", "order.json", "--id", "o-42", "--item", "book")
    assert "order o-42 is WAITING" in out
    assert "main thread parked at Wait 'decision', waiting for: approve, deny" in out


def test_start_saves_the_workflow_data_and_state_to_the_file(started: Path) -> None:
    data, state = saved(started)
    assert data["order_id"] == "o-42"
    assert data["reserved"] == ["book", "lamp"]
    assert state.status == pf.WorkflowStatus.WAITING
    [main] = state.threads
    assert (main.status, main.cur_step) == (pf.ThreadStatus.WAITING_EVENT, "decision")
    assert [e.req.name for e in main.wait_events] == ["approve", "deny"]
    assert state.completed == ["reserve stock"]


def test_start_saves_at_every_checkpoint(tmp_path: Path) -> None:
    out = ok(tmp_path, "start", "order.json")
    assert checkpoints(out) == ["AFTER_STEP", "AFTER_SETUP", "AFTER_SETUP"]


def test_start_refuses_to_overwrite_an_existing_order(started: Path) -> None:
    before = started.read_bytes()
    result = run(started.parent, "start", "order.json")
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert started.read_bytes() == before


def test_approve_in_a_second_process_ships_and_finishes(started: Path) -> None:
    out = ok(started.parent, "send", "order.json", "approve", '{"approver": "ann"}')
    assert "reply: order o-42 approved by ann" in out
    assert "order o-42 is FINISHED" in out
    assert checkpoints(out) == ["AFTER_TEARDOWN", "AFTER_TEARDOWN", "AFTER_STEP", "AFTER_RESUME"]
    data, state = saved(started)
    assert data["approved_by"] == "ann"
    assert data["shipped"] is True
    assert data["log"] == ["reserved book, lamp", "approved by ann", "shipped book, lamp"]
    assert state.status == pf.WorkflowStatus.FINISHED
    assert state.threads == []


def test_deny_releases_the_stock_and_finishes(started: Path) -> None:
    out = ok(started.parent, "send", "order.json", "deny", '{"reason": "over budget"}')
    assert "reply: order o-42 denied: over budget" in out
    data, state = saved(started)
    assert data["reserved"] == []
    assert data["shipped"] is False
    assert data["log"] == ["reserved book, lamp", "denied: over budget", "released book, lamp"]
    assert state.status == pf.WorkflowStatus.FINISHED


def test_an_invalid_payload_is_rejected_and_leaves_the_file_unchanged(started: Path) -> None:
    before = started.read_bytes()
    result = run(started.parent, "send", "order.json", "approve", '{"approver": ""}')
    assert result.returncode == 1
    assert "invalid payload" in result.stderr
    assert "approver" in result.stderr
    assert started.read_bytes() == before


def test_an_unknown_event_is_rejected_and_leaves_the_file_unchanged(started: Path) -> None:
    before = started.read_bytes()
    result = run(started.parent, "send", "order.json", "refund", "{}")
    assert result.returncode == 1
    assert "no thread" in result.stderr
    assert started.read_bytes() == before


def test_a_second_decision_after_the_order_finished_is_rejected(started: Path) -> None:
    ok(started.parent, "send", "order.json", "approve", '{"approver": "ann"}')
    result = run(started.parent, "send", "order.json", "deny", '{"reason": "too late"}')
    assert result.returncode == 1
    assert "FINISHED" in result.stderr
    data, _ = saved(started)
    assert data["denied_because"] == ""


def test_cancel_compensates_the_reserved_stock(started: Path) -> None:
    out = ok(started.parent, "cancel", "order.json", "customer withdrew")
    assert "order o-42 is CANCELLED: customer withdrew" in out
    data, state = saved(started)
    assert data["reserved"] == []
    assert data["log"] == ["reserved book, lamp", "released book, lamp"]
    assert state.status == pf.WorkflowStatus.CANCELLED
    assert state.reason == "customer withdrew"
    assert state.completed == []


def test_resume_of_a_parked_order_changes_nothing(started: Path) -> None:
    before = started.read_bytes()
    out = ok(started.parent, "resume", "order.json")
    assert checkpoints(out) == []
    assert "parked at Wait 'decision'" in out
    assert started.read_bytes() == before


def test_show_prints_where_the_order_is_and_what_happened(started: Path) -> None:
    out = ok(started.parent, "show", "order.json")
    assert out.splitlines() == [
        "order o-42 is WAITING",
        "  main thread parked at Wait 'decision', waiting for: approve, deny",
        "  items: book, lamp; reserved: book, lamp",
        "  - reserved book, lamp",
    ]


def test_no_temporary_files_are_left_beside_the_order(started: Path) -> None:
    ok(started.parent, "send", "order.json", "approve", '{"approver": "ann"}')
    assert sorted(p.name for p in started.parent.iterdir()) == ["order.json"]


CRASH_IN_SHIP = """
import os, runpy, sys
example = runpy.run_path(sys.argv[1])
example["Order"].ship = lambda self: os._exit(3)  # the process dies inside the step
sys.exit(example["main"](sys.argv[2:]))
"""


def test_a_crash_inside_a_step_is_continued_by_resume_in_another_process(started: Path) -> None:
    args = ["send", "order.json", "approve", '{"approver": "ann"}']
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_IN_SHIP, str(EXAMPLE), *args],
        cwd=started.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 3
    data, state = saved(started)  # the last checkpoint: approved, "ship" not yet run
    assert data["approved_by"] == "ann"
    assert data["shipped"] is False
    assert state.threads[0].cur_callback == "approve"
    shown = ok(started.parent, "show", "order.json")
    assert "main thread ready to run event 'approve' of Wait 'decision'" in shown

    out = ok(started.parent, "resume", "order.json")
    assert "order o-42 is FINISHED" in out
    data, _ = saved(started)
    assert data["log"] == ["reserved book, lamp", "approved by ann", "shipped book, lamp"]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run(tmp_path, "show", "nowhere.json")
    assert result.returncode == 1
    assert "nowhere.json" in result.stderr
