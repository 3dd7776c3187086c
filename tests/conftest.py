"""Fixtures: every database test runs on SQLite and on PostgreSQL.

Each backend gets a fresh, migrated database for the session; each test starts from empty tables
plus the small world of tests/world.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.app import create_app
from hub.config import Settings
from hub.db import Base, Database
from hub.migrate import upgrade
from tests.markers import MarkerWorld, seed_markers
from tests.policy_clients import SUPERUSER, TEST_SECRET, credentials, write_policy_dir
from tests.services import POSTGRES_URL, need_postgres
from tests.world import World, build_world

BACKENDS = os.environ.get("GRIDHUB_TEST_BACKENDS", "sqlite,postgres").split(",")


# --- running in parallel (pytest-xdist; scripts/test.sh runs `-n 2 --dist loadgroup`) ---------
#
# Each worker is its own pytest session: its own databases (database_url), temp folders, event
# loop, browser and servers on free ports. Tests spread one by one, except that tests sharing a
# fixture wider than a test and narrower than the session (a module's server, a module's demo
# data) run on one worker, in their usual order, so that fixture is built once as in a serial
# run. A test that must not run beside some other test (a fixed port, a fixed file) names a group
# itself: `@pytest.mark.xdist_group("name")` puts every test of that name on one worker.

_SHARED_SCOPES = frozenset({"class", "module", "package"})


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_xdist_worker(config) and getattr(config.option, "dist", "no") != "no"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        fixture_info = getattr(item, "_fixtureinfo", None)
        if fixture_info is None:
            continue
        shares = any(
            definitions and definitions[-1].scope in _SHARED_SCOPES
            for name, definitions in fixture_info.name2fixturedefs.items()
            if name in fixture_info.names_closure
        )
        if not shares:
            continue
        # Per backend: a module's fixtures over SQLite and over PostgreSQL are two anyway.
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec is not None else None
        module = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(f"{module}[{backend}]" if backend else module))


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _is_xdist_controller(session.config):
        return
    # Once, before the workers: each would otherwise clear the failure screenshots the other had
    # just kept (tests/browser_fixtures.py), or run `npm ci` into the same node_modules at once.
    from tests.browser import artifacts_dir
    from tests.http_audit.node import node_command

    shutil.rmtree(artifacts_dir() / "failures", ignore_errors=True)
    with contextlib.suppress(pytest.skip.Exception, pytest.fail.Exception):
        # Without Node.js or when npm ci fails, the tests that need it say why themselves.
        node_command("audit.mjs")


async def _fresh_postgres_database() -> str:
    name = f"gridhub_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def _drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "postgres":
        need_postgres()
        url = await _fresh_postgres_database()
        await upgrade(url)
        yield url
        await _drop_postgres_database(url)
    else:
        path: Path = tmp_path_factory.mktemp("db") / "gridhub.db"
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade(url)
        yield url


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default policy plus the test-only role `superuser`, which reads, scopes, calls and
    sets everything. Tests of the core (filters, pagination, state machine) run as superuser;
    tests of the policy itself use the default roles (tests/policy_clients.py)."""
    return write_policy_dir(tmp_path_factory.mktemp("policies"))


@pytest.fixture
def settings(database_url: str, policy_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        policy_dir=policy_dir,
        data_dir=tmp_path / "data",
        jwt_secret=TEST_SECRET,
        # Tests that need a worker to pick up a change call registry.sync() themselves; a
        # short beat would add its statements to the statement-count tests.
        policy_poll_seconds=300,
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    await _empty_tables(database)
    yield database
    await database.dispose()


async def _empty_tables(database: Database) -> None:
    async with database.engine.begin() as connection:
        tables = list(reversed(Base.metadata.sorted_tables))
        if database.dialect == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(table.delete())


@pytest.fixture
async def world(db: Database) -> World:
    async with db.transaction() as session:
        return await build_world(session)


@pytest.fixture
async def app(settings: Settings, db: Database) -> AsyncIterator[Any]:
    # After `db`: the tables are emptied first, then the app seeds its policy version 1.
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def normal(settings: Settings, app: Any) -> AsyncIterator[Any]:
    """The same app as `app`, over the same database, with compiled execution off: the normal
    executor answers everything (tests hold the two to the same answers)."""
    application = create_app(replace(settings, compiled_execution=False))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def marked_pair(db: Database, world: World, app: Any, normal: Any) -> MarkerWorld:
    """The marker world (tests/markers.py), its emergency grant known to both apps."""
    async with db.transaction() as session:
        seeded = await seed_markers(session, world)
    for application in (app, normal):
        await application.state.registry.sync(application.state.db)
    return seeded


async def post_graphql(
    application: Any, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    """One POST /graphql straight into `application`."""
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.post("/graphql", json=body, headers=headers)


@pytest.fixture
async def client(app: Any, world: World, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client acting as `superuser`, with a stated purpose."""
    transport = httpx.ASGITransport(app=app)
    headers = credentials(settings, SUPERUSER)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, **kw
        )
        return response.json()  # type: ignore[no-any-return]

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a request that must not fail."""
        body = await self(query, variables)
        assert "errors" not in body, body.get("errors")
        return body["data"]  # type: ignore[no-any-return]

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The first error of a request that must fail."""
        body = await self(query, variables)
        assert body.get("errors"), body
        return body["errors"][0]  # type: ignore[no-any-return]


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(client)
