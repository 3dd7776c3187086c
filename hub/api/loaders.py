"""DataLoaders: every nested field loads in one batched, scoped SELECT per kind per request."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from strawberry.dataloader import DataLoader

from hub.authz import Access
from hub.db import Database
from hub.models import (
    Department,
    EventTransition,
    Grid,
    Member,
    Resident,
    ResidentExternalId,
    ResidentTag,
    member_grids,
    notice_grids,
)

M = TypeVar("M")


class Loaders:
    def __init__(self, db: Database, access: Access) -> None:
        self._db = db
        self._access = access
        self.grid = self._by_id(Grid)
        self.department = self._by_id(Department)
        self.member = self._by_id(Member)
        self.resident = self._by_id(Resident)
        self.resident_tags: DataLoader[int, list[str]] = DataLoader(self._resident_tags)
        self.resident_external_ids: DataLoader[int, list[ResidentExternalId]] = DataLoader(
            self._resident_external_ids
        )
        self.member_grids: DataLoader[int, list[Grid]] = DataLoader(self._member_grids)
        self.grid_members: DataLoader[int, list[Member]] = DataLoader(self._grid_members)
        self.notice_grids: DataLoader[int, list[Grid]] = DataLoader(self._notice_grids)
        self.event_timeline: DataLoader[int, list[EventTransition]] = DataLoader(
            self._event_timeline
        )

    def _by_id(self, model: type[M]) -> DataLoader[int, M | None]:
        async def load(ids: Sequence[int]) -> list[M | None]:
            statement = self._access.rows(select(model).where(model.id.in_(ids)), model)  # type: ignore[attr-defined]
            async with self._db.reader() as session:
                found = {row.id: row for row in (await session.scalars(statement)).all()}  # type: ignore[attr-defined]
            return [found.get(i) for i in ids]

        return DataLoader(load)

    async def _grouped(self, statement: Any, ids: Sequence[int]) -> list[list[Any]]:
        groups: dict[int, list[Any]] = defaultdict(list)
        async with self._db.reader() as session:
            for owner_id, item in (await session.execute(statement)).all():
                groups[owner_id].append(item)
        return [groups.get(i, []) for i in ids]

    async def _resident_tags(self, ids: Sequence[int]) -> list[list[str]]:
        statement = (
            select(ResidentTag.resident_id, ResidentTag.tag)
            .where(ResidentTag.resident_id.in_(ids))
            .order_by(ResidentTag.resident_id, ResidentTag.tag)
        )
        return await self._grouped(statement, ids)

    async def _resident_external_ids(self, ids: Sequence[int]) -> list[list[ResidentExternalId]]:
        statement = (
            select(ResidentExternalId.resident_id, ResidentExternalId)
            .where(ResidentExternalId.resident_id.in_(ids))
            .order_by(ResidentExternalId.id)
        )
        return await self._grouped(statement, ids)

    async def _member_grids(self, ids: Sequence[int]) -> list[list[Grid]]:
        statement = self._access.rows(
            select(member_grids.c.member_id, Grid)
            .join(Grid, Grid.id == member_grids.c.grid_id)
            .where(member_grids.c.member_id.in_(ids))
            .order_by(Grid.path),
            Grid,
        )
        return await self._grouped(statement, ids)

    async def _grid_members(self, ids: Sequence[int]) -> list[list[Member]]:
        statement = self._access.rows(
            select(member_grids.c.grid_id, Member)
            .join(Member, Member.id == member_grids.c.member_id)
            .where(member_grids.c.grid_id.in_(ids))
            .order_by(Member.id),
            Member,
        )
        return await self._grouped(statement, ids)

    async def _notice_grids(self, ids: Sequence[int]) -> list[list[Grid]]:
        statement = self._access.rows(
            select(notice_grids.c.notice_id, Grid)
            .join(Grid, Grid.id == notice_grids.c.grid_id)
            .where(notice_grids.c.notice_id.in_(ids))
            .order_by(Grid.path),
            Grid,
        )
        return await self._grouped(statement, ids)

    async def _event_timeline(self, ids: Sequence[int]) -> list[list[EventTransition]]:
        statement = (
            select(EventTransition.event_id, EventTransition)
            .where(EventTransition.event_id.in_(ids))
            .order_by(EventTransition.event_id, EventTransition.id)
        )
        return await self._grouped(statement, ids)
