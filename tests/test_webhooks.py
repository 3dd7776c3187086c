"""Outbound webhooks: the outbox, the delivery log and real HTTP to a receiver on 127.0.0.1.

The receiver is a Starlette app under uvicorn that checks every signature, records what arrives
and fails on demand: at random (seeded) with 500 or by hanging past the client's timeout, or
always for the events it is told to refuse.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.authz.access import Access
from hub.authz.models import AuditRecord
from hub.authz.profile import Level
from hub.authz.writes import WritePermit
from hub.connectors import webhooks
from hub.connectors.definition import load_file
from hub.connectors.records import Faults
from hub.connectors.webhooks import Subscription
from hub.db import Database, utcnow
from hub.events import service as events
from hub.events.models import EventChangeRecord
from hub.events.states import Action
from hub.sync.models import SyncState, WebhookDelivery
from tests.live import in_process_server
from tests.policy_clients import SUPERUSER, access_as, write_policy_dir
from tests.world import World

SECRET = b"webhook-secret-for-tests-0123456789"
TIMEOUT = 0.2  # the client's; a hanging receiver answers after HANG


@dataclass
class Receiver:
    """What the fake departmental system saw, and how it misbehaves."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    failure_rate: float = 0.0
    refuse_codes: set[str] = field(default_factory=set)
    hang: float = 0.5
    # Every request, in arrival order: (delivery id, headers, parsed body, signature valid).
    requests: list[tuple[str, dict[str, str], dict[str, Any], bool]] = field(default_factory=list)
    # Deduplicated by delivery id, first arrival kept: what the receiver acts on.
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        valid = webhooks.verify_signature(
            SECRET,
            request.headers.get("x-gridhub-timestamp", ""),
            body,
            request.headers.get("x-gridhub-signature", ""),
            now=utcnow(),
        )
        payload = json.loads(body)
        delivery_id = request.headers.get("x-gridhub-delivery", "")
        self.requests.append((delivery_id, dict(request.headers), payload, valid))
        if not valid:
            return Response(status_code=401)
        if payload["event"].get("code") in self.refuse_codes:
            return Response(status_code=503)
        roll = self.rng.random()
        if roll < self.failure_rate * 2 / 3:
            return Response(status_code=500)
        if roll < self.failure_rate:
            # Recorded as seen below only if the client still listens; it will not (timeout),
            # so the sender retries what the receiver may already hold: a duplicate to drop.
            await asyncio.sleep(self.hang)
        self.seen.setdefault(delivery_id, payload)
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    state = Receiver()
    app = Starlette(routes=[Route("/hook", state.endpoint, methods=["POST"])])
    async with in_process_server(app) as address:
        yield state, f"http://{address}/hook"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def subscription(url: str, **kw: Any) -> Subscription:
    values: dict[str, Any] = {
        "name": "ps_hook",
        "url": url,
        "secret": SECRET,
        "subject": "connector:public_security",
        "timeout_seconds": TIMEOUT,
        "backoff_base_seconds": 0.0,
    }
    return Subscription(**(values | kw))


def superuser(policy_dir: Path) -> Access:
    return access_as(SUPERUSER, policy_dir)


async def report(db: Database, title: str, grid: str = "G1", **kw: Any) -> int:
    async with db.transaction() as session:
        event = await events.report(
            session,
            report=events.EventReport(
                category="sanitation",
                title=title,
                grid_code=grid,
                description="张三 住在 3号楼 501, 电话 13800000000",
                reporter_system="12345",
                **kw,
            ),
            actor="test",
        )
        return event.id


async def act(db: Database, event_id: int, action: Action, **kw: Any) -> None:
    async with db.transaction() as session:
        await events.transition(session, event_id=event_id, action=action, actor="test", **kw)


async def dispatch(db: Database, event_id: int, department: str) -> None:
    await act(db, event_id, Action.ACCEPT)
    await act(db, event_id, Action.DISPATCH, department_code=department)


async def code_of(db: Database, event_id: int) -> str:
    async with db.reader() as session:
        return (await events.get(session, event_id=event_id)).code


async def changes(db: Database) -> list[EventChangeRecord]:
    async with db.reader() as session:
        return list(
            await session.scalars(select(EventChangeRecord).order_by(EventChangeRecord.seq))
        )


async def deliveries(db: Database) -> list[WebhookDelivery]:
    async with db.reader() as session:
        return list(
            await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.change_seq))
        )


class TestOutbox:
    async def test_every_change_is_recorded_with_its_version_and_no_personal_data(
        self, db: Database, world: World
    ) -> None:
        event_id = await report(db, "垃圾堆积")
        await dispatch(db, event_id, "public_security")
        async with db.transaction() as session:
            await events.add_note(session, event_id=event_id, actor="test", note="已联系 李四")
        rows = await changes(db)
        assert [(r.action, r.version) for r in rows] == [
            ("report", 1),
            ("accept", 2),
            ("dispatch", 3),
            ("note", 3),
        ]
        assert all(r.event_id == event_id for r in rows)
        dispatched = rows[2].snapshot
        assert dispatched["status"] == "dispatched"
        assert dispatched["grid_code"] == "G1"
        assert dispatched["department_code"] == "public_security"
        assert dispatched["department_id"] == world.departments["public_security"].id
        assert dispatched["version"] == 3
        text = json.dumps([r.snapshot for r in rows], ensure_ascii=False)
        for personal in ("张三", "13800000000", "李四", "12345"):
            assert personal not in text
        for key in ("description", "lng", "lat", "reporter_system", "reporter_kind"):
            assert all(key not in r.snapshot for r in rows)

    async def test_a_rolled_back_change_leaves_no_outbox_row(
        self, db: Database, world: World
    ) -> None:
        event_id = await report(db, "井盖缺失")
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await events.transition(
                    session, event_id=event_id, action=Action.ACCEPT, actor="test"
                )
                await events.report(
                    session,
                    report=events.EventReport(
                        category="other", title="回滚", grid_code="G2", reporter_system="x"
                    ),
                    actor="test",
                )
                assert len((await session.scalars(select(EventChangeRecord))).all()) == 3
                raise RuntimeError("abort the unit of work")
        assert [r.action for r in await changes(db)] == ["report"]


class TestDelivery:
    async def test_deliveries_arrive_signed_with_their_id_and_are_audited(
        self,
        db: Database,
        world: World,
        policy_dir: Path,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
    ) -> None:
        state, url = receiver
        event_id = await report(db, "路灯不亮")
        await dispatch(db, event_id, "public_security")
        sub = subscription(url)
        result = await webhooks.run_once(
            db, subscription=sub, access=superuser(policy_dir), client=http
        )
        assert (result.enqueued, result.delivered, result.failed, result.dead) == (3, 3, 0, 0)
        assert len(state.requests) == 3
        assert all(valid for *_, valid in state.requests)
        rows = await deliveries(db)
        assert [r.status for r in rows] == ["delivered"] * 3
        code = await code_of(db, event_id)
        for row, (delivery_id, headers, body, _) in zip(rows, state.requests, strict=True):
            assert delivery_id == row.delivery_id == body["delivery_id"]
            assert headers["x-gridhub-event"] == body["action"]
            assert body["change_seq"] == row.change_seq
            assert body["event"]["code"] == code
            assert row.last_status_code == 204 and row.attempts == 1
        assert [body["action"] for *_, body, _ in state.requests] == [
            "report",
            "accept",
            "dispatch",
        ]
        last = state.requests[-1][2]["event"]
        assert last["departmentCode"] == "public_security"
        assert last["gridCode"] == "G1"
        assert last["version"] == 3
        assert "description" not in last
        async with db.reader() as session:
            records = list(
                await session.scalars(select(AuditRecord).where(AuditRecord.kind == "delivery"))
            )
        assert records
        assert all(r.actor == "connector:public_security" for r in records)
        assert {f"Event:{event_id}"} == {x for r in records for x in r.records}
        assert "Event.title" in records[0].fields

        # Nothing new: a second run sends nothing, and re-enqueueing from the start is harmless.
        again = await webhooks.run_once(
            db, subscription=sub, access=superuser(policy_dir), client=http
        )
        assert (again.enqueued, again.delivered) == (0, 0)
        async with db.transaction() as session:
            assert (
                await webhooks.enqueue(
                    session, subscription=sub, access=superuser(policy_dir), after_seq=0
                )
                == 0
            )
        assert len(state.requests) == 3

    async def test_with_random_failures_every_change_arrives_in_order_per_event(
        self,
        db: Database,
        world: World,
        policy_dir: Path,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
    ) -> None:
        state, url = receiver
        state.failure_rate = 0.3
        ids = [await report(db, f"事件{n}", grid=f"G{n % 4 + 1}") for n in range(6)]
        for n, event_id in enumerate(ids):
            await dispatch(db, event_id, "public_security")
            if n % 2:
                await act(db, event_id, Action.START)
                await act(db, event_id, Action.RESOLVE)
        sub = subscription(url)
        expected = {r.seq for r in await changes(db)}
        delivered: set[int] = set()
        for _ in range(100):
            await webhooks.run_once(db, subscription=sub, access=superuser(policy_dir), client=http)
            delivered = {r.change_seq for r in await deliveries(db) if r.status == "delivered"}
            if delivered == expected:
                break
        assert delivered == expected
        assert any(r.attempts > 1 for r in await deliveries(db))  # failures did happen
        assert all(valid for *_, valid in state.requests)
        # What the receiver acts on, in its arrival order, deduplicated by delivery id.
        by_event: dict[str, list[tuple[int, int]]] = {}
        for body in state.seen.values():
            by_event.setdefault(body["event"]["code"], []).append(
                (body["change_seq"], body["event"]["version"])
            )
        assert sum(len(v) for v in by_event.values()) == len(expected)
        for seen in by_event.values():
            assert seen == sorted(seen)
            assert [version for _, version in seen] == list(range(1, len(seen) + 1))

    async def test_a_department_subject_hears_only_of_its_events(
        self,
        db: Database,
        world: World,
        policy_dir: Path,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
    ) -> None:
        state, url = receiver
        ours = await report(db, "治安纠纷")
        await dispatch(db, ours, "public_security")
        theirs = await report(db, "传染病")
        await dispatch(db, theirs, "health")
        await report(db, "未分派")
        department = world.departments["public_security"]
        access = access_as(
            "public_security",
            policy_dir,
            department_code=department.code,
            department_id=department.id,
        )
        result = await webhooks.run_once(
            db, subscription=subscription(url), access=access, client=http
        )
        assert result.delivered == 3
        assert {r.event_id for r in await deliveries(db)} == {ours}
        codes = {body["event"]["code"] for *_, body, _ in state.requests}
        assert codes == {await code_of(db, ours)}
        # The cursor moved past the invisible changes: they are not looked at again.
        async with db.reader() as session:
            state_row = await session.get(SyncState, "ps_hook")
        assert state_row is not None and state_row.cursor is not None
        assert state_row.cursor["seq"] == max(r.seq for r in await changes(db))

    async def test_fields_the_subject_cannot_read_are_not_sent(
        self,
        db: Database,
        world: World,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
        tmp_path: Path,
    ) -> None:
        state, url = receiver
        event_id = await report(db, "秘密标题", deadline=utcnow() + timedelta(days=1))
        await dispatch(db, event_id, "public_security")
        # A subscriber that sees every event but reads only some of its fields (the public
        # role no longer sees events in any list, so it cannot stand in for one).
        watcher_policy = write_policy_dir(tmp_path)
        with (watcher_policy / "policy.csv").open("a", encoding="utf-8") as lines:
            lines.write(
                "p, watcher, Event, rows:all, allow\n"
                "p, watcher, Event.code, read, allow\n"
                "p, watcher, Event.status, read, allow\n"
                "p, watcher, Event.grid, read, allow\n"
                "p, watcher, Grid.code, read, allow\n"
                "p, watcher, Grid, rows:all, allow\n"
            )
        watcher = access_as("watcher", watcher_policy)
        # The premise, read off the policy rather than copied from it.
        for hidden in ("Event.title", "Event.department", "Event.description"):
            assert watcher.level(hidden) is Level.HIDDEN
        readable = {
            name
            for name, policy_field in webhooks.BODY_FIELDS.values()
            if watcher.level(policy_field) is Level.FULL
        }
        assert readable == {"code", "status", "gridCode"}
        result = await webhooks.run_once(
            db, subscription=subscription(url), access=watcher, client=http
        )
        assert result.delivered == 3
        for *_, body, _ in state.requests:
            assert set(body["event"]) == readable
        raw = json.dumps([body for *_, body, _ in state.requests], ensure_ascii=False)
        assert "秘密标题" not in raw and "public_security" not in raw
        async with db.reader() as session:
            fields = {
                f
                for r in await session.scalars(
                    select(AuditRecord).where(AuditRecord.kind == "delivery")
                )
                for f in r.fields
            }
        assert "Event.title" not in fields and "Event.code" in fields

    async def test_a_dead_delivery_holds_back_its_event_only_until_redelivered(
        self,
        db: Database,
        world: World,
        policy_dir: Path,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
    ) -> None:
        state, url = receiver
        stuck = await report(db, "卡住")
        other = await report(db, "正常")
        await act(db, stuck, Action.ACCEPT)
        await act(db, other, Action.ACCEPT)
        stuck_code = await code_of(db, stuck)
        state.refuse_codes = {stuck_code}
        sub = subscription(url, max_attempts=2)
        access = superuser(policy_dir)

        first = await webhooks.run_once(db, subscription=sub, access=access, client=http)
        assert (first.delivered, first.failed, first.dead, first.blocked) == (2, 1, 0, 1)
        second = await webhooks.run_once(db, subscription=sub, access=access, client=http)
        assert (second.delivered, second.failed, second.dead, second.blocked) == (0, 0, 1, 1)
        rows = {(r.event_id, r.status) for r in await deliveries(db)}
        assert rows == {(stuck, "dead"), (stuck, "pending"), (other, "delivered")}

        # The receiver is fixed, but the dead one stays dead and still holds back the next.
        state.refuse_codes = set()
        third = await webhooks.run_once(db, subscription=sub, access=access, client=http)
        assert (third.delivered, third.blocked) == (0, 1)

        assert await webhooks.redeliver(db, subscription_name="other") == 0
        assert await webhooks.redeliver(db, subscription_name=sub.name) == 1
        fourth = await webhooks.run_once(db, subscription=sub, access=access, client=http)
        assert (fourth.delivered, fourth.blocked) == (2, 0)
        assert all(r.status == "delivered" for r in await deliveries(db))
        stuck_seen = [b["action"] for b in state.seen.values() if b["event"]["code"] == stuck_code]
        assert stuck_seen == ["report", "accept"]

    async def test_a_change_committed_behind_the_cursor_is_still_enqueued(
        self,
        db: Database,
        world: World,
        policy_dir: Path,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
    ) -> None:
        """On PostgreSQL a lower seq can commit after a higher one was enqueued: simulated by
        taking a row out and putting it back after the cursor passed it."""
        event_id = await report(db, "并发")
        await act(db, event_id, Action.ACCEPT)
        await act(db, event_id, Action.REJECT, note="重复")
        rows = await changes(db)
        middle = rows[1]
        async with db.transaction() as session:
            await session.execute(
                delete(EventChangeRecord).where(EventChangeRecord.seq == middle.seq)
            )
        _, url = receiver
        sub = subscription(url)
        access = superuser(policy_dir)
        async with db.transaction() as session:
            assert await webhooks.enqueue(session, subscription=sub, access=access) == 2
        async with db.transaction() as session:
            session.add(
                EventChangeRecord(
                    seq=middle.seq,
                    event_id=middle.event_id,
                    version=middle.version,
                    action=middle.action,
                    snapshot=middle.snapshot,
                    at=middle.at,
                )
            )
        async with db.transaction() as session:
            assert await webhooks.enqueue(session, subscription=sub, access=access) == 1
        async with db.reader() as session:
            count = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        assert count == 3


class TestSignatures:
    def test_verify_accepts_the_signature_and_refuses_tampering_and_staleness(self) -> None:
        now = utcnow()
        stamp = int(now.timestamp())
        body = b'{"delivery_id":"abc","event":{"status":"closed"}}'
        header = webhooks.sign(SECRET, stamp, body)
        assert header.startswith("sha256=")
        assert webhooks.verify_signature(SECRET, stamp, body, header, now=now)
        assert webhooks.verify_signature(SECRET, str(stamp), body, header, now=now)
        tampered = body.replace(b"closed", b"open")
        assert not webhooks.verify_signature(SECRET, stamp, tampered, header, now=now)
        assert not webhooks.verify_signature(b"another-secret", stamp, body, header, now=now)
        old = stamp - 301
        stale = webhooks.sign(SECRET, old, body)
        assert not webhooks.verify_signature(SECRET, old, body, stale, now=now)
        assert webhooks.verify_signature(SECRET, old, body, stale, now=now, tolerance=400)
        future = stamp + 301
        assert not webhooks.verify_signature(
            SECRET, future, body, webhooks.sign(SECRET, future, body), now=now
        )
        # The timestamp is signed too: moving it forward breaks the signature.
        assert not webhooks.verify_signature(SECRET, stamp + 1, body, header, now=now)
        assert not webhooks.verify_signature(SECRET, "soon", body, header, now=now)


class TestSubscriptionOptions:
    def test_options_from_a_definition(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PS_HOOK_SECRET", "s" * 32)
        sub = Subscription.from_options(
            name="ps_hook",
            subject="connector:public_security",
            options={
                "url": "https://ps.example/hook",
                "secret_env": "PS_HOOK_SECRET",
                "department": "public_security",
                "categories": ["public_safety"],
                "max_attempts": 5,
                "timeout_seconds": 3,
            },
        )
        assert sub.secret == b"s" * 32 and "sss" not in repr(sub)
        assert (sub.max_attempts, sub.timeout_seconds) == (5, 3.0)
        assert sub.wants({"category": "public_safety"})
        assert not sub.wants({"category": "sanitation"})
        assert replace(sub, categories=frozenset(), departments=frozenset({"health"})).wants(
            {"department_code": "health"}
        )
        monkeypatch.delenv("PS_HOOK_SECRET")
        with pytest.raises(ValueError, match="PS_HOOK_SECRET"):
            Subscription.from_options(
                name="ps_hook",
                subject="connector:public_security",
                options={"url": "https://ps.example/hook", "secret_env": "PS_HOOK_SECRET"},
            )
        with pytest.raises(ValueError, match="unknown"):
            Subscription.from_options(
                name="x", subject="connector:x", options={"url": "https://x", "secret": "y"}
            )


class TestDefinition:
    async def test_the_engine_entry_point_runs_a_webhook_definition(
        self,
        db: Database,
        world: World,
        policy_dir: Path,
        receiver: tuple[Receiver, str],
        http: httpx.AsyncClient,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        state, url = receiver
        monkeypatch.setenv("TEST_HOOK_URL", url)
        monkeypatch.setenv("TEST_HOOK_SECRET", SECRET.decode())
        path = tmp_path / "ps-hook.toml"
        path.write_text(
            'name = "ps-hook"\nkind = "webhook"\ndirection = "push"\nentity = "event"\n'
            'subject = "connector:public_security"\ndepartment = "public_security"\n'
            '[source]\nurl = "${TEST_HOOK_URL}"\nsecret_env = "TEST_HOOK_SECRET"\n'
            "timeout_seconds = 0.2\nbackoff_base_seconds = 0\n",
            encoding="utf-8",
        )
        ours = await report(db, "派给公安")
        await dispatch(db, ours, "public_security")
        await report(db, "未分派")
        department = world.departments["public_security"]
        permit = WritePermit(
            access=access_as(
                "public_security",
                policy_dir,
                department_code=department.code,
                department_id=department.id,
            )
        )
        state.refuse_codes = {await code_of(db, ours)}
        faults = Faults()
        failed = await webhooks.run_definition(
            db, load_file(path), permit, faults=faults, client=http
        )
        assert (failed.enqueued, failed.delivered, failed.failed) == (3, 0, 1)
        assert faults.counts == {"HTTP 503": 1}
        state.refuse_codes = set()
        result = await webhooks.run_definition(db, load_file(path), permit, client=http)
        assert result.delivered == 3
        assert {b["event"]["code"] for b in state.seen.values()} == {await code_of(db, ours)}

        monkeypatch.delenv("TEST_HOOK_SECRET")
        with pytest.raises(webhooks.WebhookError, match="TEST_HOOK_SECRET"):
            await webhooks.run_definition(db, load_file(path), permit, client=http)
