#!/usr/bin/env sh
# Creates .venv with Python 3.11+ and installs GridHub into it (with test tools when asked).
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
# Usage: scripts/setup.sh [runtime|test]
set -eu
cd "$(dirname "$0")/.."
extras=${1:-runtime}

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "GridHub needs Python 3.11 or newer on PATH" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  python=$(find_python)
  "$python" -m venv .venv
fi

spec="."
[ "$extras" = "test" ] && spec=".[test]"
stamp=".venv/.gridhub-installed-$extras"
want=$(cat pyproject.toml | cksum)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
  echo "$want" >"$stamp"
fi
