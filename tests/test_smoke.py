from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import procflow as pf


@dataclass
class Approval:
    state: pf.State = field(default_factory=lambda: pf.State.new("a-1", "approval"))
    log: list[str] = field(default_factory=list)

    def definition(self) -> pf.Section:
        return pf.S(
            pf.Step("reserve", lambda: self.log.append("reserve")),
            pf.Wait(
                "decision",
                pf.OnEvent("approve", self.on_approve, pf.Step("ship", lambda: self.log.append("ship"))),
            ),
        )

    def on_approve(self, who: str) -> str:
        self.log.append(f"approved by {who}")
        return "ok"


@pytest.mark.anyio
async def test_an_order_parks_on_its_wait_and_finishes_after_the_event() -> None:
    wf = Approval()
    await pf.resume(wf, wf.state, lambda kind: None)
    assert wf.state.status == pf.WorkflowStatus.WAITING
    reply = await pf.handle_callback(pf.CallbackRequest(name="approve"), wf, wf.state, '"ann"')
    await pf.resume(wf, wf.state, lambda kind: None)
    assert reply == "ok"
    assert wf.log == ["reserve", "approved by ann", "ship"]
    assert wf.state.status == pf.WorkflowStatus.FINISHED
