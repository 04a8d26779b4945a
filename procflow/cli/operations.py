"""Operating stored instances from the command line: check, goto, edit, graph, purge.

``check`` tells whether the current definitions would strand stored
instances (before a deploy); ``goto`` and ``edit`` repair one instance, with
who and why in its history; ``graph`` draws a definition, optionally with
where an instance is and what it did, as Mermaid or (with Graphviz) SVG;
``purge`` deletes the instances that finished or were cancelled long enough ago.
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..deploy_check import check_deploy
from ..engine import Engine
from ..errors import ProcflowError
from ..export import to_dot, to_mermaid
from ..instance import Instance
from ..state import ThreadStatus
from ..statements import Stmt
from .errors import CommandError
from .outcome import retry_note, when
from .table import Style

__all__ = [
    "check",
    "default_who",
    "definition_of",
    "edit",
    "goto",
    "instance_highlight",
    "parse_age",
    "parse_sets",
    "purge",
    "show_graph",
    "where",
]


def default_who() -> str:
    """The operating-system user name, for ``--who`` (``unknown`` when there is none)."""
    try:
        return getpass.getuser()
    except Exception:  # no $USER and no password entry for the uid
        return "unknown"


def where(inst: Instance[Any], style: Style) -> str:
    """``id: STATUS`` and where the instance is parked, or which step failed (or that the run did)."""
    line = f"{inst.id}: {style.status(inst.status.value)}"
    if inst.failure is not None:
        return f"{line} ({retry_note(inst)})"
    parked = "; ".join(str(p) for p in inst.parked)
    return f"{line}, parked at {parked}" if parked else line


async def check(engine: Engine, style: Style, *, workflow: str | None = None) -> int:
    """Print the deploy check of every in-flight instance; 1 when any would be stranded."""
    report = await check_deploy(engine, workflow=workflow)
    for line in report.render().splitlines():
        is_head = not line.startswith(" ") and not line.startswith(("ok:", "not safe:"))
        print(style.bold(line) if is_head else line)
    return 0 if report.ok else 1


def definition_of(inst: Instance[Any]) -> Stmt:
    """The definition the instance's data builds now.

    Raises:
        CommandError: its ``definition()`` raised (a ``ProcflowError`` it raised is passed on).
    """
    try:
        definition: Stmt = inst.data.definition()
    except ProcflowError:
        raise
    except Exception as e:
        raise CommandError(
            f"the definition() of instance {inst.id!r} ({inst.workflow}) raised {type(e).__name__}: {e}; "
            "fix the definition, or the data it uses (procflow edit), then try again"
        ) from e
    return definition


async def goto(
    engine: Engine, key: str, *, thread: str, step: str, who: str, why: str, run: bool, style: Style
) -> int:
    """Move a thread of an instance to the statement ``step``; print where it is then.

    Returns the exit status: 1 when the instance is ``FAILED`` afterwards (the
    run the move started failed), else 0, as ``retry`` and ``resume`` do.

    Raises:
        CommandError: the instance's ``definition()`` raises, so there is nowhere to move it to.
    """
    definition_of(await engine.get(key))  # the engine would let the definition's own error out
    inst = await engine.goto(key, thread=thread, step=step, who=who, why=why, run=run)
    print(where(inst, style))
    return 1 if inst.failure is not None else 0


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``field=JSON`` arguments as a mapping of field to value.

    Raises:
        CommandError: an item has no ``=`` or its value is not JSON.
    """
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--set {item!r}: write it as field=JSON, e.g. --set approved_by='\"ann\"'")
        try:
            changes[name] = json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandError(
                f"--set {item!r}: the value is not JSON ({e.msg}); quote a string as JSON: "
                f"--set {name}='\"{text}\"'"
            ) from e
    return changes


async def edit(
    engine: Engine, key: str, changes: Mapping[str, Any], *, who: str, why: str, style: Style
) -> None:
    """Change fields of an instance's data (validated by its model); print the instance."""
    inst = await engine.edit(key, changes, who=who, why=why)
    print(where(inst, style))
    data = json.loads(engine.dump_data(inst))
    for name in changes:
        print(f"  {name} = {json.dumps(data.get(name))}")


async def instance_highlight(engine: Engine, inst: Instance[Any]) -> dict[str, str]:
    """Classes for ``to_mermaid``: ``done`` steps, ``parked`` positions, the ``failed`` step.

    Done are the steps the history records as run and those in ``completed``.
    """
    highlight = {h.name: "done" for h in await engine.history(inst.id) if h.kind == "step"}
    highlight.update((name, "done") for name in inst.state.completed)
    for t in inst.state.threads:
        if t.status in (ThreadStatus.WAITING_EVENT, ThreadStatus.WAITING_CONDITION):
            highlight[t.cur_step] = "parked"
    if inst.failure is not None:
        highlight[inst.failure.step] = "failed"
    return highlight


def show_graph(definition: Stmt, highlight: Mapping[str, str] | None, svg: str | None) -> None:
    """Print the Mermaid flowchart, or write it as SVG to ``svg`` with Graphviz's ``dot``.

    Raises:
        CommandError: ``dot`` is not installed, or it failed; ``svg`` cannot be written.
    """
    if svg is None:
        print(to_mermaid(definition, highlight=highlight), end="")
        return
    folder = Path(svg).parent
    if not folder.is_dir():
        raise CommandError(f"--svg {svg}: there is no folder {folder}; make it first, or write elsewhere")
    dot = shutil.which("dot")
    if dot is None:
        raise CommandError(
            "--svg needs Graphviz's dot on PATH; install graphviz (apt install graphviz, "
            "brew install graphviz, or https://graphviz.org/download/), or leave out --svg for Mermaid"
        )
    result = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(definition, highlight=highlight), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise CommandError(f"dot failed (exit {result.returncode}): {result.stderr.strip()}")
    try:
        Path(svg).write_text(result.stdout, encoding="utf-8")
    except OSError as e:
        raise CommandError(f"--svg {svg}: cannot write it ({e.strerror or e}); write it elsewhere") from e
    print(f"wrote {svg}")


_AGE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """An age as ``--older-than`` takes it, in seconds: ``3600``, ``45s``, ``90m``, ``12h``, ``30d``.

    Raises:
        CommandError: it is none of these (a negative number, another unit, ...).
    """
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise CommandError(
            f"{text!r} is not an age; write seconds, or a number with s, m, h or d: 3600, 90m, 12h, 30d, 1.5d"
        )
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit]


async def purge(engine: Engine, *, older_than: float, batch: int, dry_run: bool) -> None:
    """Delete the instances that finished or were cancelled ``older_than`` seconds ago; print how many.

    After each full batch (more may follow) it prints to standard error how
    many are gone so far. With ``dry_run``, it prints how many would go.
    """
    before = when(engine.clock.now() - older_than)
    if dry_run:
        count = await engine.purge(older_than=older_than, batch=batch, dry_run=True)
        print(f"would remove {count} finished or cancelled instance(s) last written before {before}")
        return
    removed = 0

    def progress(ids: list[str]) -> None:
        nonlocal removed
        removed += len(ids)
        if len(ids) == batch:
            print(f"procflow purge: {removed} removed so far", file=sys.stderr, flush=True)

    count = await engine.purge(older_than=older_than, batch=batch, on_batch=progress)
    print(f"removed {count} finished or cancelled instance(s) last written before {before}")
