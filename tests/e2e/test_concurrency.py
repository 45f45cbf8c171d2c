"""Concurrent votes through real gunicorn workers: duplicates count once, distinct voters
all count, and the tallies agree with the database."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import ssl
import time
from collections import Counter
from contextlib import AsyncExitStack

import httpx
import pytest
import redis
import sqlalchemy as sa
from itsdangerous import Signer

from service.infra import keys
from service.infra.models import Ballot, BallotChoice, VoteClaim, WebhookDelivery
from service.web.voter import VOTER_COOKIE
from tests.conftest import SECRET, SEED_POLL

pytestmark = pytest.mark.gunicorn

IDENTICAL_VOTES = 200
DISTINCT_VOTERS = 600
WORKERS = 2
# Each worker may hold at most 3/4 of a burst's connections (see start_server).
WORKER_SHARE_NUMERATOR, WORKER_SHARE_DENOMINATOR = 3, 4
REQUEST_TIMEOUT_SECONDS = 30
# An access log with the worker's pid (%(p)s), to see which workers voted (production
# runs without gunicorn's access log: the app logs requests itself).
ACCESS_LOG_WITH_PID = '%(p)s "%(r)s" %(s)s'
VOTE_LINE = re.compile(r'^<(\d+)> "POST /api/v1/polls/\S+/votes HTTP')
# Addresses from 198.18.0.0/15, the range set aside for benchmarking (RFC 2544).
FIRST_ADDRESS = ipaddress.IPv4Address("198.18.0.1")
SHARED_ADDRESS = "198.19.255.254"
# Option index per voter, repeating: 3 : 2 : 1, so swapped counts cannot pass.
OPTION_PATTERN = (0, 0, 0, 1, 1, 2)
# Claim rows one accepted ballot leaves, per duplicate check: one per identity compared.
CLAIMS_PER_BALLOT = {"cookie": 1, "ip": 1, "cookie_and_ip": 2}


def address(n: int) -> str:
    return str(FIRST_ADDRESS + n)


def voter_cookie(cookie_id: str) -> str:
    """A voter cookie signed the way service.identity signs it."""
    return Signer(SECRET, salt="pollbox-voter").sign(cookie_id).decode()


def voter_client(base_url: str, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
    """One voter's own client, as each browser is. (One shared client is the bottleneck:
    httpx's pool schedules its requests in O(n^2) and trickles 600 of them out over
    seconds.) The SSL context is shared because building one per client is slow.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=REQUEST_TIMEOUT_SECONDS,
        transport=httpx.AsyncHTTPTransport(verify=ssl_context),
    )


async def burst(base_url: str, poll_id: str, requests: list[tuple[dict, dict]], alongside=None):
    """Send every (headers, body) vote at once (and run `alongside()` meanwhile, if given);
    return the responses and the wall time."""
    ssl_context = ssl.create_default_context()
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(voter_client(base_url, ssl_context))
            for _ in requests
        ]
        # Connect first, so the votes themselves arrive together on open connections.
        await asyncio.gather(*(client.get("/healthz") for client in clients))
        started = time.perf_counter()
        votes = asyncio.gather(*(
            client.post(f"/api/v1/polls/{poll_id}/votes", json=body, headers=headers)
            for client, (headers, body) in zip(clients, requests, strict=True)
        ))
        if alongside is None:
            responses = await votes
        else:
            responses, _ = await asyncio.gather(votes, alongside())
        return responses, time.perf_counter() - started


def create_poll(base_url: str, owner_key: str, **fields) -> dict:
    response = httpx.post(
        f"{base_url}/api/v1/polls",
        json={**SEED_POLL, **fields},
        headers={"Authorization": f"Bearer {owner_key}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert response.status_code == 201, response.text
    return response.json()


def read_tallies(base_url: str, poll_id: str) -> dict:
    response = httpx.get(f"{base_url}/api/v1/polls/{poll_id}/tallies",
                         timeout=REQUEST_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return response.json()


def option_votes(tallies: dict) -> dict[int, int]:
    return {option["id"]: option["votes"] for option in tallies["options"]}


def recorded(database: sa.Engine, poll_id: str) -> tuple[set[str], Counter, int]:
    """The poll's ballot ids, its choice rows per option id, and its claim rows."""
    with database.connect() as connection:
        ballot_ids = set(connection.scalars(sa.select(Ballot.id).where(Ballot.poll_id == poll_id)))
        choices = Counter(dict(connection.execute(
            sa.select(BallotChoice.option_id, sa.func.count())
            .join(Ballot, Ballot.id == BallotChoice.ballot_id)
            .where(Ballot.poll_id == poll_id)
            .group_by(BallotChoice.option_id)
        ).all()))
        claims = connection.scalar(
            sa.select(sa.func.count()).select_from(VoteClaim).where(VoteClaim.poll_id == poll_id)
        )
    return ballot_ids, choices, claims


def voting_workers(server) -> set[str]:
    """The pids of the workers whose access log shows a vote."""
    return {match[1] for line in server.access_log() if (match := VOTE_LINE.match(line))}


def identical_vote_requests(duplicate_check: str, body: dict) -> list[tuple[dict, dict]]:
    """One voter's vote, sent IDENTICAL_VOTES times with the identity the check compares."""
    cookie = {"Cookie": f"{VOTER_COOKIE}={voter_cookie('e2e-browser')}"}
    requests = []
    for n in range(IDENTICAL_VOTES):
        if duplicate_check == "cookie":  # one browser hopping across addresses
            headers = {**cookie, "X-Forwarded-For": address(n)}
        elif duplicate_check == "ip":  # cookie-less clients behind one address
            headers = {"X-Forwarded-For": SHARED_ADDRESS}
        else:  # one browser at one address
            headers = {**cookie, "X-Forwarded-For": SHARED_ADDRESS}
        requests.append((headers, body))
    return requests


@pytest.fixture
def start_server(gunicorn_server, e2e_database_url, clean_redis, owner_key):
    """Start the server for a burst of `size` connections, spread over both workers."""

    def start(size: int, **extra_env: str):
        # A worker holding worker_connections connections stops accepting, so capping it
        # below the burst makes the other worker take the rest: the race spans processes.
        capacity = size * WORKER_SHARE_NUMERATOR // WORKER_SHARE_DENOMINATOR
        return gunicorn_server(
            database_url=e2e_database_url, redis_url=clean_redis, workers=WORKERS,
            args=("--worker-connections", str(capacity), "--access-logfile", "-",
                  "--access-logformat", ACCESS_LOG_WITH_PID), **extra_env,
        )

    return start


@pytest.mark.parametrize("duplicate_check", list(CLAIMS_PER_BALLOT))
def test_concurrent_identical_votes_count_once(start_server, owner_key, database,
                                               duplicate_check):
    server = start_server(IDENTICAL_VOTES)
    poll = create_poll(server.base_url, owner_key, duplicate_check=duplicate_check)
    chosen = poll["options"][1]["id"]
    before = read_tallies(server.base_url, poll["id"])["total_votes"]

    responses, seconds = asyncio.run(burst(
        server.base_url, poll["id"], identical_vote_requests(duplicate_check, {"choices": [chosen]})
    ))
    print(f"{IDENTICAL_VOTES} identical votes ({duplicate_check}): {seconds:.2f} s")

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: IDENTICAL_VOTES - 1}
    rejected = [response for response in responses if response.status_code == 409]
    assert {response.headers["Content-Type"] for response in rejected} == {
        "application/problem+json"
    }
    # Refused as a duplicate once the ballot is committed; told to retry while it is
    # not known yet (never "you already voted" before there is a ballot).
    assert {response.json()["code"] for response in rejected} <= {"duplicate_vote",
                                                                  "vote_pending"}
    told_to_wait = [r for r in rejected if r.json()["code"] == "vote_pending"]
    assert all(response.headers["Retry-After"] == "1" for response in told_to_wait)
    if told_to_wait:  # their retry, a second later, learns the vote was counted
        time.sleep(1)
        retried, _ = asyncio.run(burst(
            server.base_url, poll["id"],
            identical_vote_requests(duplicate_check, {"choices": [chosen]})[:len(told_to_wait)]))
        assert {response.json()["code"] for response in retried} == {"duplicate_vote"}
    [accepted] = [response.json() for response in responses if response.status_code == 201]
    tallies = read_tallies(server.base_url, poll["id"])
    assert tallies["total_votes"] == before + 1
    assert option_votes(tallies)[chosen] == 1
    ballot_ids, choices, claims = recorded(database, poll["id"])
    assert ballot_ids == {accepted["vote"]["id"]}
    assert choices == Counter({chosen: 1})
    assert claims == CLAIMS_PER_BALLOT[duplicate_check]
    assert len(voting_workers(server)) == WORKERS


def test_concurrent_distinct_voters_all_count(start_server, owner_key, database):
    server = start_server(DISTINCT_VOTERS)
    poll = create_poll(server.base_url, owner_key, duplicate_check="cookie_and_ip")
    option_ids = [option["id"] for option in poll["options"]]
    votes = [
        ({"X-Forwarded-For": address(n)},
         {"choices": [option_ids[OPTION_PATTERN[n % len(OPTION_PATTERN)]]]})
        for n in range(DISTINCT_VOTERS)
    ]

    responses, seconds = asyncio.run(burst(server.base_url, poll["id"], votes))
    print(f"{DISTINCT_VOTERS} distinct voters: {seconds:.2f} s")

    failures = [(r.status_code, r.text) for r in responses if r.status_code != 201]
    assert failures == []
    sent = Counter(body["choices"][0] for _, body in votes)
    ballot_ids, choices, _ = recorded(database, poll["id"])
    tallies = read_tallies(server.base_url, poll["id"])
    assert ballot_ids == {response.json()["vote"]["id"] for response in responses}
    assert tallies["total_votes"] == len(ballot_ids) == DISTINCT_VOTERS
    assert option_votes(tallies) == choices == sent
    assert len(voting_workers(server)) == WORKERS
    # Group commit: the workers wrote the burst's ballots in fewer commits than ballots.
    commits, ballots = ballot_batches(server.base_url)
    print(f"{ballots:.0f} ballots in {commits:.0f} commits")
    assert ballots == DISTINCT_VOTERS and commits < DISTINCT_VOTERS / 2


def ballot_batches(base_url: str) -> tuple[float, float]:
    """pollbox_ballot_batch_size over every worker: (commits, ballots written)."""
    text = httpx.get(f"{base_url}/metrics", timeout=REQUEST_TIMEOUT_SECONDS).text
    found = dict(re.findall(r"^pollbox_ballot_batch_size_(count|sum) (\S+)$", text, re.M))
    return float(found["count"]), float(found["sum"])


MAX_VOTES = 100
VOTERS_FOR_MAX_VOTES = 300
# A poll.closed webhook nobody answers (the discard port): its deliveries are recorded
# when the close is announced, before any attempt.
UNANSWERED_HOOK_URL = "http://127.0.0.1:9/hook"


def test_concurrent_voters_fill_max_votes_exactly(start_server, owner_key, database):
    """300 distinct voters at once on a poll of max_votes 100: exactly 100 get a place,
    the other 200 hear poll_full, and the tallies, the database and the poll agree; the
    close is announced to a `poll.closed` webhook once, whichever worker took the last
    place."""
    server = start_server(VOTERS_FOR_MAX_VOTES, WEBHOOKS_ALLOW_PRIVATE="1")
    hook = httpx.post(f"{server.base_url}/api/v1/webhooks",
                      headers={"Authorization": f"Bearer {owner_key}"},
                      json={"url": UNANSWERED_HOOK_URL, "events": ["poll.closed"]},
                      timeout=REQUEST_TIMEOUT_SECONDS)
    assert hook.status_code == 201, hook.text
    poll = create_poll(server.base_url, owner_key, duplicate_check="cookie_and_ip",
                       max_votes=MAX_VOTES)
    option_ids = [option["id"] for option in poll["options"]]
    votes = [
        ({"X-Forwarded-For": address(n)},
         {"choices": [option_ids[OPTION_PATTERN[n % len(OPTION_PATTERN)]]]})
        for n in range(VOTERS_FOR_MAX_VOTES)
    ]

    responses, seconds = asyncio.run(burst(server.base_url, poll["id"], votes))
    print(f"{VOTERS_FOR_MAX_VOTES} voters for {MAX_VOTES} places: {seconds:.2f} s")

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: MAX_VOTES, 409: VOTERS_FOR_MAX_VOTES - MAX_VOTES}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"poll_full"}
    accepted = {r.json()["vote"]["id"] for r in responses if r.status_code == 201}
    ballot_ids, choices, _ = recorded(database, poll["id"])
    tallies = read_tallies(server.base_url, poll["id"])
    assert ballot_ids == accepted
    assert tallies["total_votes"] == len(ballot_ids) == MAX_VOTES
    assert option_votes(tallies) == choices
    shown = httpx.get(f"{server.base_url}/api/v1/polls/{poll['id']}",
                      timeout=REQUEST_TIMEOUT_SECONDS).json()
    assert (shown["status"], shown["full"]) == ("closed", True)
    assert len(voting_workers(server)) == WORKERS
    with database.connect() as connection:
        announced = connection.execute(
            sa.select(WebhookDelivery.event, WebhookDelivery.payload)
            .where(WebhookDelivery.webhook_id == hook.json()["id"])).all()
    [(event, payload)] = announced
    assert event == "poll.closed"
    assert json.loads(payload)["data"]["reason"] == "full"


CONTEXT = "/articles/healing-power"
REBUILD_ROUNDS = 150
REBUILD_PAUSE_SECONDS = 0.005


async def rebuild_repeatedly(base_url: str, redis_url: str, poll_id: str) -> int:
    """Drop the poll's tallies and read them again (a rebuild) while votes pour in."""
    client = redis.Redis.from_url(redis_url)
    rounds = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        for _ in range(REBUILD_ROUNDS):
            await asyncio.to_thread(
                client.delete, keys.tally(poll_id), keys.tally(poll_id, CONTEXT)
            )
            # Several readers at once: rebuilds of one tally race each other too.
            await asyncio.gather(*(
                http.get(f"/api/v1/polls/{poll_id}/tallies", params=params)
                for params in ({}, {}, {}, {"context": CONTEXT}, {"context": CONTEXT})
            ))
            rounds += 1
            await asyncio.sleep(REBUILD_PAUSE_SECONDS)
    client.close()
    return rounds


def test_tallies_rebuilt_while_votes_pour_in_count_every_vote_once(
    start_server, owner_key, database, clean_redis
):
    server = start_server(DISTINCT_VOTERS)
    poll = create_poll(server.base_url, owner_key, duplicate_check="ip", allow_other=True)
    option_ids = [option["id"] for option in poll["options"]]
    votes = []
    for n in range(DISTINCT_VOTERS):
        body = {"choices": [option_ids[OPTION_PATTERN[n % len(OPTION_PATTERN)]]]}
        if n % 2:
            body["context"] = CONTEXT
        if n % 5 == 0:
            body["other"] = f"answer {n}"
        votes.append(({"X-Forwarded-For": address(n)}, body))

    rounds = []

    async def rebuilding():
        rounds.append(await rebuild_repeatedly(server.base_url, clean_redis, poll["id"]))

    responses, seconds = asyncio.run(burst(server.base_url, poll["id"], votes, rebuilding))
    print(f"{DISTINCT_VOTERS} votes with {rounds[0]} tally rebuilds: {seconds:.2f} s")

    assert [r.status_code for r in responses if r.status_code != 201] == []
    ballot_ids, choices, _ = recorded(database, poll["id"])
    tallies = read_tallies(server.base_url, poll["id"])
    assert tallies["total_votes"] == len(ballot_ids) == DISTINCT_VOTERS
    assert option_votes(tallies) == choices
    assert tallies["other_votes"] == DISTINCT_VOTERS // 5
    in_context = httpx.get(f"{server.base_url}/api/v1/polls/{poll['id']}/tallies",
                           params={"context": CONTEXT}).json()
    sent_in_context = Counter(body["choices"][0] for _, body in votes if "context" in body)
    assert in_context["total_votes"] == DISTINCT_VOTERS // 2
    assert option_votes(in_context) == sent_in_context


READ_YOUR_WRITES_VOTERS = 60


def test_each_voter_reads_her_own_vote_from_either_worker(start_server, owner_key):
    """Read-your-writes across processes with the tallies cache on: a reader on a kept-up
    connection keeps one worker's entry warm; each vote comes on a new connection (either
    worker), and the next read, on the warm worker and on a new connection, shows it."""
    server = start_server(8)
    poll = create_poll(server.base_url, owner_key, duplicate_check="none")
    tallies_path = f"/api/v1/polls/{poll['id']}/tallies"
    body = {"choices": [poll["options"][0]["id"]]}
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_SECONDS) as reader:
        for n in range(1, READ_YOUR_WRITES_VOTERS + 1):
            assert reader.get(tallies_path).json()["total_votes"] == n - 1
            answer = httpx.post(f"{server.base_url}/api/v1/polls/{poll['id']}/votes",
                                json=body, headers={"X-Forwarded-For": address(n)},
                                timeout=REQUEST_TIMEOUT_SECONDS)
            assert answer.status_code == 201, answer.text
            assert answer.json()["tallies"]["total_votes"] == n  # the answer holds it
            assert reader.get(tallies_path).json()["total_votes"] == n
            assert read_tallies(server.base_url, poll["id"])["total_votes"] == n
    workers = voting_workers(server)
    assert len(workers) == WORKERS, workers  # the votes did come through both processes
