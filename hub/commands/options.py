"""Options every database-touching subcommand shares."""

from __future__ import annotations

import click

from hub.config import Settings

DB_OPTION = click.option(
    "--db",
    "database_url",
    envvar="GRIDHUB_DATABASE_URL",
    default=None,
    help="Database URL (default: SQLite file gridhub.db here; postgresql://... for PostgreSQL).",
)


def settings_for(database_url: str | None) -> Settings:
    return Settings.from_env(database_url=database_url)
