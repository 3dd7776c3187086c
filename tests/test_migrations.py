"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL,
and every revision downgrades cleanly.

Each test migrates its own new database: the session database is shared with other tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

import hub.models  # noqa: F401 - registers every table on Base.metadata
from hub.db import Base, create_engine
from hub.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.conftest import _drop_postgres_database, _fresh_postgres_database


@pytest.fixture
async def empty_url(database_url: str, tmp_path: Any) -> AsyncIterator[str]:
    """A new database with no tables, on the backend under test."""
    if database_url.startswith("postgresql"):
        url = await _fresh_postgres_database()
        try:
            yield url
        finally:
            await _drop_postgres_database(url)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"


async def downgrade(url: str, revision: str) -> None:
    """The mirror of hub.migrate.upgrade (the app never downgrades, so it has no helper)."""
    config = alembic_config(url)
    engine = create_engine(url)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def schema_differences(url: str) -> list[Any]:
    """What autogenerate would write to bring the database to Base.metadata."""
    engine = create_engine(url)

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def snapshot(url: str) -> dict[str, Any]:
    """Every table's columns, keys, constraints and indexes as the database reports them."""

    def read(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        tables: dict[str, Any] = {}
        for name in sorted(inspector.get_table_names()):
            tables[name] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)
                ],
                "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
                "foreign_keys": sorted(
                    (fk["name"] or "", tuple(fk["constrained_columns"]), fk["referred_table"])
                    for fk in inspector.get_foreign_keys(name)
                ),
                "unique": sorted(
                    (u["name"] or "", tuple(u["column_names"]))
                    for u in inspector.get_unique_constraints(name)
                ),
                "indexes": sorted(
                    (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name)
                ),
            }
        return tables

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def revisions(url: str) -> list[str]:
    """Every revision id, from the first to the head."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def test_a_fresh_database_upgraded_to_head_matches_the_models(empty_url: str) -> None:
    await upgrade(empty_url)

    assert await current_revision(empty_url) == head_revision(empty_url)
    assert await schema_differences(empty_url) == []


async def test_downgrade_to_base_then_upgrade_to_head(empty_url: str) -> None:
    model_tables = {table.name for table in Base.metadata.sorted_tables}
    await upgrade(empty_url)
    assert await table_names(empty_url) == model_tables | {"alembic_version"}

    await downgrade(empty_url, "base")
    # Only Alembic's own bookkeeping table may stay behind, and it names no revision.
    assert await table_names(empty_url) <= {"alembic_version"}
    assert await current_revision(empty_url) is None

    await upgrade(empty_url)
    assert await current_revision(empty_url) == head_revision(empty_url)
    assert await table_names(empty_url) == model_tables | {"alembic_version"}
    assert await schema_differences(empty_url) == []


async def test_each_downgrade_restores_the_schema_of_the_revision_below(empty_url: str) -> None:
    """Walking up records the schema at every revision; walking back down, one revision at a
    time, must find exactly the same schema again (tables, columns, indexes, constraints)."""
    steps = revisions(empty_url)
    assert steps[0] == "0001" and steps[-1] == head_revision(empty_url)
    seen: dict[str, dict[str, Any]] = {}
    for revision in steps:
        await upgrade(empty_url, revision)
        seen[revision] = await snapshot(empty_url)
    assert len({repr(schema) for schema in seen.values()}) == len(steps), (
        "a revision changed nothing"
    )

    for revision in reversed(steps[:-1]):
        await downgrade(empty_url, "-1")
        assert await current_revision(empty_url) == revision
        assert await snapshot(empty_url) == seen[revision]
