"""Pending registrations: a registered ID number given again by someone who cannot read it in
full waits beside the registered record until the police station reconciles the two, and
auditors see who makes many."""

from __future__ import annotations

from typing import Any

import pytest

from hub.api.ids import to_global_id
from hub.api.roles import catalogue_of
from hub.api.schema import build_schema
from hub.authz.policy import Policy, PolicyError
from hub.authz.profile import compile_profiles
from hub.config import DEFAULT_POLICY_DIR, Settings
from tests.conftest import post_graphql
from tests.markers import VIEWPOINTS
from tests.policy_clients import credentials
from tests.world import World

CREATE = (
    "mutation($input: ResidentInput!) { createResident(input: $input) { id name grid { code } } }"
)
PENDING = """{ residents(filter: {pendingRegistration: true}, first: 10) {
  edges { node { id name idNumber grid { code } duplicateOf { id name grid { code } } } } } }"""
RECONCILE = """mutation($id: ID!, $outcome: ReconcileOutcome!) {
  reconcileRegistration(id: $id, outcome: $outcome) { id name grid { code } } }"""


def _headers(settings: Settings, role: str) -> dict[str, str]:
    view = VIEWPOINTS[role]
    return credentials(
        settings, role, subject=view.subject, grids=view.grids, department=view.department
    )


async def _gql(app: Any, headers: dict[str, str], query: str, **variables: Any) -> Any:
    response = await post_graphql(app, headers, {"query": query, "variables": variables})
    return response.json()


async def _register_again(app: Any, settings: Settings, world: World) -> str:
    """A grid worker of C1 registers, in G1, a person registered in G4 (moved here)."""
    moved = world.residents[3]
    body = await _gql(
        app,
        _headers(settings, "grid_worker"),
        CREATE,
        input={
            "name": "迁入者",
            "idNumber": moved.id_number,
            "address": "新址1号",
            "gridCode": "G1",
        },
    )
    assert "errors" not in body, body
    return str(body["data"]["createResident"]["id"])


async def test_the_police_station_sees_and_merges_a_move(
    app: Any, world: World, settings: Settings
) -> None:
    pending = await _register_again(app, settings, world)
    police = _headers(settings, "public_security")
    listed = await _gql(app, police, PENDING)
    [node] = [edge["node"] for edge in listed["data"]["residents"]["edges"]]
    registered = to_global_id("Resident", world.residents[3].id)
    assert node["id"] == pending
    assert node["idNumber"] == world.residents[3].id_number
    assert node["duplicateOf"] == {"id": registered, "name": "居民03", "grid": {"code": "G4"}}
    merged = await _gql(app, police, RECONCILE, id=pending, outcome="MOVED")
    assert merged["data"]["reconcileRegistration"] == {
        "id": registered,
        "name": "迁入者",
        "grid": {"code": "G1"},
    }
    assert (await _gql(app, police, PENDING))["data"]["residents"]["edges"] == []


async def test_a_rejected_claim_goes_and_the_registered_record_stays(
    app: Any, world: World, settings: Settings
) -> None:
    pending = await _register_again(app, settings, world)
    police = _headers(settings, "public_security")
    kept = await _gql(app, police, RECONCILE, id=pending, outcome="REJECTED")
    assert kept["data"]["reconcileRegistration"]["grid"] == {"code": "G4"}
    gone = await _gql(app, police, "query($id: ID!) { resident(id: $id) { id } }", id=pending)
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_whoever_reads_numbers_in_full_and_sees_the_holder_is_told_conflict(
    app: Any, world: World, settings: Settings
) -> None:
    """No oracle there: the superuser could look the number up."""
    body = await _gql(
        app,
        credentials(settings, "superuser"),
        CREATE,
        input={
            "name": "重复",
            "idNumber": world.residents[3].id_number,
            "address": "某路",
            "gridCode": "G1",
        },
    )
    assert body["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "idNumber"}


async def test_auditors_see_a_subject_that_makes_many(
    app: Any, world: World, settings: Settings
) -> None:
    worker = _headers(settings, "grid_worker")
    for n, resident in enumerate(world.residents[4:7]):
        person = {
            "name": f"试{n}",
            "idNumber": resident.id_number,
            "address": "x",
            "gridCode": "G1",
        }
        assert "errors" not in await _gql(app, worker, CREATE, input=person)
    alerts = await _gql(
        app, _headers(settings, "auditor"), "{ registrationAlerts { subject count } }"
    )
    assert alerts["data"]["registrationAlerts"] == [{"subject": "test:grid_worker", "count": 3}]


def test_a_policy_that_shows_pending_registrations_to_a_masked_reader_does_not_load() -> None:
    policy = Policy.from_directory(DEFAULT_POLICY_DIR)
    lines = policy.text.replace("p, grid_worker, Resident.duplicateOf, read, deny\n", "")
    with pytest.raises(PolicyError, match=r"Resident\.duplicateOf"):
        compile_profiles(policy.with_text(lines), catalogue_of(build_schema()._schema))
