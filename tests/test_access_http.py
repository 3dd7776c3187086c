"""Access control end to end over HTTP: who you are, what you may read, and what is recorded.

Identity, purpose, the audit trail of reads and writes, emergency grants, runtime policy
changes applied in every worker, and the per-role SDL endpoint. The exhaustive per-field and
leak tests live in tests/test_policy_*.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from hub.api.audit import FailureBudget
from hub.api.ids import to_global_id
from hub.app import create_app
from hub.authz import apikeys, audit, store
from hub.authz.identity import issue_token
from hub.authz.models import AuditRecord
from hub.authz.viewer import Viewer
from hub.config import Settings
from hub.db import Database, utcnow
from tests.live import in_process_server
from tests.policy_clients import PURPOSE, credentials
from tests.world import World, valid_id_number

RESIDENTS = "{ residents(first: 50) { totalCount nodes { id name idNumber phone } } }"


@asynccontextmanager
async def as_client(app: Any, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


async def post(http: httpx.AsyncClient, query: str, **extra: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, **extra})
    return response.json()  # type: ignore[no-any-return]


async def records(db: Database, kind: str | None = None) -> list[AuditRecord]:
    statement = select(AuditRecord).order_by(AuditRecord.seq)
    if kind is not None:
        statement = statement.where(AuditRecord.kind == kind)
    async with db.reader() as session:
        return list((await session.scalars(statement)).all())


# --- identity ----------------------------------------------------------------------------------


async def test_no_credential_is_the_public_role(app: Any, world: World) -> None:
    async with as_client(app, {}) as http:
        body = await post(http, "{ me { role subject } }")
        assert body["data"]["me"] == {"role": "public", "subject": "anonymous"}
        refused = await post(http, RESIDENTS)
    assert refused["errors"][0]["message"] == "Cannot query field 'residents' on type 'Query'."
    assert "Did you mean" not in json.dumps(refused)


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["public_security"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


async def test_a_bad_credential_is_401_never_another_role(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    good = issue_token(settings, role="health", subject="doctor")
    expired = issue_token(
        settings, role="health", subject="doctor", now=utcnow() - timedelta(hours=2)
    )
    other_secret = replace(settings, jwt_secret="another-secret-of-at-least-32-bytes-long!!")
    foreign = issue_token(other_secret, role="health", subject="doctor")
    unknown_role = issue_token(settings, role="mayor", subject="someone")
    cases = {
        "expired": f"Bearer {expired}",
        "tampered": f"Bearer {_tampered(good)}",
        "foreign": f"Bearer {foreign}",
        "garbage": "Bearer not.a.token",
        "scheme": f"Basic {good}",
        "unknown role": f"Bearer {unknown_role}",
        "unknown key": "Bearer ghk_AAAAAAAA_" + "x" * 43,
    }
    for name, authorization in cases.items():
        async with as_client(app, {"Authorization": authorization}) as http:
            response = await http.post("/graphql", json={"query": "{ me { role } }"})
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", name
        assert "data" not in response.json(), name
    failures = await records(db, "auth_failure")
    assert len(failures) == len(cases)
    assert all(r.outcome == "failed" and r.detail["reason"] for r in failures)


async def test_api_keys_authenticate_until_revoked(app: Any, world: World, db: Database) -> None:
    async with db.transaction() as session:
        _, key = await apikeys.create(session, name="health-system", role="health")
    async with as_client(app, {"Authorization": f"Bearer {key}"}) as http:
        body = await post(http, "{ me { role subject } }")
        assert body["data"]["me"] == {"role": "health", "subject": "apikey:health-system"}
        async with db.transaction() as session:
            await apikeys.revoke(session, name="health-system")
        response = await http.post("/graphql", json={"query": "{ me { role } }"})
    assert response.status_code == 401


async def test_a_token_with_several_roles_names_one(
    app: Any, world: World, settings: Settings
) -> None:
    token = issue_token(settings, role=["health", "civil_affairs"], subject="both")
    async with as_client(app, {"Authorization": f"Bearer {token}"}) as http:
        assert (await http.post("/graphql", json={"query": "{ me { role } }"})).status_code == 401
        chosen = await http.post(
            "/graphql",
            json={"query": "{ me { role } }"},
            headers={"X-GridHub-Role": "civil_affairs"},
        )
        assert chosen.json()["data"]["me"]["role"] == "civil_affairs"
        other = await http.post(
            "/graphql", json={"query": "{ me { role } }"}, headers={"X-GridHub-Role": "auditor"}
        )
        assert other.status_code == 401


# --- purpose and the audit trail -----------------------------------------------------------------


async def test_sensitive_fields_need_a_purpose_and_are_audited(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    headers = credentials(settings, "health", subject="doctor", purpose=None)
    async with as_client(app, headers) as http:
        refused = await post(http, RESIDENTS)
        assert refused["errors"][0]["extensions"]["code"] == "PURPOSE_REQUIRED"
        assert "Resident.idNumber" in refused["errors"][0]["extensions"]["fields"]
        assert "data" not in refused or refused["data"] is None
        # Fields that are not sensitive need no purpose.
        plain = await post(http, "{ residents(first: 3) { nodes { name tags } } }")
        assert "errors" not in plain
        assert await records(db, "read") == []

        by_header = await http.post(
            "/graphql",
            json={"query": RESIDENTS},
            headers={"X-GridHub-Purpose": quote("家访随访 follow-up visits")},
        )
        by_extension = await post(http, RESIDENTS, extensions={"purpose": "慢病管理 chronic care"})
    residents = by_header.json()["data"]["residents"]["nodes"]
    assert residents == by_extension["data"]["residents"]["nodes"]
    # health reads ID numbers and phones masked.
    first = residents[0]
    assert first["idNumber"][:6] == "110105" and "********" in first["idNumber"]
    assert first["phone"][3:7] == "****"

    reads = await records(db, "read")
    assert [r.purpose for r in reads] == ["家访随访 follow-up visits", "慢病管理 chronic care"]
    for record in reads:
        assert record.actor == "doctor" and record.role == "health"
        assert set(record.fields) == {"Resident.idNumber", "Resident.phone"}
        assert len(record.records) == len(world.residents)


async def test_a_mutation_and_its_record_commit_together(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    resident = world.residents[0]  # in G1
    worker = credentials(settings, "grid_worker", subject="worker-1", grids=["C1"])
    update = (
        "mutation($id: ID!, $phone: String) "
        "{ updateResident(id: $id, input: { phone: $phone }) { id } }"
    )
    async with as_client(app, worker) as http:
        ok = await post(
            http,
            update,
            variables={"id": to_global_id("Resident", resident.id), "phone": "13912345678"},
        )
        assert "errors" not in ok, ok
        # G4's resident is outside C1: NOT_FOUND, exactly like a resident that does not exist.
        outside = world.residents[3]
        far = await post(
            http, update, variables={"id": to_global_id("Resident", outside.id), "phone": "1"}
        )
        missing = await post(
            http, update, variables={"id": to_global_id("Resident", 999_999), "phone": "1"}
        )
    assert far["errors"][0]["extensions"] == missing["errors"][0]["extensions"]
    assert far["errors"][0]["message"] == missing["errors"][0]["message"] == "resident not found"

    mutations = await records(db, "mutation")
    assert [r.outcome for r in mutations] == ["ok", "error", "error"]
    assert mutations[0].records == [f"Resident:{resident.id}"]
    assert "Resident.phone" in mutations[0].fields
    assert mutations[0].actor == "worker-1" and mutations[0].role == "grid_worker"
    async with db.reader() as session:
        report = await audit.verify(session)
    assert report.ok, report.reason


async def test_auditors_find_who_read_a_residents_id_number(
    app: Any, world: World, settings: Settings
) -> None:
    resident = world.residents[1]
    police = credentials(settings, "public_security", subject="officer-7")
    query = "query($id: ID!) { resident(id: $id) { idNumber } }"
    async with as_client(app, police) as http:
        body = await post(http, query, variables={"id": to_global_id("Resident", resident.id)})
        assert body["data"]["resident"]["idNumber"] == resident.id_number
    auditor = credentials(settings, "auditor", subject="auditor-1", purpose=None)
    question = """
      query($record: String!) {
        auditLog(filter: { record: $record, field: "Resident.idNumber",
                           since: "2000-01-01T00:00:00+08:00" }) {
          nodes { actor role purpose fields operation }
        }
        auditChain { ok records }
      }"""
    async with as_client(app, auditor) as http:
        answer = await post(
            http, question, variables={"record": to_global_id("Resident", resident.id)}
        )
        health = credentials(settings, "health", purpose=None)
    assert answer["data"]["auditLog"]["nodes"] == [
        {
            "actor": "officer-7",
            "role": "public_security",
            "purpose": PURPOSE,
            "fields": ["Resident.idNumber"],
            "operation": None,
        }
    ]
    assert answer["data"]["auditChain"]["ok"] is True
    # Nobody but the auditor has the access log in their schema.
    async with as_client(app, health) as http:
        refused = await post(http, "{ auditLog { nodes { actor } } }")
    assert refused["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# --- emergency grants ------------------------------------------------------------------------


async def test_an_emergency_grant_widens_the_view_until_it_closes(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    async with as_client(app, credentials(settings, "dispatcher", subject="disp")) as http:
        report = await post(
            http,
            'mutation { reportEvent(input: { category: PUBLIC_SAFETY, title: "x", '
            'gridCode: "G4", reporterSystem: "12345-hotline" }) { id } }',
        )
        assert "errors" not in report, report
    # The police see only events dispatched to them: not this one.
    police = credentials(
        settings, "public_security", subject="officer", department="public_security"
    )
    events = "{ events { totalCount } residents(first: 1) { nodes { name } } }"
    async with as_client(app, police) as http:
        assert (await post(http, events))["data"]["events"]["totalCount"] == 0
        opened = await post(
            http,
            'mutation { openEmergencyGrant(input: { reason: "燃气泄漏 gas leak", '
            'gridCode: "S2", minutes: 30 }) { id active expiresAt } }',
        )
        grant = opened["data"]["openEmergencyGrant"]
        assert grant["active"] is True
        assert (await post(http, events))["data"]["events"]["totalCount"] == 1
        me = await post(http, "{ me { emergency } }")
        assert me["data"]["me"]["emergency"] is True
        closed = await post(
            http, f'mutation {{ closeEmergencyGrant(id: "{grant["id"]}") {{ active }} }}'
        )
        assert closed["data"]["closeEmergencyGrant"]["active"] is False
        assert (await post(http, events))["data"]["events"]["totalCount"] == 0

    emergency = await records(db, "emergency")
    assert [r.actor for r in emergency] == ["officer", "officer"]
    auditor = credentials(settings, "auditor", purpose=None)
    async with as_client(app, auditor) as http:
        grants = await post(
            http, "{ emergencyGrants { nodes { subject reason gridCode active } } }"
        )
    assert grants["data"]["emergencyGrants"]["nodes"] == [
        {"subject": "officer", "reason": "燃气泄漏 gas leak", "gridCode": "S2", "active": False}
    ]


async def test_a_grant_ends_by_itself(app: Any, world: World, settings: Settings) -> None:
    police = credentials(
        settings, "public_security", subject="officer", department="public_security"
    )
    async with as_client(app, police) as http:
        await post(
            http,
            'mutation { openEmergencyGrant(input: { reason: "drill", gridCode: "S1", '
            "minutes: 1 }) { id } }",
        )
        assert (await post(http, "{ me { emergency } }"))["data"]["me"]["emergency"] is True
    registry = app.state.registry
    viewer = Viewer(subject="officer", role="public_security")
    (grant,) = registry.grants
    assert registry.access_for(viewer, now=grant.expires_at - timedelta(seconds=1)).emergency
    assert not registry.access_for(viewer, now=grant.expires_at).emergency


# --- policy changes at runtime ---------------------------------------------------------------


CHANGE = """
  mutation($add: [String!]!, $remove: [String!]!, $reason: String!) {
    changePolicy(input: { add: $add, remove: $remove, reason: $reason }) { version diff actor }
  }"""


async def test_policy_admin_changes_the_policy_in_every_worker(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    # A second worker on the same database, polling quickly.
    other = create_app(replace(settings, policy_poll_seconds=0.1))
    async with other.router.lifespan_context(other):
        admin = credentials(settings, "policy_admin", subject="admin")
        health = credentials(settings, "health")
        phones = "{ residents(first: 1) { nodes { phone } } }"
        async with as_client(app, admin) as http:
            changed = await post(
                http,
                CHANGE,
                variables={
                    "add": [],
                    "remove": ["p, health, Resident.phone, read_masked, allow"],
                    "reason": "health no longer calls residents",
                },
            )
        version = changed["data"]["changePolicy"]
        assert version["version"] == 2 and version["actor"] == "admin"
        assert version["diff"] == "- p, health, Resident.phone, read_masked, allow"
        for worker in (app, other):
            for _ in range(100):
                if worker.state.registry.version == 2:
                    break
                await asyncio.sleep(0.05)
            async with as_client(worker, health) as http:
                gone = await post(http, phones)
            assert gone["errors"][0]["message"] == "Cannot query field 'phone' on type 'Resident'."

        async with as_client(app, admin) as http:
            # Refused: it breaks an auditors' expectation. Nothing is stored.
            refused = await post(
                http,
                CHANGE,
                variables={
                    "add": [],
                    "remove": ["p, health, Resident.idNumber, read, deny"],
                    "reason": "let health read ID numbers",
                },
            )
            assert refused["errors"][0]["extensions"]["code"] == "POLICY_REJECTED"
            assert "expectations" in refused["errors"][0]["message"]
            rolled = await post(
                http,
                'mutation { rollbackPolicy(version: 1, reason: "undo") { version restores } }',
            )
        assert rolled["data"]["rollbackPolicy"] == {"version": 3, "restores": 1}
        async with as_client(app, health) as http:
            back = await post(http, phones)
        assert "errors" not in back

    policy_records = await records(db, "policy")
    assert [r.outcome for r in policy_records] == ["ok", "error", "ok"]


# --- the SDL of the caller's role ------------------------------------------------------------


@pytest.mark.parametrize("role", ["public", "health", "auditor"])
async def test_the_sdl_endpoint_serves_the_callers_schema(
    app: Any, world: World, settings: Settings, role: str
) -> None:
    async with as_client(app, credentials(settings, role)) as http:
        response = await http.get("/graphql/schema.graphql")
    assert response.status_code == 200
    assert response.text == app.state.registry.schema_for(role).as_str() + "\n"
    assert ("type Resident " in response.text) is (role == "health")


# --- WebSocket connections ---------------------------------------------------------------------


async def test_websockets_authenticate_on_the_upgrade(
    app: Any, world: World, settings: Settings
) -> None:
    """The role's schema is chosen before connection_init: a bad credential closes the socket
    with graphql-transport-ws's 4401 and the reason; a good one gets its own role's schema."""
    protocol = [Subprotocol("graphql-transport-ws")]
    async with in_process_server(app) as address:
        url = f"ws://{address}/graphql"
        bad = {"Authorization": "Bearer not.a.token"}
        async with connect(url, subprotocols=protocol, additional_headers=bad) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert closed.value.rcvd.reason == "malformed token"

        health = credentials(settings, "health")
        async with connect(url, subprotocols=protocol, additional_headers=health) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": "{ me { role } auditLog { totalCount } }"},
                    }
                )
            )
            reply = json.loads(await ws.recv())
        # health's schema has no access log: refused by validation, as over HTTP.
        assert reply["type"] == "error"
        assert reply["payload"][0]["message"] == "Cannot query field 'auditLog' on type 'Query'."


async def test_a_browser_brings_its_token_in_connection_init(
    app: Any, world: World, settings: Settings
) -> None:
    """Browsers cannot set headers on a WebSocket: the credential may come in the
    connection_init payload instead, and picks the role's schema before any operation."""
    protocol = [Subprotocol("graphql-transport-ws")]
    token = issue_token(settings, role="auditor", subject="browser-auditor")
    async with in_process_server(app) as address:
        url = f"ws://{address}/graphql"
        async with connect(url, subprotocols=protocol) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            subscribe = {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": "{ me { role subject } auditChain { ok } }"},
            }
            await ws.send(json.dumps(subscribe))
            reply = json.loads(await ws.recv())
        assert reply["type"] == "next", reply
        assert reply["payload"]["data"]["me"] == {"role": "auditor", "subject": "browser-auditor"}

        async with connect(url, subprotocols=protocol) as ws:
            bad = {"type": "connection_init", "payload": {"Authorization": "Bearer forged"}}
            await ws.send(json.dumps(bad))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        assert closed.value.rcvd.reason == "malformed token"


async def test_a_grant_unmasks_only_the_rows_under_its_grid_for_its_own_role(
    app: Any, world: World, settings: Settings
) -> None:
    token = issue_token(settings, role=["health", "civil_affairs"], subject="nurse")
    base = {"Authorization": f"Bearer {token}", "X-GridHub-Purpose": "outbreak"}
    as_health = {**base, "X-GridHub-Role": "health"}
    as_civil = {**base, "X-GridHub-Role": "civil_affairs"}
    ids = "{ residents(first: 50) { nodes { idNumber grid { code } } } }"
    async with as_client(app, as_health) as http:
        opened = await post(
            http,
            'mutation { openEmergencyGrant(input: { reason: "疫情 outbreak", gridCode: "C1", '
            "minutes: 30 }) { id } }",
        )
        assert "errors" not in opened, opened
        nodes = (await post(http, ids))["data"]["residents"]["nodes"]
    full = {r.id_number for r in world.residents}
    under_c1 = [n for n in nodes if n["grid"]["code"] in ("G1", "G2")]
    elsewhere = [n for n in nodes if n["grid"]["code"] not in ("G1", "G2")]
    assert under_c1 and elsewhere
    assert all(n["idNumber"] in full for n in under_c1)
    assert all("********" in n["idNumber"] for n in elsewhere)
    # The same subject acting as its other role has no grant.
    async with as_client(app, as_civil) as http:
        me = await post(http, "{ me { role emergency } }")
        nodes = (await post(http, ids))["data"]["residents"]["nodes"]
    assert me["data"]["me"] == {"role": "civil_affairs", "emergency": False}
    assert all("********" in n["idNumber"] for n in nodes)


async def test_a_stale_worker_cannot_undo_a_change_it_has_not_seen(
    app: Any, world: World, settings: Settings, db: Database
) -> None:
    stale = create_app(settings)  # polls every 300 s in tests: it will not see version 2
    async with stale.router.lifespan_context(stale):
        admin = credentials(settings, "policy_admin", subject="admin")
        revoke = "p, civil_affairs, Resident.householdCode, read, deny"
        unrelated = "p, environment, Notice, rows:published, allow"
        async with as_client(app, admin) as http:
            first = await post(
                http, CHANGE, variables={"add": [revoke], "remove": [], "reason": "revoke"}
            )
        assert "errors" not in first, first
        assert first["data"]["changePolicy"]["version"] == 2
        assert stale.state.registry.version == 1
        async with as_client(stale, admin) as http:
            second = await post(
                http, CHANGE, variables={"add": [unrelated], "remove": [], "reason": "other"}
            )
        assert second["data"]["changePolicy"] == {
            "version": 3,
            "diff": f"+ {unrelated}",
            "actor": "admin",
        }
    async with db.reader() as session:
        latest = await store.current(session)
    assert latest is not None and revoke in latest.text and unrelated in latest.text


def test_failed_logins_past_the_budget_are_counted_not_written() -> None:
    budget = FailureBudget(per_second=0, burst=3)
    assert [budget.take() for _ in range(5)] == [0, 0, 0, None, None]
    budget._tokens = 1  # as if a second had passed
    assert budget.take() == 2  # the next record carries the two it did not write


async def test_the_access_log_is_not_in_other_roles_schemas(
    app: Any, world: World, settings: Settings
) -> None:
    for role in ("public", "health", "policy_admin"):
        async with as_client(app, credentials(settings, role)) as http:
            refused = await post(http, "{ auditChain { ok records } }")
        assert refused["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", role


async def _ws_query(ws: Any, op_id: str, query: str) -> dict[str, Any]:
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def test_a_long_lived_connection_follows_the_policy_and_its_tokens_expiry(
    app: Any, world: World, settings: Settings
) -> None:
    protocol = [Subprotocol("graphql-transport-ws")]
    phones = "{ residents(first: 1) { nodes { phone } } }"
    health = credentials(settings, "health")
    admin = credentials(settings, "policy_admin", subject="admin")
    async with in_process_server(app) as address:
        url = f"ws://{address}/graphql"
        async with connect(url, subprotocols=protocol, additional_headers=health) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            before = await _ws_query(ws, "1", phones)
            assert before["type"] == "next" and "****" in json.dumps(before)
            await ws.recv()  # complete
            async with as_client(app, admin) as http:
                changed = await post(
                    http,
                    CHANGE,
                    variables={
                        "add": [],
                        "remove": ["p, health, Resident.phone, read_masked, allow"],
                        "reason": "no phones",
                    },
                )
            assert "errors" not in changed, changed
            after = await _ws_query(ws, "2", phones)
        # The same connection now runs the new policy's schema.
        assert after["type"] == "error"
        assert after["payload"][0]["message"] == "Cannot query field 'phone' on type 'Resident'."

        brief = issue_token(settings, role="health", subject="brief", ttl=timedelta(seconds=1))
        headers = {"Authorization": f"Bearer {brief}"}
        async with connect(url, subprotocols=protocol, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await asyncio.sleep(1.2)
            await ws.send(
                json.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": "{ me { role } }"}}
                )
            )
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_creating_outside_the_scope_says_nothing_about_the_rest_of_the_input(
    app: Any, world: World, settings: Settings
) -> None:
    """An ID number that exists elsewhere and one that exists nowhere get the same refusal when
    the grid is outside the worker's scope: no existence oracle."""
    create = (
        "mutation($id: String!) { createResident(input: "
        '{ name: "探", idNumber: $id, address: "x", gridCode: "G4" }) { id } }'
    )
    worker = credentials(settings, "grid_worker", grids=["C1"])
    taken = world.residents[3].id_number  # a resident in G4
    free = valid_id_number(777)
    async with as_client(app, worker) as http:
        answers = [await post(http, create, variables={"id": n}) for n in (taken, free)]
    errors = [answer["errors"][0] for answer in answers]
    assert errors[0]["message"] == errors[1]["message"] == "gridCode is outside your scope"
    assert errors[0]["extensions"] == errors[1]["extensions"]


async def test_the_public_follows_its_feedback_by_tracking_code_only(
    app: Any, world: World, settings: Settings
) -> None:
    submit = (
        'mutation { submitFeedback(input: { kind: COMPLAINT, content: "楼道灯坏了", '
        'gridCode: "G1" }) { id trackingCode status } }'
    )
    async with as_client(app, {}) as public:
        submitted = (await post(public, submit))["data"]["submitFeedback"]
        track = "query($c: String!) { feedback(trackingCode: $c) { trackingCode status response } }"
        found = await post(public, track, variables={"c": submitted["trackingCode"]})
        wrong = await post(public, track, variables={"c": "FB2222222222"})
        by_id = await post(
            public,
            "query($id: ID!) { feedback(id: $id) { status } }",
            variables={"id": submitted["id"]},
        )
        listed = await post(public, "{ feedbackList { totalCount } }")
        content = await post(public, track.replace("response", "content"), variables={"c": "x"})
    assert found["data"]["feedback"] == {
        "trackingCode": submitted["trackingCode"],
        "status": "SUBMITTED",
        "response": None,
    }
    assert wrong["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # The code is the key: by id, in a list, or for its content, the public sees nothing.
    assert by_id["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert listed["data"]["feedbackList"]["totalCount"] == 0
    assert content["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_workers_starting_together_seed_the_policy_once(
    settings: Settings, db: Database
) -> None:
    apps = [create_app(settings) for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(
            *(stack.enter_async_context(a.router.lifespan_context(a)) for a in apps)
        )
        assert {a.state.registry.version for a in apps} == {1}
    async with db.reader() as session:
        assert await store.latest_version(session) == 1
