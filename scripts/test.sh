#!/usr/bin/env sh
# Sets up GridHub with its test tools and runs the whole suite: lint, layer contracts, types and
# pytest on SQLite and PostgreSQL. Extra arguments go to pytest (e.g. -k pagination).
# Tests needing PostgreSQL, Redis or Node.js skip with a reason when those are missing;
# GRIDHUB_REQUIRE_SERVICES=1 (set by .ci/run) turns those skips into failures.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh test
.venv/bin/ruff format --check --quiet hub tests bench
.venv/bin/ruff check --quiet hub tests bench
.venv/bin/lint-imports --no-cache >/dev/null
.venv/bin/mypy --no-error-summary
exec .venv/bin/pytest "$@"
