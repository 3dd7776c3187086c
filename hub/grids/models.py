from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, path_string

# A path is the codes from the root down, each followed by "/": "/D01/D01S02/D01S02C03/".
# Codes are restricted to [A-Za-z0-9_-], all below "~", so a subtree is the index range
# [path, path + "~").
PATH_END = "~"


class Grid(Base):
    __tablename__ = "grids"
    __table_args__ = (
        # Serves subtree range scans on path and the keyset ordering PATH (path, id). It keeps
        # its first name, which grids.service refers to, although it now holds id too.
        Index("ix_grids_path", "path", "id"),
        # The keyset ordering CODE. SQLite orders (code, id) by the unique index on code alone;
        # PostgreSQL does not know that code is unique there and would sort.
        Index("ix_grids_code_id", "code", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Levels are data: "district", "street", "community", "grid" in a city; "county", "township",
    # "village" in the countryside; "company", "building", "floor" in an enterprise park.
    level: Mapped[str] = mapped_column(String(32))
    depth: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    path: Mapped[str] = mapped_column(path_string(400))
    boundary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # GeoJSON geometry, WGS84
    center_lng: Mapped[float | None] = mapped_column(Float)  # WGS84
    center_lat: Mapped[float | None] = mapped_column(Float)
