"""WGS84 <-> GCJ-02: the conversion itself, and the API storing WGS84 while speaking both."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.events.geo import gcj02_to_wgs84, wgs84_to_gcj02
from hub.events.models import Event
from tests.conftest import GraphQLClient
from tests.world import World

# Published with the widely used coordtransform library (wandergis/coordtransform, test/app.js):
# WGS84 (116.404, 39.915) in Beijing is GCJ-02 (116.41024449916938, 39.91640428150164).
BEIJING_WGS84 = (116.404, 39.915)
BEIJING_GCJ02 = (116.41024449916938, 39.91640428150164)

# A lattice over mainland China, kept off the edges of the box the offset applies in.
CHINA = [
    (lng / 2, lat / 2)
    for lng in range(2 * 74, 2 * 135, 3)  # 74..134.5 in 1.5 degree steps
    for lat in range(2 * 19, 2 * 53, 3)  # 19..52.5
]
ABROAD = [
    (0.0, 0.0),
    (-74.006, 40.7128),  # New York
    (2.3522, 48.8566),  # Paris
    (139.6917, 35.6895),  # Tokyo
    (151.2093, -33.8688),  # Sydney
    (37.6173, 55.7558),  # Moscow
    (103.8198, 1.3521 - 1.0),  # south of the box
]


def test_beijing_reference_offset() -> None:
    lng, lat = wgs84_to_gcj02(*BEIJING_WGS84)
    assert lng == pytest.approx(BEIJING_GCJ02[0], abs=1e-9)
    assert lat == pytest.approx(BEIJING_GCJ02[1], abs=1e-9)
    # GCJ-02 lies north-east of WGS84 in Beijing: about +0.0062 degrees east, +0.0014 north.
    assert 0.0055 < lng - BEIJING_WGS84[0] < 0.007
    assert 0.0010 < lat - BEIJING_WGS84[1] < 0.0018


def test_round_trips_within_a_micro_degree() -> None:
    worst = 0.0
    for point in CHINA:
        there = wgs84_to_gcj02(*point)
        assert there != point  # the offset applies everywhere inside
        back = gcj02_to_wgs84(*there)
        worst = max(worst, abs(back[0] - point[0]), abs(back[1] - point[1]))
        # and from GCJ-02 to WGS84 and back
        forth = wgs84_to_gcj02(*gcj02_to_wgs84(*point))
        worst = max(worst, abs(forth[0] - point[0]), abs(forth[1] - point[1]))
    assert len(CHINA) > 400
    assert worst < 1e-6


def test_offsets_are_a_few_hundred_metres() -> None:
    for lng, lat in CHINA:
        g_lng, g_lat = wgs84_to_gcj02(lng, lat)
        metres_east = (g_lng - lng) * 111_320 * math.cos(math.radians(lat))
        metres_north = (g_lat - lat) * 110_574
        assert 0 < math.hypot(metres_east, metres_north) < 1_500, (lng, lat)


def test_abroad_is_unchanged() -> None:
    for point in ABROAD:
        assert wgs84_to_gcj02(*point) == point
        assert gcj02_to_wgs84(*point) == point


REPORT = """mutation($location: CoordinatesInput) {
  reportEvent(input: {category: SANITATION, title: "垃圾", gridCode: "G1", reporterSystem: "12345",
                      location: $location}) {
    id
    wgs: location { lng lat system }
    gcj: location(system: GCJ02) { lng lat system }
  }
}"""


async def stored(db: Database) -> tuple[float | None, float | None]:
    async with db.reader() as session:
        event = (await session.scalars(select(Event).order_by(Event.id.desc()))).first()
        assert event is not None
        return event.lng, event.lat


async def test_gcj02_in_wgs84_stored_gcj02_out(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    given = {"lng": BEIJING_GCJ02[0], "lat": BEIJING_GCJ02[1], "system": "GCJ02"}
    event = (await gql.data(REPORT, {"location": given}))["reportEvent"]
    lng, lat = await stored(db)
    assert lng == pytest.approx(BEIJING_WGS84[0], abs=1e-6)
    assert lat == pytest.approx(BEIJING_WGS84[1], abs=1e-6)
    assert event["wgs"] == {"lng": lng, "lat": lat, "system": "WGS84"}
    assert event["gcj"]["system"] == "GCJ02"
    assert event["gcj"]["lng"] == pytest.approx(given["lng"], abs=1e-6)
    assert event["gcj"]["lat"] == pytest.approx(given["lat"], abs=1e-6)
    # Read back later, through a query, the same.
    again = await gql.data(
        "query($id: ID!) { event(id: $id) { location(system: GCJ02) { lng lat } } }",
        {"id": event["id"]},
    )
    assert again["event"]["location"] == {"lng": event["gcj"]["lng"], "lat": event["gcj"]["lat"]}


async def test_wgs84_is_stored_as_given(gql: GraphQLClient, db: Database, world: World) -> None:
    event = (await gql.data(REPORT, {"location": {"lng": 116.48, "lat": 39.99}}))["reportEvent"]
    assert await stored(db) == (116.48, 39.99)
    assert event["wgs"] == {"lng": 116.48, "lat": 39.99, "system": "WGS84"}
    expected = wgs84_to_gcj02(116.48, 39.99)
    assert (event["gcj"]["lng"], event["gcj"]["lat"]) == pytest.approx(expected, abs=1e-9)
    # Outside China both systems agree.
    event = (await gql.data(REPORT, {"location": {"lng": 2.35, "lat": 48.85, "system": "GCJ02"}}))[
        "reportEvent"
    ]
    assert await stored(db) == (2.35, 48.85)
    assert event["gcj"] == {"lng": 2.35, "lat": 48.85, "system": "GCJ02"}
    # No location: null in every system.
    event = (await gql.data(REPORT, {"location": None}))["reportEvent"]
    assert event["wgs"] is None and event["gcj"] is None


async def test_impossible_coordinates_are_refused(
    gql: GraphQLClient, db: Database, world: World
) -> None:
    for location in [
        {"lng": 181.0, "lat": 39.9},
        {"lng": 116.4, "lat": -90.5},
        {"lng": -181.0, "lat": 0.0, "system": "GCJ02"},
    ]:
        body = await gql(REPORT, {"location": location})
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "location"}


async def test_grid_centres_in_both_systems(gql: GraphQLClient, world: World) -> None:
    data = await gql.data(
        '{ grid(code: "G1") { wgs: center { lng lat system } gcj: center(system: GCJ02) { lng lat system } } }'
    )
    grid = data["grid"]
    assert grid["wgs"] == {"lng": 116.48, "lat": 39.92, "system": "WGS84"}
    expected = wgs84_to_gcj02(116.48, 39.92)
    assert (grid["gcj"]["lng"], grid["gcj"]["lat"]) == pytest.approx(expected, abs=1e-9)
    assert grid["gcj"]["system"] == "GCJ02"
