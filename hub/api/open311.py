"""Open311 GeoReport v2 over GridHub's events, mounted at /open311/v2, so that existing Open311
clients (the 12345 hotline among them) work against the hub.

| resource | GridHub |
|---|---|
| service | an event category: `service_code` is the category value |
| service request | an event: `service_request_id` (and the token) is the event code |
| status | `open` for the open statuses of hub.events.states, `closed` for the others |
| agency_responsible | the name of the department the event is dispatched to |
| address / address_id | the name / code of the event's grid |

An adapter over GraphQL, like the pages: every endpoint runs one of the persisted operations of
`open311_operations/` through `hub.api.gateway.Gateway`, as its caller, so policy, row scope,
masking, purpose, audit and limits are /graphql's own code. Reads run as the `public` role,
exactly as a GraphQL request without credentials; a POST runs `reportEvent` as its `api_key`'s
role. This module maps parameters to variables and results to Open311 documents, nothing more.

Each operation is cut to the caller's role schema before it runs (`open311_operations.py`):
a field, argument, filter or input field the schema does not offer is left out, and so is one
that would need a stated purpose (Open311 has no way to state one). A field left out is absent
from the answer (not null: null would claim the event has no such value), and a parameter whose
variable was cut is refused (400; 403 for a POST's input; a lookup is 404, as missing). A policy
change therefore reaches Open311 without a change here.

GridHub extensions: POST takes the grid as `attribute[grid_code]` (the service definitions list
it), `grid_code` or `address_id`; GET requests.json takes `updated_after` (inclusive, on
updated_datetime; the listing is then most recently updated first) and `page`/`page_size`
(default 50, at most 200).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from hub.api.gateway import Gateway
from hub.api.open311_operations import Open311Operations, Prepared
from hub.api.open311_xml import FORMATS, JSON_MEDIA_TYPE, XML_MEDIA_TYPE, error_response, respond
from hub.authz import ANONYMOUS, Viewer
from hub.authz.identity import AuthenticationFailed
from hub.authz.profile import Level
from hub.events.states import OPEN_STATUSES, Status

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# When the service list below last changed: clients refresh cached services when it moves.
CHANGESET = "2025-01-01T00:00:00+00:00"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Pages are numbered and GraphQL pages by cursor, so reaching a page reads every page before it
# (only their cursors): past this many rows a client narrows the listing (start_date,
# updated_after) instead.
MAX_OFFSET = 10_000
MAX_LISTED_IDS = MAX_PAGE_SIZE
MAX_FORM_FIELDS = 64
# Every route takes every method, so that a wrong one gets the spec's error list, not plain text.
ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# EventStatus / EventCategory values as GraphQL names them (the enum's member names).
_OPEN = frozenset(status.name for status in OPEN_STATUSES)
_CLOSED = frozenset(status.name for status in Status) - _OPEN


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

REPORTER_SYSTEM = "ReportEventInput.reporterSystem"
# What each GraphQL error code is in the spec's few statuses (anything else a client caused,
# a limit included, is 400).
_STATUS_OF_CODE = {
    "NOT_FOUND": 404,
    "FORBIDDEN": 403,
    "UNAUTHENTICATED": 403,
    "RATE_LIMITED": 429,
}
# GraphQL's names for what Open311 calls otherwise, in the messages a POST may get back.
_OPEN311_NAMES = {"gridCode": "grid_code"}
# Fields the adapter reads as what they are (an enum, a time, a number), not shows as text: a
# masked one is a String of mask characters, so it is left out rather than shown wrong.
INTERPRETED = frozenset(
    {
        "Event.status",
        "Event.category",
        "Event.reportedAt",
        "Event.updatedAt",
        "Event.deadline",
        "Coordinates.lat",
        "Coordinates.lng",
    }
)


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


# --- GraphQL results as Open311 documents ------------------------------------------------------


def stamp(value: str | None) -> str | None:
    """ISO 8601 with an offset, as the spec wants, to the second and in UTC."""
    if value is None:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).isoformat(timespec="seconds")


def service_request(node: Mapping[str, Any], shown: frozenset[str]) -> dict[str, Any]:
    """One event as a GeoReport service request. `shown` names the fields the operation kept
    (`Event.code`, `Grid.name`...): one its role's schema does not offer is left out. The
    reporter never appears: the operations never ask for it."""
    document: dict[str, Any] = {}
    if "Event.code" in shown:
        document["service_request_id"] = node["code"]
    if "Event.status" in shown:
        document["status"] = "open" if node["status"] in _OPEN else "closed"
    # GridHub's notes live in the timeline, which is not part of a service request.
    document["status_notes"] = None
    if "Event.category" in shown:
        code = str(node["category"]).lower()
        service = SERVICES.get(code)
        document["service_name"] = service.name if service else code
        document["service_code"] = code
    if "Event.description" in shown:
        document["description"] = node["description"]
    if "Department.name" in shown:
        document["agency_responsible"] = (node.get("department") or {}).get("name")
    document["service_notice"] = None
    if "Event.reportedAt" in shown:
        document["requested_datetime"] = stamp(node["reportedAt"])
    if "Event.updatedAt" in shown:
        document["updated_datetime"] = stamp(node["updatedAt"])
    if "Event.deadline" in shown:
        document["expected_datetime"] = stamp(node["deadline"])
    grid = node.get("grid") or {}
    if "Grid.name" in shown:
        document["address"] = grid.get("name")
    if "Grid.code" in shown:
        document["address_id"] = grid.get("code")
    document["zipcode"] = None
    if "Coordinates.lat" in shown and "Coordinates.lng" in shown:
        location = node.get("location") or {}
        document["lat"] = location.get("lat")
        document["long"] = location.get("lng")
    document["media_url"] = None
    return document


# --- parameters as variables -------------------------------------------------------------------


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
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # The year 1 at +14:00 is before the year 1 in UTC: valid text, no instant.
        raise Open311Error(400, f"{argument} is outside the years 1 to 9999") from None


def _whole_number(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits only ("²" is a digit to str.isdigit), and few enough to be a number.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise Open311Error(400, f"{name} must be a whole number of at least 1")
    return int(raw)


def _offered(prepared: Prepared, variable: str, argument: str) -> None:
    if variable not in prepared.variables:
        raise Open311Error(400, f"{argument} is not available on this server")


@dataclass(frozen=True, slots=True)
class Listing:
    """GET requests: the operation's variables, the updated_after cut-off, the page."""

    variables: dict[str, Any]
    updated_after: datetime | None
    offset: int
    size: int


def listing_of(request: Request, prepared: Prepared) -> Listing:
    """Open311's filters as the variables of Open311Requests; a filter the caller's role schema
    does not offer is refused, as the GraphQL schema refuses it (a date range finds a date just
    as reading it does)."""
    variables: dict[str, Any] = {}
    service_codes = _values(request, "service_code")
    if service_codes:
        _offered(prepared, "category", "service_code")
        unknown = sorted(set(service_codes) - SERVICES.keys())
        if unknown:
            raise Open311Error(400, f"unknown service_code: {', '.join(unknown[:5])}")
        variables["category"] = sorted({code.upper() for code in service_codes})
    statuses = set(_values(request, "status"))
    if statuses:
        _offered(prepared, "status", "status")
        if not statuses <= {"open", "closed"}:
            raise Open311Error(400, "status takes open, closed or both")
        chosen = (_OPEN if "open" in statuses else set()) | (
            _CLOSED if "closed" in statuses else set()
        )
        variables["status"] = sorted(chosen)
    start = parse_instant(request.query_params.get("start_date"), "start_date")
    end = parse_instant(request.query_params.get("end_date"), "end_date")
    if start is not None:
        _offered(prepared, "reportedAfter", "start_date")
        variables["reportedAfter"] = start.isoformat()
    if end is not None:
        _offered(prepared, "reportedBefore", "end_date")
        # Inclusive in Open311, exclusive in GraphQL: one microsecond later (what is stored).
        if end < datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1):
            variables["reportedBefore"] = (end + timedelta(microseconds=1)).isoformat()
    # Inclusive, so that a client whose cursor is the last updated_datetime it saw (shown to the
    # second) misses nothing updated within that same second; it sees that event again.
    updated = parse_instant(request.query_params.get("updated_after"), "updated_after")
    if updated is not None:
        _offered(prepared, "orderBy", "updated_after")
        if (
            "UPDATED_AT" not in prepared.enum_values("EventSortField")
            or "Event.updatedAt" not in prepared.shown
        ):
            raise Open311Error(400, "updated_after is not available on this server")
        variables["orderBy"] = {"field": "UPDATED_AT", "direction": "DESC"}
    elif "orderBy" in prepared.variables:
        # By id, newest first: an event reported while a client pages through shifts the later
        # pages by one (it sees one request twice) and never hides one from it.
        variables["orderBy"] = {"field": "ID", "direction": "DESC"}
    page = _whole_number(request, "page", 1)
    size = _whole_number(request, "page_size", DEFAULT_PAGE_SIZE)
    if size > MAX_PAGE_SIZE:
        raise Open311Error(400, f"page_size is at most {MAX_PAGE_SIZE}")
    offset = (page - 1) * size
    if offset > MAX_OFFSET:
        raise Open311Error(400, "page is too far: narrow the listing with start_date")
    return Listing(variables, updated, offset, size)


def _codes(request: Request) -> list[str] | None:
    """service_request_id's codes, each once; None without it."""
    codes = list(dict.fromkeys(_values(request, "service_request_id")))
    if not codes:
        return None
    if len(codes) > MAX_LISTED_IDS:
        raise Open311Error(400, f"service_request_id takes at most {MAX_LISTED_IDS} ids")
    return codes


def _failure(errors: list[Any]) -> Open311Error:
    """A GraphQL answer's first error in the spec's terms. Unexpected errors were logged, with
    their correlation id, where GraphQL logs them; here they are a 500 with no detail."""
    first = errors[0]
    code = str((first.extensions or {}).get("code", "INTERNAL_SERVER_ERROR"))
    if code == "INTERNAL_SERVER_ERROR":
        return Open311Error(500, "internal error")
    message = str(first.message)
    for graphql_name, open311_name in _OPEN311_NAMES.items():
        message = message.replace(graphql_name, open311_name)
    return Open311Error(_STATUS_OF_CODE.get(code, 400), message)


# --- the resources -----------------------------------------------------------------------------

Handler = Callable[[Request, str], Awaitable[Response]]


class Open311:
    """The endpoints, over `gateway`: the same GraphQL view /graphql and the pages run on."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.operations = Open311Operations.load()

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

    def _prepared(self, name: str, viewer: Viewer) -> Prepared:
        """The operation cut to the viewer's role schema under the live policy, without the
        fields that need a stated purpose (Open311 cannot state one) and the masked ones the
        adapter would have to read as what they are not (a masked status is no status)."""
        registry = self.gateway.registry
        profile = registry.profile_for(viewer.role)
        masked = {field for field in INTERPRETED if profile.level(field) is Level.MASKED}
        return self.operations.prepare(
            name,
            registry.schema_for(viewer.role)._schema,
            frozenset(profile.sensitive) | masked,
        )

    async def _run(
        self, prepared: Prepared, variables: Mapping[str, Any], viewer: Viewer, request: Request
    ) -> dict[str, Any]:
        """The operation's data, run as `viewer` for `request`'s client (whose address the limit
        on anonymous writes counts); its errors as the spec's."""
        given = {name: value for name, value in variables.items() if name in prepared.variables}
        result = await self.gateway.execute(
            prepared.document, given, viewer=viewer, operation_name=prepared.name, request=request
        )
        if result.errors:
            raise _failure(list(result.errors))
        return dict(result.data or {})

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
        codes = _codes(request)
        if codes is not None:
            # The spec: with service_request_id, every other filter is ignored.
            found = [await self._lookup(code, request) for code in codes]
            listing = [item for item in found if item is not None]
        else:
            listing = await self._listing(request)
        return respond(fmt, listing, root="service_requests", item="request")

    async def _listing(self, request: Request) -> list[dict[str, Any]]:
        """The page asked for, reached by walking GraphQL's cursors: the pages before it read
        only their cursors (and updated times, when updated_after cuts the listing)."""
        prepared = self._prepared("Open311Requests", ANONYMOUS)
        # Parameters first: a bad one is a 400 even where the public may list nothing.
        listing = listing_of(request, prepared)
        if prepared.empty:
            return []
        largest = request.app.state.settings.limits.max_page_size
        end = listing.offset + listing.size
        nodes: list[dict[str, Any]] = []
        seen, after = 0, None
        while seen < end:
            first = min(largest, end - seen)
            variables = {**listing.variables, "first": first, "after": after}
            variables["full"] = seen + first > listing.offset
            events = (await self._run(prepared, variables, ANONYMOUS, request))["events"]
            page = events["nodes"]
            if listing.updated_after is not None:
                page = [node for node in page if _at_or_after(node, listing.updated_after)]
            nodes += page
            seen += first
            if len(page) < first or not events["pageInfo"]["hasNextPage"]:
                break
            after = events["pageInfo"]["endCursor"]
        kept = nodes[listing.offset : end]
        return [service_request(node, prepared.shown) for node in kept]

    async def _lookup(self, code: str, request: Request) -> dict[str, Any] | None:
        """One event by code as the public sees it; None when missing or out of scope (the
        same answer), or when the public may not look events up by code."""
        prepared = self._prepared("Open311Request", ANONYMOUS)
        if "code" not in prepared.variables:
            return None
        event = await self._event(prepared, code, request)
        return None if event is None else service_request(event, prepared.shown)

    async def _event(
        self, prepared: Prepared, code: str, request: Request
    ) -> dict[str, Any] | None:
        try:
            data = await self._run(prepared, {"code": code}, ANONYMOUS, request)
        except Open311Error as exc:
            # NOT_FOUND: missing and out of scope are one answer in GraphQL too.
            if exc.status == 404:
                return None
            raise
        event = data.get("event")
        return None if event is None else dict(event)

    async def one_request(self, request: Request, fmt: str) -> Response:
        found = await self._lookup(request.path_params["id"], request)
        if found is None:
            raise Open311Error(404, "service request not found")
        return respond(fmt, [found], root="service_requests", item="request")

    async def token(self, request: Request, fmt: str) -> Response:
        # GridHub creates requests at once, so a token is the service request id itself.
        prepared = self._prepared("Open311Token", ANONYMOUS)
        if "code" not in prepared.variables or "Event.code" not in prepared.shown:
            raise Open311Error(404, "service request not found")
        event = await self._event(prepared, request.path_params["id"], request)
        if event is None:
            raise Open311Error(404, "service request not found")
        code = event["code"]
        listing = [{"service_request_id": code, "token": code}]
        return respond(fmt, listing, root="service_requests", item="request")

    # --- creating requests -------------------------------------------------------------------

    async def create(self, request: Request, fmt: str) -> Response:
        try:
            async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
                given = _form_text(form)
        except HTTPException as exc:
            raise Open311Error(400, f"the request body is not a form: {exc.detail}") from exc
        # first_name, last_name, phone, email, device_id and account_id are accepted and never
        # read: GridHub stores no contact details of a caller from an outside system, and never
        # echoes them. media_url is ignored too (an uploaded file is never read).
        try:
            viewer = await self.gateway.identify_api_key(
                given.get("api_key"), path=request.url.path
            )
        except AuthenticationFailed as exc:
            raise Open311Error(403, f"invalid api_key ({exc.reason})") from exc
        prepared = self._prepared("Open311CreateRequest", viewer)
        profile = self.gateway.registry.profile_for(viewer.role)
        variables = _report(
            prepared,
            viewer,
            given,
            # Naming the reporting system is attributing the report on someone's behalf: a role
            # without that right reports as itself (the mutation would refuse the name).
            names_system=REPORTER_SYSTEM in profile.on_behalf,
        )
        data = await self._run(prepared, variables, viewer, request)
        created = data["reportEvent"]
        reply = {
            "service_request_id": created.get("code"),
            "service_notice": None,
            "account_id": None,
        }
        return respond(fmt, [reply], root="service_requests", item="request", status=201)


def _at_or_after(node: Mapping[str, Any], moment: datetime) -> bool:
    return datetime.fromisoformat(node["updatedAt"]) >= moment


def _form_text(form: FormData) -> dict[str, str]:
    """The text fields of a form, the first value of each (files are never read)."""
    given: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in given:
            given[key] = value
    return given


def _report(
    prepared: Prepared, viewer: Viewer, given: dict[str, str], *, names_system: bool = True
) -> dict[str, Any]:
    """The variables of Open311CreateRequest, checked against what the key's role schema offers
    (403) and what the spec requires (400). `names_system`: the key's name goes in as the
    system that reported."""
    if prepared.empty:
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
    variables: dict[str, Any] = {
        "category": code.upper(),
        # The service's name, never the caller's words: roles that read titles but not
        # descriptions (a department's webhook) must not learn what a caller said of themselves.
        "title": service.name,
        "gridCode": grid_code,
    }
    if names_system:
        # The key's name: the system that reported (e.g. 12345-hotline).
        variables["reporterSystem"] = viewer.subject.removeprefix("apikey:")
    location = _location(given)
    if location is not None:
        variables["location"] = location
    description = given.get("description", "").strip()
    if description:
        variables["description"] = description
    refused = [name for name in variables if name not in prepared.variables]
    if refused:
        raise Open311Error(403, f"this api_key may not set {', '.join(refused)}")
    return variables


def _location(given: dict[str, str]) -> dict[str, float] | None:
    lat, lng = given.get("lat", "").strip(), given.get("long", "").strip()
    if not lat and not lng:
        return None
    try:
        location = {"lng": float(lng), "lat": float(lat)}
    except ValueError:
        location = {}
    if not location or not all(math.isfinite(value) for value in location.values()):
        raise Open311Error(400, "lat and long must both be decimal degrees (WGS84)")
    return location


def open311_app(gateway: Gateway) -> Router:
    """The ASGI app to mount at /open311/v2 (a Router, not an app, so `request.app` is the
    hub)."""
    return Open311(gateway).router()
