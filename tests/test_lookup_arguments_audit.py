"""A lookup by the value of a sensitive field needs a purpose and names the row it found on the
access log, on both executors, whatever the query selects of it.

The default policy marks no field that a lookup argument names as sensitive, so this module runs
under the default policy plus `g2, Event.code, sensitive`: `event(code:)` then finds an event by
the value of a sensitive field, as `residents(filter: {idNumber:})` finds a resident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.config import Settings
from hub.db import Database
from hub.events.models import Event
from tests.conftest import post_graphql
from tests.policy_clients import PURPOSE, SUPERUSER, credentials, write_policy_dir
from tests.test_compiled_equivalence import last_seq, records_since
from tests.world import World

BY_CODE = "query($code: String!) { event(code: $code) { id } }"
REPORT = """mutation {
  reportEvent(input: {category: SANITATION, title: "t", gridCode: "G1", reporterSystem: "test"}) {
    id
  }
}"""


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = write_policy_dir(tmp_path_factory.mktemp("sensitive-codes"))
    with (directory / "policy.csv").open("a", encoding="utf-8") as policy:
        policy.write("g2, Event.code, sensitive\n")
    return directory


@pytest.fixture(params=["compiled", "graphql-core"])
def executor(request: pytest.FixtureRequest, app: Any, normal: Any) -> Any:
    return app if request.param == "compiled" else normal


async def reported(app: Any, settings: Settings, db: Database) -> tuple[int, str]:
    """A new event's primary key and code."""
    response = await post_graphql(app, credentials(settings, SUPERUSER), {"query": REPORT})
    assert "errors" not in response.json(), response.json()
    async with db.reader() as session:
        row = (await session.execute(select(Event.id, Event.code))).one()
    return row.id, row.code


async def test_a_lookup_by_a_sensitive_code_names_the_row_it_found(
    executor: Any, app: Any, world: World, db: Database, settings: Settings
) -> None:
    event_id, code = await reported(app, settings, db)
    before = await last_seq(db)
    headers = credentials(settings, SUPERUSER, subject="looker")
    body = {"query": BY_CODE, "variables": {"code": code}}
    answer = (await post_graphql(executor, headers, body)).json()
    assert "errors" not in answer, answer
    reads = [r for r in await records_since(db, before) if r[0] == "read"]
    assert [(r[4], r[5], r[6]) for r in reads] == [(["Event.code"], [f"Event:{event_id}"], PURPOSE)]


async def test_a_lookup_by_a_sensitive_code_needs_a_purpose(
    executor: Any, app: Any, world: World, db: Database, settings: Settings
) -> None:
    _, code = await reported(app, settings, db)
    headers = credentials(settings, SUPERUSER, purpose=None)
    body = {"query": BY_CODE, "variables": {"code": code}}
    answer = (await post_graphql(executor, headers, body)).json()
    assert answer["data"] == {"event": None}, answer
    error = answer["errors"][0]
    assert error["extensions"] == {"code": "PURPOSE_REQUIRED", "fields": ["Event.code"]}
    assert error["message"].startswith("looking up by Event.code needs a stated purpose")
