"""A world seeded with marker values, and an oracle that says which markers a viewer may see.

Every personal or row-specific value seeded here is unique in the whole database (a name whose
first character no other row uses, an ID number with its own region code, "MARKER-..." texts),
so finding it in a response proves where it came from. Rows lie in three grid subtrees of
tests/world.py (G1/G2 under C1, G3 under C2, G4 under S2) and are dispatched to different
departments, so every row scope of the default policy both includes and excludes some of them.

The oracle does not use GridHub's compiled profiles or SQL scopes: it asks Casbin's own
`enforce()` about every field and scope and evaluates the scopes in Python from what was seeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import casbin
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.ids import to_global_id
from hub.authz import grants
from hub.authz.policy import READ, READ_MASKED, ROWS_PREFIX, Policy
from hub.authz.profile import Level
from hub.events import service as events
from hub.events.states import Action
from hub.feedback import service as feedback
from hub.members.models import Member, member_grids
from hub.notices import service as notices
from hub.residents import idcard
from hub.residents import service as residents
from hub.residents.models import ResidentExternalId
from tests.world import World

SEEDER = "seed:markers"
# Another subject's open emergency grant: it must widen nobody else's view.
GRANT_SUBJECT = "test:someone-else"


@dataclass(frozen=True)
class Row:
    """A seeded row, with what its row scopes look at."""

    type: str
    pk: int
    grids: tuple[str, ...] = ()  # grid codes the row belongs to (own_grids)
    department: str | None = None  # department code the row is assigned to (own_department)
    published: bool = False
    code: str | None = None  # what `event(code:)` or `feedback(trackingCode:)` looks it up by

    @property
    def global_id(self) -> str:
        return str(to_global_id(self.type, self.pk))


@dataclass(frozen=True)
class Marker:
    """A value shown by `field` of `row`.

    `masked` is the value's documented masked form. `token` is a part of the value that also
    survives masking (the first character of a name, the community part of an address): it
    must not appear where the field is hidden or the row out of scope. `via` are fields on the
    only path that reaches the value (ExternalSystem.name only through Event.reporter)."""

    value: str
    field: str
    row: Row
    masked: str | None = None
    token: str | None = None
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class Viewpoint:
    """Who asks: a role and the grids and department its token carries."""

    role: str
    grids: tuple[str, ...] = ()
    department: str | None = None

    @property
    def subject(self) -> str:
        return f"test:{self.role}"


VIEWPOINTS: dict[str, Viewpoint] = {
    "public": Viewpoint("public"),
    "grid_worker": Viewpoint("grid_worker", grids=("C1",), department="community_service"),
    "community_admin": Viewpoint("community_admin", grids=("C1",), department="community_service"),
    "public_security": Viewpoint("public_security", department="public_security"),
    "health": Viewpoint("health", department="health"),
    "civil_affairs": Viewpoint("civil_affairs", department="civil_affairs"),
    "environment": Viewpoint("environment", department="environment"),
    "dispatcher": Viewpoint("dispatcher"),
    "auditor": Viewpoint("auditor"),
    "policy_admin": Viewpoint("policy_admin"),
    "connector:health": Viewpoint("connector:health", department="health"),
}


@dataclass
class ResidentSeed:
    key: str
    grid: str
    name: str
    region: str
    born: date
    sequence: int
    phone: str
    address: str
    # What the address mask keeps: everything before the first building number.
    community: str

    @property
    def id_number(self) -> str:
        return idcard.make(self.region, self.born, self.sequence)


RESIDENTS = [
    ResidentSeed("A", "G1", "鑫标记甲", "350203", date(1937, 4, 19), 771, "13712340771",
                 "标记路甲A小区12号楼3单元401室", "标记路甲A小区"),
    ResidentSeed("B", "G4", "淼标记乙", "460107", date(1941, 11, 23), 882, "15898760882",
                 "标记路乙B花园7号楼2单元502室", "标记路乙B花园"),
    ResidentSeed("C", "G3", "焱标记丙", "530102", date(1929, 8, 5), 993, "18655550993",
                 "标记路丙C新村5号楼1单元101室", "标记路丙C新村"),
]  # fmt: skip

MEMBERS = [("A", "G1", "森标员甲", "13577003131"), ("B", "G4", "垚标员乙", "13588004242")]


@dataclass
class MarkerWorld:
    world: World
    rows: dict[str, Row] = field(default_factory=dict)
    markers: list[Marker] = field(default_factory=list)
    grid_paths: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row, **values: str | None) -> None:
        """Markers for `row`, by field name (`name` -> `Resident.name`)."""
        for name, value in values.items():
            if value is not None:
                self.markers.append(Marker(value, f"{row.type}.{name}", row))

    def of(self, key: str) -> list[Marker]:
        row = self.rows[key]
        return [m for m in self.markers if m.row == row]

    def marker(self, key: str, field_name: str) -> Marker:
        (found,) = [m for m in self.of(key) if m.field == field_name]
        return found

    def subtree(self, code: str) -> set[str]:
        return {c for c, path in self.grid_paths.items() if f"/{code}/" in path}


async def seed_markers(session: AsyncSession, world: World) -> MarkerWorld:
    """Seed marker rows on top of `world` (tests/world.py)."""
    marked = MarkerWorld(world=world)
    marked.grid_paths = {code: grid.path for code, grid in world.grids.items()}
    await _residents(session, marked)
    await _members(session, marked)
    await _events(session, marked)
    await _notices(session, marked)
    await _feedback(session, marked)
    grant = await grants.open_grant(
        session,
        subject=GRANT_SUBJECT,
        role="health",
        reason="MARKER-GRANT-REASON-B",
        grid_code="S2",
        minutes=60,
        levels=frozenset({"street"}),
    )
    row = Row("EmergencyGrant", grant.id)
    marked.rows["grant"] = row
    marked.add(row, reason=grant.reason)
    return marked


async def _residents(session: AsyncSession, marked: MarkerWorld) -> None:
    for seed in RESIDENTS:
        resident = await residents.create(
            session,
            changes=residents.ResidentChanges(
                name=seed.name,
                id_number=seed.id_number,
                phone=seed.phone,
                address=seed.address,
                household_code=f"HHMARK{seed.key}",
                grid_code=seed.grid,
                tags=["key_care"],
                health_notes=f"MARKER-HEALTH-NOTE-{seed.key}",
            ),
        )
        external = f"EXTMARK{seed.key}"
        session.add(
            ResidentExternalId(resident_id=resident.id, system="health", external_id=external)
        )
        row = Row("Resident", resident.id, grids=(seed.grid,))
        marked.rows[f"resident{seed.key}"] = row
        id_masked = seed.id_number[:6] + "*" * 8 + seed.id_number[-4:]
        phone_masked = seed.phone[:3] + "****" + seed.phone[-4:]
        marked.markers += [
            Marker(seed.name, "Resident.name", row, masked=seed.name[0] + "*" * (len(seed.name) - 1), token=seed.name[0]),
            Marker(seed.id_number, "Resident.idNumber", row, masked=id_masked, token=id_masked),
            Marker(seed.phone, "Resident.phone", row, masked=phone_masked, token=phone_masked),
            Marker(seed.address, "Resident.address", row, masked=seed.community + "…", token=seed.community),
            Marker(seed.born.isoformat(), "Resident.birthDate", row, masked=str(seed.born.year)),
            Marker(f"HHMARK{seed.key}", "Resident.householdCode", row),
            Marker(f"MARKER-HEALTH-NOTE-{seed.key}", "Resident.healthNotes", row),
            Marker(external, "ExternalId.externalId", row, via=("Resident.externalIds",)),
        ]  # fmt: skip
    await session.flush()


async def _members(session: AsyncSession, marked: MarkerWorld) -> None:
    department = marked.world.departments["community_service"]
    for key, grid, name, phone in MEMBERS:
        member = Member(name=name, phone=phone, department_id=department.id)
        session.add(member)
        await session.flush()
        await session.execute(
            member_grids.insert(),
            {"member_id": member.id, "grid_id": marked.world.grids[grid].id},
        )
        row = Row("Member", member.id, grids=(grid,), department="community_service")
        marked.rows[f"member{key}"] = row
        phone_masked = phone[:3] + "****" + phone[-4:]
        marked.markers += [
            Marker(name, "Member.name", row, token=name[0]),
            Marker(phone, "Member.phone", row, masked=phone_masked, token=phone_masked),
        ]


# key, grid, category, reporter, department it is dispatched to (None: left reported)
EVENTS = [
    ("A1", "G1", "health", "residentA", "health"),
    ("A2", "G2", "sanitation", "system", None),
    ("A3", "G1", "environment", "memberA", "environment"),
    # In a grid worker's grid, reported by a resident outside it: the reporter stays out of sight.
    ("A4", "G2", "dispute", "residentB", None),
    ("B1", "G4", "public_safety", "residentB", "public_security"),
    ("B2", "G4", "environment", "memberB", "environment"),
    ("C1", "G3", "elderly_care", "residentC", "civil_affairs"),
]


async def _events(session: AsyncSession, marked: MarkerWorld) -> None:
    for key, grid, category, reporter, department in EVENTS:
        system = f"MARKER-SYSTEM-{key}" if reporter == "system" else None
        reporter_row = marked.rows.get(reporter)
        event = await events.report(
            session,
            report=events.EventReport(
                category=category,
                title=f"MARKER-TITLE-{key}",
                grid_code=grid,
                description=f"MARKER-DESCRIPTION-{key}",
                reporter_member_id=reporter_row.pk if reporter.startswith("member") else None,  # type: ignore[union-attr]
                reporter_resident_id=reporter_row.pk if reporter.startswith("resident") else None,  # type: ignore[union-attr]
                reporter_system=system,
            ),
            actor=SEEDER,
        )
        if department is not None:
            await events.transition(session, event_id=event.id, action=Action.ACCEPT, actor=SEEDER)
            await events.transition(
                session,
                event_id=event.id,
                action=Action.DISPATCH,
                actor=SEEDER,
                department_code=department,
            )
        await events.add_note(session, event_id=event.id, actor=SEEDER, note=f"MARKER-NOTE-{key}")
        row = Row("Event", event.id, grids=(grid,), department=department, code=event.code)
        marked.rows[f"event{key}"] = row
        marked.add(row, title=event.title, description=event.description)
        marked.markers.append(
            Marker(f"MARKER-NOTE-{key}", "EventTransition.note", row, via=("Event.timeline",))
        )
        if system is not None:
            marked.markers.append(
                Marker(system, "ExternalSystem.name", row, via=("Event.reporter",))
            )


async def _notices(session: AsyncSession, marked: MarkerWorld) -> None:
    # key, grids, department, final status
    for key, grid, department, status in [
        ("A", "C1", "community_service", "draft"),
        ("B", "S2", "health", "published"),
        ("C", "G3", "civil_affairs", "retracted"),
    ]:
        notice = await notices.create(
            session,
            title=f"MARKER-NOTICE-TITLE-{key}",
            body=f"MARKER-NOTICE-BODY-{key}",
            department_code=department,
            grid_codes=[grid],
        )
        if status != "draft":
            await notices.publish(session, notice_id=notice.id)
        if status == "retracted":
            await notices.retract(session, notice_id=notice.id)
        row = Row(
            "Notice",
            notice.id,
            grids=(grid,),
            department=department,
            published=status == "published",
        )
        marked.rows[f"notice{key}"] = row
        marked.add(row, title=notice.title, body=notice.body)


async def _feedback(session: AsyncSession, marked: MarkerWorld) -> None:
    for key, grid, responder in [("A", "G1", "health"), ("B", "G4", None)]:
        item = await feedback.submit(
            session, kind="complaint", content=f"MARKER-FEEDBACK-CONTENT-{key}", grid_code=grid
        )
        response = None
        if responder is not None:
            response = f"MARKER-FEEDBACK-RESPONSE-{key}"
            await feedback.respond(
                session,
                tracking_code=item.tracking_code,
                response=response,
                department_code=responder,
            )
        row = Row("Feedback", item.id, grids=(grid,), department=responder, code=item.tracking_code)
        marked.rows[f"feedback{key}"] = row
        marked.add(row, content=item.content, trackingCode=item.tracking_code, response=response)


# --- the oracle --------------------------------------------------------------------------------


class Oracle:
    """What a viewpoint may see of the seeded markers, by Casbin's enforce() alone."""

    def __init__(self, policy: Policy, marked: MarkerWorld) -> None:
        self.enforcer: casbin.Enforcer = policy.enforcer()
        self.marked = marked
        self._decisions: dict[tuple[str, str, str], bool] = {}
        self._forbidden: dict[Viewpoint, frozenset[str]] = {}

    def enforce(self, subject: str, obj: str, action: str) -> bool:
        key = (subject, obj, action)
        if key not in self._decisions:
            self._decisions[key] = bool(self.enforcer.enforce(subject, obj, action))
        return self._decisions[key]

    def level(self, role: str, name: str) -> Level:
        if self.enforce(role, name, READ):
            return Level.FULL
        if self.enforce(role, name, READ_MASKED):
            return Level.MASKED
        return Level.HIDDEN

    def in_scope(self, view: Viewpoint, row: Row, named: str = "") -> bool:
        """Whether `row` is in the viewpoint's scope; `named` is the request's text, for the
        `tracked` scope (a row whose tracking code the request names)."""

        def allows(scope: str) -> bool:
            return self.enforce(view.role, row.type, ROWS_PREFIX + scope)

        if allows("all"):
            return True
        if row.code and row.code in named and allows("tracked"):
            return True
        mine = set().union(*(self.marked.subtree(code) for code in view.grids))
        if allows("own_grids") and mine & set(row.grids):
            return True
        if allows("own_department") and view.department and row.department == view.department:
            return True
        return allows("published") and row.published

    def shown(self, view: Viewpoint, marker: Marker, named: str = "") -> Level:
        """How the marker may appear to the viewpoint: FULL, MASKED or not at all (HIDDEN)."""
        if not self.in_scope(view, marker.row, named):
            return Level.HIDDEN
        if any(self.level(view.role, name) is Level.HIDDEN for name in marker.via):
            return Level.HIDDEN
        return self.level(view.role, marker.field)

    def forbidden(self, view: Viewpoint, named: str = "") -> set[str]:
        """Every string that must not appear in any response to the viewpoint (to a request
        whose text is `named`: it may name tracking codes)."""
        if named:
            return self._forbidden_now(view, named)
        if view not in self._forbidden:
            self._forbidden[view] = frozenset(self._forbidden_now(view))
        return set(self._forbidden[view])

    def _forbidden_now(self, view: Viewpoint, named: str = "") -> set[str]:
        found: set[str] = set()
        for marker in self.marked.markers:
            level = self.shown(view, marker, named)
            if level is Level.FULL:
                continue
            found.add(marker.value)
            if level is Level.HIDDEN and marker.token is not None:
                found.add(marker.token)
        return found

    def visible(self, view: Viewpoint) -> set[str]:
        """The markers the viewpoint may see in full."""
        return {m.value for m in self.marked.markers if self.shown(view, m) is Level.FULL}


def leaked(text: str, forbidden: Iterable[str]) -> list[str]:
    return sorted(value for value in forbidden if value in text)
