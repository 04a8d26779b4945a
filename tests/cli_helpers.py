"""Running the `procflow` command as a user runs it: a subprocess in a folder of the test's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def procflow(
    cwd: Path, *args: str, path: str = "/usr/bin:/bin", user: str = "", as_module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``procflow ARGS`` in ``cwd`` as the installed command runs: ``cwd`` is not on ``sys.path``.

    With ``as_module``, as ``python -m procflow ARGS`` runs, which puts ``cwd`` first on ``sys.path``.
    """
    env = {"PATH": path, "NO_COLOR": "1"}
    if user:
        env["USER"] = user
    python = [sys.executable, "-m"] if as_module else [sys.executable, "-P", "-m"]  # -P: no cwd on the path
    return subprocess.run(
        [*python, "procflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def ok(cwd: Path, *args: str) -> str:
    """``procflow ARGS``, which must exit 0; its standard output."""
    result = procflow(cwd, *args)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def seed(cwd: Path, module: str, url: str, *args: object) -> None:
    """Run ``module.seed(url, *args)`` in a subprocess: an app module fills the store at ``url``."""
    call = ", ".join(repr(a) for a in (url, *args))
    result = subprocess.run(
        [sys.executable, "-c", f"import anyio, {module}; anyio.run({module}.seed, {call})"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def seeded_app(tmp_path: Path, module: str, source: str) -> str:
    """Write app module ``module`` (``source``) in ``tmp_path`` and let its ``seed`` fill
    ``<module>.db`` there; return that store's URL."""
    (tmp_path / f"{module}.py").write_text(source)
    url = f"sqlite:///{tmp_path / f'{module}.db'}"
    seed(tmp_path, module, url)
    return url
