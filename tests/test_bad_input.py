"""Bad input is refused with a stable `extensions.code` (and the field it concerns), never with
a server error, and error messages never echo personal data such as ID numbers."""

from __future__ import annotations

import base64
import json
import logging
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub.api.ids import to_global_id
from hub.db import Database
from hub.models import Event, Feedback, Notice, Resident
from hub.residents import idcard
from hub.residents import service as residents
from tests.conftest import GraphQLClient
from tests.sql_capture import captured_sql
from tests.world import World, valid_id_number

CREATE_RESIDENT = (
    "mutation($input: ResidentInput!) { createResident(input: $input) { id idNumber } }"
)
UPDATE_RESIDENT = (
    "mutation($id: ID!, $input: ResidentInput!) { updateResident(id: $id, input: $input) { id } }"
)
REPORT = "mutation($input: ReportEventInput!) { reportEvent(input: $input) { id } }"
CREATE_NOTICE = "mutation($input: CreateNoticeInput!) { createNotice(input: $input) { id status } }"
SUBMIT = "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { id trackingCode status response } }"
RESPOND = "mutation($code: String!, $response: String!, $dept: String!) { respondToFeedback(trackingCode: $code, response: $response, departmentCode: $dept) { status response responder { code } } }"


def resident_input(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "王五",
        "idNumber": idcard.make("110105", date(1988, 8, 8), 123),
        "address": "望京西园1号楼",
        "gridCode": "G1",
        **overrides,
    }


def event_input(**overrides: Any) -> dict[str, Any]:
    return {
        "category": "SANITATION",
        "title": "垃圾堆放",
        "gridCode": "G1",
        "reporterSystem": "12345",
        **overrides,
    }


async def refused(
    gql: GraphQLClient,
    query: str,
    variables: dict[str, Any] | None,
    code: str,
    field: str | None = None,
) -> dict[str, Any]:
    """The request fails with `code` (and `field`); no part of it is a server error."""
    body = await gql(query, variables)
    errors = body.get("errors")
    assert errors, body
    assert all(e["extensions"]["code"] != "INTERNAL_SERVER_ERROR" for e in errors), body
    error = errors[0]
    assert error["extensions"]["code"] == code, (query, variables, error)
    if field is not None:
        assert error["extensions"].get("field") == field, (query, variables, error)
    return body


async def count(db: Database, model: type[Any]) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def notice(**overrides: Any) -> dict[str, Any]:
    return {
        "input": {
            "title": "停水通知",
            "body": "明日停水",
            "departmentCode": "health",
            "gridCodes": ["C1"],
            **overrides,
        }
    }


def _with_check(first17: str) -> str:
    return first17 + idcard.check_character(first17)


async def test_bad_id_numbers_are_refused_without_echo(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    valid = idcard.make("110105", date(1988, 8, 8), 123)
    wrong_check = valid[:17] + ("0" if valid[17] != "0" else "1")
    bad = [
        wrong_check,
        _with_check("11010519990230123"),  # 30 February, with a correct check character
        _with_check("11010519881301123"),  # month 13
        _with_check("11010529990101123"),  # born in the future
        _with_check("11010518000101123"),  # before 1880
        valid[:17],  # too short
        valid + "1",  # too long
        valid[:10] + "X" + valid[11:],  # X only as the check character
        "",
        "1101051988080812３",  # a full-width digit
    ]
    before = await count(db, Resident)
    for number in bad:
        body = await refused(
            gql,
            CREATE_RESIDENT,
            {"input": resident_input(idNumber=number)},
            "BAD_USER_INPUT",
            "idNumber",
        )
        if len(number) >= 6:
            assert number not in json.dumps(body, ensure_ascii=False), body
            assert number[:17] not in json.dumps(body, ensure_ascii=False), body
        rid = to_global_id("Resident", world.residents[0].id)
        body = await refused(
            gql,
            UPDATE_RESIDENT,
            {"id": rid, "input": {"idNumber": number}},
            "BAD_USER_INPUT",
            "idNumber",
        )
        if len(number) >= 6:
            assert number not in json.dumps(body, ensure_ascii=False)
    assert await count(db, Resident) == before
    # The same shape with a valid number goes through, and an x is read as X.
    x_number = next(
        n for n in (idcard.make("110105", date(1990, 1, 2), s) for s in range(1000)) if n[-1] == "X"
    )
    created = await gql.data(
        CREATE_RESIDENT, {"input": resident_input(idNumber=" " + x_number.lower())}
    )
    assert created["createResident"]["idNumber"] == x_number


async def test_a_second_resident_with_the_same_id_number_is_a_conflict(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    taken = valid_id_number(4)
    before = await count(db, Resident)
    body = await refused(
        gql, CREATE_RESIDENT, {"input": resident_input(idNumber=taken)}, "CONFLICT", "idNumber"
    )
    assert taken not in json.dumps(body)
    other = to_global_id("Resident", world.residents[1].id)
    body = await refused(
        gql, UPDATE_RESIDENT, {"id": other, "input": {"idNumber": taken}}, "CONFLICT"
    )
    assert taken not in json.dumps(body)
    assert await count(db, Resident) == before
    # Unchanged: the resident still has their own number.
    data = await gql.data("query($id: ID!) { resident(id: $id) { idNumber } }", {"id": other})
    assert data["resident"]["idNumber"] == valid_id_number(1)


async def test_unknown_grid_codes(gql: GraphQLClient, world: World) -> None:
    filters = [
        ('{ residents(filter: {inGrid: "NOPE"}) { totalCount } }', "inGrid"),
        ('{ events(filter: {inGrid: "NOPE"}) { totalCount } }', "inGrid"),
        ('{ members(filter: {inGrid: "NOPE"}) { totalCount } }', "inGrid"),
        ('{ notices(filter: {inGrid: "NOPE"}) { totalCount } }', "inGrid"),
        ('{ feedbackList(filter: {inGrid: "NOPE"}) { totalCount } }', "inGrid"),
        ('{ grids(filter: {inGrid: "NOPE"}) { totalCount } }', "inGrid"),
        ('{ grids(filter: {parentCode: "NOPE"}) { totalCount } }', "parentCode"),
        (
            '{ stats { eventCounts(groupBy: [STATUS], filter: {inGrid: "NOPE"}) { count } } }',
            "inGrid",
        ),
        ('{ stats { eventTimes(filter: {inGrid: "NOPE"}) { events } } }', "inGrid"),
        (
            '{ stats { residentTagCounts(level: "community", filter: {inGrid: "NOPE"}) { count } } }',
            "inGrid",
        ),
    ]
    for query, field in filters:
        await refused(gql, query, None, "BAD_USER_INPUT", field)
    inputs: list[tuple[str, dict[str, Any], str]] = [
        (REPORT, {"input": event_input(gridCode="NOPE")}, "gridCode"),
        (CREATE_RESIDENT, {"input": resident_input(gridCode="NOPE")}, "gridCode"),
        (
            UPDATE_RESIDENT,
            {"id": to_global_id("Resident", world.residents[0].id), "input": {"gridCode": "NOPE"}},
            "gridCode",
        ),
        (
            CREATE_NOTICE,
            {
                "input": {
                    "title": "t",
                    "body": "b",
                    "departmentCode": "health",
                    "gridCodes": ["C1", "NOPE"],
                }
            },
            "gridCodes",
        ),
        (SUBMIT, {"input": {"kind": "SUGGESTION", "content": "c", "gridCode": "NOPE"}}, "gridCode"),
    ]
    for query, variables, field in inputs:
        await refused(gql, query, variables, "BAD_USER_INPUT", field)


async def test_unknown_departments(gql: GraphQLClient, world: World) -> None:
    code = (await gql.data(SUBMIT, {"input": {"kind": "COMPLAINT", "content": "噪音扰民"}}))[
        "submitFeedback"
    ]["trackingCode"]
    cases = [
        ('{ events(filter: {departmentCode: "nope"}) { totalCount } }', None),
        ('{ members(filter: {departmentCode: "nope"}) { totalCount } }', None),
        ('{ notices(filter: {departmentCode: "nope"}) { totalCount } }', None),
        (
            CREATE_NOTICE,
            {"input": {"title": "t", "body": "b", "departmentCode": "nope", "gridCodes": ["C1"]}},
        ),
        (RESPOND, {"code": code, "response": "已处理", "dept": "nope"}),
    ]
    for query, variables in cases:
        await refused(gql, query, variables, "BAD_USER_INPUT", "departmentCode")
    # The failed response left the feedback open.
    data = await gql.data(
        "query($c: String!) { feedback(trackingCode: $c) { status response } }", {"c": code}
    )
    assert data["feedback"] == {"status": "SUBMITTED", "response": None}


async def test_oversized_and_empty_text(gql: GraphQLClient, db: Database, world: World) -> None:
    event_id = (await gql.data(REPORT, {"input": event_input()}))["reportEvent"]["id"]
    code = (await gql.data(SUBMIT, {"input": {"kind": "COMPLAINT", "content": "c"}}))[
        "submitFeedback"
    ]["trackingCode"]
    counts = {m: await count(db, m) for m in (Event, Notice, Feedback, Resident)}
    cases: list[tuple[str, dict[str, Any], str, int | None]] = [
        (REPORT, {"input": event_input(title="题" * 201)}, "title", 200),
        (REPORT, {"input": event_input(title="   ")}, "title", None),
        (REPORT, {"input": event_input(title="a\x00b")}, "title", None),
        (REPORT, {"input": event_input(description="述" * 5001)}, "description", 5000),
        (REPORT, {"input": event_input(reporterSystem="s" * 65)}, "reporterSystem", 64),
        (CREATE_NOTICE, notice(title="题" * 201), "title", 200),
        (CREATE_NOTICE, notice(body="文" * 20_001), "body", 20_000),
        (SUBMIT, {"input": {"kind": "SUGGESTION", "content": "议" * 5001}}, "content", 5000),
        (SUBMIT, {"input": {"kind": "SUGGESTION", "content": ""}}, "content", None),
        (CREATE_RESIDENT, {"input": resident_input(name="名" * 51)}, "name", 50),
        (CREATE_RESIDENT, {"input": resident_input(address="址" * 201)}, "address", 200),
        (CREATE_RESIDENT, {"input": resident_input(phone="12345")}, "phone", None),
        (CREATE_RESIDENT, {"input": resident_input(tags=["elderly", "rich"])}, "tags", None),
        (
            "mutation($id: ID!, $n: String!) { addEventNote(id: $id, note: $n) { note } }",
            {"id": event_id, "n": "注" * 2001},
            "note",
            2000,
        ),
        (RESPOND, {"code": code, "response": "复" * 5001, "dept": "health"}, "response", 5000),
    ]
    for query, variables, field, limit in cases:
        body = await refused(gql, query, variables, "BAD_USER_INPUT", field)
        if limit is not None:
            assert body["errors"][0]["extensions"]["maxLength"] == limit
    assert {m: await count(db, m) for m in counts} == counts
    # Exactly at the limit is fine.
    await gql.data(REPORT, {"input": event_input(title="题" * 200, description="述" * 5000)})
    await gql.data(CREATE_NOTICE, notice(body="文" * 20_000))


async def test_reporters(gql: GraphQLClient, world: World) -> None:
    member = to_global_id("Member", world.members[0].id)
    resident = to_global_id("Resident", world.residents[0].id)
    none = {k: v for k, v in event_input().items() if k != "reporterSystem"}
    await refused(gql, REPORT, {"input": none}, "BAD_USER_INPUT", "reporter")
    await refused(
        gql, REPORT, {"input": event_input(reporterMemberId=member)}, "BAD_USER_INPUT", "reporter"
    )
    await refused(
        gql,
        REPORT,
        {"input": {**none, "reporterMemberId": to_global_id("Member", 9999)}},
        "BAD_USER_INPUT",
        "reporter",
    )
    await refused(
        gql,
        REPORT,
        {"input": {**none, "reporterMemberId": resident}},
        "BAD_USER_INPUT",
        "reporterMemberId",
    )
    await refused(
        gql,
        REPORT,
        {"input": {**none, "reporterResidentId": "garbage"}},
        "BAD_USER_INPUT",
        "reporterResidentId",
    )
    await gql.data(REPORT, {"input": {**none, "reporterResidentId": resident}})


async def test_wrong_graphql_types(gql: GraphQLClient, world: World) -> None:
    """Inline literals of the wrong type make the document invalid; the same values through
    variables are bad input. Either way: a stable code, no data, never a server error."""
    inline = [
        '{ residents(first: "5") { totalCount } }',
        "{ residents(first: 1.5) { totalCount } }",
        "{ events(filter: {status: [REPORTD]}) { totalCount } }",
        '{ events(filter: {status: ["REPORTED"]}) { totalCount } }',
        "{ resident(id: true) { name } }",
        '{ residents(filter: {bornAfter: "1990-13-01"}) { totalCount } }',
        '{ events(filter: {reportedAfter: "yesterday"}) { totalCount } }',
        "query($n: String) { residents(first: $n) { totalCount } }",
    ]
    for query in inline:
        body = await gql(query)
        assert body.get("data") is None, body
        codes = {e["extensions"]["code"] for e in body["errors"]}
        assert codes == {"GRAPHQL_VALIDATION_FAILED"}, (query, body)
    body = await gql("{ residents { totalCount }")
    assert [e["extensions"]["code"] for e in body["errors"]] == ["GRAPHQL_PARSE_FAILED"]
    through_variables: list[tuple[str, dict[str, Any]]] = [
        ("query($n: Int) { residents(first: $n) { totalCount } }", {"n": "5"}),
        ("query($n: Int) { residents(first: $n) { totalCount } }", {"n": 2**40}),
        (
            "query($s: [EventStatus!]) { events(filter: {status: $s}) { totalCount } }",
            {"s": ["REPORTD"]},
        ),
        (
            "query($s: [EventStatus!]) { events(filter: {status: $s}) { totalCount } }",
            {"s": [None]},
        ),
        ("query($id: ID!) { resident(id: $id) { name } }", {"id": True}),
        ("query($id: ID!) { resident(id: $id) { name } }", {"id": None}),
        ("query($d: Date) { residents(filter: {bornAfter: $d}) { totalCount } }", {"d": "x"}),
        ("query($d: DateTime) { events(filter: {reportedAfter: $d}) { totalCount } }", {"d": "x"}),
        (
            "query($f: ResidentFilter) { residents(filter: $f) { totalCount } }",
            {"f": {"nosuch": 1}},
        ),
        (REPORT, {"input": {**event_input(), "category": "ARSON"}}),
        (REPORT, {"input": {**event_input(), "location": {"lng": "east", "lat": 39.9}}}),
    ]
    for query, variables in through_variables:
        body = await gql(query, variables)
        assert body.get("data") is None, body
        assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}, (
            variables,
            body,
        )
    # A time without an offset cannot be placed in UTC: refused, naming the field.
    await refused(
        gql,
        "query($d: DateTime) { events(filter: {reportedAfter: $d}) { totalCount } }",
        {"d": "2024-01-01T00:00:00"},
        "BAD_USER_INPUT",
        "reportedAfter",
    )


def gid(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def test_bad_global_ids(gql: GraphQLClient, world: World) -> None:
    event_id = (await gql.data(REPORT, {"input": event_input()}))["reportEvent"]["id"]
    resident = to_global_id("Resident", world.residents[0].id)
    bad_ids = ["!!!", "", gid("Resident"), gid("Resident:abc"), gid("Resident:1.5"), "w" * 300]
    for bad in bad_ids:
        for query in [
            "query($id: ID!) { resident(id: $id) { name } }",
            "query($id: ID!) { node(id: $id) { id } }",
            "mutation($id: ID!) { acceptEvent(id: $id) { id } }",
        ]:
            await refused(gql, query, {"id": bad}, "BAD_USER_INPUT", "id")
    # An id of another type: the lookups say so; node() finds nothing of that type.
    await refused(
        gql,
        "query($id: ID!) { resident(id: $id) { name } }",
        {"id": event_id},
        "BAD_USER_INPUT",
        "id",
    )
    await refused(
        gql, "query($id: ID!) { event(id: $id) { id } }", {"id": resident}, "BAD_USER_INPUT", "id"
    )
    await refused(
        gql,
        "mutation($id: ID!) { acceptEvent(id: $id) { id } }",
        {"id": resident},
        "BAD_USER_INPUT",
        "id",
    )
    body = await refused(
        gql, "query($id: ID!) { node(id: $id) { id } }", {"id": gid("Planet:1")}, "NOT_FOUND"
    )
    assert body["data"] == {"node": None}
    # Numbers beyond any row (and beyond the column type) are simply not there.
    for pk in ["99999", "99999999999", "-1", str(2**70)]:
        body = await gql(
            "query($id: ID!) { resident(id: $id) { name } }", {"id": gid(f"Resident:{pk}")}
        )
        assert body["data"] == {"resident": None}, body
        assert body["errors"][0]["extensions"]["code"] in {"NOT_FOUND", "BAD_USER_INPUT"}, body


async def test_missing_rows_are_not_found(gql: GraphQLClient, world: World) -> None:
    lookups = [
        ("resident", f'resident(id: "{to_global_id("Resident", 9999)}") {{ name }}'),
        ("member", f'member(id: "{to_global_id("Member", 9999)}") {{ name }}'),
        ("event", f'event(id: "{to_global_id("Event", 9999)}") {{ title }}'),
        ("event", 'event(code: "EV20240101AAAAAA") { title }'),
        ("notice", f'notice(id: "{to_global_id("Notice", 9999)}") {{ title }}'),
        ("feedback", 'feedback(trackingCode: "FBNOPE") { content }'),
        ("feedback", f'feedback(id: "{to_global_id("Feedback", 9999)}") {{ content }}'),
        ("grid", 'grid(code: "NOPE") { name }'),
        ("grid", f'grid(id: "{to_global_id("Grid", 9999)}") {{ name }}'),
        ("department", 'department(code: "nope") { name }'),
        ("node", f'node(id: "{to_global_id("Event", 9999)}") {{ id }}'),
    ]
    for field, selection in lookups:
        body = await refused(gql, f"{{ {selection} }}", None, "NOT_FOUND")
        assert body["data"] == {field: None}, body
        assert body["errors"][0]["path"] == [field]
    mutations: list[tuple[str, dict[str, Any]]] = [
        ("mutation($id: ID!) { acceptEvent(id: $id) { id } }", {"id": to_global_id("Event", 9999)}),
        (
            'mutation($id: ID!) { addEventNote(id: $id, note: "n") { note } }',
            {"id": to_global_id("Event", 9999)},
        ),
        (
            "mutation($id: ID!) { publishNotice(id: $id) { id } }",
            {"id": to_global_id("Notice", 9999)},
        ),
        (
            "mutation($id: ID!) { retractNotice(id: $id) { id } }",
            {"id": to_global_id("Notice", 9999)},
        ),
        (UPDATE_RESIDENT, {"id": to_global_id("Resident", 9999), "input": {"name": "x"}}),
        (RESPOND, {"code": "FBNOPE", "response": "r", "dept": "health"}),
    ]
    for query, variables in mutations:
        body = await refused(gql, query, variables, "NOT_FOUND")
        assert body["data"] is None
    # Lookups by id or code take exactly one of them.
    grid = to_global_id("Grid", world.grids["G1"].id)
    for query in [
        "{ grid { name } }",
        f'{{ grid(id: "{grid}", code: "G1") {{ name }} }}',
        "{ event { title } }",
        "{ feedback { content } }",
    ]:
        await refused(gql, query, None, "BAD_USER_INPUT")


async def test_notice_and_feedback_steps_happen_once(gql: GraphQLClient, world: World) -> None:
    notice_id = (
        await gql.data(
            CREATE_NOTICE,
            {
                "input": {
                    "title": "停水通知",
                    "body": "明日停水",
                    "departmentCode": "health",
                    "gridCodes": ["C1"],
                }
            },
        )
    )["createNotice"]["id"]
    publish = "mutation($id: ID!) { publishNotice(id: $id) { status publishedAt } }"
    retract = "mutation($id: ID!) { retractNotice(id: $id) { status } }"
    await refused(gql, retract, {"id": notice_id}, "INVALID_TRANSITION")  # a draft
    published = (await gql.data(publish, {"id": notice_id}))["publishNotice"]
    assert published["status"] == "PUBLISHED"
    await refused(gql, publish, {"id": notice_id}, "INVALID_TRANSITION")
    assert (await gql.data(retract, {"id": notice_id}))["retractNotice"]["status"] == "RETRACTED"
    await refused(gql, retract, {"id": notice_id}, "INVALID_TRANSITION")
    await refused(gql, publish, {"id": notice_id}, "INVALID_TRANSITION")
    still = await gql.data(
        "query($id: ID!) { notice(id: $id) { status publishedAt } }", {"id": notice_id}
    )
    assert still["notice"] == {"status": "RETRACTED", "publishedAt": published["publishedAt"]}

    code = (await gql.data(SUBMIT, {"input": {"kind": "COMPLAINT", "content": "噪音扰民"}}))[
        "submitFeedback"
    ]["trackingCode"]
    first = await gql.data(RESPOND, {"code": code, "response": "已协调", "dept": "health"})
    assert first["respondToFeedback"] == {
        "status": "RESPONDED",
        "response": "已协调",
        "responder": {"code": "health"},
    }
    await refused(
        gql,
        RESPOND,
        {"code": code, "response": "再次答复", "dept": "civil_affairs"},
        "INVALID_TRANSITION",
    )
    data = await gql.data(
        "query($c: String!) { feedback(trackingCode: $c) { response responder { code } } }",
        {"c": code},
    )
    assert data["feedback"] == {"response": "已协调", "responder": {"code": "health"}}


async def test_notice_grid_codes_are_deduplicated_resolved_at_once_and_capped(
    gql: GraphQLClient, app: Any, db: Database, world: World
) -> None:
    # A code named twice is one grid of the scope, not a primary-key violation.
    body = await gql.data(
        "mutation($input: CreateNoticeInput!) { createNotice(input: $input) { scope { code } } }",
        notice(gridCodes=["C1", "G1", "C1", "G1", "C1"]),
    )
    assert sorted(g["code"] for g in body["createNotice"]["scope"]) == ["C1", "G1"]
    # However many codes, one statement resolves them all.
    every_grid = list(world.grids)
    with captured_sql(app.state.db.engine.sync_engine) as statements:
        await gql.data(CREATE_NOTICE, notice(gridCodes=every_grid))
    grid_reads = [s for s, _ in statements if "FROM grids" in s]
    assert len(grid_reads) == 1, grid_reads
    # The cap counts distinct codes: a long list of one code is fine, 101 codes are not.
    await gql.data(CREATE_NOTICE, notice(gridCodes=["C1"] * 500))
    before = await count(db, Notice)
    body = await refused(
        gql,
        CREATE_NOTICE,
        notice(gridCodes=[f"X{n}" for n in range(101)]),
        "BAD_USER_INPUT",
        "gridCodes",
    )
    assert body["errors"][0]["extensions"]["maximum"] == 100
    pasted = valid_id_number(7)
    body = await refused(
        gql,
        CREATE_NOTICE,
        notice(gridCodes=[*every_grid, "NOPE", pasted, "NOPE"]),
        "BAD_USER_INPUT",
        "gridCodes",
    )
    # The unknown codes are named by position, never repeated back.
    n = len(every_grid)
    assert body["errors"][0]["extensions"]["unknownIndexes"] == [n, n + 1, n + 2]
    assert "3 unknown" in body["errors"][0]["message"]
    assert "NOPE" not in json.dumps(body) and pasted not in json.dumps(body)
    assert await count(db, Notice) == before


async def test_unknown_tags_are_counted_not_echoed(gql: GraphQLClient, world: World) -> None:
    """Tags are care data; a misspelt one ("高血压" for chronic_illness) is not repeated back."""
    typos = ["高血压", "pregnant ", "chronic_ilness"]
    rid = to_global_id("Resident", world.residents[0].id)
    cases: list[tuple[str, dict[str, Any]]] = [
        (CREATE_RESIDENT, {"input": resident_input(tags=["elderly", *typos])}),
        (UPDATE_RESIDENT, {"id": rid, "input": {"tags": ["elderly", *typos]}}),
    ]
    for query, variables in cases:
        body = await refused(gql, query, variables, "BAD_USER_INPUT", "tags")
        error = body["errors"][0]
        text = json.dumps(body, ensure_ascii=False)
        for typo in ("高血压", "chronic_ilness"):
            assert typo not in text, body
        # "pregnant " is a known tag once trimmed: two are unknown.
        assert error["message"].startswith("2 unknown tag(s)"), error
        assert error["extensions"]["knownTags"] == sorted(residents.KNOWN_TAGS)
        assert all(tag in error["message"] for tag in residents.KNOWN_TAGS)


async def test_code_points_that_are_not_characters_are_refused(
    client: httpx.AsyncClient, db: Database, world: World
) -> None:
    """Lone surrogates and non-characters arrive as JSON escapes ("\\ud800"). UTF-8 cannot
    encode a lone surrogate: PostgreSQL's driver failed on it, with every bound value in the
    error. Now the field is refused by name, on both backends."""

    async def send(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        content = json.dumps({"query": query, "variables": variables})  # ASCII, with \u escapes
        response = await client.post(
            "/graphql",
            content=content.encode("ascii"),
            headers={"content-type": "application/json"},
        )
        return response.json()

    counts = {m: await count(db, m) for m in (Event, Notice, Feedback, Resident)}
    cases: list[tuple[str, dict[str, Any], str]] = [
        (CREATE_RESIDENT, {"input": resident_input(name="张\ud800三")}, "name"),
        (CREATE_RESIDENT, {"input": resident_input(address="望京西园\udfff")}, "address"),
        (CREATE_RESIDENT, {"input": resident_input(healthNotes="\ufdd0")}, "healthNotes"),
        (REPORT, {"input": event_input(title="垃圾\uffff")}, "title"),
        (REPORT, {"input": event_input(description="述\U0010fffe")}, "description"),
        (SUBMIT, {"input": {"kind": "SUGGESTION", "content": "议\ud83d"}}, "content"),
        (CREATE_NOTICE, notice(body="明日停水\ufffe"), "body"),
    ]
    for query, variables, field in cases:
        body = await send(query, variables)
        assert body.get("errors"), body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (field, body)
        assert error["extensions"]["field"] == field, (field, body)
    assert {m: await count(db, m) for m in counts} == counts
    # A surrogate pair is one character (an emoji sent as "\ud83d\ude00"): stored as sent.
    body = await send(
        "mutation($input: ResidentInput!) { createResident(input: $input) { address } }",
        {"input": resident_input(address="望京西园😀")},
    )
    assert body == {"data": {"createResident": {"address": "望京西园😀"}}}


def full_width(text: str) -> str:
    """The same text typed on a Chinese input method: ASCII letters and digits at U+FF01..."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


async def test_full_width_digits_are_the_same_number(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    taken = valid_id_number(4)
    before = await count(db, Resident)
    body = await refused(
        gql,
        CREATE_RESIDENT,
        {"input": resident_input(idNumber=full_width(taken))},
        "CONFLICT",
        "idNumber",
    )
    text = json.dumps(body, ensure_ascii=False)
    assert taken not in text and full_width(taken) not in text
    other = to_global_id("Resident", world.residents[1].id)
    await refused(
        gql, UPDATE_RESIDENT, {"id": other, "input": {"idNumber": full_width(taken)}}, "CONFLICT"
    )
    assert await count(db, Resident) == before
    # A new number and phone typed in full width are stored as their ASCII forms.
    new = idcard.make("110105", date(1977, 7, 7), 77)
    created = await gql.data(
        "mutation($input: ResidentInput!) { createResident(input: $input) { idNumber phone } }",
        {
            "input": resident_input(
                idNumber=full_width(new.lower()), phone=full_width("010-62345678")
            )
        },
    )
    assert created["createResident"] == {"idNumber": new, "phone": "010-62345678"}
    await refused(
        gql, CREATE_RESIDENT, {"input": resident_input(idNumber=new)}, "CONFLICT", "idNumber"
    )
    # Digits of other scripts are no ASCII digits: refused, not stored beside the number.
    await refused(
        gql,
        CREATE_RESIDENT,
        {"input": resident_input(phone="1380013800\u0663")},
        "BAD_USER_INPUT",
        "phone",
    )


UNSTORABLE_QUERIES = [
    "query($v: String!) { residents(filter: {idNumber: $v}) { totalCount } }",
    "query($v: String!) { residents(filter: {inGrid: $v}) { totalCount } }",
    "query($v: String!) { grid(code: $v) { code } }",
    "query($v: String!) { department(code: $v) { code } }",
    "query($v: String!) { feedback(trackingCode: $v) { status } }",
]


@pytest.mark.parametrize("query", UNSTORABLE_QUERIES)
@pytest.mark.parametrize("escape", ["\\ud800", "\\u0000"])
async def test_unstorable_characters_in_any_argument_are_bad_input(
    client: Any, world: World, query: str, escape: str
) -> None:
    # Raw JSON, so the lone surrogate survives as an escape the server must decode itself.
    body = '{"query": ' + json.dumps(query) + ', "variables": {"v": "G1' + escape + '"}}'
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_nul_in_a_literal_is_bad_input(gql: GraphQLClient, world: World) -> None:
    error = await gql.error('{ grid(code: "G1\\u0000") { code } }')
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_id_number_filter_matches_full_width_digits(gql: GraphQLClient, world: World) -> None:
    number = world.residents[0].id_number
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number)
    data = await gql.data(
        "query($n: String!) { residents(filter: {idNumber: $n}) { totalCount } }", {"n": full_width}
    )
    assert data["residents"]["totalCount"] == 1


# --- values at the edges of their types (GridHub issue 13, part 4) ---------------------------

STRICT = {"Accept": "application/graphql-response+json"}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()[:200]
        for r in caplog.records
        if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR
    ]


async def bad_input(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    field: str | None = None,
) -> dict[str, Any]:
    """The request is refused as BAD_USER_INPUT (400 when nothing ran), and the server logged
    no stack trace for it."""
    caplog.clear()
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=STRICT
    )
    body: dict[str, Any] = response.json()
    codes = [e["extensions"]["code"] for e in body.get("errors") or ()]
    assert codes and set(codes) == {"BAD_USER_INPUT"}, (query, variables, body)
    if "data" not in body:  # a request error: nothing executed
        assert response.status_code == 400, body
    if field is not None:
        assert body["errors"][0]["extensions"].get("field") == field, body
    assert not tracebacks(caplog), (query, variables, tracebacks(caplog))
    return body


# The review's value, and the other end of the range: each is valid ISO 8601, and each is a
# day outside years 1 to 9999 once in UTC.
OVERFLOWING_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999-00:01",
]
TIME_FILTERS = [
    "query($t: DateTime) { events(filter: {reportedAfter: $t}) { totalCount } }",
    "query($t: DateTime) { events(filter: {reportedBefore: $t}) { totalCount } }",
    "query($t: DateTime) { stats { eventCounts(groupBy: [MONTH], filter: {reportedAfter: $t})"
    " { count } } }",
    "query($t: DateTime) { stats { eventTimes(filter: {reportedBefore: $t}) { events } } }",
    "query($t: DateTime) { auditLog(filter: {since: $t}) { totalCount } }",
    "query($t: DateTime) { auditLog(filter: {until: $t}) { totalCount } }",
]


@pytest.mark.parametrize("query", TIME_FILTERS)
async def test_times_outside_the_utc_range_are_bad_input(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    for moment in OVERFLOWING_TIMES:
        await bad_input(client, caplog, query, {"t": moment})
    # The range itself is open: the earliest and latest times it keeps still answer.
    for moment in ["0001-01-03T00:00:00+00:00", "9999-12-29T00:00:00-14:00"]:
        response = await client.post("/graphql", json={"query": query, "variables": {"t": moment}})
        assert "errors" not in response.json(), (moment, response.json())


async def test_a_time_outside_the_utc_range_written_inline_makes_the_document_invalid(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # Inline literals of the wrong type fail validation (test_wrong_graphql_types), the same
    # check as through a variable.
    caplog.clear()
    query = '{ events(filter: {reportedAfter: "0001-01-01T00:00:00+14:00"}) { totalCount } }'
    response = await client.post("/graphql", json={"query": query}, headers=STRICT)
    assert response.status_code == 400, response.text
    codes = {e["extensions"]["code"] for e in response.json()["errors"]}
    assert codes == {"GRAPHQL_VALIDATION_FAILED"}, response.json()
    assert not tracebacks(caplog)


async def test_a_deadline_outside_the_utc_range_is_bad_input(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    for moment in OVERFLOWING_TIMES:
        await bad_input(client, caplog, REPORT, {"input": event_input(deadline=moment)})


def forged_cursor(tag: str, value: Any, row_id: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([tag, value, row_id]).encode()).decode().rstrip("=")


async def test_forged_cursors_are_bad_input(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    events_by_time = (
        "query($c: String) { events(orderBy: {field: REPORTED_AT}, after: $c) { totalCount } }"
    )
    residents_by_name = (
        "query($c: String) { residents(orderBy: {field: NAME}, before: $c) { totalCount } }"
    )
    grids = "query($c: String) { grids(after: $c) { totalCount } }"
    forged = [
        # The review's case: a time that overflows once in UTC, inside a cursor.
        (events_by_time, forged_cursor("Event.REPORTED_AT", "0001-01-01T00:00:00+14:00", 1)),
        (events_by_time, forged_cursor("Event.REPORTED_AT", "9999-12-31T23:59:59-14:00", 1)),
        # No stored name holds a NUL; PostgreSQL fails the whole query on one.
        (residents_by_name, forged_cursor("Resident.NAME", "王\u0000", 1)),
        (residents_by_name, forged_cursor("Resident.NAME", "\x01", 1)),
        (grids, forged_cursor("Grid.PATH", "/D1/\ufffe", 1)),
        # Ids beyond the INTEGER column (and beyond BIGINT).
        (grids, forged_cursor("Grid.PATH", "/D1/", 2**31)),
        (grids, forged_cursor("Grid.PATH", "/D1/", 2**63)),
    ]
    for query, cursor in forged:
        await bad_input(client, caplog, query, {"c": cursor}, field="cursor")
    # A cursor the server wrote, with characters outside the base64url alphabet added.
    page = await client.post(
        "/graphql", json={"query": "{ grids(first: 1) { pageInfo { endCursor } } }"}
    )
    cursor = page.json()["data"]["grids"]["pageInfo"]["endCursor"]
    resumed = await client.post("/graphql", json={"query": grids, "variables": {"c": cursor}})
    assert "errors" not in resumed.json(), resumed.json()
    await bad_input(client, caplog, grids, {"c": cursor + "!*"}, field="cursor")


async def test_global_ids_are_only_the_ones_the_server_writes(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    grid = world.grids["G1"]
    query = "query($id: ID!) { grid(id: $id) { code } }"
    good = str(to_global_id("Grid", grid.id))
    found = await client.post("/graphql", json={"query": query, "variables": {"id": good}})
    assert found.json()["data"] == {"grid": {"code": "G1"}}
    # int() reads each of these as the same row; none is an id the server ever wrote.
    for inside in [" 1", "+1", "1_0", "01", "١", "1 ", "9" * 5000, "-1", "0", str(2**63)]:
        await bad_input(client, caplog, query, {"id": gid(f"Grid:{inside}")}, field="id")
    await bad_input(client, caplog, query, {"id": good + "!!"}, field="id")
    await bad_input(client, caplog, query, {"id": gid("Gr id:1")}, field="id")


async def test_numbers_at_the_edges_are_bad_input(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    events = "query($n: Int) { events(first: $n) { totalCount } }"
    for n in [2**31, -(2**31) - 1, 2**63, -1]:
        await bad_input(client, caplog, events, {"n": n})
    await bad_input(client, caplog, "query($n: Int) { events(last: $n) { totalCount } }", {"n": -5})
    # GraphQL reads the literal 1e400 as infinity: no place on Earth.
    for lng, lat in [("1e400", "39.9"), ("116.4", "-1e400"), ("-1e400", "1e400")]:
        location = f"{{lng: {lng}, lat: {lat}}}"
        report = (
            'mutation { reportEvent(input: {category: SANITATION, title: "t", gridCode: "G1", '
            f'reporterSystem: "12345", location: {location}}}) {{ id }} }}'
        )
        await bad_input(client, caplog, report, field="location")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"query": "{ grids { totalCount } }", "variables": {"x": "\xff"}}',  # not UTF-8
        b'{"query": "{ grids { totalCount } }", "variables": {"x": "\xed\xa0\x80"}}',  # CESU
        b'{"query": "{ grids { totalCount } }", "variables": {"x": NaN}}',
        b'{"query": "{ grids { totalCount } }", "variables": {"x": -Infinity}}',
        b'{"query": "{ grids { totalCount } }", "variables": {"x": 1e400}}',
        # Python refuses to read an integer of more than 4,300 digits (ValueError, not JSON's).
        b'{"query": "{ grids { totalCount } }", "variables": {"x": ' + b"9" * 5000 + b"}}",
    ],
)
async def test_request_bodies_that_are_not_strict_json_are_bad_requests(
    client: httpx.AsyncClient, world: World, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    caplog.clear()
    response = await client.post(
        "/graphql", content=raw, headers={**STRICT, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_REQUEST"]
    assert not tracebacks(caplog)


async def test_an_unknown_code_is_quoted_back_cut_short(gql: GraphQLClient, world: World) -> None:
    """A 100,000-character code is refused, and the message names it by its first characters
    and its length, not by echoing it into the answer and the log."""
    code = "G" * 100_000
    for query, field in (
        ("query($c: String!) { events(filter: {inGrid: $c}) { totalCount } }", "inGrid"),
        ("query($c: String!) { events(filter: {departmentCode: $c}) { totalCount } }", None),
    ):
        body = await refused(gql, query, {"c": code}, "BAD_USER_INPUT", field)
        message = body["errors"][0]["message"]
        assert len(message) < 200 and "100000 characters" in message, message
