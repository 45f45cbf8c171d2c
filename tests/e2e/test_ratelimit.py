"""Vote rate limits through real gunicorn workers: one count in Redis for all of them."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.test_concurrency import (
    WORKER_SHARE_DENOMINATOR,
    WORKER_SHARE_NUMERATOR,
    burst,
    create_poll,
)

pytestmark = pytest.mark.gunicorn

LIMIT = 5
ATTEMPTS = 40
WORKERS = 2


def test_workers_share_one_moving_window_per_address_and_poll(
    gunicorn_server, e2e_database_url, clean_redis, owner_key
):
    capacity = ATTEMPTS * WORKER_SHARE_NUMERATOR // WORKER_SHARE_DENOMINATOR
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                             workers=WORKERS, args=("--worker-connections", str(capacity)),
                             RATELIMIT_VOTES=f"{LIMIT} per minute")
    poll = create_poll(server.base_url, owner_key, duplicate_check="none")
    body = {"choices": [poll["options"][0]["id"]]}
    same_address = [({"X-Forwarded-For": "198.18.7.7"}, body)] * ATTEMPTS

    responses, _seconds = asyncio.run(burst(server.base_url, poll["id"], same_address))

    assert Counter(response.status_code for response in responses) == {
        201: LIMIT, 429: ATTEMPTS - LIMIT}
    limited = [response for response in responses if response.status_code == 429]
    assert all(1 <= int(response.headers["Retry-After"]) <= 60 for response in limited)
    assert {response.json()["code"] for response in limited} == {"rate_limited"}
