#!/usr/bin/env bash
# Install what the tests need and run the whole suite, then the fault tier:
#   bash tests/run.sh            (or with pytest arguments: only that pytest run)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

# Browser tests (tests/e2e/test_widget_browser.py): Debian's Chromium, never a browser
# downloaded by `playwright install`, and axe-core from npm in a cache outside the repo.
# The proxy's tests (tests/e2e/test_proxy.py): Debian's nginx, run by the tests on their
# own ports (the tests do not use the package's own service, which Debian may start).
packages=""
[ -x /usr/bin/chromium ] || packages="$packages chromium"
[ -x /usr/sbin/nginx ] || packages="$packages nginx-light"
if [ -n "$packages" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # shellcheck disable=SC2086 # one word per package
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages
fi
AXE_PREFIX="${XDG_CACHE_HOME:-$HOME/.cache}/pollbox/npm"
export POLLBOX_AXE_JS="$AXE_PREFIX/node_modules/axe-core/axe.min.js"
if [ ! -f "$POLLBOX_AXE_JS" ] && command -v npm >/dev/null; then
  npm install --no-save --silent --prefix "$AXE_PREFIX" axe-core@4
fi

if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# Style, complexity (ruff: C901 at 12) and the architecture (import-linter's contracts in
# pyproject.toml: the layers only import downwards, no import circle).
.venv/bin/ruff check .
.venv/bin/lint-imports
# Two processes (pytest-xdist), each with its own Redis databases and PostgreSQL schemas.
.venv/bin/python -m pytest -n 2
# The fault tier (about a minute and a half): its own Redis, PostgreSQL and gunicorn
# processes on free ports, killed and stopped on purpose; the shared services are untouched.
exec .venv/bin/python -m pytest -m faults tests/faults
