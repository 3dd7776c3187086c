"""The auditors' console at /audit: the policy matrix, each role's SDL and its diff between
versions, the policy history with its rollback points, the access log with filters, the
emergency grants, and the audit chain's verification status.

Every page needs the auditor role (another role gets 403, nobody signed in goes to /signin)
and reads through persisted operations run as the signed-in auditor, so the console shows
exactly what the auditor's own GraphQL schema shows. The matrix and the SDL are computed here
from the policy texts read that way, with the CLI's own functions (hub.web.audit_policy).

Times show in Beijing time (UTC+8, no daylight saving); the log's since/until inputs are read
as Beijing time too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.api.registry import SchemaRegistry
from hub.web.audit_policy import PolicyLens, PolicyTextError
from hub.web.site import QueryFailed, SignedIn, Site

AUDITORS = ("auditor",)
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
LOG_PAGE_SIZE = 50
GRANT_PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 20
# How many of a log record's records the table lists before "and N more".
RECORDS_SHOWN = 5
# The access log's kinds (hub.authz.audit), offered as a filter.
LOG_KINDS = ("read", "mutation", "policy", "auth_failure", "emergency", "sync")
# The log's text filters: query parameters named as AuditFilter's fields.
TEXT_FILTERS = ("actor", "role", "record", "field", "purpose", "kind")
STATUS_OF_CODE = {"NOT_FOUND": 404, "BAD_USER_INPUT": 400}


def routes(site: Site) -> list[BaseRoute]:
    console = Console(site)
    return [
        Route("/audit", console.overview),
        Route("/audit/matrix", console.matrix),
        Route("/audit/schema", console.schema),
        Route("/audit/policies", console.policies),
        Route("/audit/log", console.log),
        Route("/audit/grants", console.grants),
    ]


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

    # --- pages ---------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        auditor = await self.site.require(request, AUDITORS)
        if not isinstance(auditor, SignedIn):
            return auditor
        try:
            data = await self._query("AuditOverview", {}, auditor)
        except QueryFailed as failed:
            return self._failed(request, failed)
        versions = data["policyVersions"]
        return self.site.render(
            request,
            "audit.html",
            section="overview",
            when=beijing,
            latest=versions["nodes"][0] if versions["nodes"] else None,
            version_count=versions["totalCount"],
            worker_version=data["me"]["policyVersion"],
            chain=data["auditChain"],
            reads=data["reads"]["totalCount"],
            failures=data["failures"]["totalCount"],
            active_grants=data["activeGrants"]["totalCount"],
            all_grants=data["allGrants"]["totalCount"],
        )

    async def matrix(self, request: Request) -> Response:
        auditor = await self.site.require(request, AUDITORS)
        if not isinstance(auditor, SignedIn):
            return auditor
        wanted = _int_param(request, "version")
        try:
            version = await self._version(auditor, wanted)
        except QueryFailed as failed:
            return self._failed(request, failed)
        if version is None:
            return self.site.error(request, 404, "audit.error.no_policy")
        text = version["text"]
        try:
            # Compiling a policy is CPU work (tens of ms the first time): off the event loop,
            # which serves the dispatch board's live updates too.
            analysis = await asyncio.to_thread(self.lens.analyse, text)
            matrix = await asyncio.to_thread(self.lens.matrix, text)
        except PolicyTextError as exc:
            return self._unloadable(request, version["version"], exc)
        groups: dict[str, list[Any]] = {}
        for row in matrix.fields:
            groups.setdefault(row.type_name, []).append(row)
        return self.site.render(
            request,
            "audit_matrix.html",
            section="matrix",
            when=beijing,
            version=version,
            roles=matrix.roles,
            groups=groups,
            scopes=matrix.scopes,
            scope_cell=_scope_words,
            sensitive=analysis.sensitive,
        )

    async def schema(self, request: Request) -> Response:
        auditor = await self.site.require(request, AUDITORS)
        if not isinstance(auditor, SignedIn):
            return auditor
        role = (request.query_params.get("role") or "").strip() or None
        wanted_new = _int_param(request, "to")
        wanted_old = _int_param(request, "from")
        try:
            new = await self._version(auditor, wanted_new)
            if new is None:
                return self.site.error(request, 404, "audit.error.no_policy")
            old_number = wanted_old if wanted_old is not None else new["version"] - 1
            old = await self._version(auditor, old_number) if old_number >= 1 else None
        except QueryFailed as failed:
            return self._failed(request, failed)
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
            return self.site.error(request, 404, "audit.error.unknown_role")
        return self.site.render(
            request,
            "audit_schema.html",
            section="schema",
            when=beijing,
            role=role,
            roles=view.roles,
            new=new,
            old=old,
            changes=view.changes,
            sdl=view.sdl,
            diff=view.diff,
        )

    async def policies(self, request: Request) -> Response:
        auditor = await self.site.require(request, AUDITORS)
        if not isinstance(auditor, SignedIn):
            return auditor
        try:
            data = await self._query(
                "AuditPolicyHistory", _page(request, HISTORY_PAGE_SIZE), auditor
            )
            history = data["policyVersions"]
            restored_by = await self._restored_by(auditor)
            latest = await self._latest_number(auditor, history)
        except QueryFailed as failed:
            return self._failed(request, failed)
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
            }
            for node, refusal in zip(nodes, refusals, strict=True)
        ]
        return self.site.render(
            request,
            "audit_policies.html",
            section="policies",
            when=beijing,
            rows=rows,
            total=history["totalCount"],
            page_info=history["pageInfo"],
        )

    async def log(self, request: Request) -> Response:
        auditor = await self.site.require(request, AUDITORS)
        if not isinstance(auditor, SignedIn):
            return auditor
        values = {name: (request.query_params.get(name) or "").strip() for name in TEXT_FILTERS}
        values["since"] = (request.query_params.get("since") or "").strip()
        values["until"] = (request.query_params.get("until") or "").strip()
        error: str | None = None
        log: dict[str, Any] | None = None
        try:
            audit_filter = _audit_filter(values)
        except ValueError:
            error = "audit.log.bad_time"
        else:
            try:
                data = await self._query(
                    "AuditLog", {"filter": audit_filter, **_page(request, LOG_PAGE_SIZE)}, auditor
                )
                log = data["auditLog"]
            except QueryFailed as failed:
                if failed.code != "BAD_USER_INPUT":
                    return self._failed(request, failed)
                error = "audit.log.bad_filter"
        return self.site.render(
            request,
            "audit_log.html",
            status_code=400 if error else 200,
            section="log",
            when=beijing,
            values=values,
            kinds=LOG_KINDS,
            fields=list(self.lens.catalogue.field_objects()),
            error=error,
            log=log,
            records_shown=RECORDS_SHOWN,
        )

    async def grants(self, request: Request) -> Response:
        auditor = await self.site.require(request, AUDITORS)
        if not isinstance(auditor, SignedIn):
            return auditor
        active = request.query_params.get("active") == "1"
        try:
            data = await self._query(
                "AuditGrants", {"active": active, **_page(request, GRANT_PAGE_SIZE)}, auditor
            )
        except QueryFailed as failed:
            return self._failed(request, failed)
        return self.site.render(
            request,
            "audit_grants.html",
            section="grants",
            when=beijing,
            active=active,
            grants=data["emergencyGrants"],
        )

    # --- reading -------------------------------------------------------------------------

    async def _query(
        self, name: str, variables: Mapping[str, Any], auditor: SignedIn
    ) -> dict[str, Any]:
        # The console reads no sensitive field, so it states no purpose: a policy that made
        # one of them sensitive would fail these operations with PURPOSE_REQUIRED, visibly.
        return await self.site.query(name, variables, viewer=auditor.viewer)

    async def _version(self, auditor: SignedIn, number: int | None) -> dict[str, Any] | None:
        """A stored version with its text: `number`, or the live (highest) one."""
        if number is None:
            nodes = (await self._query("AuditLatestPolicy", {}, auditor))["policyVersions"]
            return nodes["nodes"][0] if nodes["nodes"] else None
        data = await self._query("AuditPolicyVersion", {"version": number}, auditor)
        found: dict[str, Any] | None = data["policyVersion"]
        return found

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

    def _failed(self, request: Request, failed: QueryFailed) -> Response:
        status = STATUS_OF_CODE.get(failed.code, 500)
        key = {404: "error.not_found", 400: "error.bad_request"}.get(status, "audit.error.query")
        return self.site.error(request, status, key)

    def _unloadable(self, request: Request, version: int, exc: PolicyTextError) -> Response:
        return self.site.render(
            request,
            "audit_unloadable.html",
            status_code=409,
            section="",
            when=beijing,
            version=version,
            reason=str(exc),
        )


# --- helpers -----------------------------------------------------------------------------


def beijing(value: str | None) -> str:
    """An ISO time from the API as Beijing wall-clock time, to the second; '' for none."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:  # the API's times are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def beijing_input(value: str) -> str:
    """A datetime-local input's value (Beijing wall-clock time) as an ISO time with its
    offset, as AuditFilter wants it. ValueError when it is not a time."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        raise ValueError("a datetime-local value has no offset")
    return moment.replace(tzinfo=BEIJING).isoformat()


def _audit_filter(values: Mapping[str, str]) -> dict[str, str]:
    wanted = {name: values[name] for name in TEXT_FILTERS if values[name]}
    for name in ("since", "until"):
        if values[name]:
            wanted[name] = beijing_input(values[name])
    return wanted


def _int_param(request: Request, name: str) -> int | None:
    raw = (request.query_params.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise HTTPException(400, f"{name} must be a positive number")
    return int(raw)


def _page(request: Request, size: int) -> dict[str, Any]:
    """Keyset paging by the API's cursors: `after` walks on, `before` walks back."""
    before = request.query_params.get("before")
    if before:
        return {"last": size, "before": before}
    after = request.query_params.get("after")
    return {"first": size, "after": after or None}


def _scope_words(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))
