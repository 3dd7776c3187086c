"""The Node.js tools in this folder, installed on first use (`npm ci` from package-lock.json).

Without node/npm the tests that need them skip with a reason, or fail when
GRIDHUB_REQUIRE_SERVICES=1 (CI), like the database and Redis services in tests/services.py.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.services import REQUIRE_SERVICES

HERE = Path(__file__).parent
MIN_NODE = (20, 19)  # jsdom 29; graphql-http's audit needs the global fetch (18+)


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason + " and GRIDHUB_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def _installed_pins_match() -> bool:
    """node_modules holds exactly the versions package.json pins (else `npm ci` refreshes it)."""
    wanted = json.loads((HERE / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        installed = HERE / "node_modules" / name / "package.json"
        if not installed.is_file() or json.loads(installed.read_text())["version"] != version:
            return False
    return True


@functools.cache
def _prepare() -> tuple[str | None, str]:
    """(node executable, "") when usable, else (None, why not). Runs `npm ci` at most once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "Node.js and npm are not on PATH"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    found = tuple(int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    if found < MIN_NODE:
        wanted = ".".join(map(str, MIN_NODE))
        return None, f"Node.js {version.stdout.strip()} is older than {wanted}"
    if not _installed_pins_match():
        install = subprocess.run(
            [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if install.returncode != 0 or not _installed_pins_match():
            pytest.fail(f"npm ci in {HERE} failed:\n{install.stdout}\n{install.stderr}")
    return node, ""


def node_command(script: str) -> list[str]:
    """`node tests/http_audit/<script>`, ready to run; skips or fails when it cannot be."""
    node, reason = _prepare()
    if node is None:
        _unavailable(reason)
    assert node is not None
    return [node, str(HERE / script)]
