"""Crash-safe claims through real gunicorn, on SQLite and PostgreSQL, with the database
held by a table lock so that votes are certain to wait between their claim and their
commit: a voter whose request died is never told they already voted, and a request that
is only slow is never doubled."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from service.infra import keys
from service.infra.redis.lease import LEASE_MS
from tests.faults.helpers import (
    cast,
    create_poll,
    doubled,
    pending,
    recorded,
    report,
    retry_until_settled,
    worker_pids,
)

pytestmark = pytest.mark.faults

VOTERS = 200
WORKERS = 2
RELEASED_WITHIN_SECONDS = 5
STALL_SECONDS = 10


@pytest.fixture(params=["sqlite", "postgresql"])
def fault_database(request, fault_database, tmp_path) -> str:
    """These scenarios run on SQLite too: an empty, migrated SQLite file, or the fault
    tier's PostgreSQL (the `database` engine and `owner_key` follow)."""
    if request.param == "postgresql":
        return fault_database
    path = tmp_path / "pollbox.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


class DatabaseHeld:
    """Another client holding the ballots table: every vote's write waits until release."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            self.connection = sqlite3.connect(url.removeprefix("sqlite:///"),
                                              isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")  # readers go on (WAL), writers wait
        else:
            self.engine = sa.create_engine(url)
            self.connection = self.engine.connect()
            self.transaction = self.connection.begin()
            self.connection.exec_driver_sql("LOCK TABLE ballots IN EXCLUSIVE MODE")

    def release(self) -> None:
        if isinstance(self.connection, sqlite3.Connection):
            self.connection.execute("ROLLBACK")
            self.connection.close()
        else:
            self.transaction.rollback()
            self.connection.close()
            self.engine.dispose()


def claims(redis_client, poll: dict) -> int:
    return len(redis_client.keys(keys.seen(poll["id"], "*")))


async def claims_settle(redis_client, poll: dict, *, quiet: float = 1.0,
                        give_up_after: float = 15) -> int:
    """Wait until the votes sent have claimed what they can (no new claim for `quiet`)."""
    started, seen, since = time.monotonic(), -1, time.monotonic()
    while time.monotonic() - started < give_up_after:
        now_seen = claims(redis_client, poll)
        if now_seen != seen:
            seen, since = now_seen, time.monotonic()
        elif now_seen and time.monotonic() - since >= quiet:
            return now_seen
        await asyncio.sleep(0.05)
    return seen


def integrity_totals(base_url: str, poll: dict, owner_key: str) -> dict:
    response = httpx.get(f"{base_url}/api/v1/polls/{poll['id']}/integrity", timeout=10,
                         headers={"Authorization": f"Bearer {owner_key}"})
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def code(answer) -> str:
    return f"{answer.status} {(answer.body or {}).get('code', '')}".strip()


def test_a_worker_killed_between_claim_and_commit_never_has_its_voters_told_they_voted(
    gunicorn_server, redis_server, fault_database, database, owner_key
):
    server = gunicorn_server(database_url=fault_database, redis_url=redis_server.url,
                             workers=WORKERS, RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key)  # one vote ever per address
    victim = worker_pids(server.process.pid)[0]
    redis_client = redis_server.client()

    async def scenario():
        held = DatabaseHeld(fault_database)
        first = {n: asyncio.create_task(cast(server.base_url, poll, n)) for n in range(VOTERS)}
        claimed = await claims_settle(redis_client, poll)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.sleep(0.5)  # the victim's connections are reset
        lost = [n for n, task in first.items() if task.done() and task.result().status is None]
        at_once = {n: asyncio.create_task(cast(server.base_url, poll, n)) for n in lost}
        # Their answers while the database is still held (an admitted retry waits for it).
        await asyncio.wait(at_once.values(), timeout=2)
        held.release()
        first_answers = {n: await task for n, task in first.items()}
        at_once_answers = {n: await task for n, task in at_once.items()}
        still = [n for n, answer in at_once_answers.items() if pending(answer)]
        later, _ = await retry_until_settled(server.base_url, poll, still)
        settled_after = time.monotonic() - killed_at if still else 0.0
        return claimed, first_answers, at_once_answers, later, settled_after

    claimed, first, at_once, later, settled_after = asyncio.run(scenario())
    rows = recorded(database, poll)
    totals = integrity_totals(server.base_url, poll, owner_key)
    report(f"claims of a killed worker, database held ({fault_database.split(':')[0]})",
           voters=VOTERS, claimed_when_killed=claimed, lost=len(at_once),
           at_once=dict(Counter(map(code, at_once.values()))),
           later=dict(Counter(code(answers[-1]) for answers in later.values())),
           settled_after_kill=f"{settled_after:.1f}s", ballots=len(rows),
           doubled=doubled(rows), released_dead_claims=totals["released_dead_claims"],
           refused_without_ballot=VOTERS - len(rows))

    assert at_once, "the kill cost no request: nothing was tested"
    # At once: told to wait, or admitted; a duplicate only where a ballot was recorded.
    assert set(map(code, at_once.values())) <= {"201", "409 vote_pending", "409 duplicate_vote"}
    for n, answer in at_once.items():
        if code(answer) == "409 duplicate_vote":
            assert not any(code(a) == "201" for a in later.get(n, []))
    # Within 5 s of the kill, every retry is admitted or a true duplicate.
    assert settled_after <= RELEASED_WITHIN_SECONDS
    assert all(code(answers[-1]) in {"201", "409 duplicate_vote"} for answers in later.values())
    # Every voter has exactly one ballot: nobody was locked out, nobody counted twice.
    assert doubled(rows) == 0
    assert len(rows) == VOTERS
    acknowledged = {a.body["vote"]["id"] for a in first.values() if a.status == 201}
    acknowledged |= {a.body["vote"]["id"] for a in at_once.values() if a.status == 201}
    acknowledged |= {answers[-1].body["vote"]["id"] for answers in later.values()
                     if answers[-1].status == 201}
    assert acknowledged <= rows.keys()


@pytest.mark.parametrize("window", [None, 3600], ids=["one-vote-ever", "windowed"])
def test_a_request_stalled_by_the_database_is_never_released_early_and_doubled(
    gunicorn_server, redis_server, fault_database, database, owner_key, window
):
    server = gunicorn_server(database_url=fault_database, redis_url=redis_server.url,
                             workers=WORKERS, RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key, vote_window_seconds=window)
    redis_client = redis_server.client()

    async def scenario():
        held = DatabaseHeld(fault_database)
        stalled = asyncio.create_task(cast(server.base_url, poll, 0))
        await claims_settle(redis_client, poll, quiet=0.2)
        claimed_at = time.monotonic()
        duplicates = []
        # The same voter again while the first waits: before, around and well after the
        # point where a lease nobody refreshed would have lapsed.
        for after in (0.5, LEASE_MS / 1000 + 1, STALL_SECONDS - 2):
            await asyncio.sleep(claimed_at + after - time.monotonic())
            duplicates.append(asyncio.create_task(cast(server.base_url, poll, 0)))
        await asyncio.sleep(claimed_at + STALL_SECONDS - time.monotonic())
        held.release()
        return await stalled, [await task for task in duplicates]

    first, duplicates = asyncio.run(scenario())
    rows = recorded(database, poll)
    answers = [first, *duplicates]
    totals = integrity_totals(server.base_url, poll, owner_key)
    report(f"a vote stalled {STALL_SECONDS} s by the database, then duplicates "
           f"({fault_database.split(':')[0]}, {'windowed' if window else 'one vote ever'})",
           answers=[code(answer) for answer in answers], ballots=len(rows),
           released_dead_claims=totals["released_dead_claims"])

    assert len(rows) == 1
    assert [answer.status for answer in answers].count(201) == 1
    # Answered while nothing was committed: never "you already voted".
    assert code(duplicates[0]) == "409 vote_pending"
    assert {code(answer) for answer in answers if answer.status != 201} <= {
        "409 vote_pending", "409 duplicate_vote"}
    if fault_database.startswith("postgresql"):
        # A worker waiting on PostgreSQL keeps its lease alive: the duplicates are told
        # to wait, and no claim is taken for dead.
        assert [code(answer) for answer in duplicates] == ["409 vote_pending"] * 3
        assert totals["released_dead_claims"] == 0
