"""A child process for the worker tests: workflows whose steps record their effects in files.

    WORKER_WORKDIR=DIR python worker_app.py start DB_URL COUNT   start COUNT `Chore`s, due now
    WORKER_WORKDIR=DIR python worker_app.py work DB_URL          run a worker until every Chore ended
    WORKER_WORKDIR=DIR python worker_app.py send DB_URL ID KEY   send `pay` once, idempotency key KEY

A `Chore` runs step `a`, parks on a Wait whose timer is already due, runs
step `b` in the timer's branch, then step `c`, which fails on its first
attempt (a retry with a short backoff runs it again), then step `d`. Every
step appends "chore:step" to WORKDIR/effects (fsynced), so the parent can
count how often each step really ran, whatever happened to the process.

`procflow --app worker_app:make_engine ...` gets an engine with every
workflow of this module registered (`Chore`, `Slow`, `Fragile`, `Till`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

import procflow as pf
from procflow import Backoff, Retry, Sleep, Timer
from procflow.engine import Engine
from procflow.stores import open_store

# Short enough that a restarted worker picks up what a killed one held within a second.
LEASE = 0.5
STALE_AFTER = 0.5


def workdir() -> Path:
    return Path(os.environ["WORKER_WORKDIR"])


def append(name: str, line: str) -> None:
    fd = os.open(workdir() / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def lines(name: str) -> list[str]:
    path = workdir() / name
    return path.read_text().split() if path.exists() else []


@dataclass
class Chore:
    name: str = ""
    due: float = 0.0  # Unix seconds: when the timer falls due
    fired: int = 0

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("a", lambda: self.effect("a")),
            pf.Wait(
                "hold",
                pf.OnEvent("call_off", lambda: None),
                pf.On("due", Timer(at=self.due), pf.Step("b", self.on_time)),
            ),
            pf.Step(
                "c",
                self.flaky,
                retry=Retry(max_attempts=5, backoff=Backoff(initial=0.05, multiplier=1, jitter=0)),
            ),
            pf.Step("d", lambda: self.effect("d")),
        )

    def effect(self, step: str) -> None:
        append("effects", f"{self.name}:{step}")

    def on_time(self) -> None:
        self.fired += 1
        self.effect("b")

    def flaky(self) -> None:
        self.effect("c")
        if lines("effects").count(f"{self.name}:c") < 2:
            raise ConnectionError("the first call always fails")


@dataclass
class Slow:
    """Sleeps 0 s (so a worker takes it at once), then runs a step that takes a second."""

    def definition(self) -> pf.Section:
        return pf.S(Sleep("pause", 0), pf.Step("slow", self.slow))

    async def slow(self) -> None:
        append("effects", "slow:start")
        await anyio.sleep(1.0)
        append("effects", "slow:end")


@dataclass
class Fragile:
    """Its step fails while WORKDIR/broken exists (no retry policy: the instance fails)."""

    calls: int = 0

    def definition(self) -> pf.Section:
        return pf.S(pf.Step("call", self.call))

    def call(self) -> None:
        append("effects", "fragile:call")
        if (workdir() / "broken").exists():
            raise ConnectionError("the service is down")
        self.calls += 1


@dataclass
class Till:
    """Accepts `pay` (an int) until it has been paid 3 times; each handled pay is recorded."""

    paid: int = 0

    def definition(self) -> pf.Section:
        return pf.S(pf.For("paying", lambda: self.paid < 3, pf.Wait("till", pf.OnEvent("pay", self.pay))))

    def pay(self, cents: int) -> dict[str, int]:
        append("effects", f"pay:{cents}")
        self.paid += 1
        return {"receipt": self.paid, "cents": cents}


WORKFLOWS = [Chore, Slow, Fragile, Till]


def make_engine() -> Engine:
    """For `procflow --app worker_app:make_engine`: the store comes from --db."""
    return Engine(open_store("memory://"), workflows=WORKFLOWS)


def engine_for(url: str) -> Engine:
    return Engine(open_store(url), workflows=WORKFLOWS, stale_after=STALE_AFTER)


async def start(engine: Engine, count: int) -> None:
    now = time.time()
    for n in range(count):
        name = f"chore-{n:03d}"
        await engine.start(Chore(name=name, due=now), id=name)


async def work(engine: Engine) -> None:
    """Run a worker until every instance has ended, then stop it."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: engine.run_worker(poll_interval=0.02, batch=10, lease=LEASE))
        while True:
            await anyio.sleep(0.1)
            open_ = [s async for s in engine.list(status=["RESUMING", "WAITING", "FAILED"])]
            if not open_:
                break
        tg.cancel_scope.cancel()
    print("done")


async def send(engine: Engine, id: str, key: str) -> None:
    reply = await engine.send(id, "pay", 7, idempotency_key=key)
    print(reply)


async def main() -> None:
    command, url = sys.argv[1], sys.argv[2]
    async with engine_for(url) as engine:
        if command == "start":
            await start(engine, int(sys.argv[3]))
        elif command == "work":
            await work(engine)
        elif command == "send":
            await send(engine, sys.argv[3], sys.argv[4])
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    anyio.run(main)
