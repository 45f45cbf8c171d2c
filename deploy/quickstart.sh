#!/usr/bin/env bash
# Install, migrate, seed the demo poll and run Pollbox on embedded defaults:
#   bash deploy/quickstart.sh
# (SQLite in ./instance, an in-process Redis stand-in, http://127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8000}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

export FLASK_APP=wsgi
# Readable logs for a person at a terminal (production default: JSON lines).
export LOG_FORMAT="${LOG_FORMAT:-text}"
.venv/bin/flask db upgrade
echo
.venv/bin/flask demo --base-url "http://127.0.0.1:${PORT}"
echo
echo "Serving on http://127.0.0.1:${PORT} (Ctrl-C to stop)"
exec .venv/bin/gunicorn -c deploy/gunicorn.conf.py --bind "127.0.0.1:${PORT}" wsgi:app
