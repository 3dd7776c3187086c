#!/usr/bin/env sh
# Creates .venv with Python 3.11+ and installs GridHub into it (with test tools when asked).
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
# Usage: scripts/setup.sh [runtime|test]
set -eu
cd "$(dirname "$0")/.."
extras=${1:-runtime}
uv_version=0.13.8

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
  # uv installs the same pinned packages as pip, fetching them in parallel: a fresh clone's
  # install takes a third of pip's time (CI is always a fresh clone). pip is the fallback.
  if .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$uv_version" &&
    .venv/bin/uv pip install --quiet --python .venv/bin/python -e "$spec"; then
    :
  else
    echo "setup: uv failed; installing with pip" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
  fi
  echo "$want" >"$stamp"
fi

# The browser tests drive Debian's chromium: install it with the test tools when it is missing
# and this machine can (root with apt-get). Elsewhere those tests skip with the reason.
# A CJK font too, or the zh-CN screenshots show boxes instead of characters.
if [ "$extras" = "test" ] && { ! command -v chromium >/dev/null 2>&1 ||
  ! fc-list :lang=zh 2>/dev/null | grep -q .; }; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium and a CJK font for the browser tests" >&2
    packages="chromium fonts-wqy-microhei"
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >/dev/null 2>&1; then
      apt-get update -q >/dev/null 2>&1
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >/dev/null
    fi
  else
    echo "setup: chromium is not installed (needs root and apt-get); browser tests will skip" >&2
  fi
fi
