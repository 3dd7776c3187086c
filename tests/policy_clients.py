"""Test identities: the superuser policy for core tests, tokens and headers for any role."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub.api.roles import catalogue_of
from hub.api.schema import build_schema
from hub.authz import Access, Viewer
from hub.authz.identity import issue_token
from hub.authz.policy import EXPECTATIONS_FILE, MODEL_FILE, POLICY_FILE, Policy
from hub.authz.profile import compile_profile
from hub.config import DEFAULT_POLICY_DIR, Settings

TEST_SECRET = "test-secret-for-gridhub-tests-only-0123456789"
SUPERUSER = "superuser"
# The grid levels of the test world and the demo (levels are data; the superuser may open a
# grant on any of them).
GRID_LEVELS = ("district", "street", "community", "grid")
PURPOSE = "automated test"


def superuser_lines() -> list[str]:
    catalogue = catalogue_of(build_schema()._schema)
    lines = [f"p, {SUPERUSER}, {name}.*, read, allow" for name in catalogue.types]
    lines += [f"p, {SUPERUSER}, {name}.*, set, allow" for name in catalogue.inputs]
    lines += [f"p, {SUPERUSER}, {op}, call, allow" for op in catalogue.operations]
    lines += [f"p, {SUPERUSER}, {name}, rows:all, allow" for name in catalogue.scoped]
    lines += [f"p, {SUPERUSER}, {name}, write:all, allow" for name in catalogue.scoped]
    lines += [f"p, {SUPERUSER}, {name}, on_behalf, allow" for name in catalogue.attributions]
    lines += [f"p, {SUPERUSER}, EmergencyGrant, grant:{level}, allow" for level in GRID_LEVELS]
    return lines


def write_policy_dir(directory: Path) -> Path:
    for name in (MODEL_FILE, EXPECTATIONS_FILE):
        shutil.copy(DEFAULT_POLICY_DIR / name, directory / name)
    text = (DEFAULT_POLICY_DIR / POLICY_FILE).read_text(encoding="utf-8")
    extra = "\n# --- superuser: tests of the core only ---\n" + "\n".join(superuser_lines())
    (directory / POLICY_FILE).write_text(text + extra + "\n", encoding="utf-8")
    return directory


def token(
    settings: Settings,
    role: str,
    *,
    subject: str | None = None,
    grids: Sequence[str] = (),
    department: str | None = None,
) -> str:
    return issue_token(
        settings, role=role, subject=subject or f"test:{role}", grids=grids, department=department
    )


def credentials(
    settings: Settings,
    role: str,
    *,
    subject: str | None = None,
    grids: Sequence[str] = (),
    department: str | None = None,
    purpose: str | None = PURPOSE,
) -> dict[str, str]:
    """Headers of a request acting as `role` (public: no Authorization header)."""
    headers = {}
    if role != "public":
        bearer = token(settings, role, subject=subject, grids=grids, department=department)
        headers["Authorization"] = f"Bearer {bearer}"
    if purpose is not None:
        headers["X-GridHub-Purpose"] = purpose
    return headers


def access_as(role: str, policy_dir: Path, **viewer: Any) -> Access:
    """An Access for `role` under the policy in `policy_dir`, without an app."""
    policy = Policy.from_directory(policy_dir)
    catalogue = catalogue_of(build_schema()._schema)
    profile = compile_profile(policy, catalogue, role)
    return Access(Viewer(subject=f"test:{role}", role=role, **viewer), profile)
