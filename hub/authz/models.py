"""Tables of access control: API keys, policy versions, emergency grants and the audit chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class ApiKey(Base):
    """A department system's key. Only a hash of the secret is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(64))
    department_code: Mapped[str | None] = mapped_column(String(32))
    grid_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The key is "ghk_<prefix>_<secret>": the prefix finds the row, the hash checks the secret.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PolicyVersion(Base):
    """One version of the live policy: the whole policy text, who changed it, why, and the diff.

    The highest version is the live one; a rollback is a new version with an old text."""

    __tablename__ = "policy_versions"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    diff: Mapped[str] = mapped_column(Text, default="")
    # Set on a rollback: the version whose text this one restores.
    restores: Mapped[int | None] = mapped_column(Integer)


class EndedSession(Base):
    """A browser session its user signed out of, until it would have expired anyway.

    The session cookie is sealed and carries its own expiry, so without this row a copy of the
    cookie taken before sign-out would keep working. Only a hash of the session's nonce is kept.
    """

    __tablename__ = "ended_sessions"

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class EmergencyGrant(Base):
    """A time-boxed widening of one subject's view during an incident (突发事件)."""

    __tablename__ = "emergency_grants"
    __table_args__ = (Index("ix_emergency_grants_subject_expires_at", "subject", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    # The grid subtree the grant opens (every row under it, every masked field in full).
    grid_code: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRecord(Base):
    """One entry of the access log. `hash` covers every other column and `prev_hash`, so editing,
    inserting or deleting a record breaks the chain from there on (hub.authz.audit.verify)."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_actor_seq", "actor", "seq"),
        Index("ix_audit_records_at", "at"),
    )

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # read | mutation | policy | auth_failure | emergency | sync | delivery
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(32))
    operation: Mapped[str | None] = mapped_column(String(128))
    # "Resident.idNumber", ...: the sensitive fields read, or the fields a mutation set.
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Global ids of the records touched ("Resident:42").
    records: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str | None] = mapped_column(Text)
    # ok | denied | error | failed
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The one row that says where the chain ends. Appending updates it first, which serialises
    appenders (a row lock on PostgreSQL, the write lock on SQLite) and lets `verify` notice a
    deleted tail."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))
