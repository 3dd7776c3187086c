"""The auditors' console at /audit: the policy matrix, each role's SDL and its diff between
versions, the policy history with its rollback points, the access log with filters, the
emergency grants, and the audit chain's verification status.

Every page needs the auditor role (another role gets 403, nobody signed in goes to /signin)
and reads through persisted operations run as the signed-in auditor, so the console shows
exactly what the auditor's own GraphQL schema shows. The matrix and the SDL are computed here
from the policy texts read that way, with the CLI's own functions (hub.web.audit_policy).

Times show in Beijing time (UTC+8, no daylight saving); hub.web.audit_log reads the access
log's filter (in Beijing time too) and words its records' detail. A request the console cannot
answer (an unknown version, a bad number) gets an error page inside the console, saying what was
wrong and linking back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.api.registry import SchemaRegistry
from hub.authz.report import FieldRow, ScopeRow
from hub.web import audit_log
from hub.web.audit_policy import Analysis, PolicyLens, PolicyTextError
from hub.web.site import QueryFailed, SignedIn, Site
from hub.web.vocabulary import beijing_time

AUDITORS = ("auditor",)
LOG_PAGE_SIZE = 50
GRANT_PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 20
# The console's error pages: a title for each status.
ERROR_TITLES = {
    400: "audit.error.title_bad",
    404: "audit.error.title_missing",
    500: "audit.error.title_failed",
}
# The matrix's filters, each a query parameter set to 1: only the fields whose level differs
# between roles; only the sensitive fields.
MATRIX_FILTERS = ("differ", "sensitive")


class ConsoleError(Exception):
    """A request the console cannot answer: shown inside the console, with `key`'s message."""

    def __init__(
        self, status: int, key: str, *, related: tuple[str, str] | None = None, **params: Any
    ) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        # A page that helps (href, message key), besides the way back to the console.
        self.related = related
        self.params = params


Page = Callable[[Request, SignedIn], Awaitable[Response]]


def routes(site: Site) -> list[BaseRoute]:
    console = Console(site)
    pages: list[tuple[str, str, Page]] = [
        ("/audit", "overview", console.overview),
        ("/audit/matrix", "matrix", console.matrix),
        ("/audit/schema", "schema", console.schema),
        ("/audit/policies", "policies", console.policies),
        ("/audit/log", "log", console.log),
        ("/audit/grants", "grants", console.grants),
    ]
    return [Route(path, console.page(section, handler)) for path, section, handler in pages]


class Console:
    def __init__(self, site: Site) -> None:
        self.site = site
        self._lens: PolicyLens | None = None

    @property
    def lens(self) -> PolicyLens:
        # Built on first use: the registry is the worker's, complete once the app is built.
        if self._lens is None:
            registry: SchemaRegistry = self.site.gateway.registry
            self._lens = PolicyLens(registry)
        return self._lens

    def page(self, section: str, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """`handler` for auditors only, its failures shown inside the console."""

        async def endpoint(request: Request) -> Response:
            auditor = await self.site.require(request, AUDITORS)
            if not isinstance(auditor, SignedIn):
                return auditor
            try:
                return await handler(request, auditor)
            except QueryFailed as failed:
                return self._error(request, section, _console_error(failed))
            except ConsoleError as error:
                return self._error(request, section, error)

        return endpoint

    # --- pages ---------------------------------------------------------------------------

    async def overview(self, request: Request, auditor: SignedIn) -> Response:
        data = await self._query("AuditOverview", {}, auditor)
        versions = data["policyVersions"]
        return self._render(
            request,
            "audit.html",
            "overview",
            latest=versions["nodes"][0] if versions["nodes"] else None,
            version_count=versions["totalCount"],
            worker_version=data["me"]["policyVersion"],
            chain=data["auditChain"],
            reads=data["reads"]["totalCount"],
            failures=data["failures"]["totalCount"],
            active_grants=data["activeGrants"]["totalCount"],
            all_grants=data["allGrants"]["totalCount"],
        )

    async def matrix(self, request: Request, auditor: SignedIn) -> Response:
        wanted = _int_param(request, "version")
        version = await self._version(auditor, wanted)
        if version is None:
            raise ConsoleError(404, "audit.error.no_policy")
        text = version["text"]
        try:
            # Compiling a policy is CPU work (tens of ms the first time): off the event loop,
            # which serves the dispatch board's live updates too.
            analysis = await asyncio.to_thread(self.lens.analyse, text)
            matrix = await asyncio.to_thread(self.lens.matrix, text)
        except PolicyTextError as exc:
            return self._unloadable(request, version["version"], exc)
        only = {name for name in MATRIX_FILTERS if request.query_params.get(name) == "1"}
        shown = [row for row in matrix.fields if _matrix_row_shown(row, only, analysis)]
        groups: dict[str, list[FieldRow]] = {}
        for row in shown:
            groups.setdefault(row.type_name, []).append(row)
        return self._render(
            request,
            "audit_matrix.html",
            "matrix",
            version=version,
            roles=matrix.roles,
            groups=groups,
            only=only,
            shown=len(shown),
            total=len(matrix.fields),
            scope_tables=(
                ScopeTable("scopes", matrix.scopes),
                ScopeTable("writes", matrix.writes),
                ScopeTable("grants", (ScopeRow("EmergencyGrant", matrix.grant_levels),)),
            ),
            scope_cell=_scope_words,
            sensitive=analysis.sensitive,
        )

    async def schema(self, request: Request, auditor: SignedIn) -> Response:
        role = (request.query_params.get("role") or "").strip() or None
        wanted_new = _int_param(request, "to")
        wanted_old = _int_param(request, "from")
        new = await self._version(auditor, wanted_new)
        if new is None:
            raise ConsoleError(404, "audit.error.no_policy")
        old_number = wanted_old if wanted_old is not None else new["version"] - 1
        if wanted_old is not None and old_number < 1:
            raise ConsoleError(404, "audit.error.no_version", version=old_number, related=HISTORY)
        old = await self._version(auditor, old_number) if old_number >= 1 else None
        labels = (f"v{old['version']}/{role}" if old else "", f"v{new['version']}/{role}")
        try:
            view = await asyncio.to_thread(
                self.lens.schema_view,
                new["text"],
                old["text"] if old is not None else None,
                role,
                labels=labels,
            )
        except PolicyTextError as exc:
            return self._unloadable(request, new["version"], exc)
        if role is not None and role not in view.roles:
            raise ConsoleError(
                404,
                "audit.error.unknown_role",
                role=role,
                versions=f"v{old['version']} / v{new['version']}" if old else f"v{new['version']}",
            )
        return self._render(
            request,
            "audit_schema.html",
            "schema",
            role=role,
            roles=view.roles,
            new=new,
            old=old,
            changes=view.changes,
            sdl=view.sdl,
            diff=view.diff,
        )

    async def policies(self, request: Request, auditor: SignedIn) -> Response:
        data = await self._query("AuditPolicyHistory", _page(request, HISTORY_PAGE_SIZE), auditor)
        history = data["policyVersions"]
        restored_by = await self._restored_by(auditor)
        latest = await self._latest_number(auditor, history)
        nodes = history["nodes"]
        refusals = await asyncio.to_thread(
            self.lens.restore_refusals,
            [None if node["version"] == latest else node["text"] for node in nodes],
        )
        rows = [
            {
                **node,
                "live": node["version"] == latest,
                "restored_by": restored_by.get(node["version"], []),
                "refusal": refusal,
                **_line_counts(node["diff"]),
            }
            for node, refusal in zip(nodes, refusals, strict=True)
        ]
        return self._render(
            request,
            "audit_policies.html",
            "policies",
            rows=rows,
            total=history["totalCount"],
            page_info=history["pageInfo"],
        )

    async def log(self, request: Request, auditor: SignedIn) -> Response:
        values = audit_log.filter_values(request.query_params)
        error: str | None = None
        empty_range = False
        log: dict[str, Any] | None = None
        try:
            audit_filter = audit_log.audit_filter(values)
        except ValueError:
            error = "audit.log.bad_time"
        else:
            empty_range = audit_log.empty_range(audit_filter)
            try:
                data = await self._query(
                    "AuditLog", {"filter": audit_filter, **_page(request, LOG_PAGE_SIZE)}, auditor
                )
                log = data["auditLog"]
            except QueryFailed as failed:
                if failed.code != "BAD_USER_INPUT":
                    raise
                error = "audit.log.bad_filter"
        return self._render(
            request,
            "audit_log.html",
            "log",
            status_code=400 if error else 200,
            values=values,
            kinds=audit_log.LOG_KINDS,
            roles=await self._policy_roles(auditor),
            fields=list(self.lens.catalogue.field_objects()),
            error=error,
            empty_range=empty_range,
            log=log,
            details=audit_log.detail_items,
            fields_shown=audit_log.FIELDS_SHOWN,
            records_shown=audit_log.RECORDS_SHOWN,
        )

    async def grants(self, request: Request, auditor: SignedIn) -> Response:
        active = request.query_params.get("active") == "1"
        data = await self._query(
            "AuditGrants", {"active": active, **_page(request, GRANT_PAGE_SIZE)}, auditor
        )
        return self._render(
            request,
            "audit_grants.html",
            "grants",
            active=active,
            grants=data["emergencyGrants"],
        )

    def _render(self, request: Request, template: str, section: str, **values: Any) -> Response:
        # Every console page marks its section in the console's menu and shows times in
        # Beijing time.
        return self.site.render(request, template, section=section, when=beijing, **values)

    # --- reading -------------------------------------------------------------------------

    async def _query(
        self, name: str, variables: Mapping[str, Any], auditor: SignedIn
    ) -> dict[str, Any]:
        # The console reads no sensitive field, so it states no purpose: a policy that made
        # one of them sensitive would fail these operations with PURPOSE_REQUIRED, visibly.
        return await self.site.query(name, variables, viewer=auditor.viewer)

    async def _version(self, auditor: SignedIn, number: int | None) -> dict[str, Any] | None:
        """A stored version with its text: `number` (ConsoleError when there is none), or the
        live (highest) one (None before the first)."""
        if number is None:
            nodes = (await self._query("AuditLatestPolicy", {}, auditor))["policyVersions"]
            return nodes["nodes"][0] if nodes["nodes"] else None
        try:
            data = await self._query("AuditPolicyVersion", {"version": number}, auditor)
        except QueryFailed as failed:
            if failed.code != "NOT_FOUND":
                raise
            raise ConsoleError(
                404, "audit.error.no_version", version=number, related=HISTORY
            ) from None
        found: dict[str, Any] | None = data["policyVersion"]
        return found

    async def _policy_roles(self, auditor: SignedIn) -> tuple[str, ...]:
        """The live policy's roles, for the log's role filter; none if it does not load."""
        latest = await self._version(auditor, None)
        if latest is None:
            return ()
        try:
            analysis: Analysis = await asyncio.to_thread(self.lens.analyse, latest["text"])
        except PolicyTextError:
            return ()
        return analysis.roles

    async def _latest_number(self, auditor: SignedIn, history: Mapping[str, Any]) -> int | None:
        # The first page, newest first, starts with the live version; other pages ask.
        if not history["pageInfo"]["hasPreviousPage"] and history["nodes"]:
            return int(history["nodes"][0]["version"])
        latest = await self._query("AuditRollbacks", {"after": None}, auditor)
        nodes = latest["policyVersions"]["nodes"]
        return int(nodes[0]["version"]) if nodes else None

    async def _restored_by(self, auditor: SignedIn) -> dict[int, list[int]]:
        """Each version a rollback restored, and the versions that restored it. Reads the
        whole history's (version, restores) pairs, a hundred a page: policies change rarely."""
        found: dict[int, list[int]] = {}
        after: str | None = None
        while True:
            data = await self._query("AuditRollbacks", {"after": after}, auditor)
            page = data["policyVersions"]
            for node in page["nodes"]:
                if node["restores"] is not None:
                    found.setdefault(int(node["restores"]), []).append(int(node["version"]))
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    # --- failures ------------------------------------------------------------------------

    def _error(self, request: Request, section: str, error: ConsoleError) -> Response:
        related = None
        if error.related is not None:
            related = {"href": error.related[0], "key": error.related[1]}
        return self._render(
            request,
            "audit_error.html",
            section,
            status_code=error.status,
            status=error.status,
            title=ERROR_TITLES.get(error.status, ERROR_TITLES[500]),
            message=error.key,
            params=error.params,
            related=related,
        )

    def _unloadable(self, request: Request, version: int, exc: PolicyTextError) -> Response:
        return self._render(
            request,
            "audit_unloadable.html",
            "",
            status_code=409,
            version=version,
            reason=str(exc),
        )


# --- helpers -----------------------------------------------------------------------------

HISTORY = ("/audit/policies", "audit.error.to_history")


def _console_error(failed: QueryFailed) -> ConsoleError:
    """What the console says about an operation that failed (a bad cursor, say)."""
    if failed.code == "NOT_FOUND":
        return ConsoleError(404, "audit.error.not_found")
    if failed.code == "BAD_USER_INPUT":
        return ConsoleError(400, "audit.error.bad_request", reason=str(failed))
    return ConsoleError(500, "audit.error.query")


def _matrix_row_shown(row: FieldRow, only: set[str], analysis: Analysis) -> bool:
    if "differ" in only and len(set(row.levels.values())) < 2:
        return False
    return not ("sensitive" in only and not analysis.sensitive(row.object))


def _line_counts(diff: str | None) -> dict[str, int]:
    """How many policy lines a version added and removed (its stored line diff)."""
    lines = (diff or "").splitlines()
    return {
        "added": sum(line.startswith("+") for line in lines),
        "removed": sum(line.startswith("-") for line in lines),
    }


def beijing(value: str | None) -> str:
    """An ISO time from the API as Beijing wall-clock time, to the second; '' for none."""
    if not value:
        return ""
    return beijing_time(value).strftime("%Y-%m-%d %H:%M:%S")


def _int_param(request: Request, name: str) -> int | None:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise ConsoleError(400, "audit.error.bad_number", name=name, value=raw[:20])
    return int(raw)


def _page(request: Request, size: int) -> dict[str, Any]:
    """Keyset paging by the API's cursors: `after` walks on, `before` walks back."""
    before = request.query_params.get("before")
    if before:
        return {"last": size, "before": before}
    after = request.query_params.get("after")
    return {"first": size, "after": after or None}


@dataclass(frozen=True, slots=True)
class ScopeTable:
    """One table of scopes per role: read scopes, write scopes, grant levels."""

    id: str
    rows: tuple[ScopeRow, ...]


def _scope_words(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))
