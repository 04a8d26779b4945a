"""A child process for the crash and race tests: an engine driving `Job` instances.

    JOBS_WORKDIR=DIR python jobs_app.py drive DB_URL COUNT  start COUNT jobs, deliver `go` to each
    JOBS_WORKDIR=DIR python jobs_app.py send DB_URL ID      wait for DIR/go, send `go` to ID once

Every step appends "job:step" to WORKDIR/effects (fsynced), so the parent can
count how often each step really ran. After a successful send, "job" is
appended to WORKDIR/delivered. With CRASH_AT=job:step in the environment, the
process kills itself right after that step's action ran (before its commit),
once (WORKDIR/crashed marks that it happened).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

import procflow as pf
from procflow.engine import Engine
from procflow.stores import open_store


def _workdir() -> Path:
    return Path(os.environ["JOBS_WORKDIR"])


def _append(name: str, line: str) -> None:
    fd = os.open(_workdir() / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Job:
    name: str = ""
    handled: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("a", lambda: self.effect("a")),
            pf.Step("b", lambda: self.effect("b")),
            pf.Wait("hold", pf.OnEvent("go", self.go)),
            pf.Step("c", lambda: self.effect("c")),
        )

    def go(self) -> str:
        self.handled += 1
        return "ok"

    def effect(self, step: str) -> None:
        _append("effects", f"{self.name}:{step}")
        crashed = _workdir() / "crashed"
        if os.environ.get("CRASH_AT") == f"{self.name}:{step}" and not crashed.exists():
            crashed.touch()
            os.kill(os.getpid(), signal.SIGKILL)


async def drive(engine: Engine, count: int) -> None:
    await engine.recover()
    for n in range(count):
        job = f"job-{n}"
        try:
            inst = await engine.get(job)
        except pf.InstanceNotFound:
            inst = await engine.start(Job(name=job), id=job)
        if inst.status == pf.WorkflowStatus.WAITING:
            await engine.send(job, "go")
            _append("delivered", job)


async def send_once(engine: Engine, job: str) -> None:
    go = _workdir() / "go"
    deadline = time.monotonic() + 20
    while not go.exists() and time.monotonic() < deadline:
        await anyio.sleep(0.001)
    try:
        await engine.send(job, "go")
    except (pf.CallbackNotFound, pf.WorkflowFinishedError) as e:
        print(type(e).__name__)
    else:
        print("ok")


async def main() -> None:
    command, url = sys.argv[1], sys.argv[2]
    async with Engine(open_store(url), workflows=[Job]) as engine:
        if command == "drive":
            await drive(engine, int(sys.argv[3]))
        else:
            await send_once(engine, sys.argv[3])


if __name__ == "__main__":
    anyio.run(main)
