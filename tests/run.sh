#!/usr/bin/env bash
# Install what the tests need and run the whole suite: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

exec .venv/bin/python -m pytest "$@"
