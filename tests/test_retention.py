"""Retention: after a poll's `retention_days`, what identifies a ballot is purged; the
counts, options and times stay exact."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from service import retention
from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot, VoteClaim, WebhookDelivery
from service.infra.redis import redis_handle
from service.webhooks import events
from tests.test_errors import assert_problem

DAY = 86_400
IDENTIFYING = ("cookie_hash", "ip_hash", "user_hash", "idempotency_hash", "comment", "other",
               "context")


@pytest.mark.parametrize("fields", [
    {"retention_days": 30},
    {"retention_days": 30, "vote_window_seconds": 31 * DAY},
    {"retention_days": 30, "duplicate_check": "ip"},
], ids=["one-vote-ever", "window-longer", "ip-one-vote-ever"])
def test_a_retention_shorter_than_the_vote_window_is_refused(client, auth, fields):
    response = client.post("/api/v1/polls", headers=auth,
                           json={"question": "Q?", "options": ["A", "B"], **fields})

    errors = assert_problem(response, 422, "validation_error")["errors"]
    assert list(errors) == ["retention_days"]


@pytest.mark.parametrize("fields", [
    {"retention_days": 30, "vote_window_seconds": 30 * DAY},
    {"retention_days": 1, "duplicate_check": "none"},
    {"retention_days": None},
])
def test_a_retention_is_set_and_shown_to_the_owner_only(client, auth, fields):
    response = client.post("/api/v1/polls", headers=auth,
                           json={"question": "Q?", "options": ["A", "B"], **fields})

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["retention_days"] == fields["retention_days"]
    public = client.get(f"/api/v1/polls/{response.get_json()['id']}").get_json()
    assert "retention_days" not in public


def test_a_change_that_would_break_the_retention_rule_is_refused(client, auth, make_poll):
    poll = make_poll(retention_days=7, vote_window_seconds=DAY)

    response = client.patch(f"/api/v1/polls/{poll['id']}", headers=auth,
                            json={"vote_window_seconds": None})

    assert list(assert_problem(response, 422, "validation_error")["errors"]) == [
        "retention_days"]
    assert client.get(f"/api/v1/polls/{poll['id']}", headers=auth).get_json()[
        "vote_window_seconds"] == DAY


def test_the_openapi_document_describes_retention_days(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]

    for name in ("PollCreate", "PollUpdate", "Poll"):
        assert "retention_days" in schemas[name]["properties"], name


def _ballots(app, poll: dict) -> list[Ballot]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(Ballot).where(Ballot.poll_id == poll["id"]).order_by(Ballot.created_at))
        return list(rows)


def _claims(app, poll: dict) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(VoteClaim)
                                 .where(VoteClaim.poll_id == poll["id"]))


def _seen_keys(app, poll: dict) -> list:
    with app.app_context():
        pattern = keys.seen(poll["id"], "*")
        return list(redis_handle().client.scan_iter(match=pattern))


@pytest.fixture
def aged_poll(app, make_poll, vote, clock):
    """A poll keeping identities 2 days: three votes 3 days old, one vote of today."""
    clock.frozen = clock()
    poll = make_poll(retention_days=2, vote_window_seconds=2 * DAY, allow_comment=True,
                     allow_other=True, duplicate_check="cookie_and_ip")
    first, second = poll["options"][0]["id"], poll["options"][1]["id"]
    for index, (choice, ip) in enumerate([(first, "203.0.113.1"), (first, "203.0.113.2"),
                                          (second, "203.0.113.3")]):
        answer = app.test_client().post(
            f"/api/v1/polls/{poll['id']}/votes", environ_overrides={"REMOTE_ADDR": ip},
            headers={"Idempotency-Key": f"old-vote-key-{index:04d}"},
            json={"choices": [choice], "comment": "I take sertraline", "other": "x",
                  "context": "/articles/depression"})
        assert answer.status_code == 201, answer.get_json()
    clock.advance(days=3)
    assert vote(poll, [second], ip="198.51.100.9", comment="recent",
                context="/articles/depression").status_code == 201
    return poll


def _tallies(client, poll, auth, **query):
    return client.get(f"/api/v1/polls/{poll['id']}/tallies", headers=auth,
                      query_string=query).get_json()


def _counts(tallies: dict) -> tuple:
    return tallies["total_votes"], [option["votes"] for option in tallies["options"]]


def _timeseries(client, poll, auth) -> list[dict]:
    response = client.get(f"/api/v1/polls/{poll['id']}/export?data=timeseries&interval=day",
                          headers=auth)
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_purge_forgets_who_voted_and_what_they_wrote_but_keeps_the_counts(
        app, client, auth, aged_poll):
    before = _counts(_tallies(client, aged_poll, auth))
    series = _timeseries(client, aged_poll, auth)
    assert len(_seen_keys(app, aged_poll)) == 8  # a cookie and an address per vote

    result = app.test_cli_runner().invoke(args=["purge"])

    assert result.exit_code == 0, result.output
    assert "Purged 3 ballots" in result.output
    old, recent = _ballots(app, aged_poll)[:3], _ballots(app, aged_poll)[3]
    assert all(getattr(ballot, name) is None for ballot in old for name in IDENTIFYING)
    assert recent.comment == "recent" and recent.ip_hash is not None
    assert _counts(_tallies(client, aged_poll, auth)) == before
    assert _timeseries(client, aged_poll, auth) == series
    assert _counts(_tallies(client, aged_poll, auth, context="/articles/depression")) == (
        1, [0, 1, 0])
    assert _claims(app, aged_poll) == 2  # the recent vote's, as in Redis
    assert len(_seen_keys(app, aged_poll)) == 2
    votes = client.get(f"/api/v1/polls/{aged_poll['id']}/export?data=votes",
                       headers=auth).get_data(as_text=True)
    assert "sertraline" not in votes and "recent" in votes


def test_a_purged_voter_may_vote_again_once_the_window_allows(app, client, auth, aged_poll):
    app.test_cli_runner().invoke(args=["purge"])

    again = app.test_client().post(
        f"/api/v1/polls/{aged_poll['id']}/votes", environ_overrides={"REMOTE_ADDR":
                                                                      "203.0.113.1"},
        json={"choices": [aged_poll["options"][0]["id"]]})

    assert again.status_code == 201, again.get_json()
    assert _tallies(client, aged_poll, auth)["total_votes"] == 5


def test_purge_is_idempotent_and_leaves_polls_without_retention_alone(
        app, client, auth, make_poll, vote, aged_poll, clock):
    kept = make_poll(question="Kept?", allow_comment=True)
    vote(kept, comment="keep me", ip="192.0.2.1")
    clock.advance(days=400)

    first = app.test_cli_runner().invoke(args=["purge"])
    again = app.test_cli_runner().invoke(args=["purge", aged_poll["id"]])

    assert "Purged 4 ballots" in first.output
    assert "Purged 0 ballots" in again.output
    assert _ballots(app, kept)[0].comment == "keep me"


def test_purge_deletes_the_webhook_deliveries_that_carried_the_votes(app, aged_poll, clock):
    with app.app_context():
        ballots = [ballot.id for ballot in _ballots(app, aged_poll)]
        payload_poll = db.session.get(retention.Poll, aged_poll["id"])
        webhook = events.Webhook(id="wh_retention", owner_id=payload_poll.owner_id,
                                 url="https://hooks.example.org/", events=["vote.created"],
                                 secret="whsec_x", created_at=clock())
        db.session.add(webhook)
        db.session.commit()
        old = events.vote_deliveries(session=db.session, poll_id=aged_poll["id"],
                                     ballot_ids=ballots[:3], now=clock() - timedelta(days=3))
        new = events.vote_deliveries(session=db.session, poll_id=aged_poll["id"],
                                     ballot_ids=ballots[3:], now=clock())
        db.session.commit()
        assert "sertraline" in old[0].payload and len(new) == 1

    app.test_cli_runner().invoke(args=["purge"])

    with app.app_context():
        left = db.session.scalars(sa.select(WebhookDelivery.payload)).all()
    assert len(left) == 1 and "sertraline" not in left[0]


def test_the_periodic_run_purges_and_reports(app, aged_poll):
    report = retention.run_once(app)

    assert report is not None and report.ballots == 3
    assert retention.run_once(app).ballots == 0


def test_the_purge_timer_is_off_at_zero_and_on_otherwise(app):
    app.config["RETENTION_PURGE_INTERVAL_SECONDS"] = 0
    assert retention.start_periodic(app) is None

    # So long that its first run (at a random offset) never comes during the tests.
    app.config["RETENTION_PURGE_INTERVAL_SECONDS"] = 10**9
    thread = retention.start_periodic(app)

    assert thread is not None and thread.is_alive() and thread.name == "pollbox-retention"
