"""Expense approval over HTTP: a Starlette app mounts procflow, and the approver's
approve/deny links are signed callback URLs.

    export PROCFLOW_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    python examples/starlette_approval.py            # serves http://127.0.0.1:8000, state in approvals.db

    curl -X POST localhost:8000/expenses -H 'content-type: application/json' \\
         -d '{"employee": "ann", "amount": 120, "approver": "bob@example.com"}'
    curl localhost:8000/outbox                       # the "e-mail" to bob, with two links
    curl -X POST '<approve link>' -H 'content-type: application/json' -d '{"comment": "fine"}'
    curl localhost:8000/admin/procflow/workflows/Expense/instances/<id>

The links deliver one event to one expense, once, within three days, and
nothing else; the secret that signs them comes from the environment. The host
app mounts two procflow apps: the signed callbacks, public, under /hooks, and
the management API under /admin/procflow (put your authentication in front of
that one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, ValidationError

import procflow as pf
from procflow.http import CallbackLink, CallbackSigner, SigningConfigError, create_app

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
except ModuleNotFoundError as e:  # pragma: no cover
    sys.exit(f"this example needs the HTTP extra: pip install 'procflow[http]' ({e.name} is missing)")

log = logging.getLogger("approval")

OUTBOX: list[dict[str, str]] = []
"""The e-mails sent, newest last (a real app would hand them to its mailer)."""

_signer: CallbackSigner | None = None


def signer() -> CallbackSigner:
    """The signer the app was made with (handlers read it when they set up)."""
    if _signer is None:
        raise SigningConfigError("create_example_app() configures the signer; call it first")
    return _signer


class Decision(BaseModel):
    comment: str = ""


@dataclass
class Expense:
    employee: str
    amount: int
    approver: str
    status: str = "submitted"
    comment: str = ""

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "approval",
                pf.On("approve", self.link(self.approve), pf.Step("pay", self.pay)),
                pf.On("deny", self.link(self.deny)),
            ),
        )

    def link(self, fn: Callable[[Decision], str]) -> CallbackLink:
        """The event's handler: ``fn`` handles it; setup mails the approver a signed link."""
        return CallbackLink(fn, signer, notify=self.mail, expires_in=timedelta(days=3))

    def mail(self, req: pf.CallbackRequest, url: str) -> None:
        text = f"{self.employee} asks for {self.amount}: {req.name} with a POST to {url}"
        OUTBOX.append({"to": self.approver, "expense": req.workflow_id, "event": req.name, "url": url})
        log.info("mail to %s: %s", self.approver, text)

    def approve(self, decision: Decision) -> str:
        self.status, self.comment = "approved", decision.comment
        return f"approved {self.employee}'s {self.amount}"

    def deny(self, decision: Decision) -> str:
        self.status, self.comment = "denied", decision.comment
        return f"denied {self.employee}'s {self.amount}"

    def pay(self) -> None:
        self.status = "paid"


class NewExpense(BaseModel):
    employee: str
    amount: int
    approver: str


def create_example_app(
    db: str = "sqlite:///approvals.db",
    *,
    secret: str | None = None,
    public_url: str = "http://127.0.0.1:8000",
) -> Starlette:
    """The host app. ``secret`` defaults to ``$PROCFLOW_SECRET``.

    Raises:
        SigningConfigError: there is no secret (or it is too short).
    """
    global _signer
    base_url = f"{public_url.rstrip('/')}/hooks"
    if secret:
        _signer = CallbackSigner([secret], base_url=base_url)
    else:
        _signer = CallbackSigner.from_env(base_url=base_url)
    engine = pf.Engine(pf.open_store(db), [Expense])

    async def submit(request: Request) -> JSONResponse:
        try:
            new = NewExpense.model_validate_json(await request.body())
        except ValidationError as e:
            errors = e.errors(include_url=False, include_context=False)
            return JSONResponse({"errors": errors}, status_code=422)
        expense = await engine.start(Expense(new.employee, new.amount, new.approver))
        return JSONResponse({"id": expense.id, "status": expense.status.value}, status_code=201)

    async def outbox(request: Request) -> JSONResponse:
        return JSONResponse(OUTBOX)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with engine:  # mounted apps have no lifespan of their own: the host opens the engine
            yield

    return Starlette(
        routes=[
            Route("/expenses", submit, methods=["POST"]),
            Route("/outbox", outbox),
            Mount("/hooks", app=create_app(engine, signer=_signer, management=False, open_engine=False)),
            Mount("/admin/procflow", app=create_app(engine, open_engine=False)),
        ],
        lifespan=lifespan,
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    port = int(os.environ.get("PORT", "8000"))
    try:
        app = create_example_app(public_url=f"http://127.0.0.1:{port}")
    except SigningConfigError as e:
        print(f"starlette_approval: {e}", file=sys.stderr)
        return 1
    uvicorn.run(app, host="127.0.0.1", port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
