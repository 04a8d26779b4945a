"""An order that waits for a decision, kept in a JSON file between processes.

The order reserves stock, then parks on a Wait for one of two events: ``approve``
ships it, ``deny`` releases the stock. Every checkpoint writes the workflow's data and
its ``State`` to the file (a temporary file, then ``os.replace``, so the file is never
half written), and every command starts from the file, so each can run in its own
process. Start an order and look at it::

    python examples/order_json_file.py start order.json --item book --item lamp
    python examples/order_json_file.py show order.json

then end it in one of three ways (the order is finished or cancelled afterwards, so
the other two are refused)::

    python examples/order_json_file.py send order.json approve '{"approver": "ann"}'
    python examples/order_json_file.py send order.json deny '{"reason": "over budget"}'
    python examples/order_json_file.py cancel order.json "customer withdrew"

and ``resume order.json`` continues it after a crash or a failed step.

``cancel`` runs the compensation of "reserve stock" (``cancel(compensate=True)``).
Run one command at a time per file: the file has no lock, so two racing ``send``
commands could lose an update (a store with optimistic concurrency prevents that).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from pydantic import BaseModel, Field, ValidationError

import procflow as pf

# -- the workflow -------------------------------------------------------------------


class Approval(BaseModel):
    """The payload of ``approve``."""

    approver: str = Field(min_length=1)
    note: str = ""


class Denial(BaseModel):
    """The payload of ``deny``."""

    reason: str = Field(min_length=1)


@dataclass
class Order:
    order_id: str
    items: list[str]
    reserved: list[str] = field(default_factory=list)
    approved_by: str = ""
    denied_because: str = ""
    shipped: bool = False
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve stock", self.reserve_stock, compensate=self.release_stock),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.approve, pf.Step("ship", self.ship)),
                pf.OnEvent("deny", self.deny, pf.Step("release stock", self.release_stock)),
            ),
        )

    # Steps: where the effects are (a real order would call the stock service here).

    def reserve_stock(self) -> None:
        self.reserved = list(self.items)
        self.log.append(f"reserved {', '.join(self.items)}")

    def release_stock(self) -> None:
        self.log.append(f"released {', '.join(self.reserved)}")
        self.reserved = []

    def ship(self) -> None:
        self.shipped = True
        self.log.append(f"shipped {', '.join(self.reserved)}")

    # Event handlers: they record the decision; their return value is the reply.

    def approve(self, approval: Approval) -> str:
        self.approved_by = approval.approver
        self.log.append(f"approved by {approval.approver}")
        return f"order {self.order_id} approved by {approval.approver}"

    def deny(self, denial: Denial) -> str:
        self.denied_because = denial.reason
        self.log.append(f"denied: {denial.reason}")
        return f"order {self.order_id} denied: {denial.reason}"


# -- the JSON file ------------------------------------------------------------------


class SavedOrder(BaseModel):
    """What the file holds: the workflow's data beside its State."""

    workflow: Order
    state: pf.State


def save(path: Path, order: Order, state: pf.State) -> None:
    """Write the order to ``path`` atomically: a temporary file, fsync, then os.replace."""
    data = SavedOrder(workflow=order, state=state).model_dump_json(indent=2)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same directory, so os.replace is atomic
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(path: Path) -> tuple[Order, pf.State]:
    saved = SavedOrder.model_validate_json(path.read_bytes())
    return saved.workflow, saved.state


def checkpoint_to(path: Path, order: Order, state: pf.State) -> pf.Checkpoint:
    """A checkpoint callback that saves the order at every change of state."""

    def checkpoint(kind: pf.CheckpointType) -> None:
        save(path, order, state)
        print(f"  checkpoint {kind.value}: saved ({state.status.value})")

    return checkpoint


# The events of a parked thread that can still be delivered (the others are left-over
# events of an earlier Wait, waiting for their teardown).
LISTENING = {pf.WaitEventStatus.PENDING_SETUP, pf.WaitEventStatus.SETUP, pf.WaitEventStatus.SETUP_ERROR}


def where(order: Order, state: pf.State) -> str:
    """Where the order is, in one line per thread."""
    head = f"order {order.order_id} is {state.status.value}"
    if state.status == pf.WorkflowStatus.CANCELLED:
        return f"{head}: {state.reason}"
    lines = [head]
    for t in state.threads:
        thread = "main thread" if t.id == pf.MAIN_THREAD else f"thread {t.id!r}"
        if t.status == pf.ThreadStatus.WAITING_EVENT:
            events = ", ".join(e.req.name for e in t.wait_events if e.status in LISTENING)
            lines.append(f"  {thread} parked at Wait {t.cur_step!r}, waiting for: {events}")
        elif t.status == pf.ThreadStatus.WAITING_CONDITION:
            lines.append(f"  {thread} parked at WaitFor {t.cur_step!r}")
        elif t.cur_callback:
            event = f"event {t.cur_callback!r} of Wait {t.cur_step!r}"
            lines.append(f"  {thread} ready to run {event}: resume it")
        else:
            after = f"after {t.cur_step!r}" if t.cur_step else "from the start"
            lines.append(f"  {thread} ready to run {after}: resume it")
    return "\n".join(lines)


# -- the commands -------------------------------------------------------------------


async def start(path: Path, order_id: str, items: list[str]) -> None:
    if path.exists():
        raise UsageError(f"{path} already exists; `send` to it, `show` it, or delete it")
    order = Order(order_id=order_id, items=items)
    state = pf.State.new(order_id, "order")
    save(path, order, state)  # the order exists before its first step runs
    print(f"started order {order_id} in {path}")
    await pf.resume(order, state, checkpoint_to(path, order, state))
    print(where(order, state))


async def send(path: Path, event: str, payload: str) -> None:
    order, state = load(path)
    reply = await pf.handle_callback(pf.CallbackRequest(name=event), order, state, payload)
    save(path, order, state)  # handle_callback does not checkpoint: save before resuming
    print(f"reply: {reply}")
    await pf.resume(order, state, checkpoint_to(path, order, state))
    print(where(order, state))


async def resume(path: Path) -> None:
    order, state = load(path)
    await pf.resume(order, state, checkpoint_to(path, order, state))
    print(where(order, state))


async def cancel(path: Path, reason: str) -> None:
    order, state = load(path)
    await pf.cancel(order, state, checkpoint_to(path, order, state), reason=reason, compensate=True)
    print(where(order, state))


def show(path: Path) -> None:
    order, state = load(path)
    print(where(order, state))
    print(f"  items: {', '.join(order.items)}; reserved: {', '.join(order.reserved) or '-'}")
    for line in order.log:
        print(f"  - {line}")


class UsageError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("start", help="start an order and run it until it parks")
    c.add_argument("file", type=Path)
    c.add_argument("--id", default="order-1", help="the order id (default: order-1)")
    c.add_argument("--item", action="append", dest="items", help="an item to order (repeatable)")

    c = sub.add_parser("send", help="deliver an event, then run the order until it parks")
    c.add_argument("file", type=Path)
    c.add_argument("event", help="approve or deny")
    c.add_argument("payload", nargs="?", default="null", help="the payload, as JSON")

    c = sub.add_parser("resume", help="run the order until it parks (after a crash or a failed step)")
    c.add_argument("file", type=Path)

    c = sub.add_parser("cancel", help="cancel the order and release its stock")
    c.add_argument("file", type=Path)
    c.add_argument("reason")

    c = sub.add_parser("show", help="print where the order is")
    c.add_argument("file", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "start":
            anyio.run(start, args.file, args.id, args.items or ["book"])
        elif args.command == "send":
            anyio.run(send, args.file, args.event, args.payload)
        elif args.command == "resume":
            anyio.run(resume, args.file)
        elif args.command == "cancel":
            anyio.run(cancel, args.file, args.reason)
        else:
            show(args.file)
    except (pf.ProcflowError, UsageError, ValidationError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
