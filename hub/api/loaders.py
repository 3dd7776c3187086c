"""DataLoaders: every nested field loads in one batched, scoped SELECT per kind per operation.

Every statement goes through `access.rows`: child rows (tags, external ids, timeline lines) are
joined to their parent and the parent is scoped, so a row scope on the parent hides its children
too. Lists that can grow without bound in the database are bounded here, per parent, with
ROW_NUMBER() (SQLite >= 3.25 and PostgreSQL alike): one page of parents can never pull more than
page size x bound rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from functools import cached_property
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from hub.authz import Access
from hub.models import (
    Department,
    Event,
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

# An event's timeline: its latest lines, oldest first among them. Notes can be added without
# limit; a page of 100 events must still stay a bounded read.
TIMELINE_LINES = 200
# A grid's members: the first ones by id.
GRID_MEMBERS = 200


def by_id(access: Access, model: type[Any], ids: Sequence[int], *columns: Any) -> Select[Any]:
    """The rows of `model` with these ids that `access` may see: whole rows, or only `columns`
    of them (compiled execution reads the columns a query asks for)."""
    statement = select(*columns) if columns else select(model)
    return access.rows(statement.where(model.id.in_(ids)), model)


class Reads(Protocol):
    """Where the loaders get their sessions: the operation's RequestDatabase."""

    def reader(self) -> AbstractAsyncContextManager[AsyncSession]: ...


class Loaders:
    """One DataLoader per kind, made on first use: most operations need one or two of them,
    and every operation gets a fresh set."""

    def __init__(self, db: Reads, access: Access) -> None:
        self._db = db
        self._access = access

    @cached_property
    def grid(self) -> DataLoader[int, Grid | None]:
        return self._by_id(Grid)

    @cached_property
    def department(self) -> DataLoader[int, Department | None]:
        return self._by_id(Department)

    @cached_property
    def member(self) -> DataLoader[int, Member | None]:
        return self._by_id(Member)

    @cached_property
    def resident(self) -> DataLoader[int, Resident | None]:
        return self._by_id(Resident)

    @cached_property
    def resident_tags(self) -> DataLoader[int, list[str]]:
        return DataLoader(self._resident_tags)

    @cached_property
    def resident_external_ids(self) -> DataLoader[int, list[ResidentExternalId]]:
        return DataLoader(self._resident_external_ids)

    @cached_property
    def member_grids(self) -> DataLoader[int, list[Grid]]:
        return DataLoader(self._member_grids)

    @cached_property
    def grid_members(self) -> DataLoader[int, list[Member]]:
        return DataLoader(self._grid_members)

    @cached_property
    def notice_grids(self) -> DataLoader[int, list[Grid]]:
        return DataLoader(self._notice_grids)

    @cached_property
    def event_timeline(self) -> DataLoader[int, list[EventTransition]]:
        return DataLoader(self._event_timeline)

    def clear(self) -> None:
        """Forget every cached row: called after a commit, which may have changed any of them."""
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()

    def _by_id(self, model: type[M]) -> DataLoader[int, M | None]:
        async def load(ids: Sequence[int]) -> list[M | None]:
            statement = by_id(self._access, model, ids)
            async with self._db.reader() as session:
                found = {row.id: row for row in (await session.scalars(statement)).all()}
            return [found.get(i) for i in ids]

        return DataLoader(load)

    async def _grouped(self, statement: Any, ids: Sequence[int]) -> list[list[Any]]:
        groups: dict[int, list[Any]] = defaultdict(list)
        async with self._db.reader() as session:
            for owner_id, item in (await session.execute(statement)).all():
                groups[owner_id].append(item)
        return [groups.get(i, []) for i in ids]

    async def _resident_tags(self, ids: Sequence[int]) -> list[list[str]]:
        # Access.rows is typed for one-column selects; this one has two.
        tags = cast(
            "Select[Any]",
            select(ResidentTag.resident_id, ResidentTag.tag)
            .join(Resident, Resident.id == ResidentTag.resident_id)
            .where(ResidentTag.resident_id.in_(ids))
            .order_by(ResidentTag.resident_id, ResidentTag.tag),
        )
        statement = self._access.rows(tags, Resident)
        return await self._grouped(statement, ids)

    async def _resident_external_ids(self, ids: Sequence[int]) -> list[list[ResidentExternalId]]:
        external_ids = cast(
            "Select[Any]",
            select(ResidentExternalId.resident_id, ResidentExternalId)
            .join(Resident, Resident.id == ResidentExternalId.resident_id)
            .where(ResidentExternalId.resident_id.in_(ids))
            .order_by(ResidentExternalId.id),
        )
        statement = self._access.rows(external_ids, Resident)
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
        rank = func.row_number().over(partition_by=member_grids.c.grid_id, order_by=Member.id)
        ranked = self._access.rows(
            select(member_grids.c.grid_id, Member, rank.label("member_rank"))
            .join(Member, Member.id == member_grids.c.member_id)
            .where(member_grids.c.grid_id.in_(ids)),
            Member,
        ).subquery()
        member = aliased(Member, ranked)
        statement = (
            select(ranked.c.grid_id, member)
            .where(ranked.c.member_rank <= GRID_MEMBERS)
            .order_by(ranked.c.grid_id, member.id)
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
        # Numbered newest first, so the bound keeps the latest lines; returned oldest first.
        rank = func.row_number().over(
            partition_by=EventTransition.event_id, order_by=EventTransition.id.desc()
        )
        ranked = self._access.rows(
            select(EventTransition, rank.label("line_rank"))
            .join(Event, Event.id == EventTransition.event_id)
            .where(EventTransition.event_id.in_(ids)),
            Event,
        ).subquery()
        line = aliased(EventTransition, ranked)
        statement = (
            select(line.event_id, line)
            .where(ranked.c.line_rank <= TIMELINE_LINES)
            .order_by(line.event_id, line.id)
        )
        return await self._grouped(statement, ids)
