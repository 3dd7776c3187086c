"""Residents, generated household by household and handed out in batches of rows.

A household shares an address, a household code and usually a surname; ages within it are
coherent (a couple, their children, sometimes a grandparent), and every ID number carries the
person's real birth date and gender. Memory does not grow with the number of residents except
for two fixed arrays of ID-number counters (about 3 MB).
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from math import ceil, sqrt

from hub.demo.names import LOCAL_REGION, REGION_CODES, REGIONS, SURNAMES, Weighted, mobile
from hub.demo.names import given_name as given
from hub.demo.world import Node, World
from hub.residents import idcard

# Ages are drawn as of this day, so birth dates and ID numbers depend on the seed only, not on
# the anchor day; the elderly tag is then computed at the anchor (people do get older).
BIRTH_EPOCH = date(2026, 1, 1)
_EPOCH = BIRTH_EPOCH.toordinal()
_FIRST = date(1900, 1, 1).toordinal()
_DAYS = _EPOCH - _FIRST
_YEAR = 365.2425
DAY = 86400
_SLOTS = 499  # sequence numbers per (region, day, gender): odd 001-997 or even 002-998
REGISTRY = "household_registry"
HEALTH_ARCHIVE = "health_archive"
_HEALTH_NOTES = {
    "chronic_illness": (
        "高血压，规律服药，每月社区卫生站随访",
        "2型糖尿病，需定期监测血糖",
        "冠心病，已签约家庭医生",
        "慢性阻塞性肺病，冬季注意防护",
        "类风湿关节炎，行动较慢",
    ),
    "disabled": (
        "肢体残疾（二级），出行需轮椅",
        "视力残疾（三级），需陪同出行",
        "听力残疾（四级），沟通请写字或提高音量",
        "智力残疾（三级），由家属照护",
    ),
    "pregnant": ("孕期已建档，定期产检",),
}
_OLD_AGE_NOTES = ("听力下降，上门请提前电话联系家属", "行动不便，需助老服务", "独自外出易迷路")

# The residents table's columns in order; the last three (a pending registration's holder,
# claimant and time) are always empty for the demo's registered residents.
Resident = tuple[
    int,
    str,
    str,
    date,
    str,
    str | None,
    str,
    str,
    int,
    str | None,
    datetime,
    datetime,
    None,
    None,
    None,
]


@dataclass(slots=True)
class Batch:
    residents: list[Resident] = field(default_factory=list)
    tags: list[tuple[int, str]] = field(default_factory=list)
    external_ids: list[tuple[int, int, str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.residents) + len(self.tags) + len(self.external_ids)


@dataclass(slots=True)
class Census:
    """What the generator made, for the summary and for later generators (event reporters)."""

    households: int = 0
    tags: Counter[str] = field(default_factory=Counter)
    # A few adult residents per grid: the residents who report events and give feedback.
    adults_by_grid: dict[int, list[int]] = field(default_factory=dict)
    # grid id -> (first building number, number of buildings) of its compound
    buildings: dict[int, tuple[int, int]] = field(default_factory=dict)


class IdNumbers:
    """Unique ID numbers without remembering them: per (region, birth day, gender) a counter
    walks a permutation of the sequence slots, so numbers look scattered and never repeat."""

    def __init__(self) -> None:
        self._region = {code: i for i, code in enumerate(REGION_CODES)}
        size = len(REGION_CODES) * _DAYS
        self._count = {
            True: array("H", bytes(2 * size)),
            False: array("H", bytes(2 * size)),
        }

    def issue(self, region: str, born: int, male: bool) -> tuple[str, date]:
        counts = self._count[male]
        while True:
            bucket = self._region[region] * _DAYS + (born - _FIRST)
            used = counts[bucket]
            if used < _SLOTS:
                break
            born -= 1  # this day is full (not at demo scales): the day before
        counts[bucket] = used + 1
        slot = (used * 37 + bucket * 11) % _SLOTS
        birth_date = date.fromordinal(born)
        return idcard.make(region, birth_date, 2 * slot + (1 if male else 2)), birth_date


@dataclass(slots=True)
class Addresses:
    """Flats of one grid's compound: household k gets flat (k * stride) mod capacity, a
    scattered but collision-free walk over the buildings planned for the expected population."""

    node: Node
    first_building: int
    buildings: int
    capacity: int
    stride: int
    used: int = 0

    def next(self) -> str:
        compound = self.node.compound
        assert compound is not None
        k = self.used
        self.used += 1
        flat = (k * self.stride + self.node.id * 13) % self.capacity if k < self.capacity else k
        building, rest = divmod(flat, compound.flats_per_building)
        unit, rest = divmod(rest, compound.floors * compound.rooms)
        floor, room = divmod(rest, compound.rooms)
        return (
            f"{self.node.street}{compound.name}{self.first_building + building}号楼"
            f"{unit + 1}单元{floor + 1}{room + 1:02d}室"
        )


def _plan_addresses(world: World, residents: int) -> dict[int, Addresses]:
    grids = world.grids
    total_weight = sum(grid.weight for grid in grids)
    next_building: Counter[str] = Counter()
    plans = {}
    for grid in grids:
        compound = grid.compound
        assert compound is not None
        expected = residents / 2.6 * grid.weight / total_weight
        flats = expected + 6 * sqrt(expected) + 10
        buildings = ceil(flats / compound.flats_per_building)
        capacity = buildings * compound.flats_per_building
        stride = next(
            s for s in range(capacity // 3 + 1, 2 * capacity + 3) if _coprime(s, capacity)
        )
        first = next_building[compound.name] + 1
        plans[grid.id] = Addresses(grid, first, buildings, capacity, stride)
        next_building[compound.name] += buildings
    return plans


def _coprime(a: int, b: int) -> bool:
    while b:
        a, b = b, a % b
    return a == 1


def _household(rng: random.Random) -> list[tuple[str, bool, int]]:
    """(relation, male, age in whole years as of BIRTH_EPOCH) of each member, head first."""
    r = rng.random()

    def between(low: int, high: int) -> int:
        return low + int(rng.random() * (high - low + 1))

    def couple(low: int, high: int) -> list[tuple[str, bool, int]]:
        husband = between(low, high)
        wife = max(20, husband - between(-2, 5))
        return [("head", True, husband), ("spouse", False, wife)]

    def children(mother: int, count: int) -> list[tuple[str, bool, int]]:
        eldest = max(0, mother - between(23, 34))
        return [
            ("child", rng.random() < 0.51, max(0, eldest - i * between(2, 6))) for i in range(count)
        ]

    def elder(son: int) -> tuple[str, bool, int]:
        return ("elder", rng.random() < 0.4, min(97, son + between(24, 32)))

    if r < 0.20:
        s = rng.random()
        age = between(65, 92) if s < 0.38 else between(22, 40) if s < 0.78 else between(41, 64)
        return [("head", rng.random() < (0.4 if age >= 65 else 0.55), age)]
    if r < 0.50:
        if rng.random() < 0.6:
            return couple(24, 88)
        parent = between(40, 80)
        return [("head", rng.random() < 0.4, parent), *children(parent, 1)]
    if r < 0.77:
        family = couple(27, 58)
        return family + children(family[1][2], 1)
    family = couple(29, 52)
    mother = family[1][2]
    if r < 0.90:
        return family + (
            children(mother, 2)
            if rng.random() < 0.65
            else [*children(mother, 1), elder(family[0][2])]
        )
    if rng.random() < 0.6:
        return [*family, *children(mother, 2), elder(family[0][2])]
    return [*family, *children(mother, 1), elder(family[0][2]), elder(family[0][2])]


def _age_at(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@dataclass(frozen=True, slots=True)
class Home:
    """What the members of one household share."""

    grid: Node
    code: str
    address: str
    registered: datetime
    updated: datetime
    size: int
    surname: str
    region: str
    low_income: bool


class ResidentGenerator:
    """Residents with ids 1..total, in order, household by household."""

    def __init__(self, world: World, *, seed: int, total: int, anchor: datetime, census: Census):
        self.rng = random.Random(f"{seed}/residents")
        self.total = total
        self.anchor = anchor
        self.today = anchor.date()
        self.census = census
        self.ids = IdNumbers()
        self.addresses = _plan_addresses(world, total)
        for grid_id, plan in self.addresses.items():
            census.buildings[grid_id] = (plan.first_building, plan.buildings)
        self.grids = Weighted([(grid, round(grid.weight * 100)) for grid in world.grids])
        self.households: Counter[int] = Counter()
        self.resident_id = 0
        self.external_id = 0

    def batches(self, batch_size: int) -> Iterator[Batch]:
        batch = Batch()
        while self.resident_id < self.total:
            self._household(batch)
            if len(batch.residents) >= batch_size:
                yield batch
                batch = Batch()
        if batch.residents:
            yield batch

    def _household(self, batch: Batch) -> None:
        rng = self.rng
        grid = self.grids.pick(rng)
        self.households[grid.id] += 1
        self.census.households += 1
        registered = self.anchor - timedelta(seconds=int(rng.random() * 3 * 365 * DAY) + DAY)
        updated = registered
        if rng.random() < 0.3:
            later = (self.anchor - registered).total_seconds()
            updated = registered + timedelta(seconds=int(rng.random() * later))
        low_income = rng.random() < 0.03
        members = _household(rng)
        home = Home(
            grid=grid,
            code=f"{grid.code}-H{self.households[grid.id]:05d}",
            address=self.addresses[grid.id].next(),
            registered=registered,
            updated=updated,
            size=len(members),
            surname=SURNAMES.pick(rng),
            region=REGIONS.pick(rng),
            low_income=low_income,
        )
        for relation, male, age in members[: self.total - self.resident_id]:
            self._person(batch, home, relation, male, age)

    def _person(self, batch: Batch, home: Home, relation: str, male: bool, age: int) -> None:
        # Every draw uses the age as of BIRTH_EPOCH and the generator is drawn the same number
        # of times whatever the outcome, so the anchor day cannot shift the stream; only the
        # age-bound tags use the age on the anchor day.
        rng = self.rng
        self.resident_id += 1
        resident_id = self.resident_id
        born_ord = _EPOCH - 1 - int((age + rng.random()) * _YEAR)
        own_surname, own_region, local = SURNAMES.pick(rng), REGIONS.pick(rng), rng.random()
        family = relation == "head" or (relation == "child" and age < 30)
        surname = home.surname if family else own_surname
        if relation == "child" and age < 40 and local < 0.7:
            region = LOCAL_REGION  # born here
        else:
            region = home.region if relation in ("head", "child") else own_region
        id_number, born = self.ids.issue(region, born_ord, male)
        gender = "male" if male else "female"
        name = surname + given(rng, gender, born.year)
        has_phone, keeps_phone, number = rng.random(), rng.random(), mobile(rng)
        phone = (
            number if age >= 12 and has_phone < 0.96 and (age < 85 or keeps_phone < 0.5) else None
        )
        tags = _drawn_tags(rng, age, male, low_income=home.low_income)
        notes = _health_notes(rng, tags, age)
        tags = _age_tags(tags, _age_at(born, self.today), alone=home.size == 1)
        batch.residents.append(
            (
                resident_id,
                name,
                gender,
                born,
                id_number,
                phone,
                home.address,
                home.code,
                home.grid.id,
                notes,
                home.registered,
                home.updated,
                None,  # duplicate_of_id: every demo resident is registered
                None,  # duplicate_claimed_by
                None,  # duplicate_claimed_at
            )
        )
        batch.tags.extend((resident_id, tag) for tag in tags)
        self.census.tags.update(tags)
        self._external_ids(batch, resident_id, archived=age >= 60 or "chronic_illness" in tags)
        adults = self.census.adults_by_grid.setdefault(home.grid.id, [])
        if age >= 18 and len(adults) < 30:
            adults.append(resident_id)

    def _external_ids(self, batch: Batch, resident_id: int, *, archived: bool) -> None:
        """Most residents are in the household registry, many old or ill ones in the health
        archive. The ids rise with the resident id (registry serials do), so their unique
        index grows at its right edge instead of splitting pages all over."""
        registry, archive = self.rng.random(), self.rng.random()
        if registry < 0.93:
            self.external_id += 1
            code = f"HR{LOCAL_REGION}{resident_id:08d}"
            batch.external_ids.append((self.external_id, resident_id, REGISTRY, code))
        if archived and archive < 0.7:
            self.external_id += 1
            code = f"HA{resident_id * 7 + 3:010d}"
            batch.external_ids.append((self.external_id, resident_id, HEALTH_ARCHIVE, code))


def resident_batches(
    world: World,
    *,
    seed: int,
    total: int,
    anchor: datetime,
    batch_size: int,
    census: Census,
) -> Iterator[Batch]:
    """Yield `total` residents (ids 1..total, in order) with their tags and external ids."""
    generator = ResidentGenerator(world, seed=seed, total=total, anchor=anchor, census=census)
    return generator.batches(batch_size)


def _drawn_tags(rng: random.Random, age: int, male: bool, *, low_income: bool) -> list[str]:
    """The tags left to chance, at rates that depend on age; always five draws."""
    draw = rng.random
    disabled, chronic, veteran, pregnant, unemployed = draw(), draw(), draw(), draw(), draw()
    old = age >= 60
    tags = []
    if disabled < (0.06 if old else 0.015):
        tags.append("disabled")
    if chronic < (0.25 if old else 0.04 if age >= 40 else 0.005):
        tags.append("chronic_illness")
    if low_income:
        tags.append("low_income")
    if male and age >= 45 and veteran < 0.012:
        tags.append("veteran")
    if not male and 22 <= age <= 40 and pregnant < 0.02:
        tags.append("pregnant")
    if 18 <= age < 60 and unemployed < 0.03:
        tags.append("unemployed")
    return tags


def _age_tags(tags: list[str], years: int, *, alone: bool) -> list[str]:
    """The tags that follow from the age on the anchor day: elderly (60 and over), living alone
    (elderly in a one-person household), key care (alone at 80+, or disabled and vulnerable)."""
    elderly = years >= 60
    if elderly:
        tags.append("elderly")
        if alone:
            tags.append("living_alone")
    if (alone and years >= 80) or ("disabled" in tags and (elderly or "low_income" in tags)):
        tags.append("key_care")
    return sorted(tags)


def _health_notes(rng: random.Random, tags: list[str], age: int) -> str | None:
    chance, choice = rng.random(), rng.random()
    for tag in ("disabled", "chronic_illness", "pregnant"):
        if tag in tags:
            notes = _HEALTH_NOTES[tag]
            return notes[int(choice * len(notes))]
    if age >= 80 and chance < 0.3:
        return _OLD_AGE_NOTES[int(choice * len(_OLD_AGE_NOTES))]
    return None
