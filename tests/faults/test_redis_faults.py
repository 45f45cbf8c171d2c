"""Redis dies or never answers: votes are still accepted once each, none is lost, and the
tallies come back equal to the database."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.infra import keys
from service.tallies import counts as tallies
from tests.faults.conftest import free_port, run_flask
from tests.faults.helpers import (
    api_tallies,
    burst,
    create_poll,
    doubled,
    recorded,
    recorded_counts,
    report,
)

pytestmark = pytest.mark.faults

VOTERS = 1000
# Redis is killed once this many of the burst's votes have been answered.
KILL_AFTER_ANSWERS = 150
DUPLICATE_VOTERS = 200
UNREACHABLE_VOTERS = 300


def test_redis_killed_mid_burst_loses_no_acknowledged_vote(
    gunicorn_server, redis_server, fault_database, database, owner_key
):
    server = gunicorn_server(database_url=fault_database, redis_url=redis_server.url,
                             RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key)

    result = asyncio.run(burst(server.base_url, poll, range(VOTERS), fault=redis_server.kill,
                               fault_after=KILL_AFTER_ANSWERS))

    rows = recorded(database, poll)
    accepted = result.accepted()
    lost = set(accepted.values()) - rows.keys()
    unacknowledged_rows = len(rows) - len(set(accepted.values()) & rows.keys())
    statuses = result.statuses()

    redis_server.start()  # empty: SIGKILL took every key with it
    again = asyncio.run(burst(server.base_url, poll, range(DUPLICATE_VOTERS)))
    reconciled = run_flask("reconcile", poll["id"], database_url=fault_database,
                           redis_url=redis_server.url)
    stored = tallies.Counts.from_hash(redis_server.client().hgetall(keys.tally(poll["id"])))
    rows_after = recorded(database, poll)

    report("redis SIGKILL mid-burst", votes=VOTERS, in_flight_at_kill=result.in_flight_at_fault,
           statuses=dict(statuses), lost=len(lost), doubled=doubled(rows_after),
           rows_without_201=unacknowledged_rows,
           duplicates_after_restart=dict(again.statuses()), reconcile=reconciled.stdout.strip())
    assert result.in_flight_at_fault > 0
    assert not lost
    assert set(statuses) <= {201}, statuses
    assert again.statuses() == {409: DUPLICATE_VOTERS}
    assert reconciled.returncode == 0, reconciled.stderr
    assert len(rows_after) == len(rows) == VOTERS
    assert doubled(rows_after) == 0
    assert stored.total == len(rows_after)
    assert {o: n for o, n in stored.options.items() if n} == recorded_counts(database, poll)
    assert api_tallies(server.base_url, poll) == recorded_counts(database, poll)


def test_unreachable_redis_still_accepts_votes_once_each_with_right_tallies(
    gunicorn_server, fault_database, database, owner_key
):
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    server = gunicorn_server(database_url=fault_database, redis_url=nothing_there,
                             RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key)

    first = asyncio.run(burst(server.base_url, poll, range(UNREACHABLE_VOTERS)))
    again = asyncio.run(burst(server.base_url, poll, range(0, UNREACHABLE_VOTERS, 3)))
    rows = recorded(database, poll)
    ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text

    report("redis unreachable", votes=UNREACHABLE_VOTERS, statuses=dict(first.statuses()),
           duplicates=dict(again.statuses()), rows=len(rows), doubled=doubled(rows),
           lost=len(set(first.accepted().values()) - rows.keys()))
    assert first.statuses() == {201: UNREACHABLE_VOTERS}
    assert again.statuses() == {409: len(range(0, UNREACHABLE_VOTERS, 3))}
    assert set(first.accepted().values()) == rows.keys()
    assert doubled(rows) == 0
    assert api_tallies(server.base_url, poll) == recorded_counts(database, poll)
    assert sum(recorded_counts(database, poll).values()) == UNREACHABLE_VOTERS
    assert ready.status_code == 200
    assert ready.json()["redis"] == "degraded"
    assert 'pollbox_redis_fallbacks_total{operation="checking for a duplicate vote"}' in metrics
    # Logged once per incident and process, not once per request.
    warnings = [line for line in server.logs().splitlines()
                if "Redis unavailable while" in line]
    assert 1 <= len(warnings) <= 2 * 2  # per worker: at most the start, plus one flap
