"""How compiled execution decides: which operations it answers from a plan, which it leaves to
the normal executor and why (the counters), how plans are cached, bounded and dropped, and the
switch that turns it off. What it answers is held to the normal executor's bytes by
tests/test_compiled_equivalence.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from hub.api.compiled.execution import PlanCache
from hub.app import create_app
from hub.config import Settings
from hub.events import service as events_service
from tests.conftest import GraphQLClient, post_graphql
from tests.policy_clients import credentials
from tests.world import World

PAGE = "{ residents(first: 3) { edges { cursor node { id name grid { code } } } } }"


def counts(app: Any) -> tuple[int, int, dict[str, int]]:
    found = app.state.compiled.counts
    return found.hits, found.misses, dict(found.fallbacks)


async def post_to(
    application: Any, settings: Settings, body: dict[str, Any], role: str = "superuser"
) -> httpx.Response:
    return await post_graphql(application, credentials(settings, role), body)


class TestPlans:
    async def test_the_first_request_compiles_the_next_ones_reuse(
        self, gql: GraphQLClient, app: Any, world: World
    ) -> None:
        first = await gql.data(PAGE)
        assert counts(app) == (0, 1, {})
        assert await gql.data(PAGE) == first
        assert await gql.data(PAGE) == first
        assert counts(app) == (2, 1, {})
        assert len(first["residents"]["edges"]) == 3

    async def test_skip_and_include_values_pick_their_own_plans(
        self, gql: GraphQLClient, app: Any, world: World
    ) -> None:
        query = """query($tags: Boolean!) {
          residents(first: 2) { nodes { name tags @include(if: $tags) } } }"""
        with_tags = await gql.data(query, {"tags": True})
        without = await gql.data(query, {"tags": False})
        assert all("tags" in node for node in with_tags["residents"]["nodes"])
        assert all("tags" not in node for node in without["residents"]["nodes"])
        assert counts(app) == (0, 2, {})
        assert await gql.data(query, {"tags": False}) == without
        assert counts(app) == (1, 2, {})

    async def test_other_variables_share_a_plan(
        self, gql: GraphQLClient, app: Any, world: World
    ) -> None:
        query = "query($n: Int) { residents(first: $n) { nodes { name } } }"
        assert len((await gql.data(query, {"n": 1}))["residents"]["nodes"]) == 1
        assert len((await gql.data(query, {"n": 4}))["residents"]["nodes"]) == 4
        assert counts(app) == (1, 1, {})

    def test_the_cache_keeps_the_most_recently_used_plans(self) -> None:
        cache = PlanCache(2)
        for key in "abc":
            cache.put(1, key, key)  # type: ignore[arg-type]
        assert len(cache) == 2 and cache.get(1, "a") is None
        assert cache.get(1, "b") == "b"  # now the most recent
        cache.put(1, "d", "d")  # type: ignore[arg-type]
        assert cache.get(1, "c") is None and cache.get(1, "b") == "b"

    def test_a_new_policy_version_drops_every_plan(self) -> None:
        cache = PlanCache(8)
        cache.put(1, "a", "a")  # type: ignore[arg-type]
        assert cache.get(2, "a") is None
        assert len(cache) == 0

    async def test_plans_are_bounded_in_the_app(
        self, settings: Settings, db: Any, world: World
    ) -> None:
        application = create_app(replace(settings, compiled_plans=2))
        async with application.router.lifespan_context(application):
            for size in (1, 2, 3, 1):
                body = {"query": f"{{ departments(first: {size}) {{ nodes {{ code }} }} }}"}
                assert "errors" not in (await post_to(application, settings, body)).json()
            assert len(application.state.compiled.plans) == 2
            # The first was dropped as the least recently used, and compiled again.
            assert counts(application) == (0, 4, {})

    async def test_a_policy_change_drops_the_plans_of_the_old_policy(
        self, app: Any, settings: Settings, world: World
    ) -> None:
        health = credentials(settings, "health")
        phones = {"query": "{ residents(first: 1) { nodes { name phone } } }"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            before = (await http.post("/graphql", json=phones, headers=health)).json()
            assert before["data"]["residents"]["nodes"][0]["phone"].count("*") == 4
            assert len(app.state.compiled.plans) == 1
            change = """mutation($remove: [String!]!) {
              changePolicy(input: { add: [], remove: $remove, reason: "test" }) { version } }"""
            admin = credentials(settings, "policy_admin", subject="admin")
            changed = await http.post(
                "/graphql",
                json={
                    "query": change,
                    "variables": {"remove": ["p, health, Resident.phone, read_masked, allow"]},
                },
                headers=admin,
            )
            assert changed.json()["data"]["changePolicy"]["version"] == 2
            after = (await http.post("/graphql", json=phones, headers=health)).json()
        # The phone is gone from health's schema: the old plan would still have read it.
        assert after["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        names = {"query": "{ residents(first: 1) { nodes { name } } }"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert "errors" not in (await http.post("/graphql", json=names, headers=health)).json()
        assert app.state.compiled.plans.version == 2
        assert len(app.state.compiled.plans) == 1


class TestFallbacks:
    """What the compiler does not answer runs on the normal executor, counted by reason."""

    async def test_mutations_introspection_and_other_fields_fall_back_with_their_reason(
        self, gql: GraphQLClient, app: Any, world: World
    ) -> None:
        await gql.data("{ __schema { queryType { name } } }")
        await gql.data("{ stats { eventCounts(groupBy: [CATEGORY]) { count } } me { role } }")
        body = await gql(
            'mutation { submitFeedback(input: {kind: SUGGESTION, content: "x"}) { kind } }'
        )
        assert "errors" not in body
        # With nothing the compiler answers, the whole operation is the normal executor's,
        # under the first root field's reason.
        assert counts(app) == (0, 0, {"introspection": 1, "field Query.stats": 1, "mutation": 1})

    async def test_a_failing_operation_is_answered_by_the_normal_executor(
        self, gql: GraphQLClient, app: Any, world: World
    ) -> None:
        error = await gql.error('{ residents(first: 1, after: "garbage") { nodes { name } } }')
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["path"] == ["residents"]
        error = await gql.error("query($n: Int!) { residents(first: $n) { nodes { name } } }")
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert counts(app)[2] == {"error: BAD_USER_INPUT": 1, "variables": 1}

    async def test_a_null_in_a_non_null_field_bubbles_up_exactly_as_without_plans(
        self,
        app: Any,
        normal: Any,
        settings: Settings,
        world: World,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        db = app.state.db
        async with db.transaction() as session:
            await events_service.report(
                session,
                report=events_service.EventReport(
                    category="sanitation", title="t", grid_code="G1", reporter_system="x"
                ),
                actor="test",
            )
        # Event.overdue is Boolean!: a resolver that yields null makes graphql-core null the
        # event, then its non-null list, then the whole connection.
        monkeypatch.setattr(events_service, "is_overdue", lambda *_a, **_k: None)
        body = {"query": "{ events(first: 5) { nodes { code overdue } } }"}
        compiled = (await post_to(app, settings, body)).json()
        plain = (await post_to(normal, settings, body)).json()
        # A fault of ours: each answer names its own correlation id for the log.
        for answer in (compiled, plain):
            assert answer["errors"][0]["extensions"].pop("correlationId")
        assert compiled == plain
        assert compiled["data"] is None
        assert compiled["errors"][0]["path"] == ["events", "nodes", 0, "overdue"]
        assert counts(app)[2] == {"rows: null in a non-null field": 1}


class TestEdges:
    """Cases a review found: each answers as the normal executor does."""

    async def test_masks_follow_the_schema_even_when_the_access_is_of_an_older_policy(
        self,
        app: Any,
        normal: Any,
        settings: Settings,
        world: World,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A new policy installed between a request's Access and its schema: the plan masks
        (and notes the read) as the new schema's own resolvers do, not as the old profile."""
        body = {"query": "{ members(first: 3) { nodes { name } } }"}
        for application in (app, normal):
            registry = application.state.registry
            old = registry.profile_for("dispatcher")
            text = registry.file_policy_text().replace(
                "p, dispatcher, Member.*, read, allow",
                "p, dispatcher, Member.*, read, allow\n"
                "p, dispatcher, Member.name, read, deny\n"
                "p, dispatcher, Member.name, read_masked, allow",
            )
            registry.install(registry.compile(text, version=registry.version + 1))
            fresh = registry.access_for

            def stale(viewer: Any, *, now: Any = None, fresh: Any = fresh, old: Any = old) -> Any:
                return replace(fresh(viewer, now=now), profile=old)

            monkeypatch.setattr(registry, "access_for", stale)
        dispatcher = credentials(settings, "dispatcher")
        answers = []
        for application in (app, normal):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                answers.append(await http.post("/graphql", json=body, headers=dispatcher))
        assert answers[0].content == answers[1].content
        names = [n["name"] for n in answers[0].json()["data"]["members"]["nodes"]]
        assert names and all("*" in name for name in names)
        assert counts(app)[1] == 1

    async def test_an_invalid_directive_value_is_the_normal_executors_to_report(
        self, app: Any, normal: Any, settings: Settings, world: World
    ) -> None:
        query = """query($v: Boolean = true) {
          grids(first: 1) { nodes { code name @include(if: $v) } } }"""
        body = {"query": query, "variables": {"v": None}}
        compiled = (await post_to(app, settings, body)).json()
        plain = (await post_to(normal, settings, body)).json()
        for answer in (compiled, plain):
            for error in answer["errors"]:
                error["extensions"].pop("correlationId", None)
        assert compiled == plain
        assert counts(app)[2] == {"error: GRAPHQL_ERROR": 1}
        # Another value of the same variable compiles: the refusal was not cached.
        assert "errors" not in (await post_to(app, settings, {**body, "variables": {}})).json()
        assert counts(app)[1] == 1

    async def test_a_row_selected_for_its_typename_alone_still_selects_its_key(
        self, gql: GraphQLClient, app: Any, world: World
    ) -> None:
        assert await gql.data("{ policyVersion(version: 1) { __typename } }") == {
            "policyVersion": {"__typename": "PolicyVersion"}
        }
        assert counts(app) == (0, 1, {})


class TestDelegation:
    """Root fields of a query are independent: beside ones the plan answers, the others run on
    graphql-core alone, and the answers are put together in the query's order."""

    QUERY = """query($me: Boolean!) {
      events(first: 3) { nodes { code } }
      ...Who
      departments(first: 2) { nodes { code } }
      kinds: __type(name: "EventCategory") { enumValues { name } }
    }
    fragment Who on Query { me @include(if: $me) { role } }"""

    async def test_the_others_run_on_graphql_core_and_the_answer_is_the_same(
        self, app: Any, normal: Any, settings: Settings, world: World
    ) -> None:
        for me in (True, False):
            body = {"query": self.QUERY, "variables": {"me": me}}
            compiled = await post_to(app, settings, body)
            assert compiled.content == (await post_to(normal, settings, body)).content
            assert list(compiled.json()["data"]) == (
                ["events", "me", "departments", "kinds"]
                if me
                else ["events", "departments", "kinds"]
            )
        found = app.state.compiled.counts
        assert (found.misses, dict(found.fallbacks)) == (2, {})
        assert dict(found.delegated) == {"field Query.me": 1, "introspection": 2}

    async def test_an_error_in_a_delegated_field_leaves_the_whole_operation_to_it(
        self, app: Any, normal: Any, settings: Settings, world: World
    ) -> None:
        body = {"query": '{ events(first: 1) { nodes { code } } node(id: "bad") { id } }'}
        compiled = await post_to(app, settings, body)
        assert compiled.content == (await post_to(normal, settings, body)).content
        assert compiled.json()["errors"][0]["path"] == ["node"]
        assert counts(app)[2] == {"rows: a delegated root field failed": 1}


class TestSwitch:
    async def test_switched_off_every_operation_runs_on_the_normal_executor(
        self, settings: Settings, db: Any, world: World
    ) -> None:
        application = create_app(replace(settings, compiled_execution=False))
        async with application.router.lifespan_context(application):
            body = {"query": PAGE}
            assert "errors" not in (await post_to(application, settings, body)).json()
            assert counts(application) == (0, 0, {})
            assert len(application.state.compiled.plans) == 0

    def test_the_environment_switches_it(self) -> None:
        assert Settings.from_env({}).compiled_execution is True
        assert Settings.from_env({"GRIDHUB_COMPILED_EXECUTION": "0"}).compiled_execution is False
        assert Settings.from_env({"GRIDHUB_COMPILED_PLANS": "64"}).compiled_plans == 64


class TestCounters:
    """Operators read the counters through GraphQL, as the policy lets them."""

    QUERY = """{ compiledExecution { enabled plans maxPlans hits misses fallbacks
      fallbackReasons { reason count } delegatedFields { reason count } } }"""

    async def test_the_operator_reads_hits_misses_and_fallbacks_by_reason(
        self, gql: GraphQLClient, app: Any, settings: Settings, world: World
    ) -> None:
        await gql.data(PAGE)
        await gql.data(PAGE)
        await gql.data("{ __schema { queryType { name } } }")
        transport = httpx.ASGITransport(app=app)
        operator = credentials(settings, "operator")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = (
                await http.post("/graphql", json={"query": self.QUERY}, headers=operator)
            ).json()
        stats = body["data"]["compiledExecution"]
        # The counters' own query is no list: it is one more fallback, counted before it reads.
        assert stats == {
            "enabled": True,
            "plans": 3,
            "maxPlans": settings.compiled_plans,
            "hits": 1,
            "misses": 1,
            "fallbacks": 2,
            "fallbackReasons": [
                {"reason": "introspection", "count": 1},
                {"reason": "field Query.compiledExecution", "count": 1},
            ],
            "delegatedFields": [],
        }

    @pytest.mark.parametrize("role", ["public", "dispatcher", "public_security", "auditor"])
    async def test_nobody_else_reads_them(
        self, app: Any, settings: Settings, world: World, role: str
    ) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = (
                await http.post(
                    "/graphql", json={"query": self.QUERY}, headers=credentials(settings, role)
                )
            ).json()
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
