"""Concurrent retries of one vote through real gunicorn workers: one Idempotency-Key
makes one ballot, and every retry gets the first answer."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.test_concurrency import (
    FIRST_ADDRESS,
    WORKER_SHARE_DENOMINATOR,
    WORKER_SHARE_NUMERATOR,
    burst,
    create_poll,
    read_tallies,
    recorded,
)

pytestmark = pytest.mark.gunicorn

RETRIES = 50
WORKERS = 2
KEY = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize("duplicate_check", ["none", "cookie_and_ip"])
def test_concurrent_retries_with_one_key_make_one_ballot_and_one_answer(
    gunicorn_server, e2e_database_url, clean_redis, owner_key, database, duplicate_check
):
    capacity = RETRIES * WORKER_SHARE_NUMERATOR // WORKER_SHARE_DENOMINATOR
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                             workers=WORKERS, args=("--worker-connections", str(capacity)))
    poll = create_poll(server.base_url, owner_key, duplicate_check=duplicate_check)
    body = {"choices": [poll["options"][1]["id"]]}
    # Cookie-less clients at distinct addresses: without the key every one would count.
    requests = [({"Idempotency-Key": KEY, "X-Forwarded-For": str(FIRST_ADDRESS + n)}, body)
                for n in range(RETRIES)]

    responses, seconds = asyncio.run(burst(server.base_url, poll["id"], requests))
    print(f"{RETRIES} concurrent retries of one keyed vote ({duplicate_check}): {seconds:.2f} s")

    assert Counter(response.status_code for response in responses) == {201: RETRIES}
    answers = [response.json() for response in responses]
    assert len({answer["vote"]["id"] for answer in answers}) == 1
    assert len({answer["vote"]["receipt"] for answer in answers}) == 1
    firsts = [r for r in responses if "Idempotent-Replayed" not in r.headers]
    assert len(firsts) == 1
    assert all(answer == firsts[0].json() for answer in answers)
    ballot_ids, choices, _claims = recorded(database, poll["id"])
    assert ballot_ids == {answers[0]["vote"]["id"]}
    assert choices == {poll["options"][1]["id"]: 1}
    assert read_tallies(server.base_url, poll["id"])["total_votes"] == 1
