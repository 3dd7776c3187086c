"""The baselines of the page benchmarks: GridHub's app plus hand-written JSON endpoints that serve
the same pages as the GraphQL queries, from the same database, with SQLAlchemy Core and orjson.
Anything GraphQL costs on top of these is the price of GraphQL.

Each endpoint does what GridHub's policy makes any endpoint do for that page, written by hand:
the viewer's row scope, the masks, and (when the page shows sensitive fields) the same
access-log record the GraphQL operation appends. Without that record the baseline would be an
endpoint GridHub must not have; bench_compiled.py says which pages append one.

    /plain/residents?first=N        residents by id, ten fields in full (public_security)
    /plain/residents-masked?first=N the same ten fields as grid_worker of C01 sees them
    /plain/events?first=N           events by id, ten fields, grid, reporter and department
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import Select, select
from sqlalchemy.orm import aliased
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.app import create_app
from hub.authz import audit, masking
from hub.config import Settings
from hub.departments.models import Department
from hub.events.models import Event
from hub.grids.models import PATH_END, Grid
from hub.members.models import Member
from hub.residents.models import Resident

RESIDENT_COLUMNS = (
    Resident.id,
    Resident.name,
    Resident.gender,
    Resident.birth_date,
    Resident.id_number,
    Resident.phone,
    Resident.address,
    Resident.household_code,
    Resident.created_at,
    Resident.updated_at,
)
# What a read of the ten fields puts on the record (hub.api.audit and hub.authz.reads).
RESIDENT_SENSITIVE = (
    "Resident.address",
    "Resident.birthDate",
    "Resident.idNumber",
    "Resident.phone",
)
MASKED_GRID = "C01"


def bench_settings(settings: Settings) -> Settings:
    """Pages of up to 1000 rows (the default limit is 100), costed to fit."""
    limits = replace(settings.limits, max_page_size=1000, max_cost=200_000, max_batch_cost=400_000)
    return replace(settings, limits=limits)


def global_id(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def resident_node(r: Any, *, masked: bool) -> dict[str, Any]:
    """The ten fields, in full or as grid_worker sees them (ID number and birth date masked)."""
    return {
        "id": global_id("Resident", r.id),
        "name": r.name,
        "gender": r.gender.upper(),
        "birthDate": masking.birth_date(r.birth_date) if masked else r.birth_date.isoformat(),
        "idNumber": masking.id_number(r.id_number) if masked else r.id_number,
        "phone": r.phone,
        "address": r.address,
        "householdCode": r.household_code,
        "createdAt": r.created_at.isoformat(),
        "updatedAt": r.updated_at.isoformat(),
    }


def page_size(request: Request) -> int:
    return min(int(request.query_params.get("first", "100")), 1000)


def json_response(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def log_read(
    app: Starlette, request: Request, role: str, fields: tuple[str, ...], ids: list[int]
) -> None:
    """The record the GraphQL operation appends for the same read."""
    await audit.append_now(
        app.state.db,
        audit.AuditEntry(
            kind="read",
            actor="bench",
            role=role,
            operation=None,
            fields=fields,
            records=[f"Resident:{pk}" for pk in ids],
            purpose=request.headers.get("x-gridhub-purpose"),
            outcome="ok",
            detail={"policy_version": app.state.registry.version},
        ),
    )


def build(settings: Settings | None = None) -> Starlette:
    app = create_app(settings)
    db = app.state.db

    async def rows(statement: Select[Any]) -> list[Any]:
        async with db.engine.connect() as connection:
            return list((await connection.execute(statement)).all())

    async def residents(request: Request) -> Response:
        statement = select(*RESIDENT_COLUMNS).order_by(Resident.id).limit(page_size(request))
        found = await rows(statement)
        nodes = [resident_node(r, masked=False) for r in found]
        if found:
            ids = [r.id for r in found]
            await log_read(app, request, "public_security", RESIDENT_SENSITIVE, ids)
        return json_response({"data": {"residents": {"edges": [{"node": n} for n in nodes]}}})

    async def residents_masked(request: Request) -> Response:
        # grid_worker of C01: residents in C01's subtree, ID number and birth date masked.
        async with db.engine.connect() as connection:
            path = await connection.scalar(select(Grid.path).where(Grid.code == MASKED_GRID))
        assert path is not None
        subtree = select(Grid.id).where(Grid.path >= path, Grid.path < path + PATH_END)
        statement = (
            select(*RESIDENT_COLUMNS)
            .where(Resident.grid_id.in_(subtree))
            .order_by(Resident.id)
            .limit(page_size(request))
        )
        found = await rows(statement)
        nodes = [resident_node(r, masked=True) for r in found]
        if found:
            ids = [r.id for r in found]
            await log_read(app, request, "grid_worker", RESIDENT_SENSITIVE, ids)
        return json_response({"data": {"residents": {"edges": [{"node": n} for n in nodes]}}})

    async def events(request: Request) -> Response:
        # dispatcher: every event; a reporting resident's name masked (and on the record).
        relations = request.query_params.get("relations") != "0"
        grid = aliased(Grid)
        member = aliased(Member)
        resident = aliased(Resident)
        department = aliased(Department)
        columns: list[Any] = [
            Event.id,
            Event.code,
            Event.title,
            Event.status,
            Event.category,
            Event.severity,
            Event.reported_at,
            Event.deadline,
            Event.updated_at,
            Event.version,
        ]
        statement = select(*columns).order_by(Event.id).limit(page_size(request))
        if relations:
            statement = (
                statement.add_columns(
                    Event.reporter_system,
                    Event.reporter_resident_id,
                    grid.code.label("grid_code"),
                    grid.name.label("grid_name"),
                    member.name.label("member_name"),
                    resident.name.label("resident_name"),
                    department.code.label("department_code"),
                    department.name.label("department_name"),
                )
                .join(grid, grid.id == Event.grid_id)
                .outerjoin(member, member.id == Event.reporter_member_id)
                .outerjoin(resident, resident.id == Event.reporter_resident_id)
                .outerjoin(department, department.id == Event.department_id)
            )

        def reporter(r: Any) -> dict[str, str] | None:
            if r.member_name is not None:
                return {"__typename": "Member", "name": r.member_name}
            if r.resident_name is not None:
                return {"__typename": "Resident", "name": masking.name(r.resident_name)}
            if r.reporter_system is not None:
                return {"__typename": "ExternalSystem", "name": r.reporter_system}
            return None

        def node(r: Any) -> dict[str, Any]:
            fields = {
                "id": global_id("Event", r.id),
                "code": r.code,
                "title": r.title,
                "status": r.status.upper(),
                "category": r.category.upper(),
                "severity": r.severity.upper(),
                "reportedAt": r.reported_at.isoformat(),
                "deadline": r.deadline.isoformat() if r.deadline else None,
                "updatedAt": r.updated_at.isoformat(),
                "version": r.version,
            }
            if relations:
                fields["grid"] = {"code": r.grid_code, "name": r.grid_name}
                fields["reporter"] = reporter(r)
                fields["department"] = (
                    {"code": r.department_code, "name": r.department_name}
                    if r.department_code is not None
                    else None
                )
            return fields

        found = await rows(statement)
        nodes = [node(r) for r in found]
        reporters = [r.reporter_resident_id for r in found if relations and r.resident_name]
        if reporters:
            await log_read(app, request, "dispatcher", ("Resident.name",), reporters)
        return json_response({"data": {"events": {"nodes": nodes}}})

    app.router.routes[0:0] = [
        Route("/plain/residents", residents),
        Route("/plain/residents-masked", residents_masked),
        Route("/plain/events", events),
    ]
    return app


def factory() -> Starlette:
    """uvicorn --factory entry point (settings from the environment, limits for 1000 rows)."""
    return build(bench_settings(Settings.from_env()))
