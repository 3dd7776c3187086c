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
from hub.authz import sessions
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
