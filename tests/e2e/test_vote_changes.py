"""Concurrent changes of one vote through real gunicorn workers: whatever order 100 PUTs
on one receipt commit in, the tallies end equal to the database (the record)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from contextlib import AsyncExitStack

import httpx
import pytest

from tests.e2e.test_concurrency import (
    CONTEXT,
    REQUEST_TIMEOUT_SECONDS,
    address,
    create_poll,
    option_votes,
    read_tallies,
    rebuild_repeatedly,
    recorded,
    voter_client,
)

pytestmark = pytest.mark.gunicorn

CHANGES = 100
OTHER_VOTERS = 20
WORKERS = 2


@pytest.fixture
def server(gunicorn_server, e2e_database_url, clean_redis, owner_key):
    # Each worker takes at most 3/4 of the burst: both workers change the vote.
    return gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                           workers=WORKERS,
                           args=("--worker-connections", str(CHANGES * 3 // 4)))


def cast(base_url: str, poll_id: str, choices: list[int], n: int,
         context: str | None = None) -> dict:
    body = {"choices": choices, **({"context": context} if context else {})}
    response = httpx.post(f"{base_url}/api/v1/polls/{poll_id}/votes", json=body,
                          headers={"X-Forwarded-For": address(n)},
                          timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 201, response.text
    return response.json()["vote"]


async def change_burst(base_url: str, receipt: str, bodies: list[dict], alongside=None):
    """Send every change of the receipt at once; the responses and the wall time."""
    ssl_context = ssl.create_default_context()
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(voter_client(base_url, ssl_context))
                   for _ in bodies]
        await asyncio.gather(*(client.get("/healthz") for client in clients))
        started = time.perf_counter()
        changes = asyncio.gather(*(client.put(f"/api/v1/receipts/{receipt}", json=body)
                                   for client, body in zip(clients, bodies, strict=True)))
        if alongside is None:
            responses = await changes
        else:
            responses, _ = await asyncio.gather(changes, alongside())
        return responses, time.perf_counter() - started


@pytest.mark.parametrize("rebuilds", [False, True], ids=["live-tally", "rebuilt-meanwhile"])
def test_concurrent_changes_of_one_vote_leave_the_tallies_equal_to_the_database(
        server, owner_key, database, clean_redis, rebuilds):
    poll = create_poll(server.base_url, owner_key, duplicate_check="ip", allow_change=True,
                       kind="multiple")
    option_ids = [option["id"] for option in poll["options"]]
    for n in range(OTHER_VOTERS):
        cast(server.base_url, poll["id"], [option_ids[n % 3]], n + 1,
             CONTEXT if n % 2 else None)
    mine = cast(server.base_url, poll["id"], [option_ids[0]], 0, CONTEXT)
    # Alternating changes: one option, then two, then another one...
    bodies = [{"choices": [option_ids[1]]} if n % 2 else
              {"choices": [option_ids[0], option_ids[2]]} for n in range(CHANGES)]
    rounds = []

    async def rebuilding():
        rounds.append(await rebuild_repeatedly(server.base_url, clean_redis, poll["id"]))

    responses, seconds = asyncio.run(change_burst(
        server.base_url, mine["receipt"], bodies, rebuilding if rebuilds else None))
    rebuilt = rounds[0] if rounds else 0
    print(f"{CHANGES} concurrent changes of one vote, {rebuilt} tally rebuilds meanwhile: "
          f"{seconds:.2f} s, {CHANGES / seconds:.0f} changes/s")

    assert Counter(response.status_code for response in responses) == {200: CHANGES}
    assert {response.json()["vote"]["id"] for response in responses} == {mine["id"]}
    ballot_ids, choices, _ = recorded(database, poll["id"])
    tallies = read_tallies(server.base_url, poll["id"])
    assert tallies["total_votes"] == len(ballot_ids) == OTHER_VOTERS + 1
    assert option_votes(tallies) == {option: choices.get(option, 0) for option in option_ids}
    in_context = httpx.get(f"{server.base_url}/api/v1/polls/{poll['id']}/tallies",
                           params={"context": CONTEXT}).json()
    assert in_context["total_votes"] == OTHER_VOTERS // 2 + 1
    # The last change committed is the vote now, in both tallies.
    mine_now = {choice["id"] for choice in
                httpx.get(f"{server.base_url}/api/v1/receipts/{mine['receipt']}").json()["choices"]}
    others = Counter(option_ids[n % 3] for n in range(OTHER_VOTERS))
    assert option_votes(tallies) == {option: others[option] + (option in mine_now)
                                     for option in option_ids}
    others_in_context = Counter(option_ids[n % 3] for n in range(OTHER_VOTERS) if n % 2)
    assert option_votes(in_context) == {option: others_in_context[option]
                                        + (option in mine_now) for option in option_ids}
    integrity = httpx.get(f"{server.base_url}/api/v1/polls/{poll['id']}/integrity",
                          headers={"Authorization": f"Bearer {owner_key}"}).json()
    assert integrity["totals"]["changed"] == CHANGES
