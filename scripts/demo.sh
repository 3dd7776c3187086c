#!/usr/bin/env sh
# Sets up GridHub, loads demo data into ./gridhub.db (once) and serves http://127.0.0.1:8000/
# (the public site, /dispatch, /audit and /graphql).
# Extra arguments go to `gridhub serve` (e.g. --port 8080).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh runtime
if [ ! -f gridhub.db ]; then
  .venv/bin/gridhub demo
else
  .venv/bin/gridhub db upgrade
fi
# Without a credential a request is the public role; print one token per role to try.
echo "Tokens (Authorization: Bearer ..., or paste one at /signin; valid 8 hours):"
for role in dispatcher community_admin grid_worker health public_security auditor policy_admin; do
  case $role in
    # The community office issues notices and answers feedback as its own department.
    grid_worker | community_admin) extra="--grid C01 --department community_service" ;;
    health) extra="--department health" ;;
    public_security) extra="--department public_security" ;;
    *) extra="" ;;
  esac
  # shellcheck disable=SC2086
  echo "  $role: $(.venv/bin/gridhub token $role --sub "demo:$role" --ttl 8h $extra)"
done
exec .venv/bin/gridhub serve "$@"
