"""`max_votes`: a poll closes itself at exactly N ballots; later votes answer
`409 poll_full`; a withdrawal frees a place only while the poll is open; the vote that
takes the last place tells `poll.closed` webhooks once (tests/test_webhooks.py).

Every test runs on the three stacks of `conftest.py` unless it says otherwise.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot
from tests.test_polls import assert_invalid
from tests.test_votes import assert_problem

POLLS = "/api/v1/polls"


def address(number: int) -> str:
    return f"198.51.{number // 250}.{number % 250 + 1}"


@pytest.fixture
def ballots(app):
    """The poll's ballot rows in the database, the record."""

    def count(poll: dict) -> int:
        with app.app_context():
            return db.session.scalar(
                sa.select(sa.func.count()).select_from(Ballot)
                .where(Ballot.poll_id == poll["id"]))

    return count


@pytest.fixture
def total(client, auth):
    """The tallies' total, as the owner sees it."""

    def read(poll: dict) -> int:
        response = client.get(f"{POLLS}/{poll['id']}/tallies", headers=auth)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["total_votes"]

    return read


def poll_now(client, auth, poll: dict) -> dict:
    response = client.get(f"{POLLS}/{poll['id']}", headers=auth)
    assert response.status_code == 200
    return response.get_json()


# -- the field -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ("sqlite-fakeredis",))
@pytest.mark.parametrize("value", (0, -1, 10_000_001, "5", True, 2.5))
def test_create_refuses_a_max_votes_out_of_range_naming_the_field(client, auth, stack, value):
    response = client.post(POLLS, headers=auth, json={
        "question": "Q?", "options": ["A", "B"], "max_votes": value})
    assert_invalid(response, "max_votes")


@pytest.mark.parametrize("stack", ("sqlite-fakeredis",))
@pytest.mark.parametrize("value", (None, 1, 10_000_000))
def test_create_takes_max_votes_and_shows_it(make_poll, client, stack, value):
    poll = make_poll(max_votes=value)
    assert poll["max_votes"] == value and poll["full"] is False
    public = client.get(f"{POLLS}/{poll['id']}").get_json()
    assert (public["max_votes"], public["full"]) == (value, False)


def test_max_votes_defaults_to_none(make_poll):
    assert make_poll()["max_votes"] is None


@pytest.mark.parametrize("stack", ("sqlite-fakeredis",))
@pytest.mark.parametrize("value", (0, 10_000_001, "x"))
def test_patch_refuses_a_max_votes_out_of_range(make_poll, client, auth, stack, value):
    poll = make_poll()
    assert_invalid(client.patch(f"{POLLS}/{poll['id']}", headers=auth,
                                json={"max_votes": value}), "max_votes")


def test_patch_sets_and_clears_max_votes(make_poll, client, auth):
    poll = make_poll()
    url = f"{POLLS}/{poll['id']}"
    assert client.patch(url, headers=auth, json={"max_votes": 7}).get_json()["max_votes"] == 7
    assert client.patch(url, headers=auth, json={"max_votes": None}).get_json()[
        "max_votes"] is None


def test_patch_refuses_a_max_votes_not_above_the_ballots_of_an_open_poll(
        make_poll, client, auth, vote):
    poll = make_poll()
    for number in range(2):
        assert vote(poll, ip=address(number)).status_code == 201
    url = f"{POLLS}/{poll['id']}"
    assert_invalid(client.patch(url, headers=auth, json={"max_votes": 2}), "max_votes")
    assert client.patch(url, headers=auth, json={"max_votes": 3}).status_code == 200


def test_openapi_documents_max_votes(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    for name in ("PollCreate", "PollUpdate", "Poll"):
        assert "closes itself at exactly N" in schemas[name]["properties"][
            "max_votes"]["description"]


# -- admission ---------------------------------------------------------------------------


def test_exactly_max_votes_ballots_are_admitted_then_poll_full(
        make_poll, vote, ballots, total, client, auth):
    poll = make_poll(max_votes=3)
    answers = [vote(poll, ip=address(number)) for number in range(5)]

    assert [answer.status_code for answer in answers] == [201, 201, 201, 409, 409]
    for answer in answers[3:]:
        assert_problem(answer, 409, "poll_full")
    assert (ballots(poll), total(poll)) == (3, 3)
    now = poll_now(client, auth, poll)
    assert (now["status"], now["full"]) == ("closed", True)


def test_concurrent_voters_get_exactly_max_votes_places(make_poll, app, ballots, total):
    poll = make_poll(max_votes=5)
    url = f"{POLLS}/{poll['id']}/votes"
    body = {"choices": [poll["options"][0]["id"]]}
    statuses: list[int] = []
    codes: list[str] = []
    start = threading.Barrier(20)

    def cast(number: int) -> None:
        browser = app.test_client()
        start.wait()
        answer = browser.post(url, json=body, environ_overrides={"REMOTE_ADDR": address(number)})
        statuses.append(answer.status_code)
        if answer.status_code != 201:
            codes.append(answer.get_json()["code"])

    threads = [threading.Thread(target=cast, args=(number,)) for number in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.count(201) == 5
    assert codes == ["poll_full"] * 15
    assert (ballots(poll), total(poll)) == (5, 5)


@pytest.mark.parametrize("stack", ("sqlite-redis", "postgresql-redis"))
def test_while_redis_is_down_the_database_still_admits_exactly_max_votes(
        make_poll, make_app, stack, ballots):
    poll = make_poll(max_votes=2)
    server = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    url = f"{POLLS}/{poll['id']}/votes"
    body = {"choices": [poll["options"][0]["id"]]}
    statuses = [server.test_client().post(url, json=body,
                                          environ_overrides={"REMOTE_ADDR": address(number)})
                for number in range(4)]

    assert [answer.status_code for answer in statuses] == [201, 201, 409, 409]
    assert_problem(statuses[3], 409, "poll_full")
    assert ballots(poll) == 2


def test_admission_refuses_once_the_tally_counts_max_votes_without_writing_a_ballot(
        app, make_poll, vote, ballots):
    """admit.lua reads the poll's tally (committed ballots only) in the same atomic step
    as the claims: a poll counted full is refused there, nothing claimed or written."""
    poll = make_poll(max_votes=2)
    assert vote(poll, ip=address(0)).status_code == 201
    # A ballot of another process, committed and counted, that this one has not seen.
    app.extensions["pollbox.redis"].client.hincrby(keys.tally(poll["id"]), "total", 1)

    assert_problem(vote(poll, ip=address(1)), 409, "poll_full")
    assert ballots(poll) == 1


def test_a_manually_closed_poll_with_max_votes_still_answers_poll_closed(
        make_poll, vote, client, auth):
    poll = make_poll(max_votes=3)
    client.patch(f"{POLLS}/{poll['id']}", headers=auth, json={"status": "closed"})
    assert_problem(vote(poll), 409, "poll_closed")


# -- withdrawal and reopening -------------------------------------------------------------


def test_a_withdrawal_frees_a_place_only_while_the_poll_is_open(
        make_poll, vote, client, ballots, total):
    poll = make_poll(max_votes=2)
    first = vote(poll, ip=address(0)).get_json()["vote"]["receipt"]
    assert client.delete(f"/api/v1/receipts/{first}").status_code == 204

    second = vote(poll, ip=address(1)).get_json()["vote"]["receipt"]
    assert vote(poll, ip=address(2)).status_code == 201  # the freed place: now full
    assert_problem(client.delete(f"/api/v1/receipts/{second}"), 409, "poll_closed")
    assert_problem(vote(poll, ip=address(3)), 409, "poll_full")
    assert (ballots(poll), total(poll)) == (2, 2)


def test_a_full_poll_reopens_only_with_a_higher_max_votes(make_poll, vote, client, auth):
    poll = make_poll(max_votes=1)
    assert vote(poll, ip=address(0)).status_code == 201
    url = f"{POLLS}/{poll['id']}"
    assert_invalid(client.patch(url, headers=auth, json={"status": "open"}), "max_votes")

    reopened = client.patch(url, headers=auth, json={"status": "open", "max_votes": 2})
    assert reopened.status_code == 200
    assert (reopened.get_json()["status"], reopened.get_json()["full"]) == ("open", False)
    assert vote(poll, ip=address(1)).status_code == 201
    assert_problem(vote(poll, ip=address(2)), 409, "poll_full")
