"""Schema migrations (Alembic), callable from the CLI, the app's tests and the demo loader."""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from hub.db import async_url, create_engine


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("hub") / "migrations"))
    config.set_main_option("sqlalchemy.url", async_url(url))
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`, on the async engine."""
    config = alembic_config(url)
    engine = create_engine(url)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
    await engine.dispose()


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        revision = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
    await engine.dispose()
    return revision


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def revision(url: str, message: str) -> None:
    """Autogenerate a new revision against the database at `url` (for developers)."""
    asyncio.run(_autogenerate(url, message))


async def _autogenerate(url: str, message: str) -> None:
    config = alembic_config(url)
    config.set_main_option("script_location", "hub/migrations")
    engine = create_engine(url)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)

    async with engine.begin() as connection:
        await connection.run_sync(run)
    await engine.dispose()
