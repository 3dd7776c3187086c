"""Scheduled connector runs, inside `gridhub serve` or a separate `gridhub sync worker`.

Each scheduled connector runs when its last run started more than its interval ago. Several
processes may run schedulers against one database: the connector lock lets one of them run it
and the others skip, so a connector never runs twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import timedelta

from hub.authz.writes import LivePolicy
from hub.connectors.definition import Definition
from hub.connectors.engine import run_connector
from hub.db import Database, utcnow
from hub.sync import service as sync
from hub.sync.locks import AlreadyRunning

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        database: Database,
        policy: LivePolicy,
        definitions: Mapping[str, Definition],
        *,
        tick_seconds: float = 5.0,
    ) -> None:
        self.database = database
        self.policy = policy
        self.definitions = {n: d for n, d in definitions.items() if d.schedule_seconds}
        self.tick_seconds = tick_seconds
        self._task: asyncio.Task[None] | None = None

    async def due(self) -> list[Definition]:
        now = utcnow()
        due = []
        async with self.database.reader() as session:
            for definition in self.definitions.values():
                assert definition.schedule_seconds is not None
                statement = sync.runs_statement(connector=definition.name).limit(1)
                last = await session.scalar(statement)
                interval = timedelta(seconds=definition.schedule_seconds)
                if last is None or last.started_at + interval <= now:
                    due.append(definition)
        return due

    async def tick(self) -> None:
        for definition in await self.due():
            try:
                run = await run_connector(
                    self.database, definition, self.policy, trigger="schedule"
                )
                log.info("scheduled sync %s: run %s %s", definition.name, run.id, run.status)
            except AlreadyRunning:
                log.info("scheduled sync %s skipped: running elsewhere", definition.name)
            except Exception:
                # One connector's bug must not stop the others' schedules.
                log.exception("scheduled sync %s crashed", definition.name)

    async def run_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.tick_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="connector-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
