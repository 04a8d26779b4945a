"""The engine across real processes: SIGKILL at any point loses nothing, racing senders don't both win."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import procflow as pf
from procflow.engine import Engine
from procflow.stores import open_store

APP = Path(__file__).parent / "programs" / "jobs_app.py"
JOBS = 12
STEPS = ("a", "b", "c")


def _job_class() -> type:
    sys.path.insert(0, str(APP.parent))
    try:
        import jobs_app
    finally:
        sys.path.pop(0)
    return jobs_app.Job  # type: ignore[no-any-return]


def _spawn(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), *args],
        env={**os.environ, "JOBS_WORKDIR": str(workdir), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _final_instances(url: str) -> dict[str, pf.Instance[Any]]:
    async with Engine(open_store(url), workflows=[_job_class()]) as engine:
        return {f"job-{n}": await engine.get(f"job-{n}") for n in range(JOBS)}


def _kill_after_progress(child: subprocess.Popen[str], effects: Path, rng: random.Random) -> bool:
    """Kill ``child`` once it has done new work (a new effect line), a random moment later.

    Returns whether it was killed (it may finish first).
    """
    seen = len(_lines(effects))
    deadline = time.monotonic() + 30
    while child.poll() is None and len(_lines(effects)) <= seen and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.03))
    if child.poll() is not None:
        return False
    child.send_signal(signal.SIGKILL)
    child.communicate()
    return True


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_event_and_reruns_at_most_one_step_per_kill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    effects = tmp_path / "effects"
    rng = random.Random(20261124)
    crashed = _spawn(tmp_path, "drive", url, str(JOBS), env={"CRASH_AT": "job-0:b"})
    crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    kills = 1
    for _ in range(5):
        kills += _kill_after_progress(_spawn(tmp_path, "drive", url, str(JOBS)), effects, rng)
    final = _spawn(tmp_path, "drive", url, str(JOBS))
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    assert kills >= 3

    instances = anyio.run(_final_instances, url)
    assert all(i.status == pf.WorkflowStatus.FINISHED for i in instances.values())
    assert all(i.data.handled == 1 for i in instances.values())
    for job in _lines(tmp_path / "delivered"):
        assert instances[job].data.handled == 1
    runs = Counter(_lines(effects))
    for n in range(JOBS):
        for step in STEPS:
            assert runs[f"job-{n}:{step}"] >= 1
    assert runs["job-0:b"] == 2
    assert sum(runs.values()) - JOBS * len(STEPS) <= kills


def test_a_kill_between_a_step_and_its_commit_reruns_exactly_that_step_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    crashed = _spawn(tmp_path, "drive", url, "1", env={"CRASH_AT": "job-0:b"})
    crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    final = _spawn(tmp_path, "drive", url, "1")
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    assert Counter(_lines(tmp_path / "effects")) == {"job-0:a": 1, "job-0:b": 2, "job-0:c": 1}


def _race(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("JOBS_WORKDIR", str(tmp_path))

    async def start() -> None:
        async with Engine(open_store(url), workflows=[_job_class()]) as engine:
            await engine.start(_job_class()(name="job-0"), id="job-0")

    anyio.run(start)
    senders = [_spawn(tmp_path, "send", url, "job-0") for _ in range(4)]
    time.sleep(1.0)  # let every sender load its interpreter and wait at the line
    (tmp_path / "go").touch()
    outcomes = []
    for s in senders:
        out, err = s.communicate(timeout=60)
        assert s.returncode == 0, err
        outcomes.append(out.strip())
    return outcomes


def _assert_one_winner(outcomes: list[str], url: str) -> None:
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) - {"ok"} <= {"CallbackNotFound", "WorkflowFinishedError"}
    inst = anyio.run(_final_instances_one, url)
    assert inst.data.handled == 1
    assert inst.status == pf.WorkflowStatus.FINISHED


async def _final_instances_one(url: str) -> pf.Instance[Any]:
    async with Engine(open_store(url), workflows=[_job_class()]) as engine:
        return await engine.get("job-0")


def test_racing_senders_on_sqlite_exactly_one_handles_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    _assert_one_winner(_race(url, tmp_path, monkeypatch), url)


@pytest.mark.postgres
def test_racing_senders_on_postgres_exactly_one_handles_the_event(
    postgres_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _assert_one_winner(_race(postgres_database, tmp_path, monkeypatch), postgres_database)
