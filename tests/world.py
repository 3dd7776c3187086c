"""A small, known world built through the domain services: the fixture most tests start from."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from hub.departments.models import Department
from hub.grids import service as grids
from hub.grids.models import Grid
from hub.members.models import Member, member_grids
from hub.residents import idcard
from hub.residents import service as residents
from hub.residents.models import Resident

DEPARTMENTS = [
    ("public_security", "公安", "Public Security"),
    ("health", "卫健", "Health"),
    ("civil_affairs", "民政", "Civil Affairs"),
    ("environment", "生态环境", "Environment"),
    ("community_service", "社区服务", "Community Service"),
]


@dataclass
class World:
    grids: dict[str, Grid] = field(default_factory=dict)
    departments: dict[str, Department] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)
    residents: list[Resident] = field(default_factory=list)


def valid_id_number(n: int) -> str:
    from datetime import date

    return idcard.make("110105", date(1950 + n % 50, 1 + n % 12, 1 + n % 28), n % 1000)


async def build_world(session: AsyncSession) -> World:
    world = World()
    for code, name, name_en in DEPARTMENTS:
        department = Department(code=code, name=name, name_en=name_en)
        session.add(department)
        world.departments[code] = department
    await session.flush()

    async def grid(code: str, name: str, level: str, parent: str | None) -> None:
        world.grids[code] = await grids.create(
            session,
            code=code,
            name=name,
            level=level,
            parent=world.grids[parent] if parent else None,
            center=(116.48, 39.92),
        )

    await grid("D1", "朝阳区", "district", None)
    await grid("S1", "望京街道", "street", "D1")
    await grid("S2", "三里屯街道", "street", "D1")
    await grid("C1", "花家地社区", "community", "S1")
    await grid("C2", "南湖社区", "community", "S1")
    await grid("C3", "幸福社区", "community", "S2")
    for code, parent in [("G1", "C1"), ("G2", "C1"), ("G3", "C2"), ("G4", "C3")]:
        await grid(code, f"第{code[1]}网格", "grid", parent)

    for n, grid_code in enumerate(["G1", "G2", "G3", "G4"]):
        member = Member(
            name=f"网格员{n}",
            phone=f"1380000{n:04d}",
            is_party_member=n % 2 == 0,
            department_id=world.departments["community_service"].id,
        )
        session.add(member)
        await session.flush()
        await session.execute(
            member_grids.insert(), {"member_id": member.id, "grid_id": world.grids[grid_code].id}
        )
        world.members.append(member)

    for n in range(12):
        grid_code = ["G1", "G2", "G3", "G4"][n % 4]
        resident = await residents.create(
            session,
            changes=residents.ResidentChanges(
                name=f"居民{n:02d}",
                id_number=valid_id_number(n),
                phone=f"1390000{n:04d}",
                address=f"望京西园{n}号楼",
                grid_code=grid_code,
                tags=["elderly", "living_alone"] if n % 3 == 0 else [],
            ),
        )
        world.residents.append(resident)
    return world
