"""A list found through a sensitive filter or sort key names the rows it found on the access
log, on both executors (compiled and graphql-core), whatever the query selects of them.

`residents(filter: {idNumber: $n}) { edges { node { id } } }` asks no sensitive field, yet it
answers "whose ID number is this": its record must name the resident, so that an auditor asking
the log about that resident finds the probe.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from hub.api.ids import to_global_id
from hub.config import Settings
from hub.db import Database
from tests.conftest import post_graphql
from tests.policy_clients import PURPOSE, credentials
from tests.test_compiled_equivalence import last_seq, records_since
from tests.world import World

BY_ID_NUMBER = "query($n: String!) { residents(filter: {idNumber: $n}) { edges { node { id } } } }"
COUNT_BY_ID_NUMBER = "query($n: String!) { residents(filter: {idNumber: $n}) { totalCount } }"
BY_BIRTH_DATE = """query($after: Date!, $before: Date!) {
  residents(filter: {bornAfter: $after, bornBefore: $before}) { nodes { name } }
}"""
SORTED_BY_BIRTH_DATE = "{ residents(first: 3, orderBy: {field: BIRTH_DATE}) { nodes { id } } }"
SORTED_COUNT = "{ residents(first: 1, orderBy: {field: BIRTH_DATE}) { totalCount } }"


@pytest.fixture(params=["compiled", "graphql-core"])
def executor(request: pytest.FixtureRequest, app: Any, normal: Any) -> Any:
    return app if request.param == "compiled" else normal


async def read_as_police(
    application: Any, db: Database, settings: Settings, query: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The answer of `query` as public_security, and the access-log records it appended."""
    before = await last_seq(db)
    headers = credentials(settings, "public_security", subject="officer-9")
    response = await post_graphql(application, headers, {"query": query, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    return body["data"], await records_since(db, before)


def read_record(records: list[tuple[Any, ...]]) -> tuple[list[str], list[str]]:
    """The fields and records of the one `read` record."""
    reads = [r for r in records if r[0] == "read"]
    assert len(reads) == 1, records
    _, _, _, _, fields, ids, purpose, outcome, _ = reads[0]
    assert (purpose, outcome) == (PURPOSE, "ok")
    return fields, ids


async def test_a_lookup_by_id_number_names_the_resident_it_found(
    executor: Any, world: World, db: Database, settings: Settings
) -> None:
    resident = world.residents[2]
    variables = {"n": resident.id_number}
    data, records = await read_as_police(executor, db, settings, BY_ID_NUMBER, variables)
    assert data["residents"]["edges"] == [{"node": {"id": to_global_id("Resident", resident.id)}}]
    assert read_record(records) == (["Resident.idNumber"], [f"Resident:{resident.id}"])


async def test_a_count_by_id_number_names_the_resident_it_counted(
    executor: Any, world: World, db: Database, settings: Settings
) -> None:
    resident = world.residents[5]
    variables = {"n": resident.id_number}
    data, records = await read_as_police(executor, db, settings, COUNT_BY_ID_NUMBER, variables)
    assert data == {"residents": {"totalCount": 1}}
    assert read_record(records) == (["Resident.idNumber"], [f"Resident:{resident.id}"])


async def test_a_birth_date_range_names_every_resident_it_returned(
    executor: Any, world: World, db: Database, settings: Settings
) -> None:
    after, before = date(1950, 1, 1), date(1955, 12, 31)
    found = [r for r in world.residents if after <= r.birth_date < before]
    assert 0 < len(found) < len(world.residents)
    variables = {"after": after.isoformat(), "before": before.isoformat()}
    data, records = await read_as_police(executor, db, settings, BY_BIRTH_DATE, variables)
    assert sorted(n["name"] for n in data["residents"]["nodes"]) == sorted(r.name for r in found)
    expected = sorted(f"Resident:{r.id}" for r in found)
    assert read_record(records) == (["Resident.birthDate"], expected)


async def test_a_birth_date_ordering_names_the_rows_of_its_page(
    executor: Any, world: World, db: Database, settings: Settings
) -> None:
    data, records = await read_as_police(executor, db, settings, SORTED_BY_BIRTH_DATE, {})
    shown = [node["id"] for node in data["residents"]["nodes"]]
    by_birth = sorted(world.residents, key=lambda r: (r.birth_date, r.id))[:3]
    assert shown == [to_global_id("Resident", r.id) for r in by_birth]
    expected = sorted(f"Resident:{r.id}" for r in by_birth)
    assert read_record(records) == (["Resident.birthDate"], expected)


async def test_a_sort_key_alone_names_no_more_than_the_page_behind_a_count(
    executor: Any, world: World, db: Database, settings: Settings
) -> None:
    # The count does not depend on the ordering: it reveals nothing about birth dates, so only
    # the one row the page read (first: 1) is named, not every resident counted.
    data, records = await read_as_police(executor, db, settings, SORTED_COUNT, {})
    assert data == {"residents": {"totalCount": len(world.residents)}}
    first = min(world.residents, key=lambda r: (r.birth_date, r.id))
    assert read_record(records) == (["Resident.birthDate"], [f"Resident:{first.id}"])


async def test_the_auditor_finds_the_probe_by_the_resident_it_found(
    app: Any, normal: Any, world: World, db: Database, settings: Settings
) -> None:
    resident = world.residents[7]
    for application in (app, normal):
        await read_as_police(application, db, settings, BY_ID_NUMBER, {"n": resident.id_number})
    question = """query($record: String!) {
      auditLog(filter: {record: $record, since: "2000-01-01T00:00:00+08:00"}) {
        nodes { actor kind fields }
      }
    }"""
    auditor = credentials(settings, "auditor", subject="auditor-1", purpose=None)
    variables = {"record": to_global_id("Resident", resident.id)}
    response = await post_graphql(app, auditor, {"query": question, "variables": variables})
    probe = {"actor": "officer-9", "kind": "read", "fields": ["Resident.idNumber"]}
    assert response.json()["data"]["auditLog"]["nodes"] == [probe, probe]


async def test_both_executors_write_the_same_record(
    app: Any, normal: Any, world: World, db: Database, settings: Settings
) -> None:
    variables = {"after": "1950-01-01", "before": "1960-12-31"}
    compiled = await read_as_police(app, db, settings, BY_BIRTH_DATE, variables)
    plain = await read_as_police(normal, db, settings, BY_BIRTH_DATE, variables)
    assert compiled[0] == plain[0]
    assert compiled[1] == plain[1]
