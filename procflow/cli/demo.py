"""``procflow demo``: orders that wait for approval, kept in SQLite.

Each run continues from what the previous run stored: it approves the order
the last run left parked, starts a new batch, approves some, denies one (a
cancel that compensates its completed steps), leaves one parked for next
time, and prints every stored instance.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from .. import statements as st
from ..engine import Engine
from ..instance import InstanceSummary
from ..state import WorkflowStatus
from .table import Style, render_table

__all__ = ["Approval", "DemoOrder", "run_demo"]

ITEMS = [
    ("espresso machine", 249),
    ("road bike", 1_290),
    ("standing desk", 540),
    ("noise-cancelling headphones", 199),
    ("mechanical keyboard", 129),
    ("telescope", 860),
]

# Where the demo workflow's steps report what they do; run_demo points it at the terminal.
_say: Callable[[str], None] = lambda text: None  # noqa: E731


class Approval(BaseModel):
    """The payload of an ``approve`` event."""

    approver: str
    note: str = ""


@dataclass
class DemoOrder:
    """An order: reserve stock, charge the card, wait for approval, ship."""

    order: str
    item: str
    amount: int
    reserved: bool = False
    charged: bool = False
    approved_by: str = ""
    shipped: bool = False

    def definition(self) -> st.Section:
        return st.S(
            st.Step("reserve stock", self.reserve, compensate=self.release),
            st.Step("charge card", self.charge, compensate=self.refund),
            st.Wait("decision", st.OnEvent("approve", self.approve)),
            st.Step("ship", self.ship),
        )

    def reserve(self) -> None:
        self.reserved = True
        _say(f"{self.order}: reserved one {self.item}")

    def release(self) -> None:
        self.reserved = False
        _say(f"{self.order}: compensate → released the {self.item}")

    def charge(self) -> None:
        self.charged = True
        _say(f"{self.order}: charged {self.amount} EUR")

    def refund(self) -> None:
        self.charged = False
        _say(f"{self.order}: compensate → refunded {self.amount} EUR")

    def approve(self, approval: Approval) -> str:
        self.approved_by = approval.approver
        return f"approved by {approval.approver}"

    def ship(self) -> None:
        self.shipped = True
        _say(f"{self.order}: shipped the {self.item}")


async def run_demo(
    engine: Engine,
    *,
    where: str,
    print_line: Callable[[str], None] = print,
    style: Style,
    db: str | None = None,
) -> None:
    """Run one round of the demo against ``engine`` (which must register ``DemoOrder``).

    ``where`` names the store in the output (e.g. the SQLite file). ``db`` is
    the store URL the commands it suggests next need as ``--db`` to find the
    demo's instances (``None``: they find them without).
    """
    global _say

    def say(text: str) -> None:
        # Narration only: a closed pipe must not fail the order's steps.
        with contextlib.suppress(OSError):
            print_line("    " + style.dim(text))

    _say = say

    def heading(text: str) -> None:
        print_line("")
        print_line(style.bold(text))

    print_line(style.bold("procflow demo") + f": orders that wait for approval, kept in {where}")
    existing = [s async for s in engine.list(workflow="DemoOrder")]
    if existing:
        heading(f"Continuing: {len(existing)} orders are stored from earlier runs")
        for order in await engine.recover():
            print_line(f"  {order}: resumed where an earlier run stopped")
    leftover = [s async for s in engine.list(workflow="DemoOrder", status=WorkflowStatus.WAITING)]
    for summary in leftover:
        reply = await engine.send(summary.id, "approve", {"approver": "night shift"})
        print_line(f"  {summary.id}: {reply} (it was parked by the previous run)")

    first = len(existing) + 1
    batch = [f"order-{n:03d}" for n in range(first, first + 4)]
    heading(f"Starting {len(batch)} orders")
    for n, order in enumerate(batch):
        item, amount = ITEMS[(first + n) % len(ITEMS)]
        run = await engine.start(DemoOrder(order, item, amount), id=order, correlation_id=f"web-{order}")
        print_line(f"  {order}: {run.status.value}, parked at {', '.join(str(p) for p in run.parked)}")

    heading("Approving two, denying one")
    for order, approver in zip(batch[:2], ["ann", "bob"], strict=True):
        reply = await engine.send(f"web-{order}", "approve", {"approver": approver})
        print_line(f"  {order}: {reply}")
    denied = batch[2]
    print_line(f"  {denied}: denied → cancel with compensation (newest step first)")
    await engine.cancel(denied, reason="denied by the risk team", compensate=True)
    print_line(f"  {batch[3]}: left parked; run `procflow demo` again to approve it")

    heading("Every stored instance")
    rows = []
    async for summary in engine.list(workflow="DemoOrder"):
        rows.append(await _row(engine, summary))
    print_line(
        render_table(
            ["ID", "STATUS", "PARKED AT", "LAST TRANSITION", "WHEN"],
            rows,
            style,
            status_column=1,
        )
    )
    parked = batch[3]
    print_line("")
    print_line(style.dim("Try next:"))
    command = f"procflow --db {shlex.quote(db)}" if db else "procflow"
    print_line(style.dim(f"  {command} show {parked}"))
    print_line(style.dim(f"""  {command} send {parked} approve '{{"approver": "you"}}'"""))
    print_line(style.dim(f"  {command} demo            # continues from the stored state"))


async def _row(engine: Engine, summary: InstanceSummary) -> list[str]:
    history = await engine.history(summary.id)
    last = history[-1] if history else None
    parts = (last.kind, last.name, f"({last.detail})" if last.detail else "") if last else ()
    what = " ".join(x for x in parts if x)
    when = datetime.fromtimestamp(last.at).strftime("%H:%M:%S") if last else ""
    return [summary.id, summary.status, summary.describe_parked() or "-", what, when]
