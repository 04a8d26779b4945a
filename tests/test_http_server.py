"""`procflow serve` as a real server process (uvicorn on a free loopback port), driven over HTTP.

These tests are synchronous: the server runs in its own process (uvicorn runs
on asyncio there), and the test talks to it with a blocking httpx client with
timeouts on every request, so there is nothing to run under trio.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from http_helpers import SECRET, WORKFLOWS

import procflow as pf
from procflow.http import CallbackSigner

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    db: Path
    log: Path

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited within 10 s; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start_server(folder: Path, app: str = "http_helpers:server_engine", *serve_args: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = folder / "served.db"
    log = folder / "server.log"
    env = {
        **os.environ,
        "PROCFLOW_SECRET": SECRET,
        "PROCFLOW_BASE_URL": url,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "procflow",
        "--db",
        f"sqlite:///{db}",
        "--app",
        app,
        "serve",
        "--port",
        str(port),
        *serve_args,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, url, db, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            httpx.get(f"{url}/openapi.json", timeout=1).raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError(f"the server did not come up:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("served"))
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c


def test_the_served_app_starts_an_instance_and_reports_what_it_accepts(client: httpx.Client) -> None:
    r = client.post("/workflows/Order/instances?id=srv-o1", json={"item": "lamp"})
    assert r.status_code == 201, r.text
    accepts = client.get("/workflows/Order/instances/srv-o1").json()["accepts"]
    assert [a["event"] for a in accepts] == ["approve", "deny"]


def test_the_served_app_answers_problem_details(client: httpx.Client) -> None:
    r = client.post("/workflows/Order/instances", content=b"<xml/>", headers={"content-type": "text/xml"})
    assert (r.status_code, r.headers["content-type"]) == (415, "application/problem+json")


def mint(client: httpx.Client, instance: str, event: str) -> str:
    """A token for ``event`` of ``instance``, minted here with the server's secret."""
    [parked] = [
        a
        for a in client.get(f"/workflows/Expense/instances/{instance}").json()["accepts"]
        if a["event"] == event
    ]
    req = pf.CallbackRequest(workflow_id=instance, thread_id=parked["thread"], name=event, pc=parked["pc"])
    return CallbackSigner([SECRET]).token(req, expires_in=600)


def test_a_signed_link_minted_by_another_process_delivers_once(client: httpx.Client) -> None:
    assert client.post("/workflows/Expense/instances?id=srv-e1", json={"amount": 5}).status_code == 201
    token = mint(client, "srv-e1", "approve")
    r = client.post(f"/callbacks/{token}", json={"note": "ok"})
    assert (r.status_code, r.json()) == (200, "approved ok")
    assert client.post(f"/callbacks/{token}", json={}).status_code == 410


def test_a_tampered_link_is_refused_by_the_server(client: httpx.Client) -> None:
    assert client.post("/workflows/Expense/instances?id=srv-e2", json={"amount": 5}).status_code == 201
    token = mint(client, "srv-e2", "approve")
    r = client.post(f"/callbacks/{token[:-2]}xx", json={})
    assert r.status_code == 403
    assert client.get("/workflows/Expense/instances/srv-e2").json()["status"] == "WAITING"


def test_a_terminated_server_exits_cleanly_and_its_store_keeps_its_work(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            assert c.post("/workflows/Order/instances?id=kept", json={"item": "lamp"}).status_code == 201
    finally:
        status = server.stop()
    log = server.log.read_text()
    assert status in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal once it has shut down
    assert "Application shutdown complete" in log  # the lifespan closed the engine

    async def stored_status() -> pf.WorkflowStatus:
        async with pf.Engine(pf.SQLiteStore(str(server.db)), WORKFLOWS) as engine:
            return (await engine.get("kept")).status

    assert anyio.run(stored_status) == pf.WorkflowStatus.WAITING


def test_serve_with_worker_delivers_timers_while_it_serves(tmp_path: Path) -> None:
    server = start_server(tmp_path, "http_helpers:napping_engine", "--worker", "--poll", "0.05")
    try:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            r = c.post("/workflows/Nap/instances?id=nap", json={})
            assert (r.status_code, r.json()["status"]) == (201, "WAITING"), r.text
            deadline = time.monotonic() + 10
            while c.get("/workflows/Nap/instances/nap").json()["status"] != "FINISHED":
                assert time.monotonic() < deadline, f"the timer was not delivered:\n{server.log.read_text()}"
                time.sleep(0.05)
            assert c.get("/workflows/Nap/instances/nap").json()["data"]["woke"] is True
    finally:
        server.stop()


def test_serve_without_the_http_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; "  # as if the extra were not installed
        "from procflow.cli import main; sys.exit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "pip install 'procflow[http]'" in result.stderr
