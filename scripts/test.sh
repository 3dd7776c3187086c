#!/usr/bin/env sh
# Sets up GridHub with its test tools and runs the whole suite: lint, layer contracts, types and
# pytest on SQLite and PostgreSQL. Extra arguments go to pytest (e.g. -k pagination).
# Tests needing PostgreSQL, Redis or Node.js skip with a reason when those are missing;
# GRIDHUB_REQUIRE_SERVICES=1 (set by .ci/run) turns those skips into failures.
# pytest runs on GRIDHUB_TEST_WORKERS processes (pytest-xdist; default 2, 0 runs in this one);
# tests/conftest.py says what runs together on one worker.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh test
.venv/bin/ruff format --check --quiet hub tests bench
.venv/bin/ruff check --quiet hub tests bench
.venv/bin/lint-imports --no-cache >/dev/null

# mypy checks beside pytest: each waits on something (the tests on databases, servers and the
# browser) while the other computes. Its findings are printed after pytest's, and fail the run.
types_log=$(mktemp)
.venv/bin/mypy --no-error-summary >"$types_log" 2>&1 &
types_pid=$!
trap 'kill "$types_pid" 2>/dev/null || true; rm -f "$types_log"' INT TERM
trap 'rm -f "$types_log"' EXIT

tests_status=0
.venv/bin/pytest -n "${GRIDHUB_TEST_WORKERS:-2}" --dist loadgroup "$@" || tests_status=$?
types_status=0
wait "$types_pid" || types_status=$?
if [ "$types_status" -ne 0 ]; then
  cat "$types_log" >&2
  echo "mypy failed (exit $types_status)" >&2
  [ "$tests_status" -ne 0 ] || tests_status=1
fi
exit "$tests_status"
