"""The demo's organisation: one invented district with its streets, communities and grids (with
WGS84 boundaries in east Beijing), the departments, and the members responsible for each grid.

The tree and its geometry are fixed data, the same for every seed, so documentation and examples
can name grids (G0101 is the first grid of community C01); the members are drawn from the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hub.demo.names import full_name, mobile

CHINESE_NUMERALS = "一二三四五六七八九十"


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned WGS84 rectangle: lng from west to east, lat from south to north."""

    west: float
    south: float
    east: float
    north: float

    @property
    def center(self) -> tuple[float, float]:
        return round((self.west + self.east) / 2, 6), round((self.south + self.north) / 2, 6)

    def polygon(self) -> dict[str, Any]:
        """A GeoJSON Polygon; the ring runs counter-clockwise and closes (RFC 7946)."""
        w, s, e, n = (round(v, 6) for v in (self.west, self.south, self.east, self.north))
        return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}

    def columns(self, weights: list[int]) -> list[Box]:
        total, edge, boxes = sum(weights), self.west, []
        for weight in weights:
            right = edge + (self.east - self.west) * weight / total
            boxes.append(Box(edge, self.south, right, self.north))
            edge = right
        return boxes

    def rows(self, count: int) -> list[Box]:
        """Bands from north to south, so the first grid of a community is its northern one."""
        height = (self.north - self.south) / count
        return [
            Box(self.west, self.north - height * (i + 1), self.east, self.north - height * i)
            for i in range(count)
        ]

    def point(self, rng: random.Random, margin: float = 0.1) -> tuple[float, float]:
        """A point inside, kept off the edges so it is unambiguously in this box."""
        fx = margin + (1 - 2 * margin) * rng.random()
        fy = margin + (1 - 2 * margin) * rng.random()
        lng = self.west + (self.east - self.west) * fx
        lat = self.south + (self.north - self.south) * fy
        return round(lng, 6), round(lat, 6)


@dataclass(frozen=True, slots=True)
class Compound:
    """A residential compound (小区): old six-storey walk-ups or newer towers."""

    name: str
    floors: int
    units: int  # stairwells (单元) per building
    rooms: int  # flats per floor and unit

    @property
    def flats_per_building(self) -> int:
        return self.floors * self.units * self.rooms


DISTRICT = ("D01", "锦安区")
DISTRICT_BOX = Box(116.440, 39.900, 116.560, 40.000)
# (code, name, main road). The first three streets share the northern half, the other two the
# southern half.
STREETS = [
    ("S01", "翠湖街道", "翠湖路"),
    ("S02", "长兴街道", "长兴大街"),
    ("S03", "润泽街道", "润泽北路"),
    ("S04", "安澜街道", "安澜东路"),
    ("S05", "嘉禾街道", "嘉禾南路"),
]
WALK_UP, MID_RISE, TOWER = (6, 4, 2), (11, 3, 4), (24, 2, 4)
# (code, name, street, number of grids, compounds)
COMMUNITIES: list[tuple[str, str, str, int, list[tuple[str, tuple[int, int, int]]]]] = [
    ("C01", "翠湖东里社区", "S01", 4, [("翠湖东里", WALK_UP), ("翠湖家园", TOWER)]),
    ("C02", "翠湖西里社区", "S01", 5, [("翠湖西里", WALK_UP)]),
    ("C03", "芳园社区", "S01", 4, [("芳园小区", MID_RISE)]),
    ("C04", "长兴北里社区", "S02", 4, [("长兴北里", WALK_UP), ("兴业公寓", TOWER)]),
    ("C05", "长兴南里社区", "S02", 4, [("长兴南里", WALK_UP)]),
    ("C06", "枫林社区", "S03", 4, [("枫林绿洲", MID_RISE)]),
    ("C07", "润泽园社区", "S03", 5, [("润泽园", MID_RISE), ("润泽嘉苑", TOWER)]),
    ("C08", "锦绣社区", "S03", 4, [("锦绣家园", TOWER)]),
    ("C09", "安澜苑社区", "S04", 4, [("安澜苑", WALK_UP)]),
    ("C10", "清河湾社区", "S04", 4, [("清河湾", TOWER)]),
    ("C11", "嘉禾里社区", "S05", 4, [("嘉禾里", WALK_UP)]),
    ("C12", "桂香社区", "S05", 4, [("桂香园", MID_RISE), ("桂香小区", WALK_UP)]),
]
# (code, name, English name)
DEPARTMENTS = [
    ("public_security", "公安", "Public Security"),
    ("health", "卫健", "Health"),
    ("civil_affairs", "民政", "Civil Affairs"),
    ("environment", "生态环境", "Ecology and Environment"),
    ("community_service", "社区服务", "Community Service"),
    ("urban_management", "城管", "Urban Management"),
]
LEVELS = ("district", "street", "community", "grid")


@dataclass(slots=True)
class Node:
    id: int
    code: str
    name: str
    level: str
    parent: Node | None
    box: Box
    street: str = ""  # the street's name, for addresses
    road: str = ""
    community: str = ""
    compound: Compound | None = None
    weight: float = 1.0  # relative population of a grid

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    @property
    def path(self) -> str:
        return (self.parent.path if self.parent else "/") + self.code + "/"

    def row(self) -> dict[str, Any]:
        lng, lat = self.box.center
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "depth": self.depth,
            "parent_id": self.parent.id if self.parent else None,
            "path": self.path,
            "boundary": self.box.polygon(),
            "center_lng": lng,
            "center_lat": lat,
        }


@dataclass(slots=True)
class World:
    nodes: list[Node] = field(default_factory=list)
    departments: dict[str, int] = field(default_factory=dict)  # code -> id
    members: list[tuple[int, str, str, bool, str, int | None]] = field(default_factory=list)
    member_grids: list[tuple[int, int]] = field(default_factory=list)
    # grid id -> responsible member ids, the grid worker first
    responsible: dict[int, list[int]] = field(default_factory=dict)

    @property
    def grids(self) -> list[Node]:
        return [node for node in self.nodes if node.level == "grid"]

    def by_code(self, code: str) -> Node:
        return next(node for node in self.nodes if node.code == code)


def build_tree() -> list[Node]:
    """Every node, parents before children, with ids 1..n in that order."""
    shape = random.Random("gridhub-demo-tree")  # fixed: grid populations vary, but not by seed
    nodes: list[Node] = []

    def add(node: Node) -> Node:
        nodes.append(node)
        return node

    district = add(Node(1, DISTRICT[0], DISTRICT[1], "district", None, DISTRICT_BOX))
    top, bottom = DISTRICT_BOX.rows(2)
    street_boxes = top.columns([1, 1, 1]) + bottom.columns([1, 1])
    streets = {}
    for (code, name, road), box in zip(STREETS, street_boxes, strict=True):
        streets[code] = add(Node(len(nodes) + 1, code, name, "street", district, box, name, road))
    communities = []
    for street_code, street in streets.items():
        members = [c for c in COMMUNITIES if c[2] == street_code]
        for spec, box in zip(members, street.box.columns([c[3] for c in members]), strict=True):
            node = add(Node(len(nodes) + 1, spec[0], spec[1], "community", street, box))
            node.street, node.road, node.community = street.name, street.road, spec[1]
            communities.append((node, spec))
    for community, (code, name, _, count, compounds) in communities:
        short = name.removesuffix("社区")
        for k, box in enumerate(community.box.rows(count)):
            compound_name, (floors, units, rooms) = compounds[k % len(compounds)]
            grid = Node(
                len(nodes) + 1,
                f"G{code[1:]}{k + 1:02d}",
                f"{short}第{CHINESE_NUMERALS[k]}网格",
                "grid",
                community,
                box,
                community.street,
                community.road,
                name,
                Compound(compound_name, floors, units, rooms),
                weight=0.6 + 0.8 * shape.random(),
            )
            add(grid)
    return nodes


def build_world(seed: int) -> World:
    world = World(nodes=build_tree())
    world.departments = {code: i for i, (code, _, _) in enumerate(DEPARTMENTS, start=1)}
    _add_members(world, random.Random(f"{seed}/members"))
    return world


def _add_members(world: World, rng: random.Random) -> None:
    """Each grid gets a grid worker (some cover two neighbouring grids), often the community's
    police officer, and sometimes a retired party member who volunteers: one to three people,
    every one of them named, with a phone (责任到人)."""
    community_service = world.departments["community_service"]
    police = world.departments["public_security"]

    def member(role: str, party: bool, department: int | None, born: int) -> int:
        gender = "male" if rng.random() < 0.55 else "female"
        member_id = len(world.members) + 1
        name = full_name(rng, gender, born)
        world.members.append((member_id, name, mobile(rng), party, role, department))
        return member_id

    def assign(member_id: int, grid: Node) -> None:
        world.member_grids.append((member_id, grid.id))
        world.responsible.setdefault(grid.id, []).append(member_id)

    for community in (node for node in world.nodes if node.level == "community"):
        grids = [node for node in world.nodes if node.parent is community]
        officer = member(
            "police_officer", rng.random() < 0.85, police, 1970 + int(rng.random() * 28)
        )
        covered = [grid for grid in grids if rng.random() < 0.75] or grids[:2]
        worker, worker_grids = 0, 0
        for grid in grids:
            if worker and worker_grids < 2 and rng.random() < 0.25:
                worker_grids += 1
            else:
                born = 1971 + int(rng.random() * 30)
                worker = member("grid_worker", rng.random() < 0.45, community_service, born)
                worker_grids = 1
            assign(worker, grid)
            if grid in covered:
                assign(officer, grid)
            if rng.random() < 0.4:
                volunteer = member("party_member", True, None, 1950 + int(rng.random() * 26))
                assign(volunteer, grid)
