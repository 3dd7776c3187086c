"""The public site's home page, published notices and their Atom feeds (no sign-in)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.web.site import Site


def routes(site: Site) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        data = await site.query("PublicHome")
        return site.render(request, "home.html", notices=data["notices"]["nodes"])

    return [Route("/", home)]
