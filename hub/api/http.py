"""GraphQL over HTTP and WebSocket (strawberry's ASGI view), with GridHub's context and an IDE
whose assets GridHub serves itself: the hub runs on intranets with no way out to a CDN.

On top of strawberry's view this follows the GraphQL-over-HTTP spec (checked by graphql-http's
audit in tests/test_graphql_over_http.py):

- Content negotiation: `application/graphql-response+json` when the client asks for it,
  `application/json` when it asks for that, for `*/*` or sends no Accept header; 406 when the
  Accept header names neither.
- A request error (parse, validation, variable coercion: nothing was executed) carries no `data`
  entry; with `application/graphql-response+json` it answers 400 (500 for an unexpected failure),
  with `application/json` 200, as the spec asks for legacy clients.
- Requests that are not well-formed GraphQL-over-HTTP requests get a 4xx status with a GraphQL
  error body (`errors[0].extensions.code`) instead of plain text: malformed JSON (nesting past
  the parser's recursion limit included) or a body that is not an object -> 400 BAD_REQUEST, a
  Content-Type other than JSON -> 415, a mutation over GET -> 405 with `Allow: POST`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from hub.api.audit import PURPOSE_HEADER, FailureBudget, clean_purpose, header_text
from hub.api.compiled.execution import CompiledQueries
from hub.api.context import Context, interrupt_on_cancel
from hub.api.loaders import Loaders
from hub.api.registry import SchemaRegistry
from hub.authz import Access, audit, grants, sessions
from hub.authz.identity import AuthenticationFailed, TokenVerifier, authenticate
from hub.authz.ratelimit import RateLimiter
from hub.authz.sessions import SESSION_COOKIE, Sealer, Session, session_secret
from hub.authz.viewer import Viewer
from hub.config import Settings
from hub.db import Database, utcnow
from hub.events.changes import Broker

STATIC_PACKAGE = "hub.api"
IDE_DIRECTORY = "static/graphiql"
IDE_PAGE = IDE_DIRECTORY + "/index.html"
# Where the IDE's own files (vendored GraphiQL, React, the page's boot script) are served.
IDE_ASSETS_PATH = "/graphql/ide"

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

# Operation types each method may carry. Subscriptions are served over WebSocket only
# (graphql-transport-ws on the same URL); mutations never over GET, which must stay safe.
ALLOWED_OPERATIONS: Mapping[str, frozenset[OperationType]] = {
    "GET": frozenset({OperationType.QUERY}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION}),
}

# Stable codes for requests rejected before GraphQL sees them, by HTTP status.
HTTP_ERROR_CODES: Mapping[int, str] = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


class RequestRejected(HTTPException):
    """An HTTP-level rejection with its own error code and response headers."""

    def __init__(
        self,
        status_code: int,
        reason: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, reason)
        self.code = code or HTTP_ERROR_CODES.get(status_code, "BAD_REQUEST")
        self.headers = dict(headers or {})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: no JSON number is infinite
        raise ValueError("number out of range")
    return value


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it: Python's parser also reads NaN, Infinity and -Infinity, and turns
    1e400 into infinity; none of them is a value any GraphQL scalar takes, so the request is
    malformed (400) before any of them reaches one."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when the Accept header allows neither.

    RFC 9110 rules: each supported type takes the q of the most specific range that matches it;
    the highest q wins. On a tie an explicitly named type beats a wildcard match; between two
    explicit ones the spec's own type wins, while a bare wildcard means legacy JSON.
    """
    if accept is None or not accept.strip():
        return JSON
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for media_type in (GRAPHQL_RESPONSE_JSON, JSON):
        q, specificity = _match(accept, media_type)
        if q <= 0:
            continue
        explicit = specificity == 2
        preference = (
            int(media_type == GRAPHQL_RESPONSE_JSON) if explicit else int(media_type == JSON)
        )
        score = (q, specificity, preference)
        if best is None or score > best:
            best, chosen = score, media_type
    return chosen


def _match(accept: str, media_type: str) -> tuple[float, int]:
    """q and specificity (2 exact, 1 type/*, 0 */*, -1 no match) of the best matching range."""
    main_type = media_type.split("/", 1)[0]
    found_q, found_specificity = 0.0, -1
    for media_range in accept.split(","):
        name, *params = (part.strip() for part in media_range.split(";"))
        name = name.lower()
        if name == media_type:
            specificity = 2
        elif name == f"{main_type}/*":
            specificity = 1
        elif name == "*/*":
            specificity = 0
        else:
            continue
        if specificity > found_specificity:
            found_q, found_specificity = _quality(params), specificity
    return found_q, found_specificity


def _quality(params: Iterable[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def is_request_error(result: ExecutionResult) -> bool:
    """True when the operation failed before execution (parse, validation, variables, limits).

    graphql-core gives every field error a path, so errors without one and no data mean nothing
    was executed; the spec then wants no `data` entry at all.
    """
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


def _request_error_status(errors: Iterable[Any]) -> int:
    codes = {
        (error.get("extensions") or {}).get("code") for error in errors if isinstance(error, dict)
    }
    if "INTERNAL_SERVER_ERROR" in codes:
        return 500
    # The server ran out of its time budget: not the client's fault, and worth a retry later.
    if "TIMEOUT" in codes:
        return 504
    if "RATE_LIMITED" in codes:
        return 429
    return 400


def json_bytes(data: object) -> bytes:
    """A response body. orjson: several times faster than json.dumps on a page of rows, and
    UTF-8 as it is (Chinese text is three bytes a character, not a six-byte escape). A value it
    cannot encode (an integer past 64 bits inside a JSON scalar) goes through json.dumps."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


ROLE_HEADER = "x-gridhub-role"

# The page origin that opens a WebSocket with each scheme.
_PAGE_SCHEMES = {"ws": "http", "wss": "https"}


def same_origin(websocket: WebSocket) -> bool:
    """Whether a WebSocket upgrade comes from a page of this server: its Origin header (which
    browsers always send, and a page cannot change) equals the server's own origin, the scheme
    mapped ws -> http and wss -> https and the host as the Host header names it."""
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    if not origin or not host:
        return False
    scheme = _PAGE_SCHEMES.get(websocket.url.scheme)
    return scheme is not None and origin.lower() == f"{scheme}://{host}".lower()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, with a stable code on the operation-limit error: strawberry refuses
    an operation past `max_subscriptions_per_connection` with an uncoded "error" message.

    The connection runs its viewer's role schema, chosen when the upgrade request was
    authenticated (strawberry picks the schema before `connection_init`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        context = self.context
        if isinstance(context, Context) and context.registry is not None:
            self.schema = context.registry.schema_for(context.access.viewer.role)

    async def handle_connection_init(self, message: Any) -> None:
        """Browsers cannot set headers on a WebSocket: a connection may bring them in
        `connection_init`'s payload instead (`Authorization`, `X-GridHub-Role`,
        `X-GridHub-Purpose`; any spelling of the names). A credential there picks the role's
        schema; one that does not verify, or a second credential beside the upgrade's, closes
        the socket with 4403 and the reason."""
        payload = message.get("payload")
        context = self.context
        if (
            isinstance(payload, dict)
            and isinstance(context, Context)
            and not self.connection_init_received
        ):
            given = {str(key).lower(): value for key, value in payload.items()}
            try:
                await self._adopt(context, given)
            except (AuthenticationFailed, GraphQLError) as exc:
                reason = exc.reason if isinstance(exc, AuthenticationFailed) else exc.message
                await self.websocket.close(code=4403, reason=reason[:120])
                return
        await super().handle_connection_init(message)

    async def _still_valid(self) -> bool:
        """Before each operation on a long-lived connection: a credential that has expired
        closes it (4401); a newer policy or a grant opened, closed or expired since gives it
        the viewer's current Access and role schema."""
        context = self.context
        if not isinstance(context, Context) or context.registry is None:
            return True
        viewer = context.access.viewer
        if viewer.expires_at is not None and viewer.expires_at <= utcnow():
            await self.websocket.close(code=4401, reason="the token expired")
            return False
        if viewer.session_nonce is not None or viewer.via == "api_key":
            async with context.db.reader() as session:
                reason = await sessions.withdrawn(session, viewer)
            if reason is not None:
                await self.websocket.close(code=4401, reason=reason)
                return False
        registry = context.registry
        if (
            registry.version != context.access.profile.version
            or registry.grant_paths(viewer) != context.access.emergency_paths
        ):
            view = self.view
            assert isinstance(view, GraphQLView)
            context.access = await view.access_for(viewer)
            context.loaders = Loaders(context.db, context.access)
            self.schema = registry.schema_for(viewer.role)
        return True

    async def _adopt(self, context: Context, given: dict[str, Any]) -> None:
        if PURPOSE_HEADER in given:
            context.purpose = clean_purpose(given[PURPOSE_HEADER])
        if "authorization" not in given:
            return
        credential = given["authorization"]
        if context.access.viewer.via != "anonymous":
            raise AuthenticationFailed(
                "the connection already has a credential (its upgrade request's)"
            )
        if not isinstance(credential, str):
            raise AuthenticationFailed("Authorization must be a string")
        view = self.view
        assert isinstance(view, GraphQLView)
        viewer = await view.identify_credentials(
            credential, _text(given.get(ROLE_HEADER)), path="/graphql (connection_init)"
        )
        context.access = await view.access_for(viewer)
        context.loaders = Loaders(context.db, context.access)
        self.schema = view.registry.schema_for(viewer.role)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and not await self._still_valid():
            return
        maximum = self.max_subscriptions_per_connection
        if (
            maximum is not None
            and self.connection_acknowledged
            and message["id"] not in self.operations
            and len(self.operations) >= maximum
        ):
            error = GraphQLError(
                f"this connection already runs {maximum} operations; complete one first",
                extensions={"code": "TOO_MANY_SUBSCRIPTIONS", "maximum": maximum},
            )
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        await super().handle_subscribe(message)


class GraphQLView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(
        self,
        schema: Any,
        *,
        db: Database,
        settings: Settings,
        broker: Broker,
        registry: SchemaRegistry,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            keep_alive=True,
            keep_alive_interval=15,
            # Counts every operation in flight on a connection, queries and mutations included.
            max_subscriptions_per_connection=settings.limits.max_subscriptions_per_connection,
        )
        self.db = db
        interrupt_on_cancel(db)
        self.settings = settings
        self.broker = broker
        self.registry = registry
        # Anonymous writes, counted across workers (hub.api.ratelimit); None: no limit.
        self.rate_limiter = rate_limiter
        self.compiled = CompiledQueries(
            enabled=settings.compiled_execution, max_plans=settings.compiled_plans
        )
        self.verifier = TokenVerifier(settings)
        # Opens the pages' session cookie, for the dispatch board's WebSocket (identify).
        self.sealer = Sealer(session_secret(settings))
        self.failures = FailureBudget()
        self._ide_html = (resources.files(STATIC_PACKAGE) / IDE_PAGE).read_text(encoding="utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            try:
                scope.setdefault("state", {})["viewer"] = await self.identify(websocket)
            except AuthenticationFailed as exc:
                # graphql-transport-ws's code for an unauthorised connection, with the reason.
                protocols = websocket.scope.get("subprotocols") or []
                await websocket.accept(subprotocol=protocols[0] if protocols else None)
                await websocket.close(code=4401, reason=exc.reason[:120])
                return
            await super().__call__(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        if request.method not in ALLOWED_OPERATIONS:
            # Answered here, not by the router: the route takes every method because the pages'
            # catch-all mount behind it would otherwise answer another method with a 404.
            rejection = RequestRejected(
                405, "GraphQL is served over GET and POST.", headers={"Allow": "GET, POST"}
            )
            await self._rejection(request, rejection)(scope, receive, send)
            return
        try:
            request.state.viewer = await self.identify(request)
            response = await self.run(request)
        except AuthenticationFailed as exc:
            response = self._rejection(
                request,
                RequestRejected(
                    401,
                    exc.reason,
                    code="UNAUTHENTICATED",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                ),
            )
        except HTTPException as exc:
            response = self._rejection(request, exc)
        await response(scope, receive, send)

    async def identify(self, connection: Request | WebSocket) -> Viewer:
        """The viewer a request acts as; a failure is audited and refused, never downgraded.

        A browser's WebSocket cannot carry an Authorization header, and the pages' session
        cookie is HttpOnly, so a WebSocket upgrade without that header may authenticate with
        the session cookie instead (the dispatch board's live feed): as the session's
        credential and role, checked again now exactly like a header.

        The cookie counts only on a same-origin upgrade (`same_origin`). Browsers attach
        cookies to a WebSocket whichever page opens it (CORS does not apply), so another
        site's page could otherwise subscribe as the user (cross-site WebSocket hijacking).
        strawberry already refuses a cross-origin handshake (403, comparing host and port
        only); this check does not rely on that, and compares the scheme too. On any other
        upgrade the cookie is ignored and the connection is anonymous, as it is when the cookie
        does not open (forged, damaged, expired).

        The cookie is the connection's credential: a second one in `connection_init` is
        refused (4403), as beside an Authorization header, so a connection never changes
        identity. Plain HTTP requests never read the cookie, so /graphql offers no CSRF
        surface."""
        headers = connection.headers
        authorization = headers.get("authorization")
        if authorization is None and isinstance(connection, WebSocket):
            session = self.cookie_session(connection)
            if session is not None and await self._session_ended(session):
                raise AuthenticationFailed("the session was signed out")
            if session is not None:
                viewer = await self.identify_credentials(
                    f"Bearer {session.credential}",
                    session.role,
                    path=f"{connection.url.path} (session cookie)",
                )
                # The connection ends with the session: at its expiry, or when it is signed
                # out (checked before each operation and each delivery).
                ends = datetime.fromtimestamp(session.expires, UTC)
                if viewer.expires_at is not None:
                    ends = min(ends, viewer.expires_at)
                return replace(viewer, session_nonce=session.nonce, expires_at=ends)
        # The path as the request gave it: building the whole URL costs more than the check.
        return await self.identify_credentials(
            authorization, headers.get(ROLE_HEADER), path=connection.scope["path"]
        )

    async def _session_ended(self, session: Session) -> bool:
        async with self.db.reader() as db_session:
            return await sessions.has_ended(db_session, session.nonce)

    def cookie_session(self, websocket: WebSocket) -> Session | None:
        """The session of a same-origin WebSocket upgrade's cookie, if it opens."""
        cookie = websocket.cookies.get(SESSION_COOKIE)
        if cookie is None or not same_origin(websocket):
            return None
        return self.sealer.open(cookie)

    async def identify_credentials(
        self, authorization: str | None, role: str | None, *, path: str
    ) -> Viewer:
        try:
            viewer = await authenticate(
                self.db, self.verifier, authorization=authorization, role=role
            )
            if viewer.role not in self.registry.roles:
                raise AuthenticationFailed(f"role {viewer.role!r} is not in the policy")
        except AuthenticationFailed as exc:
            suppressed = self.failures.take()
            if suppressed is not None:
                detail: dict[str, Any] = {"reason": exc.reason, "path": path}
                if suppressed:
                    detail["suppressed"] = suppressed
                await audit.append_now(
                    self.db,
                    audit.AuditEntry(
                        kind="auth_failure",
                        actor="unknown",
                        role="",
                        outcome="failed",
                        detail=detail,
                    ),
                )
            raise
        return viewer

    async def access_for(self, viewer: Viewer) -> Access:
        """The viewer's Access under the live policy, with the grids of its open emergency
        grants resolved (only a viewer with a grant pays for that query)."""
        access = self.registry.access_for(viewer)
        if not access.emergency_paths:
            return access
        async with self.db.reader() as session:
            ids = await grants.grid_ids_under(session, paths=access.emergency_paths)
        return replace(access, emergency_grid_ids=ids)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        # One per HTTP request (a batch included) or WebSocket connection; every operation
        # runs on its own copy (hub.api.schema.PerOperationContext).
        viewer: Viewer = request.state.viewer
        try:
            purpose = clean_purpose(header_text(request.headers.get(PURPOSE_HEADER)))
        except GraphQLError as exc:
            if isinstance(request, WebSocket):
                # No HTTP answer is left to give: the operations state no purpose, and those
                # that need one fail with PURPOSE_REQUIRED.
                purpose = None
            else:
                raise RequestRejected(400, exc.message, code="BAD_USER_INPUT") from exc
        return Context.build(
            self.db,
            settings=self.settings,
            access=await self.access_for(viewer),
            broker=self.broker,
            purpose=purpose,
            registry=self.registry,
            request=request,
            response=response,
            compiled=self.compiled,
            rate_limiter=self.rate_limiter,
        )

    def encode_json(self, data: object) -> str:
        """Text: strawberry sends bytes over a WebSocket as a binary frame, and
        graphql-transport-ws clients (the board's browser among them) read text frames."""
        return json_bytes(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        """WebSocket messages: nesting past the recursion limit, like anything else strict_json
        refuses, is invalid JSON (the handler then closes the socket with 4400), not an
        unexpected error."""
        try:
            return strict_json(data if isinstance(data, str) else data.decode("utf-8"))
        except json.JSONDecodeError:
            raise
        except RecursionError as exc:
            raise json.JSONDecodeError("nested too deeply", "", 0) from exc
        except ValueError as exc:  # not UTF-8, NaN or Infinity, an integer of 5,000 digits
            raise json.JSONDecodeError("not valid JSON", "", 0) from exc

    async def render_graphql_ide(self, request: Request) -> Response:
        # The same URL answers JSON to API clients: caches must key on Accept.
        return HTMLResponse(self._ide_html, headers={"Vary": "Accept"})

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        # create_response sees only the sub-response, so it carries the negotiated type.
        sub_response.media_type = negotiate(request.headers.get("accept")) or JSON
        return sub_response

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        # Reached only after the IDE check, so a browser asking for text/html still gets the page.
        if negotiate(request.headers.get("accept")) is None:
            raise RequestRejected(406, f"Accept must allow {GRAPHQL_RESPONSE_JSON} or {JSON}.")
        if request.method == "GET":
            return self._request_data(self._parse_query_params(request.query_params))
        data = self._parse_post_body(request.content_type, await request.get_body())
        if isinstance(data, list):
            self._validate_batch_request(data, protocol="http")
            return [self._request_data(item) for item in data]
        return self._request_data(data)

    @staticmethod
    def _parse_query_params(params: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "query": params.get("query"),
            "operationName": params.get("operationName"),
        }
        for name in ("variables", "extensions"):
            # Both travel as JSON text in the URL; an empty value means none.
            if raw := params.get(name):
                try:
                    data[name] = strict_json(raw)
                except ValueError as exc:  # json.JSONDecodeError, and NaN or Infinity refused
                    raise RequestRejected(400, f"`{name}` is not valid JSON.") from exc
                except RecursionError as exc:
                    raise RequestRejected(400, f"`{name}` is nested too deeply.") from exc
        return data

    def _parse_post_body(self, content_type: str | None, body: bytes) -> dict[str, Any] | list[Any]:
        media_type, _, params = (content_type or "").partition(";")
        if media_type.strip().lower() != JSON:
            raise RequestRejected(415, f"Send GraphQL requests as {JSON}.")
        charset = next(
            (
                value.strip().strip('"').lower()
                for key, _, value in (param.partition("=") for param in params.split(";"))
                if key.strip().lower() == "charset"
            ),
            "utf-8",
        )
        if charset not in ("utf-8", "utf8"):
            raise RequestRejected(415, "The request body must be UTF-8.")
        try:
            data = strict_json(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RequestRejected(400, "The request body is not valid UTF-8.") from exc
        except ValueError as exc:  # json.JSONDecodeError, and NaN or Infinity refused
            raise RequestRejected(400, "The request body is not valid JSON.") from exc
        except RecursionError as exc:
            # Nesting deeper than the parser's recursion limit: no GraphQL request needs that.
            raise RequestRejected(400, "The request body is nested too deeply.") from exc
        if isinstance(data, dict):
            return data
        if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
            return data
        raise RequestRejected(
            400, "The request body must be a JSON object (or a non-empty list of them)."
        )

    @staticmethod
    def _request_data(data: Mapping[str, Any]) -> GraphQLRequestData:
        fields = {
            "query": (data.get("query"), str),
            "operationName": (data.get("operationName"), str),
            "variables": (data.get("variables"), dict),
            "extensions": (data.get("extensions"), dict),
        }
        for name, (value, expected) in fields.items():
            if value is not None and not isinstance(value, expected):
                kind = "a string" if expected is str else "an object"
                raise RequestRejected(400, f"`{name}` must be {kind} or null.")
        return GraphQLRequestData(
            query=data.get("query"),
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=data.get("extensions"),
        )

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        method = request_adapter.method
        schema = self.registry.schema_for(context.access.viewer.role)
        try:
            return await schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=ALLOWED_OPERATIONS[method],
                operation_extensions=request_data.extensions,
            )
        except MissingQueryError as exc:
            raise RequestRejected(400, "The request has no GraphQL `query`.") from exc
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.MUTATION:
                raise RequestRejected(
                    405, "Send mutations with POST.", headers={"Allow": "POST"}
                ) from exc
            return self._request_error(
                "Subscriptions are served over WebSocket (graphql-transport-ws) at this URL.",
                "OPERATION_NOT_SUPPORTED",
            )
        except CannotGetOperationTypeError as exc:
            # An operationName that names nothing in the document: a validation failure.
            return self._request_error(exc.as_http_error_reason(), "GRAPHQL_VALIDATION_FAILED")

    @staticmethod
    def _request_error(message: str, code: str) -> ExecutionResult:
        return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code})])

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if is_request_error(result):
            response.pop("data", None)
        return response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        media_type = sub_response.media_type or JSON
        status = 200
        # A batch is not in the spec: it answers 200 and each entry speaks for itself.
        if (
            media_type == GRAPHQL_RESPONSE_JSON
            and isinstance(response_data, dict)
            and "data" not in response_data
        ):
            status = _request_error_status(response_data.get("errors") or ())
        response = Response(
            json_bytes(response_data),
            status_code=sub_response.status_code or status,
            media_type=f"{media_type}; charset=utf-8",
        )
        response.headers.raw.extend(sub_response.headers.raw)
        response.headers["Vary"] = "Accept"
        if sub_response.background:
            response.background = sub_response.background
        return response

    def _rejection(self, request: Request, exc: HTTPException) -> Response:
        code = exc.code if isinstance(exc, RequestRejected) else None
        code = code or HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
        headers = dict(exc.headers) if isinstance(exc, RequestRejected) else {}
        if exc.status_code == 405:
            headers.setdefault("Allow", "GET, POST")
        media_type = negotiate(request.headers.get("accept")) or JSON
        response = Response(
            json_bytes(_error_body(exc.reason, code)),
            status_code=exc.status_code,
            media_type=f"{media_type}; charset=utf-8",
            headers=headers,
        )
        response.headers["Vary"] = "Accept"
        return response


def ide_assets() -> ASGIApp:
    """The IDE's static files, gzip-compressed on the way out (GraphiQL is ~2 MB raw)."""
    directory = resources.files(STATIC_PACKAGE) / IDE_DIRECTORY
    return GZipMiddleware(StaticFiles(directory=str(directory)), minimum_size=1024, compresslevel=6)
