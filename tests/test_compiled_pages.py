"""The pages' persisted queries (hub/web/operations) answer the same with and without compiled
execution, for the roles that run them, over the marker world: the pages see exactly what the
normal executor would show them. All but the statistics are answered from a plan."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from graphql import OperationDefinitionNode, OperationType, parse

from hub.config import Settings
from tests.conftest import post_graphql
from tests.markers import VIEWPOINTS, MarkerWorld
from tests.policy_clients import credentials

OPEN = ["REPORTED", "ACCEPTED", "DISPATCHED", "IN_PROGRESS", "REOPENED"]
# Who runs each page's queries (by the operation's prefix).
RUNNERS = {"Public": ("public",), "Board": ("dispatcher", "community_admin"), "Audit": ("auditor",)}
# The statistics page reads the published figures: the normal executor answers them.
NOT_PLANNED = {"PublicStatsFigures"}


def persisted_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted(resources.files("hub.web").joinpath("operations").iterdir()):
        text = path.read_text(encoding="utf-8")
        for definition in parse(text).definitions:
            if (
                isinstance(definition, OperationDefinitionNode)
                and definition.operation is OperationType.QUERY
                and definition.name is not None
            ):
                found.append((definition.name.value, text))
    return found


QUERIES = persisted_queries()


def variables_for(name: str, marked: MarkerWorld) -> dict[str, Any]:
    event = marked.rows["eventA1"]
    notice = marked.rows["noticeB"]
    tracked = next(r for r in marked.rows.values() if r.type == "Feedback")
    return {
        "AuditGrants": {"active": False, "first": 20},
        "AuditLog": {"first": 20},
        "AuditPolicyHistory": {"first": 20},
        "AuditPolicyVersion": {"version": 1},
        "BoardEventRef": {"code": event.code},
        "BoardEvents": {
            "filter": {"status": OPEN},
            "overdueFilter": {"status": OPEN, "overdue": True},
        },
        "PublicFeedback": {"trackingCode": tracked.code},
        "PublicGrids": {"level": "grid"},
        "PublicNotice": {"id": notice.global_id},
        "PublicNotices": {"first": 10},
    }.get(name, {})


@pytest.mark.parametrize("name", [name for name, _ in QUERIES])
async def test_each_page_query_answers_the_same_from_its_plan(
    name: str, app: Any, normal: Any, settings: Settings, marked_pair: MarkerWorld
) -> None:
    text = dict(QUERIES)[name]
    roles = next(roles for prefix, roles in RUNNERS.items() if name.startswith(prefix))
    body = {"query": text, "operationName": name, "variables": variables_for(name, marked_pair)}
    for role in roles:
        view = VIEWPOINTS[role]
        headers = credentials(settings, role, grids=view.grids, department=view.department)
        before = app.state.compiled.counts.hits + app.state.compiled.counts.misses
        compiled = await post_graphql(app, headers, body)
        plain = await post_graphql(normal, headers, body)
        assert compiled.status_code == plain.status_code == 200
        assert "errors" not in compiled.json(), compiled.text
        if name in NOT_PLANNED:
            # Each app computes the release at its own instant (asOf); the figures are equal.
            assert _without_as_of(compiled.json()) == _without_as_of(plain.json()), role
        else:
            assert compiled.content == plain.content, (role, compiled.text, plain.text)
        planned = app.state.compiled.counts.hits + app.state.compiled.counts.misses > before
        assert planned is (name not in NOT_PLANNED), (
            name,
            dict(app.state.compiled.counts.fallbacks),
        )


def _without_as_of(body: dict[str, Any]) -> dict[str, Any]:
    published = body["data"]["stats"]["publishedEvents"]
    return {**body, "data": {"stats": {"publishedEvents": {**published, "asOf": None}}}}
