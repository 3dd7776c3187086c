"""Export residents to a file for a departmental system (`kind = "file"`, `direction = "push"`).

The export reads as the connector's policy subject: rows in its scope, each mapped column at the
level its policy gives (a masked field is written masked; a hidden one refuses the export before
anything is read), and every batch of sensitive fields read is an audit record, as an API read
would be. Rows stream from the database into the file through a small queue, so memory stays
bounded however many residents there are, and the file is renamed into place only when whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hub.authz import audit, masking
from hub.authz.profile import Level
from hub.authz.writes import WritePermit
from hub.connectors import files
from hub.connectors.definition import Definition
from hub.connectors.sinks import RESIDENT_ATTRIBUTES
from hub.db import Database
from hub.grids.models import Grid
from hub.models import Resident, ResidentTag

# GridHub field -> the policy object whose read level governs it.
READ_OBJECTS = {
    "name": "Resident.name",
    "idNumber": "Resident.idNumber",
    "phone": "Resident.phone",
    "address": "Resident.address",
    "householdCode": "Resident.householdCode",
    "gridCode": "Resident.grid",
    "tags": "Resident.tags",
    "healthNotes": "Resident.healthNotes",
}
_END = object()


class ExportRefused(PermissionError):
    """The connector may not read a column the export maps."""


def unreadable(definition: Definition, permit: WritePermit) -> list[str]:
    objects = [READ_OBJECTS[m.target] for m in definition.mapping]
    if "gridCode" in {m.target for m in definition.mapping}:
        objects.append("Grid.code")
    return sorted(o for o in objects if permit.access.level(o) is Level.HIDDEN)


def _cell(permit: WritePermit, target: str, value: Any) -> Any:
    obj = READ_OBJECTS[target]
    if permit.access.level(obj) is Level.MASKED and value is not None:
        return masking.mask(permit.access.profile.masks[obj], value)
    return value


async def _batches(database: Database, definition: Definition, permit: WritePermit) -> Any:
    access = permit.access
    last_id = 0
    while True:
        async with database.reader() as session:
            statement = access.rows(
                select(Resident)
                .where(Resident.id > last_id)
                .order_by(Resident.id)
                .limit(definition.page_size),
                Resident,
            )
            residents = list(await session.scalars(statement))
            if not residents:
                return
            ids = [r.id for r in residents]
            tags: dict[int, list[str]] = {}
            for resident_id, tag in (
                await session.execute(
                    select(ResidentTag.resident_id, ResidentTag.tag)
                    .where(ResidentTag.resident_id.in_(ids))
                    .order_by(ResidentTag.tag)
                )
            ).all():
                tags.setdefault(resident_id, []).append(tag)
            grid_ids = {r.grid_id for r in residents}
            codes = dict(
                (
                    await session.execute(select(Grid.id, Grid.code).where(Grid.id.in_(grid_ids)))
                ).all()
            )
        rows = []
        for resident in residents:
            row = []
            for field_map in definition.mapping:
                target = field_map.target
                if target == "tags":
                    value: Any = ";".join(tags.get(resident.id, []))
                elif target == "gridCode":
                    value = codes.get(resident.grid_id)
                else:
                    value = getattr(resident, RESIDENT_ATTRIBUTES[target])
                row.append(_cell(permit, target, value))
            rows.append(row)
        yield ids, rows
        last_id = ids[-1]


def _writer(definition: Definition, path: Path) -> Callable[..., int]:
    options = definition.resolved_source()
    format_ = options.get("format", "auto")
    if format_ == "xlsx" or (format_ == "auto" and path.suffix.lower() in (".xlsx", ".xlsm")):
        return files.write_xlsx
    encoding = options.get("encoding", "utf-8-sig")
    if encoding == "auto":
        encoding = "utf-8-sig"

    def write(target: Path, header: Sequence[str], rows: Any) -> int:
        return files.write_csv(target, header, rows, encoding=encoding)

    return write


async def export(
    database: Database,
    definition: Definition,
    permit: WritePermit,
    *,
    run_id: int,
    on_batch: Callable[[int], None],
) -> int:
    """Write the file; returns the number of rows. Raises ExportRefused before reading anything
    when the connector may not read a mapped column."""
    refused = unreadable(definition, permit)
    if refused:
        raise ExportRefused(
            f"{permit.subject} may not read {', '.join(refused)} (policy version "
            f"{permit.version}): change the mapping or the policy"
        )
    path = Path(definition.resolved_source()["path"])
    header = [m.source or m.target for m in definition.mapping]
    sensitive = sorted(
        READ_OBJECTS[m.target]
        for m in definition.mapping
        if READ_OBJECTS[m.target] in permit.access.profile.sensitive
    )
    pipe: queue.Queue[Any] = queue.Queue(maxsize=4)

    def rows() -> Iterator[Sequence[Any]]:
        while True:
            batch = pipe.get()
            if batch is _END:
                return
            if isinstance(batch, BaseException):
                raise batch  # the reader failed: the half-written file is thrown away
            yield from batch

    writing = asyncio.ensure_future(
        asyncio.to_thread(_writer(definition, path), path, header, rows())
    )
    try:
        async for ids, batch in _batches(database, definition, permit):
            if sensitive:
                await audit.append_now(
                    database,
                    audit.AuditEntry(
                        kind="read",
                        actor=permit.subject,
                        role=permit.subject,
                        outcome="ok",
                        operation=f"export:{definition.name}",
                        fields=sensitive,
                        records=[f"Resident:{i}" for i in ids],
                        purpose=f"export to {definition.system}",
                        detail={"run": run_id, "rows": len(ids)},
                    ),
                )
            await asyncio.to_thread(pipe.put, batch)
            on_batch(len(ids))
    except BaseException as failure:
        await asyncio.to_thread(pipe.put, RuntimeError(f"export stopped: {failure}"))
        with contextlib.suppress(RuntimeError):
            await writing
        raise
    await asyncio.to_thread(pipe.put, _END)
    return await writing
