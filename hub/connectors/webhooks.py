"""Outbound webhooks: event changes sent to the departments' systems that subscribe to them.

Two steps, each resumable after a crash:

1. `enqueue` reads the outbox (hub.events.outbox) after the subscription's cursor, keeps the
   changes of events the subscriber's policy subject may see, and writes one `WebhookDelivery`
   per change: the delivery log. The log rows and the cursor commit together.
2. `deliver` POSTs pending deliveries, signed, and records each outcome in a transaction of its
   own. A delivery that fails is retried with exponential backoff and jitter; after
   `max_attempts` it is dead until `redeliver` puts it back.

Guarantees a receiver can rely on:

- At least once: a delivery is marked delivered only after a 2xx, and only then; a crash between
  the 2xx and that commit sends it again. `delivery_id` (also the `X-GridHub-Delivery` header)
  is the same on every attempt: deduplicate by it.
- In order per event: a change of an event is not sent while an earlier change of the same event
  is undelivered (pending or dead) for this subscription. Other events go on meanwhile.
- Only what the subject may read: events outside its row scopes are never enqueued, and the body
  holds only the fields its profile reads in full, checked when each attempt is built.
- Signed: `X-GridHub-Signature: sha256=<hex>` is HMAC-SHA256 of `"<timestamp>." + body` with the
  subscription's secret; `X-GridHub-Timestamp` is that timestamp (Unix seconds). Receivers check
  both with `verify_signature`, which refuses stale timestamps (replays).

One `deliver` per subscription at a time (the engine holds hub.sync.locks.connector_lock): two
concurrent deliverers could each send the head of an event and reorder its retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import ColumnElement, Select, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hub.authz import audit
from hub.authz.access import Access
from hub.authz.profile import Level
from hub.authz.viewer import Viewer
from hub.authz.writes import WritePermit
from hub.connectors.definition import Definition
from hub.connectors.records import Faults
from hub.db import Database, utcnow
from hub.departments import service as departments
from hub.departments.models import Department
from hub.events.models import Event, EventChangeRecord
from hub.grids.models import Grid
from hub.sync.models import SyncState, WebhookDelivery

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
# A delivery in one of these states holds back the later changes of its event.
_UNFINISHED = (PENDING, DEAD)

# Snapshot key -> (body key, the policy field the subject must read in full to get it). Keys
# not listed here (grid_id, department_id, action) never leave GridHub inside "event".
BODY_FIELDS: Mapping[str, tuple[str, str]] = {
    "code": ("code", "Event.code"),
    "category": ("category", "Event.category"),
    "title": ("title", "Event.title"),
    "status": ("status", "Event.status"),
    "severity": ("severity", "Event.severity"),
    "grid_code": ("gridCode", "Event.grid"),
    "department_code": ("departmentCode", "Event.department"),
    "deadline": ("deadline", "Event.deadline"),
    "reported_at": ("reportedAt", "Event.reportedAt"),
    "accepted_at": ("acceptedAt", "Event.acceptedAt"),
    "resolved_at": ("resolvedAt", "Event.resolvedAt"),
    "closed_at": ("closedAt", "Event.closedAt"),
    "updated_at": ("updatedAt", "Event.updatedAt"),
    "version": ("version", "Event.version"),
}
# A code names a grid or department row, so it also needs that row's code field.
_CODE_FIELDS = {"grid_code": "Grid.code", "department_code": "Department.code"}

# Outbox seqs are taken when a transaction inserts, not when it commits: on PostgreSQL a change
# with a lower seq can commit after one with a higher seq that enqueue has already passed. The
# cursor remembers such holes and looks for them again until they are this old (by then the
# transaction that took the number has rolled back, or was longer than any unit of work runs).
GAP_GRACE = timedelta(minutes=10)
MAX_GAPS = 10_000

_jitter = random.SystemRandom()


# --- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """One receiving endpoint, built from a webhook connector definition.

    `subject` is the policy subject the deliveries act as (`connector:public_security`); its
    department (`department`, a code) is what `own_department` row scopes compare with."""

    name: str
    url: str
    secret: bytes = field(repr=False)
    subject: str
    department: str | None = None
    # Empty: every category / department. Matched against the change's snapshot.
    categories: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    max_attempts: int = 12
    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 3600.0

    @classmethod
    def from_options(cls, *, name: str, subject: str, options: Mapping[str, Any]) -> Subscription:
        """From a definition's [source] table (`${ENV}` already resolved): url, secret_env,
        department, categories, departments, max_attempts, timeout_seconds. The secret is read
        from the environment variable `secret_env` names, now. Raises ValueError saying which
        option is wrong."""
        unknown = set(options) - {
            "url",
            "secret_env",
            "department",
            "categories",
            "departments",
            "max_attempts",
            "timeout_seconds",
            "backoff_base_seconds",
        }
        if unknown:
            raise ValueError(f"unknown [source] option(s) {', '.join(sorted(unknown))}")
        url = options.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError("[source] url must be an http(s) URL")
        secret_env = options.get("secret_env")
        if not isinstance(secret_env, str) or not secret_env:
            raise ValueError("[source] secret_env must name an environment variable")
        secret = os.environ.get(secret_env, "")
        if len(secret) < 16:
            raise ValueError(
                f"the environment variable {secret_env} must hold a secret of 16 characters or more"
            )
        department = options.get("department")
        if department is not None and not isinstance(department, str):
            raise ValueError("[source] department must be a department code")
        max_attempts = options.get("max_attempts", 12)
        if not isinstance(max_attempts, int) or not 1 <= max_attempts <= 100:
            raise ValueError("[source] max_attempts must be a whole number from 1 to 100")
        timeout = options.get("timeout_seconds", 10.0)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 120:
            raise ValueError("[source] timeout_seconds must be a number from 0 to 120")
        base = options.get("backoff_base_seconds", 1.0)
        if not isinstance(base, int | float) or base < 0:
            raise ValueError("[source] backoff_base_seconds must be a number of 0 or more")
        return cls(
            name=name,
            url=url,
            secret=secret.encode("utf-8"),
            subject=subject,
            department=department,
            categories=_string_set(options.get("categories", []), "categories"),
            departments=_string_set(options.get("departments", []), "departments"),
            max_attempts=max_attempts,
            timeout_seconds=float(timeout),
            backoff_base_seconds=float(base),
        )

    def wants(self, snapshot: Mapping[str, Any]) -> bool:
        """Whether the subscription's filters keep this change."""
        if self.categories and snapshot.get("category") not in self.categories:
            return False
        return not self.departments or snapshot.get("department_code") in self.departments

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait after the `attempts`-th failure: doubling from the base up to the cap,
        the second half of it random so that receivers coming back are not hit all at once."""
        ceiling = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=_jitter.uniform(ceiling / 2, ceiling))


def _string_set(value: Any, name: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"[source] {name} must be a list of strings")
    return frozenset(value)


async def subscriber_viewer(session: AsyncSession, *, subscription: Subscription) -> Viewer:
    """The identity deliveries act as: the subject as its own role, with its department
    resolved (own_department scopes need the id)."""
    department_id = None
    if subscription.department is not None:
        department = await departments.resolve_code(
            session, code=subscription.department, field="department"
        )
        department_id = department.id
    return Viewer(
        subject=subscription.subject,
        role=subscription.subject,
        via="connector",
        department_code=subscription.department,
        department_id=department_id,
    )


# --- signatures ------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-GridHub-Signature` value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    timestamp: int | str,
    body: bytes,
    header: str,
    *,
    now: datetime,
    tolerance: int = 300,
) -> bool:
    """For receivers: the signature matches this body and timestamp, and the timestamp is
    within `tolerance` seconds of `now` (either way), so a captured request cannot be replayed
    later."""
    try:
        seconds = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now.timestamp() - seconds) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, seconds, body).encode(), header.encode())


# --- enqueue ---------------------------------------------------------------------------------


async def _locked_state(session: AsyncSession, name: str) -> SyncState:
    """The subscription's state row, locked until the transaction ends (PostgreSQL), so two
    enqueues of one subscription do not both move its cursor."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(SyncState)
        .values(connector=name, consecutive_failures=0, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["connector"])
    )
    state = await session.get(SyncState, name, with_for_update=True, populate_existing=True)
    assert state is not None  # inserted just above unless it existed
    return state


def _holes(start: int, seqs: Sequence[int]) -> list[int]:
    """The numbers after `start` and below the last of `seqs` (ascending) that are missing; the
    highest MAX_GAPS of them, should a jump of the sequence leave a wide hole."""
    missing: list[int] = []
    for low, high in zip([start, *seqs][::-1][1:], seqs[::-1], strict=True):
        missing.extend(range(high - 1, low, -1)[: MAX_GAPS - len(missing)])
        if len(missing) >= MAX_GAPS:
            break
    return sorted(missing)


def _seen_by(access: Access) -> ColumnElement[bool]:
    """The changes a subscriber hears of: those of events in its row scope now, and, for a
    subscriber scoped to its department, the re-dispatch that took an event away from it (the
    one change of that event it must still hear, or its system keeps an event it no longer
    has)."""
    visible = EventChangeRecord.event_id.in_(access.rows(select(Event.id), Event))
    department_id = access.viewer.department_id
    if department_id is None or "own_department" not in access.profile.scopes.get(
        "Event", frozenset()
    ):
        return visible
    return or_(visible, EventChangeRecord.previous_department_id == department_id)


async def enqueue(
    session: AsyncSession,
    *,
    subscription: Subscription,
    access: Access,
    after_seq: int | None = None,
    limit: int = 1000,
    now: datetime | None = None,
) -> int:
    """Write a delivery for each change after the cursor (or after `after_seq`, to send again
    from there) that `access` may see and the subscription's filters keep; move the cursor past
    them. Flushes, never commits: the caller's transaction commits log and cursor together.
    Returns how many deliveries were new; one that exists already is left as it is."""
    now = now or utcnow()
    state = await _locked_state(session, subscription.name)
    cursor = state.cursor or {}
    stored = int(cursor.get("seq", 0))
    start = stored if after_seq is None else after_seq
    gaps = {int(seq): datetime.fromisoformat(seen) for seq, seen in cursor.get("gaps", {}).items()}
    seq_column = EventChangeRecord.seq
    seqs = list(
        await session.scalars(
            select(seq_column).where(seq_column > start).order_by(seq_column).limit(limit)
        )
    )
    filled = (
        set(await session.scalars(select(seq_column).where(seq_column.in_(sorted(gaps)))))
        if gaps
        else set()
    )
    candidates = sorted(set(seqs) | filled)
    created = 0
    if candidates:
        rows = (
            await session.execute(
                select(seq_column, EventChangeRecord.event_id, EventChangeRecord.snapshot)
                .where(seq_column.in_(candidates), _seen_by(access))
                .order_by(seq_column)
            )
        ).all()
        values = [
            {
                "delivery_id": uuid.uuid4().hex,
                "subscription": subscription.name,
                "change_seq": seq,
                "event_id": event_id,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for seq, event_id, snapshot in rows
            if subscription.wants(snapshot)
        ]
        if values:
            created = await _insert_new(session, values)
    for seq in filled:
        del gaps[seq]
    if after_seq is None or after_seq >= stored:
        for seq in _holes(start, seqs):
            gaps.setdefault(seq, now)
    state.cursor = {
        "seq": max([stored, *seqs]),
        "gaps": {
            str(seq): seen.isoformat()
            for seq, seen in sorted(gaps.items())[-MAX_GAPS:]
            if now - seen < GAP_GRACE
        },
    }
    await session.flush()
    return created


async def _insert_new(session: AsyncSession, values: list[dict[str, Any]]) -> int:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(WebhookDelivery)
        .values(values)
        .on_conflict_do_nothing(index_elements=["subscription", "change_seq"])
        .returning(WebhookDelivery.id)
    )
    return len((await session.scalars(statement)).all())


# --- deliver ---------------------------------------------------------------------------------


@dataclass(slots=True)
class DeliveryReport:
    """What one run did. `blocked`: due deliveries left waiting behind an earlier undelivered
    change of their event (counted once, at the end of the run)."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    blocked: int = 0
    # Failed attempts by what went wrong: {"HTTP 500": 2, "ReadTimeout": 1}.
    errors: dict[str, int] = field(default_factory=dict)


def _blocked_clause() -> Any:
    earlier = aliased(WebhookDelivery)
    return exists(
        select(1).where(
            earlier.subscription == WebhookDelivery.subscription,
            earlier.event_id == WebhookDelivery.event_id,
            earlier.change_seq < WebhookDelivery.change_seq,
            earlier.status.in_(_UNFINISHED),
        )
    )


def _due(subscription: Subscription, at: datetime) -> Select[WebhookDelivery, EventChangeRecord]:
    return (
        select(WebhookDelivery, EventChangeRecord)
        .join(EventChangeRecord, EventChangeRecord.seq == WebhookDelivery.change_seq)
        .where(
            WebhookDelivery.subscription == subscription.name,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= at,
        )
    )


@dataclass(frozen=True, slots=True)
class _Outgoing:
    id: int
    delivery_id: str
    event_id: int
    action: str
    attempts: int
    body: bytes


@dataclass(frozen=True, slots=True)
class _Sight:
    """What `access` lets out of a snapshot: field levels, and which grids and departments
    (whose codes the body names) it sees."""

    access: Access
    grid_ids: frozenset[int]
    department_ids: frozenset[int]

    def shows(self, key: str, snapshot: Mapping[str, Any]) -> bool:
        if self.access.level(BODY_FIELDS[key][1]) is not Level.FULL:
            return False
        code_field = _CODE_FIELDS.get(key)
        if code_field is None:
            return True
        if self.access.level(code_field) is not Level.FULL:
            return False
        if key == "grid_code":
            return snapshot.get("grid_id") in self.grid_ids
        return snapshot.get("department_id") in self.department_ids

    def event(self, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        return {
            BODY_FIELDS[key][0]: snapshot.get(key)
            for key in BODY_FIELDS
            if self.shows(key, snapshot)
        }

    def fields(self, snapshots: Iterable[Mapping[str, Any]]) -> set[str]:
        return {
            BODY_FIELDS[key][1]
            for snapshot in snapshots
            for key in BODY_FIELDS
            if self.shows(key, snapshot)
        }


async def _sight(session: AsyncSession, access: Access, snapshots: list[dict[str, Any]]) -> _Sight:
    grid_ids = {s["grid_id"] for s in snapshots if s.get("grid_id") is not None}
    department_ids = {s["department_id"] for s in snapshots if s.get("department_id") is not None}
    seen_grids: frozenset[int] = frozenset()
    seen_departments: frozenset[int] = frozenset()
    if grid_ids:
        statement = select(Grid.id).where(Grid.id.in_(grid_ids))
        seen_grids = frozenset(await session.scalars(access.rows(statement, Grid)))
    if department_ids:
        statement = select(Department.id).where(Department.id.in_(department_ids))
        seen_departments = frozenset(await session.scalars(access.rows(statement, Department)))
    return _Sight(access, seen_grids, seen_departments)


def _body(delivery: WebhookDelivery, change: EventChangeRecord, sight: _Sight) -> bytes:
    return orjson.dumps(
        {
            "delivery_id": delivery.delivery_id,
            "event": sight.event(change.snapshot),
            "action": change.action,
            "change_seq": change.seq,
            "occurred_at": change.at.astimezone(UTC).isoformat(),
        }
    )


async def deliver(
    database: Database,
    *,
    subscription: Subscription,
    access: Access,
    client: httpx.AsyncClient,
    now: datetime | None = None,
    batch: int = 100,
    concurrency: int = 8,
) -> DeliveryReport:
    """Send what is due, in rounds: each round takes up to `batch` due deliveries that no
    earlier change of their event holds back (so at most one per event), audits them, sends them
    (`concurrency` at a time) and records each outcome in its own transaction. A round that
    delivered something may have unblocked the next change of an event, so another round
    follows; each delivery is attempted at most once per call. `now` (default: the clock) is
    when deliveries count as due and when retries are scheduled from."""
    report = DeliveryReport()
    attempted: set[int] = set()
    limiter = asyncio.Semaphore(concurrency)
    while True:
        at = now or utcnow()
        outgoing, fields = await _next_round(database, subscription, access, at, batch, attempted)
        if not outgoing:
            break
        attempted.update(item.id for item in outgoing)
        # Audited before anything leaves: a crash mid-round must not leave data sent unrecorded.
        await audit.append_now(
            database,
            audit.AuditEntry(
                kind="delivery",
                actor=subscription.subject,
                role=access.viewer.role,
                outcome="ok",
                department=subscription.department,
                operation=f"webhook:{subscription.name}",
                fields=sorted(fields),
                records=[f"Event:{item.event_id}" for item in outgoing],
                detail={"deliveries": [item.delivery_id for item in outgoing]},
            ),
        )

        async def attempt(item: _Outgoing, at: datetime = at) -> tuple[str, str | None]:
            async with limiter:
                return await _attempt(database, subscription, client, item, at)

        results = await asyncio.gather(*(attempt(item) for item in outgoing))
        outcomes = [status for status, _ in results]
        for _, error in results:
            if error is not None:
                report.errors[error] = report.errors.get(error, 0) + 1
        report.delivered += outcomes.count(DELIVERED)
        report.failed += outcomes.count(PENDING)
        report.dead += outcomes.count(DEAD)
        if DELIVERED not in outcomes:
            break
    async with database.reader() as session:
        statement = _due(subscription, now or utcnow()).where(_blocked_clause())
        report.blocked = (
            await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        )
    return report


async def _next_round(
    database: Database,
    subscription: Subscription,
    access: Access,
    at: datetime,
    batch: int,
    attempted: set[int],
) -> tuple[list[_Outgoing], set[str]]:
    async with database.reader() as session:
        statement = _due(subscription, at).where(~_blocked_clause())
        if attempted:
            statement = statement.where(WebhookDelivery.id.not_in(attempted))
        rows = (
            await session.execute(statement.order_by(WebhookDelivery.change_seq).limit(batch))
        ).all()
        if not rows:
            return [], set()
        sight = await _sight(session, access, [change.snapshot for _, change in rows])
    outgoing = [
        _Outgoing(
            id=delivery.id,
            delivery_id=delivery.delivery_id,
            event_id=delivery.event_id,
            action=change.action,
            attempts=delivery.attempts,
            body=_body(delivery, change, sight),
        )
        for delivery, change in rows
    ]
    return outgoing, sight.fields(change.snapshot for _, change in rows)


async def _attempt(
    database: Database,
    subscription: Subscription,
    client: httpx.AsyncClient,
    item: _Outgoing,
    at: datetime,
) -> tuple[str, str | None]:
    """POST one delivery and record the outcome; returns the delivery's new status and what
    went wrong, if anything."""
    timestamp = int(utcnow().timestamp())
    headers = {
        "Content-Type": "application/json",
        "X-GridHub-Delivery": item.delivery_id,
        "X-GridHub-Event": item.action,
        "X-GridHub-Timestamp": str(timestamp),
        "X-GridHub-Signature": sign(subscription.secret, timestamp, item.body),
    }
    status_code: int | None = None
    error: str | None = None
    try:
        response = await client.post(
            subscription.url,
            content=item.body,
            headers=headers,
            timeout=subscription.timeout_seconds,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except httpx.HTTPError as exc:
        # The class only: a message can quote the URL, and the URL may carry a token.
        error = type(exc).__name__
    values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
    if error is None:
        values.update(status=DELIVERED, delivered_at=utcnow(), attempts=item.attempts + 1)
    else:
        attempts = item.attempts + 1
        values.update(attempts=attempts, next_attempt_at=at + subscription.backoff(attempts))
        values["status"] = DEAD if attempts >= subscription.max_attempts else PENDING
    async with database.transaction() as session:
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == item.id).values(**values)
        )
    return str(values["status"]), error


async def redeliver(
    database: Database, *, subscription_name: str, delivery_id: str | None = None
) -> int:
    """Put dead deliveries of a subscription (all, or the one named) back to pending with a fresh
    retry budget, due now. Returns how many."""
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription == subscription_name, WebhookDelivery.status == DEAD)
        .values(status=PENDING, attempts=0, next_attempt_at=utcnow())
    )
    if delivery_id is not None:
        statement = statement.where(WebhookDelivery.delivery_id == delivery_id)
    async with database.transaction() as session:
        result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


async def run_once(
    database: Database,
    *,
    subscription: Subscription,
    access: Access,
    client: httpx.AsyncClient,
    now: datetime | None = None,
) -> DeliveryReport:
    """Enqueue every new change (in transactions of `limit` changes), then deliver what is due."""
    enqueued = 0
    while True:
        async with database.transaction() as session:
            before = await _cursor_seq(session, subscription.name)
            enqueued += await enqueue(session, subscription=subscription, access=access, now=now)
            after = await _cursor_seq(session, subscription.name)
        if after == before:
            break
    report = await deliver(
        database, subscription=subscription, access=access, client=client, now=now
    )
    report.enqueued = enqueued
    return report


async def _cursor_seq(session: AsyncSession, name: str) -> int:
    state = await session.get(SyncState, name)
    return 0 if state is None or state.cursor is None else int(state.cursor.get("seq", 0))


class WebhookError(Exception):
    """A webhook definition that cannot run: bad [source] options or a missing secret."""


async def run_definition(
    database: Database,
    definition: Definition,
    permit: WritePermit,
    *,
    faults: Faults | None = None,
    client: httpx.AsyncClient | None = None,
) -> DeliveryReport:
    """What `gridhub sync run <webhook connector>` and the scheduler call: one `run_once` for
    the definition's subscription, as the permit's subject (its Access, department resolved by
    the engine). Failed attempts are counted into `faults` by kind."""
    try:
        subscription = Subscription.from_options(
            name=definition.name,
            subject=definition.subject,
            options={**definition.resolved_source(), "department": definition.department},
        )
    except ValueError as error:
        raise WebhookError(f"{definition.path}: {error}") from None
    if client is None:
        async with httpx.AsyncClient() as own:
            report = await run_once(
                database, subscription=subscription, access=permit.access, client=own
            )
    else:
        report = await run_once(
            database, subscription=subscription, access=permit.access, client=client
        )
    if faults is not None:
        for kind, count in report.errors.items():
            for _ in range(count):
                faults.note(kind)
    return report
