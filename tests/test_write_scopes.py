"""Writes have their own scope: every (role, mutation) of the default policy, aimed at a target
outside the role's write scope, is refused and changes nothing.

The cases are generated from each role's own schema: every mutation a role may call must have a
maker below that builds its out-of-scope targets, or says (and the test checks) that the role's
write scope leaves nothing outside. A new mutation without a maker fails this file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hub.api.ids import to_global_id
from hub.api.roles import catalogue_of
from hub.api.schema import build_schema
from hub.authz.profile import Profile
from hub.config import Settings
from tests.conftest import GraphQLClient, post_graphql
from tests.markers import VIEWPOINTS, Viewpoint
from tests.policy_clients import credentials
from tests.world import World

WRITTEN = catalogue_of(build_schema()._schema).writes
# The connectors write through the sync engine, not the API (tests/test_connector_*).
API_ROLES = sorted(role for role in VIEWPOINTS if not role.startswith("connector:"))
REFUSED = {"NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT"}


@dataclass
class Seeds:
    """Rows in and out of every role's write scope, made as the superuser."""

    events: dict[str, str] = field(default_factory=dict)  # name -> global id
    notices: dict[str, str] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)  # name -> tracking code
    residents: dict[str, str] = field(default_factory=dict)
    grant: str = ""


REPORT = "mutation($input: ReportEventInput!) { reportEvent(input: $input) { id } }"


async def _seed(gql: GraphQLClient, world: World) -> Seeds:
    seeds = Seeds()
    for name, grid, department in (
        ("G1", "G1", None),
        ("G4", "G4", None),
        ("G1_public_security", "G1", "public_security"),
        ("G4_environment", "G4", "environment"),
    ):
        report = {"category": "OTHER", "title": name, "gridCode": grid, "reporterSystem": "t"}
        data = await gql.data(REPORT, {"input": report})
        event = data["reportEvent"]["id"]
        if department:
            await gql.data("mutation($id: ID!) { acceptEvent(id: $id) { id } }", {"id": event})
            await gql.data(
                "mutation($id: ID!, $d: String!) { dispatchEvent(id: $id, departmentCode: $d)"
                " { id } }",
                {"id": event, "d": department},
            )
        seeds.events[name] = event
    for name, grids in (("C1", ["C1"]), ("C3", ["C3"]), ("C1_D1", ["C1", "D1"])):
        notice = {"title": name, "body": "x", "gridCodes": grids, "departmentCode": "health"}
        data = await gql.data(
            "mutation($input: CreateNoticeInput!) { createNotice(input: $input) { id } }",
            {"input": notice},
        )
        seeds.notices[name] = data["createNotice"]["id"]
    for grid in ("G1", "G4"):
        data = await gql.data(
            "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) "
            "{ trackingCode } }",
            {"input": {"kind": "SUGGESTION", "content": "x", "gridCode": grid}},
        )
        seeds.feedback[grid] = data["submitFeedback"]["trackingCode"]
    for resident in world.residents[:4]:  # one in each of G1..G4
        grid = next(code for code, g in world.grids.items() if g.id == resident.grid_id)
        seeds.residents[grid] = to_global_id("Resident", resident.id)
    data = await gql.data(
        'mutation { openEmergencyGrant(input: {reason: "drill", gridCode: "G4", minutes: 5})'
        " { id } }"
    )
    seeds.grant = data["openEmergencyGrant"]["id"]
    return seeds


SNAPSHOT = """{
  events(first: 100) { edges { node { id status version department { code } grid { code } } } }
  notices(first: 100) { edges { node { id status department { code } scope { code } } } }
  residents(first: 100) { totalCount edges { node { id updatedAt grid { code } } } }
  emergencyGrants(first: 100) { edges { node { id closedAt gridCode } } }
}"""


async def _snapshot(gql: GraphQLClient, seeds: Seeds) -> dict[str, Any]:
    data = await gql.data(SNAPSHOT)
    for grid, code in seeds.feedback.items():
        tracked = await gql.data(
            "query($c: String!) { feedback(trackingCode: $c) { status response } }", {"c": code}
        )
        data[f"feedback {grid}"] = tracked
    return data


@dataclass(frozen=True)
class Case:
    what: str
    query: str
    variables: dict[str, Any]


Maker = Callable[[Viewpoint, Profile, Seeds], list[Case]]


def _outside_events(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[str]:
    scopes = profile.write_scopes.get("Event", frozenset())
    if "all" in scopes:
        return []
    outside = []
    for name, event in seeds.events.items():
        grid, _, department = name.partition("_")
        # The grid roles' viewpoints hold C1, which G1 lies under.
        in_grids = "own_grids" in scopes and grid == "G1"
        in_department = "own_department" in scopes and department == view.department
        if not (in_grids or in_department):
            outside.append(event)
    return outside


def _transition(name: str, extra: str = "", values: dict[str, Any] | None = None) -> Maker:
    def make(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
        query = f"mutation($id: ID!) {{ {name}(id: $id{extra}) {{ __typename }} }}"
        return [
            Case(f"{name} {event}", query, {"id": event, **(values or {})})
            for event in _outside_events(view, profile, seeds)
        ]

    return make


def _report_event(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    if "all" in profile.write_scopes["Event"]:
        return []
    report = {"category": "OTHER", "title": "x", "gridCode": "G4"}
    report["reporterResidentId"] = seeds.residents["G1"]
    return [Case("report in G4", REPORT.replace("{ id }", "{ __typename }"), {"input": report})]


NOTICE = "mutation($input: CreateNoticeInput!) { createNotice(input: $input) { __typename } }"


def _create_notice(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    if "all" in profile.write_scopes["Notice"]:
        return []
    cases = [
        Case(
            f"notice for {grids}",
            NOTICE,
            {"input": {"title": "t", "body": "b", "gridCodes": grids}},
        )
        for grids in (["C3"], ["C1", "D1"], ["D1"])
    ]
    if "CreateNoticeInput.departmentCode" not in profile.on_behalf:
        another = {
            "title": "t",
            "body": "b",
            "gridCodes": ["C1"],
            "departmentCode": "public_security",
        }
        cases.append(Case("notice issued by another department", NOTICE, {"input": another}))
    return cases


def _notice_change(name: str) -> Maker:
    def make(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
        if "all" in profile.write_scopes["Notice"]:
            return []
        query = f"mutation($id: ID!) {{ {name}(id: $id) {{ __typename }} }}"
        return [Case(f"{name} {key}", query, {"id": seeds.notices[key]}) for key in ("C3", "C1_D1")]

    return make


def _submit_feedback(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    if "all" in profile.write_scopes["Feedback"]:
        return []
    query = (
        "mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) { __typename } }"
    )
    feedback = {"kind": "SUGGESTION", "content": "x", "gridCode": "G4"}
    return [Case("feedback about G4", query, {"input": feedback})]


def _respond(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    if "all" in profile.write_scopes["Feedback"]:
        return []
    query = (
        'mutation($c: String!) { respondToFeedback(trackingCode: $c, response: "r") '
        "{ __typename } }"
    )
    return [Case("respond to G4's feedback", query, {"c": seeds.feedback["G4"]})]


RESIDENT = {"name": "新居民", "idNumber": "110105199001011234", "address": "某路1号"}


def _create_resident(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    if "all" in profile.write_scopes["Resident"]:
        return []
    query = "mutation($input: ResidentInput!) { createResident(input: $input) { __typename } }"
    return [Case("resident in G4", query, {"input": {**RESIDENT, "gridCode": "G4"}})]


def _update_resident(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    if "all" in profile.write_scopes["Resident"]:
        return []
    query = (
        "mutation($id: ID!, $input: ResidentInput!) { updateResident(id: $id, input: $input) "
        "{ __typename } }"
    )
    return [
        Case(
            "change G4's resident",
            query,
            {"id": seeds.residents["G4"], "input": {"phone": "13900001111"}},
        ),
        Case(
            "move G1's resident to G4",
            query,
            {"id": seeds.residents["G1"], "input": {"gridCode": "G4"}},
        ),
    ]


def _open_grant(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    query = (
        'mutation($g: String!) { openEmergencyGrant(input: {reason: "r", gridCode: $g, '
        "minutes: 5}) { __typename } }"
    )
    levels = {"D1": "district", "S1": "street", "C1": "community", "G1": "grid"}
    return [
        Case(f"grant over {grid}", query, {"g": grid})
        for grid, level in levels.items()
        if level not in profile.grant_levels
    ]


def _close_grant(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
    assert profile.write_scopes["EmergencyGrant"] == {"own"}
    query = "mutation($id: ID!) { closeEmergencyGrant(id: $id) { __typename } }"
    return [Case("close another subject's grant", query, {"id": seeds.grant})]


def _whole_table(type_name: str) -> Maker:
    def make(view: Viewpoint, profile: Profile, seeds: Seeds) -> list[Case]:
        # Policy versions and quarantined records have no grid or department: write:all or
        # nothing, so nothing lies outside.
        assert profile.write_scopes[type_name] == {"all"}
        return []

    return make


MAKERS: dict[str, Maker] = {
    "reportEvent": _report_event,
    "acceptEvent": _transition("acceptEvent"),
    "dispatchEvent": _transition("dispatchEvent", ', departmentCode: "health"'),
    "startEvent": _transition("startEvent"),
    "resolveEvent": _transition("resolveEvent"),
    "closeEvent": _transition("closeEvent"),
    "rejectEvent": _transition("rejectEvent", ', reason: "r"'),
    "reopenEvent": _transition("reopenEvent", ', reason: "r"'),
    "addEventNote": _transition("addEventNote", ', note: "n"'),
    "createNotice": _create_notice,
    "publishNotice": _notice_change("publishNotice"),
    "retractNotice": _notice_change("retractNotice"),
    "submitFeedback": _submit_feedback,
    "respondToFeedback": _respond,
    "createResident": _create_resident,
    "updateResident": _update_resident,
    "openEmergencyGrant": _open_grant,
    "closeEmergencyGrant": _close_grant,
    "changePolicy": _whole_table("PolicyVersion"),
    "rollbackPolicy": _whole_table("PolicyVersion"),
    "discardQuarantined": _whole_table("SyncQuarantineItem"),
    "reconcileRegistration": _whole_table("Resident"),
}


def test_every_mutation_has_a_maker() -> None:
    assert {name.partition(".")[2] for name in WRITTEN} == set(MAKERS)


@pytest.mark.parametrize("role", API_ROLES)
async def test_no_write_reaches_outside_the_write_scope(
    role: str, app: Any, gql: GraphQLClient, world: World, settings: Settings
) -> None:
    seeds = await _seed(gql, world)
    schema = app.state.registry.schema_for(role)
    profile = app.state.registry.profile_for(role)
    view = VIEWPOINTS[role]
    headers = credentials(
        settings, role, subject=view.subject, grids=view.grids, department=view.department
    )
    mutations = schema._schema.mutation_type.fields if schema._schema.mutation_type else {}
    cases = [case for name in mutations for case in MAKERS[name](view, profile, seeds)]
    before = await _snapshot(gql, seeds)
    for case in cases:
        response = await post_graphql(
            app, headers, {"query": case.query, "variables": case.variables}
        )
        body = response.json()
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes and codes <= REFUSED, (case.what, body)
        assert await _snapshot(gql, seeds) == before, case.what


async def test_a_community_admin_changes_only_notices_wholly_in_its_communities(
    app: Any, gql: GraphQLClient, world: World, settings: Settings
) -> None:
    seeds = await _seed(gql, world)
    view = VIEWPOINTS["community_admin"]
    headers = credentials(
        settings, view.role, subject=view.subject, grids=view.grids, department=view.department
    )
    publish = "mutation($id: ID!) { publishNotice(id: $id) { status department { code } } }"
    own = await post_graphql(
        app, headers, {"query": publish, "variables": {"id": seeds.notices["C1"]}}
    )
    assert own.json()["data"]["publishNotice"]["status"] == "PUBLISHED"
    wider = await post_graphql(
        app, headers, {"query": publish, "variables": {"id": seeds.notices["C1_D1"]}}
    )
    error = wider.json()["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"
    created = await post_graphql(
        app,
        headers,
        {
            "query": "mutation($input: CreateNoticeInput!) { createNotice(input: $input) "
            "{ department { code } } }",
            "variables": {"input": {"title": "停水通知", "body": "b", "gridCodes": ["G1"]}},
        },
    )
    # Issued by the caller's own department when none is named.
    assert created.json()["data"]["createNotice"]["department"]["code"] == "community_service"


async def test_attribution_to_a_system_needs_on_behalf(
    app: Any, world: World, settings: Settings
) -> None:
    view = VIEWPOINTS["grid_worker"]
    headers = credentials(
        settings, view.role, subject=view.subject, grids=view.grids, department=view.department
    )
    report = {"category": "OTHER", "title": "t", "gridCode": "G1", "reporterSystem": "12345"}
    response = await post_graphql(app, headers, {"query": REPORT, "variables": {"input": report}})
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "reporterSystem"}
    member = {
        **report,
        "reporterSystem": None,
        "reporterMemberId": to_global_id("Member", world.members[0].id),
    }
    accepted = await post_graphql(app, headers, {"query": REPORT, "variables": {"input": member}})
    assert "errors" not in accepted.json(), accepted.json()


async def test_a_dispatcher_opens_a_grant_over_a_community_but_not_a_street(
    app: Any, world: World, settings: Settings
) -> None:
    headers = credentials(settings, "dispatcher", subject="test:dispatcher")
    query = (
        'mutation($g: String!) { openEmergencyGrant(input: {reason: "火灾", gridCode: $g, '
        "minutes: 30}) { gridCode } }"
    )
    street = await post_graphql(app, headers, {"query": query, "variables": {"g": "S1"}})
    error = street.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["allowedLevels"] == ["community", "grid"]
    community = await post_graphql(app, headers, {"query": query, "variables": {"g": "C1"}})
    assert community.json()["data"]["openEmergencyGrant"]["gridCode"] == "C1"
