"""Run a connector: one transaction per page, nothing lost or written twice.

A page's transaction holds its writes, the records it quarantined, its conflicts, its audit
record, the run's counters and the cursor after it. A crash (even `kill -9`) at any moment leaves
either all of a page or none of it, and the next run resumes after the last page that committed;
a page read again matches its records by link and writes nothing for those already applied.

Only one run of a connector at a time (hub.sync.locks), across processes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from hub.authz import audit, tracking
from hub.authz.viewer import Viewer
from hub.authz.writes import LivePolicy, NotASubject, WritePermit, connector_viewer
from hub.connectors import export, kinds
from hub.connectors.definition import Definition, DefinitionError
from hub.connectors.mapping import MappingError, map_record
from hub.connectors.records import Faults, Page, SourceContext, SourceError
from hub.connectors.sinks import WRITERS, Mapped, Outcome, RecordRejected
from hub.db import Database, utcnow
from hub.departments.models import Department
from hub.sync import service as sync
from hub.sync.locks import connector_lock
from hub.sync.models import SyncQuarantine, SyncRun

log = logging.getLogger(__name__)

COUNTERS = ("fetched", "created", "updated", "unchanged", "quarantined", "conflicts")


@dataclass(slots=True)
class Progress:
    """What a run has done so far; passed to the progress callback after every page."""

    connector: str
    pages: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount


ProgressCallback = Callable[[Progress], None]


@dataclass(slots=True)
class Incoming:
    """One record to apply: from the source, or a quarantined one being replayed."""

    payload: Any
    position: str
    item: SyncQuarantine | None = None


@dataclass(slots=True)
class Rejection:
    incoming: Incoming
    code: str
    reason: str
    external_id: str | None = None


class _DryRun(Exception):
    """Raised at the end of a dry run's page so its transaction rolls back."""


class Run:
    def __init__(
        self,
        database: Database,
        definition: Definition,
        policy: LivePolicy,
        *,
        dry_run: bool = False,
        full: bool = False,
        trigger: str = "cli",
        progress: ProgressCallback | None = None,
    ) -> None:
        self.database = database
        self.definition = definition
        self.policy = policy
        self.dry_run = dry_run
        self.full = full
        self.trigger = trigger
        self.on_progress = progress
        self.progress = Progress(connector=definition.name)
        self.faults = Faults()
        self.run_id = 0

    # --- the run's lifecycle -------------------------------------------------------------------

    async def _begin(self) -> tuple[datetime | None, dict[str, Any] | None]:
        async with self.database.transaction() as session:
            state = await sync.state(session, connector=self.definition.name)
            run = await sync.start_run(
                session,
                connector=self.definition.name,
                trigger=self.trigger,
                dry_run=self.dry_run,
                full=self.full,
            )
            self.run_id = run.id
            return sync.breaker_open_until(state, now=utcnow()), state.cursor

    async def _finish(
        self, status: str, error: str | None = None, *, tried: bool = True
    ) -> SyncRun:
        async with self.database.transaction() as session:
            run = await session.get(SyncRun, self.run_id)
            assert run is not None
            run.status = status
            run.error = error
            run.finished_at = utcnow()
            run.faults = dict(self.faults.counts)
            if self.dry_run:
                for name in COUNTERS:
                    setattr(run, name, self.progress.counts[name])
            state = await sync.state(session, connector=self.definition.name)
            if status == "failed" and error is not None and tried:
                sync.note_failure(state, error=error, now=utcnow())
            elif status in ("ok", "partial"):
                sync.note_success(state)
        if status in ("failed", "refused"):
            log.warning("sync %s run %s %s: %s", self.definition.name, self.run_id, status, error)
        return run

    async def _viewer(self) -> Viewer:
        department_id = None
        if self.definition.department is not None:
            async with self.database.reader() as session:
                department_id = await session.scalar(
                    select(Department.id).where(Department.code == self.definition.department)
                )
            if department_id is None:
                raise NotASubject(f"unknown department {self.definition.department!r}")
        return connector_viewer(
            self.definition.subject,
            department_code=self.definition.department,
            department_id=department_id,
        )

    async def _permit(self) -> WritePermit:
        permit = WritePermit.of(self.policy, await self._viewer())
        refused = permit.refused(self.definition.input_objects())
        if refused and self.definition.direction == "pull":
            raise NotASubject(
                f"{self.definition.subject} may not set {', '.join(refused)} "
                f"(policy version {permit.version}): change the mapping or the policy"
            )
        return permit

    async def _refuse(self, reason: str) -> SyncRun:
        # A refusal is an access decision: auditors see it beside the writes.
        await audit.append_now(
            self.database,
            audit.AuditEntry(
                kind="sync",
                actor=self.definition.subject,
                role=self.definition.subject,
                outcome="denied",
                operation=f"sync:{self.definition.name}",
                fields=self.definition.input_objects(),
                detail={"run": self.run_id, "reason": reason},
            ),
        )
        return await self._finish("refused", reason)

    async def execute(self) -> SyncRun:
        async with connector_lock(self.database, self.definition.name):
            return await self._guarded(self._execute())

    async def _guarded(self, work: Awaitable[SyncRun]) -> SyncRun:
        """Run `work`; an error nobody expected still ends the run as failed (it counts
        towards the breaker, and the run is not left `running`), with the details in the log
        rather than in the run row, where they could quote a record."""
        try:
            return await work
        except Exception as error:
            if not self.run_id:
                raise
            log.exception("sync %s run %s crashed", self.definition.name, self.run_id)
            return await self._finish(
                "failed", f"unexpected {type(error).__name__}; the server log has the details"
            )

    async def _execute(self) -> SyncRun:
        open_until, cursor = await self._begin()
        if open_until is not None:
            return await self._finish(
                "failed",
                f"circuit open until {open_until.isoformat(timespec='seconds')}: not tried",
                tried=False,
            )
        await self.policy.sync(self.database)
        try:
            permit = await self._permit()
        except NotASubject as refusal:
            return await self._refuse(str(refusal))
        if self.definition.direction == "push":
            return await self._push(permit)
        try:
            context = SourceContext(
                connector=self.definition.name,
                options=self.definition.resolved_source(),
                headers=self.definition.auth.headers() if self.definition.auth else {},
                faults=self.faults,
                page_size=self.definition.page_size,
            )
            source = kinds.open_source(self.definition.kind, context)
            async for page in source.pages(None if self.full else cursor):
                # The policy may change during a long run: each page is written under the
                # policy as it is when the page starts.
                if await self.policy.sync(self.database):
                    permit = await self._permit()
                await self._apply_page(permit, page)
        except (SourceError, DefinitionError) as failure:
            return await self._finish("failed", str(failure))
        except NotASubject as refusal:
            return await self._refuse(str(refusal))
        quarantined = self.progress.counts["quarantined"]
        return await self._finish("partial" if quarantined else "ok")

    async def _push(self, permit: WritePermit) -> SyncRun:
        """Send GridHub's data out: a file export, or webhook deliveries."""
        if self.definition.kind == "webhook":
            from hub.connectors import webhooks  # imports httpx only when used

            try:
                report = await webhooks.run_definition(
                    self.database, self.definition, permit, faults=self.faults
                )
            except (webhooks.WebhookError, DefinitionError) as failure:
                return await self._finish("failed", str(failure))
            self.progress.add("fetched", report.enqueued)
            self.progress.add("updated", report.delivered)
            self.progress.add("quarantined", report.dead)
            await self._store_counts()
            return await self._finish("partial" if report.dead else "ok")

        def counted(rows: int) -> None:
            self.progress.pages += 1
            self.progress.add("fetched", rows)
            if self.on_progress is not None:
                self.on_progress(self.progress)

        try:
            await export.export(
                self.database, self.definition, permit, run_id=self.run_id, on_batch=counted
            )
        except export.ExportRefused as refusal:
            return await self._refuse(str(refusal))
        except (OSError, DefinitionError) as failure:
            return await self._finish("failed", str(failure))
        await self._store_counts()
        return await self._finish("ok")

    async def _store_counts(self) -> None:
        async with self.database.transaction() as session:
            run = await session.get(SyncRun, self.run_id)
            assert run is not None
            for name in COUNTERS:
                setattr(run, name, self.progress.counts[name])

    async def replay(self, *, ids: Iterable[int] | None = None) -> SyncRun:
        """Map and apply the connector's open quarantined records again (after a fix)."""
        async with connector_lock(self.database, self.definition.name):
            return await self._guarded(self._replay(ids))

    async def _replay(self, ids: Iterable[int] | None) -> SyncRun:
        await self._begin()
        await self.policy.sync(self.database)
        try:
            permit = await self._permit()
        except NotASubject as refusal:
            return await self._refuse(str(refusal))
        wanted = sorted(set(ids)) if ids is not None else None
        after = 0
        while True:
            async with self.database.reader() as session:
                statement = sync.quarantine_statement(connector=self.definition.name)
                statement = statement.where(SyncQuarantine.id > after)
                if wanted is not None:
                    statement = statement.where(SyncQuarantine.id.in_(wanted))
                items = list(await session.scalars(statement.limit(self.definition.page_size)))
            if not items:
                break
            after = items[-1].id
            await self._apply(permit, [Incoming(i.payload, i.position, i) for i in items])
        quarantined = self.progress.counts["quarantined"]
        return await self._finish("partial" if quarantined else "ok")

    # --- pages ---------------------------------------------------------------------------------

    async def _apply_page(self, permit: WritePermit, page: Page) -> None:
        incoming = [Incoming(r.payload, r.position) for r in page.records]
        malformed = [
            Rejection(Incoming(m.raw, m.position), "MALFORMED", m.reason) for m in page.malformed
        ]
        await self._apply(permit, incoming, malformed=malformed, cursor=page.cursor)

    def _map(
        self, incoming: list[Incoming]
    ) -> tuple[list[tuple[Incoming, Mapped]], list[Rejection]]:
        mapped: list[tuple[Incoming, Mapped]] = []
        rejected: list[Rejection] = []
        for item in incoming:
            if not isinstance(item.payload, dict):
                rejected.append(Rejection(item, "MALFORMED", "not a record (an object expected)"))
                continue
            try:
                mapped.append((item, map_record(self.definition, item.payload)))
            except MappingError as error:
                rejected.append(Rejection(item, error.code, str(error)))
        return mapped, rejected

    async def _apply(
        self,
        permit: WritePermit,
        incoming: list[Incoming],
        *,
        malformed: list[Rejection] | None = None,
        cursor: dict[str, Any] | None = None,
    ) -> None:
        mapped, rejected = self._map(incoming)
        rejected = (malformed or []) + rejected
        counts = dict.fromkeys(COUNTERS, 0)
        counts["fetched"] = len(incoming) + len(malformed or [])
        written: list[Outcome] = []
        try:
            async with self.database.transaction() as session:
                tracking.untrack(session)
                if self.database.dialect == "postgresql":
                    # A page's lookups are `IN (1000 ids)` statements that asyncpg prepares once
                    # per connection. PostgreSQL then settles on a generic plan, made while the
                    # tables were small (a first import), and kept: measured, 1.1-1.8 s a page at
                    # 30,000 links instead of milliseconds. A plan per execution costs less.
                    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
                writer = WRITERS[self.definition.entity](
                    session=session, definition=self.definition, permit=permit, run_id=self.run_id
                )
                await writer.prefetch([m for _, m in mapped])
                applied: list[tuple[Incoming, Mapped, Outcome]] = []
                for item, record in mapped:
                    try:
                        applied.append((item, record, await writer.apply(record)))
                    except RecordRejected as error:
                        rejected.append(Rejection(item, error.code, str(error), record.external_id))
                await writer.finish()
                for item, record, outcome in applied:
                    if (late := outcome.rejected) is not None:
                        rejected.append(Rejection(item, late.code, str(late), record.external_id))
                        continue
                    if outcome.kind != "conflict":
                        counts[outcome.kind] += 1
                    if outcome.kind in ("created", "updated"):
                        written.append(outcome)
                    if item.item is not None:
                        item.item = await session.merge(item.item)
                        item.item.status = "replayed"
                        item.item.resolved_at = utcnow()
                        item.item.resolved_run_id = self.run_id
                records = [o.record for o in written if o.record]
                fields = {name for o in written for name in o.fields}
                counts["conflicts"] = writer.conflicts
                counts["quarantined"] = len(rejected)
                # In source order, so the quarantine reads like the source.
                order = {id(item): n for n, item in enumerate(incoming)}
                rejected.sort(key=lambda r: order.get(id(r.incoming), -1))
                for rejection in rejected:
                    await self._quarantine(session, rejection)
                if records:
                    await audit.append(
                        session,
                        audit.AuditEntry(
                            kind="sync",
                            actor=permit.subject,
                            role=permit.subject,
                            outcome="ok",
                            operation=f"sync:{self.definition.name}",
                            fields=sorted(fields),
                            records=records,
                            detail={
                                "run": self.run_id,
                                "created": counts["created"],
                                "updated": counts["updated"],
                            },
                        ),
                    )
                if self.dry_run:
                    raise _DryRun
                if cursor is not None:
                    state = await sync.state(session, connector=self.definition.name)
                    state.cursor = cursor
                    state.cursor_run_id = self.run_id
                run = await session.get(SyncRun, self.run_id)
                assert run is not None
                for name in COUNTERS:
                    setattr(run, name, getattr(run, name) + counts[name])
        except _DryRun:
            pass
        self.progress.pages += 1
        for name in COUNTERS:
            self.progress.add(name, counts[name])
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def _quarantine(self, session: Any, rejection: Rejection) -> None:
        existing = rejection.incoming.item
        if existing is not None:
            # A replayed record that fails again stays where it was, with the new reason.
            existing = await session.merge(existing)
            existing.attempts += 1
            existing.code = rejection.code[:32]
            existing.reason = rejection.reason
            return
        await sync.quarantine(
            session,
            connector=self.definition.name,
            run_id=self.run_id,
            position=rejection.incoming.position,
            code=rejection.code,
            reason=rejection.reason,
            payload=rejection.incoming.payload,
            external_id=rejection.external_id,
        )


async def run_connector(
    database: Database,
    definition: Definition,
    policy: LivePolicy,
    *,
    dry_run: bool = False,
    full: bool = False,
    trigger: str = "cli",
    progress: ProgressCallback | None = None,
) -> SyncRun:
    run = Run(
        database, definition, policy, dry_run=dry_run, full=full, trigger=trigger, progress=progress
    )
    return await run.execute()


async def replay_quarantine(
    database: Database,
    definition: Definition,
    policy: LivePolicy,
    *,
    ids: Iterable[int] | None = None,
    progress: ProgressCallback | None = None,
) -> SyncRun:
    run = Run(database, definition, policy, trigger="replay", progress=progress)
    return await run.replay(ids=ids)
