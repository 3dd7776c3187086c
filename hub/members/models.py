from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base

member_grids = Table(
    "member_grids",
    Base.metadata,
    Column("member_id", ForeignKey("members.id", ondelete="CASCADE"), primary_key=True),
    Column("grid_id", ForeignKey("grids.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(20))
    is_party_member: Mapped[bool] = mapped_column(Boolean, default=False)
    # "grid_worker", "party_member", "volunteer"...: free text kept short.
    role: Mapped[str] = mapped_column(String(32), default="grid_worker")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
