"""Operations through real gunicorn workers: metrics add up across worker processes,
logs are JSON lines tagged with the request id, and the periodic reconcile runs."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import redis

from service.infra import keys

pytestmark = [pytest.mark.gunicorn,
              pytest.mark.parametrize("e2e_database_url", ["sqlite"], indirect=True)]

VOTES = 40
WORKERS = 2
RECONCILE_SECONDS = 1
RECONCILE_WAIT_SECONDS = 10


def create_poll(base_url: str, owner_key: str) -> dict:
    response = httpx.post(f"{base_url}/api/v1/polls", timeout=10,
                          headers={"Authorization": f"Bearer {owner_key}"},
                          json={"question": "Q?", "options": ["A", "B"],
                                "duplicate_check": "ip"})
    assert response.status_code == 201, response.text
    return response.json()


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


def test_metrics_add_up_across_workers_and_logs_are_json(
    gunicorn_server, e2e_database_url, clean_redis, owner_key
):
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                             workers=WORKERS, RECONCILE_INTERVAL_SECONDS="0")
    poll = create_poll(server.base_url, owner_key)
    request_ids = set()
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for n in range(VOTES):
            # A new connection each time, so both workers answer some.
            response = client.post(f"/api/v1/polls/{poll['id']}/votes",
                                   json={"choices": [poll["options"][0]["id"]]},
                                   headers={"X-Forwarded-For": f"198.18.1.{n}",
                                            "X-Request-ID": f"vote-{n}", "Connection": "close"})
            assert response.status_code == 201
            assert response.headers["X-Request-ID"] == f"vote-{n}"
        refused = client.post(f"/api/v1/polls/{poll['id']}/votes",
                              json={"choices": [poll["options"][0]["id"]]},
                              headers={"X-Forwarded-For": "198.18.1.0"})
        assert refused.status_code == 409
        texts = [client.get("/metrics", headers={"Connection": "close"}).text for _ in range(6)]

    for text in texts:  # whichever worker answers, it reports every worker's counts
        assert metric(text, "pollbox_votes_total", code="none", outcome="accepted") == VOTES
        assert metric(text, "pollbox_votes_total", code="duplicate_vote",
                      outcome="rejected") == 1
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == "service.requests"]
    for entry in requests:
        request_ids.add(entry.get("request_id"))
        assert {"time", "level", "message", "method", "path", "status", "duration_ms"} <= \
            entry.keys()
    assert {f"vote-{n}" for n in range(VOTES)} <= request_ids
    assert "198.18.1." not in server.logs()


def test_the_periodic_job_repairs_a_drifted_tally(
    gunicorn_server, e2e_database_url, clean_redis, owner_key
):
    server = gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                             workers=WORKERS, RECONCILE_INTERVAL_SECONDS=str(RECONCILE_SECONDS))
    poll = create_poll(server.base_url, owner_key)
    vote = httpx.post(f"{server.base_url}/api/v1/polls/{poll['id']}/votes", timeout=10,
                      json={"choices": [poll["options"][1]["id"]]},
                      headers={"X-Forwarded-For": "198.18.2.1"})
    assert vote.status_code == 201
    store = redis.Redis.from_url(clean_redis)
    store.hset(keys.tally(poll["id"]), mapping={"total": 7, f"o:{poll['options'][0]['id']}": 6})

    deadline = time.monotonic() + RECONCILE_WAIT_SECONDS
    # A rebuild drops the tally before it writes it again: no total is "not yet".
    while (time.monotonic() < deadline
           and int(store.hget(keys.tally(poll["id"]), "total") or -1) != 1):
        time.sleep(0.1)

    assert int(store.hget(keys.tally(poll["id"]), "total")) == 1
    assert int(store.hget(keys.tally(poll["id"]), f"o:{poll['options'][0]['id']}") or 0) == 0
    assert "tally drift" in server.logs()
