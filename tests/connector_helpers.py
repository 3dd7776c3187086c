"""Shared by the connector tests: definitions written into a temporary folder, household files,
and the live policy the engine runs under."""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Iterable, Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hub.config import Settings
from hub.connectors.definition import Definition, load_file
from hub.db import Database
from hub.residents import idcard
from hub.sync.models import SyncRun

HOUSEHOLD_HEADER = [
    "人员编号",
    "姓名",
    "公民身份号码",
    "联系电话",
    "现住址",
    "户号",
    "网格编码",
    "更新时间",
]

HOUSEHOLD_TOML = """
name = "{name}"
kind = "file"
direction = "pull"
entity = "resident"
subject = "{subject}"
system = "{system}"
page_size = {page_size}

[source]
path = "{path}"
encoding = "{encoding}"

[match]
external_id = "人员编号"
natural_key = ["idNumber"]
version = "更新时间"

[mapping]
{mapping}
"""

HOUSEHOLD_MAPPING = """
name = "姓名"
idNumber = { from = "公民身份号码", transform = "digits" }
phone = "联系电话"
address = "现住址"
householdCode = "户号"
gridCode = { from = "网格编码", transform = "upper", required = true }
"""


def id_number(n: int) -> str:
    return idcard.make("110108", date(1960 + n % 40, 1 + n % 12, 1 + n % 28), n % 1000)


def household_row(
    n: int, *, grid: str = "G1", version: str = "2026-11-01T08:00:00+08:00"
) -> list[str]:
    return [
        f"P{n:06d}",
        f"住户{n}",
        id_number(n),
        f"1370000{n % 10000:04d}",
        f"花家地北里{n % 50}号楼",
        f"H{n // 3:05d}",
        grid,
        version,
    ]


def write_household(
    path: Path,
    rows: Iterable[Sequence[str]],
    *,
    encoding: str = "utf-8",
    header: Sequence[str] = HOUSEHOLD_HEADER,
) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def household_definition(
    folder: Path,
    data: Path,
    *,
    name: str = "household",
    subject: str = "connector:household",
    system: str = "household-registry",
    page_size: int = 4,
    encoding: str = "auto",
    mapping: str = HOUSEHOLD_MAPPING,
) -> Definition:
    text = HOUSEHOLD_TOML.format(
        name=name,
        subject=subject,
        system=system,
        page_size=page_size,
        path=str(data),
        encoding=encoding,
        mapping=textwrap.dedent(mapping).strip(),
    )
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_file(path)


@cache
def _full_schema() -> Any:
    from hub.api.schema import build_schema

    return build_schema()


async def live_policy(settings: Settings, db: Database) -> Any:
    """The registry the hub serves with, synced with the test database's policy."""
    from hub.api.registry import SchemaRegistry

    registry = SchemaRegistry(_full_schema(), settings)
    await registry.sync(db)
    return registry


async def count(db: Database, statement: Any) -> int:
    async with db.reader() as session:
        return int(
            await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        )


def counters(run: SyncRun) -> dict[str, int]:
    names = ("fetched", "created", "updated", "unchanged", "quarantined", "conflicts")
    return {name: getattr(run, name) for name in names}
