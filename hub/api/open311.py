"""Open311 GeoReport v2 over GridHub's events, mounted at /open311/v2, so that existing Open311
clients (the 12345 hotline among them) work against the hub.

| resource | GridHub |
|---|---|
| service | an event category: `service_code` is the category value |
| service request | an event: `service_request_id` (and the token) is the event code |
| status | `open` for the open statuses of hub.events.states, `closed` for the others |
| agency_responsible | the name of the department the event is dispatched to |
| address / address_id | the name / code of the event's grid |

Reads are public: they run as the `public` role, exactly as a GraphQL request without
credentials, every SELECT passes through `Access.rows`, and a request shows only the fields the
role reads (a hidden field is left out, a masked one is masked). A filter on a field the role
cannot read in full is refused, as the GraphQL schema refuses it: a date range finds a date just
as reading it does.

Writes (POST requests) need `api_key`, a GridHub API key (hub.authz.apikeys) whose role may call
`Mutation.reportEvent` and set every `ReportEventInput` field the request uses. They take the
GraphQL mutation's path: the grid scope is checked first, the event must stay in the key's
scope, and the audit record is written in the same transaction. A bad key is refused (403) and
is an `auth_failure` record, like a bad credential on /graphql.

GridHub extensions: POST takes the grid as `attribute[grid_code]` (the service definitions list
it), `grid_code` or `address_id`; GET requests.json takes `updated_after` (inclusive, on
updated_datetime) and `page`/`page_size` (default 50, at most 200).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from hub.api.audit import FailureBudget
from hub.api.open311_xml import FORMATS, JSON_MEDIA_TYPE, XML_MEDIA_TYPE, error_response, respond
from hub.api.registry import SchemaRegistry
from hub.api.scope import require_created_in_scope, require_grid_in_scope
from hub.authz import ANONYMOUS, PUBLIC_ROLE, Access, Viewer, audit, masking, tracking
from hub.authz.identity import (
    API_KEY_SCHEME_PREFIX,
    AuthenticationFailed,
    TokenVerifier,
    authenticate,
)
from hub.authz.profile import Level
from hub.db import Database
from hub.departments.models import Department
from hub.errors import GridHubError
from hub.events import service as events
from hub.events.changes import EventChange
from hub.events.models import Event
from hub.events.states import OPEN_STATUSES, Action
from hub.grids.models import Grid

log = logging.getLogger(__name__)

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# When the service list below last changed: clients refresh cached services when it moves.
CHANGESET = "2025-01-01T00:00:00+00:00"
OPERATION = "open311.createRequest"
REPORT_EVENT = "Mutation.reportEvent"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Pages are numbered, so a page is an OFFSET: past this many rows a client narrows the listing
# (start_date, updated_after) instead of making the database skip ever more rows.
MAX_OFFSET = 100_000
MAX_LISTED_IDS = MAX_PAGE_SIZE
MAX_FORM_FIELDS = 64
# Every route takes every method, so that a wrong one gets the spec's error list, not plain text.
ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_OPEN = frozenset(status.value for status in OPEN_STATUSES)


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # zh-CN, what a caller hears on the hotline
    name_en: str
    group: str
    keywords: str


# One service per event category (hub.events.service.CATEGORIES; a test holds them equal).
SERVICES: dict[str, Service] = {
    "public_safety": Service("社会治安", "Public safety", "平安建设", "治安, 安全, 可疑人员"),
    "fire_hazard": Service("消防隐患", "Fire hazard", "平安建设", "消防, 火灾, 消防通道"),
    "sanitation": Service("环境卫生", "Sanitation", "城市环境", "垃圾, 卫生, 清扫"),
    "infrastructure": Service("基础设施", "Infrastructure", "城市管理", "道路, 路灯, 井盖"),
    "environment": Service("生态环境", "Environment", "城市环境", "污染, 噪音, 绿化"),
    "health": Service("医疗卫生", "Health", "民生服务", "医疗, 卫生, 防疫"),
    "elderly_care": Service("养老服务", "Elderly care", "民生服务", "老人, 养老, 独居"),
    "dispute": Service("矛盾纠纷", "Dispute", "矛盾调解", "纠纷, 邻里, 调解"),
    "housing": Service("房屋住房", "Housing", "城市管理", "房屋, 漏水, 物业"),
    "other": Service("其他", "Other", "其他", "其他"),
}

# The one attribute a request needs beyond the spec's own arguments: GridHub files every event
# under a grid, and resolves no addresses itself.
GRID_ATTRIBUTE = {
    "variable": True,
    "code": "grid_code",
    "datatype": "string",
    "required": True,
    "datatype_description": "GridHub 网格编码 grid code, e.g. G0101",
    "order": 1,
    "description": "网格编码 Grid code",
    "values": [],
}

# What each GridHub failure is in the spec's few statuses.
_STATUS_OF_CODE = {"BAD_USER_INPUT": 400, "NOT_FOUND": 404, "CONFLICT": 400}


class Open311Error(Exception):
    """A request the spec's error list answers: 400 bad or missing argument, 403 bad api_key,
    404 nothing there."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def split_format(name: str) -> tuple[str, str]:
    """`EV123.json` -> (`EV123`, `json`); an unknown or missing format is 404."""
    stem, dot, fmt = name.rpartition(".")
    if not dot or not stem or fmt not in FORMATS:
        raise Open311Error(404, "append .json or .xml to the resource")
    return stem, fmt


# --- reading -----------------------------------------------------------------------------------


def public_access(registry: SchemaRegistry) -> Access:
    """The public viewer's Access under the live policy, as /graphql builds it for a request
    without credentials. No emergency grant applies: the public opens none."""
    return Access(ANONYMOUS, registry.profile_for(PUBLIC_ROLE))


def shows(access: Access, field: str) -> bool:
    """The field may be shown without a stated purpose (Open311 has no way to state one)."""
    return access.level(field) is not Level.HIDDEN and field not in access.profile.sensitive


def _require_full(access: Access, field: str, argument: str) -> None:
    if access.level(field) is not Level.FULL or field in access.profile.sensitive:
        raise Open311Error(400, f"{argument} is not available on this server")


def _shown_text(access: Access, field: str, value: str | None) -> str | None:
    """A text field as the role reads it: in full, or masked with its mask kind."""
    if value is None or access.level(field) is Level.FULL:
        return value
    kind = access.profile.masks.get(field)
    # Masked without a mask kind cannot be shown safely: say nothing.
    return masking.KINDS[kind](value) if kind in masking.KINDS else None


def stamp(moment: datetime | None) -> str | None:
    """ISO 8601 with an offset, as the spec wants (stored times are UTC)."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def service_request(
    event: Event,
    access: Access,
    *,
    grids: dict[int, Grid],
    departments: dict[int, Department],
) -> dict[str, Any]:
    """One event as a GeoReport service request. A field the role does not read is left out
    (not null): null would claim the event has no such value. The reporter never appears:
    neither his name, phone or e-mail nor his member or resident id."""
    document: dict[str, Any] = {}
    if shows(access, "Event.code"):
        document["service_request_id"] = _shown_text(access, "Event.code", event.code)
    if access.level("Event.status") is Level.FULL:
        document["status"] = "open" if event.status in _OPEN else "closed"
    # GridHub's notes live in the timeline, which is not part of a service request.
    document["status_notes"] = None
    if access.level("Event.category") is Level.FULL:
        service = SERVICES.get(event.category)
        document["service_name"] = service.name if service else event.category
        document["service_code"] = event.category
    if shows(access, "Event.description"):
        document["description"] = _shown_text(access, "Event.description", event.description)
    if shows(access, "Event.department") and shows(access, "Department.name"):
        department = departments.get(event.department_id or 0)
        name = department.name if department else None
        document["agency_responsible"] = _shown_text(access, "Department.name", name)
    document["service_notice"] = None
    if access.level("Event.reportedAt") is Level.FULL:
        document["requested_datetime"] = stamp(event.reported_at)
    if access.level("Event.updatedAt") is Level.FULL:
        document["updated_datetime"] = stamp(event.updated_at)
    if access.level("Event.deadline") is Level.FULL:
        document["expected_datetime"] = stamp(event.deadline)
    grid = grids.get(event.grid_id) if shows(access, "Event.grid") else None
    if shows(access, "Event.grid") and shows(access, "Grid.name"):
        document["address"] = _shown_text(access, "Grid.name", grid.name if grid else None)
    if shows(access, "Event.grid") and shows(access, "Grid.code"):
        document["address_id"] = _shown_text(access, "Grid.code", grid.code if grid else None)
    document["zipcode"] = None
    if access.level("Event.location") is Level.FULL:
        document["lat"] = event.lat
        document["long"] = event.lng
    document["media_url"] = None
    return document


async def _related(
    session: Any, access: Access, rows: Sequence[Event]
) -> tuple[dict[int, Grid], dict[int, Department]]:
    """The grids and departments of a page of events, each one statement through Access.rows."""
    grids: dict[int, Grid] = {}
    departments: dict[int, Department] = {}
    grid_ids = {event.grid_id for event in rows}
    if grid_ids and shows(access, "Event.grid"):
        in_grids = access.rows(select(Grid).where(Grid.id.in_(sorted(grid_ids))), Grid)
        grids = {grid.id: grid for grid in await session.scalars(in_grids)}
    department_ids = {event.department_id for event in rows if event.department_id is not None}
    if department_ids and shows(access, "Event.department"):
        statement = access.rows(
            select(Department).where(Department.id.in_(sorted(department_ids))), Department
        )
        departments = {department.id: department for department in await session.scalars(statement)}
    return grids, departments


def _values(request: Request, name: str) -> list[str]:
    """A list argument: comma-separated, or repeated (some clients do that)."""
    return [
        part.strip()
        for raw in request.query_params.getlist(name)
        for part in raw.split(",")
        if part.strip()
    ]


def parse_instant(raw: str | None, argument: str) -> datetime | None:
    """An ISO 8601 date and time with an offset (`Z` or `+08:00`), in UTC."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    # An unencoded `+` in a query string arrives as a space: `...T08:00:00 08:00`.
    if len(text) > 6 and text[-6] == " " and text[-3] == ":":
        text = text[:-6] + "+" + text[-5:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Open311Error(
            400,
            f"{argument} must be an ISO 8601 date and time with an offset, e.g. "
            "2024-05-01T08:00:00+08:00",
        )
    return moment.astimezone(UTC)


def _whole_number(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits only ("²" is a digit to str.isdigit), and few enough to be a number.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise Open311Error(400, f"{name} must be a whole number of at least 1")
    return int(raw)


def list_statement(request: Request, access: Access) -> Select[Any]:
    """The SELECT of GET requests.json, before the row scope and paging."""
    statement = select(Event)
    codes = _values(request, "service_request_id")
    if codes:
        # The spec: with service_request_id, every other filter is ignored.
        _require_full(access, "Event.code", "service_request_id")
        if len(codes) > MAX_LISTED_IDS:
            raise Open311Error(400, f"service_request_id takes at most {MAX_LISTED_IDS} ids")
        return statement.where(Event.code.in_(codes))
    service_codes = _values(request, "service_code")
    if service_codes:
        _require_full(access, "Event.category", "service_code")
        unknown = sorted(set(service_codes) - SERVICES.keys())
        if unknown:
            raise Open311Error(400, f"unknown service_code: {', '.join(unknown[:5])}")
        statement = statement.where(Event.category.in_(service_codes))
    statuses = set(_values(request, "status"))
    if statuses:
        _require_full(access, "Event.status", "status")
        if not statuses <= {"open", "closed"}:
            raise Open311Error(400, "status takes open, closed or both")
        if statuses == {"open"}:
            statement = statement.where(Event.status.in_(sorted(_OPEN)))
        elif statuses == {"closed"}:
            statement = statement.where(Event.status.not_in(sorted(_OPEN)))
    start = parse_instant(request.query_params.get("start_date"), "start_date")
    end = parse_instant(request.query_params.get("end_date"), "end_date")
    if start is not None or end is not None:
        _require_full(access, "Event.reportedAt", "start_date and end_date")
    if start is not None:
        statement = statement.where(Event.reported_at >= start)
    if end is not None:
        statement = statement.where(Event.reported_at <= end)
    # Inclusive, so that a client whose cursor is the last updated_datetime it saw (shown to the
    # second) misses nothing updated within that same second; it sees that event again.
    updated = parse_instant(request.query_params.get("updated_after"), "updated_after")
    if updated is not None:
        _require_full(access, "Event.updatedAt", "updated_after")
        statement = statement.where(Event.updated_at >= updated)
    return statement


def _by_code(access: Access, request: Request) -> Select[Any]:
    """The event named in the URL, if the public sees it: out of scope is 404 exactly like
    missing. Looking an event up by its code reveals the code, so the role must read it."""
    if access.level("Event.code") is not Level.FULL or "Event.code" in access.profile.sensitive:
        raise Open311Error(404, "service request not found")
    statement = select(Event).where(Event.code == request.path_params["id"])
    return access.rows(statement, Event).limit(1)


# --- the resources -----------------------------------------------------------------------------

Handler = Callable[[Request, str], Awaitable[Response]]


class Open311:
    """The endpoints. One per app: it keeps its own budget of audited login failures."""

    def __init__(self) -> None:
        self.failures = FailureBudget()
        self._verifier: TokenVerifier | None = None

    def router(self) -> Router:
        return Router(
            routes=[
                Route("/discovery.{fmt}", self._suffixed(self.discovery), methods=ANY),
                Route("/services.{fmt}", self._suffixed(self.services), methods=ANY),
                Route("/services/{name}", self._named(self.service_definition), methods=ANY),
                Route("/requests.{fmt}", self._suffixed(self.requests), methods=ANY),
                Route("/requests/{name}", self._named(self.one_request), methods=ANY),
                Route("/tokens/{name}", self._named(self.token), methods=ANY),
                Route("/{path:path}", self._unknown, methods=ANY),
            ]
        )

    # --- plumbing ----------------------------------------------------------------------------

    def _suffixed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            fmt = request.path_params["fmt"]
            if fmt not in FORMATS:
                return error_response("json", 404, "append .json or .xml to the resource")
            return await self._guarded(handler, request, fmt)

        return endpoint

    def _named(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                stem, fmt = split_format(request.path_params["name"])
            except Open311Error as exc:
                return error_response("json", exc.status, exc.description)
            request.path_params["id"] = stem
            return await self._guarded(handler, request, fmt)

        return endpoint

    async def _guarded(self, handler: Handler, request: Request, fmt: str) -> Response:
        if request.method not in ("GET", "HEAD", "POST") or (
            request.method == "POST" and handler != self.requests
        ):
            return error_response(fmt, 405, f"{request.method} is not allowed here")
        try:
            return await handler(request, fmt)
        except Open311Error as exc:
            return error_response(fmt, exc.status, exc.description)

    async def _unknown(self, request: Request) -> Response:
        fmt = request.url.path.rpartition(".")[2]
        return error_response(fmt, 404, "no such Open311 resource")

    @staticmethod
    def _state(request: Request) -> tuple[Database, SchemaRegistry]:
        state = request.app.state
        return state.db, state.registry

    # --- services ----------------------------------------------------------------------------

    async def discovery(self, request: Request, fmt: str) -> Response:
        base = str(request.url.replace(query="")).rpartition("/")[0]
        document = {
            "changeset": CHANGESET,
            "contact": "GridHub: ask the hub's operators",
            "key_service": "API keys for posting are issued by the hub's operators "
            "(gridhub apikey create)",
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": base,
                    "changeset": CHANGESET,
                    "type": "production",
                    "formats": [XML_MEDIA_TYPE, JSON_MEDIA_TYPE],
                }
            ],
        }
        return respond(fmt, document, root="discovery")

    async def services(self, request: Request, fmt: str) -> Response:
        listing = [
            {
                "service_code": code,
                "service_name": service.name,
                "description": f"{service.name} ({service.name_en})",
                # True: the definition lists the grid_code attribute a request must carry.
                "metadata": True,
                "type": "realtime",
                "keywords": service.keywords,
                "group": service.group,
            }
            for code, service in SERVICES.items()
        ]
        return respond(fmt, listing, root="services", item="service")

    async def service_definition(self, request: Request, fmt: str) -> Response:
        code = request.path_params["id"]
        if code not in SERVICES:
            raise Open311Error(404, f"no service {code!r}")
        document = {"service_code": code, "attributes": [GRID_ATTRIBUTE]}
        return respond(fmt, document, root="service_definition")

    # --- reading requests --------------------------------------------------------------------

    async def requests(self, request: Request, fmt: str) -> Response:
        if request.method == "POST":
            return await self.create(request, fmt)
        db, registry = self._state(request)
        access = public_access(registry)
        statement = list_statement(request, access)
        page = _whole_number(request, "page", 1)
        size = _whole_number(request, "page_size", DEFAULT_PAGE_SIZE)
        if size > MAX_PAGE_SIZE:
            raise Open311Error(400, f"page_size is at most {MAX_PAGE_SIZE}")
        offset = (page - 1) * size
        if offset > MAX_OFFSET:
            raise Open311Error(400, "page is too far: narrow the listing with start_date")
        # By id, newest first: an event reported while a client pages through shifts the later
        # pages by one (it sees one request twice) and never hides one from it.
        statement = access.rows(statement, Event).order_by(Event.id.desc())
        return await self._answer(db, access, statement.offset(offset).limit(size), fmt)

    async def one_request(self, request: Request, fmt: str) -> Response:
        db, registry = self._state(request)
        access = public_access(registry)
        rows, grids, departments = await self._fetch(db, access, _by_code(access, request))
        if not rows:
            raise Open311Error(404, "service request not found")
        (event,) = rows
        document = [service_request(event, access, grids=grids, departments=departments)]
        return respond(fmt, document, root="service_requests", item="request")

    async def token(self, request: Request, fmt: str) -> Response:
        # GridHub creates requests at once, so a token is the service request id itself.
        db, registry = self._state(request)
        access = public_access(registry)
        async with db.reader() as session:
            code = await session.scalar(_by_code(access, request).with_only_columns(Event.code))
        if code is None:
            raise Open311Error(404, "service request not found")
        listing = [{"service_request_id": code, "token": code}]
        return respond(fmt, listing, root="service_requests", item="request")

    @staticmethod
    async def _fetch(
        db: Database, access: Access, statement: Select[Any]
    ) -> tuple[list[Event], dict[int, Grid], dict[int, Department]]:
        async with db.reader() as session:
            rows = list(await session.scalars(statement))
            grids, departments = await _related(session, access, rows)
        return rows, grids, departments

    async def _answer(
        self, db: Database, access: Access, statement: Select[Any], fmt: str
    ) -> Response:
        rows, grids, departments = await self._fetch(db, access, statement)
        listing = [
            service_request(event, access, grids=grids, departments=departments) for event in rows
        ]
        return respond(fmt, listing, root="service_requests", item="request")

    # --- creating requests -------------------------------------------------------------------

    async def create(self, request: Request, fmt: str) -> Response:
        db, registry = self._state(request)
        try:
            async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
                given = _form_text(form)
        except HTTPException as exc:
            raise Open311Error(400, f"the request body is not a form: {exc.detail}") from exc
        # first_name, last_name, phone, email, device_id and account_id are accepted and never
        # read: GridHub stores no contact details of a caller from an outside system, and never
        # echoes them. media_url is ignored too (an uploaded file is never read).
        viewer = await self._identify(request, db, registry, given.get("api_key"))
        access = registry.access_for(viewer)
        try:
            report = _report(access, viewer, given)
        except Open311Error as exc:
            outcome = "denied" if exc.status == 403 else "error"
            code = "FORBIDDEN" if exc.status == 403 else "BAD_USER_INPUT"
            await audit.append_now(db, _entry(access, outcome=outcome, codes=[code]))
            raise
        try:
            async with db.transaction() as session:
                await require_grid_in_scope(
                    session, access, Event, report.grid_code, field="grid_code"
                )
                event = await events.report(session, report=report, actor=access.actor())
                await require_created_in_scope(session, access, Event, event.id, field="grid_code")
                code, change = event.code, EventChange.of(event, Action.REPORT.value)
                # Last, in the same transaction: no event without its record, and no record of
                # an event that rolled back.
                written = tracking.touched(session)
                await audit.append(
                    session,
                    _entry(
                        access, outcome="ok", fields=written.fields, records=[f"Event:{event.id}"]
                    ),
                )
                tracking.forget(session)
        except GridHubError as exc:
            await audit.append_now(db, _entry(access, outcome="error", codes=[exc.code]))
            raise Open311Error(_STATUS_OF_CODE.get(exc.code, 400), str(exc)) from exc
        except Exception:
            await audit.append_now(
                db, _entry(access, outcome="error", codes=["INTERNAL_SERVER_ERROR"])
            )
            raise
        await request.app.state.broker.publish(change)
        created = [{"service_request_id": code, "service_notice": None, "account_id": None}]
        return respond(fmt, created, root="service_requests", item="request", status=201)

    async def _identify(
        self, request: Request, db: Database, registry: SchemaRegistry, api_key: str | None
    ) -> Viewer:
        """The key's viewer; a missing or bad key is audited as /graphql audits a bad
        credential, and is 403 (the spec's status for a bad api_key)."""
        try:
            if not api_key:
                raise AuthenticationFailed("no api_key")
            # Only API keys: a bearer token is not an api_key, whatever it would verify as.
            if not api_key.startswith(API_KEY_SCHEME_PREFIX):
                raise AuthenticationFailed("malformed API key")
            viewer = await authenticate(
                db, self._verifier_for(request), authorization=f"Bearer {api_key}", role=None
            )
            if viewer.role not in registry.roles:
                raise AuthenticationFailed(f"role {viewer.role!r} is not in the policy")
        except AuthenticationFailed as exc:
            await self._record_failure(db, exc.reason, request.url.path)
            raise Open311Error(403, f"invalid api_key ({exc.reason})") from exc
        return viewer

    def _verifier_for(self, request: Request) -> TokenVerifier:
        # Unused for API keys, but authenticate() takes one; built once, when first needed.
        if self._verifier is None:
            self._verifier = TokenVerifier(request.app.state.settings)
        return self._verifier

    async def _record_failure(self, db: Database, reason: str, path: str) -> None:
        suppressed = self.failures.take()
        if suppressed is None:
            return
        detail: dict[str, Any] = {"reason": reason, "path": path}
        if suppressed:
            detail["suppressed"] = suppressed
        await audit.append_now(
            db,
            audit.AuditEntry(
                kind="auth_failure", actor="unknown", role="", outcome="failed", detail=detail
            ),
        )


def _form_text(form: FormData) -> dict[str, str]:
    """The text fields of a form, the first value of each (files are never read)."""
    given: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in given:
            given[key] = value
    return given


def _report(access: Access, viewer: Viewer, given: dict[str, str]) -> events.EventReport:
    """The event a POST asks for, checked against what the key's role may do (403) and what the
    spec requires (400)."""
    if not access.can_call(REPORT_EVENT):
        raise Open311Error(403, "this api_key may not create service requests")
    code = given.get("service_code", "").strip()
    if not code:
        raise Open311Error(400, "service_code is required")
    service = SERVICES.get(code)
    if service is None:
        raise Open311Error(400, f"unknown service_code {code!r}")
    grid_code = next(
        (
            given[name].strip()
            for name in ("attribute[grid_code]", "grid_code", "address_id")
            if given.get(name, "").strip()
        ),
        None,
    )
    if grid_code is None:
        raise Open311Error(400, "attribute[grid_code] (the GridHub grid code) is required")
    location = _location(given)
    description = given.get("description", "").strip()
    used = ["category", "title", "gridCode", "reporterSystem"]
    if description:
        used.append("description")
    if location is not None:
        used.append("location")
    refused = [name for name in used if f"ReportEventInput.{name}" not in access.profile.inputs]
    if refused:
        raise Open311Error(403, f"this api_key may not set {', '.join(refused)}")
    return events.EventReport(
        category=code,
        # The service's name, never the caller's words: roles that read titles but not
        # descriptions (a department's webhook) must not learn what a caller said of themselves.
        title=service.name,
        grid_code=grid_code,
        description=description,
        location=location,
        # The key's name: the system that reported (e.g. 12345-hotline).
        reporter_system=viewer.subject.removeprefix("apikey:"),
    )


def _location(given: dict[str, str]) -> events.Location | None:
    lat, lng = given.get("lat", "").strip(), given.get("long", "").strip()
    if not lat and not lng:
        return None
    try:
        return events.Location(lng=float(lng), lat=float(lat))
    except ValueError:
        raise Open311Error(400, "lat and long must both be decimal degrees (WGS84)") from None


def _entry(
    access: Access,
    *,
    outcome: str,
    fields: Iterable[str] = (),
    records: Iterable[str] = (),
    codes: Sequence[str] = (),
) -> audit.AuditEntry:
    viewer = access.viewer
    detail: dict[str, Any] = {"policy_version": access.profile.version, "interface": "open311"}
    if codes:
        detail["codes"] = list(codes)
    return audit.AuditEntry(
        kind="mutation",
        actor=viewer.subject,
        role=viewer.role,
        department=viewer.department_code,
        operation=OPERATION,
        fields=tuple(fields),
        records=tuple(records),
        outcome=outcome,
        detail=detail,
    )


def open311_app() -> Router:
    """The ASGI app to mount at /open311/v2. It reads the database, registry, broker and
    settings from the enclosing app's state (a Router, not an app, so `request.app` is the hub)."""
    return Open311().router()
