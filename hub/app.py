"""Wires GridHub together: database, broker, GraphQL endpoint and HTTP middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hub.api.gateway import Gateway
from hub.api.http import IDE_ASSETS_PATH, GraphQLView, ide_assets
from hub.api.limits import BodySizeLimit
from hub.api.open311 import open311_app
from hub.api.registry import SchemaRegistry
from hub.api.schema import build_schema
from hub.authz.identity import AuthenticationFailed, signing_secret
from hub.authz.ratelimit import create_limiter
from hub.config import Settings
from hub.connectors.definition import load_directory
from hub.connectors.scheduler import Scheduler
from hub.db import Database
from hub.events.brokers import create_broker
from hub.web.site import build_site


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    if settings.jwt_secret is None and settings.jwks_file is None:
        # Development: no key is configured, so the hub signs and checks its own tokens with a
        # secret it generates once into the data directory (`gridhub token` uses the same).
        signing_secret(settings, create=True)
    db = Database(
        settings.database_url,
        echo=settings.echo_sql,
        # A statement the API stopped waiting for (TIMEOUT) must not keep running on the server.
        statement_timeout_seconds=settings.limits.statement_timeout_seconds,
    )
    broker = create_broker(settings, db)
    schema = build_schema(settings.limits)
    registry = SchemaRegistry(schema, settings)
    # Anonymous writes, counted in the database or Redis: one budget for every worker.
    rate_limiter = create_limiter(settings, db)
    graphql = GraphQLView(
        schema,
        db=db,
        settings=settings,
        broker=broker,
        registry=registry,
        rate_limiter=rate_limiter,
    )
    # The pages: they run their persisted operations through the same view, in process.
    gateway = Gateway(graphql)
    site = build_site(gateway, settings)

    # Scheduled connector runs in this process (GRIDHUB_RUN_CONNECTORS=1); otherwise a separate
    # `gridhub sync worker` runs them. A broken definition stops the start, with its line.
    scheduler = (
        Scheduler(db, registry, load_directory(settings.connectors_dir))
        if settings.run_connectors
        else None
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await registry.start(db)
        await broker.start()
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await scheduler.stop()
            await broker.stop()
            await rate_limiter.close()
            await registry.stop()
            await db.dispose()

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def sdl(request: Request) -> Response:
        # The caller's own role's schema: what it may use, and nothing else.
        try:
            viewer = await graphql.identify(request)
        except AuthenticationFailed as exc:
            return JSONResponse(
                {"errors": [{"message": exc.reason, "extensions": {"code": exc.code}}]},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        role_schema = registry.schema_for(viewer.role)
        return PlainTextResponse(role_schema.as_str() + "\n", media_type="application/graphql")

    app = Starlette(
        routes=[
            Route("/healthz", health),
            Route("/graphql/schema.graphql", sdl),
            # Every method: the view answers all but GET and POST with 405 itself.
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Mount(IDE_ASSETS_PATH, app=ide_assets()),
            # Open311: an adapter over GraphQL operations, through the same view as the pages.
            Mount("/open311/v2", app=open311_app(gateway)),
            # Last: the public site, the dispatch board and the auditors' console.
            Mount("/", app=site),
        ],
        lifespan=lifespan,
        # Counts request bodies as they stream in: 413 with a GraphQL-shaped error past the limit.
        middleware=[
            # The client's address from X-Forwarded-For, only from the proxies named (the
            # limit on anonymous writes counts by it): anyone else could choose their own.
            *(
                [Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)]
                if settings.forwarded_allow_ips
                else []
            ),
            Middleware(BodySizeLimit, max_body_bytes=settings.limits.max_body_bytes),
        ],
    )
    app.state.db = db
    app.state.broker = broker
    app.state.settings = settings
    app.state.schema = schema
    app.state.registry = registry
    app.state.compiled = graphql.compiled
    return app
