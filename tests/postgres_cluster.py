"""pytest plugin: a throwaway PostgreSQL cluster from the machine's own server binaries.

``postgres_dsn`` (session) starts one cluster with ``initdb`` and ``pg_ctl``
on a free loopback port, in a temporary folder, with trust authentication,
and stops and removes it at the end. ``postgres_database`` (function) gives
each test a DSN whose tables live in a fresh, empty schema, dropped afterwards.

psycopg's async connections run on asyncio only, so the async tests marked
``postgres`` are collected under asyncio and deselected under trio (the
header of the run says how many).

When the tests run as root the server binaries run as the ``postgres`` OS
user (``runuser -u postgres --``), which owns the data folder. Without
``initdb`` on PATH, the tests that use these fixtures are skipped, saying why.

``TemporaryCluster`` works outside pytest too (benchmarks).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["TemporaryCluster", "postgres_database", "postgres_dsn"]

_START_ATTEMPTS = 3
_READY_TIMEOUT = 30.0


class ClusterError(RuntimeError):
    """The cluster could not be created or started; the message holds the server log."""


class TemporaryCluster:
    """A PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1.

    ``durable=False`` (tests) turns ``fsync`` off: much faster, and nothing
    is kept anyway. Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.folder: Path | None = None
        self.port = 0
        self._as_postgres = os.geteuid() == 0 if hasattr(os, "geteuid") else False

    def __enter__(self) -> TemporaryCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def data(self) -> Path:
        assert self.folder is not None, "the cluster is not started"
        return self.folder / "data"

    @property
    def log(self) -> Path:
        assert self.folder is not None, "the cluster is not started"
        return self.folder / "server.log"

    def dsn(self, database: str = "postgres") -> str:
        """The DSN of one database of the cluster, as the superuser ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster and start the server; return once it accepts connections.

        Raises:
            ClusterError: initdb or the server failed (the message holds their output and log).
        """
        self.folder = Path(tempfile.mkdtemp(prefix="procflow-pg-"))
        atexit.register(self.stop)
        try:
            if self._as_postgres:
                shutil.chown(self.folder, "postgres")
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                what="initdb",
            )
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown, or kill it) and remove the folder. Idempotent."""
        folder, self.folder = self.folder, None
        if folder is None:
            return
        atexit.unregister(self.stop)
        data = folder / "data"
        if (data / "postmaster.pid").exists():
            stopped = subprocess.run(
                [*self._prefix(), "pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30"],
                capture_output=True,
                check=False,
            )
            if stopped.returncode != 0:
                _kill_postmaster(data)
        shutil.rmtree(folder, ignore_errors=True)

    def _start_server(self) -> None:
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.folder}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = _free_port()
            started = subprocess.run(
                [
                    *self._prefix(),
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(int(_READY_TIMEOUT)),
                    "-o",
                    " ".join([f"-p {self.port}", *options]),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if started.returncode == 0 and self._ready():
                return
            _kill_postmaster(self.data)
            # Another process may have taken the port between our probe and the start.
            if attempt == _START_ATTEMPTS or "could not bind" not in self._log_text():
                raise ClusterError(
                    f"the PostgreSQL server did not start on port {self.port}:\n"
                    f"{started.stdout}{started.stderr}\n--- server log ---\n{self._log_text()}"
                )

    def _ready(self) -> bool:
        """Wait until the server accepts connections (pg_ctl -w has mostly waited already)."""
        if shutil.which("pg_isready") is None:
            return True
        command = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-t", "2"]
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if subprocess.run(command, capture_output=True, check=False).returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def _run(self, command: list[str], *, what: str) -> None:
        done = subprocess.run([*self._prefix(), *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ClusterError(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_postgres else []

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _kill_postmaster(data: Path) -> None:
    """Stop a server that pg_ctl could not stop, by the pid in its postmaster.pid."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the postmaster takes its children down
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the PostgreSQL tests parametrised to run under trio."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("anyio_backend", "asyncio") if callspec is not None else "asyncio"
        (dropped if item.get_closest_marker("postgres") and backend != "asyncio" else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config.stash[_TRIO_DESELECTED] = len(dropped)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """Say why PostgreSQL tests were deselected under trio."""
    count = config.stash.get(_TRIO_DESELECTED, 0)
    if not count:
        return None
    return f"{count} PostgreSQL tests deselected under trio: psycopg's async connections run on asyncio only"


_TRIO_DESELECTED = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of the ``postgres`` database of a throwaway cluster, for the whole session."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not on PATH: install PostgreSQL 15")
    cluster = TemporaryCluster()
    try:
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"could not start a throwaway PostgreSQL cluster: {exc}", pytrace=False)
    try:
        yield cluster.dsn()
    finally:
        cluster.stop()


@pytest.fixture
def postgres_database(postgres_dsn: str) -> Iterator[str]:
    """A DSN whose tables land in a fresh, empty schema of their own, dropped after the test.

    The schema is first on the ``search_path`` (set in the DSN), so every
    connection made with this DSN, in any process, sees only this test's tables.
    """
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{postgres_dsn}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
