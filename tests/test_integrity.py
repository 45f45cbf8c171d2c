"""Integrity numbers: accepted votes and refused attempts by reason, per UTC hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from service.infra import keys
from service.voting import integrity
from tests.test_votes import assert_problem, sign
from tests.widgets.helpers import csrf_token
from tests.widgets.test_widget import form_vote, widget

HOME_IP, OTHER_IP = "203.0.113.7", "198.51.100.99"
ALLOWED = "https://www.psyweb.example"
RETENTION_SECONDS = 30 * 24 * 3600


def report(client, poll: dict, auth: dict) -> dict:
    response = client.get(f"/api/v1/polls/{poll['id']}/integrity", headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def counts(accepted=0, withdrawn=0, changed=0, cookie=0, ip=0, user=0, rate_limited=0,
           origin_not_allowed=0, poll_closed=0, vote_pending=0, challenge_failed=0,
           released_dead_claims=0) -> dict:
    return {
        "accepted": accepted,
        "withdrawn": withdrawn,
        "changed": changed,
        "rejected": {
            "duplicate_vote": {"total": cookie + ip + user, "cookie": cookie, "ip": ip,
                               "user": user},
            "rate_limited": rate_limited,
            "origin_not_allowed": origin_not_allowed,
            "poll_closed": poll_closed,
            "vote_pending": vote_pending,
            "challenge_failed": challenge_failed,
        },
        "released_dead_claims": released_dead_claims,
    }


@pytest.fixture
def frozen(clock) -> datetime:
    clock.frozen = datetime(2026, 11, 29, 10, 59, 30, tzinfo=UTC)
    return clock.frozen


def test_attempts_are_counted_by_outcome_in_their_utc_hour(
    app, client, auth, make_poll, vote, clock, frozen
):
    poll = make_poll(duplicate_check="cookie_and_ip", allowed_origins=[ALLOWED])
    browser = app.test_client()
    assert vote(poll, browser=browser).status_code == 201
    assert_problem(vote(poll, browser=browser), 409, "duplicate_vote")  # cookie seen first
    assert_problem(vote(poll, ip=HOME_IP), 409, "duplicate_vote")  # a new browser: ip
    refused = app.test_client().post(
        f"/api/v1/polls/{poll['id']}/votes", json={"choices": [poll["options"][0]["id"]]},
        headers={"Origin": "https://evil.example"},
    )
    assert_problem(refused, 403, "origin_not_allowed")
    clock.advance(minutes=1)  # 11:00:30, the next hour
    receipt = vote(poll, ip=OTHER_IP).get_json()["vote"]["receipt"]
    client.delete(f"/api/v1/receipts/{receipt}")
    client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)
    assert_problem(vote(poll, ip="192.0.2.1"), 409, "poll_closed")
    app.config["RATELIMIT_VOTES"] = "1 per minute"
    vote(poll, ip="192.0.2.2")
    assert_problem(vote(poll, ip="192.0.2.2"), 429, "rate_limited")

    answer = report(client, poll, auth)

    assert answer["poll_id"] == poll["id"]
    assert answer["retention_days"] == 30
    assert answer["hours"] == [
        {"hour": "2026-11-29T10:00:00Z", **counts(accepted=1, cookie=1, ip=1,
                                                   origin_not_allowed=1)},
        {"hour": "2026-11-29T11:00:00Z", **counts(accepted=1, withdrawn=1, poll_closed=2,
                                                   rate_limited=1)},
    ]
    assert answer["totals"] == counts(accepted=2, withdrawn=1, cookie=1, ip=1,
                                      origin_not_allowed=1, poll_closed=2, rate_limited=1)
    assert answer["from"] == "2026-10-30T12:00:00Z"


def test_duplicate_accounts_are_counted_as_user(app, client, auth, make_poll, vote, frozen):
    poll = make_poll(duplicate_check="user")
    voter = sign(poll, "user-1")
    vote(poll, voter=voter)
    assert_problem(vote(poll, voter=voter, ip=OTHER_IP), 409, "duplicate_vote")

    assert report(client, poll, auth)["totals"] == counts(accepted=1, user=1)


def test_invalid_votes_and_idempotent_replays_are_not_counted(app, client, auth, make_poll,
                                                               vote, frozen):
    poll = make_poll(duplicate_check="none")
    assert vote(poll, [999]).status_code == 422
    for _ in range(2):
        app.test_client().post(f"/api/v1/polls/{poll['id']}/votes",
                               json={"choices": [poll["options"][0]["id"]]},
                               headers={"Idempotency-Key": "k"})

    assert report(client, poll, auth)["totals"] == counts(accepted=1)


def test_a_poll_without_attempts_has_zero_totals_and_no_hours(client, auth, make_poll):
    answer = report(client, make_poll(), auth)

    assert answer["totals"] == counts()
    assert answer["hours"] == []


def test_counts_expire_after_30_days(app, make_poll, vote, frozen):
    poll = make_poll()
    vote(poll)
    redis = app.extensions["pollbox.redis"].client

    ttl = redis.ttl(keys.integrity(poll["id"], integrity.hour_of(frozen)))

    assert RETENTION_SECONDS - 60 < ttl <= RETENTION_SECONDS


def test_hours_older_than_the_retention_are_not_reported(app, client, auth, make_poll, vote,
                                                         clock, frozen):
    poll = make_poll(duplicate_check="none")
    vote(poll)
    clock.frozen = frozen + timedelta(days=30)

    assert report(client, poll, auth)["hours"] == []


@pytest.mark.parametrize(
    ("headers", "poll_id", "status", "code"),
    [
        (lambda auth, other: {}, None, 401, "unauthorized"),
        (lambda auth, other: other, None, 403, "forbidden"),
        (lambda auth, other: auth, "nosuchpoll12", 404, "not_found"),
    ],
    ids=["no-key", "another-owner", "unknown-poll"],
)
def test_integrity_is_for_the_polls_owner_only(client, auth, other_auth, make_poll, headers,
                                               poll_id, status, code):
    poll = make_poll()

    response = client.get(f"/api/v1/polls/{poll_id or poll['id']}/integrity",
                          headers=headers(auth, other_auth))

    assert_problem(response, status, code)


def test_the_widget_form_counts_its_outcomes_as_the_api_does(app, client, auth, make_poll,
                                                             frozen):
    poll = make_poll(duplicate_check="cookie_and_ip")
    browser = app.test_client()
    accepted = form_vote(browser, poll)
    duplicate = form_vote(browser, poll, token=csrf_token(
        widget(app.test_client(), poll, "198.51.100.99").get_data(as_text=True)))
    assert "voted" in parse_qs(urlsplit(accepted.headers["Location"]).query)
    assert parse_qs(urlsplit(duplicate.headers["Location"]).query)["error"] == [
        "duplicate_vote"]

    answer = report(client, poll, auth)

    assert answer["totals"] == counts(accepted=1, cookie=1)
