"""`gridhub audit`: check the access log's hash chain and show its latest records."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Sequence

import click
from sqlalchemy import select

from hub.authz.audit import ChainReport, verify
from hub.authz.models import AuditRecord
from hub.commands.options import DB_OPTION, settings_for
from hub.db import Database

# How many fields or record ids one line of `tail` shows before "(+N more)".
_LIST_PREVIEW = 5


@click.group()
def audit() -> None:
    """The tamper-evident access log."""


async def _verify(url: str) -> ChainReport:
    database = Database(url)
    try:
        async with database.reader() as session:
            return await verify(session)
    finally:
        await database.dispose()


@audit.command("verify")
@DB_OPTION
def verify_command(database_url: str | None) -> None:
    """Check every record's hash and link; exit 1 and name the first broken record if any."""
    report = asyncio.run(_verify(settings_for(database_url).database_url))
    if report.ok:
        click.echo(f"audit chain intact: {report.records} records")
        # Written down elsewhere, this lets a later check notice a chain rewritten wholesale.
        click.echo(f"head hash: {report.head_hash}")
        return
    where = "" if report.first_broken_seq is None else f" at record {report.first_broken_seq}"
    click.echo(f"audit chain BROKEN{where}: {report.reason}")
    raise SystemExit(1)


async def _tail(url: str, count: int) -> list[AuditRecord]:
    database = Database(url)
    try:
        async with database.reader() as session:
            statement = select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(count)
            records = list((await session.scalars(statement)).all())
    finally:
        await database.dispose()
    records.reverse()
    return records


def _printable(text: str) -> str:
    """Control and format characters escaped: actor names of failed logins are whatever the
    client sent, and must not drive the auditor's terminal (ANSI escapes, bidi overrides)."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in {"Cc", "Cf"}
        else char
        for char in text
    )


def _optional(text: str | None) -> str:
    return "-" if text is None else _printable(text)


def _preview(values: Sequence[str]) -> str:
    if not values:
        return "-"
    shown = ",".join(_printable(value) for value in values[:_LIST_PREVIEW])
    rest = len(values) - _LIST_PREVIEW
    return shown + (f" (+{rest} more)" if rest > 0 else "")


def _line(record: AuditRecord) -> str:
    return "  ".join(
        [
            str(record.seq),
            record.at.isoformat(timespec="seconds"),
            _printable(record.kind),
            _printable(record.actor),
            _printable(record.role),
            _optional(record.operation),
            f"fields={_preview(record.fields)}",
            f"records={_preview(record.records)}",
            f"purpose={_optional(record.purpose)}",
            _printable(record.outcome),
        ]
    )


@audit.command("tail")
@DB_OPTION
@click.option("-n", "count", default=20, show_default=True, help="How many records to show.")
def tail_command(database_url: str | None, count: int) -> None:
    """Print the latest records, oldest first."""
    if count < 1:
        raise click.BadParameter("must be at least 1", param_hint="-n")
    records = asyncio.run(_tail(settings_for(database_url).database_url, count))
    if not records:
        click.echo("the audit log is empty")
    for record in records:
        click.echo(_line(record))
