"""GraphQL operations run in process, for the server-rendered pages (hub.web).

The pages never read the database themselves: they run named, allow-listed operations through
this gateway, which executes them exactly as /graphql would for the same viewer: that role's
schema, its row scope and masking, the limits, the purpose rule and the access log. A page can
therefore never show more than the policy lets its viewer see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strawberry.types import ExecutionResult

from hub.api.context import Context
from hub.api.http import GraphQLView
from hub.authz import audit, sessions
from hub.authz.identity import API_KEY_SCHEME_PREFIX, AuthenticationFailed
from hub.authz.sessions import Session
from hub.authz.viewer import ANONYMOUS, Viewer


class Gateway:
    def __init__(self, view: GraphQLView) -> None:
        self._view = view

    @property
    def registry(self) -> Any:
        return self._view.registry

    async def identify(self, credential: str, *, role: str | None, path: str) -> Viewer:
        """The viewer of a pasted token or API key (AuthenticationFailed when it does not
        verify: the failure is audited like any other)."""
        return await self._view.identify_credentials(f"Bearer {credential}", role, path=path)

    async def identify_api_key(self, api_key: str | None, *, path: str) -> Viewer:
        """The viewer of an API key given as a parameter (Open311's `api_key`), audited like
        any other credential. Only an API key: a token there is refused, not verified, so a
        form field never becomes another way to send a bearer token."""
        if not api_key:
            raise await self._refused("no api_key", path=path)
        if not api_key.startswith(API_KEY_SCHEME_PREFIX):
            raise await self._refused("malformed API key", path=path)
        return await self.identify(api_key, role=None, path=path)

    async def _refused(self, reason: str, *, path: str) -> AuthenticationFailed:
        # The record /graphql writes for a bad credential, under the view's budget of them.
        view = self._view
        suppressed = view.failures.take()
        if suppressed is not None:
            detail: dict[str, Any] = {"reason": reason, "path": path}
            if suppressed:
                detail["suppressed"] = suppressed
            await audit.append_now(
                view.db,
                audit.AuditEntry(
                    kind="auth_failure", actor="unknown", role="", outcome="failed", detail=detail
                ),
            )
        return AuthenticationFailed(reason)

    async def end_session(self, session: Session) -> None:
        """Sign-out, recorded so that a copy of the cookie is dead too."""
        async with self._view.db.transaction() as db_session:
            await sessions.end(db_session, session)

    async def session_ended(self, session: Session) -> bool:
        async with self._view.db.reader() as db_session:
            return await sessions.has_ended(db_session, session.nonce)

    async def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        viewer: Viewer = ANONYMOUS,
        purpose: str | None = None,
        operation_name: str | None = None,
        request: Any = None,
    ) -> ExecutionResult:
        """`request`: the HTTP request the operation serves (a page's, Open311's), whose
        client the limit on anonymous writes counts (hub.api.ratelimit)."""
        view = self._view
        context = Context.build(
            view.db,
            settings=view.settings,
            access=await view.access_for(viewer),
            broker=view.broker,
            purpose=purpose,
            registry=view.registry,
            compiled=view.compiled,
            request=request,
            rate_limiter=view.rate_limiter,
        )
        schema = view.registry.schema_for(viewer.role)
        return await schema.execute(
            document,
            variable_values=dict(variables) if variables is not None else None,
            context_value=context,
            operation_name=operation_name,
        )
