"""What the connectors did, over GraphQL: runs, quarantine, conflicts and webhook deliveries for
the `operator` role, runs and conflicts for auditors, nothing for anyone else; quarantined
payloads only with a purpose and on the record; discarding a quarantined record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from hub.api.ids import to_global_id
from hub.authz.models import AuditRecord
from hub.config import Settings
from hub.db import Database, utcnow
from hub.sync.models import SyncConflict, SyncQuarantine, SyncRun, WebhookDelivery
from tests.policy_clients import PURPOSE, credentials

RUNS = "{ syncRuns { nodes { connector status } } }"
PAYLOAD = {"name": "张三", "idNumber": "110105199003071234", "grid": "G9"}


@asynccontextmanager
async def as_role(
    app: Any, settings: Settings, role: str, *, purpose: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    headers = credentials(settings, role, subject=f"{role}-1", purpose=purpose)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


async def post(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    return response.json()


async def data(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = await post(http, query, **variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


async def audit_records(db: Database, kind: str) -> list[AuditRecord]:
    statement = select(AuditRecord).where(AuditRecord.kind == kind).order_by(AuditRecord.seq)
    async with db.reader() as session:
        return list((await session.scalars(statement)).all())


@pytest.fixture
async def synced(db: Database) -> dict[str, list[int]]:
    """Three runs of two connectors, with what they left: three quarantined records (one
    already replayed), two conflicts, two webhook deliveries."""
    async with db.transaction() as session:
        runs = [
            SyncRun(connector="household", status="ok", fetched=10, created=7, updated=3),
            SyncRun(connector="health", status="failed", error="source answered 503"),
            SyncRun(
                connector="household",
                status="partial",
                fetched=5,
                quarantined=3,
                conflicts=2,
                faults={"http_429": 2},
                full=True,
                policy_version=1,
                finished_at=utcnow(),
            ),
        ]
        session.add_all(runs)
        await session.flush()
        latest = runs[-1].id
        items = [
            SyncQuarantine(
                connector="household",
                run_id=latest,
                external_id=f"H-{n}",
                position=f"line {n}",
                code="INVALID",
                reason="idNumber: check digit does not match",
                payload={**PAYLOAD, "line": n},
            )
            for n in (1, 2)
        ]
        items.append(
            SyncQuarantine(
                connector="health",
                run_id=runs[1].id,
                position="page 1, item 3",
                code="MAPPING",
                reason="no resident with this ID number",
                payload=PAYLOAD,
                status="replayed",
                resolved_at=utcnow(),
            )
        )
        conflicts = [
            SyncConflict(
                connector="household",
                run_id=latest,
                entity="resident",
                record_id=42,
                external_id="H-7",
                field="phone",
                kind="other_source",
                kept="ours",
            ),
            SyncConflict(
                connector="health",
                run_id=runs[1].id,
                entity="resident",
                record_id=None,
                external_id="P-1",
                kind="stale",
                kept="ours",
            ),
        ]
        deliveries = [
            WebhookDelivery(
                delivery_id=f"d-{n}",
                subscription="public-security",
                change_seq=n,
                event_id=100 + n,
                status=status,
                attempts=attempts,
                last_status_code=code,
                next_attempt_at=utcnow() + timedelta(minutes=n),
            )
            for n, status, attempts, code in ((1, "delivered", 1, 204), (2, "dead", 8, 500))
        ]
        session.add_all([*items, *conflicts, *deliveries])
        await session.flush()
        return {
            "runs": [r.id for r in runs],
            "items": [i.id for i in items],
            "conflicts": [c.id for c in conflicts],
        }


class TestOperatorReads:
    async def test_runs_newest_first_page_by_page(
        self, app: Any, settings: Settings, synced: dict[str, list[int]]
    ) -> None:
        runs = synced["runs"]
        query = """query($after: String, $connector: String) {
          syncRuns(first: 2, after: $after, connector: $connector) {
            nodes { id connector trigger status dryRun full policyVersion fetched created
                    updated unchanged quarantined conflicts faults error startedAt finishedAt }
            pageInfo { hasNextPage endCursor }
            totalCount
          }
        }"""
        async with as_role(app, settings, "operator") as http:
            first = (await data(http, query))["syncRuns"]
            rest = (await data(http, query, after=first["pageInfo"]["endCursor"]))["syncRuns"]
            household = (await data(http, query, connector="household"))["syncRuns"]
        ids = [to_global_id("SyncRun", pk) for pk in reversed(runs)]
        assert [n["id"] for n in first["nodes"]] == ids[:2]
        assert first["pageInfo"]["hasNextPage"] is True and first["totalCount"] == 3
        assert [n["id"] for n in rest["nodes"]] == ids[2:]
        assert rest["pageInfo"]["hasNextPage"] is False
        newest = first["nodes"][0]
        assert newest["status"] == "partial" and newest["faults"] == {"http_429": 2}
        assert (newest["quarantined"], newest["conflicts"], newest["full"]) == (3, 2, True)
        assert newest["policyVersion"] == 1 and newest["finishedAt"] is not None
        assert first["nodes"][1]["error"] == "source answered 503"
        assert [n["connector"] for n in household["nodes"]] == ["household", "household"]
        assert household["totalCount"] == 2

    async def test_quarantine_is_oldest_first_and_open_by_default(
        self, app: Any, settings: Settings, synced: dict[str, list[int]]
    ) -> None:
        query = """query($status: QuarantineStatus, $after: String) {
          syncQuarantine(status: $status, first: 1, after: $after) {
            nodes { id connector runId externalId position code reason status attempts
                    receivedAt resolvedAt }
            pageInfo { hasNextPage endCursor }
          }
        }"""
        items = [to_global_id("SyncQuarantineItem", pk) for pk in synced["items"]]
        async with as_role(app, settings, "operator") as http:
            first = await data(http, "{ syncQuarantine { nodes { id status } } }")
            page = (await data(http, query, status="OPEN"))["syncQuarantine"]
            second = await data(http, query, status="OPEN", after=page["pageInfo"]["endCursor"])
            replayed = (await data(http, query, status="REPLAYED"))["syncQuarantine"]
            every = await data(http, "{ syncQuarantine(status: null) { totalCount } }")
        assert first["syncQuarantine"]["nodes"] == [
            {"id": items[0], "status": "OPEN"},
            {"id": items[1], "status": "OPEN"},
        ]
        (oldest,) = page["nodes"]
        assert oldest["id"] == items[0] and page["pageInfo"]["hasNextPage"] is True
        assert oldest["runId"] == to_global_id("SyncRun", synced["runs"][2])
        assert (oldest["externalId"], oldest["position"], oldest["code"]) == (
            "H-1",
            "line 1",
            "INVALID",
        )
        assert [n["id"] for n in second["syncQuarantine"]["nodes"]] == [items[1]]
        assert second["syncQuarantine"]["pageInfo"]["hasNextPage"] is False
        assert [n["id"] for n in replayed["nodes"]] == [items[2]]
        assert replayed["nodes"][0]["resolvedAt"] is not None
        assert every["syncQuarantine"]["totalCount"] == 3

    async def test_conflicts_and_deliveries(
        self, app: Any, settings: Settings, synced: dict[str, list[int]]
    ) -> None:
        query = """{
          syncConflicts { nodes { id connector runId entity recordId externalId field kind
                                  kept at detail } }
          dead: webhookDeliveries(status: "dead") {
            nodes { deliveryId subscription changeSeq eventId status attempts lastStatusCode
                    lastError nextAttemptAt createdAt deliveredAt }
          }
          all: webhookDeliveries(subscription: "public-security") { totalCount }
          none: webhookDeliveries(subscription: "nobody") { totalCount }
        }"""
        async with as_role(app, settings, "operator") as http:
            answer = await data(http, query)
        conflicts = answer["syncConflicts"]["nodes"]
        assert [c["id"] for c in conflicts] == [
            to_global_id("SyncConflict", pk) for pk in reversed(synced["conflicts"])
        ]
        household = conflicts[1]
        assert household["recordId"] == to_global_id("Resident", 42)
        assert (household["field"], household["kind"], household["kept"]) == (
            "phone",
            "other_source",
            "ours",
        )
        assert conflicts[0]["recordId"] is None and conflicts[0]["detail"] == {}
        (dead,) = answer["dead"]["nodes"]
        assert dead["deliveryId"] == "d-2" and dead["eventId"] == to_global_id("Event", 102)
        assert (dead["attempts"], dead["lastStatusCode"], dead["deliveredAt"]) == (8, 500, None)
        assert answer["all"]["totalCount"] == 2 and answer["none"]["totalCount"] == 0

    async def test_the_operator_sees_no_resident_and_no_event(
        self, app: Any, settings: Settings
    ) -> None:
        async with as_role(app, settings, "operator", purpose=PURPOSE) as http:
            for query, field in (
                ("{ residents { totalCount } }", "residents"),
                ("{ events { totalCount } }", "events"),
            ):
                error = (await post(http, query))["errors"][0]
                assert error["message"] == f"Cannot query field '{field}' on type 'Query'."
                assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


class TestPayload:
    QUERY = "{ syncQuarantine { nodes { id payload } } }"

    async def test_the_payload_needs_a_purpose(
        self, app: Any, settings: Settings, db: Database, synced: dict[str, list[int]]
    ) -> None:
        async with as_role(app, settings, "operator") as http:
            refused = await post(http, self.QUERY)
            # Everything but the payload needs no purpose.
            plain = await data(http, "{ syncQuarantine { nodes { reason } } }")
        error = refused["errors"][0]
        assert error["extensions"]["code"] == "PURPOSE_REQUIRED"
        assert error["extensions"]["fields"] == ["SyncQuarantineItem.payload"]
        assert refused.get("data") is None
        assert len(plain["syncQuarantine"]["nodes"]) == 2
        assert await audit_records(db, "read") == []

    async def test_a_read_with_a_purpose_is_on_the_record(
        self, app: Any, settings: Settings, db: Database, synced: dict[str, list[int]]
    ) -> None:
        async with as_role(app, settings, "operator", purpose=PURPOSE) as http:
            answer = await data(http, self.QUERY)
        nodes = answer["syncQuarantine"]["nodes"]
        assert [n["payload"] for n in nodes] == [
            '{"grid":"G9","idNumber":"110105199003071234","line":1,"name":"张三"}',
            '{"grid":"G9","idNumber":"110105199003071234","line":2,"name":"张三"}',
        ]
        (record,) = await audit_records(db, "read")
        assert (record.actor, record.role, record.purpose) == ("operator-1", "operator", PURPOSE)
        assert record.fields == ["SyncQuarantineItem.payload"]
        assert sorted(record.records) == sorted(
            f"SyncQuarantineItem:{pk}" for pk in synced["items"][:2]
        )


class TestOtherRoles:
    async def test_auditors_read_runs_and_conflicts_only(
        self, app: Any, settings: Settings, synced: dict[str, list[int]]
    ) -> None:
        async with as_role(app, settings, "auditor", purpose=PURPOSE) as http:
            answer = await data(
                http,
                "{ syncRuns { totalCount nodes { id status faults } } "
                "syncConflicts { nodes { kind kept recordId } } }",
            )
            refusals = [
                await post(http, "{ syncQuarantine { nodes { id } } }"),
                await post(http, "{ webhookDeliveries { nodes { deliveryId } } }"),
                await post(
                    http,
                    'mutation { discardQuarantined(id: "x", reason: "y") { id } }',
                ),
            ]
        assert answer["syncRuns"]["totalCount"] == 3
        assert len(answer["syncConflicts"]["nodes"]) == 2
        messages = [body["errors"][0]["message"] for body in refusals]
        assert messages == [
            "Cannot query field 'syncQuarantine' on type 'Query'.",
            "Cannot query field 'webhookDeliveries' on type 'Query'.",
            # Auditors call no mutation at all.
            "The mutation operation is not supported by the schema.",
        ]

    @pytest.mark.parametrize("role", ["public", "health"])
    async def test_nobody_else_sees_them(
        self, app: Any, settings: Settings, synced: dict[str, list[int]], role: str
    ) -> None:
        async with as_role(app, settings, role, purpose=PURPOSE) as http:
            for field in ("syncRuns", "syncQuarantine", "syncConflicts", "webhookDeliveries"):
                body = await post(http, f"{{ {field} {{ totalCount }} }}")
                error = body["errors"][0]
                assert error["message"] == f"Cannot query field '{field}' on type 'Query'."
                assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}


class TestDiscard:
    MUTATION = """mutation($id: ID!, $reason: String!) {
      discardQuarantined(id: $id, reason: $reason) { id status reason resolvedAt }
    }"""

    async def test_discarding_an_open_item(
        self, app: Any, settings: Settings, db: Database, synced: dict[str, list[int]]
    ) -> None:
        pk = synced["items"][0]
        item = to_global_id("SyncQuarantineItem", pk)
        async with as_role(app, settings, "operator") as http:
            done = await data(http, self.MUTATION, id=item, reason=" 源系统已更正 ")
            again = await post(http, self.MUTATION, id=item, reason="twice")
            still_open = await data(http, "{ syncQuarantine { nodes { id } } }")
            discarded = await data(
                http, "{ syncQuarantine(status: DISCARDED) { nodes { id reason } } }"
            )
        result = done["discardQuarantined"]
        assert result["id"] == item and result["status"] == "DISCARDED"
        assert result["resolvedAt"] is not None
        assert result["reason"] == "idNumber: check digit does not match\ndiscarded: 源系统已更正"
        error = again["errors"][0]
        assert error["extensions"]["code"] == "INVALID_TRANSITION"
        assert error["message"] == "the quarantined record is already discarded"
        assert [n["id"] for n in still_open["syncQuarantine"]["nodes"]] == [
            to_global_id("SyncQuarantineItem", synced["items"][1])
        ]
        assert discarded["syncQuarantine"]["nodes"] == [{"id": item, "reason": result["reason"]}]
        async with db.reader() as session:
            stored = await session.get(SyncQuarantine, pk)
        assert stored is not None and stored.status == "discarded"
        # The refused second discard changed nothing.
        assert stored.reason == result["reason"]

        ok, refused = await audit_records(db, "mutation")
        assert (ok.actor, ok.role, ok.outcome) == ("operator-1", "operator", "ok")
        assert ok.records == [f"SyncQuarantine:{pk}"]
        assert {"SyncQuarantine.status", "SyncQuarantine.reason"} <= set(ok.fields)
        assert refused.outcome == "error"
        assert refused.detail["codes"] == ["INVALID_TRANSITION"]

    async def test_what_cannot_be_discarded(
        self, app: Any, settings: Settings, synced: dict[str, list[int]]
    ) -> None:
        cases = {
            "replayed": (to_global_id("SyncQuarantineItem", synced["items"][2]), "dealt with"),
            "missing": (to_global_id("SyncQuarantineItem", 987_654), "gone"),
            "another type": (to_global_id("SyncRun", synced["runs"][0]), "wrong id"),
            "no reason": (to_global_id("SyncQuarantineItem", synced["items"][0]), "   "),
        }
        async with as_role(app, settings, "operator") as http:
            codes = {}
            for name, (item, reason) in cases.items():
                body = await post(http, self.MUTATION, id=item, reason=reason)
                codes[name] = body["errors"][0]["extensions"]["code"]
            untouched = await data(http, "{ syncQuarantine { totalCount } }")
        assert codes == {
            "replayed": "INVALID_TRANSITION",
            "missing": "NOT_FOUND",
            "another type": "BAD_USER_INPUT",
            "no reason": "BAD_USER_INPUT",
        }
        assert untouched["syncQuarantine"]["totalCount"] == 2
