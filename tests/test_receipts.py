"""Receipts: every accepted vote answers a secret that shows or withdraws it."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from service.infra.db import db
from service.infra.models import Ballot, BallotChoice, VoteClaim
from tests.test_votes import assert_problem, sign

HOME_IP, OTHER_IP = "203.0.113.7", "198.51.100.99"
RECEIPT_MIN_CHARS = 43  # 32 random bytes, URL-safe base64


def receipt_url(receipt: str) -> str:
    return f"/api/v1/receipts/{receipt}"


def rows(app, model, poll: dict) -> int:
    with app.app_context():
        query = sa.select(sa.func.count()).select_from(model)
        if model is Ballot:
            query = query.where(Ballot.poll_id == poll["id"])
        elif model is VoteClaim:
            query = query.where(VoteClaim.poll_id == poll["id"])
        else:
            query = query.join(Ballot).where(Ballot.poll_id == poll["id"])
        return db.session.scalar(query)


def tallies(client, poll: dict, auth: dict, context: str | None = None) -> dict:
    query = {} if context is None else {"context": context}
    return client.get(f"/api/v1/polls/{poll['id']}/tallies", query_string=query,
                      headers=auth).get_json()


def test_every_accepted_vote_answers_a_receipt_of_which_only_the_hash_is_stored(
    app, make_poll, vote
):
    poll = make_poll(duplicate_check="none")
    receipts = [vote(poll).get_json()["vote"]["receipt"] for _ in range(3)]

    with app.app_context():
        stored = set(db.session.scalars(
            sa.select(Ballot.receipt_hash).where(Ballot.poll_id == poll["id"])))

    assert len(set(receipts)) == 3
    assert all(len(receipt) >= RECEIPT_MIN_CHARS for receipt in receipts)
    assert stored == {hashlib.sha256(receipt.encode()).hexdigest() for receipt in receipts}


def test_receipt_shows_the_vote(client, make_poll, vote):
    poll = make_poll(kind="multiple", allow_other=True, allow_comment=True)
    chosen = [poll["options"][2]["id"], poll["options"][0]["id"]]
    cast = vote(poll, chosen, other="Sometimes", comment="Thanks", context="/articles/a")
    answer = cast.get_json()["vote"]

    shown = client.get(receipt_url(answer["receipt"]))

    assert shown.status_code == 200
    assert shown.get_json() == {
        "poll_id": poll["id"],
        "vote_id": answer["id"],
        "created_at": answer["created_at"],
        "changed_at": None,
        "choices": [{"id": option["id"], "label": option["label"]}
                    for option in (poll["options"][0], poll["options"][2])],
        "other": "Sometimes",
        "comment": "Thanks",
        "context": "/articles/a",
    }


@pytest.mark.parametrize("method", ["get", "delete"])
@pytest.mark.parametrize("receipt", ["not-a-receipt", "A" * 43])
def test_unknown_receipt_is_404(client, method, receipt):
    response = getattr(client, method)(receipt_url(receipt))

    assert_problem(response, 404, "not_found")


def test_withdrawn_vote_leaves_the_database_and_every_tally(app, client, auth, make_poll,
                                                            vote):
    poll = make_poll(duplicate_check="cookie_and_ip", allow_other=True)
    yes, no = poll["options"][0]["id"], poll["options"][1]["id"]
    mine = vote(poll, [yes], other="Often", context="/a", ip=HOME_IP).get_json()
    vote(poll, [no], context="/a", ip=OTHER_IP)
    assert tallies(client, poll, auth)["total_votes"] == 2  # both tallies exist in Redis
    assert tallies(client, poll, auth, "/a")["total_votes"] == 2

    response = client.delete(receipt_url(mine["vote"]["receipt"]))

    assert response.status_code == 204
    assert response.get_data() == b""
    assert [rows(app, model, poll) for model in (Ballot, BallotChoice, VoteClaim)] == [1, 1, 2]
    for context in (None, "/a"):
        after = tallies(client, poll, auth, context)
        votes = {option["id"]: option["votes"] for option in after["options"]}
        assert (after["total_votes"], votes[yes], votes[no], after["other_votes"]) == (
            1, 0, 1, 0), context
    assert_problem(client.get(receipt_url(mine["vote"]["receipt"])), 404, "not_found")
    assert_problem(client.delete(receipt_url(mine["vote"]["receipt"])), 404, "not_found")


@pytest.mark.parametrize("closing", ["closed-by-owner", "closes_at-passed"])
def test_a_closed_polls_votes_cannot_be_withdrawn(app, client, auth, make_poll, vote, clock,
                                                  closing):
    poll = make_poll(closes_at="2100-01-01T00:00:00Z" if closing != "closed-by-owner"
                     else None)
    receipt = vote(poll).get_json()["vote"]["receipt"]
    vote(poll, ip=OTHER_IP)
    if closing == "closed-by-owner":
        assert client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"},
                            headers=auth).status_code == 200
    else:
        clock.frozen = clock().replace(year=2100, month=1, day=2)

    response = client.delete(receipt_url(receipt))

    body = assert_problem(response, 409, "poll_closed")
    assert "withdrawn" in body["detail"]
    assert rows(app, Ballot, poll) == 2
    assert tallies(client, poll, auth)["total_votes"] == 2
    assert client.get(receipt_url(receipt)).status_code == 200


@pytest.mark.parametrize("policy", ["cookie", "ip", "cookie_and_ip", "user"])
@pytest.mark.parametrize("window", [None, 3600], ids=["one-vote-ever", "windowed"])
def test_a_voter_who_withdrew_may_vote_again(app, client, auth, make_poll, vote, policy,
                                             window):
    poll = make_poll(duplicate_check=policy, vote_window_seconds=window)
    fields = {"voter": sign(poll, "user-1")} if policy == "user" else {}
    browser = app.test_client()
    first = vote(poll, browser=browser, **fields).get_json()
    assert_problem(vote(poll, browser=browser, **fields), 409, "duplicate_vote")

    assert client.delete(receipt_url(first["vote"]["receipt"])).status_code == 204
    again = vote(poll, [poll["options"][1]["id"]], browser=browser, **fields)

    assert again.status_code == 201, again.get_json()
    assert_problem(vote(poll, browser=browser, **fields), 409, "duplicate_vote")
    after = tallies(client, poll, auth)
    assert after["total_votes"] == 1
    assert after["options"][1]["votes"] == 1


def test_withdrawing_one_vote_keeps_the_other_voters_claims(app, client, make_poll, vote):
    poll = make_poll(duplicate_check="cookie")
    mine, theirs = app.test_client(), app.test_client()
    receipt = vote(poll, browser=mine).get_json()["vote"]["receipt"]
    vote(poll, browser=theirs)

    client.delete(receipt_url(receipt))

    assert vote(poll, browser=mine).status_code == 201
    assert_problem(vote(poll, browser=theirs), 409, "duplicate_vote")


def test_a_withdrawn_votes_idempotency_key_votes_afresh(app, client, make_poll):
    poll = make_poll(duplicate_check="none")

    def keyed():
        return app.test_client().post(
            f"/api/v1/polls/{poll['id']}/votes", json={"choices": [poll["options"][0]["id"]]},
            headers={"Idempotency-Key": "k-1"},
        )

    first = keyed().get_json()
    client.delete(receipt_url(first["vote"]["receipt"]))

    again = keyed()

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.get_json()["vote"]["id"] != first["vote"]["id"]
    assert rows(app, Ballot, poll) == 1


def test_a_replayed_answer_carries_the_same_working_receipt(app, client, make_poll):
    poll = make_poll(duplicate_check="none")

    def keyed():
        return app.test_client().post(
            f"/api/v1/polls/{poll['id']}/votes", json={"choices": [poll["options"][0]["id"]]},
            headers={"Idempotency-Key": "k-2"},
        ).get_json()

    first, replayed = keyed(), keyed()

    assert replayed["vote"]["receipt"] == first["vote"]["receipt"]
    assert client.get(receipt_url(replayed["vote"]["receipt"])).status_code == 200
