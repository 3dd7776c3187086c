"""Compiled execution answers exactly as the normal executor does: the same bytes and the same
access log, for every role, over a generated corpus of list queries.

Two apps share one database seeded with the marker world (tests/markers.py): `app` runs with
compiled execution (the default), `normal` without. Every query goes to both with the same
credential; the two responses must be byte-identical, and the access-log records each one
appended must name the same fields, records and purpose. The generator (tests/compiled_queries.py)
writes only queries the compiler is meant to answer, so each one must actually be compiled,
unless it fails the same way on both paths (a crafted cursor, a filter that needs a purpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from hub.api.ids import to_global_id
from hub.authz.models import AuditRecord
from hub.config import Settings
from hub.db import Database
from hub.residents.service import KNOWN_TAGS
from tests.compiled_queries import LISTS, LOOKUPS, Values, list_queries
from tests.conftest import post_graphql
from tests.markers import GRANT_SUBJECT, RESIDENTS, VIEWPOINTS, MarkerWorld, Viewpoint
from tests.policy_clients import SUPERUSER, credentials

# Every role of the policy, the test superuser (reads everything) and the subject holding an
# open emergency grant (its masked fields show in full under the grant's grids).
VIEWS: dict[str, Viewpoint] = {
    **VIEWPOINTS,
    SUPERUSER: Viewpoint(SUPERUSER),
    "health under a grant": Viewpoint("health", department="health"),
}
SUBJECTS = {"health under a grant": GRANT_SUBJECT}

# A query fails the same way on both paths for these reasons; anything else must compile.
SHARED_FAILURES = ("error: BAD_USER_INPUT", "error: PURPOSE_REQUIRED", "error: NOT_FOUND")
# (A lookup of a row out of the viewer's scope is NOT_FOUND, exactly like a missing one.)


def headers(settings: Settings, name: str) -> dict[str, str]:
    view = VIEWS[name]
    return credentials(
        settings,
        view.role,
        subject=SUBJECTS.get(name, view.subject),
        grids=view.grids,
        department=view.department,
    )


async def last_seq(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.coalesce(func.max(AuditRecord.seq), 0))))


async def records_since(db: Database, seq: int) -> list[tuple[Any, ...]]:
    """What the access log says of the requests since `seq`, without times, hashes or seqs."""
    async with db.reader() as session:
        rows = (
            await session.scalars(
                select(AuditRecord).where(AuditRecord.seq > seq).order_by(AuditRecord.seq)
            )
        ).all()
    return [
        (r.kind, r.actor, r.role, r.operation, r.fields, r.records, r.purpose, r.outcome, r.detail)
        for r in rows
    ]


@dataclass
class Answers:
    compiled: httpx.Response
    normal: httpx.Response
    # Whether the compiled app answered from a plan, and else why it did not.
    planned: bool
    fallbacks: set[str]


async def both(
    app: Any, normal: Any, db: Database, headers: dict[str, str], body: dict[str, Any]
) -> Answers:
    """Send `body` to both apps. When the compiled app answered from a plan, its bytes and its
    access-log records must be the normal app's. When it handed the operation to the normal
    executor, both ran the same code: the status and error codes must agree (the bytes may
    not, when several root fields fail: which error comes first depends on timing)."""
    before = await last_seq(db)
    answered, fallbacks = counted(app)
    compiled = await post_graphql(app, headers, body)
    answered_now, fallbacks_now = counted(app)
    middle = await last_seq(db)
    plain = await post_graphql(normal, headers, body)
    assert compiled.status_code == plain.status_code, body
    planned = answered_now > answered
    if planned:
        assert compiled.content == plain.content, (body, compiled.text, plain.text)
        compiled_log = (await records_since(db, before))[: middle - before]
        assert compiled_log == await records_since(db, middle), body
    else:
        assert error_codes(compiled) == error_codes(plain), (body, compiled.text, plain.text)
    reasons = {r for r, n in fallbacks_now.items() if n != fallbacks.get(r, 0)}
    return Answers(compiled, plain, planned, reasons)


def error_codes(response: httpx.Response) -> list[str]:
    errors = response.json().get("errors") or []
    return sorted(str((e.get("extensions") or {}).get("code")) for e in errors)


def values_of(marked: MarkerWorld) -> Values:
    cursors = ["garbage", "WyJSZXNpZGVudC5JRCIsMSwxXQ"]  # ["Resident.ID",1,1]
    cursors += ["WyJFdmVudC5JRCIsMCwwXQ", "WyJHcmlkLlBBVEgiLCIvRDEvIiwxXQ"]
    return Values(
        grids=[*marked.world.grids, "NOPE"],
        departments=[*marked.world.departments, "nope"],
        cursors=cursors,
        tags=sorted(KNOWN_TAGS)[:3],
        id_numbers=[seed.id_number for seed in RESIDENTS[:2]],
        ids={
            type_name: [row.global_id for row in marked.rows.values() if row.type == type_name]
            for type_name in ("Resident", "Event", "Notice", "Member", "Feedback")
        }
        | {"Grid": [str(to_global_id("Grid", g.id)) for g in marked.world.grids.values()]},
        codes={
            "Event": [row.code for row in marked.rows.values() if row.type == "Event" and row.code],
            "Grid": list(marked.world.grids),
            "Department": list(marked.world.departments),
            "Feedback": [
                row.code for row in marked.rows.values() if row.type == "Feedback" and row.code
            ],
        },
    )


def counted(app: Any) -> tuple[int, dict[str, int]]:
    counts = app.state.compiled.counts
    return counts.hits + counts.misses, dict(counts.fallbacks)


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    # Every example sends a dozen requests: shrinking a failure would take many minutes, and
    # the failing draws are printed whole anyway.
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_generated_list_queries_answer_the_same_on_both_paths(
    data: st.DataObject,
    app: Any,
    normal: Any,
    settings: Settings,
    db: Database,
    marked_pair: MarkerWorld,
) -> None:
    values = values_of(marked_pair)
    for name in VIEWS:
        schema = app.state.registry.schema_for(VIEWS[name].role)._schema
        if not {*LISTS, *LOOKUPS} & set(schema.query_type.fields):
            continue  # policy_admin reads no lists
        query, variables = data.draw(list_queries(schema, values), label=f"query as {name}")
        answers = await both(
            app, normal, db, headers(settings, name), {"query": query, "variables": variables}
        )
        if not answers.planned:
            # Only a failure both paths share keeps a generated query off the plan.
            assert answers.fallbacks <= set(SHARED_FAILURES), (name, query, answers.fallbacks)
            assert answers.compiled.json().get("errors"), (name, query, "not planned, no error")
