"""Tables the connector engine keeps its state in.

Everything a run needs to resume after a crash lives here and moves only in the transaction that
commits the batch it describes: the cursor, the counters, the links from external ids to
GridHub records and the quarantined records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class SyncRun(Base):
    """One run of one connector, with what it did. Counters grow batch by batch."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_connector_id", "connector", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    # cli | schedule | replay
    trigger: Mapped[str] = mapped_column(String(16), default="cli")
    # running | ok | partial (some records quarantined) | failed | refused | interrupted
    status: Mapped[str] = mapped_column(String(16), default="running")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    policy_version: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[int] = mapped_column(Integer, default=0)
    # HTTP retries and what the source did wrong (429s, 5xx, timeouts...), by kind.
    faults: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class SyncState(Base):
    """Per connector: where the next incremental run resumes, and its circuit breaker."""

    __tablename__ = "sync_state"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The kind's own resume point: {"updated_since": ...}, {"page_token": ...}, {"etag": ...},
    # {"fingerprint": ..., "line": ...}. None: start from the beginning.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cursor_run_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Circuit breaker: consecutive failed runs, and until when runs are refused without trying.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class SyncLink(Base):
    """An external record and the GridHub record it is: the match by (system, external id).

    `digest` is a hash of the mapped values last written: a record whose digest has not changed
    is `unchanged` and writes nothing. `source_version`/`source_time` are the source's own
    ordering, so that an update arriving after a newer one is recognised as stale."""

    __tablename__ = "sync_links"
    __table_args__ = (
        UniqueConstraint("system", "entity", "external_id"),
        Index("ix_sync_links_entity_record_id", "entity", "record_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    record_id: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[str | None] = mapped_column(String(64))
    source_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The GridHub fields this system supplies for the record. Two systems that both supply a
    # field disagree through these: the newer source time wins, and the other write is a
    # recorded conflict.
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SyncQuarantine(Base):
    """A record a run could not take, with its raw payload and why: nothing is dropped.

    `payload` is personal data (the source's own record); the API shows it only in full to a role
    that reads SyncQuarantineItem.payload, with a purpose, and audits the read."""

    __tablename__ = "sync_quarantine"
    __table_args__ = (Index("ix_sync_quarantine_connector_status_id", "connector", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(String(128))
    # Where in the source: "line 42", "page 3, item 7".
    position: Mapped[str] = mapped_column(String(128))
    # A stable code (MAPPING, INVALID, FORBIDDEN_FIELD, MALFORMED...) and the message.
    code: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[Any] = mapped_column(JSON)
    # open | replayed | discarded
    status: Mapped[str] = mapped_column(String(16), default="open")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_run_id: Mapped[int | None] = mapped_column(Integer)


class SyncConflict(Base):
    """A disagreement the engine decided: a stale update, or two systems writing one field.

    Values are not stored (they are personal data); the decision and the two times are."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (Index("ix_sync_conflicts_connector_id", "connector", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(Integer)
    entity: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[int | None] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(String(128))
    field: Mapped[str | None] = mapped_column(String(64))
    # stale (older than what was applied) | other_source (another system wrote it later)
    kind: Mapped[str] = mapped_column(String(16))
    # ours (GridHub kept its value) | theirs (the incoming value was written)
    kept: Mapped[str] = mapped_column(String(8))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One delivery of one event change to one subscriber: the delivery log.

    `delivery_id` is what the receiver deduplicates by; a retry sends the same id again."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription", "change_seq"),
        Index("ix_webhook_deliveries_subscription_status_id", "subscription", "status", "id"),
        # "Is an earlier change of this event still undelivered?", asked for every send.
        Index(
            "ix_webhook_deliveries_subscription_event_id_change_seq",
            "subscription",
            "event_id",
            "change_seq",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    subscription: Mapped[str] = mapped_column(String(64))
    change_seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(Integer)
    # pending | delivered | dead (gave up after the retry budget; replayable)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
