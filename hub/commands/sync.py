"""`gridhub sync`: run connectors, see what they did, replay what they quarantined."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import Progress as Bar
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from hub.commands.options import DB_OPTION, settings_for
from hub.config import Settings
from hub.connectors import engine
from hub.connectors.definition import Definition, DefinitionError, load_directory
from hub.connectors.http import safe_url
from hub.db import Database
from hub.sync import service as sync
from hub.sync.locks import AlreadyRunning
from hub.sync.models import SyncRun, SyncState

T = TypeVar("T")

# Exit codes a scheduler or a script can tell apart.
EXIT_FAILED = 1
EXIT_BUSY = 3


@click.group("sync")
def sync_group() -> None:
    """Connectors: keep GridHub in step with departmental systems (connectors/*.toml)."""


def _definitions(settings: Settings) -> dict[str, Definition]:
    try:
        return load_directory(settings.connectors_dir)
    except DefinitionError as error:
        raise click.ClickException(f"refused: {error}") from None


def _definition(settings: Settings, name: str) -> Definition:
    definitions = _definitions(settings)
    if name not in definitions:
        known = ", ".join(sorted(definitions)) or "none"
        raise click.ClickException(f"no connector {name!r} in {settings.connectors_dir} ({known})")
    return definitions[name]


def live_policy(settings: Settings) -> Any:
    """The registry the hub itself serves with: the same compiled profiles, the same policy."""
    from hub.api.registry import SchemaRegistry
    from hub.api.schema import build_schema

    return SchemaRegistry(build_schema(), settings)


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        database = Database(settings.database_url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(wrapped())


def _summary(run: SyncRun) -> str:
    counts = ", ".join(f"{name} {getattr(run, name)}" for name in engine.COUNTERS)
    faults = ", ".join(f"{k} {v}" for k, v in sorted((run.faults or {}).items()))
    text = f"run {run.id} {run.status}: {counts}"
    if faults:
        text += f"; retried {faults}"
    if run.error:
        text += f"\n  {run.error}"
    return text


def _progress_bar(console: Console, name: str) -> tuple[Bar, Callable[[engine.Progress], None]]:
    bar = Bar(
        SpinnerColumn(),
        TextColumn(f"[bold]{name}[/bold]"),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = bar.add_task(name, total=None, counts="starting")

    def update(progress: engine.Progress) -> None:
        counts = " ".join(f"{k} {v:,}" for k, v in progress.counts.items())
        bar.update(task, counts=f"page {progress.pages}: {counts}")

    return bar, update


@sync_group.command("list")
def list_command() -> None:
    """The connector definitions and what each does."""
    settings = settings_for(None)
    for d in _definitions(settings).values():
        schedule = f"every {d.schedule_seconds} s" if d.schedule_seconds else "manual"
        click.echo(
            f"{d.name:<20} {d.kind:<8} {d.direction:<5} {d.entity:<9} {d.subject:<26} {schedule}"
        )
        click.echo(f"{'':<20} {d.title}")


@sync_group.command("run")
@click.argument("name")
@DB_OPTION
@click.option("--dry-run", is_flag=True, help="Read, map and match everything; write nothing.")
@click.option(
    "--full", is_flag=True, help="Ignore the stored cursor: read the source from the start."
)
def run_command(name: str, database_url: str | None, dry_run: bool, full: bool) -> None:
    """Run connector NAME once, now."""
    settings = settings_for(database_url)
    definition = _definition(settings, name)
    console = Console(stderr=True)
    bar, update = _progress_bar(console, name)

    async def work(database: Database) -> SyncRun:
        return await engine.run_connector(
            database,
            definition,
            live_policy(settings),
            dry_run=dry_run,
            full=full,
            progress=update,
        )

    try:
        with bar:
            run = _run(settings, work)
    except AlreadyRunning as busy:
        click.echo(str(busy), err=True)
        raise SystemExit(EXIT_BUSY) from None
    click.echo(("dry run, nothing written: " if dry_run else "") + _summary(run))
    if run.status in ("failed", "refused"):
        raise SystemExit(EXIT_FAILED)


@sync_group.command("replay")
@click.argument("name")
@DB_OPTION
@click.option("--id", "ids", type=int, multiple=True, help="Only these quarantined records.")
def replay_command(name: str, database_url: str | None, ids: tuple[int, ...]) -> None:
    """Map and apply NAME's quarantined records again, after fixing the mapping or the data."""
    settings = settings_for(database_url)
    definition = _definition(settings, name)

    async def work(database: Database) -> SyncRun:
        return await engine.replay_quarantine(
            database, definition, live_policy(settings), ids=ids or None
        )

    try:
        run = _run(settings, work)
    except AlreadyRunning as busy:
        click.echo(str(busy), err=True)
        raise SystemExit(EXIT_BUSY) from None
    click.echo(f"replayed: {_summary(run)}")
    if run.status in ("failed", "refused"):
        raise SystemExit(EXIT_FAILED)


@sync_group.command("status")
@click.argument("name", required=False)
@DB_OPTION
@click.option("--runs", default=5, show_default=True, help="Recent runs per connector.")
def status_command(name: str | None, database_url: str | None, runs: int) -> None:
    """Each connector's recent runs, cursor, circuit breaker and open quarantine."""
    settings = settings_for(database_url)
    names = [name] if name else sorted(_definitions(settings))

    async def work(database: Database) -> list[tuple[str, SyncState | None, list[SyncRun], int]]:
        rows = []
        async with database.reader() as session:
            for connector in names:
                state = await session.get(SyncState, connector)
                recent = list(
                    await session.scalars(sync.runs_statement(connector=connector).limit(runs))
                )
                open_items = await session.scalar(
                    select(func.count()).select_from(
                        sync.quarantine_statement(connector=connector).subquery()
                    )
                )
                rows.append((connector, state, recent, int(open_items or 0)))
        return rows

    for connector, state, recent, open_items in _run(settings, work):
        breaker = "closed"
        if state is not None and state.open_until is not None:
            breaker = f"open until {state.open_until.isoformat(timespec='seconds')}"
        click.echo(f"{connector}: breaker {breaker}, quarantine {open_items} open")
        if state is not None and state.cursor is not None:
            # A next-page URL may carry whatever the source put in its query: not printed.
            shown = {
                key: safe_url(value)
                if isinstance(value, str) and value.startswith(("http://", "https://"))
                else value
                for key, value in state.cursor.items()
            }
            click.echo(f"  cursor {json.dumps(shown, ensure_ascii=False)}")
        for run in recent:
            took = ""
            if run.finished_at is not None:
                took = f" {(run.finished_at - run.started_at).total_seconds():.1f} s"
            trigger = run.trigger + (", dry run" if run.dry_run else "")
            started = run.started_at.isoformat(sep=" ", timespec="seconds")
            click.echo(f"  run {run.id} {run.status} ({trigger}) {started}{took}")
            click.echo("    " + _summary(run).split(": ", 1)[1].replace("\n  ", "\n    "))


@sync_group.command("worker")
@DB_OPTION
def worker_command(database_url: str | None) -> None:
    """Run the connectors' schedules in this process until stopped (Ctrl-C)."""
    from hub.connectors.scheduler import Scheduler

    settings = settings_for(database_url)
    definitions = _definitions(settings)
    scheduled = [d.name for d in definitions.values() if d.schedule_seconds]
    click.echo(f"sync worker: {', '.join(scheduled) or 'no scheduled connectors'}")

    async def work(database: Database) -> None:
        scheduler = Scheduler(database, live_policy(settings), definitions)
        await scheduler.run_forever()

    try:
        _run(settings, work)
    except KeyboardInterrupt:
        click.echo("sync worker stopped")


@sync_group.command("redeliver")
@click.argument("name")
@DB_OPTION
@click.option("--delivery", "delivery_id", default=None, help="Only this delivery id.")
def redeliver_command(name: str, database_url: str | None, delivery_id: str | None) -> None:
    """Put webhook NAME's dead deliveries (given up after their retries) back in line; the next
    run sends them, in order per event."""
    from hub.connectors import webhooks

    settings = settings_for(database_url)
    definition = _definition(settings, name)
    if definition.kind != "webhook":
        raise click.ClickException(f"{name} is a {definition.kind} connector, not a webhook")

    async def work(database: Database) -> int:
        return await webhooks.redeliver(database, subscription_name=name, delivery_id=delivery_id)

    count = _run(settings, work)
    click.echo(f"{count} dead deliver{'y' if count == 1 else 'ies'} back in line for {name}")
