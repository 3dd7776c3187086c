"""GridHub's Open311 GeoReport v2 server (/open311/v2): services, service requests and tokens in
JSON and XML, public reads that show only what the public role reads, and audited writes with
GridHub API keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import select, update

from hub.api.open311 import SERVICES
from hub.authz import apikeys, audit, store
from hub.authz.models import AuditRecord
from hub.authz.policy import EXPECTATIONS_FILE, POLICY_FILE
from hub.db import Database
from hub.events import service as events
from hub.events.models import Event
from hub.events.states import Action
from tests.policy_clients import write_policy_dir
from tests.world import World

BASE = "/open311/v2"
# Every field of a service request, in the spec's order.
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
# What the default policy lets the public read of an event (policies/policy.csv).
PUBLIC_FIELDS = [
    name
    for name in REQUEST_FIELDS
    if name
    not in (
        "description",
        "agency_responsible",
        "expected_datetime",
        "lat",
        "long",
    )
]


# What these tests let the public read of events: every field Open311 maps, in every event, so
# that they test the mapping whatever the default policy decides for the public (Open311 follows
# the policy by itself; tests/test_leaks_channels.py holds it to the default policy as it is).
PUBLIC_EVENT_LINES = [
    "p, public, Event, rows:all, allow",
    "p, public, Event.code, read, allow",
    "p, public, Event.status, read, allow",
    "p, public, Event.category, read, allow",
    "p, public, Event.reportedAt, read, allow",
    "p, public, Event.updatedAt, read, allow",
    "p, public, Event.grid, read, allow",
]
# The auditors' expectations that would refuse those lines; the ones about reporters and
# descriptions stay.
_KEPT_PUBLIC_EXPECTATIONS = ("public, Event.reporter,", "public, Event.description,")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = write_policy_dir(tmp_path_factory.mktemp("open311-policies"))
    policy = directory / POLICY_FILE
    lines = [
        line
        for line in policy.read_text(encoding="utf-8").splitlines()
        if not line.startswith("p, public, Event")
    ]
    extra = list(PUBLIC_EVENT_LINES)
    if any("on_behalf" in line for line in lines):
        # A policy where naming the reporting system is a right (`on_behalf`): the grid
        # worker's app of check_grid_scope reports as itself, the system its key names.
        extra.append("p, grid_worker, ReportEventInput.reporterSystem, on_behalf, allow")
    policy.write_text("\n".join([*lines, *extra]) + "\n", encoding="utf-8")
    expected = directory / EXPECTATIONS_FILE
    kept = [
        line
        for line in expected.read_text(encoding="utf-8").splitlines()
        if not line.startswith("public, Event") or line.startswith(_KEPT_PUBLIC_EXPECTATIONS)
    ]
    expected.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return directory


@asynccontextmanager
async def public(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials, as any Open311 client is."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def xml(response: httpx.Response) -> ElementTree.Element:
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ElementTree.fromstring(response.content)


def codes_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["service_request_id"] for item in response.json()]


async def records(db: Database, kind: str, actor: str | None = None) -> list[AuditRecord]:
    statement = select(AuditRecord).where(AuditRecord.kind == kind).order_by(AuditRecord.seq)
    if actor is not None:
        statement = statement.where(AuditRecord.actor == actor)
    async with db.reader() as session:
        return list((await session.scalars(statement)).all())


async def new_key(db: Database, name: str, role: str, grids: Sequence[str] = ()) -> str:
    async with db.transaction() as session:
        _, key = await apikeys.create(session, name=name, role=role, grid_codes=grids)
    return key


async def install_policy(
    app: Any, db: Database, *, remove: Sequence[str] = (), add: Sequence[str] = ()
) -> None:
    """A new policy version, as changePolicy stores it, installed in the app's registry."""
    async with db.transaction() as session:
        base = await store.current(session)
        assert base is not None
        lines = [line for line in base.text.splitlines() if line.strip() not in remove]
        assert len(lines) == len(base.text.splitlines()) - len(remove)
        text = "\n".join([*lines, *add]) + "\n"
        await store.save(session, base=base, text=text, actor="test", reason="open311 test")
    await app.state.registry.sync(db)
    assert app.state.registry.version == base.version + 1


# --- the world's events ------------------------------------------------------------------------

SECRET_NOTE = "居民00 13900000000 说楼道里堆满了垃圾"


async def seed_events(db: Database, world: World) -> dict[str, str]:
    """Four events by residents, a member and the hotline, across grids, statuses and months.
    Returns name -> event code."""
    plan: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("litter", "sanitation", "G1", {"reporter_resident_id": world.residents[0].id}, "05-01"),
        ("fire", "fire_hazard", "G2", {"reporter_member_id": world.members[0].id}, "05-10"),
        ("road", "infrastructure", "G4", {"reporter_system": "12345-hotline"}, "06-01"),
        ("noise", "other", "G3", {"reporter_resident_id": world.residents[1].id}, "06-15"),
    ]
    codes: dict[str, str] = {}
    async with db.transaction() as session:
        for name, category, grid, reporter, day in plan:
            event = await events.report(
                session,
                report=events.EventReport(
                    category=category,
                    title=f"{name} 标题",
                    grid_code=grid,
                    description=SECRET_NOTE,
                    location=events.Location(116.4812, 39.9234) if name == "road" else None,
                    **reporter,
                ),
                actor="test",
            )
            event.reported_at = datetime.fromisoformat(f"2024-{day}T08:00:00+00:00")
            codes[name] = event.code
        await session.flush()
        ids = {
            name: await session.scalar(select(Event.id).where(Event.code == code))
            for name, code in codes.items()
        }
        steps: dict[str, list[tuple[Action, str | None]]] = {
            "fire": [(Action.ACCEPT, None), (Action.REJECT, None)],
            "road": [(Action.ACCEPT, None), (Action.DISPATCH, "public_security")],
            "noise": [
                (Action.ACCEPT, None),
                (Action.DISPATCH, "civil_affairs"),
                (Action.START, None),
                (Action.RESOLVE, None),
                (Action.CLOSE, None),
            ],
        }
        for name, actions in steps.items():
            for action, department in actions:
                event_id = ids[name]
                assert event_id is not None
                await events.transition(
                    session,
                    event_id=event_id,
                    action=action,
                    actor="test",
                    note="重复上报" if action is Action.REJECT else "",
                    department_code=department,
                )
    return codes


@pytest.fixture
async def codes(db: Database, world: World) -> dict[str, str]:
    return await seed_events(db, world)


# --- discovery and services --------------------------------------------------------------------


async def check_discovery(app: Any, world: World) -> None:
    async with public(app) as http:
        as_json = await http.get(f"{BASE}/discovery.json")
        as_xml = await http.get(f"{BASE}/discovery.xml")
    assert as_json.status_code == 200
    (endpoint,) = as_json.json()["endpoints"]
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    root = xml(as_xml)
    assert root.tag == "discovery"
    assert [e.tag for e in root] == ["changeset", "contact", "key_service", "endpoints"]
    formats = root.findall("./endpoints/endpoint/formats/format")
    assert [f.text for f in formats] == ["text/xml", "application/json"]


async def check_services(app: Any, world: World) -> None:
    assert set(SERVICES) == events.CATEGORIES
    async with public(app) as http:
        as_json = await http.get(f"{BASE}/services.json")
        as_xml = await http.get(f"{BASE}/services.xml")
    listing = as_json.json()
    assert [s["service_code"] for s in listing] == list(SERVICES)
    sanitation = next(s for s in listing if s["service_code"] == "sanitation")
    assert sanitation == {
        "service_code": "sanitation",
        "service_name": "环境卫生",
        "description": "环境卫生 (Sanitation)",
        "metadata": True,
        "type": "realtime",
        "keywords": "垃圾, 卫生, 清扫",
        "group": "城市环境",
    }
    root = xml(as_xml)
    assert root.tag == "services"
    services = root.findall("service")
    assert len(services) == len(SERVICES)
    assert [e.tag for e in services[0]] == [
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    ]
    assert services[0].findtext("metadata") == "true"
    assert services[0].findtext("type") == "realtime"


async def check_service_definitions(app: Any, world: World) -> None:
    async with public(app) as http:
        as_json = await http.get(f"{BASE}/services/health.json")
        as_xml = await http.get(f"{BASE}/services/health.xml")
        missing_json = await http.get(f"{BASE}/services/potholes.json")
        missing_xml = await http.get(f"{BASE}/services/potholes.xml")
    definition = as_json.json()
    assert definition["service_code"] == "health"
    (attribute,) = definition["attributes"]
    assert attribute["code"] == "grid_code" and attribute["required"] is True
    root = xml(as_xml)
    assert root.tag == "service_definition"
    assert root.findtext("./attributes/attribute/code") == "grid_code"
    assert root.findtext("./attributes/attribute/required") == "true"

    assert missing_json.status_code == 404
    assert missing_json.json() == [{"code": 404, "description": "no service 'potholes'"}]
    assert missing_xml.status_code == 404
    error = xml(missing_xml)
    assert error.tag == "errors"
    assert error.findtext("./error/code") == "404"
    assert error.findtext("./error/description") == "no service 'potholes'"


async def test_discovery_services_and_definitions(app: Any, world: World) -> None:
    await check_discovery(app, world)
    await check_services(app, world)
    await check_service_definitions(app, world)


# --- reading service requests ------------------------------------------------------------------


async def check_requests_list(app: Any, codes: dict[str, str]) -> None:
    async with public(app) as http:
        as_json = await http.get(f"{BASE}/requests.json")
        as_xml = await http.get(f"{BASE}/requests.xml")
    listing = as_json.json()
    # Newest first.
    assert [r["service_request_id"] for r in listing] == [
        codes["noise"],
        codes["road"],
        codes["fire"],
        codes["litter"],
    ]
    for item in listing:
        assert list(item) == PUBLIC_FIELDS
    road = listing[1]
    assert road["status"] == "open"  # dispatched
    assert road["service_code"] == "infrastructure" and road["service_name"] == "基础设施"
    assert road["requested_datetime"] == "2024-06-01T08:00:00+00:00"
    assert road["address"] == "第4网格" and road["address_id"] == "G4"
    assert [r["status"] for r in listing] == ["closed", "open", "closed", "open"]

    root = xml(as_xml)
    assert root.tag == "service_requests"
    requests = root.findall("request")
    assert [r.findtext("service_request_id") for r in requests] == [
        r["service_request_id"] for r in listing
    ]
    for element in requests:
        assert [child.tag for child in element] == PUBLIC_FIELDS
    assert requests[1].findtext("requested_datetime") == "2024-06-01T08:00:00+00:00"
    assert requests[1].findtext("status_notes") == ""  # null is an empty element


async def check_filters_and_pages(app: Any, codes: dict[str, str]) -> None:
    listing = f"{BASE}/requests.json"
    async with public(app) as http:
        by_id = await http.get(
            listing,
            params={
                "service_request_id": f"{codes['fire']},{codes['road']},EV00000000NOPE",
                # Ignored beside service_request_id, as the spec says.
                "status": "open",
            },
        )
        assert set(codes_of(by_id)) == {codes["fire"], codes["road"]}
        by_service = await http.get(listing, params={"service_code": "sanitation,other"})
        assert codes_of(by_service) == [codes["noise"], codes["litter"]]
        opened = await http.get(listing, params={"status": "open"})
        assert codes_of(opened) == [codes["road"], codes["litter"]]
        closed = await http.get(listing, params={"status": "closed"})
        assert codes_of(closed) == [codes["noise"], codes["fire"]]
        both = await http.get(listing, params={"status": "open,closed"})
        assert len(codes_of(both)) == 4
        may = await http.get(
            listing,
            params={"start_date": "2024-05-01T08:00:00Z", "end_date": "2024-05-10T16:00:00+08:00"},
        )
        # Both ends are inclusive; +08:00 is the same instant as 08:00Z.
        assert codes_of(may) == [codes["fire"], codes["litter"]]
        # An unencoded "+" arrives as a space.
        june = await http.get(f"{listing}?start_date=2024-06-01T16:00:00 08:00")
        assert codes_of(june) == [codes["noise"], codes["road"]]
        pages = [
            codes_of(await http.get(listing, params={"page": page, "page_size": 3}))
            for page in (1, 2, 3)
        ]
        assert pages == [
            [codes["noise"], codes["road"], codes["fire"]],
            [codes["litter"]],
            [],
        ]
        default = await http.get(listing)
        assert len(codes_of(default)) == 4


BAD_ARGUMENTS: list[tuple[dict[str, str], str]] = [
    ({"status": "pending"}, "status takes open, closed or both"),
    ({"service_code": "potholes"}, "unknown service_code: potholes"),
    ({"page_size": "201"}, "page_size is at most 200"),
    ({"page": "0"}, "page must be a whole number of at least 1"),
    ({"page": "²"}, "page must be a whole number of at least 1"),
    (
        {"service_request_id": ",".join(f"EV{n}" for n in range(201))},
        "service_request_id takes at most 200 ids",
    ),
    ({"page_size": "ten"}, "page_size must be a whole number of at least 1"),
    ({"page": "100000"}, "page is too far: narrow the listing with start_date"),
    (
        {"start_date": "2024-05-01T00:00:00"},
        "start_date must be an ISO 8601 date and time with an offset, e.g. "
        "2024-05-01T08:00:00+08:00",
    ),
    (
        {"end_date": "yesterday"},
        "end_date must be an ISO 8601 date and time with an offset, e.g. 2024-05-01T08:00:00+08:00",
    ),
]


async def check_bad_arguments(app: Any, codes: dict[str, str]) -> None:
    async with public(app) as http:
        for params, description in BAD_ARGUMENTS:
            as_json = await http.get(f"{BASE}/requests.json", params=params)
            as_xml = await http.get(f"{BASE}/requests.xml", params=params)
            assert as_json.status_code == 400, params
            assert as_json.json() == [{"code": 400, "description": description}]
            assert as_xml.status_code == 400
            root = xml(as_xml)
            assert root.tag == "errors"
            assert root.findtext("./error/code") == "400"
            assert root.findtext("./error/description") == description


async def check_one_request(app: Any, codes: dict[str, str]) -> None:
    async with public(app) as http:
        as_json = await http.get(f"{BASE}/requests/{codes['fire']}.json")
        as_xml = await http.get(f"{BASE}/requests/{codes['fire']}.xml")
        missing = await http.get(f"{BASE}/requests/EV20240101ZZZZZZ.json")
        missing_xml = await http.get(f"{BASE}/requests/EV20240101ZZZZZZ.xml")
        no_format = await http.get(f"{BASE}/requests/{codes['fire']}.html")
        no_resource = await http.get(f"{BASE}/complaints.json")
        wrong_method = await http.delete(f"{BASE}/requests.json")
    (fire,) = as_json.json()
    assert fire["service_request_id"] == codes["fire"]
    assert fire["status"] == "closed"  # rejected
    assert fire["service_code"] == "fire_hazard"
    (element,) = xml(as_xml).findall("request")
    assert element.findtext("service_request_id") == codes["fire"]
    assert element.findtext("status") == "closed"

    assert missing.status_code == 404
    assert missing.json() == [{"code": 404, "description": "service request not found"}]
    assert missing_xml.status_code == 404
    assert xml(missing_xml).findtext("./error/code") == "404"
    assert no_format.status_code == 404
    assert no_format.json()[0]["code"] == 404
    assert no_resource.status_code == 404
    assert no_resource.json() == [{"code": 404, "description": "no such Open311 resource"}]
    assert wrong_method.status_code == 405
    assert wrong_method.json()[0]["code"] == 405


async def test_requests_in_both_formats(app: Any, codes: dict[str, str]) -> None:
    await check_requests_list(app, codes)
    await check_one_request(app, codes)


async def test_filters_pages_and_bad_arguments(app: Any, codes: dict[str, str]) -> None:
    await check_filters_and_pages(app, codes)
    await check_bad_arguments(app, codes)


async def test_public_output_never_names_a_reporter(
    app: Any, world: World, codes: dict[str, str]
) -> None:
    async with public(app) as http:
        bodies = [(await http.get(f"{BASE}/requests.{fmt}")).text for fmt in ("json", "xml")] + [
            (await http.get(f"{BASE}/requests/{code}.{fmt}")).text
            for code in codes.values()
            for fmt in ("json", "xml")
        ]
    people = [
        value for r in world.residents for value in (r.name, r.phone, r.id_number) if value
    ] + [value for m in world.members for value in (m.name, m.phone) if value]
    assert len(people) == 3 * len(world.residents) + 2 * len(world.members)
    for body in bodies:
        # Each body shows at least one request: an empty answer would prove nothing.
        assert any(code in body for code in codes.values())
        for value in people:
            assert value not in body
        # The description quotes a resident; the public does not read descriptions.
        assert SECRET_NOTE not in body
        assert "12345-hotline" not in body and "reporter" not in body


async def test_events_the_public_policy_scopes_out_are_absent(
    app: Any, db: Database, codes: dict[str, str]
) -> None:
    async with public(app) as http:
        assert len(codes_of(await http.get(f"{BASE}/requests.json"))) == 4
        # The public's row scope for events goes: the public sees no event at all.
        await install_policy(app, db, remove=["p, public, Event, rows:all, allow"])
        listing = await http.get(f"{BASE}/requests.json")
        by_id = await http.get(
            f"{BASE}/requests.json", params={"service_request_id": ",".join(codes.values())}
        )
        one = await http.get(f"{BASE}/requests/{codes['road']}.json")
        token = await http.get(f"{BASE}/tokens/{codes['road']}.json")
    assert codes_of(listing) == []
    assert codes_of(by_id) == []
    assert one.status_code == 404 and token.status_code == 404
    assert one.json() == [{"code": 404, "description": "service request not found"}]


async def test_fields_follow_the_policy_when_it_shows_more(
    app: Any, db: Database, codes: dict[str, str]
) -> None:
    async with db.transaction() as session:
        for name, day in (("litter", "07-01"), ("fire", "07-02"), ("road", "07-03")):
            await session.execute(
                update(Event)
                .where(Event.code == codes[name])
                .values(updated_at=datetime.fromisoformat(f"2024-{day}T00:00:00+00:00"))
            )
        await session.execute(
            update(Event)
            .where(Event.code == codes["noise"])
            .values(updated_at=datetime(2024, 6, 30, tzinfo=UTC))
        )
    await install_policy(
        app,
        db,
        add=[
            "p, public, Event.location, read, allow",
            "p, public, Event.department, read, allow",
        ],
    )
    async with public(app) as http:
        since = await http.get(
            f"{BASE}/requests.json", params={"updated_after": "2024-07-02T00:00:00Z"}
        )
        road = (await http.get(f"{BASE}/requests/{codes['road']}.json")).json()[0]
    assert codes_of(since) == [codes["road"], codes["fire"]]
    assert road["updated_datetime"] == "2024-07-03T00:00:00+00:00"
    assert road["lat"] == pytest.approx(39.9234) and road["long"] == pytest.approx(116.4812)
    assert road["agency_responsible"] == "公安"
    assert "description" not in road


# --- creating service requests -----------------------------------------------------------------

CALLER = {
    "first_name": "张",
    "last_name": "三丰",
    "phone": "13712345678",
    "email": "zhang.sanfeng@example.cn",
    "device_id": "device-42",
    "account_id": "account-42",
}


async def test_a_key_that_may_report_creates_an_audited_event(
    app: Any, db: Database, world: World, client: httpx.AsyncClient
) -> None:
    key = await new_key(db, "12345-hotline", "dispatcher")
    form = {
        "api_key": key,
        "service_code": "sanitation",
        "attribute[grid_code]": "G3",
        "lat": "39.9301",
        "long": "116.4702",
        "description": "小区门口垃圾三天没人清运\n请尽快处理",
        "media_url": "http://example.cn/photo.jpg",
        **CALLER,
    }
    async with public(app) as http:
        response = await http.post(f"{BASE}/requests.json", data=form)
    assert response.status_code == 201, response.text
    (created,) = response.json()
    assert set(created) == {"service_request_id", "service_notice", "account_id"}
    assert created["account_id"] is None
    code = created["service_request_id"]

    query = (
        "query($code: String!) { event(code: $code) { code category title description status "
        "grid { code } location { lat lng } reporter { ... on ExternalSystem { name } } } }"
    )
    body = await client.post("/graphql", json={"query": query, "variables": {"code": code}})
    event = body.json()["data"]["event"]
    assert event["category"] == "SANITATION" and event["status"] == "REPORTED"
    assert event["title"] == "环境卫生"  # the service, never the caller's words
    assert event["description"] == form["description"]
    assert event["grid"] == {"code": "G3"}
    assert event["reporter"] == {"name": "12345-hotline"}
    assert event["location"]["lat"] == pytest.approx(39.9301)

    async with db.reader() as session:
        row = await session.scalar(select(Event).where(Event.code == code))
    assert row is not None
    stored = json.dumps(
        {c.key: str(getattr(row, c.key)) for c in Event.__table__.columns},
        ensure_ascii=False,
    )
    (record,) = await records(db, "mutation")
    for value in CALLER.values():
        assert value not in stored and value not in response.text
        assert value not in json.dumps(record.detail, ensure_ascii=False)
    # /graphql's own record: the persisted operation's name, written by the same code.
    assert record.operation == "Open311CreateRequest" and record.outcome == "ok"
    assert record.actor == "apikey:12345-hotline" and record.role == "dispatcher"
    assert f"Event:{row.id}" in record.records
    assert "Event.category" in record.fields
    async with db.reader() as session:
        chain = await audit.verify(session)
    assert chain.ok, chain.reason


async def check_grid_scope(app: Any, db: Database, world: World) -> None:
    key = await new_key(db, "c1-app", "grid_worker", grids=["C1"])
    base = {"api_key": key, "service_code": "dispute", "description": "邻里纠纷"}
    async with public(app) as http:
        outside = await http.post(f"{BASE}/requests.json", data={**base, "grid_code": "G4"})
        inside = await http.post(f"{BASE}/requests.json", data={**base, "address_id": "G2"})
    assert outside.status_code == 400
    assert outside.json() == [{"code": 400, "description": "grid_code is outside your scope"}]
    assert inside.status_code == 201, inside.text
    async with db.reader() as session:
        grids = list(await session.scalars(select(Event.grid_id)))
    assert grids == [world.grids["G2"].id]
    mutations = await records(db, "mutation", "apikey:c1-app")
    assert [(r.outcome, r.detail.get("codes")) for r in mutations] == [
        ("error", ["BAD_USER_INPUT"]),
        ("ok", None),
    ]


async def check_bad_keys(app: Any, db: Database, world: World) -> None:
    revoked = await new_key(db, "old-app", "dispatcher")
    async with db.transaction() as session:
        await apikeys.revoke(session, name="old-app")
    form = {"service_code": "health", "grid_code": "G1", "description": "x"}
    attempts: list[dict[str, str]] = [
        {},
        {"api_key": "letmein"},
        {"api_key": "ghk_AAAAAAAA_" + "x" * 43},
        {"api_key": revoked},
    ]
    async with public(app) as http:
        answers = [
            await http.post(f"{BASE}/requests.json", data={**form, **attempt})
            for attempt in attempts
        ]
        as_xml = await http.post(f"{BASE}/requests.xml", data=form)
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert [a.json()[0]["description"] for a in answers] == [
        "invalid api_key (no api_key)",
        "invalid api_key (malformed API key)",
        "invalid api_key (unknown API key)",
        "invalid api_key (API key revoked)",
    ]
    assert as_xml.status_code == 403
    assert xml(as_xml).findtext("./error/code") == "403"
    failures = await records(db, "auth_failure")
    assert [r.detail["reason"] for r in failures] == [
        "no api_key",
        "malformed API key",
        "unknown API key",
        "API key revoked",
        "no api_key",
    ]
    assert {r.detail["path"] for r in failures} == {
        f"{BASE}/requests.json",
        f"{BASE}/requests.xml",
    }
    async with db.reader() as session:
        assert await session.scalar(select(Event.id)) is None


async def check_roles_that_may_not_report(app: Any, db: Database, world: World) -> None:
    health = await new_key(db, "health-system", "health")
    hotline = await new_key(db, "hotline", "connector:hotline")
    form = {"service_code": "health", "grid_code": "G1", "description": "发热病人"}
    async with public(app) as http:
        refused = await http.post(f"{BASE}/requests.json", data={**form, "api_key": health})
        # The hotline connector's role reports events but may not set a location.
        located = await http.post(
            f"{BASE}/requests.json",
            data={**form, "api_key": hotline, "lat": "39.9", "long": "116.4"},
        )
        plain = await http.post(f"{BASE}/requests.json", data={**form, "api_key": hotline})
    assert refused.status_code == 403
    assert refused.json()[0]["description"] == "this api_key may not create service requests"
    assert located.status_code == 403
    assert located.json()[0]["description"] == "this api_key may not set location"
    assert plain.status_code == 201
    # As on /graphql, an operation the role's schema does not offer never runs, so only the
    # one that ran is on the record.
    mutations = await records(db, "mutation")
    assert [(r.actor, r.outcome) for r in mutations] == [("apikey:hotline", "ok")]


BAD_POSTS: list[tuple[dict[str, str], str]] = [
    ({"grid_code": "G1"}, "service_code is required"),
    ({"service_code": "potholes", "grid_code": "G1"}, "unknown service_code 'potholes'"),
    (
        {"service_code": "health", "lat": "39.9", "long": "116.4"},
        "attribute[grid_code] (the GridHub grid code) is required",
    ),
    (
        {"service_code": "health", "grid_code": "G1", "lat": "north"},
        "lat and long must both be decimal degrees (WGS84)",
    ),
    (
        {"service_code": "health", "grid_code": "G1", "lat": "139.9", "long": "116.4"},
        "location is outside the valid longitude/latitude range",
    ),
    ({"service_code": "health", "grid_code": "G99"}, "unknown grid code 'G99'"),
]


async def check_bad_posts(app: Any, db: Database, world: World) -> None:
    key = await new_key(db, "dispatch-desk", "dispatcher")
    async with public(app) as http:
        for form, description in BAD_POSTS:
            response = await http.post(f"{BASE}/requests.json", data={**form, "api_key": key})
            assert response.status_code == 400, form
            assert response.json() == [{"code": 400, "description": description}]
    # The spec's own checks refuse the first four before any operation runs; the last two are
    # the mutation's refusals, on the record as /graphql records them.
    mutations = await records(db, "mutation", "apikey:dispatch-desk")
    assert len(mutations) == 2
    assert all(r.operation == "Open311CreateRequest" for r in mutations)
    assert all(r.outcome == "error" for r in mutations)
    assert all(r.detail["codes"] == ["BAD_USER_INPUT"] for r in mutations)
    async with db.reader() as session:
        assert await session.scalar(select(Event.id)) is None


async def test_keys_that_may_not_report_are_403_and_audited(
    app: Any, db: Database, world: World
) -> None:
    await check_bad_keys(app, db, world)
    await check_roles_that_may_not_report(app, db, world)


async def test_bad_posts_are_400_and_audited(app: Any, db: Database, world: World) -> None:
    await check_bad_posts(app, db, world)
    await check_grid_scope(app, db, world)


async def test_an_open311_client_posts_then_follows_its_token(
    app: Any, db: Database, world: World
) -> None:
    """The usual client: POST (XML, with a photo), then tokens/{token}, then requests/{id}."""
    key = await new_key(db, "12345-hotline", "dispatcher")
    async with public(app) as http:
        posted = await http.post(
            f"{BASE}/requests.xml",
            data={
                "api_key": key,
                "service_code": "elderly_care",
                "attribute[grid_code]": "G1",
                "description": "独居老人家中无人应答",
                **CALLER,
            },
            files={"media": ("photo.jpg", b"\xff\xd8\xff\xe0 not really a photo", "image/jpeg")},
        )
        assert posted.status_code == 201, posted.text
        created = xml(posted)
        assert created.tag == "service_requests"
        (request,) = created.findall("request")
        assert [e.tag for e in request] == ["service_request_id", "service_notice", "account_id"]
        token = request.findtext("service_request_id")
        assert token is not None

        followed = await http.get(f"{BASE}/tokens/{token}.json")
        assert followed.json() == [{"service_request_id": token, "token": token}]
        followed_xml = xml(await http.get(f"{BASE}/tokens/{token}.xml"))
        assert followed_xml.findtext("./request/token") == token

        (status,) = (await http.get(f"{BASE}/requests/{token}.json")).json()
    assert status["service_request_id"] == token
    assert status["status"] == "open"
    assert status["service_code"] == "elderly_care" and status["service_name"] == "养老服务"
    assert status["address_id"] == "G1"
    for value in CALLER.values():
        assert value not in posted.text and value not in json.dumps(status, ensure_ascii=False)
