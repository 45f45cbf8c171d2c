"""PostgreSQL stops mid-run: votes answer 503 with Retry-After while it is down, never a
201 without a committed row, and the service recovers by itself once it is back."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import pytest

from tests.faults.helpers import cast, create_poll, recorded, report

pytestmark = pytest.mark.faults

CONCURRENT_VOTERS = 20
BEFORE_STOP_SECONDS = 1.5
DOWN_SECONDS = 3.0
RECOVERY_LIMIT_SECONDS = 10.0
AFTER_RECOVERY_SECONDS = 1.0


def test_database_stopped_mid_run_answers_503_then_recovers(
    gunicorn_server, redis_server, postgres_server, fault_database, database, owner_key
):
    server = gunicorn_server(database_url=fault_database, redis_url=redis_server.url,
                             RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key)
    voters = itertools.count()
    answers: list[tuple[float, float, int, object]] = []  # sent, answered, voter, Answer
    marks: dict[str, float] = {}

    async def voter_loop() -> None:
        while "done" not in marks:
            n = next(voters)
            sent = time.monotonic()
            answer = await cast(server.base_url, poll, n)
            answers.append((sent, time.monotonic(), n, answer))
            if answer.status != 201:
                await asyncio.sleep(0.05)
            elif "started" in marks and "recovered" not in marks and sent >= marks["started"]:
                marks["recovered"] = time.monotonic()

    async def fault() -> None:
        await asyncio.sleep(BEFORE_STOP_SECONDS)
        marks["stopping"] = time.monotonic()
        await asyncio.to_thread(postgres_server.stop, "immediate")
        marks["stopped"] = time.monotonic()
        await asyncio.sleep(DOWN_SECONDS)
        marks["starting"] = time.monotonic()
        await asyncio.to_thread(postgres_server.start)
        marks["started"] = time.monotonic()
        deadline = marks["started"] + RECOVERY_LIMIT_SECONDS + 5
        while "recovered" not in marks and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(AFTER_RECOVERY_SECONDS)
        marks["done"] = time.monotonic()

    async def run() -> None:
        await asyncio.gather(fault(), *(voter_loop() for _ in range(CONCURRENT_VOTERS)))

    asyncio.run(run())

    rows = recorded(database, poll)
    acknowledged = {a.body["vote"]["id"] for _, _, _, a in answers if a.status == 201}
    while_down = [a for sent, done, _, a in answers
                  if sent >= marks["stopped"] and done <= marks["starting"]]
    down_statuses = Counter(a.status for a in while_down)
    statuses = Counter(a.status for _, _, _, a in answers)
    recovery = marks.get("recovered", float("inf")) - marks["started"]
    report("postgres stopped (immediate) for 3 s", votes=len(answers), statuses=dict(statuses),
           while_down=dict(down_statuses), lost=len(acknowledged - rows.keys()),
           rows_without_201=len(rows.keys() - acknowledged),
           recovery_seconds=round(recovery, 2))

    assert down_statuses[503] > 0
    assert set(down_statuses) == {503}, down_statuses
    assert all(a.headers.get("retry-after") for a in while_down)
    assert all(a.body["code"] == "unavailable" for a in while_down)
    assert acknowledged <= rows.keys()  # no 201 without its row
    assert set(statuses) <= {201, 503}, statuses
    assert recovery < RECOVERY_LIMIT_SECONDS
