"""Ranked polls over HTTP on every stack: creating them, voting in order of preference,
first preferences and the instant runoff in the tallies (live, rebuilt from the
database, by context, suppressed), and the order kept in exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from openapi_schema_validator import OAS30Validator
from sqlalchemy import func, select, update

from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot
from service.tallies import irv

# The Tennessee capital example (Wikipedia, "Instant-runoff voting"), 20 voters.
MEMPHIS, NASHVILLE, CHATTANOOGA, KNOXVILLE = range(4)
TENNESSEE = [
    (8, (MEMPHIS, NASHVILLE, CHATTANOOGA, KNOXVILLE)),
    (5, (NASHVILLE, CHATTANOOGA, KNOXVILLE, MEMPHIS)),
    (3, (CHATTANOOGA, KNOXVILLE, NASHVILLE, MEMPHIS)),
    (4, (KNOXVILLE, CHATTANOOGA, NASHVILLE, MEMPHIS)),
]


@pytest.fixture
def ranked(make_poll):
    return make_poll(question="Capital of Tennessee?", kind="ranked",
                     options=["Memphis", "Nashville", "Chattanooga", "Knoxville"],
                     duplicate_check="none")


def ids(poll: dict) -> list[int]:
    return [option["id"] for option in poll["options"]]


def cast_tennessee(poll: dict, vote, *, partial: bool = False, context=None) -> None:
    option = ids(poll)
    for n, ranking in TENNESSEE:
        chosen = [option[i] for i in ranking]
        for _ in range(n):
            fields = {} if context is None else {"context": context}
            response = vote(poll, chosen[:1] if partial else chosen, **fields)
            assert response.status_code == 201, response.get_json()


def tallies(client, poll: dict, headers=None, **query) -> dict:
    url = f"/api/v1/polls/{poll['id']}/tallies"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    response = client.get(url, headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_ranked_poll_takes_every_option_as_its_ranks_by_default(ranked):
    assert ranked["kind"] == "ranked"
    assert ranked["max_choices"] == 4


def test_tallies_count_first_preferences_and_run_the_runoff(client, ranked, vote):
    cast_tennessee(ranked, vote)
    memphis, nashville, chattanooga, knoxville = ids(ranked)
    found = tallies(client, ranked)
    assert found["total_votes"] == 20
    assert {o["id"]: o["votes"] for o in found["options"]} == {
        memphis: 8, nashville: 5, chattanooga: 3, knoxville: 4}
    assert found["irv"] == {"rounds": [
        {"counts": {str(memphis): 8, str(nashville): 5, str(chattanooga): 3,
                    str(knoxville): 4}, "eliminated": [chattanooga], "exhausted": 0},
        {"counts": {str(memphis): 8, str(nashville): 5, str(knoxville): 7},
         "eliminated": [nashville], "exhausted": 0},
        {"counts": {str(memphis): 8, str(knoxville): 12}, "eliminated": [], "exhausted": 0},
    ], "winner": knoxville}


def test_runoff_rebuilt_from_the_database_is_the_same(app, client, ranked, vote):
    cast_tennessee(ranked, vote)
    before = tallies(client, ranked)
    with app.app_context():
        redis = app.extensions["pollbox.redis"]
        redis.client.delete(keys.tally(ranked["id"]))
    irv.cache.clear()
    after = tallies(client, ranked)
    assert [o["votes"] for o in after["options"]] == [o["votes"] for o in before["options"]]
    assert after["irv"] == before["irv"]


def test_ballots_without_a_stored_ranking_are_ranked_from_their_choices(app, client, ranked,
                                                                        vote):
    cast_tennessee(ranked, vote)
    irv.cache.clear()
    before = tallies(client, ranked)["irv"]
    with app.app_context():
        # As a path that writes choices but no ranking would leave them: half of them.
        db.session.execute(update(Ballot).where(
            Ballot.poll_id == ranked["id"],
            Ballot.id.in_(select(Ballot.id).where(Ballot.poll_id == ranked["id"]).limit(10)))
            .values(ranking=None))
        db.session.commit()
        assert db.session.scalar(select(func.count()).where(
            Ballot.poll_id == ranked["id"], Ballot.ranking.is_(None))) == 10
    irv.cache.clear()
    assert tallies(client, ranked)["irv"] == before


def test_bullet_votes_exhaust_and_nobody_needs_more_than_half_of_all(client, ranked, vote):
    cast_tennessee(ranked, vote, partial=True)
    memphis, _nashville, chattanooga, knoxville = ids(ranked)
    runoff = tallies(client, ranked)["irv"]
    assert [r["eliminated"] for r in runoff["rounds"]] == [[chattanooga], [knoxville], []]
    assert [r["exhausted"] for r in runoff["rounds"]] == [0, 3, 7]
    assert runoff["winner"] == memphis  # 8 of the 13 ballots still counting


def test_no_votes_means_no_rounds_and_no_winner(client, ranked):
    assert tallies(client, ranked)["irv"] == {"rounds": [], "winner": None}


def test_runoff_is_null_while_results_are_suppressed(client, auth, make_poll, vote):
    poll = make_poll(kind="ranked", options=["A", "B"], duplicate_check="none",
                     results_min_votes=5)
    assert vote(poll, [ids(poll)[1], ids(poll)[0]]).status_code == 201
    assert tallies(client, poll)["irv"] is None
    assert tallies(client, poll, headers=auth)["irv"]["winner"] == ids(poll)[1]


def test_context_runoff_counts_that_context_only(client, ranked, vote):
    cast_tennessee(ranked, vote, context="/tn")
    memphis = ids(ranked)[0]
    assert vote(ranked, [memphis]).status_code == 201
    assert tallies(client, ranked, context="/tn")["irv"]["winner"] == ids(ranked)[3]
    assert tallies(client, ranked)["irv"]["rounds"][0]["counts"][str(memphis)] == 9


def test_other_kinds_have_no_runoff(client, make_poll, vote):
    poll = make_poll(kind="multiple", options=["A", "B"], duplicate_check="none")
    vote(poll, ids(poll))
    found = tallies(client, poll)
    assert "irv" not in found
    assert [o["votes"] for o in found["options"]] == [1, 1]


@pytest.mark.parametrize(("choices", "message"), [
    (lambda o: [o[0], o[0]], "Each option can be chosen only once."),
    (lambda o: [], "Choose at least one option."),
    (lambda o: [o[0], o[1], o[2]], "Choose at most 2 option(s)."),
])
def test_bad_rankings_are_refused_naming_the_rule(make_poll, vote, choices, message):
    poll = make_poll(kind="ranked", options=["A", "B", "C"], max_choices=2,
                     duplicate_check="none")
    response = vote(poll, choices(ids(poll)))
    assert response.status_code == 422
    assert message in response.get_json()["errors"]["choices"]


def test_exports_keep_the_voters_order_and_add_the_runoff(client, auth, ranked, vote):
    cast_tennessee(ranked, vote)
    memphis, nashville, chattanooga, knoxville = ids(ranked)
    base = f"/api/v1/polls/{ranked['id']}/export"
    votes = client.get(f"{base}?data=votes&format=json", headers=auth).get_json()["rows"]
    orders = {tuple(row["option_ids"]) for row in votes}
    assert orders == {(memphis, nashville, chattanooga, knoxville),
                      (nashville, chattanooga, knoxville, memphis),
                      (chattanooga, knoxville, nashville, memphis),
                      (knoxville, chattanooga, nashville, memphis)}
    document = client.get(f"{base}?data=tallies&format=json", headers=auth).get_json()
    assert document["irv"]["winner"] == knoxville
    assert [row["votes"] for row in document["rows"]] == [8, 5, 3, 4]
    text = client.get(f"{base}?data=tallies&format=csv", headers=auth).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    runoff = {row["option_label"]: row["votes"] for row in rows if row["option_id"] == ""}
    assert runoff["irv round 1 Chattanooga"] == "3"
    assert runoff["irv round 2 Knoxville"] == "7"
    assert runoff["irv round 3 Knoxville"] == "12"
    assert runoff["irv round 3 exhausted"] == "0"
    assert runoff["irv winner Knoxville"] == "12"
    assert "irv round 3 Nashville" not in runoff


def test_runoff_is_read_from_the_database_once_per_tally(client, ranked, vote,
                                                         monkeypatch):
    cast_tennessee(ranked, vote)
    irv.cache.clear()
    reads = []
    real = irv.rankings
    monkeypatch.setattr(irv, "rankings", lambda *a, **k: reads.append(1) or real(*a, **k))
    first = tallies(client, ranked)["irv"]
    assert tallies(client, ranked)["irv"] == first
    assert len(reads) == 1
    assert vote(ranked, [ids(ranked)[1]]).status_code == 201
    assert tallies(client, ranked)["irv"]["rounds"][0]["counts"][str(ids(ranked)[1])] == 6
    assert len(reads) == 2


def test_ranked_answers_validate_against_the_openapi_spec(client, auth, ranked, vote):
    cast_tennessee(ranked, vote)
    spec = client.get("/api/v1/openapi.json").get_json()

    def validator(component: str) -> OAS30Validator:
        return OAS30Validator({"$ref": f"#/components/schemas/{component}",
                               "components": spec["components"]})

    validator("Tallies").validate(tallies(client, ranked))
    base = f"/api/v1/polls/{ranked['id']}/export?data=tallies"
    validator("TalliesExport").validate(
        client.get(f"{base}&format=json", headers=auth).get_json())
    lines = client.get(f"{base}&format=ndjson", headers=auth).get_data(as_text=True)
    rows = [json.loads(line) for line in lines.splitlines()]
    for row in rows:
        validator("TallyRow").validate(row)
    assert any(row["option_id"] is None for row in rows)
    assert "ranked" in spec["components"]["schemas"]["PollCreate"]["properties"]["kind"][
        "enum"]


def test_a_retried_ranked_vote_answers_the_same_tallies_with_the_runoff(app, ranked):
    browser = app.test_client()
    first, second = ids(ranked)[:2]
    answers = [browser.post(f"/api/v1/polls/{ranked['id']}/votes",
                            json={"choices": [second, first]},
                            headers={"Idempotency-Key": "ranked-retry-1"})
               for _ in range(2)]
    assert [answer.status_code for answer in answers] == [201, 201]
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    shown = [answer.get_json()["tallies"] for answer in answers]
    assert shown[0] == shown[1]
    assert shown[1]["irv"]["winner"] == second


def test_the_receipt_shows_a_ranked_vote_in_the_voters_order(client, ranked, vote):
    memphis, _nashville, chattanooga, knoxville = ids(ranked)
    receipt = vote(ranked, [knoxville, memphis, chattanooga]).get_json()["vote"]["receipt"]
    shown = client.get(f"/api/v1/receipts/{receipt}").get_json()
    assert [choice["id"] for choice in shown["choices"]] == [knoxville, memphis, chattanooga]
