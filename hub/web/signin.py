"""Sign-in for the dispatch board and the auditors' console: paste a token or an API key.

The credential is verified exactly as an Authorization header would be, then kept in a sealed
session cookie (hub.authz.sessions) and verified again on every request. Sign-out is a POST with
the session's CSRF token.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from hub.authz.identity import AuthenticationFailed, RoleNotCarried
from hub.web.site import Site

# Where each role lands after signing in, when it did not come from a page of its own.
HOME_OF_ROLE = {"dispatcher": "/dispatch", "community_admin": "/dispatch", "auditor": "/audit"}


def routes(site: Site) -> list[BaseRoute]:
    async def form(request: Request) -> Response:
        return site.render(
            request, "signin.html", next=_safe_next(request.query_params.get("next")), error=None
        )

    async def submit(request: Request) -> Response:
        form = await site.checked_form(request)
        credential = str(form.get("credential") or "").strip()
        if credential.lower().startswith("bearer "):
            credential = credential[7:].strip()
        role = str(form.get("role") or "").strip() or None
        target = _safe_next(str(form.get("next") or ""))
        try:
            viewer = await site.gateway.identify(credential, role=role, path="/signin")
        except AuthenticationFailed as failed:
            return site.render(
                request, "signin.html", status_code=401, next=target, error=_message_of(failed)
            )
        if viewer.role == "public":
            return site.render(
                request, "signin.html", status_code=401, next=target, error="signin.failed"
            )
        lifetime = site.settings.session_hours * 3600
        if viewer.expires_at is not None:
            lifetime = min(lifetime, viewer.expires_at.timestamp() - time.time())
        # A role without a page of its own lands on the home page, told why.
        home = HOME_OF_ROLE.get(viewer.role, "/?flash=signed_in_no_page")
        response = RedirectResponse(target or home, status_code=303)
        site.start_session(response, credential, role=role, lifetime_seconds=lifetime)
        return response

    async def signout(request: Request) -> Response:
        await site.checked_form(request)
        signed_in = await site.signed_in(request)
        if signed_in is not None:
            # Ended on the server too: a copy of the cookie stops working as well.
            await site.gateway.end_session(signed_in.session)
        response = RedirectResponse("/?flash=signed_out", status_code=303)
        site.end_session(response)
        return response

    return [
        Route("/signin", form, methods=["GET"]),
        Route("/signin", submit, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
    ]


# A credential that verified but does not carry the role typed in is the one failure where saying
# more helps the user, and it tells no one anything the API would not tell them with that same
# (valid) credential.
def _message_of(failed: AuthenticationFailed) -> str:
    if isinstance(failed, RoleNotCarried):
        return "signin.role_missing"
    return "signin.failed"


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return ""
    return target
