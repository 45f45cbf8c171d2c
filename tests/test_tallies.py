"""Tallies: the answer's shape and statistics, context filters, the Redis read model kept
equal to the database, conditional requests, and the `results` rules."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import pytest
from sqlalchemy import event, select

from service import create_app, owners
from service.infra.db import db
from service.infra.models import Ballot, BallotChoice
from service.tallies import counts as tallies
from tests.conftest import SECRET

UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TOP_LEVEL_FIELDS = {
    "poll_id", "status", "total_votes", "options", "other_votes", "suppressed", "updated_at",
    "baseline", "challenge",
}
OPTION_FIELDS = {"id", "label", "votes", "percent", "ci95"}


def tallies_url(poll: dict, context: str | None = None) -> str:
    url = f"/api/v1/polls/{poll['id']}/tallies"
    return url if context is None else f"{url}?context={context}"


def option_ids(poll: dict) -> list[int]:
    return [option["id"] for option in poll["options"]]


def votes_by_option(tallies: dict) -> dict[int, int | None]:
    return {option["id"]: option["votes"] for option in tallies["options"]}


def tally_key(poll: dict) -> str:
    return f"pollbox:{{{poll['id']}}}:tally"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def textbook_wilson(votes: int, total: int) -> tuple[float, float]:
    """Wilson score interval at 95 %, in percent, straight from the textbook formula."""
    z = NormalDist().inv_cdf(0.975)
    p = votes / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    denominator = 1 + z * z / total
    return (centre - spread) / denominator * 100, (centre + spread) / denominator * 100


def database_counts(app, poll_id: str, context: str | None = None) -> dict:
    """Count the poll's ballots straight from the tables, independently of the service."""
    with app.app_context():
        ballots = db.session.execute(
            select(Ballot.id, Ballot.context, Ballot.other).where(Ballot.poll_id == poll_id)
        ).all()
        picks = db.session.execute(
            select(BallotChoice.ballot_id, BallotChoice.option_id)
            .join(Ballot, Ballot.id == BallotChoice.ballot_id)
            .where(Ballot.poll_id == poll_id)
        ).all()
    wanted = {b.id for b in ballots if context is None or b.context == context}
    return {
        "total": len(wanted),
        "other": sum(1 for b in ballots if b.id in wanted and b.other is not None),
        "options": Counter(option for ballot, option in picks if ballot in wanted),
    }


def assert_tallies_match_database(tallies: dict, counts: dict) -> None:
    assert tallies["total_votes"] == counts["total"]
    assert tallies["other_votes"] == counts["other"]
    assert votes_by_option(tallies) == {
        option["id"]: counts["options"][option["id"]] for option in tallies["options"]
    }


# --- shape and statistics ---------------------------------------------------------------


def test_tallies_have_the_contract_shape(client, make_poll, vote, clock):
    clock.frozen = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    poll = make_poll()
    assert vote(poll).status_code == 201

    response = client.get(tallies_url(poll))

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    tallies = response.get_json()
    assert set(tallies) == TOP_LEVEL_FIELDS
    assert tallies["poll_id"] == poll["id"]
    assert tallies["status"] == "open"
    assert tallies["total_votes"] == 1
    assert tallies["other_votes"] == 0
    assert tallies["suppressed"] is False
    assert ISO_UTC.match(tallies["updated_at"])
    assert tallies["updated_at"] == "2026-11-29T12:00:00Z"
    assert [set(option) for option in tallies["options"]] == [OPTION_FIELDS] * 3
    assert [(o["id"], o["label"]) for o in tallies["options"]] == [
        (o["id"], o["label"]) for o in poll["options"]
    ]
    first, second, _ = tallies["options"]
    assert (first["votes"], first["percent"]) == (1, 100.0)
    assert (second["votes"], second["percent"]) == (0, 0.0)
    assert len(first["ci95"]) == 2


def test_tallies_of_a_poll_without_votes_count_zero(client, make_poll, clock):
    clock.frozen = datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC)
    poll = make_poll()

    tallies = client.get(tallies_url(poll)).get_json()

    assert tallies["total_votes"] == 0
    assert set(votes_by_option(tallies).values()) == {0}
    assert tallies["updated_at"] == "2026-11-29T09:30:00Z"


def test_updated_at_is_the_time_of_the_latest_vote(client, make_poll, vote, clock):
    clock.frozen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    poll = make_poll(duplicate_check="none")
    vote(poll)
    clock.advance(minutes=7)
    cast = vote(poll).get_json()

    tallies = client.get(tallies_url(poll)).get_json()

    assert tallies["updated_at"] == cast["vote"]["created_at"] == "2026-01-02T03:11:05Z"


def test_percent_is_rounded_to_two_places(client, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    first, second, _ = option_ids(poll)
    for choice in (first, first, second):
        assert vote(poll, [choice]).status_code == 201

    tallies = client.get(tallies_url(poll)).get_json()

    assert [o["percent"] for o in tallies["options"]] == [66.67, 33.33, 0.0]


def test_multiple_choice_total_counts_voters_and_percentages_may_pass_100(
    client, make_poll, vote
):
    poll = make_poll(kind="multiple", duplicate_check="none")
    first, second, third = option_ids(poll)
    assert vote(poll, [first, second]).status_code == 201
    assert vote(poll, [first, second, third]).status_code == 201

    tallies = client.get(tallies_url(poll)).get_json()

    assert tallies["total_votes"] == 2
    assert votes_by_option(tallies) == {first: 2, second: 2, third: 1}
    assert [o["percent"] for o in tallies["options"]] == [100.0, 100.0, 50.0]
    assert sum(o["percent"] for o in tallies["options"]) == 250.0


def test_other_votes_count_the_other_answers(client, make_poll, vote):
    poll = make_poll(allow_other=True, duplicate_check="none")
    first, second, _ = option_ids(poll)
    assert vote(poll, [], other="Only sometimes").status_code == 201
    assert vote(poll, [first], other="And St John's wort").status_code == 201
    assert vote(poll, [second]).status_code == 201

    tallies = client.get(tallies_url(poll)).get_json()

    assert tallies["total_votes"] == 3
    assert tallies["other_votes"] == 2
    assert votes_by_option(tallies)[first] == 1


def test_ci95_is_the_wilson_interval_at_95_percent(client, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    first, second, _ = option_ids(poll)
    for choice in (first, first, first, first, second):
        assert vote(poll, [choice]).status_code == 201

    options = client.get(tallies_url(poll)).get_json()["options"]

    assert options[0]["votes"] == 4
    assert options[0]["ci95"] == pytest.approx([37.55, 96.38], abs=0.006)
    for option in options:
        low, high = textbook_wilson(option["votes"], 5)
        assert option["ci95"] == pytest.approx([round(low, 2), round(high, 2)], abs=0.006)
        assert option["ci95"][0] <= option["percent"] <= option["ci95"][1]
    assert options[2]["ci95"][0] == 0.0


# --- context filter and agreement with the database --------------------------------------


def test_context_filter_counts_only_that_contexts_votes(client, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    first, second, third = option_ids(poll)
    # Read one context before its votes, so its cached tally must then be kept up to date.
    assert client.get(tallies_url(poll, "/articles/a")).get_json()["total_votes"] == 0
    for choice, context in [(first, "/articles/a"), (first, "/articles/a"),
                            (second, "/articles/a"), (second, "/articles/b"),
                            (third, "/articles/b"), (third, None)]:
        assert vote(poll, [choice], context=context).status_code == 201

    page_a = client.get(tallies_url(poll, "/articles/a")).get_json()
    page_b = client.get(tallies_url(poll, "/articles/b")).get_json()
    unused = client.get(tallies_url(poll, "/articles/none")).get_json()
    everything = client.get(tallies_url(poll)).get_json()

    assert (page_a["total_votes"], votes_by_option(page_a)) == (
        3, {first: 2, second: 1, third: 0})
    assert (page_b["total_votes"], votes_by_option(page_b)) == (
        2, {first: 0, second: 1, third: 1})
    assert unused["total_votes"] == 0
    assert everything["total_votes"] == 6
    assert page_a["options"][0]["percent"] == 66.67


def test_tallies_equal_database_counts_after_many_votes(app, client, make_poll, vote):
    poll = make_poll(kind="multiple", allow_other=True, duplicate_check="none")
    ids = option_ids(poll)
    contexts = [None, "/a", "/b"]
    rng = random.Random(20261129)
    for number in range(60):
        choices = rng.sample(ids, rng.randint(0, len(ids)))
        other = "Something else" if not choices or rng.random() < 0.3 else None
        response = vote(poll, choices, other=other, context=rng.choice(contexts))
        assert response.status_code == 201, response.get_json()
        if number == 20:  # cache the context tallies part-way through
            for context in ("/a", "/b"):
                client.get(tallies_url(poll, context))

    for context in contexts:
        tallies = client.get(tallies_url(poll, context)).get_json()
        assert_tallies_match_database(tallies, database_counts(app, poll["id"], context))
    assert client.get(tallies_url(poll)).get_json()["total_votes"] == 60


# --- the Redis read model ----------------------------------------------------------------


def test_database_counts_come_from_one_statement(app, make_poll, vote):
    """One statement sees one state of the table: a vote committed between two statements
    could leave an option with more votes than the total (and its ci95 undefined)."""
    poll = make_poll(duplicate_check="none", allow_other=True)
    first, second, _ = option_ids(poll)
    for choice, other in ((first, None), (first, None), (second, "Both")):
        vote(poll, [choice], other=other)
    statements = []
    with app.app_context():
        engine = db.engine

        def note(_conn, _cursor, statement, *_args):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", note)
        try:
            counts = tallies.from_database(session=db.session, poll_id=poll["id"])
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert len(statements) == 1
    assert (counts.total, counts.other, counts.options) == (3, 1, {first: 2, second: 1})
    assert counts.updated is not None and counts.updated.tzinfo is not None


def test_deleted_redis_tally_is_rebuilt_from_the_database(app, client, make_poll, vote):
    redis = app.extensions["pollbox.redis"].client
    poll = make_poll(duplicate_check="none", allow_other=True)
    first, second, _ = option_ids(poll)
    for choice in (first, first, second):
        vote(poll, [choice])
    before = client.get(tallies_url(poll)).get_json()
    redis.delete(tally_key(poll))
    # A vote cast while the hash is missing must not be lost.
    assert vote(poll, [second], other="Both").status_code == 201

    after = client.get(tallies_url(poll)).get_json()

    assert before["total_votes"] == 3
    assert votes_by_option(after) == {**votes_by_option(before), second: 2}
    assert_tallies_match_database(after, database_counts(app, poll["id"]))
    assert redis.exists(tally_key(poll)) == 1
    assert int(redis.hget(tally_key(poll), "total")) == 4
    # The rebuilt hash goes on counting.
    vote(poll, [first])
    assert client.get(tallies_url(poll)).get_json()["total_votes"] == 5


@pytest.fixture
def offline_redis_app(database_url, clock):
    """The app on the stack's database, with a Redis address nothing answers on."""
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": UNREACHABLE_REDIS_URL,
        "CLOCK": clock,
    })
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    "stack",
    [pytest.param("sqlite-fakeredis", id="sqlite"),
     pytest.param("postgresql-redis", id="postgresql")],
    indirect=True,
)
def test_votes_and_tallies_work_from_the_database_when_redis_is_unreachable(
    offline_redis_app,
):
    app = offline_redis_app
    with app.app_context():
        key = owners.create_owner(session=db.session, name="Offline owner")
    client = app.test_client()
    created = client.post(
        "/api/v1/polls",
        json={"question": "Redis down?", "options": ["Yes", "No"], "allow_other": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201, created.get_json()
    poll = created.get_json()
    yes, no = option_ids(poll)

    casts = [
        (app.test_client(), "198.51.100.1", {"choices": [yes]}),
        (app.test_client(), "198.51.100.2", {"choices": [yes], "context": "/x"}),
        (app.test_client(), "198.51.100.3", {"choices": [no], "other": "Hm"}),
    ]
    for browser, ip, body in casts:
        response = browser.post(f"/api/v1/polls/{poll['id']}/votes", json=body,
                                environ_overrides={"REMOTE_ADDR": ip})
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["tallies"] is not None
    again = casts[0][0].post(f"/api/v1/polls/{poll['id']}/votes", json={"choices": [no]},
                             environ_overrides={"REMOTE_ADDR": "198.51.100.1"})
    assert again.status_code == 409

    tallies = client.get(tallies_url(poll))
    in_context = client.get(tallies_url(poll, "/x")).get_json()

    assert tallies.status_code == 200
    assert (tallies.get_json()["total_votes"], votes_by_option(tallies.get_json())) == (
        3, {yes: 2, no: 1})
    assert tallies.get_json()["other_votes"] == 1
    assert (in_context["total_votes"], votes_by_option(in_context)) == (1, {yes: 1, no: 0})


# --- conditional requests -----------------------------------------------------------------


def test_tallies_answer_304_without_a_body_to_a_matching_if_none_match(client, make_poll, vote):
    poll = make_poll()
    vote(poll)
    first = client.get(tallies_url(poll))
    etag = first.headers.get("ETag")
    assert etag

    again = client.get(tallies_url(poll), headers={"If-None-Match": etag})

    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag


def test_a_new_vote_changes_the_etag(client, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    vote(poll)
    etag = client.get(tallies_url(poll)).headers["ETag"]
    vote(poll)

    response = client.get(tallies_url(poll), headers={"If-None-Match": etag})

    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert response.get_json()["total_votes"] == 2


def test_correcting_a_label_changes_the_etag_and_the_label(client, make_poll, vote, auth):
    poll = make_poll()
    vote(poll)
    etag = client.get(tallies_url(poll)).headers["ETag"]
    corrected = [{"id": o["id"], "label": o["label"]} for o in poll["options"]]
    corrected[0]["label"] = "Yes, at the moment"
    patched = client.patch(f"/api/v1/polls/{poll['id']}", json={"options": corrected},
                           headers=auth)
    assert patched.status_code == 200, patched.get_json()

    response = client.get(tallies_url(poll), headers={"If-None-Match": etag})

    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert response.get_json()["options"][0]["label"] == "Yes, at the moment"
    assert response.get_json()["options"][0]["votes"] == 1


# --- results rules ------------------------------------------------------------------------


def assert_results_hidden(response) -> None:
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "results_hidden"


def test_always_results_are_public(app, make_poll, vote):
    poll = make_poll(results="always")
    vote(poll)

    response = app.test_client().get(tallies_url(poll))

    assert response.status_code == 200
    assert response.get_json()["total_votes"] == 1


def test_after_vote_results_show_only_to_the_browser_that_voted_and_the_owner(
    app, client, make_poll, vote, auth
):
    poll = make_poll(results="after_vote")
    voter = app.test_client()
    assert_results_hidden(voter.get(tallies_url(poll)))

    cast = vote(poll, browser=voter)

    assert cast.status_code == 201
    assert cast.get_json()["tallies"]["total_votes"] == 1
    assert voter.get(tallies_url(poll)).status_code == 200
    assert_results_hidden(app.test_client().get(tallies_url(poll)))
    owner_view = client.get(tallies_url(poll), headers=auth)
    assert owner_view.status_code == 200
    assert owner_view.get_json()["total_votes"] == 1


@pytest.mark.parametrize("closing", ["owner_closes", "closes_at_passes"])
def test_after_close_results_are_hidden_until_the_poll_closes(
    app, client, make_poll, vote, auth, clock, closing
):
    clock.frozen = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    poll = make_poll(results="after_close", closes_at=iso(clock() + timedelta(hours=1)))
    voter = app.test_client()
    cast = vote(poll, browser=voter)
    assert cast.status_code == 201
    assert cast.get_json()["tallies"] is None
    assert_results_hidden(voter.get(tallies_url(poll)))
    assert_results_hidden(app.test_client().get(tallies_url(poll)))

    if closing == "owner_closes":
        closed = client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"},
                              headers=auth)
        assert closed.status_code == 200
    else:
        clock.advance(hours=2)

    response = app.test_client().get(tallies_url(poll))
    assert response.status_code == 200
    assert response.get_json()["status"] == "closed"
    assert response.get_json()["total_votes"] == 1


def test_owner_only_results_show_only_with_the_owners_key(
    app, client, make_poll, vote, auth, other_auth
):
    poll = make_poll(results="owner_only")
    voter = app.test_client()
    assert vote(poll, browser=voter).get_json()["tallies"] is None

    assert_results_hidden(voter.get(tallies_url(poll)))
    assert_results_hidden(app.test_client().get(tallies_url(poll)))
    assert_results_hidden(client.get(tallies_url(poll), headers=other_auth))
    owner_view = client.get(tallies_url(poll), headers=auth)
    assert owner_view.status_code == 200
    assert owner_view.get_json()["total_votes"] == 1


@pytest.mark.parametrize(
    ("results", "shown"),
    [("always", True), ("after_vote", True), ("after_close", False), ("owner_only", False)],
)
def test_vote_answer_includes_tallies_only_when_the_rule_shows_them(
    make_poll, vote, results, shown
):
    poll = make_poll(results=results)

    response = vote(poll)

    assert response.status_code == 201
    tallies = response.get_json()["tallies"]
    if shown:
        assert tallies["poll_id"] == poll["id"]
        assert tallies["total_votes"] == 1
    else:
        assert tallies is None


def test_another_owners_key_sees_the_public_view(client, make_poll, vote, other_auth):
    poll = make_poll(results_min_votes=2)
    vote(poll)

    response = client.get(tallies_url(poll), headers=other_auth)

    assert response.status_code == 200
    assert response.get_json()["suppressed"] is True
    assert response.get_json()["options"][0]["votes"] is None


RESULTS_MIN_VOTES = 3


@pytest.mark.parametrize(
    ("ballots", "suppressed"),
    [(RESULTS_MIN_VOTES - 1, True), (RESULTS_MIN_VOTES, False)],
    ids=["one-below-minimum", "at-minimum"],
)
def test_public_sees_only_the_total_below_results_min_votes(
    app, client, make_poll, vote, auth, ballots, suppressed
):
    poll = make_poll(results_min_votes=RESULTS_MIN_VOTES, duplicate_check="none")
    casts = [vote(poll).get_json() for _ in range(ballots)]

    public = app.test_client().get(tallies_url(poll)).get_json()
    owner = client.get(tallies_url(poll), headers=auth).get_json()

    assert public["total_votes"] == owner["total_votes"] == ballots
    assert public["suppressed"] is suppressed
    assert casts[-1]["tallies"]["suppressed"] is suppressed
    for option in public["options"] + casts[-1]["tallies"]["options"]:
        hidden = [option["votes"], option["percent"], option["ci95"]]
        if suppressed:
            assert hidden == [None, None, None]
        else:
            assert None not in hidden
    assert owner["suppressed"] is False
    assert owner["options"][0]["votes"] == ballots
    assert owner["options"][0]["percent"] == 100.0
    assert owner["options"][0]["ci95"] is not None
