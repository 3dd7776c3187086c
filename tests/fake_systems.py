"""A fake departmental system for connector tests: real HTTP on 127.0.0.1, faults on demand.

    with FakeSystem(records=make_records(25), plan=FaultPlan(error_rate=0.1, seed=7)) as fake:
        fake.url                       # "http://127.0.0.1:PORT"
        fake.seen                      # every data request: path, params, headers, at, answer
        fake.plan = FaultPlan(...)     # change the faults between requests or runs
        fake.records.append({...})     # change the data between runs

It runs uvicorn in a background thread of the test process, so a test can kill an engine
subprocess while the fake keeps its memory of what was asked. Leaving the block stops it.

Listings (records served in list order, `since_field` "updated_at" filtered by `updated_since`,
inclusive, so the newest record comes back once more on the next run):

| path | paging | body |
|---|---|---|
| /api/page | `page` (from 1), `page_size` | {"data": [...], "meta": {"page": N}} |
| /api/offset | `offset`, `limit` | {"data": [...]} |
| /api/cursor | `cursor` (opaque), `page_size` | {"data": [...], "meta": {"next": token or null}} |
| /api/link | `page_size`; next page in `Link: <url>; rel="next"` | {"data": [...]} |
| /api/all | none | [...] |
| /open311/v2/requests.json | `page`, `page_size`, `updated_after`, `start_date`, `jurisdiction_id` | [...] |

`page_size` defaults to `FakeSystem.page_size` (10). Open311 serves `requests` (filtered on
updated_datetime and requested_datetime, as text: give them in one format); with
`open311_pages=False` it ignores `page`/`page_size` like a plain GeoReport v2 server.

Faults (FaultPlan), applied to every request except /healthz, in this order: `script` (the Nth
request, counted from 1, gets a named fault), `status` (every request answered so: 503 is a dead
system), then seeded random `error_rate` (500 or 503), `slow_rate` (`slow_seconds` before
answering), `malformed_rate` (a cut JSON body), `drop_rate` (connection closed mid-body). Script
faults: "500", "503", "429" (with `retry_after`), "slow", "malformed", "drop" (closed
mid-body), "truncate" (shorter body than its Content-Length), "hang" (answer only when the fake
stops: for kill-the-engine tests). Data faults: `overlap` (each page repeats the last N records
of the one before), `partial` (offset/cursor/link pages hold half of what was asked before the
end), `shuffle` (seeded order, stable while the records do not change), `extra_fields` /
`missing_fields` (schema drift), `loop` (cursor/link hand out the same next again; page
ignores `page`), `etag` (ETag over all records, 304 on If-None-Match), `require_headers`
(401 without them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass
class FaultPlan:
    seed: int = 0
    script: Mapping[int, str] = field(default_factory=dict)
    status: int | None = None
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.5
    malformed_rate: float = 0.0
    drop_rate: float = 0.0
    retry_after: str = "1"
    overlap: int = 0
    partial: bool = False
    shuffle: bool = False
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    missing_fields: tuple[str, ...] = ()
    loop: bool = False
    etag: bool = False
    require_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """One request the fake received, and how it answered ("200", "304", "401", "503",
    "429", "malformed", "drop", "truncate", "slow", "hang")."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival
    answer: str = "200"


def make_records(
    count: int, *, start: str = "2024-05-01T00:00:00Z", prefix: str = "r"
) -> list[dict[str, Any]]:
    """`count` records {"id", "name", "updated_at"}, a minute apart from `start`."""
    origin = datetime.fromisoformat(start)
    return [
        {
            "id": f"{prefix}{number:04d}",
            "name": f"Record {number}",
            "updated_at": _stamp(origin + timedelta(minutes=number)),
        }
        for number in range(1, count + 1)
    ]


def make_requests(count: int, *, start: str = "2024-05-01T00:00:00Z") -> list[dict[str, Any]]:
    """`count` Open311 service requests, updated a minute apart from `start`."""
    origin = datetime.fromisoformat(start)
    return [
        {
            "service_request_id": f"SR{number:05d}",
            "status": "open" if number % 3 else "closed",
            "status_notes": None,
            "service_name": "Pothole",
            "service_code": "001",
            "description": f"Hole number {number}",
            "agency_responsible": "Roads",
            "service_notice": None,
            "requested_datetime": _stamp(origin + timedelta(minutes=number - 30)),
            "updated_datetime": _stamp(origin + timedelta(minutes=number)),
            "expected_datetime": None,
            "address": f"{number} Main St",
            "address_id": None,
            "zipcode": "100000",
            "lat": 39.9 + number / 1000,
            "long": 116.4,
            "media_url": None,
        }
        for number in range(1, count + 1)
    ]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeSystem:
    """A departmental system on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        *,
        records: list[dict[str, Any]] | None = None,
        requests: list[dict[str, Any]] | None = None,
        plan: FaultPlan | None = None,
        page_size: int = 10,
        since_field: str = "updated_at",
        jurisdiction: str | None = None,
        open311_pages: bool = True,
    ) -> None:
        self.records = records if records is not None else []
        self.requests = requests if requests is not None else []
        self.plan = plan or FaultPlan()
        self.page_size = page_size
        self.since_field = since_field
        self.jurisdiction = jurisdiction
        self.open311_pages = open311_pages
        self.seen: list[Seen] = []
        self.url = ""
        self._plan_rng: tuple[int, random.Random] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._app = Starlette(
            routes=[
                Route("/healthz", lambda request: Response("ok")),
                Route("/api/page", self._page),
                Route("/api/offset", self._offset),
                Route("/api/cursor", self._cursor),
                Route("/api/link", self._link),
                Route("/api/all", self._all),
                Route("/open311/v2/requests.json", self._open311),
            ]
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> str:
        """Serve until stop(); returns the base URL."""
        self._stopping.clear()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake system did not start")
            time.sleep(0.01)
        sock.close()  # uvicorn listens on its own duplicate
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("the fake system did not stop")
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeSystem:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def hits(self, path: str) -> list[Seen]:
        """The requests received for `path`, in order."""
        return [seen for seen in self.seen if seen.path == path]

    # --- faults ---------------------------------------------------------------------------

    def _rng(self) -> random.Random:
        # One seeded stream per plan: replacing the plan restarts the sequence.
        if self._plan_rng is None or self._plan_rng[0] != id(self.plan):
            self._plan_rng = (id(self.plan), random.Random(self.plan.seed))
        return self._plan_rng[1]

    def _decide(self, number: int) -> str:
        plan = self.plan
        if number in plan.script:
            return plan.script[number]
        if plan.status is not None:
            return str(plan.status)
        rng = self._rng()
        error, slow, malformed, drop = (rng.random() for _ in range(4))
        if error < plan.error_rate:
            return rng.choice(("500", "503"))
        if drop < plan.drop_rate:
            return "drop"
        if malformed < plan.malformed_rate:
            return "malformed"
        if slow < plan.slow_rate:
            return "slow"
        return "200"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        with self._lock:
            seen = Seen(
                path=scope["path"],
                params=dict(request.query_params),
                headers=dict(request.headers),
                at=time.monotonic(),
            )
            self.seen.append(seen)
            fault = self._decide(len(self.seen))
        seen.answer = fault
        scope.setdefault("state", {})["seen"] = seen
        if fault == "slow":
            await asyncio.sleep(self.plan.slow_seconds)
        elif fault == "hang":
            # stop() sets the event before asking uvicorn to exit, so this thread returns.
            await asyncio.to_thread(self._stopping.wait)
            return await Response("stopping", status_code=503)(scope, receive, send)
        elif fault == "429":
            headers = {"retry-after": self.plan.retry_after}
            return await JSONResponse({"error": "slow down"}, 429, headers)(scope, receive, send)
        elif fault.isdigit() and fault != "200":
            return await JSONResponse({"error": "failed"}, int(fault))(scope, receive, send)
        elif fault == "malformed":
            body = b'{"data": [{"id": "r0001", "na'
            return await Response(body, media_type="application/json")(scope, receive, send)
        elif fault in ("drop", "truncate"):
            return await self._cut(send, whole=fault == "truncate")
        missing = self._unauthorised(request)
        if missing:
            seen.answer = "401"
            return await JSONResponse({"error": "unauthorized"}, 401)(scope, receive, send)
        await self._app(scope, receive, send)

    async def _cut(self, send: Send, *, whole: bool) -> None:
        body = b'{"data": [{"id": "r0001"}, {"id": "r0002"}]}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body) + 50).encode()),
                ],
            }
        )
        # "drop": half the body, then the connection goes; "truncate": all of it, claimed
        # longer. Either way uvicorn closes the socket on the unfinished response.
        part = body if whole else body[: len(body) // 2]
        # uvicorn may refuse the short body: the socket closes all the same.
        with contextlib.suppress(RuntimeError):
            await send({"type": "http.response.body", "body": part, "more_body": not whole})

    def _unauthorised(self, request: Request) -> bool:
        return any(
            request.headers.get(name) != value for name, value in self.plan.require_headers.items()
        )

    # --- listings ------------------------------------------------------------------------

    def _listing(self, request: Request) -> list[Any]:
        since = request.query_params.get("updated_since")
        chosen = [
            record
            for record in self.records
            # Not an object (a test's malformed item), or no since field: always served.
            if since is None
            or not isinstance(record, dict)
            or str(record.get(self.since_field, since)) >= since
        ]
        if self.plan.shuffle:
            random.Random(self.plan.seed).shuffle(chosen)
        drifted: list[Any] = []
        for record in chosen:
            if isinstance(record, dict):
                shaped = {k: v for k, v in record.items() if k not in self.plan.missing_fields}
                record = {**shaped, **self.plan.extra_fields}
            drifted.append(record)
        return drifted

    def _etag(self) -> str:
        digest = hashlib.sha256(json.dumps(self.records, sort_keys=True).encode()).hexdigest()
        return f'"{digest[:16]}"'

    def _answer(
        self, request: Request, body: Any, headers: dict[str, str] | None = None
    ) -> Response:
        headers = dict(headers or {})
        if self.plan.etag:
            etag = self._etag()
            if request.headers.get("if-none-match") == etag:
                request.state.seen.answer = "304"
                return Response(status_code=304, headers={"etag": etag})
            headers["etag"] = etag
        return JSONResponse(body, headers=headers)

    def _size(self, request: Request, name: str = "page_size") -> int:
        return int(request.query_params.get(name, self.page_size))

    def _window(self, total: int, start: int, size: int) -> tuple[int, int]:
        """[from, to) of the page starting at `start`: with overlap, and cut short if partial."""
        end = start + size
        if self.plan.partial and end < total:
            end = start + max(1, size // 2)
        return max(0, start - self.plan.overlap), min(end, total)

    async def _page(self, request: Request) -> Response:
        listing = self._listing(request)
        size = self._size(request)
        number = 1 if self.plan.loop else int(request.query_params.get("page", 1))
        start = (number - 1) * size
        begin, end = max(0, start - self.plan.overlap), start + size
        return self._answer(request, {"data": listing[begin:end], "meta": {"page": number}})

    async def _offset(self, request: Request) -> Response:
        listing = self._listing(request)
        offset = int(request.query_params.get("offset", 0))
        begin, end = self._window(len(listing), offset, self._size(request, "limit"))
        return self._answer(request, {"data": listing[begin:end]})

    async def _cursor(self, request: Request) -> Response:
        listing = self._listing(request)
        token = request.query_params.get("cursor")
        start = _untoken(token) if token else 0
        begin, end = self._window(len(listing), start, self._size(request))
        following = _token(end) if end < len(listing) else None
        if self.plan.loop and token and following:
            following = token
        return self._answer(request, {"data": listing[begin:end], "meta": {"next": following}})

    async def _link(self, request: Request) -> Response:
        listing = self._listing(request)
        start = int(request.query_params.get("after", 0))
        begin, end = self._window(len(listing), start, self._size(request))
        headers = {}
        if end < len(listing):
            after = start if self.plan.loop and "after" in request.query_params else end
            query = dict(request.query_params) | {"after": str(after)}
            target = request.url.replace_query_params(**query)
            headers["link"] = f'<{target}>; rel="next", <{request.url}>; rel="self"'
        return self._answer(request, {"data": listing[begin:end]}, headers)

    async def _all(self, request: Request) -> Response:
        return self._answer(request, self._listing(request))

    async def _open311(self, request: Request) -> Response:
        params = request.query_params
        if self.jurisdiction and params.get("jurisdiction_id") != self.jurisdiction:
            error = [{"code": 404, "description": "jurisdiction_id not found"}]
            return JSONResponse(error, status_code=404)
        chosen = [
            item
            for item in self.requests
            if str(item.get("updated_datetime", "")) >= params.get("updated_after", "")
            and str(item.get("requested_datetime", "")) >= params.get("start_date", "")
        ]
        if self.open311_pages and "page" in params:
            size = self._size(request)
            start = (int(params["page"]) - 1) * size
            chosen = chosen[max(0, start - self.plan.overlap) : start + size]
        return self._answer(request, chosen)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _untoken(token: str) -> int:
    return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
