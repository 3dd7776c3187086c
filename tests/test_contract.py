"""The committed API contract in schema/ must match what the code serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hub.api.schema import build_schema

ROOT = Path(__file__).resolve().parent.parent
SDL = ROOT / "schema" / "gridhub.graphql"
REGENERATE = "gridhub schema print > schema/gridhub.graphql"


def test_committed_sdl_matches_the_code() -> None:
    served = build_schema().as_str() + "\n"
    committed = SDL.read_text(encoding="utf-8")
    assert committed == served, f"schema/ drifted from the code: run `{REGENERATE}` and review"


def test_cli_prints_the_same_sdl() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "schema", "print"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert printed == build_schema().as_str() + "\n"


def test_example_operations_validate_against_the_schema() -> None:
    from graphql import parse, validate

    schema = build_schema()._schema
    examples = sorted((ROOT / "schema" / "examples").glob("*.graphql"))
    assert examples, "schema/examples holds the documented example operations"
    for path in examples:
        errors = validate(schema, parse(path.read_text(encoding="utf-8")))
        assert not errors, f"{path.name}: {errors}"
