"""A mutation's access-log record names the rows and fields it wrote, also when the write is a
conditional UPDATE (publishing and retracting a notice, answering feedback): an auditor asking
"who published notice 12?" must find the answer in the log, not a record naming nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from hub.api.ids import parse_global_id
from hub.authz import audit
from hub.authz.models import AuditRecord
from hub.config import Settings
from hub.db import Database
from tests.policy_clients import credentials
from tests.world import World

CREATE = (
    'mutation Draft { createNotice(input: {title: "停水通知", body: "明日停水", '
    'departmentCode: "community_service", gridCodes: ["C1"]}) { id } }'
)
PUBLISH = "mutation Publish($id: ID!) { publishNotice(id: $id) { status } }"
RETRACT = "mutation Retract($id: ID!) { retractNotice(id: $id) { status } }"
SUBMIT = (
    'mutation Submit { submitFeedback(input: {kind: COMPLAINT, content: "楼道堆物", '
    'gridCode: "G1"}) { trackingCode } }'
)
RESPOND = (
    "mutation Respond($code: String!) { respondToFeedback(trackingCode: $code, "
    'response: "已清理", departmentCode: "community_service") { status } }'
)
LOG = """query Log($record: String!) {
  auditLog(filter: { record: $record, kind: "mutation" }, direction: ASC, first: 10) {
    nodes { actor role operation records fields outcome }
  }
}"""


@asynccontextmanager
async def as_client(app: Any, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


async def post(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    return response.json()  # type: ignore[no-any-return]


async def data(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = await post(http, query, **variables)
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def mutations(db: Database, operation: str) -> list[AuditRecord]:
    statement = (
        select(AuditRecord)
        .where(AuditRecord.kind == "mutation", AuditRecord.operation == operation)
        .order_by(AuditRecord.seq)
    )
    async with db.reader() as session:
        return list((await session.scalars(statement)).all())


def office(settings: Settings) -> dict[str, str]:
    return credentials(
        settings,
        "community_admin",
        subject="office-1",
        grids=["C1"],
        department="community_service",
    )


async def test_publishing_and_retracting_a_notice_names_it_and_its_fields(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    async with as_client(app, office(settings)) as http:
        notice_id = (await data(http, CREATE))["createNotice"]["id"]
        await data(http, PUBLISH, id=notice_id)
        await data(http, RETRACT, id=notice_id)
        # Retracting twice is refused: that attempt changed nothing, and its record says so.
        again = await post(http, RETRACT, id=notice_id)
    assert again["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    record = f"Notice:{parse_global_id(notice_id, field='id')[1]}"

    published = await mutations(db, "Publish")
    assert [(r.outcome, r.actor, r.role) for r in published] == [
        ("ok", "office-1", "community_admin")
    ]
    assert published[0].records == [record]
    assert set(published[0].fields) == {"Notice.status", "Notice.publishedAt"}

    retracted = await mutations(db, "Retract")
    assert [r.outcome for r in retracted] == ["ok", "error"]
    assert retracted[0].records == [record]
    assert set(retracted[0].fields) == {"Notice.status", "Notice.retractedAt"}
    assert retracted[1].records == [] and retracted[1].fields == []
    assert retracted[1].detail["codes"] == ["INVALID_TRANSITION"]

    # What the auditor asks: every change to this notice, who made it and what it touched.
    auditor = credentials(settings, "auditor", subject="auditor-1")
    async with as_client(app, auditor) as http:
        log = (await data(http, LOG, record=record))["auditLog"]["nodes"]
    assert [(n["operation"], n["actor"], n["outcome"]) for n in log] == [
        ("Draft", "office-1", "ok"),
        ("Publish", "office-1", "ok"),
        ("Retract", "office-1", "ok"),
    ]
    assert "Notice.publishedAt" in log[1]["fields"]
    async with db.reader() as session:
        report = await audit.verify(session)
    assert report.ok, report.reason


async def test_answering_feedback_names_it_and_its_fields(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    async with as_client(app, {}) as public:
        code = (await data(public, SUBMIT))["submitFeedback"]["trackingCode"]
    async with as_client(app, office(settings)) as http:
        answered = await data(http, RESPOND, code=code)
        again = await post(http, RESPOND, code=code)
    assert answered["respondToFeedback"]["status"] == "RESPONDED"
    assert again["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"

    responses = await mutations(db, "Respond")
    assert [(r.outcome, r.actor) for r in responses] == [("ok", "office-1"), ("error", "office-1")]
    [named] = responses[0].records
    assert named.startswith("Feedback:")
    assert set(responses[0].fields) == {
        "Feedback.status",
        "Feedback.response",
        "Feedback.responderDepartmentId",
        "Feedback.respondedAt",
    }
    assert responses[1].records == [] and responses[1].fields == []
    # The submission and the answer name the same row.
    submitted = await mutations(db, "Submit")
    assert submitted[0].records == [named]


async def test_of_concurrent_publications_only_the_winners_record_names_the_notice(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    async with as_client(app, office(settings)) as http:
        notice_id = (await data(http, CREATE))["createNotice"]["id"]
        results = await asyncio.gather(*(post(http, PUBLISH, id=notice_id) for _ in range(4)))
    winners = [body for body in results if "errors" not in body]
    assert len(winners) == 1, results
    records = await mutations(db, "Publish")
    assert sorted(r.outcome for r in records) == ["error", "error", "error", "ok"]
    [won] = [r for r in records if r.outcome == "ok"]
    assert won.records == [f"Notice:{parse_global_id(notice_id, field='id')[1]}"]
    assert set(won.fields) == {"Notice.status", "Notice.publishedAt"}
    assert all(r.records == [] for r in records if r.outcome == "error")


async def test_clearing_a_residents_tags_names_the_tags_field(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    async with as_client(app, credentials(settings, "superuser")) as http:
        first = await data(http, "query R { residents(first: 1) { nodes { id } } }")
        global_id = first["residents"]["nodes"][0]["id"]
        update = (
            "mutation Tags($id: ID!, $tags: [String!]!) { updateResident(id: $id, "
            "input: {tags: $tags}) { tags } }"
        )
        assert (await data(http, update, id=global_id, tags=["elderly"]))["updateResident"][
            "tags"
        ] == ["elderly"]
        assert (await data(http, update, id=global_id, tags=[]))["updateResident"]["tags"] == []
    records = await mutations(db, "Tags")
    assert len(records) == 2
    cleared = records[-1]
    # Removing the last tag is a write of the resident's tags, on the record like adding one.
    assert any(record.startswith("Resident:") for record in cleared.records)
    assert "Resident.tags" in cleared.fields, cleared.fields
