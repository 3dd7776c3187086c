"""The baseline for bench_page.py: GridHub's app plus a hand-written JSON endpoint that serves the
same 100-resident page as the GraphQL query, from the same database, with SQLAlchemy Core and
orjson. Anything GraphQL costs on top of this is the price of the generic executor."""

from __future__ import annotations

import base64

import orjson
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.app import create_app
from hub.config import Settings
from hub.residents.models import Resident

COLUMNS = (
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


def _global_id(pk: int) -> str:
    return base64.urlsafe_b64encode(f"Resident:{pk}".encode()).decode().rstrip("=")


def build(settings: Settings | None = None) -> Starlette:
    app = create_app(settings)
    db = app.state.db

    async def plain_residents(request: Request) -> Response:
        after = int(request.query_params.get("after", "0"))
        size = min(int(request.query_params.get("first", "100")), 100)
        statement = select(*COLUMNS).where(Resident.id > after).order_by(Resident.id).limit(size)
        async with db.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        nodes = [
            {
                "id": _global_id(r.id),
                "name": r.name,
                "gender": r.gender.upper(),
                "birthDate": r.birth_date.isoformat(),
                "idNumber": r.id_number,
                "phone": r.phone,
                "address": r.address,
                "householdCode": r.household_code,
                "createdAt": r.created_at.isoformat(),
                "updatedAt": r.updated_at.isoformat(),
            }
            for r in rows
        ]
        body = {"data": {"residents": {"edges": [{"node": n} for n in nodes]}}}
        return Response(orjson.dumps(body), media_type="application/json")

    app.router.routes.insert(0, Route("/plain/residents", plain_residents))
    return app


def factory() -> Starlette:
    """uvicorn --factory entry point (settings from GRIDHUB_DATABASE_URL)."""
    return build()
