"""The committed API contract in schema/ must match what the code serves, role by role."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import parse, validate

from hub.api.registry import SchemaRegistry
from hub.api.schema import build_schema
from hub.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SDL = ROOT / "schema" / "gridhub.graphql"
ROLES = ROOT / "schema" / "roles"
REGENERATE = "gridhub schema export schema"
ROLE_LINE = re.compile(r"^# role: (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    # The default policy files, exactly as shipped (not the tests' superuser copy).
    return SchemaRegistry(build_schema(), Settings())


def test_committed_sdl_matches_the_code() -> None:
    served = build_schema().as_str() + "\n"
    committed = SDL.read_text(encoding="utf-8")
    assert committed == served, f"schema/ drifted from the code: run `{REGENERATE}` and review"


def test_every_default_role_has_its_committed_sdl(registry: SchemaRegistry) -> None:
    committed = {path.stem for path in ROLES.glob("*.graphql")}
    assert committed == {role.replace(":", "-") for role in registry.roles}
    for role in registry.roles:
        served = registry.schema_for(role).as_str() + "\n"
        path = ROLES / f"{role.replace(':', '-')}.graphql"
        assert path.read_text(encoding="utf-8") == served, (
            f"schema/roles/{path.name} drifted: run `{REGENERATE}` and review"
        )


def test_cli_prints_the_same_sdl(registry: SchemaRegistry) -> None:
    def printed(*args: str) -> str:
        command = [sys.executable, "-m", "hub.cli", "schema", "print", *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    assert printed() == build_schema().as_str() + "\n"
    assert printed("--role", "health") == registry.schema_for("health").as_str() + "\n"


def test_example_operations_validate_against_their_roles_schema(
    registry: SchemaRegistry,
) -> None:
    examples = sorted((ROOT / "schema" / "examples").glob("*.graphql"))
    assert examples, "schema/examples holds the documented example operations"
    for path in examples:
        text = path.read_text(encoding="utf-8")
        role = ROLE_LINE.search(text)
        assert role, f"{path.name} names the role it runs as (# role: ...)"
        schema = registry.schema_for(role.group(1))._schema
        errors = validate(schema, parse(text))
        assert not errors, f"{path.name} as {role.group(1)}: {errors}"
