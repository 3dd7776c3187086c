"""Concurrent writes to one row, through the API, on both backends.

Each test fires N identical-looking mutations at once (asyncio.gather against the in-process app;
every request has its own database session and transaction) and checks that the database decided
exactly one outcome: one winner and N-1 clean INVALID_TRANSITION answers for one-way steps, and
for tag replacement no server error and a final state equal to one request's, not a mixture.
Rounds repeat the race, so an interleaving that slips through once is caught by another.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hub.api.ids import to_global_id
from tests.conftest import GraphQLClient
from tests.world import World

N = 6
ROUNDS = 3
DEPARTMENTS = ["health", "civil_affairs", "environment"]

SUBMIT = (
    "mutation($content: String!) { submitFeedback(input: {kind: COMPLAINT, content: $content}) "
    "{ trackingCode } }"
)
RESPOND = (
    "mutation($code: String!, $response: String!, $dept: String!) { respondToFeedback("
    "trackingCode: $code, response: $response, departmentCode: $dept) "
    "{ status response respondedAt responder { code } } }"
)
FEEDBACK = (
    "query($code: String!) { feedback(trackingCode: $code) "
    "{ status response respondedAt responder { code } } }"
)
CREATE_NOTICE = (
    'mutation { createNotice(input: {title: "停水通知", body: "明日停水", '
    'departmentCode: "health", gridCodes: ["C1"]}) { id } }'
)
NOTICE_FIELDS = "{ status publishedAt retractedAt }"
PUBLISH = "mutation($id: ID!) { publishNotice(id: $id) " + NOTICE_FIELDS + " }"
RETRACT = "mutation($id: ID!) { retractNotice(id: $id) " + NOTICE_FIELDS + " }"
NOTICE = "query($id: ID!) { notice(id: $id) " + NOTICE_FIELDS + " }"
UPDATE_TAGS = (
    "mutation($id: ID!, $tags: [String!]!) { updateResident(id: $id, input: {tags: $tags}) "
    "{ tags } }"
)
RESIDENT = "query($id: ID!) { resident(id: $id) { tags } }"


def one_winner(results: list[dict[str, Any]], field: str) -> tuple[int, dict[str, Any]]:
    """The index and data of the single success; every other answer is INVALID_TRANSITION."""
    winners = [n for n, body in enumerate(results) if not body.get("errors")]
    assert len(winners) == 1, results
    for n, body in enumerate(results):
        if n == winners[0]:
            continue
        codes = [error["extensions"]["code"] for error in body["errors"]]
        assert codes == ["INVALID_TRANSITION"], body
    return winners[0], results[winners[0]]["data"][field]


async def test_concurrent_responses_to_feedback_one_wins(gql: GraphQLClient, world: World) -> None:
    for round_ in range(ROUNDS):
        submitted = await gql.data(SUBMIT, {"content": f"噪音扰民 {round_}"})
        code = submitted["submitFeedback"]["trackingCode"]
        # Half type the code as read over the phone: the same feedback, so the same race.
        typed = [code, f" {code.lower()} "]
        attempts = [
            {
                "code": typed[n % 2],
                "response": f"答复{n}",
                "dept": DEPARTMENTS[n % len(DEPARTMENTS)],
            }
            for n in range(N)
        ]
        results = await asyncio.gather(*(gql(RESPOND, attempt) for attempt in attempts))
        n, won = one_winner(list(results), "respondToFeedback")
        assert won["status"] == "RESPONDED"
        assert won["response"] == attempts[n]["response"]
        assert won["responder"] == {"code": attempts[n]["dept"]}
        # What is stored is the winner's answer, not a later loser's overwrite.
        assert (await gql.data(FEEDBACK, {"code": code}))["feedback"] == won


async def test_concurrent_publish_and_retract_one_wins(gql: GraphQLClient, world: World) -> None:
    for _ in range(ROUNDS):
        notice_id = (await gql.data(CREATE_NOTICE))["createNotice"]["id"]
        published = await asyncio.gather(*(gql(PUBLISH, {"id": notice_id}) for _ in range(N)))
        _, won = one_winner(list(published), "publishNotice")
        assert won["status"] == "PUBLISHED" and won["retractedAt"] is None
        # The stored publication time is the winner's: no loser wrote its own over it.
        assert (await gql.data(NOTICE, {"id": notice_id}))["notice"] == won

        retracted = await asyncio.gather(*(gql(RETRACT, {"id": notice_id}) for _ in range(N)))
        _, won_retract = one_winner(list(retracted), "retractNotice")
        assert won_retract["status"] == "RETRACTED"
        assert won_retract["publishedAt"] == won["publishedAt"]
        assert (await gql.data(NOTICE, {"id": notice_id}))["notice"] == won_retract


TAG_SETS = [
    ["elderly", "living_alone"],
    ["pregnant"],
    ["disabled", "low_income", "key_care"],
    ["veteran", "elderly"],
    ["chronic_illness", "unemployed", "living_alone"],
    [],
]


async def test_concurrent_tag_replacements_leave_one_requests_tags(
    gql: GraphQLClient, world: World
) -> None:
    expected = [sorted(tags) for tags in TAG_SETS]
    # More rounds than elsewhere: the collision needs two replacements to interleave exactly.
    for resident in world.residents[: 3 * ROUNDS]:
        resident_id = to_global_id("Resident", resident.id)
        results = await asyncio.gather(
            *(gql(UPDATE_TAGS, {"id": resident_id, "tags": tags}) for tags in TAG_SETS)
        )
        for body in results:
            # Each replacement is a whole, valid request: none may fail, least of all with a
            # server error (a primary-key collision between interleaved replacements).
            assert not body.get("errors"), body
        final = (await gql.data(RESIDENT, {"id": resident_id}))["resident"]["tags"]
        assert sorted(final) in expected, final
