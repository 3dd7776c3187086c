"""(to be written)"""

from __future__ import annotations

from starlette.routing import BaseRoute

from hub.web.site import Site


def routes(site: Site) -> list[BaseRoute]:
    return []
