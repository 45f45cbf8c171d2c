"""Vote rate limits: per client address (IPv6 by /64) and poll, 429 with Retry-After."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from service import create_app
from service.infra import keys
from service.infra.db import db
from service.infra.models import Ballot
from service.voting import ratelimits
from tests.conftest import SECRET
from tests.test_votes import assert_problem
from tests.widgets.test_widget import form_vote

LIMIT = 3
WINDOW_SECONDS = 60
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def limited(app):
    """The app with a small vote limit."""
    app.config["RATELIMIT_VOTES"] = f"{LIMIT} per minute"
    return app


def ballots(app, poll: dict) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(Ballot).where(Ballot.poll_id == poll["id"]))


def test_votes_over_the_limit_get_429_rate_limited_with_retry_after(limited, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    assert [vote(poll).status_code for _ in range(LIMIT)] == [201] * LIMIT

    response = vote(poll)

    problem = assert_problem(response, 429, "rate_limited")
    assert problem["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= WINDOW_SECONDS
    assert ballots(limited, poll) == LIMIT


def test_accepted_votes_carry_no_retry_after(limited, make_poll, vote):
    poll = make_poll(duplicate_check="none")

    assert "Retry-After" not in vote(poll).headers


def test_refused_attempts_count_towards_the_limit(limited, make_poll, vote):
    poll = make_poll(duplicate_check="cookie_and_ip")
    statuses = [vote(poll).status_code for _ in range(LIMIT + 1)]

    assert statuses == [201, 409, 409, 429]


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("203.0.113.7", "203.0.113.7", True),
        ("203.0.113.7", "203.0.113.8", False),
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),
    ],
    ids=["same-ipv4", "other-ipv4", "same-ipv6-64", "other-ipv6-64", "ipv4-mapped"],
)
def test_limit_is_per_client_address_grouping_ipv6_by_64(limited, make_poll, vote, first,
                                                         second, shared):
    poll = make_poll(duplicate_check="none")
    for _ in range(LIMIT):
        assert vote(poll, ip=first).status_code == 201

    expected = 429 if shared else 201
    assert vote(poll, ip=second).status_code == expected


def test_limit_is_per_poll(limited, make_poll, vote):
    first, second = make_poll(duplicate_check="none"), make_poll(duplicate_check="none")
    for _ in range(LIMIT):
        vote(first)
    assert vote(first).status_code == 429

    assert vote(second).status_code == 201


def test_limit_is_read_from_ratelimit_votes(app, make_poll, vote):
    app.config["RATELIMIT_VOTES"] = "1 per minute"
    poll = make_poll(duplicate_check="none")

    assert [vote(poll).status_code for _ in range(2)] == [201, 429]


def test_default_limit_is_60_votes_per_minute_per_address(database_url):
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET,
                      "SQLALCHEMY_DATABASE_URI": database_url})

    assert app.config["RATELIMIT_VOTES"] == "60 per minute"


@pytest.mark.parametrize("stack", ["sqlite-redis", "postgresql-redis"], indirect=True)
def test_limits_are_counted_in_redis_with_a_moving_window_in_the_polls_slot(limited, make_poll,
                                                                             vote):
    poll = make_poll(duplicate_check="none")
    vote(poll)
    vote(poll)
    client = limited.extensions["pollbox.redis"].client

    limiter_keys = [key for key in client.scan_iter() if b":ratelimit:" in key]

    assert limiter_keys == [keys.rate_limit(poll["id"], ratelimits.address_hash(
        secret=SECRET, poll_id=poll["id"], address="203.0.113.7"), LIMIT,
        WINDOW_SECONDS * 1000).encode()]
    assert client.type(limiter_keys[0]) == b"list"  # moving window: attempt times
    assert client.llen(limiter_keys[0]) == 2
    assert 0 < client.pttl(limiter_keys[0]) <= WINDOW_SECONDS * 1000


def test_the_widget_form_and_the_api_share_one_limit(limited, make_poll, vote):
    """One address gets RATELIMIT_VOTES in all, however it votes: the no-JS form counts
    its attempts in the same moving window as the JSON API."""
    poll = make_poll(duplicate_check="none")
    for _ in range(LIMIT - 1):
        assert vote(poll).status_code == 201
    first = form_vote(limited.test_client(), poll)
    second = form_vote(limited.test_client(), poll)  # another browser, the same address

    assert "voted" in parse_qs(urlsplit(first.headers["Location"]).query)
    assert parse_qs(urlsplit(second.headers["Location"]).query)["error"] == ["rate_limited"]
    assert_problem(vote(poll), 429, "rate_limited")
    assert ballots(limited, poll) == LIMIT


def test_a_form_that_does_not_parse_is_an_attempt_too(limited, make_poll, vote):
    poll = make_poll(duplicate_check="none")
    browser = limited.test_client()
    for _ in range(LIMIT):
        response = form_vote(browser, poll, choices=[])
        assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["choose_one"]

    assert_problem(vote(poll), 429, "rate_limited")


def test_several_limits_apply_together(app, make_poll, vote):
    app.config["RATELIMIT_VOTES"] = "2 per second; 3 per minute"
    poll = make_poll(duplicate_check="none")

    statuses = [vote(poll).status_code for _ in range(3)]

    assert statuses == [201, 201, 429]  # the per-second limit refuses the third


# (A vote in an unknown poll is a 404 that counts nothing: no Redis key is made for an
# id anyone can invent; tests/test_hostile_input.py.)
@pytest.mark.parametrize("code", ["bad_json", "validation_error", "origin_not_allowed",
                                  "poll_closed"])
def test_attempts_refused_before_the_vote_is_admitted_count_too(limited, make_poll, vote,
                                                                client, auth, code):
    poll = make_poll(duplicate_check="none", allowed_origins=["https://a.example"])
    url = f"/api/v1/polls/{poll['id']}/votes"
    if code == "poll_closed":
        client.patch(f"/api/v1/polls/{poll['id']}", json={"status": "closed"}, headers=auth)

    def attempt():
        if code == "bad_json":
            return client.post(url, data="{", content_type="application/json",
                               environ_overrides={"REMOTE_ADDR": "203.0.113.7"})
        body = {"choices": [poll["options"][0]["id"]]}
        if code == "validation_error":
            body = {"choices": [poll["options"][0]["id"]], "unknown": 1}
        headers = {"Origin": "https://b.example"} if code == "origin_not_allowed" else {}
        return client.post(url, json=body, headers=headers,
                           environ_overrides={"REMOTE_ADDR": "203.0.113.7"})

    statuses = [attempt().status_code for _ in range(LIMIT + 1)]

    assert statuses[-1] == 429
    assert len(set(statuses[:-1])) == 1 and statuses[0] != 429
    assert "Retry-After" in attempt().headers


@pytest.mark.parametrize("stack", ["sqlite-fakeredis"], indirect=True)
def test_limits_fall_back_to_memory_when_redis_is_down(database_url, clock):
    app = create_app({
        "TESTING": True, "SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": UNREACHABLE_REDIS_URL, "CLOCK": clock, "RATELIMIT_VOTES": "2 per minute",
    })
    from service import owners

    with app.app_context():
        key = owners.create_owner(session=db.session, name="Offline owner")
    client = app.test_client()
    poll = client.post("/api/v1/polls", json={"question": "Q?", "options": ["A", "B"],
                                              "duplicate_check": "none"},
                       headers={"Authorization": f"Bearer {key}"}).get_json()

    statuses = [
        client.post(f"/api/v1/polls/{poll['id']}/votes",
                    json={"choices": [poll["options"][0]["id"]]}).status_code
        for _ in range(3)
    ]

    assert statuses == [201, 201, 429]
    with app.app_context():
        db.engine.dispose()
