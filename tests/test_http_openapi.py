"""The OpenAPI document: valid, one typed operation per event of each registered workflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from http_helpers import SECRET, WORKFLOWS, Order
from openapi_spec_validator import validate
from pydantic import BaseModel, create_model

import procflow as pf
from procflow.http import CallbackSigner, Catalog, WorkflowSampleError, build_openapi, create_app


def document(*workflows: type[Any], samples: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    return build_openapi(Catalog(pf.Engine(pf.MemoryStore(), workflows), samples), **options)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = doc["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    return resolved


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document(*WORKFLOWS))


def test_each_event_of_each_workflow_has_its_own_operation() -> None:
    doc = document(*WORKFLOWS)
    sends = sorted(
        op["operationId"]
        for item in doc["paths"].values()
        for op in item.values()
        if op["operationId"].startswith("send")
    )
    assert sends == [
        "send_Contested_touch",
        "send_Expense_approve",
        "send_Expense_deny",
        "send_Order_approve",
        "send_Order_deny",
    ]


@dataclass
class Ticket:
    """Two events whose names differ only in characters an operationId cannot hold."""

    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("w", pf.OnEvent("close now", lambda: "a"), pf.OnEvent("close_now", lambda: "b")))


@dataclass
class instances:  # a workflow named like a fixed operation's suffix
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("w", pf.OnEvent("go", lambda: None)))


def test_every_operation_id_is_unique_even_for_names_that_only_differ_in_punctuation() -> None:
    doc = document(Ticket, instances)
    validate(doc)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    expected = {"send_Ticket_close_now", "send_Ticket_close_now_2", "list_instances", "list_instances_2"}
    assert expected <= set(ids)


def test_a_starts_body_is_required_when_the_workflows_data_has_a_field_without_default() -> None:
    doc = document(Order, instances)
    assert doc["paths"]["/workflows/Order/instances"]["post"]["requestBody"]["required"] is True
    assert doc["paths"]["/workflows/instances/instances"]["post"]["requestBody"]["required"] is False


def test_an_events_operation_takes_its_payload_schema_and_answers_its_reply_schema() -> None:
    doc = document(Order)
    op = doc["paths"]["/workflows/Order/instances/{key}/events/approve"]["post"]
    payload = resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
    reply = resolve(doc, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert (op["requestBody"]["required"], payload["required"]) == (True, ["approver"])
    assert set(reply["properties"]) == {"item", "approved_by"}


def test_errors_are_documented_as_problem_details() -> None:
    op = document(Order)["paths"]["/workflows/Order/instances/{key}/events/approve"]["post"]
    assert {"404", "409", "413", "415", "422"} <= set(op["responses"])
    assert op["responses"]["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }


def test_every_operation_that_touches_the_store_may_answer_503_and_every_one_500() -> None:
    doc = document(*WORKFLOWS)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "500" in op["responses"], (method, path)
            assert ("503" in op["responses"]) == (path != "/workflows"), (method, path)


def test_a_callbacks_operations_document_the_404_of_an_instance_not_stored_yet() -> None:
    item = document(*WORKFLOWS)["paths"]["/callbacks/{token}"]
    assert "404" in item["get"]["responses"]
    assert "404" in item["post"]["responses"]


def test_a_start_declares_the_location_of_the_new_instance() -> None:
    created = document(Order)["paths"]["/workflows/Order/instances"]["post"]["responses"]["201"]
    assert set(created["headers"]) == {"Location"}


@dataclass
class Inbox:
    def definition(self) -> pf.Section:
        return pf.S(
            pf.Wait(
                "mail",
                pf.OnEvent("anything", self.anything),
                pf.OnEvent("maybe", self.maybe),
                pf.OnEvent("note", self.note),
            )
        )

    def anything(self, payload: Any) -> None:
        pass

    def maybe(self, text: str | None) -> None:
        pass

    def note(self, note: Note) -> None:
        pass


@pytest.mark.parametrize(("event", "required"), [("anything", False), ("maybe", False), ("note", True)])
def test_a_payload_is_required_unless_an_empty_body_is_valid(event: str, required: bool) -> None:
    op = document(Inbox)["paths"][f"/workflows/Inbox/instances/{{key}}/events/{event}"]["post"]
    assert op["requestBody"]["required"] is required


def test_an_event_without_a_payload_has_no_request_body() -> None:
    op = document(*WORKFLOWS)["paths"]["/workflows/Expense/instances/{key}/events/deny"]["post"]
    assert "requestBody" not in op


def test_the_start_body_is_the_workflows_data_without_state_fields() -> None:
    doc = document(Order)
    op = doc["paths"]["/workflows/Order/instances"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"item", "amount", "approved_by", "log"}
    assert "State" not in doc["components"]["schemas"]


class Note(BaseModel):
    text: str


class Wrapper(BaseModel):
    note: Note


@dataclass
class Memo:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("w", pf.OnEvent("post", self.post)))

    def post(self, body: Wrapper) -> Note:
        return body.note


def test_nested_models_move_to_the_components_and_their_refs_resolve() -> None:
    doc = document(Memo)
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["Note"]["required"] == ["text"]
    assert "$defs" not in str(doc["paths"])


# Models named like Note and Wrapper above, with another shape.
OtherNote = create_model("Note", words=(int, ...))
OtherWrapper = create_model("Wrapper", note=(OtherNote, ...))


@dataclass
class Other:
    def definition(self) -> pf.Section:
        return pf.S(pf.Wait("w", pf.OnEvent("post", self.post)))

    def post(self, body: OtherWrapper) -> None:  # type: ignore[valid-type]
        return None


def test_models_of_one_name_and_different_shapes_are_kept_apart() -> None:
    doc = document(Memo, Other)
    validate(doc)
    notes = {k: v for k, v in doc["components"]["schemas"].items() if k.endswith("Note")}
    assert sorted(tuple(v["required"]) for v in notes.values()) == [("text",), ("words",)]


@dataclass
class NeedsData:
    customer: str
    total: int
    express: bool

    def definition(self) -> pf.Section:
        return pf.S(pf.If(self.express, "fast?", pf.Wait("w", pf.OnEvent("go", lambda: None))))


def test_a_workflow_that_needs_arguments_is_read_from_zero_values() -> None:
    assert "/workflows/NeedsData/instances/{key}/events/go" in document(NeedsData)["paths"]


@dataclass
class Picky:
    code: str

    def definition(self) -> pf.Section:
        if not self.code:
            raise ValueError("no code")
        return pf.S(pf.Wait("w", pf.OnEvent("go", lambda: None)))


def test_a_workflow_that_cannot_be_sampled_is_a_clear_error() -> None:
    with pytest.raises(WorkflowSampleError, match="samples="):
        document(Picky)


def test_a_given_sample_is_used() -> None:
    assert (
        "/workflows/Picky/instances/{key}/events/go"
        in document(Picky, samples={"Picky": Picky("x")})["paths"]
    )


def test_a_callbacks_only_document_has_only_the_callback_paths() -> None:
    doc = document(*WORKFLOWS, management=False)
    validate(doc)
    assert list(doc["paths"]) == ["/callbacks/{token}"]


@pytest.mark.anyio
async def test_the_app_serves_the_document_with_its_mount_as_server() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    engine = pf.Engine(pf.MemoryStore(), WORKFLOWS)
    outer = Starlette(routes=[Mount("/flow", app=create_app(engine, signer=CallbackSigner([SECRET])))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as c:
        doc = (await c.get("/flow/openapi.json")).json()
    validate(doc)
    assert doc["servers"] == [{"url": "/flow"}]
    assert "/callbacks/{token}" in doc["paths"]
