"""Idempotency-Key on votes: a retry gets the first answer and counts nothing twice."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot
from service.voting import ballot as votes
from service.voting.ballot import idempotency_hash
from tests.conftest import SECRET
from tests.test_votes import assert_problem, sign

KEY = "5b0e1c2a-8f6d-4f43-9d1e-3c1f0f6a7b21"
HOME_IP = "203.0.113.7"
ANSWER_SECONDS = 24 * 3600


@pytest.fixture
def keyed_vote(app, make_poll):
    """Vote from a fresh browser (no cookie: the case of an answer lost on its way)."""

    def cast(poll: dict, key: str | None = KEY, *, browser=None, ip=HOME_IP, **body):
        body.setdefault("choices", [poll["options"][0]["id"]])
        headers = {} if key is None else {"Idempotency-Key": key}
        return (browser or app.test_client()).post(
            f"/api/v1/polls/{poll['id']}/votes", json=body, headers=headers,
            environ_overrides={"REMOTE_ADDR": ip},
        )

    return cast


@pytest.fixture
def ballots(app):
    def count(poll: dict) -> int:
        with app.app_context():
            return db.session.scalar(
                sa.select(sa.func.count()).select_from(Ballot).where(Ballot.poll_id == poll["id"])
            )

    return count


def total_votes(client, poll: dict, auth: dict) -> int:
    return client.get(f"/api/v1/polls/{poll['id']}/tallies", headers=auth).get_json()[
        "total_votes"]


def redis_client(app):
    return app.extensions["pollbox.redis"].client


@pytest.mark.parametrize("policy", ["none", "cookie", "cookie_and_ip"])
def test_retry_with_the_same_key_and_body_gets_the_first_answer_and_counts_once(
    client, auth, make_poll, keyed_vote, ballots, policy
):
    poll = make_poll(duplicate_check=policy)
    first = keyed_vote(poll)
    assert first.status_code == 201, first.get_json()

    retry = keyed_vote(poll)

    assert retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert ballots(poll) == 1
    assert total_votes(client, poll, auth) == 1


def test_replay_keeps_the_first_tallies_and_receipt_while_others_vote(
    make_poll, keyed_vote, ballots
):
    poll = make_poll(duplicate_check="none")
    first = keyed_vote(poll).get_json()
    assert keyed_vote(poll, key="another-key").status_code == 201

    replayed = keyed_vote(poll).get_json()

    assert replayed == first
    assert replayed["tallies"]["total_votes"] == 1
    assert ballots(poll) == 2


def test_same_key_with_a_different_body_is_422_naming_the_header(make_poll, keyed_vote,
                                                                  ballots):
    poll = make_poll(duplicate_check="none")
    assert keyed_vote(poll).status_code == 201

    problem = assert_problem(keyed_vote(poll, choices=[poll["options"][1]["id"]]), 422,
                             "validation_error")

    assert "Idempotency-Key" in problem["errors"]
    assert ballots(poll) == 1


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "256-characters"])
def test_malformed_key_is_422_naming_the_header_and_counts_nothing(make_poll, keyed_vote,
                                                                    ballots, key):
    poll = make_poll()

    problem = assert_problem(keyed_vote(poll, key=key), 422, "validation_error")

    assert "Idempotency-Key" in problem["errors"]
    assert ballots(poll) == 0


@pytest.mark.parametrize("key", ["k", "k" * 255], ids=["1-character", "255-characters"])
def test_keys_of_1_to_255_characters_are_accepted(make_poll, keyed_vote, key):
    poll = make_poll()

    assert keyed_vote(poll, key=key).status_code == 201
    assert keyed_vote(poll, key=key).headers["Idempotent-Replayed"] == "true"


def test_different_keys_are_different_votes(make_poll, keyed_vote, ballots):
    poll = make_poll(duplicate_check="none")

    ids = {keyed_vote(poll, key=f"key-{n}").get_json()["vote"]["id"] for n in range(3)}

    assert len(ids) == 3
    assert ballots(poll) == 3


def test_a_key_belongs_to_one_poll(make_poll, keyed_vote, ballots):
    first, second = make_poll(), make_poll()

    answers = [keyed_vote(poll).get_json()["vote"]["id"] for poll in (first, second)]

    assert answers[0] != answers[1]
    assert (ballots(first), ballots(second)) == (1, 1)


def test_a_refused_vote_is_not_kept_so_its_retry_is_judged_again(
    client, auth, make_poll, keyed_vote, ballots
):
    poll = make_poll()
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)
    assert_problem(keyed_vote(poll), 409, "poll_closed")
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "open"}, headers=auth)

    retry = keyed_vote(poll)

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert ballots(poll) == 1


def test_a_retry_after_the_poll_closed_still_gets_the_first_answer(
    client, auth, make_poll, keyed_vote
):
    poll = make_poll()
    first = keyed_vote(poll)
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)

    retry = keyed_vote(poll)

    assert retry.status_code == 201
    assert retry.get_json()["vote"] == first.get_json()["vote"]


@pytest.mark.parametrize("policy", ["none", "cookie_and_ip", "user"])
def test_the_database_keeps_a_key_to_one_ballot_when_redis_forgot_it(
    app, client, auth, make_poll, keyed_vote, ballots, policy
):
    poll = make_poll(duplicate_check=policy)
    fields = {"voter": sign(poll, "user-7")} if policy == "user" else {}
    first = keyed_vote(poll, **fields).get_json()
    redis_client(app).flushdb()

    retry = keyed_vote(poll, **fields)

    assert retry.status_code == 201
    assert retry.get_json()["vote"] == first["vote"]
    assert ballots(poll) == 1
    assert total_votes(client, poll, auth) == 1


def test_concurrent_retries_with_one_key_make_one_ballot_and_one_answer(
    app, make_poll, keyed_vote, ballots
):
    poll = make_poll(duplicate_check="none")
    attempts = 8
    start = threading.Barrier(attempts)
    answers: list = []

    def attempt():
        start.wait()
        response = keyed_vote(poll)
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _ in answers] == [201] * attempts
    assert len({body["vote"]["id"] for _, body in answers}) == 1
    assert len({body["vote"]["receipt"] for _, body in answers}) == 1
    assert ballots(poll) == 1


def test_a_retry_racing_the_first_request_waits_and_then_gives_up_with_409(
    app, make_poll, keyed_vote, ballots, monkeypatch
):
    from service.voting import idempotency

    poll = make_poll(duplicate_check="none")
    # A first request that holds the key and never answers (say, its worker hangs).
    entry = keys.idempotency(poll["id"], idempotency_hash(SECRET, poll["id"], KEY))
    sent = votes.Ballot(choices=(poll["options"][0]["id"],))
    redis_client(app).hset(entry, mapping={
        "body": idempotency.body_hash(secret=SECRET, poll_id=poll["id"], ballot=sent),
        "token": "someone-else",
    })
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.2)

    problem = assert_problem(keyed_vote(poll), 409, "idempotency_key_in_use")

    assert problem["detail"]
    assert ballots(poll) == 0


def test_the_answer_is_kept_24_hours(app, make_poll, keyed_vote):
    poll = make_poll()
    keyed_vote(poll)
    entry = keys.idempotency(poll["id"], idempotency_hash(SECRET, poll["id"], KEY))

    ttl = redis_client(app).ttl(entry)

    assert ANSWER_SECONDS - 60 < ttl <= ANSWER_SECONDS


@pytest.mark.parametrize("allowed", [[], ["https://www.psyweb.example"]],
                         ids=["embeddable-anywhere", "allowlist"])
def test_a_page_script_may_read_the_replay_and_retry_headers(app, make_poll, allowed):
    poll = make_poll(allowed_origins=allowed)
    origin = "https://www.psyweb.example"

    response = app.test_client().post(
        f"/api/v1/polls/{poll['id']}/votes", json={"choices": [poll["options"][0]["id"]]},
        headers={"Origin": origin, "Idempotency-Key": KEY},
    )

    assert response.status_code == 201
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Idempotent-Replayed", "Retry-After"} <= exposed


def test_a_retry_shows_the_first_answers_tallies_after_other_votes_and_changes(
    client, auth, make_poll, keyed_vote
):
    """The answer is kept with the vote's count (count.lua): the tally it showed and
    the poll as it was, whatever happened since."""
    poll = make_poll(duplicate_check="none", results_min_votes=2)
    first = keyed_vote(poll)
    for _ in range(2):
        assert keyed_vote(poll, key=None).status_code == 201
    relabelled = [{"id": option["id"], "label": f"{option['label']}!"}
                  for option in poll["options"]]
    client.patch(f"/api/v1/polls/{poll['id']}", headers=auth,
                 json={"options": relabelled, "status": "closed"})

    again = keyed_vote(poll)

    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    shown = first.get_json()["tallies"]
    assert shown["total_votes"] == 1 and shown["suppressed"] is True
    assert shown["status"] == "open"


def test_an_answer_given_while_the_tally_is_rebuilt_is_kept_too(app, make_poll, keyed_vote):
    poll = make_poll(duplicate_check="none")
    assert keyed_vote(poll, key=None).status_code == 201
    with app.app_context():
        redis_client(app).delete(keys.tally(poll["id"]))  # counts wait for a rebuild

    first = keyed_vote(poll)
    again = keyed_vote(poll)

    assert first.get_json()["tallies"]["total_votes"] == 2  # read (rebuilt) after the count
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
