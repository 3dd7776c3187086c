from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select

from hub.members.models import Member, member_grids


@dataclass(frozen=True, slots=True)
class MemberFilter:
    grid_ids: Select[int] | None = None
    department_id: int | None = None
    is_party_member: bool | None = None


def list_statement(filter: MemberFilter) -> Select[Any]:
    statement = select(Member)
    if filter.grid_ids is not None:
        responsible = select(member_grids.c.member_id).where(
            member_grids.c.grid_id.in_(filter.grid_ids)
        )
        statement = statement.where(Member.id.in_(responsible))
    if filter.department_id is not None:
        statement = statement.where(Member.department_id == filter.department_id)
    if filter.is_party_member is not None:
        statement = statement.where(Member.is_party_member == filter.is_party_member)
    return statement
