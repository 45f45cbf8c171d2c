"""schemathesis against the served OpenAPI document, with an owner's key: no 5xx, and
every answer conforms to the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.helpers import create_poll, report

pytestmark = pytest.mark.faults

ST = Path(sys.executable).parent / "st"
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
MAX_EXAMPLES = 10
TIMEOUT_SECONDS = 150
SEED = 20261129
# The tallies stream documents its text/event-stream body as a string; schemathesis reads
# each event as an object ({event, data, retry}) and refuses it (ST108). Left out until
# the stream's OpenAPI entry describes its events.
# Webhook creation resolves the URL's host (SSRF guard) and deliveries send to it: fuzzed
# URLs would mean DNS queries and requests to arbitrary hosts (tests/test_webhooks.py
# covers those endpoints with a loopback receiver).
EXCLUDED_PATHS = r"/tallies/stream$|/webhooks"


def test_the_api_conforms_to_its_openapi_document(
    gunicorn_server, redis_server, fault_database, owner_key, tmp_path
):
    server = gunicorn_server(database_url=fault_database, redis_url=redis_server.url,
                             RECONCILE_INTERVAL_SECONDS="0")
    create_poll(server.base_url, owner_key)  # something real for the list endpoints
    junit = tmp_path / "schemathesis.xml"
    result = subprocess.run(
        [str(ST), "run", f"{server.base_url}/api/v1/openapi.json",
         "--header", f"Authorization: Bearer {owner_key}",
         "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
         "--phases", "examples,coverage,fuzzing", "--exclude-path-regex", EXCLUDED_PATHS,
         "--request-timeout", "10", "--no-color", "--generation-database", "none",
         "--report", "junit", "--report-junit-path", str(junit)],
        # In the test's folder: schemathesis keeps a cache (.schemathesis/) where it runs.
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False,
    )
    summary = [line for line in result.stdout.splitlines() if "passed" in line or "failed" in line]
    report("schemathesis", checks=CHECKS, exit_code=result.returncode,
           summary=summary[-1].strip() if summary else "?")
    assert result.returncode == 0, _failures(result.stdout)


def _failures(output: str) -> str:
    """The failures section of schemathesis' report, long lines cut."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "FAILURES" in line), 0)
    return "\n".join(line[:300] for line in lines[start:])
