"""`gridhub token` (a signed development token) and `gridhub apikey` (department systems' keys).

hub.cli registers both: main.add_command(token) and main.add_command(apikey).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import click
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from hub.authz import apikeys
from hub.authz.identity import IdentityConfigError, issue_token, parse_ttl, secret_file
from hub.authz.models import ApiKey
from hub.commands.options import DB_OPTION, settings_for
from hub.config import Settings
from hub.db import Database
from hub.errors import GridHubError

T = TypeVar("T")


def _ttl(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_ttl(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command("token")
@click.argument("roles", metavar="ROLE...", nargs=-1, required=True)
@click.option("--sub", "subject", default=None, help="The token's subject (default dev:<role>).")
@click.option("--grid", "grids", multiple=True, help="A grid code the subject is responsible for.")
@click.option("--department", default=None, help="The subject's department code.")
@click.option(
    "--ttl", default="1h", show_default=True, callback=_ttl, help="Lifetime: 90s, 15m, 1h, 7d."
)
def token(
    roles: tuple[str, ...],
    subject: str | None,
    grids: tuple[str, ...],
    department: str | None,
    ttl: timedelta,
) -> None:
    """Print a signed HS256 token for ROLE (several roles: the client picks one per request
    with the X-GridHub-Role header).

    Signs with GRIDHUB_JWT_SECRET, else with the development secret in GRIDHUB_DATA_DIR
    (generated on first use). Codes are not checked here: the server checks them on each use.
    """
    settings = Settings.from_env()
    generated = settings.jwt_secret is None and not secret_file(settings).exists()
    try:
        text = issue_token(
            settings,
            role=list(roles),
            subject=subject or "dev:" + "+".join(roles),
            grids=grids,
            department=department,
            ttl=ttl,
        )
    except (IdentityConfigError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    if generated:
        click.echo(
            f"Generated a development signing secret in {secret_file(settings)} "
            "(keep it private; set GRIDHUB_JWT_SECRET in production).",
            err=True,
        )
    click.echo(text)


@click.group("apikey")
def apikey() -> None:
    """API keys of department systems (sent as `Authorization: Bearer ghk_...`)."""


@apikey.command("create")
@DB_OPTION
@click.option("--name", required=True, help="A unique name for the key (its system).")
@click.option("--role", required=True, help="The role the key acts as.")
@click.option("--department", default=None, help="The department code of the system.")
@click.option("--grid", "grids", multiple=True, help="A grid code the key is responsible for.")
def apikey_create(
    database_url: str | None,
    name: str,
    role: str,
    department: str | None,
    grids: tuple[str, ...],
) -> None:
    """Create a key and print it (the only time it is shown)."""

    async def work(session: AsyncSession) -> str:
        _, plain = await apikeys.create(
            session, name=name, role=role, department_code=department, grid_codes=grids
        )
        return plain

    plain = _run(settings_for(database_url), work)
    click.echo(f"Created API key {name!r}. It will not be shown again: store it now.", err=True)
    click.echo(plain)


@apikey.command("revoke")
@DB_OPTION
@click.argument("name")
def apikey_revoke(database_url: str | None, name: str) -> None:
    """Revoke the key NAME: requests with it fail from now on."""

    async def work(session: AsyncSession) -> ApiKey:
        return await apikeys.revoke(session, name=name)

    key = _run(settings_for(database_url), work)
    click.echo(f"API key {key.name!r} revoked at {_when(key.revoked_at)}.")


@apikey.command("list")
@DB_OPTION
def apikey_list(database_url: str | None) -> None:
    """List the keys: name, role, department, grids, created, last used, revoked."""
    keys = _run(settings_for(database_url), apikeys.list_keys)
    if not keys:
        click.echo("No API keys.")
        return
    header = ("NAME", "ROLE", "DEPARTMENT", "GRIDS", "CREATED", "LAST USED", "REVOKED")
    rows = [header] + [
        (
            key.name,
            key.role,
            key.department_code or "-",
            ",".join(key.grid_codes or ()) or "-",
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(len(header))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction; expected failures become a one-line CLI error."""
    try:
        return asyncio.run(_in_transaction(settings, work))
    except GridHubError as error:
        raise click.ClickException(f"{error.message} [{error.code}]") from None


async def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    db = Database(settings.database_url)
    try:
        async with db.engine.connect() as connection:
            migrated = await connection.run_sync(
                lambda sync: inspect(sync).has_table(ApiKey.__tablename__)
            )
        if not migrated:
            raise click.ClickException(
                "the database has no API key table: run `gridhub db upgrade` first"
            )
        async with db.transaction() as session:
            return await work(session)
    finally:
        await db.dispose()
