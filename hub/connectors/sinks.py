"""Where mapped records land: residents and events, matched, compared and written through the
domain services, under the connector's WritePermit.

One `PageWriter` per page: it prefetches what the page's records need (links, residents, tags,
grids) in a few queries, then applies the records one by one. A record is matched by
(system, external id), then by its natural key; it is unchanged when its digest matches the
link's; it is stale (a conflict, nothing written) when the source's version is older than the one
already applied; field by field, a value another system wrote later is kept (a conflict too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import validation
from hub.authz.writes import WritePermit
from hub.connectors.definition import TIMELINE_FIELDS, Definition
from hub.connectors.mapping import Mapped
from hub.db import utcnow
from hub.errors import BadUserInput, GridHubError
from hub.events import service as events
from hub.grids.models import Grid
from hub.models import Event, Resident, ResidentExternalId, ResidentTag
from hub.residents import idcard
from hub.residents import service as residents
from hub.residents.service import Built
from hub.sync import service as sync
from hub.sync.models import SyncLink

# The GridHub input field -> the Resident attribute it is compared with.
RESIDENT_ATTRIBUTES = {
    "name": "name",
    "idNumber": "id_number",
    "phone": "phone",
    "address": "address",
    "householdCode": "household_code",
    "healthNotes": "health_notes",
}
CHANGE_NAMES = {
    "name": "name",
    "idNumber": "id_number",
    "phone": "phone",
    "address": "address",
    "householdCode": "household_code",
    "gridCode": "grid_code",
    "tags": "tags",
    "healthNotes": "health_notes",
}


def _rejection(error: Exception) -> RecordRejected:
    if isinstance(error, GridHubError):
        return RecordRejected(str(error), code=error.code)
    # The database's own words may quote the values (personal data): name the kind only.
    return RecordRejected(
        f"the database refused this record ({type(error).__name__})", code="REFUSED"
    )


def _fresh(built: Built) -> Built:
    """The same resident in a new object: the old one may carry the id of a rolled-back flush."""
    old = built.resident
    columns = {c.key: getattr(old, c.key) for c in Resident.__table__.columns if c.key != "id"}
    return Built(resident=Resident(**columns), tags=built.tags)


class RecordRejected(Exception):
    """A record this run cannot take: quarantined with `code` and the message."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Outcome:
    kind: str  # created | updated | unchanged | conflict
    record: str | None = None  # "Resident:42"
    fields: tuple[str, ...] = ()  # policy objects written: "Resident.healthNotes"
    # Set by `finish` when a record staged for the end of the page could not be written after all.
    rejected: RecordRejected | None = None


def order_key(value: str) -> tuple[int, Any]:
    """How a source's version values compare: numbers as numbers, times as times, else text."""
    try:
        return (0, float(value))
    except ValueError:
        pass
    as_time = parse_time(value)
    if as_time is not None:
        return (1, as_time)
    return (2, value)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_stale(incoming: str | None, applied: str | None) -> bool:
    if incoming is None or applied is None:
        return False
    new, old = order_key(incoming), order_key(applied)
    return new[0] == old[0] and new[1] < old[1]


@dataclass
class PageWriter(ABC):
    session: AsyncSession
    definition: Definition
    permit: WritePermit
    run_id: int
    links: dict[str, SyncLink] = field(default_factory=dict)
    # Conflicts recorded on this page: stale records and fields another system wrote later.
    conflicts: int = 0

    @property
    def connector(self) -> str:
        return self.definition.name

    async def prefetch(self, records: list[Mapped]) -> None:
        external_ids = [m.external_id for m in records if m.external_id]
        self.links = await sync.links(
            self.session,
            system=self.definition.system,
            entity=self.definition.entity,
            external_ids=external_ids,
        )

    def _settled(self, mapped: Mapped) -> bool:
        """The record's link already holds exactly this (or a newer) version of it."""
        link = self.links.get(mapped.external_id) if mapped.external_id else None
        if link is None:
            return False
        return link.digest == mapped.digest or is_stale(mapped.version, link.source_version)

    def _settled_outcome(self, mapped: Mapped, link: SyncLink, type_name: str) -> Outcome | None:
        """What a linked record comes to without writing: stale (older than the version already
        applied: a recorded conflict), unchanged (the same digest), or None: there is work."""
        record = f"{type_name}:{link.record_id}"
        if is_stale(mapped.version, link.source_version):
            self._conflict(
                mapped,
                link.record_id,
                kind="stale",
                kept="ours",
                detail={"incoming": mapped.version, "applied": link.source_version},
            )
            return Outcome("conflict", record)
        if link.digest == mapped.digest:
            return Outcome("unchanged", record)
        return None

    def _conflict(self, mapped: Mapped, record_id: int | None, **kwargs: Any) -> None:
        self.conflicts += 1
        sync.conflict(
            self.session,
            connector=self.connector,
            run_id=self.run_id,
            entity=self.definition.entity,
            record_id=record_id,
            external_id=mapped.external_id,
            **kwargs,
        )

    def _new_link(self, mapped: Mapped, record_id: int) -> SyncLink:
        """A link for a record that has none, added to the session (not yet to `links`)."""
        assert mapped.external_id is not None
        link = SyncLink(
            system=self.definition.system,
            entity=self.definition.entity,
            external_id=mapped.external_id,
            record_id=record_id,
        )
        self.session.add(link)
        self._fill_link(link, mapped, record_id)
        return link

    def _link(self, mapped: Mapped, record_id: int) -> None:
        if mapped.external_id is None:
            return
        link = self.links.get(mapped.external_id)
        if link is None:
            self.links[mapped.external_id] = self._new_link(mapped, record_id)
            return
        self._fill_link(link, mapped, record_id)

    def _fill_link(self, link: SyncLink, mapped: Mapped, record_id: int) -> None:
        link.record_id = record_id
        link.fields = sorted(mapped.values)
        link.digest = mapped.digest
        link.source_version = mapped.version
        link.source_time = parse_time(mapped.version)

    @abstractmethod
    async def apply(self, mapped: Mapped) -> Outcome:
        """Match, compare and write (or stage) one record."""

    async def finish(self) -> None:  # noqa: B027 - a hook: most writers stage nothing
        """Write what `apply` staged for the end of the page."""

    def _require_call(self, operation: str) -> None:
        if not self.permit.may_call(operation):
            raise RecordRejected(
                f"{self.permit.subject} may not call {operation} "
                f"(policy version {self.permit.version})",
                code="FORBIDDEN",
            )

    def _require_fields(self, mapped: Mapped) -> None:
        # The engine checks the mapping against the policy at each page; a replayed record may
        # name fields the mapping no longer has.
        timeline = TIMELINE_FIELDS[self.definition.entity]
        refused = self.permit.refused(
            f"{self.definition.input_type}.{name}" for name in mapped.values if name not in timeline
        )
        if refused:
            raise RecordRejected(
                f"{self.permit.subject} may not set {', '.join(refused)}", code="FORBIDDEN_FIELD"
            )


class ResidentWriter(PageWriter):
    residents: dict[int, Resident]
    by_id_number: dict[str, int]
    tags: dict[int, list[str]]
    grid_codes: dict[int, str]
    # Other systems' links to the page's residents: who else supplies which fields.
    others: dict[int, list[SyncLink]]
    known_external: dict[str, int]

    async def prefetch(self, records: list[Mapped]) -> None:
        await super().prefetch(records)
        self.staged: list[tuple[Mapped, Built, Outcome]] = []
        self.staged_numbers: set[str] = set()
        self.staged_ids: dict[str, Mapped] = {}
        self.grid_ids: dict[str, int] = {}
        access = self.permit.access
        # Records whose link says nothing changed need nothing more (a re-sync reads one
        # query per page).
        records = [m for m in records if not self._settled(m)]
        external_ids = [m.external_id for m in records if m.external_id]
        ids = {self.links[e].record_id for e in external_ids if e in self.links}
        if external_ids:
            # Links made outside the engine (the demo, an earlier import): the same match.
            known = select(ResidentExternalId.external_id, ResidentExternalId.resident_id).where(
                ResidentExternalId.system == self.definition.system,
                ResidentExternalId.external_id.in_(external_ids),
            )
            self.known_external = {e: r for e, r in (await self.session.execute(known)).all()}
            ids.update(self.known_external.values())
        else:
            self.known_external = {}
        numbers = set()
        for mapped in records:
            raw = mapped.keys.get("idNumber")
            if isinstance(raw, str) and raw.strip():
                numbers.add(idcard.normalise(raw))
        self.by_id_number = {}
        if numbers:
            pairs = cast(
                "Select[Any]",
                # Registered records only: a pending one (a second record of a registered
                # number) waits for a person to reconcile it and is never a match.
                select(Resident.id, Resident.id_number).where(
                    Resident.id_number.in_(numbers), Resident.duplicate_of_id.is_(None)
                ),
            )
            # Matched records are written: the write scope narrows the match as the read
            # scope does.
            statement = access.writable(access.rows(pairs, Resident), Resident)
            self.by_id_number = {n: i for i, n in (await self.session.execute(statement)).all()}
            ids.update(self.by_id_number.values())
        self.residents = {}
        if ids:
            visible = access.writable(
                access.rows(select(Resident).where(Resident.id.in_(ids)), Resident), Resident
            )
            self.residents = {r.id: r for r in await self.session.scalars(visible)}
        self.tags = {}
        if self.residents:
            tag_rows = select(ResidentTag.resident_id, ResidentTag.tag).where(
                ResidentTag.resident_id.in_(self.residents)
            )
            for resident_id, tag in (await self.session.execute(tag_rows)).all():
                self.tags.setdefault(resident_id, []).append(tag)
        grid_ids = {r.grid_id for r in self.residents.values()}
        self.grid_codes = {}
        if grid_ids:
            grid_rows = select(Grid.id, Grid.code).where(Grid.id.in_(grid_ids))
            self.grid_codes = dict((await self.session.execute(grid_rows)).all())
        self.others = await sync.links_of_records(
            self.session,
            entity="resident",
            record_ids=list(self.residents),
            other_than=self.definition.system,
        )
        # The external ids this system already has for the residents the page matched by ID
        # number: a second, different one for the same person is not silently merged.
        self.own_ids: dict[int, str] = {}
        if self.by_id_number:
            own = select(ResidentExternalId.resident_id, ResidentExternalId.external_id).where(
                ResidentExternalId.system == self.definition.system,
                ResidentExternalId.resident_id.in_(set(self.by_id_number.values())),
            )
            self.own_ids = dict((await self.session.execute(own)).all())

    def _staged_twin(self, mapped: Mapped) -> bool:
        """Whether this record's external id is already staged on this page (pages that
        overlap): the same digest is the same record, a different one waits for a replay."""
        staged = self.staged_ids.get(mapped.external_id) if mapped.external_id else None
        if staged is not None:
            if staged.digest == mapped.digest:
                return True
            raise RecordRejected(
                "this record appears twice on this page with different values; "
                "replay after this run",
                code="DUPLICATE_IN_BATCH",
            )
        return False

    def _match(self, mapped: Mapped) -> int | None:
        if mapped.external_id is not None:
            link = self.links.get(mapped.external_id)
            if link is not None:
                return link.record_id
            known = self.known_external.get(mapped.external_id)
            if known is not None:
                return known
        raw = mapped.keys.get("idNumber")
        if not isinstance(raw, str) or not raw.strip():
            return None
        resident_id = self.by_id_number.get(idcard.normalise(raw))
        theirs = self.own_ids.get(resident_id) if resident_id is not None else None
        if theirs is not None and mapped.external_id is not None and theirs != mapped.external_id:
            # Two records of one system for one ID number: a data error at the source (or a
            # changed person number) that a person must look at, not a merge.
            raise RecordRejected(
                f"this ID number belongs to a resident this system knows as another record "
                f"({theirs})",
                code="AMBIGUOUS_MATCH",
            )
        return resident_id

    def _remember_external_id(self, mapped: Mapped, resident_id: int) -> None:
        """A resident first matched by ID number gets this system's id, as a created one does."""
        external_id = mapped.external_id
        if external_id is None or external_id in self.links or external_id in self.known_external:
            return
        self.session.add(
            ResidentExternalId(
                resident_id=resident_id, system=self.definition.system, external_id=external_id
            )
        )
        self.known_external[external_id] = resident_id
        self.own_ids[resident_id] = external_id

    def _current(self, resident: Resident, name: str) -> Any:
        if name == "tags":
            return sorted(self.tags.get(resident.id, []))
        if name == "gridCode":
            return self.grid_codes.get(resident.grid_id)
        return getattr(resident, RESIDENT_ATTRIBUTES[name])

    @staticmethod
    def _normalised(name: str, value: Any) -> Any:
        if name == "tags":
            return residents.clean_tags(value)
        if name == "idNumber":
            return idcard.normalise(value)
        if name == "phone":
            return validation.phone(value)
        if isinstance(value, str):
            return value.strip()
        return value

    async def apply(self, mapped: Mapped) -> Outcome:
        self._require_fields(mapped)
        if self._staged_twin(mapped):
            return Outcome("unchanged")
        resident_id = self._match(mapped)
        link = self.links.get(mapped.external_id) if mapped.external_id else None
        if link is not None and (settled := self._settled_outcome(mapped, link, "Resident")):
            return settled
        try:
            if resident_id is None:
                return await self._create(mapped)
            return await self._update(mapped, resident_id)
        except GridHubError as error:
            raise RecordRejected(str(error), code=error.code) from None

    async def _create(self, mapped: Mapped) -> Outcome:
        if not self.permit.may_call("Mutation.createResident"):
            # The usual case for a system that adds to residents another system registers:
            # replayable once the registry has brought the resident in.
            raise RecordRejected(
                f"no resident matches this record, and {self.permit.subject} may not create one",
                code="NO_MATCH",
            )
        values = {CHANGE_NAMES[k]: v for k, v in mapped.values.items()}
        if self.permit.narrowed("Resident"):
            # Decided before anything is written: the record's grid must be in the scope.
            await self._require_grid_in_scope(values.get("grid_code"))
        built = await residents.build(
            self.session, changes=residents.ResidentChanges(**values), grid_ids=self.grid_ids
        )
        # New residents are added together when the page ends (`finish`). A second record for
        # the same person on this page waits for the next run or a replay, which matches it.
        if built.resident.id_number in self.staged_numbers:
            raise RecordRejected(
                "the same ID number appears earlier on this page; replay after this run",
                code="DUPLICATE_IN_BATCH",
            )
        self.staged_numbers.add(built.resident.id_number)
        if mapped.external_id is not None:
            self.staged_ids[mapped.external_id] = mapped
        outcome = Outcome("created", None, self._objects(mapped.values))
        self.staged.append((mapped, built, outcome))
        return outcome

    async def finish(self) -> None:
        if not self.staged:
            return
        try:
            async with self.session.begin_nested():
                links = await self._add(self.staged)
        except (DBAPIError, GridHubError):
            # One of them cannot be written after all (its ID number was taken meanwhile, by
            # a correction on this page or through the API): add them one by one, in fresh
            # objects, so that only that one is quarantined.
            links = []
            for mapped, built, outcome in self.staged:
                try:
                    async with self.session.begin_nested():
                        links += await self._add([(mapped, _fresh(built), outcome)])
                except (DBAPIError, GridHubError) as error:
                    outcome.record = None
                    outcome.rejected = _rejection(error)
        for link in links:
            self.links[link.external_id] = link
        self.staged.clear()

    async def _add(self, staged: list[tuple[Mapped, Built, Outcome]]) -> list[SyncLink]:
        await residents.add_built(self.session, [built for _, built, _ in staged])
        links = []
        for mapped, built, outcome in staged:
            resident = built.resident
            if mapped.external_id is not None:
                self.session.add(
                    ResidentExternalId(
                        resident_id=resident.id,
                        system=self.definition.system,
                        external_id=mapped.external_id,
                    )
                )
                links.append(self._new_link(mapped, resident.id))
            outcome.record = f"Resident:{resident.id}"
        await self.session.flush()
        return links

    async def _require_grid_in_scope(self, grid_code: str | None) -> None:
        if grid_code is None:
            return
        grid = await self.session.scalar(select(Grid).where(Grid.code == grid_code))
        if grid is None:
            return  # `create` names the unknown grid code
        probe = self.permit.access.rows(
            select(Resident.id).where(Resident.grid_id == grid.id).limit(1), Resident
        )
        scoped = self.permit.access.rows(select(Grid.id).where(Grid.id == grid.id), Grid)
        if await self.session.scalar(scoped) is None and await self.session.scalar(probe) is None:
            raise RecordRejected(
                "the record's grid is outside the connector's scope", code="OUT_OF_SCOPE"
            )

    def _objects(self, names: Any) -> tuple[str, ...]:
        return tuple(sorted(f"Resident.{name}" for name in names))

    def _other_supplier(self, resident_id: int, name: str) -> SyncLink | None:
        """The newest link of another system that supplies this field of this resident."""
        suppliers = [link for link in self.others.get(resident_id, []) if name in link.fields]
        if not suppliers:
            return None
        oldest = datetime.min.replace(tzinfo=UTC)
        return max(suppliers, key=lambda link: link.source_time or oldest)

    async def _update(self, mapped: Mapped, resident_id: int) -> Outcome:
        resident = self.residents.get(resident_id)
        if resident is None:
            raise RecordRejected(
                "the matching resident is outside the connector's scope", code="OUT_OF_SCOPE"
            )
        incoming_time = parse_time(mapped.version)
        changed: dict[str, Any] = {}
        for name, value in mapped.values.items():
            new = self._normalised(name, value)
            if new == self._current(resident, name):
                continue
            other = self._other_supplier(resident_id, name)
            if other is not None:
                theirs = other.source_time
                older = incoming_time is not None and theirs is not None and incoming_time < theirs
                self._conflict(
                    mapped,
                    resident_id,
                    kind="other_source",
                    kept="ours" if older else "theirs",
                    field=name,
                    detail={"other_system": other.system},
                )
                if older:
                    continue
            changed[name] = value
        if changed:
            self._require_call("Mutation.updateResident")
            values = {CHANGE_NAMES[k]: v for k, v in changed.items()}
            async with self.session.begin_nested():
                await residents.update(
                    self.session,
                    resident_id=resident_id,
                    changes=residents.ResidentChanges(**values),
                )
            if "tags" in changed:
                self.tags[resident_id] = residents.clean_tags(changed["tags"])
        self._remember_external_id(mapped, resident_id)
        self._link(mapped, resident_id)
        if not changed:
            return Outcome("unchanged", f"Resident:{resident_id}")
        return Outcome("updated", f"Resident:{resident_id}", self._objects(changed))


class EventWriter(PageWriter):
    """Events from a hotline or another intake system.

    A new external request becomes a reported event. After intake GridHub's dispatch workflow owns
    the event: a later change at the source is added to the event's timeline as a note naming what
    changed, never a status forced from outside."""

    async def apply(self, mapped: Mapped) -> Outcome:
        self._require_fields(mapped)
        if mapped.external_id is None:
            raise RecordRejected("an event needs an external id", code="MISSING_FIELD")
        link = self.links.get(mapped.external_id)
        try:
            if link is None:
                return await self._create(mapped)
            if settled := self._settled_outcome(mapped, link, "Event"):
                return settled
            return await self._note(mapped, link)
        except GridHubError as error:
            raise RecordRejected(str(error), code=error.code) from None

    async def _create(self, mapped: Mapped) -> Outcome:
        self._require_call("Mutation.reportEvent")
        # The engine names the reporting system itself; the policy still has to let it.
        if not self.permit.may_set("ReportEventInput.reporterSystem"):
            raise RecordRejected(
                f"{self.permit.subject} may not set ReportEventInput.reporterSystem",
                code="FORBIDDEN_FIELD",
            )
        values = mapped.values
        for required in ("category", "title", "gridCode"):
            if not values.get(required):
                raise RecordRejected(f"{required} is required", code="MISSING_FIELD")
        deadline = parse_time(values.get("deadline"))
        report = events.EventReport(
            category=values["category"],
            title=values["title"],
            grid_code=values["gridCode"],
            severity=values.get("severity") or "medium",
            description=values.get("description") or "",
            deadline=deadline if deadline and deadline > utcnow() else None,
            reporter_system=self.definition.system,
        )
        async with self.session.begin_nested():
            event = await events.report(self.session, report=report, actor=self.permit.subject)
            visible = self.permit.writable(select(Event.id).where(Event.id == event.id), Event)
            if await self.session.scalar(visible) is None:
                raise BadUserInput("the record's grid is outside the connector's scope")
        self._link(mapped, event.id)
        written = set(values) - {"gridCode", *TIMELINE_FIELDS["event"]}
        fields = tuple(sorted(f"Event.{name}" for name in written))
        return Outcome("created", f"Event:{event.id}", fields)

    async def _note(self, mapped: Mapped, link: SyncLink) -> Outcome:
        self._require_call("Mutation.addEventNote")
        visible = self.permit.writable(select(Event.id).where(Event.id == link.record_id), Event)
        if await self.session.scalar(visible) is None:
            raise RecordRejected(
                "the linked event is outside the connector's scope", code="OUT_OF_SCOPE"
            )
        parts = [f"{name}: {value}" for name, value in sorted(mapped.values.items())]
        note = f"{self.definition.system} update ({mapped.version or 'unversioned'}): " + "; ".join(
            parts
        )
        async with self.session.begin_nested():
            await events.add_note(
                self.session, event_id=link.record_id, actor=self.permit.subject, note=note[:2000]
            )
        self._link(mapped, link.record_id)
        return Outcome("updated", f"Event:{link.record_id}", ("EventTransition.note",))


WRITERS: dict[str, type[PageWriter]] = {"resident": ResidentWriter, "event": EventWriter}
