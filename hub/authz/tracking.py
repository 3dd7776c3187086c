"""What a unit of work wrote: the records and fields, for the mutation's audit record.

One listener on every ORM session notes, at each flush, the objects added, changed or deleted
and the attributes that changed; `touched()` reads them back before the commit, so the audit
record written in the same transaction names exactly what the transaction changed.

Only the unit of work is seen: a Core or bulk `update(...)`/`delete(...)` statement goes around
it and would leave the record naming nothing. A service that needs one (a conditional UPDATE
deciding a race: hub.notices.service._move, hub.feedback.service.respond) then loads the row it
wrote, marks the columns it set with `sqlalchemy.orm.attributes.flag_modified` and flushes, so
the listener below sees them. (The domain services sit below hub.authz and cannot call in here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

_KEY = "gridhub.touched"


@dataclass
class Touched:
    records: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _record_of(obj: Any) -> str | None:
    # Child rows (tags, external ids) are named by the resident they belong to.
    owner = getattr(obj, "resident_id", None) if not hasattr(obj, "id") else None
    if owner is not None:
        return f"Resident:{owner}"
    identity = getattr(obj, "id", None)
    if identity is None:
        identity = getattr(obj, "seq", None) or getattr(obj, "version", None)
    return f"{type(obj).__name__}:{identity}" if identity is not None else None


_OFF = "gridhub.untracked"
# Child rows are written as a field of their resident, named as the API names that field: an
# auditor reads "Resident.tags", whether a tag was added or the last one removed.
_CHILD_FIELDS = {"ResidentTag": "Resident.tags", "ResidentExternalId": "Resident.externalIds"}


def untrack(session: Any) -> None:
    """Stop noting what this session writes: for a unit of work that writes its own audit record
    from what it knows (a connector's page names its records itself), where noting every
    attribute of a thousand new rows at each flush would cost more than the writes."""
    getattr(session, "sync_session", session).info[_OFF] = True


def _note(session: Session, _context: Any) -> None:
    if session.info.get(_OFF):
        return
    touched: Touched = session.info.setdefault(_KEY, Touched())
    for obj in (*session.new, *session.dirty, *session.deleted):
        kind = type(obj).__name__
        if kind in ("AuditRecord", "AuditHead"):
            continue
        if (record := _record_of(obj)) is not None:
            touched.records.add(record)
        if kind in _CHILD_FIELDS:
            touched.fields.add(_CHILD_FIELDS[kind])
            continue
        state = inspect(obj)
        for attr in state.mapper.column_attrs:
            if state.attrs[attr.key].history.has_changes():
                touched.fields.add(f"{kind}.{_camel(attr.key)}")


def touched(session: Any) -> Touched:
    """What the session has flushed so far (an AsyncSession or its sync Session)."""
    sync = getattr(session, "sync_session", session)
    return sync.info.get(_KEY) or Touched()


def forget(session: Any) -> None:
    sync = getattr(session, "sync_session", session)
    sync.info.pop(_KEY, None)


event.listen(Session, "after_flush", _note)
