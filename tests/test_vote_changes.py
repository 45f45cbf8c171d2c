"""Changing a vote with its receipt (PUT /api/v1/receipts/<receipt>) on a poll with
`allow_change`: the tallies move exactly, the vote keeps its id and receipt, exports show
it as it is now; refused on polls without it and on closed polls."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot, BallotChoice
from service.infra.redis import redis_handle
from service.infra.redis.scripts import ChangeCall
from service.tallies import counts as tallies_model
from tests.test_receipts import OTHER_IP, receipt_url, tallies
from tests.test_votes import assert_problem


def votes_of(tally: dict) -> dict[int, int]:
    return {option["id"]: option["votes"] for option in tally["options"]}


def database_counts(app, poll: dict, context: str | None = None) -> tallies_model.Counts:
    with app.app_context():
        return tallies_model.from_database(session=db.session, poll_id=poll["id"],
                                           context=context)


def test_a_changed_vote_moves_in_the_tallies_and_keeps_its_id_and_receipt(
        app, client, auth, make_poll, vote):
    poll = make_poll(allow_change=True)
    yes, past, no = (option["id"] for option in poll["options"])
    cast = vote(poll, [yes]).get_json()["vote"]
    vote(poll, [yes], ip=OTHER_IP)

    response = client.put(receipt_url(cast["receipt"]), json={"choices": [no]})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["vote"]["id"] == cast["id"]
    assert body["vote"]["receipt"] == cast["receipt"]
    assert body["vote"]["created_at"] == cast["created_at"]
    assert body["vote"]["changed_at"] is not None
    assert [choice["id"] for choice in body["vote"]["choices"]] == [no]
    assert body["tallies"]["total_votes"] == 2
    assert votes_of(body["tallies"]) == {yes: 1, past: 0, no: 1}
    assert votes_of(tallies(client, poll, auth)) == {yes: 1, past: 0, no: 1}
    counts = database_counts(app, poll)
    assert (counts.total, counts.options) == (2, {yes: 1, no: 1})
    shown = client.get(receipt_url(cast["receipt"])).get_json()
    assert [choice["id"] for choice in shown["choices"]] == [no]
    assert shown["changed_at"] is not None


def test_a_change_moves_the_context_tally_and_the_other_answers_too(
        app, client, auth, make_poll, vote):
    poll = make_poll(kind="multiple", allow_other=True, allow_comment=True,
                     allow_change=True)
    yes, past, no = (option["id"] for option in poll["options"])
    cast = vote(poll, [yes, past], context="/a").get_json()["vote"]

    response = client.put(receipt_url(cast["receipt"]),
                          json={"choices": [no], "other": "Both", "comment": "Changed"})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["vote"]["other"] == "Both"
    assert response.get_json()["vote"]["context"] == "/a"
    for context in (None, "/a"):
        shown = tallies(client, poll, auth, context)
        assert (shown["total_votes"], votes_of(shown), shown["other_votes"]) == (
            1, {yes: 0, past: 0, no: 1}, 1), context
        counts = database_counts(app, poll, context)
        assert (counts.total, counts.other, counts.options) == (1, 1, {no: 1})

    back = client.put(receipt_url(cast["receipt"]), json={"choices": [yes]})

    assert back.status_code == 200, back.get_json()
    shown = tallies(client, poll, auth, "/a")
    assert (votes_of(shown), shown["other_votes"]) == ({yes: 1, past: 0, no: 0}, 0)


def test_many_changes_in_a_row_leave_the_tallies_equal_to_the_database(
        app, client, auth, make_poll, vote):
    poll = make_poll(allow_change=True)
    options = [option["id"] for option in poll["options"]]
    receipt = vote(poll, [options[0]]).get_json()["vote"]["receipt"]

    for turn in range(12):
        chosen = options[turn % 3]
        assert client.put(receipt_url(receipt), json={"choices": [chosen]}).status_code == 200

    counts = database_counts(app, poll)
    shown = tallies(client, poll, auth)
    assert votes_of(shown) == {option: counts.options.get(option, 0) for option in options}
    assert counts.options == {options[11 % 3]: 1}


def test_a_change_while_the_tally_is_being_rebuilt_leaves_it_exact(
        app, client, auth, make_poll, vote):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    receipt = vote(poll, [yes]).get_json()["vote"]["receipt"]
    _tally, _pending, lock, _included = keys.tally_scope(poll["id"])
    with app.app_context():
        redis_handle().client.set(lock, "another-rebuild")  # a rebuild in progress

    assert client.put(receipt_url(receipt), json={"choices": [no]}).status_code == 200

    with app.app_context():
        # That rebuild's lock is gone (it stores nothing); the answer's read rebuilt it.
        assert redis_handle().client.get(lock) != b"another-rebuild"
    assert votes_of(tallies(client, poll, auth))[no] == 1
    assert votes_of(tallies(client, poll, auth))[yes] == 0


def test_a_change_a_rebuild_already_read_is_not_applied_twice(
        app, client, auth, make_poll, vote):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    cast = vote(poll, [yes]).get_json()["vote"]
    assert client.put(receipt_url(cast["receipt"]), json={"choices": [no]}).status_code == 200
    with app.app_context():
        redis = redis_handle()
        redis.client.delete(keys.tally(poll["id"]))
        tallies_model.rebuild(engine=db.engine, redis=redis, poll_id=poll["id"])
        changed_at = db.session.scalar(sa.select(Ballot.changed_at)
                                       .where(Ballot.id == cast["id"]))
        # The change's move arrives late, after a rebuild whose snapshot held it.
        moved = redis.scripts.change(ChangeCall(
            poll_id=poll["id"], token=tallies_model.change_token(cast["id"], changed_at),
            at_ms=0, old_option_ids=(yes,), new_option_ids=(no,), had_other=False,
            has_other=False, context=None, integrity_hour="2026010100",
            integrity_field="changed", retention_seconds=60))

    assert moved == 0
    assert votes_of(tallies(client, poll, auth)) == {yes: 0, _past: 0, no: 1}


def test_change_on_a_poll_without_allow_change_is_409_and_changes_nothing(
        app, client, auth, make_poll, vote):
    poll = make_poll()
    yes, _past, no = (option["id"] for option in poll["options"])
    receipt = vote(poll, [yes]).get_json()["vote"]["receipt"]

    response = client.put(receipt_url(receipt), json={"choices": [no]})

    assert_problem(response, 409, "change_not_allowed")
    assert votes_of(tallies(client, poll, auth))[yes] == 1
    assert database_counts(app, poll).options == {yes: 1}


@pytest.mark.parametrize("closing", ["closed-by-owner", "closes_at-passed"])
@pytest.mark.parametrize("method", ["put", "delete"])
def test_a_closed_polls_votes_cannot_be_changed_or_withdrawn(
        app, client, auth, make_poll, vote, clock, closing, method):
    poll = make_poll(allow_change=True, closes_at="2100-01-01T00:00:00Z"
                     if closing != "closed-by-owner" else None)
    yes, _past, no = (option["id"] for option in poll["options"])
    receipt = vote(poll, [yes]).get_json()["vote"]["receipt"]
    if closing == "closed-by-owner":
        assert client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"},
                            headers=auth).status_code == 200
    else:
        clock.frozen = clock().replace(year=2100, month=1, day=2)

    if method == "put":
        response = client.put(receipt_url(receipt), json={"choices": [no]})
    else:
        response = client.delete(receipt_url(receipt))

    assert_problem(response, 409, "poll_closed")
    assert votes_of(tallies(client, poll, auth))[yes] == 1
    assert database_counts(app, poll).options == {yes: 1}
    shown = client.get(receipt_url(receipt)).get_json()
    assert [choice["id"] for choice in shown["choices"]] == [yes]
    assert shown["changed_at"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"choices": [999_999]}, "choices"),
    ({"choices": []}, "choices"),
    ({"choices": ["first"]}, "choices"),
    ({"choices": "TWO"}, "choices"),
    ({"choices": "SELF", "other": "Mine"}, "other"),
    ({"choices": "SELF", "comment": "Hi"}, "comment"),
    ({"choices": "SELF", "context": "/b"}, "context"),
])
def test_a_change_is_validated_as_a_new_vote_is(app, client, auth, make_poll, vote, body,
                                                 field):
    poll = make_poll(allow_change=True)
    yes, past, _no = (option["id"] for option in poll["options"])
    receipt = vote(poll, [yes]).get_json()["vote"]["receipt"]
    if body["choices"] == "SELF":
        body = {**body, "choices": [past]}
    elif body["choices"] == "TWO":
        body = {**body, "choices": [yes, past]}

    response = client.put(receipt_url(receipt), json=body)

    problem = assert_problem(response, 422, "validation_error")
    assert field in str(problem)
    assert database_counts(app, poll).options == {yes: 1}


def test_change_of_an_unknown_receipt_is_404(client):
    assert_problem(client.put(receipt_url("A" * 43), json={"choices": [1]}), 404,
                   "not_found")


def test_exports_show_the_vote_as_it_is_now_and_its_changed_at(
        app, client, auth, make_poll, vote):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    cast = vote(poll, [yes]).get_json()["vote"]
    kept = vote(poll, [yes], ip=OTHER_IP).get_json()["vote"]
    changed = client.put(receipt_url(cast["receipt"]), json={"choices": [no]}).get_json()

    response = client.get(f"/api/v1/polls/{poll['id']}/export?data=votes&format=csv",
                          headers=auth)
    rows = {row["vote_id"]: row for row in
            csv.DictReader(io.StringIO(response.get_data(as_text=True)))}
    as_json = client.get(f"/api/v1/polls/{poll['id']}/export?data=votes&format=json",
                         headers=auth).get_json()

    assert rows[cast["id"]]["option_ids"] == str(no)
    assert rows[cast["id"]]["changed_at"] == changed["vote"]["changed_at"]
    assert rows[kept["id"]]["changed_at"] == ""
    by_id = {row["vote_id"]: row for row in as_json["rows"]}
    assert by_id[cast["id"]]["option_ids"] == [no]
    assert by_id[cast["id"]]["changed_at"] == changed["vote"]["changed_at"]
    assert by_id[kept["id"]]["changed_at"] is None


def test_the_integrity_report_counts_changes(app, client, auth, make_poll, vote):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    receipt = vote(poll, [yes]).get_json()["vote"]["receipt"]
    for chosen in (no, yes, no):
        assert client.put(receipt_url(receipt), json={"choices": [chosen]}).status_code == 200

    report = client.get(f"/api/v1/polls/{poll['id']}/integrity", headers=auth).get_json()

    assert report["totals"]["changed"] == 3
    assert report["totals"]["accepted"] == 1


def test_allow_change_is_a_poll_field_owners_set_and_edit(client, auth, make_poll):
    poll = make_poll()
    assert poll["allow_change"] is False

    edited = client.patch(f"/api/v1/polls/{poll['id']}", json={"allow_change": True},
                          headers=auth)

    assert edited.status_code == 200
    assert edited.get_json()["allow_change"] is True
    assert client.get(f"/api/v1/polls/{poll['id']}").get_json()["allow_change"] is True
    assert_problem(client.patch(f"/api/v1/polls/{poll['id']}", json={"allow_change": "yes"},
                                headers=auth), 422, "validation_error")


def test_changed_rows_are_exactly_the_new_choices(app, client, make_poll, vote):
    poll = make_poll(kind="multiple", allow_change=True)
    yes, past, no = (option["id"] for option in poll["options"])
    cast = vote(poll, [yes, past]).get_json()["vote"]

    assert client.put(receipt_url(cast["receipt"]),
                      json={"choices": [past, no]}).status_code == 200

    with app.app_context():
        stored = set(db.session.scalars(sa.select(BallotChoice.option_id)
                                        .where(BallotChoice.ballot_id == cast["id"])))
    assert stored == {past, no}


def test_a_changed_ranking_moves_first_preferences_and_the_runoff(app, client, auth,
                                                                  make_poll, vote):
    poll = make_poll(kind="ranked", options=["A", "B", "C"], max_choices=3,
                     allow_change=True, duplicate_check="none")
    a, b, c = (option["id"] for option in poll["options"])
    mine = vote(poll, [a, b, c]).get_json()["vote"]
    vote(poll, [b, a])
    vote(poll, [c, b])

    response = client.put(receipt_url(mine["receipt"]), json={"choices": [c, a]})

    assert response.status_code == 200, response.get_json()
    assert [choice["id"] for choice in response.get_json()["vote"]["choices"]] == [c, a]
    tally = tallies(client, poll, auth)
    assert votes_of(tally) == {a: 0, b: 1, c: 2}  # first preferences
    assert tally["irv"]["winner"] == c
    assert tally["irv"]["rounds"][0]["counts"] == {str(a): 0, str(b): 1, str(c): 2}
    counts = database_counts(app, poll)
    assert (counts.total, counts.options) == (3, {b: 1, c: 2})
    with app.app_context():
        ranked = db.session.execute(
            sa.select(BallotChoice.option_id, BallotChoice.rank)
            .where(BallotChoice.ballot_id == mine["id"]).order_by(BallotChoice.rank)).all()
        ranking = db.session.get(Ballot, mine["id"]).ranking
    assert [tuple(row) for row in ranked] == [(c, 1), (a, 2)]
    assert ranking == f"{c},{a}"


def test_live_streams_are_told_of_a_change(app, client, make_poll, vote):
    poll = make_poll(allow_change=True)
    yes, _past, no = (option["id"] for option in poll["options"])
    cast = vote(poll, [yes]).get_json()["vote"]
    with app.app_context():
        listener = redis_handle().client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(keys.tally_changes(poll["id"]))
    try:
        assert client.put(receipt_url(cast["receipt"]), json={"choices": [no]}).status_code == 200
        told = None
        for _ in range(50):
            told = listener.get_message(timeout=0.1)
            if told is not None:
                break
    finally:
        listener.close()

    assert told is not None and told["data"].decode().startswith(f"{cast['id']}@")
