from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import validation
from hub.departments.models import Department
from hub.errors import BadUserInput


def list_statement() -> Select[Any]:
    return select(Department)


async def resolve_code(
    session: AsyncSession, *, code: str, field: str = "departmentCode"
) -> Department:
    department = await session.scalar(select(Department).where(Department.code == code))
    if department is None:
        raise BadUserInput(f"unknown department code {validation.echoed(code)}", field=field)
    return department
