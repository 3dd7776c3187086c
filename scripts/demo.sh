#!/usr/bin/env sh
# Sets up GridHub, loads demo data into ./gridhub.db (once) and serves http://127.0.0.1:8000/graphql.
# Extra arguments go to `gridhub serve` (e.g. --port 8080).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh runtime
if [ ! -f gridhub.db ]; then
  .venv/bin/gridhub demo
else
  .venv/bin/gridhub db upgrade
fi
exec .venv/bin/gridhub serve "$@"
