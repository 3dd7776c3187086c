"""`gridhub demo`: load the demo world into a migrated database, streaming residents in batches.

Determinism: the seed fixes every name, number, text and story; the anchor day fixes when. All
timestamps are the anchor (midnight UTC of that day) minus offsets drawn from the seed, so the same
seed and anchor give the same rows, byte for byte. The anchor defaults to today, which keeps the
dispatch board current (events reported in the last days, some past their deadline); pass
`anchor=` (`--anchor` on the command line) to reproduce a load exactly on another day. Ages, and
so birth dates and ID numbers, are counted from a fixed day and do not move with the anchor.

A database that already holds rows is refused (DATABASE_NOT_EMPTY) unless `reset=True`
(`--reset`), which first deletes every row: a second load never duplicates.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import create_engine, safe_url
from hub.demo import events as stories
from hub.demo.bulk import (
    BulkWriter,
    after_explicit_ids,
    delete_everything,
    present_tables,
    table_of,
    tables_with_rows,
)
from hub.demo.notices import feedback_count, feedback_rows, notice_rows
from hub.demo.people import BIRTH_EPOCH, Batch, Census, resident_batches
from hub.demo.world import DEPARTMENTS, World, build_world
from hub.errors import BadUserInput, Conflict, GridHubError
from hub.events.states import OPEN_STATUSES, Status
from hub.models import (
    Department,
    Event,
    EventTransition,
    Feedback,
    Grid,
    Member,
    Notice,
    Resident,
    ResidentExternalId,
    ResidentTag,
    member_grids,
    notice_grids,
)

DEFAULT_BATCH = 20_000  # residents per transaction; measured: 10k is ~15% slower
_LOADED = [
    table_of(Department),
    table_of(Grid),
    table_of(Member),
    table_of(Resident),
    table_of(ResidentExternalId),
    table_of(Event),
    table_of(EventTransition),
    table_of(Notice),
    table_of(Feedback),
]


class DatabaseNotEmpty(Conflict):
    code = "DATABASE_NOT_EMPTY"


class DatabaseNotMigrated(GridHubError):
    code = "DATABASE_NOT_MIGRATED"


@dataclass(slots=True)
class DemoReport:
    """What a load wrote and how long it took: the summary, and the numbers the benchmark prints."""

    url: str
    seed: int
    anchor: date
    world: World
    census: Census
    residents: int = 0
    events: Counter[str] = field(default_factory=Counter)
    overdue: int = 0
    transitions: int = 0
    notices: Counter[str] = field(default_factory=Counter)
    feedback: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        levels = Counter(node.level for node in self.world.nodes)
        tags = ", ".join(f"{count:,} {tag}" for tag, count in self.census.tags.most_common(4))
        tags = f" ({tags})" if tags else ""
        events = ", ".join(f"{self.events[s.value]:,} {s.value}" for s in Status)
        return (
            f"Loaded the GridHub demo (seed {self.seed}, as of {self.anchor:%Y-%m-%d}) into "
            f"{self.url} in {self.seconds:.1f} s: district {self.world.nodes[0].name} with "
            f"{levels['street']} streets, {levels['community']} communities and "
            f"{levels['grid']} grids; {len(self.world.departments)} departments; "
            f"{len(self.world.members)} grid members; {self.residents:,} residents in "
            f"{self.census.households:,} households{tags}; "
            f"{sum(self.events.values()):,} events ({events}; {self.overdue} overdue) with "
            f"{self.transitions:,} timeline entries; {sum(self.notices.values())} notices "
            f"({', '.join(f'{n} {s}' for s, n in sorted(self.notices.items()))}); "
            f"{sum(self.feedback.values())} feedback "
            f"({', '.join(f'{n} {s}' for s, n in sorted(self.feedback.items()))}). "
            f"{self.rows:,} rows, {self.rows_per_second:,.0f} rows/s."
        )


async def load_demo(
    database_url: str,
    *,
    residents: int,
    seed: int,
    reset: bool = False,
    anchor: date | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool | None = None,
) -> str:
    """Load the demo into the (migrated) database at `database_url`; return a summary paragraph."""
    report = await load(
        database_url,
        residents=residents,
        seed=seed,
        reset=reset,
        anchor=anchor,
        batch_size=batch_size,
        progress=progress,
    )
    return report.summary()


async def load(
    database_url: str,
    *,
    residents: int,
    seed: int,
    reset: bool = False,
    anchor: date | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool | None = None,
) -> DemoReport:
    """Load the demo and report what was written. `progress=None` shows a bar on a terminal."""
    if residents < 0:
        raise BadUserInput("the number of residents cannot be negative", field="residents")
    if batch_size < 1:
        raise BadUserInput("the batch size must be at least 1", field="batchSize")
    day = anchor or datetime.now(UTC).date()
    if day < BIRTH_EPOCH:
        raise BadUserInput(f"the anchor day must be {BIRTH_EPOCH} or later", field="anchor")
    now = datetime.combine(day, clock(0), UTC)  # "now" as far as the data is concerned
    started = time.perf_counter()
    world = build_world(seed)
    report = DemoReport(safe_url(database_url), seed, day, world, Census())
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            await _prepare(connection, reset=reset)
            writer = BulkWriter(connection)
            with _progress_bar(progress) as bar:
                async with connection.begin():
                    report.rows += await _write_world(writer, world)
                await _write_residents(writer, report, residents, now, batch_size, bar)
                rest = bar.add_task("events, notices, feedback", total=1)
                async with connection.begin():
                    await _write_events(writer, report, residents, now)
                    await _write_notices(writer, report, residents, now)
                    await after_explicit_ids(connection, _LOADED)
                bar.advance(rest)
            if connection.dialect.name == "postgresql":
                # Fresh statistics, or the planner guesses at a million-row table.
                await connection.exec_driver_sql("ANALYZE")
            await connection.commit()
    finally:
        await engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


async def _prepare(connection: AsyncConnection, *, reset: bool) -> None:
    async with connection.begin():
        present = {table.name for table in await present_tables(connection)}
        if not {"residents", "events", "grids"} <= present:
            raise DatabaseNotMigrated(
                "the database has no GridHub tables yet: run `gridhub db upgrade` first "
                "(`gridhub demo` does it for you)"
            )
        filled = await tables_with_rows(connection)
        if filled and not reset:
            raise DatabaseNotEmpty(
                "the database already holds data (in "
                + ", ".join(filled)
                + "); loading the demo again would duplicate it. Run `gridhub demo --reset` "
                "to delete every row first, or use another database.",
                tables=filled,
            )
    if filled:
        await delete_everything(connection)
    if connection.dialect.name == "sqlite":
        # For this one connection: a bigger page cache (bounded, 64 MiB), so index inserts at
        # random keys (ID numbers) stop re-reading pages; and checkpoints every ~80 MiB of WAL
        # instead of every 4 MiB, which copy fewer pages twice. Measured: 37 s -> 28 s at 1M.
        await connection.exec_driver_sql("PRAGMA cache_size=-65536")
        await connection.exec_driver_sql("PRAGMA wal_autocheckpoint=20000")
        await connection.commit()


def _progress_bar(enabled: bool | None) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal if enabled is None else not enabled,
        transient=False,
    )


async def _write_world(writer: BulkWriter, world: World) -> int:
    departments = [
        {"id": i, "code": code, "name": name, "name_en": name_en}
        for i, (code, name, name_en) in enumerate(DEPARTMENTS, start=1)
    ]
    await writer.dicts(table_of(Department), departments)
    await writer.dicts(table_of(Grid), [node.row() for node in world.nodes])
    await writer.rows(table_of(Member), world.members)
    await writer.rows(member_grids, world.member_grids)
    return len(departments) + len(world.nodes) + len(world.members) + len(world.member_grids)


async def _write_residents(
    writer: BulkWriter,
    report: DemoReport,
    total: int,
    now: datetime,
    batch_size: int,
    bar: Progress,
) -> None:
    """Generate the next batch in a worker thread while this one is written, so PostgreSQL
    works on one batch while Python builds the next (measured at 1M: 31 s -> 21 s). On SQLite
    both halves need the GIL and it gains nothing, but costs nothing either."""
    task = bar.add_task("residents", total=total)
    batches = resident_batches(
        report.world,
        seed=report.seed,
        total=total,
        anchor=now,
        batch_size=batch_size,
        census=report.census,
    )
    upcoming = asyncio.ensure_future(asyncio.to_thread(_next, batches))
    while (batch := await upcoming) is not None:
        upcoming = asyncio.ensure_future(asyncio.to_thread(_next, batches))
        try:
            async with writer.connection.begin():
                await writer.rows(table_of(Resident), batch.residents)
                await writer.rows(table_of(ResidentTag), batch.tags)
                await writer.rows(table_of(ResidentExternalId), batch.external_ids)
        except BaseException:
            await asyncio.gather(upcoming, return_exceptions=True)
            raise
        report.residents += len(batch.residents)
        report.rows += batch.rows
        bar.advance(task, len(batch.residents))


def _next(batches: Iterator[Batch]) -> Batch | None:
    return next(batches, None)


async def _write_events(
    writer: BulkWriter, report: DemoReport, residents: int, now: datetime
) -> None:
    teller = stories.Storyteller(report.world, report.census, seed=report.seed, anchor=now)
    events, transitions = stories.rows(
        teller.stories(stories.event_count(residents)), seed=report.seed
    )
    await writer.dicts(table_of(Event), events)
    await writer.rows(table_of(EventTransition), transitions)
    open_statuses = {status.value for status in OPEN_STATUSES}
    for event in events:
        report.events[event["status"]] += 1
        deadline = event["deadline"]
        if deadline is not None and deadline < now and event["status"] in open_statuses:
            report.overdue += 1
    report.transitions = len(transitions)
    report.rows += len(events) + len(transitions)


async def _write_notices(
    writer: BulkWriter, report: DemoReport, residents: int, now: datetime
) -> None:
    notices, scopes = notice_rows(report.world, seed=report.seed, anchor=now)
    await writer.dicts(table_of(Notice), notices)
    await writer.rows(notice_grids, scopes)
    feedback = feedback_rows(
        report.world, report.census, seed=report.seed, anchor=now, count=feedback_count(residents)
    )
    await writer.dicts(table_of(Feedback), feedback)
    report.notices.update(notice["status"] for notice in notices)
    report.feedback.update(item["status"] for item in feedback)
    report.rows += len(notices) + len(scopes) + len(feedback)
