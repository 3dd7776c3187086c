"""Service availability for tests: skip with a reason, or fail when CI demands every service."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_SERVICES = os.environ.get("GRIDHUB_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get(
    "GRIDHUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("GRIDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need(service: str, host: str, port: int) -> None:
    """Skip (or, with GRIDHUB_REQUIRE_SERVICES=1, fail) when a service is not listening."""
    if reachable(host, port):
        return
    message = f"{service} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and GRIDHUB_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def need_postgres() -> None:
    need("PostgreSQL", "127.0.0.1", 5432)


def need_redis() -> None:
    need("Redis", "127.0.0.1", 6379)
