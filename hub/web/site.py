"""The pages' shared machinery: templates, language, persisted operations, sessions and CSRF.

Each page area (public, stats, feedback, dispatch, audit, signin) is a module with a
`routes(site)` function; `build_site` mounts them under one Starlette app whose middleware adds
the security headers every page carries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from hub.api.gateway import Gateway
from hub.authz.identity import AuthenticationFailed
from hub.authz.sessions import (
    ANONYMOUS_COOKIE,
    SESSION_COOKIE,
    Sealer,
    Session,
    new_form_nonce,
    session_secret,
)
from hub.authz.viewer import ANONYMOUS, Viewer
from hub.config import Settings
from hub.web.i18n import LANGUAGES, Catalogue, pick_language
from hub.web.operations import Operations

log = logging.getLogger(__name__)

LANGUAGE_COOKIE = "gridhub_lang"
STATIC_PATH = "/static"

# Every asset is GridHub's own: no CDN, font or script from elsewhere can load, and no inline
# script or style runs (a notice body that slipped past the sanitiser still could not execute).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class QueryFailed(Exception):
    """A persisted operation answered with errors; `code` is the first error's code."""

    def __init__(self, code: str, message: str, errors: list[Any]) -> None:
        super().__init__(message)
        self.code = code
        self.errors = errors


@dataclass
class SignedIn:
    viewer: Viewer
    session: Session


class Site:
    def __init__(self, gateway: Gateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.sealer = Sealer(session_secret(settings))
        self.operations = Operations.load()
        self.catalogue = Catalogue.load()
        self.templates = Environment(
            loader=PackageLoader("hub.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # --- data ----------------------------------------------------------------------------

    async def query(
        self,
        name: str,
        variables: Mapping[str, Any] | None = None,
        *,
        viewer: Viewer = ANONYMOUS,
        purpose: str | None = None,
        request: Request | None = None,
    ) -> dict[str, Any]:
        """Run a persisted operation as `viewer` (the public role by default) and return its
        data; QueryFailed when it answers with errors. A write passes the page's `request`:
        the limit on anonymous writes counts its client (hub.api.ratelimit)."""
        operation = self.operations[name]
        result = await self.gateway.execute(
            operation.document,
            variables,
            viewer=viewer,
            purpose=purpose,
            operation_name=operation.name,
            request=request,
        )
        if result.errors:
            first = result.errors[0]
            code = str((first.extensions or {}).get("code", "INTERNAL_SERVER_ERROR"))
            if code == "INTERNAL_SERVER_ERROR":
                log.error("page operation %s failed: %s", name, first.message)
            raise QueryFailed(code, first.message, list(result.errors))
        return dict(result.data or {})

    async def query_all(
        self, name: str, variables: Mapping[str, Any], *, field: str, max_pages: int
    ) -> list[dict[str, Any]]:
        """Every node of the connection `field` of a public operation that pages with
        `$after`, reading at most `max_pages` pages (a bound on what one request can cost)."""
        nodes: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(max_pages):
            page = (await self.query(name, {**variables, "after": after}))[field]
            nodes.extend(page["nodes"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        return nodes

    # --- rendering -----------------------------------------------------------------------

    def language(self, request: Request) -> str:
        return pick_language(request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE))

    def render(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        language = self.language(request)
        t = self.catalogue.translator(language)

        def role_name(role: str) -> str:
            # A role the catalogue does not name (one a policy change added) shows as itself.
            key = "role." + role.replace(":", "_")
            return t(key) if self.catalogue.has(key) else role

        nonce: str | None = getattr(request.state, "form_nonce", None)
        signed_in: SignedIn | None = getattr(request.state, "signed_in", None)
        if signed_in is not None:
            csrf = self.sealer.csrf_token(signed_in.session.nonce)
        else:
            nonce = nonce or request.cookies.get(ANONYMOUS_COOKIE) or new_form_nonce()
            request.state.form_nonce = nonce
            csrf = self.sealer.csrf_token(nonce)
        html = self.templates.get_template(template).render(
            lang=language,
            t=t,
            role_name=role_name,
            csrf_token=csrf,
            signed_in=signed_in,
            path=request.url.path,
            switch_language_url=_with_query(request, lang=_other(language)),
            other_language=_other(language),
            url_with=lambda **changes: _with_query(request, **changes),
            static=lambda name: f"{STATIC_PATH}/{name}",
            site_flash=_site_flash(request),
            **values,
        )
        response = HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
        self._remember(request, response, language)
        return response

    def _remember(self, request: Request, response: Response, language: str) -> None:
        secure = self.settings.cookie_secure
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                LANGUAGE_COOKIE, language, max_age=365 * 86400, samesite="lax", secure=secure
            )
        nonce = getattr(request.state, "form_nonce", None)
        if nonce is not None and request.cookies.get(ANONYMOUS_COOKIE) != nonce:
            response.set_cookie(
                ANONYMOUS_COOKIE, nonce, httponly=True, samesite="strict", secure=secure
            )

    def error(self, request: Request, status_code: int, message_key: str) -> HTMLResponse:
        return self.render(
            request, "error.html", status_code=status_code, status=status_code, message=message_key
        )

    # --- sessions and CSRF ---------------------------------------------------------------

    async def signed_in(self, request: Request) -> SignedIn | None:
        """The request's session, its credential verified again now (an expired token or a
        revoked key ends it)."""
        cached: SignedIn | None = getattr(request.state, "signed_in", None)
        if cached is not None:
            return cached
        session = self.sealer.open(request.cookies.get(SESSION_COOKIE))
        if session is None or await self.gateway.session_ended(session):
            return None
        try:
            viewer = await self.gateway.identify(
                session.credential, role=session.role, path=request.url.path
            )
        except AuthenticationFailed:
            return None
        request.state.signed_in = SignedIn(viewer, session)
        return request.state.signed_in

    async def require(self, request: Request, roles: Iterable[str]) -> SignedIn | Response:
        """The signed-in user when its role is one of `roles`; otherwise the answer to give:
        the sign-in page, or 403 for a signed-in user of another role."""
        signed_in = await self.signed_in(request)
        if signed_in is None:
            target = request.url.path
            return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303)
        if signed_in.viewer.role not in set(roles):
            return self.error(request, 403, "error.forbidden_role")
        return signed_in

    async def checked_form(self, request: Request) -> FormData:
        """The form of a state-changing request, after its CSRF checks: a same-origin Origin
        (when the browser sends one) and the token bound to the session or the visitor."""
        origin = request.headers.get("origin")
        if origin is not None and origin != _origin_of(request):
            raise HTTPException(403, "cross-origin form")
        form = await request.form()
        token = form.get("csrf_token")
        token = token if isinstance(token, str) else None
        signed_in = await self.signed_in(request)
        nonce = (
            signed_in.session.nonce
            if signed_in is not None
            else request.cookies.get(ANONYMOUS_COOKIE)
        )
        if not self.sealer.csrf_valid(nonce, token):
            raise HTTPException(403, "missing or wrong CSRF token")
        return form

    def start_session(
        self, response: Response, credential: str, *, role: str | None, lifetime_seconds: float
    ) -> None:
        cookie = self.sealer.seal(credential, role=role, lifetime_seconds=lifetime_seconds)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(lifetime_seconds),
            httponly=True,
            samesite="strict",
            secure=self.settings.cookie_secure,
        )

    def end_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="strict", secure=self.settings.cookie_secure
        )


# One-line notices a redirect may ask the next page to show (?flash=KEY): fixed words only, so
# a crafted link cannot put its own text on the page.
SITE_FLASHES = frozenset({"signed_out", "signed_in_no_page"})


def _site_flash(request: Request) -> str | None:
    key = request.query_params.get("flash")
    return key if key in SITE_FLASHES else None


def _other(language: str) -> str:
    return "en" if language == "zh-CN" else "zh-CN"


def _with_query(request: Request, **changes: Any) -> str:
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    # One leading slash: a path such as //evil.example/x would make the link another host's.
    path = "/" + request.url.path.lstrip("/\\")
    return f"{path}?{query}" if query else path


def _origin_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


class SiteMiddleware(BaseHTTPMiddleware):
    """Resolves the session (if any) before the page runs, so every page's header shows who is
    signed in, and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp, site: Site) -> None:
        super().__init__(app)
        self.site = site

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if SESSION_COOKIE in request.cookies and not request.url.path.startswith(STATIC_PATH):
            await self.site.signed_in(request)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def build_site(gateway: Gateway, settings: Settings) -> Starlette:
    # Imported here: each area module imports Site from this one.
    from hub.web import audit, dispatch, feedback, public, signin, stats

    site = Site(gateway, settings)
    routes: list[BaseRoute] = [
        Mount(
            STATIC_PATH,
            app=StaticFiles(directory=str(resources.files("hub.web") / "static")),
            name="static",
        )
    ]
    for area in (public, stats, feedback, signin, dispatch, audit):
        routes.extend(area.routes(site))

    async def favicon(_: Request) -> Response:
        # Browsers ask for /favicon.ico whatever the page links: answer instead of a 404.
        return RedirectResponse(f"{STATIC_PATH}/favicon.svg", status_code=301)

    routes.append(Route("/favicon.ico", favicon))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        key = {403: "error.forbidden", 404: "error.not_found"}.get(status, "error.bad_request")
        return site.error(request, status, key)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SiteMiddleware, site=site)],
        exception_handlers={404: http_error, 403: http_error, 400: http_error},
    )
    app.state.site = site
    return app
