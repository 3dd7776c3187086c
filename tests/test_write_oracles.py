"""No oracle through inputs: the answer to a mutation never depends on a value the caller cannot
read in full, nor on a row outside its scope.

Generated from the schema: every mutation argument and input field that names something (an id,
a code, a tracking code, an ID number, a version) has a kind below, and for every role of the
default policy and every such input in its schema, the answer for a value that exists outside
the caller's view equals the answer for a value that exists nowhere. A new reference input
without a kind fails this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from graphql import GraphQLInputObjectType, get_named_type
from sqlalchemy import select

from hub import models
from hub.api.ids import to_global_id
from hub.api.schema import build_schema
from hub.authz import Viewer, masking
from hub.authz.profile import Level
from hub.config import Settings
from hub.db import Database
from hub.residents import idcard
from tests.conftest import post_graphql
from tests.markers import VIEWPOINTS, Viewpoint, seed_markers
from tests.policy_clients import credentials
from tests.world import World, valid_id_number

FULL = build_schema()._schema
API_ROLES = sorted(role for role in VIEWPOINTS if not role.startswith("connector:"))

# Every input that names something, by path (mutation.argument[.field]), and what it names.
KINDS: dict[str, str] = {
    "reportEvent.input.gridCode": "Grid",
    "reportEvent.input.reporterMemberId": "Member",
    "reportEvent.input.reporterResidentId": "Resident",
    "acceptEvent.id": "Event",
    "dispatchEvent.id": "Event",
    "dispatchEvent.departmentCode": "Department",
    "startEvent.id": "Event",
    "resolveEvent.id": "Event",
    "closeEvent.id": "Event",
    "rejectEvent.id": "Event",
    "reopenEvent.id": "Event",
    "addEventNote.id": "Event",
    "createNotice.input.gridCodes": "Grid",
    "createNotice.input.departmentCode": "Department",
    "publishNotice.id": "Notice",
    "retractNotice.id": "Notice",
    "submitFeedback.input.gridCode": "Grid",
    "respondToFeedback.trackingCode": "Feedback",
    "respondToFeedback.departmentCode": "Department",
    "createResident.input.idNumber": "idNumber",
    "createResident.input.gridCode": "Grid",
    "updateResident.id": "Resident",
    "updateResident.input.idNumber": "idNumber",
    "updateResident.input.gridCode": "Grid",
    "rollbackPolicy.version": "PolicyVersion",
    "openEmergencyGrant.input.gridCode": "Grid",
    "closeEmergencyGrant.id": "EmergencyGrant",
    "discardQuarantined.id": "SyncQuarantineItem",
    "reconcileRegistration.id": "Resident",
}
# Inputs that name nothing (free text, numbers, enums' values, lines of policy).
NAMES_NOTHING = {
    "reportEvent.input.title",
    "reportEvent.input.description",
    "reportEvent.input.reporterSystem",
    "reportEvent.input.deadline",
    "dispatchEvent.deadline",
    "createNotice.input.title",
    "createNotice.input.body",
    "submitFeedback.input.content",
    "respondToFeedback.response",
    "changePolicy.input.add",
    "changePolicy.input.remove",
    "changePolicy.input.reason",
    "rollbackPolicy.reason",
    "openEmergencyGrant.input.reason",
    "openEmergencyGrant.input.minutes",
    "discardQuarantined.reason",
    "rejectEvent.reason",
    "reopenEvent.reason",
    *(f"{m}.note" for m in ("acceptEvent", "dispatchEvent", "startEvent", "resolveEvent")),
    *(f"{m}.note" for m in ("closeEvent", "addEventNote")),
    *(
        f"{m}.input.{f}"
        for m in ("createResident", "updateResident")
        for f in ("name", "phone", "address", "householdCode", "tags", "healthNotes")
    ),
}
SCALARS = {"String", "ID", "Int", "DateTime"}
MODELS = {
    "Event": models.Event,
    "Notice": models.Notice,
    "Resident": models.Resident,
    "Member": models.Member,
    "Grid": models.Grid,
    "Department": models.Department,
    "Feedback": models.Feedback,
    "EmergencyGrant": models.EmergencyGrant,
    "SyncQuarantineItem": models.SyncQuarantine,
    "PolicyVersion": models.PolicyVersion,
}


def _input_paths() -> list[str]:
    """Every scalar argument and input field of every mutation, as a path."""
    paths = []
    mutation = FULL.mutation_type
    assert mutation is not None
    for name, mutation_field in mutation.fields.items():
        for argument, arg in mutation_field.args.items():
            named = get_named_type(arg.type)
            if isinstance(named, GraphQLInputObjectType):
                paths += [
                    f"{name}.{argument}.{f}"
                    for f, input_field in named.fields.items()
                    if get_named_type(input_field.type).name in SCALARS
                ]
            elif named.name in SCALARS:
                paths.append(f"{name}.{argument}")
    return paths


def test_every_input_that_names_something_has_a_kind() -> None:
    paths = set(_input_paths())
    assert paths - KINDS.keys() - NAMES_NOTHING == set(), "new inputs: give each a kind"
    assert KINDS.keys() - paths == set(), "inputs that no longer exist"


@dataclass
class Probe:
    """One role's view: the values of each kind that exist outside it, and valid values inside
    it for the rest of an input."""

    view: Viewpoint
    outside: dict[str, list[Any]] = field(default_factory=dict)
    inside: dict[str, list[Any]] = field(default_factory=dict)


NOWHERE: dict[str, Any] = {
    "Event": to_global_id("Event", 10**8),
    "Notice": to_global_id("Notice", 10**8),
    "Resident": to_global_id("Resident", 10**8),
    "Member": to_global_id("Member", 10**8),
    "EmergencyGrant": to_global_id("EmergencyGrant", 10**8),
    "SyncQuarantineItem": to_global_id("SyncQuarantineItem", 10**8),
    "Grid": "NOWHERE1",
    "Department": "nowhere",
    "Feedback": "FB-NOWHERE-0000",
    "idNumber": valid_id_number(997),
    "PolicyVersion": 10**6,
}


def _value(kind: str, row: Any) -> Any:
    if kind in {"Grid", "Department"}:
        return row.code
    if kind == "Feedback":
        return row.tracking_code
    if kind == "PolicyVersion":
        return row.version
    return to_global_id(kind, row.id)


async def _probe(app: Any, db: Database, role: str) -> Probe:
    view = VIEWPOINTS[role]
    registry = app.state.registry
    async with db.reader() as session:
        grids = await session.scalars(select(models.Grid).where(models.Grid.code.in_(view.grids)))
        department = await session.scalar(
            select(models.Department).where(models.Department.code == view.department)
        )
        viewer = Viewer(
            subject=view.subject,
            role=role,
            via="token",
            department_code=view.department,
            department_id=department.id if department else None,
            grid_codes=view.grids,
            grid_paths=tuple(g.path for g in grids),
        )
        access = registry.access_for(viewer)
        probe = Probe(view=view)
        for kind, model in MODELS.items():
            key = model.__mapper__.primary_key[0]
            rows = (await session.scalars(select(model))).all()
            visible = set((await session.scalars(access.rows(select(key), model))).all())
            inside = [r for r in rows if getattr(r, key.key) in visible]
            probe.inside[kind] = [_value(kind, r) for r in inside]
            probe.outside[kind] = [_value(kind, r) for r in rows if r not in inside]
        residents = (await session.scalars(select(models.Resident))).all()
        full = access.level("Resident.idNumber") is Level.FULL
        probe.outside["idNumber"] = [
            r.id_number
            for r in residents
            if not full or to_global_id("Resident", r.id) in probe.outside["Resident"]
        ]
    return probe


def _base(mutation: str, probe: Probe, path: str) -> dict[str, Any]:
    """Variables that would be valid for `mutation` as this role but for the input at `path`."""
    own_grid = "G1"  # under C1, the grid roles' own community
    event = (probe.inside["Event"] or [NOWHERE["Event"]])[0]
    resident = (probe.inside["Resident"] or [NOWHERE["Resident"]])[0]
    if mutation == "reportEvent":
        report: dict[str, Any] = {"category": "OTHER", "title": "t", "gridCode": own_grid}
        if not path.endswith("reporterMemberId"):
            report["reporterResidentId"] = resident
        return {"input": report}
    if mutation in {"createResident", "updateResident"}:
        person = {"name": "张三", "address": "某路1号", "gridCode": own_grid}
        if mutation == "createResident":
            person["idNumber"] = valid_id_number(990 + len(path))
            return {"input": person}
        return {"id": resident, "input": {"phone": "13900009999"}}
    if mutation == "createNotice":
        return {"input": {"title": "t", "body": "b", "gridCodes": ["C1"]}}
    if mutation == "submitFeedback":
        return {"input": {"kind": "SUGGESTION", "content": "x", "gridCode": own_grid}}
    if mutation == "respondToFeedback":
        return {"trackingCode": NOWHERE["Feedback"], "response": "r"}
    if mutation == "openEmergencyGrant":
        return {"input": {"reason": "r", "gridCode": "G1", "minutes": 5}}
    if mutation == "rollbackPolicy":
        return {"version": 1, "reason": "r"}
    if mutation == "dispatchEvent":
        return {"id": event, "departmentCode": "health"}
    if mutation in {"rejectEvent", "reopenEvent"}:
        return {"id": event, "reason": "r"}
    if mutation == "addEventNote":
        return {"id": event, "note": "n"}
    if mutation == "discardQuarantined":
        return {"id": NOWHERE["SyncQuarantineItem"], "reason": "r"}
    if mutation == "reconcileRegistration":
        return {"id": resident, "outcome": "REJECTED"}
    return {"id": event}


def _with(variables: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    _, argument, *rest = path.split(".")
    if not rest:
        return {**variables, argument: value}
    inner = {**variables.get(argument, {}), rest[0]: [value] if rest[0] == "gridCodes" else value}
    return {**variables, argument: inner}


def _document(mutation: str) -> str:
    field = FULL.mutation_type.fields[mutation]  # type: ignore[union-attr]
    params = ", ".join(f"${name}: {arg.type}" for name, arg in field.args.items())
    arguments = ", ".join(f"{name}: ${name}" for name in field.args)
    return f"mutation({params}) {{ {mutation}({arguments}) {{ __typename }} }}"


def _answer(body: dict[str, Any]) -> Any:
    """What a caller learns from an answer: success, or each error's code, message, extensions."""
    errors = [(e["extensions"], e["message"], e.get("path")) for e in body.get("errors", [])]
    return body.get("data"), errors


@pytest.mark.parametrize("role", API_ROLES)
async def test_a_value_outside_the_view_answers_like_one_that_exists_nowhere(
    role: str, app: Any, db: Database, world: World, settings: Settings
) -> None:
    async with db.transaction() as session:
        await seed_markers(session, world)
    await app.state.registry.sync(db)
    probe = await _probe(app, db, role)
    schema = app.state.registry.schema_for(role)._schema
    view = probe.view
    headers = credentials(
        settings, role, subject=view.subject, grids=view.grids, department=view.department
    )
    mutations = schema.mutation_type.fields if schema.mutation_type else {}
    compared = 0
    for path, kind in KINDS.items():
        mutation, argument, *rest = path.split(".")
        if mutation not in mutations or argument not in mutations[mutation].args:
            continue
        if rest and rest[0] not in get_named_type(mutations[mutation].args[argument].type).fields:  # type: ignore[union-attr]
            continue
        outside = probe.outside[kind][:2]
        if not outside:
            continue
        document = _document(mutation)
        answers = []
        for value in (NOWHERE[kind], *outside):
            variables = _with(_base(mutation, probe, path), path, value)
            response = await post_graphql(app, headers, {"query": document, "variables": variables})
            assert response.status_code < 500, response.text
            answers.append(_answer(response.json()))
        assert all(a == answers[0] for a in answers), (path, answers)
        compared += 1
    if role in {"grid_worker", "community_admin"}:
        assert compared, "the grid roles have inputs that name rows outside their view"


async def test_a_masked_number_cannot_be_recovered_from_its_candidates(
    app: Any, db: Database, world: World, settings: Settings
) -> None:
    """The review's attack: a grid worker sees 110105********NNNN and the birth year; it tries
    every checksum-valid candidate on a resident of its own. Every candidate answers alike."""
    view = VIEWPOINTS["grid_worker"]
    headers = credentials(settings, view.role, subject=view.subject, grids=view.grids)
    target = world.residents[3]  # in G4: outside the worker's grids
    own = to_global_id("Resident", world.residents[0].id)
    born = target.birth_date
    candidates = [idcard.make("110105", born, sequence) for sequence in range(0, 1000, 37)]
    candidates.append(target.id_number)
    update = (
        "mutation($id: ID!, $n: String!) { updateResident(id: $id, input: {idNumber: $n}) "
        "{ idNumber birthDate } }"
    )
    for number in candidates:
        response = await post_graphql(
            app, headers, {"query": update, "variables": {"id": own, "n": number}}
        )
        body = response.json()
        # The masked form of what was sent, as for any new number: nothing says which
        # candidate is registered.
        assert body == {
            "data": {
                "updateResident": {
                    "idNumber": masking.mask("id_number", number),
                    "birthDate": masking.mask("birth_date", born),
                }
            }
        }
