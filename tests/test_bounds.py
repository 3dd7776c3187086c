"""Statements for the record are bounded: break-glass and policy reasons, and purposes, are one
line of at most a few hundred characters (hub.validation.statement), and a purpose header sent
as raw UTF-8 is stored as the text it is, not as its latin-1 reading."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from hub.authz.models import AuditRecord, EmergencyGrant
from hub.config import Settings
from hub.db import Database
from hub.validation import MAX_STATEMENT_LENGTH
from tests.conftest import post_graphql
from tests.policy_clients import credentials
from tests.world import World

OPEN_GRANT = """mutation($reason: String!) {
  openEmergencyGrant(input: {reason: $reason, gridCode: "S2", minutes: 30}) { id }
}"""
CHANGE_POLICY = """mutation($reason: String!) {
  changePolicy(input: {add: [], remove: ["p, health, Resident.phone, read_masked, allow"],
                       reason: $reason}) { version }
}"""
ROLLBACK_POLICY = """mutation($reason: String!) {
  rollbackPolicy(version: 1, reason: $reason) { version }
}"""
READ_ID_NUMBERS = "{ residents(first: 1) { nodes { idNumber } } }"

TOO_LONG = "x" * 100_000
BAD_REASONS = {
    "too long": (TOO_LONG, "reason is longer than 500 characters"),
    "just over": ("y" * (MAX_STATEMENT_LENGTH + 1), "reason is longer than 500 characters"),
    "a line break": ("gas leak\nforged line", "without control characters"),
    "an escape": ("gas leak \x1b[2J", "without control characters"),
    "a C1 control": ("gas \x85 leak", "without control characters"),
    "blank": ("   ", "reason must not be empty"),
}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body.get("errors"), body
    return body["errors"][0]  # type: ignore[no-any-return]


async def grants(db: Database) -> list[EmergencyGrant]:
    async with db.reader() as session:
        return list((await session.scalars(select(EmergencyGrant))).all())


class TestOpenEmergencyGrant:
    @pytest.mark.parametrize("case", sorted(BAD_REASONS))
    async def test_a_bad_reason_is_refused(
        self, case: str, app: Any, world: World, db: Database, settings: Settings
    ) -> None:
        reason, message = BAD_REASONS[case]
        police = credentials(settings, "public_security", subject="officer")
        response = await post_graphql(
            app, police, {"query": OPEN_GRANT, "variables": {"reason": reason}}
        )
        error = error_of(response)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["field"] == "reason"
        assert message in error["message"]
        assert await grants(db) == []

    async def test_a_reason_of_the_largest_size_is_kept(
        self, app: Any, world: World, db: Database, settings: Settings
    ) -> None:
        reason = "燃" * MAX_STATEMENT_LENGTH
        police = credentials(settings, "public_security", subject="officer")
        response = await post_graphql(
            app, police, {"query": OPEN_GRANT, "variables": {"reason": reason}}
        )
        assert "errors" not in response.json(), response.json()
        assert [g.reason for g in await grants(db)] == [reason]


class TestPolicyReasons:
    @pytest.mark.parametrize("query", [CHANGE_POLICY, ROLLBACK_POLICY])
    @pytest.mark.parametrize("case", ["too long", "a line break"])
    async def test_a_bad_reason_is_refused(
        self, case: str, query: str, app: Any, world: World, settings: Settings
    ) -> None:
        reason, message = BAD_REASONS[case]
        admin = credentials(settings, "policy_admin", subject="admin")
        response = await post_graphql(app, admin, {"query": query, "variables": {"reason": reason}})
        error = error_of(response)
        assert error["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": "reason",
            **({"maxLength": MAX_STATEMENT_LENGTH} if case == "too long" else {}),
        }
        assert message in error["message"]
        assert app.state.registry.version == 1


class TestPurpose:
    @pytest.mark.parametrize(
        "header",
        [quote("家访\n伪造"), quote("家访\x00"), "%1B%5B2J"],
        ids=["line break", "NUL", "escape"],
    )
    async def test_a_header_with_control_characters_is_refused(
        self, header: str, app: Any, world: World, settings: Settings
    ) -> None:
        police = credentials(settings, "public_security", purpose=None)
        response = await post_graphql(
            app, {**police, "X-GridHub-Purpose": header}, {"query": READ_ID_NUMBERS}
        )
        # Refused before anything runs: a 400 (hub.api.http), with the reason.
        assert response.status_code == 400
        error = error_of(response)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "purpose must be one line of text, without control characters" in error["message"]

    async def test_an_extension_with_control_characters_is_refused(
        self, app: Any, world: World, settings: Settings
    ) -> None:
        police = credentials(settings, "public_security", purpose=None)
        body = {"query": READ_ID_NUMBERS, "extensions": {"purpose": "家访\r\nx"}}
        error = error_of(await post_graphql(app, police, body))
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "purpose"}

    async def test_a_long_purpose_is_refused(
        self, app: Any, world: World, settings: Settings
    ) -> None:
        police = credentials(settings, "public_security", purpose=None)
        body = {"query": READ_ID_NUMBERS, "extensions": {"purpose": TOO_LONG}}
        error = error_of(await post_graphql(app, police, body))
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "purpose is longer than 200 characters" in error["message"]

    @pytest.mark.parametrize("header", ["家访".encode(), quote("家访").encode()])
    async def test_a_utf8_header_lands_in_the_log_as_sent(
        self, header: bytes, app: Any, world: World, db: Database, settings: Settings
    ) -> None:
        police: dict[str, Any] = credentials(settings, "public_security", purpose=None)
        response = await post_graphql(
            app, {**police, "X-GridHub-Purpose": header}, {"query": READ_ID_NUMBERS}
        )
        assert "errors" not in response.json(), response.json()
        async with db.reader() as session:
            purposes = (await session.scalars(select(AuditRecord.purpose))).all()
        assert purposes == ["家访"]

    async def test_a_header_that_is_not_utf8_is_refused(
        self, app: Any, world: World, settings: Settings
    ) -> None:
        police: dict[str, Any] = credentials(settings, "public_security", purpose=None)
        latin1 = "café".encode("latin-1")
        response = await post_graphql(
            app, {**police, "X-GridHub-Purpose": latin1}, {"query": READ_ID_NUMBERS}
        )
        assert response.status_code == 400
        error = error_of(response)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "percent-encode" in error["message"]
