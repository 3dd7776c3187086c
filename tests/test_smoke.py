from __future__ import annotations

from tests.conftest import GraphQLClient
from tests.world import World


async def test_residents_page_with_grid(gql: GraphQLClient, world: World) -> None:
    data = await gql.data(
        '{ residents(first: 5, filter: {inGrid: "C1"}) { totalCount edges { cursor node { name idNumber gender tags grid { code } } } pageInfo { hasNextPage endCursor } } }'
    )
    page = data["residents"]
    assert page["totalCount"] == 6
    assert [e["node"]["grid"]["code"] for e in page["edges"]] == ["G1", "G2", "G1", "G2", "G1"]
    assert page["pageInfo"]["hasNextPage"] is True


async def test_report_and_accept_event(gql: GraphQLClient, world: World) -> None:
    reported = await gql.data(
        'mutation { reportEvent(input: {category: SANITATION, title: "垃圾堆放", gridCode: "G1", reporterSystem: "12345"}) { id status reporter { __typename ... on ExternalSystem { name } } } }'
    )
    event_id = reported["reportEvent"]["id"]
    accepted = await gql.data(
        "mutation($id: ID!) { acceptEvent(id: $id) { status timeline { action fromStatus toStatus } } }",
        {"id": event_id},
    )
    assert accepted["acceptEvent"]["status"] == "ACCEPTED"
    error = await gql.error(
        "mutation($id: ID!) { closeEvent(id: $id) { status } }", {"id": event_id}
    )
    assert error["extensions"]["code"] == "INVALID_TRANSITION"
