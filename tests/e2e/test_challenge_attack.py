"""Bot protection through real gunicorn workers: a simulated attack switches an `auto`
poll's proof of work on in every worker and quiet switches it off; one solution sent
200 times at once counts at most once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from service.web.voter import VOTER_COOKIE
from tests.e2e.test_concurrency import burst, create_poll, read_tallies, voter_cookie
from tests.test_challenge import payload

pytestmark = pytest.mark.gunicorn

LEAST_REFUSALS = 20
QUIET_SECONDS = 3
ATTACK_ATTEMPTS = 40
SAME_SOLUTION_VOTES = 200
TIMEOUT_SECONDS = 30
# Near the end of a minute the attack could straddle two of them (each counted apart).
MINUTE_MARGIN_SECONDS = 5


def network(n: int) -> str:
    """An address in the n-th /64 of the documentation prefix: one per attempt, as a
    script that rotates IPv6 proxies looks."""
    return f"2001:db8:{n // 0x10000:x}:{n % 0x10000:x}::1"


def vote(base_url: str, poll: dict, *, cookie: str, address: str, **body) -> httpx.Response:
    return httpx.post(f"{base_url}/api/v1/polls/{poll['id']}/votes",
                      json={"choices": [poll["options"][0]["id"]], **body},
                      headers={"Cookie": f"{VOTER_COOKIE}={voter_cookie(cookie)}",
                               "X-Forwarded-For": address},
                      timeout=TIMEOUT_SECONDS)


def solved(base_url: str, poll: dict) -> str:
    response = httpx.get(f"{base_url}/api/v1/polls/{poll['id']}/challenge",
                         timeout=TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return payload(response.json())


def challenge_on_in_every_worker(base_url: str, poll_id: str) -> set[bool]:
    """What the tallies say, asked often enough to reach both workers."""
    return {read_tallies(base_url, poll_id)["challenge"] for _ in range(8)}


@pytest.fixture
def server(gunicorn_server, e2e_database_url, clean_redis):
    return gunicorn_server(database_url=e2e_database_url, redis_url=clean_redis,
                           CHALLENGE_AUTO_MIN_REFUSALS=str(LEAST_REFUSALS),
                           CHALLENGE_AUTO_QUIET_SECONDS=str(QUIET_SECONDS))


def test_an_attack_from_many_networks_switches_auto_on_everywhere_and_quiet_off(
    server, owner_key
):
    poll = create_poll(server.base_url, owner_key, challenge="auto", duplicate_check="cookie")
    assert challenge_on_in_every_worker(server.base_url, poll["id"]) == {False}
    if time.time() % 60 > 60 - MINUTE_MARGIN_SECONDS:
        time.sleep(60 - time.time() % 60)

    attempts = [vote(server.base_url, poll, cookie="script", address=network(n))
                for n in range(ATTACK_ATTEMPTS)]

    statuses = Counter(response.status_code for response in attempts)
    codes = Counter(r.json()["code"] for r in attempts if r.status_code != 201)
    # One ballot; the first LEAST_REFUSALS duplicates switch it on; from then on the
    # script's attempts lack a proof of work.
    assert statuses[201] == 1
    assert codes["duplicate_vote"] == LEAST_REFUSALS
    assert codes["challenge_required"] == ATTACK_ATTEMPTS - 1 - LEAST_REFUSALS
    assert challenge_on_in_every_worker(server.base_url, poll["id"]) == {True}
    newcomer = vote(server.base_url, poll, cookie="newcomer", address="192.0.2.10")
    assert newcomer.status_code == 403 and newcomer.json()["code"] == "challenge_required"
    with_work = vote(server.base_url, poll, cookie="patient", address="192.0.2.11",
                     altcha=solved(server.base_url, poll))
    assert with_work.status_code == 201, with_work.text
    assert "looks attacked" in server.logs()

    time.sleep(QUIET_SECONDS + 1)

    assert challenge_on_in_every_worker(server.base_url, poll["id"]) == {False}
    later = vote(server.base_url, poll, cookie="later", address="192.0.2.12")
    assert later.status_code == 201, later.text
    assert "quiet again" in server.logs()
    integrity = httpx.get(f"{server.base_url}/api/v1/polls/{poll['id']}/integrity",
                          headers={"Authorization": f"Bearer {owner_key}"},
                          timeout=TIMEOUT_SECONDS).json()
    rejected = integrity["totals"]["rejected"]
    assert rejected["duplicate_vote"]["total"] == LEAST_REFUSALS
    assert rejected["challenge_failed"] == ATTACK_ATTEMPTS - 1 - LEAST_REFUSALS + 1


def test_one_solution_sent_by_200_voters_at_once_counts_at_most_once(server, owner_key):
    poll = create_poll(server.base_url, owner_key, challenge="pow", duplicate_check="cookie")
    solution = solved(server.base_url, poll)
    body = {"choices": [poll["options"][0]["id"]], "altcha": solution}
    requests = [({"Cookie": f"{VOTER_COOKIE}={voter_cookie(f'bot-{n}')}",
                  "X-Forwarded-For": network(n)}, body) for n in range(SAME_SOLUTION_VOTES)]

    responses, _ = asyncio.run(burst(server.base_url, poll["id"], requests))

    statuses = Counter(response.status_code for response in responses)
    assert statuses[201] <= 1
    assert statuses[201] + statuses[403] == SAME_SOLUTION_VOTES
    assert {r.json()["code"] for r in responses if r.status_code == 403} == {
        "challenge_required"}
    assert read_tallies(server.base_url, poll["id"])["total_votes"] == statuses[201]
