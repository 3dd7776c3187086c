"""GraphQL over HTTP and WebSocket (strawberry's ASGI view), with GridHub's context and an IDE
whose assets GridHub serves itself: the hub runs on intranets with no way out to a CDN."""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from hub.api.context import Context
from hub.api.loaders import Loaders
from hub.authz import open_access
from hub.config import Settings
from hub.db import Database
from hub.events.changes import Broker

STATIC_PACKAGE = "hub.api"
IDE_PAGE = "static/graphiql/index.html"


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: Any, *, db: Database, settings: Settings, broker: Broker) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            keep_alive=True,
            keep_alive_interval=15,
        )
        self.db = db
        self.settings = settings
        self.broker = broker
        self._ide_html = (resources.files(STATIC_PACKAGE) / IDE_PAGE).read_text(encoding="utf-8")

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        access = open_access()
        return Context(
            db=self.db,
            settings=self.settings,
            access=access,
            broker=self.broker,
            loaders=Loaders(self.db, access),
            request=request,
            response=response,
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self._ide_html)
