"""A gunicorn worker is SIGKILLed under load: no acknowledged vote is lost, and the voters
who got no answer and retry (as the widget does, while told `vote_pending`) are each
counted once: never twice, and never refused for a vote that was not recorded."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import pytest

from service.infra import keys
from service.tallies import counts as tallies
from tests.faults.conftest import run_flask
from tests.faults.helpers import (
    burst,
    create_poll,
    doubled,
    recorded,
    recorded_counts,
    report,
    retry_until_settled,
    worker_pids,
)

pytestmark = pytest.mark.faults

VOTERS = 1000
WORKERS = 2
KILL_AFTER_ANSWERS = 200


def test_worker_killed_under_load_loses_and_doubles_no_vote(
    gunicorn_server, redis_server, fault_database, database, owner_key
):
    server = gunicorn_server(database_url=fault_database, redis_url=redis_server.url,
                             workers=WORKERS, RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key)
    workers = worker_pids(server.process.pid)
    assert len(workers) == WORKERS
    victim = workers[0]

    result = asyncio.run(burst(server.base_url, poll, range(VOTERS),
                               fault=lambda: os.kill(victim, signal.SIGKILL),
                               fault_after=KILL_AFTER_ANSWERS))
    unanswered = [n for n, answer in result.answers.items() if answer.status is None]

    tries, settled_in = asyncio.run(retry_until_settled(server.base_url, poll, unanswered))
    retried = {n: answers[-1] for n, answers in tries.items()}
    rows = recorded(database, poll)
    acknowledged = set(result.accepted().values()) | {
        a.body["vote"]["id"] for a in retried.values() if a.status == 201}
    reconciled = run_flask("reconcile", poll["id"], database_url=fault_database,
                           redis_url=redis_server.url)
    stored = tallies.Counts.from_hash(redis_server.client().hgetall(keys.tally(poll["id"])))
    retry_statuses = Counter(
        f"{answer.status} {(answer.body or {}).get('code', '')}".strip()
        for answers in tries.values() for answer in answers)

    locked_out = VOTERS - len(rows)
    report("gunicorn worker SIGKILL under load", votes=VOTERS,
           in_flight_at_kill=result.in_flight_at_fault, statuses=dict(result.statuses()),
           retried=dict(retry_statuses), settled_in=f"{settled_in:.1f}s",
           lost=len(acknowledged - rows.keys()),
           doubled=doubled(rows), rows=len(rows), refused_without_ballot=locked_out,
           reconcile=reconciled.stdout.strip())
    assert result.in_flight_at_fault > 0
    assert acknowledged <= rows.keys()
    assert doubled(rows) == 0
    assert set(result.statuses()) <= {201, None}
    # A retry is accepted when the lost request never committed, refused as a duplicate
    # when it did, and told to wait while that is not known yet.
    assert set(retry_statuses) <= {"201", "409 duplicate_vote", "409 vote_pending"}
    assert not any(answer.status == 409 and answer.body["code"] == "vote_pending"
                   for answer in retried.values())
    assert locked_out == 0  # every voter's one vote is recorded
    assert reconciled.returncode == 0, reconciled.stderr
    assert stored.total == len(rows)
    assert {o: n for o, n in stored.options.items() if n} == recorded_counts(database, poll)
