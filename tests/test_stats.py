"""Statistics against counts computed in Python from the same rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.db import Database
from hub.events import service as events
from hub.events.models import Event
from hub.events.states import Action
from hub.grids.models import Grid
from hub.residents import service as residents
from hub.residents.models import Resident, ResidentTag
from hub.stats import published
from tests.conftest import GraphQLClient
from tests.world import World

CATEGORIES = ["sanitation", "fire_hazard", "dispute", "elderly_care"]
SEVERITIES = ["low", "medium", "high", "critical"]
# Month edges in UTC, and one time that is already March in Beijing but still February in UTC.
TIMES = [
    datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2024, 2, 1, 0, 0, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 20, 0, 0, tzinfo=UTC),  # 2024-03-01 04:00 in UTC+8
    datetime(2024, 3, 15, 12, 0, 0, tzinfo=UTC),
    datetime(2023, 12, 31, 23, 0, 0, tzinfo=UTC),
]
# Grids events are reported in: leaves, a community itself, and a street (above communities).
EVENT_GRIDS = ["G1", "G2", "G3", "G4", "C1", "G1", "S1"]
STATUS_PATHS: dict[str, list[Action]] = {
    "reported": [],
    "accepted": [Action.ACCEPT],
    "dispatched": [Action.ACCEPT, Action.DISPATCH],
    "rejected": [Action.REJECT],
}


@pytest.fixture
async def spread(db: Database, world: World) -> None:
    """29 events over categories, severities, statuses, months and grids."""
    statuses = list(STATUS_PATHS)
    async with db.transaction() as session:
        for n in range(29):
            created = await events.report(
                session,
                report=events.EventReport(
                    category=CATEGORIES[n % 4],
                    severity=SEVERITIES[n % 3],
                    title=f"e{n}",
                    grid_code=EVENT_GRIDS[n % len(EVENT_GRIDS)],
                    reporter_system="12345",
                ),
                actor="test",
            )
            for action in STATUS_PATHS[statuses[(n // 2) % 4]]:
                await events.transition(
                    session,
                    event_id=created.id,
                    action=action,
                    actor="test",
                    note="理由",
                    department_code="health",
                )
            await session.execute(
                update(Event)
                .where(Event.id == created.id)
                .values(reported_at=TIMES[n % len(TIMES)])
            )


async def rows(db: Database) -> tuple[list[Event], dict[int, Grid]]:
    async with db.reader() as session:
        found = list((await session.scalars(select(Event))).all())
        grids = {g.id: g for g in (await session.scalars(select(Grid))).all()}
    return found, grids


def rolled_up(grid_id: int, grids: dict[int, Grid], level: str | None) -> int | None:
    """The grid at `level` containing this grid (itself included); None above that level."""
    if level is None:
        return grid_id
    path = grids[grid_id].path
    found = [g.id for g in grids.values() if g.level == level and path.startswith(g.path)]
    return found[0] if found else None


def dimension(event: Event, name: str, grids: dict[int, Grid], level: str | None) -> Any:
    if name == "month":
        return event.reported_at.astimezone(UTC).strftime("%Y-%m")
    if name == "grid":
        rolled = rolled_up(event.grid_id, grids, level)
        return None if rolled is None else grids[rolled].code
    return getattr(event, name)


ENUM_DIMENSIONS = {"category", "status", "severity"}
COUNTS = """query($by: [EventDimension!]!, $level: String, $filter: EventFilter, $offset: Int! = 0) {
  stats { eventCounts(groupBy: $by, gridLevel: $level, filter: $filter, utcOffsetMinutes: $offset) {
    count category status severity month grid { code }
  } }
}"""


async def event_counts(
    gql: GraphQLClient,
    by: list[str],
    level: str | None = None,
    filter: Any = None,
    offset: int = 0,
) -> Counter[tuple[Any, ...]]:
    variables = {"by": [b.upper() for b in by], "level": level, "filter": filter, "offset": offset}
    data = await gql.data(COUNTS, variables)
    found: Counter[tuple[Any, ...]] = Counter()
    for row in data["stats"]["eventCounts"]:
        key = tuple(
            (row["grid"]["code"] if row["grid"] else None)
            if d == "grid"
            # Enum dimensions come as GraphQL enum names; the rows hold the lowercase values.
            else (row[d].lower() if d in ENUM_DIMENSIONS else row[d])
            for d in by
        )
        assert key not in found, f"group {key} twice"
        # Dimensions not grouped by stay unset.
        for other in {"category", "status", "severity", "month"} - set(by):
            assert row[other] is None
        if "grid" not in by:
            assert row["grid"] is None
        found[key] = row["count"]
    return found


GROUPINGS: list[tuple[list[str], str | None]] = [
    (["category"], None),
    (["status"], None),
    (["severity"], None),
    (["month"], None),
    (["grid"], None),
    (["grid"], "community"),
    (["grid"], "street"),
    (["category", "status"], None),
    (["grid", "month"], "community"),
    (["status", "severity", "month"], None),
]


async def test_event_counts_match_the_rows(gql: GraphQLClient, db: Database, spread: None) -> None:
    found, grids = await rows(db)
    for by, level in GROUPINGS:
        expected: Counter[tuple[Any, ...]] = Counter(
            tuple(dimension(e, d, grids, level) for d in by) for e in found
        )
        # An event above the roll-up level (a street event, rolled up to communities) belongs
        # to no grid at that level, so no row counts it.
        expected = Counter({k: v for k, v in expected.items() if None not in k})
        assert len(expected) > 1
        assert await event_counts(gql, by, level) == expected, (by, level)


async def test_months_follow_the_requested_clock(
    gql: GraphQLClient, db: Database, spread: None
) -> None:
    in_utc = await event_counts(gql, ["month"])
    assert set(in_utc) == {("2023-12",), ("2024-01",), ("2024-02",), ("2024-03",)}
    # Events at 2024-02-29T20:00Z are February in UTC, but already March in Beijing.
    assert in_utc[("2024-02",)] == sum(1 for n in range(29) if n % 5 in (1, 2))
    # In Beijing (UTC+8) each of TIMES moves: Jan 31 23:59:59Z is Feb 1, Feb 29 20:00Z is
    # Mar 1, and Dec 31 23:00Z is New Year's Day.
    in_beijing = await event_counts(gql, ["month"], offset=480)
    beijing_month = {0: "2024-02", 1: "2024-02", 2: "2024-03", 3: "2024-03", 4: "2024-01"}
    expected = Counter((beijing_month[n % 5],) for n in range(29))
    assert in_beijing == expected


async def test_months_default_to_beijing_time(
    gql: GraphQLClient, db: Database, spread: None
) -> None:
    data = await gql.data("{ stats { eventCounts(groupBy: [MONTH]) { month count } } }")
    months = {row["month"]: row["count"] for row in data["stats"]["eventCounts"]}
    assert months == {k[0]: v for k, v in (await event_counts(gql, ["month"], offset=480)).items()}


async def test_an_impossible_offset_is_refused(gql: GraphQLClient, world: World) -> None:
    error = await gql.error(
        "{ stats { eventCounts(groupBy: [MONTH], utcOffsetMinutes: 900) { count } } }"
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "utcOffsetMinutes"


async def test_event_counts_follow_filters(gql: GraphQLClient, db: Database, spread: None) -> None:
    found, grids = await rows(db)
    c1 = grids[next(i for i, g in grids.items() if g.code == "C1")].path
    in_c1 = [e for e in found if grids[e.grid_id].path.startswith(c1)]
    assert 0 < len(in_c1) < len(found)
    expected = Counter((e.status,) for e in in_c1)
    assert await event_counts(gql, ["status"], filter={"inGrid": "C1"}) == expected
    only = {"status": ["REPORTED", "ACCEPTED"], "category": ["SANITATION", "DISPUTE"]}
    expected = Counter(
        (dimension(e, "grid", grids, "community"),)
        for e in found
        if e.status in {"reported", "accepted"} and e.category in {"sanitation", "dispute"}
    )
    expected.pop((None,), None)
    assert await event_counts(gql, ["grid"], "community", only) == expected
    # No dimension: one row, everything.
    assert await event_counts(gql, []) == Counter({(): len(found)})


TIMES_QUERY = "query($filter: EventFilter) { stats { eventTimes(filter: $filter) { events accepted resolved averageResponseSeconds averageResolutionSeconds } } }"


async def test_event_times(gql: GraphQLClient, db: Database, world: World) -> None:
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    # (grid, seconds to acceptance, seconds to resolution)
    plan: list[tuple[str, float | None, float | None]] = [
        ("G1", 600.5, 7200.25),
        ("G1", 1800.0, None),
        ("G2", 120.0, 86_400.0),
        ("G3", None, None),
        ("G4", 3600.0, 4000.0),
    ]
    async with db.transaction() as session:
        for n, (grid, accepted, resolved) in enumerate(plan):
            created = await events.report(
                session,
                report=events.EventReport(
                    category="sanitation", title="t", grid_code=grid, reporter_system="12345"
                ),
                actor="test",
            )
            reported = start + timedelta(days=n, microseconds=n * 1000)
            await session.execute(
                update(Event)
                .where(Event.id == created.id)
                .values(
                    reported_at=reported,
                    accepted_at=reported + timedelta(seconds=accepted) if accepted else None,
                    resolved_at=reported + timedelta(seconds=resolved) if resolved else None,
                )
            )

    def expected(chosen: list[tuple[str, float | None, float | None]]) -> dict[str, Any]:
        accepted = [a for _, a, _ in chosen if a is not None]
        resolved = [r for _, _, r in chosen if r is not None]
        return {
            "events": len(chosen),
            "accepted": len(accepted),
            "resolved": len(resolved),
            "averageResponseSeconds": sum(accepted) / len(accepted) if accepted else None,
            "averageResolutionSeconds": sum(resolved) / len(resolved) if resolved else None,
        }

    for filter, chosen in [
        (None, plan),
        ({"inGrid": "C1"}, [p for p in plan if p[0] in ("G1", "G2")]),
        ({"inGrid": "G3"}, [p for p in plan if p[0] == "G3"]),
    ]:
        got = (await gql.data(TIMES_QUERY, {"filter": filter}))["stats"]["eventTimes"]
        want = expected(chosen)
        for key in ["events", "accepted", "resolved"]:
            assert got[key] == want[key], (filter, key)
        for key in ["averageResponseSeconds", "averageResolutionSeconds"]:
            if want[key] is None:
                assert got[key] is None, (filter, key)
            else:
                assert got[key] == pytest.approx(want[key], abs=1e-3), (filter, key)


TAGS = "query($level: String!, $tags: [String!], $filter: ResidentFilter) { stats { residentTagCounts(level: $level, tags: $tags, filter: $filter) { tag count grid { code level } } } }"


async def test_resident_tag_counts(gql: GraphQLClient, db: Database, world: World) -> None:
    # More tags on some residents, so counts differ per community and per tag.
    async with db.transaction() as session:
        for n, tags in [(1, ["disabled"]), (2, ["disabled", "elderly"]), (6, ["key_care"])]:
            await residents.update(
                session,
                resident_id=world.residents[n].id,
                changes=residents.ResidentChanges(tags=tags),
            )
    async with db.reader() as session:
        pairs = (
            await session.execute(
                select(ResidentTag.tag, Resident.grid_id).join(
                    Resident, Resident.id == ResidentTag.resident_id
                )
            )
        ).all()
        grids = {g.id: g for g in (await session.scalars(select(Grid))).all()}

    def expected(level: str, tags: set[str] | None, within: str | None) -> Counter[tuple[str, str]]:
        counted: Counter[tuple[str, str]] = Counter()
        for tag, grid_id in pairs:
            if tags is not None and tag not in tags:
                continue
            if within and not grids[grid_id].path.startswith(
                next(g.path for g in grids.values() if g.code == within)
            ):
                continue
            rolled = rolled_up(grid_id, grids, level)
            if rolled is not None:
                counted[(grids[rolled].code, tag)] += 1
        return counted

    cases: list[tuple[str, list[str] | None, str | None]] = [
        ("community", None, None),
        ("community", ["elderly", "disabled"], None),
        ("street", None, None),
        ("grid", ["living_alone"], None),
        ("community", None, "S1"),
    ]
    for level, tags, within in cases:
        data = await gql.data(
            TAGS,
            {"level": level, "tags": tags, "filter": {"inGrid": within} if within else None},
        )
        rows_ = data["stats"]["residentTagCounts"]
        assert all(r["grid"]["level"] == level for r in rows_)
        got = Counter({(r["grid"]["code"], r["tag"]): r["count"] for r in rows_})
        assert len(got) == len(rows_), "a (grid, tag) pair twice"
        want = expected(level, set(tags) if tags else None, within)
        assert len(want) > 1
        assert got == want, (level, tags, within)


# --- the published release (hub.stats.published) -----------------------------------------------


async def test_the_published_release_counts_what_the_rows_say(db: Database, spread: None) -> None:
    """With k = 1 nothing is withheld, so every figure of the release can be checked against the
    rows: per community (events in a street's own grid are in no community), on Beijing's
    clock, and only events reported before `now`."""
    found, grids = await rows(db)
    now = datetime(2024, 3, 1, 3, 0, tzinfo=UTC)  # 11:00 on 1 March in Beijing
    beijing = timezone(timedelta(hours=8))
    async with db.reader() as session:
        figures = await published.published_figures(
            session, k=1, now=now, categories=CATEGORIES, statuses=list(STATUS_PATHS)
        )
    codes = [c.code for c in figures.communities]
    assert codes == ["C1", "C2", "C3"]
    assert figures.months[-1] == "2024-03" and figures.months[0] == "2023-04"
    counted = [e for e in found if e.reported_at.astimezone(UTC) < now]
    truth: dict[str, Counter[tuple[str, str]]] = {n: Counter() for n in published.COUNT_TABLES}
    for event in counted:
        community = rolled_up(event.grid_id, grids, "community")
        if community is None:
            continue
        code = grids[community].code
        month = event.reported_at.astimezone(beijing).strftime("%Y-%m")
        truth["category"][(code, event.category)] += 1
        truth["status"][(code, event.status)] += 1
        month_column = month if month in figures.months else published.EARLIER
        truth["month"][(code, month_column)] += 1
    # 2024-02-29T20:00Z is already March in Beijing, and before `now`.
    assert truth["month"][("C1", "2024-03")] + truth["month"][("C2", "2024-03")] > 0
    for name, table in figures.tables.items():
        for code in codes:
            for column in table.columns:
                assert table.cell(code, column).value == truth[name][(code, column)], (
                    name,
                    code,
                    column,
                )
        assert table.total.value == sum(truth[name].values())
    assert sum(truth["category"].values()) < len(counted)  # the street's events are left out
    assert figures.tables["month"].columns[0] == published.EARLIER


async def test_the_published_release_withholds_small_counts_with_their_partners(
    db: Database, spread: None
) -> None:
    async with db.reader() as session:
        figures = await published.published_figures(
            session,
            k=5,
            now=datetime(2024, 3, 20, tzinfo=UTC),
            categories=CATEGORIES,
            statuses=list(STATUS_PATHS),
        )
    for table in figures.tables.values():
        figures_of_table = [*table.cells.values(), *table.row_totals.values()]
        figures_of_table += [*table.column_totals.values(), table.total]
        # Every published figure is zero or at least k; at least one figure is withheld.
        assert all(f.value is None or f.value == 0 or f.value >= 5 for f in figures_of_table)
        assert any(f.suppressed for f in figures_of_table)
