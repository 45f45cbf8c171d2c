"""Voting: validation, the 201 answer and its cookie, duplicate checks, vote windows,
poll status, client addresses, privacy, and what survives Redis or database trouble.

Every test runs on the three stacks of `conftest.py` unless it says otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from itsdangerous import Signer

from service.infra.db import db
from service.infra.models import Ballot
from tests.conftest import SECRET

PROBLEM = "application/problem+json"
COOKIE = "pollbox_voter"
COOKIE_SALT = "pollbox-voter"
HOME_IP, OTHER_IP = "203.0.113.7", "198.51.100.99"
WINDOW = 60
ISO_Z = "%Y-%m-%dT%H:%M:%SZ"
CHECKING_POLICIES = ("cookie", "ip", "cookie_and_ip", "user")


# -- helpers -------------------------------------------------------------------------


def sign(poll: dict, user_id: str) -> dict:
    """The `voter` object an owner's site sends: HMAC-SHA256 of "<poll id>:<user id>"."""
    message = f"{poll['id']}:{user_id}".encode()
    sig = hmac.new(poll["signing_secret"].encode(), message, hashlib.sha256).hexdigest()
    return {"id": user_id, "sig": sig}


def cookie_value(browser) -> str | None:
    cookie = browser.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def cookie_id(browser) -> str:
    """The raw voter id inside a browser's signed cookie."""
    return Signer(SECRET, salt=COOKIE_SALT).unsign(cookie_value(browser)).decode()


def set_cookie_headers(response) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]


def cookie_attributes(header: str) -> set[str]:
    return {part.strip() for part in header.split(";")[1:]}


def assert_problem(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.mimetype == PROBLEM
    assert body["status"] == status
    assert body["code"] == code
    return body


def frozen_whole_second(clock) -> datetime:
    """Freeze the clock on a whole second so millisecond window arithmetic is exact."""
    clock.frozen = datetime.now(UTC).replace(microsecond=0)
    return clock.frozen


@pytest.fixture
def browser(app):
    """A fresh browser: a test client with its own cookie jar."""
    return app.test_client


@pytest.fixture
def recorded(app, client, auth):
    """What the service holds for a poll: (ballot rows, tally total shown to its owner)."""

    def counts(poll: dict) -> tuple[int, int]:
        with app.app_context():
            ballots = db.session.scalar(
                sa.select(sa.func.count()).select_from(Ballot).where(Ballot.poll_id == poll["id"])
            )
        response = client.get(f"/api/v1/polls/{poll['id']}/tallies", headers=auth)
        assert response.status_code == 200, response.get_json()
        return ballots, response.get_json()["total_votes"]

    return counts


@pytest.fixture
def ballots_of(app):
    """The poll's ballot rows, as Ballot objects."""

    def rows(poll: dict) -> list[Ballot]:
        with app.app_context():
            return list(db.session.scalars(sa.select(Ballot).where(Ballot.poll_id == poll["id"])))

    return rows


def post_vote(browser, poll: dict, body: dict, *, ip: str = HOME_IP, **kwargs):
    return browser.post(
        f"/api/v1/polls/{poll['id']}/votes",
        json=body,
        environ_overrides={"REMOTE_ADDR": ip},
        **kwargs,
    )


# -- validation ----------------------------------------------------------------------


def _opt(poll: dict, index: int = 0) -> int:
    return poll["options"][index]["id"]


INVALID_VOTES = [
    pytest.param({}, lambda p, o: {"choices": [99]}, "choices", "Unknown option 99.",
                 id="unknown-option-id"),
    pytest.param({}, lambda p, o: {"choices": [_opt(o)]}, "choices",
                 lambda p, o: f"Unknown option {_opt(o)}.", id="option-of-another-poll"),
    pytest.param({"kind": "multiple", "max_choices": 3},
                 lambda p, o: {"choices": [_opt(p), _opt(p)]}, "choices", None,
                 id="repeated-option"),
    pytest.param({}, lambda p, o: {"choices": [_opt(p, 0), _opt(p, 1)]}, "choices",
                 "Choose at most 1 option(s).", id="two-choices-on-single-poll"),
    pytest.param({"kind": "multiple", "max_choices": 2},
                 lambda p, o: {"choices": [_opt(p, 0), _opt(p, 1), _opt(p, 2)]}, "choices",
                 "Choose at most 2 option(s).", id="more-than-max-choices"),
    pytest.param({}, lambda p, o: {"choices": []}, "choices", None, id="empty-choices"),
    pytest.param({}, lambda p, o: {}, "choices", None, id="missing-choices"),
    pytest.param({}, lambda p, o: {"choices": None}, "choices", None, id="null-choices"),
    pytest.param({}, lambda p, o: {"choices": _opt(p)}, "choices", None,
                 id="choices-not-a-list"),
    pytest.param({}, lambda p, o: {"choices": [str(_opt(p))]}, "choices.0", None,
                 id="option-id-as-string"),
    pytest.param({}, lambda p, o: {"choices": [float(_opt(p))]}, "choices.0", None,
                 id="option-id-as-float"),
    pytest.param({}, lambda p, o: {"choices": [True]}, "choices.0", None,
                 id="option-id-as-boolean"),
    pytest.param({}, lambda p, o: {"choices": [], "other": "Maybe"}, "other", None,
                 id="other-only-on-poll-without-other"),
    pytest.param({}, lambda p, o: {"choices": [_opt(p)], "other": "Maybe"}, "other", None,
                 id="other-on-poll-without-other"),
    pytest.param({"allow_other": True}, lambda p, o: {"choices": [], "other": "   "}, "other",
                 None, id="other-blank-after-trimming"),
    pytest.param({"allow_other": True}, lambda p, o: {"choices": [], "other": "x" * 201},
                 "other", None, id="other-over-200"),
    pytest.param({"allow_other": True}, lambda p, o: {"choices": [], "other": None}, "choices",
                 None, id="empty-choices-with-null-other"),
    pytest.param({}, lambda p, o: {"choices": [_opt(p)], "comment": "Nice"}, "comment", None,
                 id="comment-on-poll-without-comments"),
    pytest.param({"allow_comment": True},
                 lambda p, o: {"choices": [_opt(p)], "comment": "x" * 2001}, "comment", None,
                 id="comment-over-2000"),
    pytest.param({"allow_comment": True}, lambda p, o: {"choices": [_opt(p)], "comment": " "},
                 "comment", None, id="comment-blank-after-trimming"),
    pytest.param({}, lambda p, o: {"choices": [_opt(p)], "context": "x" * 501}, "context",
                 None, id="context-over-500"),
    pytest.param({}, lambda p, o: {"choices": [_opt(p)], "colour": "red"}, "colour",
                 "Unknown field.", id="unknown-field"),
]


@pytest.mark.parametrize(("poll_fields", "body", "field", "message"), INVALID_VOTES)
def test_invalid_vote_is_422_naming_the_field_and_counts_nothing(
    make_poll, browser, recorded, poll_fields, body, field, message
):
    poll = make_poll(**poll_fields)
    other_poll = make_poll(question="Another poll")

    response = post_vote(browser(), poll, body(poll, other_poll))

    problem = assert_problem(response, 422, "validation_error")
    assert field in problem["errors"], problem
    if message is not None:
        expected = message(poll, other_poll) if callable(message) else message
        assert expected in problem["errors"][field]
    assert recorded(poll) == (0, 0)


def test_rejected_vote_does_not_use_up_the_voters_vote(make_poll, browser, vote):
    poll = make_poll(duplicate_check="cookie_and_ip")
    voter = browser()

    assert vote(poll, [99], browser=voter).status_code == 422
    assert vote(poll, browser=voter).status_code == 201


VALID_VOTES = [
    pytest.param({"allow_other": True}, lambda p: {"choices": [], "other": "  Sometimes  "},
                 {"other": "Sometimes"}, id="other-instead-of-choices"),
    pytest.param({"allow_other": True}, lambda p: {"choices": [], "other": " " + "x" * 200 + " "},
                 {"other": "x" * 200}, id="other-of-200-after-trimming"),
    pytest.param({"allow_other": True}, lambda p: {"choices": [_opt(p)], "other": "Also this"},
                 {"other": "Also this"}, id="other-with-a-choice"),
    pytest.param({"allow_comment": True},
                 lambda p: {"choices": [_opt(p)], "comment": " " + "c" * 2000 + "\n"},
                 {"comment": "c" * 2000}, id="comment-of-2000-after-trimming"),
    pytest.param({}, lambda p: {"choices": [_opt(p)], "context": "/" + "a" * 499},
                 {"context": "/" + "a" * 499}, id="context-of-500"),
    pytest.param({}, lambda p: {"choices": [_opt(p)], "other": None, "comment": None,
                                "context": None, "voter": None},
                 {"other": None, "comment": None, "context": None}, id="explicit-nulls"),
    pytest.param({"kind": "multiple", "max_choices": 2},
                 lambda p: {"choices": [_opt(p, 2), _opt(p, 0)]}, {}, id="multiple-up-to-max"),
]


@pytest.mark.parametrize(("poll_fields", "body", "stored"), VALID_VOTES)
def test_valid_vote_is_recorded_as_sent(make_poll, browser, ballots_of, poll_fields, body,
                                        stored):
    poll = make_poll(**poll_fields)

    response = post_vote(browser(), poll, body(poll))

    assert response.status_code == 201, response.get_json()
    [ballot] = ballots_of(poll)
    assert {name: getattr(ballot, name) for name in stored} == stored


def test_multiple_choice_vote_counts_each_chosen_option(make_poll, vote):
    poll = make_poll(kind="multiple", max_choices=2)
    first, _, third = (option["id"] for option in poll["options"])

    response = vote(poll, [first, third])

    assert response.status_code == 201
    tallies = response.get_json()["tallies"]
    assert tallies["total_votes"] == 1
    assert {o["id"]: o["votes"] for o in tallies["options"]} == {
        first: 1, poll["options"][1]["id"]: 0, third: 1
    }


def test_other_answer_counts_as_a_ballot_without_options(make_poll, vote):
    poll = make_poll(allow_other=True)

    tallies = vote(poll, [], other="Something else").get_json()["tallies"]

    assert tallies["total_votes"] == 1
    assert tallies["other_votes"] == 1
    assert all(option["votes"] == 0 for option in tallies["options"])


# -- the 201 answer and the voter cookie -----------------------------------------------


@pytest.mark.parametrize(
    ("results", "shows_tallies"),
    [("always", True), ("after_vote", True), ("after_close", False), ("owner_only", False)],
)
def test_accepted_vote_answers_its_id_time_and_the_tallies_the_rule_allows(
    make_poll, vote, clock, results, shows_tallies
):
    moment = frozen_whole_second(clock)
    poll = make_poll(results=results)

    response = vote(poll)

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"vote", "tallies"}
    assert isinstance(body["vote"]["id"], str) and body["vote"]["id"]
    assert body["vote"]["created_at"] == moment.strftime(ISO_Z)
    if shows_tallies:
        assert body["tallies"]["poll_id"] == poll["id"]
        assert body["tallies"]["total_votes"] == 1
        assert body["tallies"]["options"][0]["votes"] == 1
    else:
        assert body["tallies"] is None


def test_each_vote_gets_its_own_id(make_poll, vote, browser):
    poll = make_poll(duplicate_check="none")
    voter = browser()

    ids = {vote(poll, browser=voter).get_json()["vote"]["id"] for _ in range(3)}

    assert len(ids) == 3


@pytest.mark.parametrize(
    ("base_url", "expected", "absent"),
    [
        pytest.param("http://localhost", {"HttpOnly", "Path=/", "SameSite=Lax"},
                     {"Secure", "Partitioned", "SameSite=None"}, id="http"),
        pytest.param("https://localhost",
                     {"HttpOnly", "Path=/", "Secure", "SameSite=None", "Partitioned"},
                     {"SameSite=Lax"}, id="https"),
    ],
)
def test_first_vote_sets_the_signed_voter_cookie(make_poll, browser, base_url, expected, absent):
    poll = make_poll()

    response = post_vote(browser(), poll, {"choices": [_opt(poll)]}, base_url=base_url)

    assert response.status_code == 201
    [header] = set_cookie_headers(response)
    attributes = cookie_attributes(header)
    assert expected <= attributes
    assert not absent & attributes
    value = header.split(";", 1)[0].split("=", 1)[1]
    assert Signer(SECRET, salt=COOKIE_SALT).validate(value)


def test_a_vote_with_a_valid_cookie_gets_no_new_cookie(make_poll, browser, vote):
    poll = make_poll(duplicate_check="none")
    voter = browser()
    vote(poll, browser=voter)
    sent = cookie_value(voter)

    response = vote(poll, browser=voter)

    assert response.status_code == 201
    assert set_cookie_headers(response) == []
    assert cookie_value(voter) == sent


def test_the_same_cookie_identifies_the_browser_in_every_poll(make_poll, browser, vote):
    first, second = make_poll(), make_poll(question="Second")
    voter = browser()
    vote(first, browser=voter)

    response = vote(second, browser=voter)

    assert response.status_code == 201
    assert set_cookie_headers(response) == []


def _tampered(value: str) -> str:
    payload, sig = value.rsplit(".", 1)
    return f"{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"


BAD_COOKIES = [
    pytest.param(_tampered, id="tampered-signature"),
    pytest.param(lambda value: value.rsplit(".", 1)[0], id="unsigned-id"),
    pytest.param(lambda value: Signer("another-secret", salt=COOKIE_SALT).sign(
        value.rsplit(".", 1)[0]).decode(), id="signed-with-another-key"),
    pytest.param(lambda value: "x" + value, id="altered-id"),
]


@pytest.mark.parametrize("forge", BAD_COOKIES)
def test_invalid_cookie_counts_as_absent_so_it_is_a_new_browser(
    make_poll, browser, vote, recorded, forge
):
    poll = make_poll(duplicate_check="cookie")
    first = browser()
    assert vote(poll, browser=first).status_code == 201
    forger = browser()
    forger.set_cookie(COOKIE, forge(cookie_value(first)))

    response = vote(poll, browser=forger)

    # Without a valid cookie the browser is a new one to the `cookie` check: a new id,
    # a new cookie, and a vote that counts.
    assert response.status_code == 201
    [header] = set_cookie_headers(response)
    assert cookie_id(forger) != cookie_id(first)
    assert header.startswith(f"{COOKIE}={cookie_value(forger)};")
    assert recorded(poll) == (2, 2)
    # The new cookie is a real identity: the forger cannot vote a third time with it.
    assert_problem(vote(poll, browser=forger), 409, "duplicate_vote")


@pytest.mark.parametrize("forge", BAD_COOKIES)
def test_invalid_cookie_does_not_get_past_the_address_check(make_poll, browser, vote, forge):
    poll = make_poll(duplicate_check="cookie_and_ip")
    first = browser()
    assert vote(poll, browser=first).status_code == 201
    forger = browser()
    forger.set_cookie(COOKIE, forge(cookie_value(first)))

    assert_problem(vote(poll, browser=forger), 409, "duplicate_vote")


# -- duplicate checks ------------------------------------------------------------------

SECOND_ATTEMPTS = ("same browser, same ip", "same browser, new ip", "new browser, same ip",
                   "new browser, new ip")
EXPECTED_SECOND = {
    "none": (201, 201, 201, 201),
    "cookie": (409, 409, 201, 201),
    "ip": (409, 201, 409, 201),
    "cookie_and_ip": (409, 409, 409, 201),
    "user": (409, 409, 409, 409),  # the same site account, wherever it votes from
}
DUPLICATE_CASES = [
    pytest.param(policy, attempt, status, id=f"{policy}: {attempt}")
    for policy, statuses in EXPECTED_SECOND.items()
    for attempt, status in zip(SECOND_ATTEMPTS, statuses, strict=True)
]


@pytest.mark.parametrize(("policy", "attempt", "expected"), DUPLICATE_CASES)
def test_second_vote_is_judged_by_the_polls_duplicate_check(
    make_poll, browser, vote, recorded, policy, attempt, expected
):
    poll = make_poll(duplicate_check=policy)
    fields = {"voter": sign(poll, "user-42")} if policy == "user" else {}
    first = browser()
    assert vote(poll, browser=first, ip=HOME_IP, **fields).status_code == 201

    same_browser, same_ip = (part.startswith("same") for part in attempt.split(", "))
    response = vote(
        poll,
        browser=first if same_browser else browser(),
        ip=HOME_IP if same_ip else OTHER_IP,
        **fields,
    )

    if expected == 201:
        assert response.status_code == 201, response.get_json()
        assert recorded(poll) == (2, 2)
    else:
        problem = assert_problem(response, 409, "duplicate_vote")
        assert problem["detail"]
        assert recorded(poll) == (1, 1)


def test_user_check_lets_another_account_vote_from_the_same_browser_and_address(
    make_poll, browser, vote
):
    poll = make_poll(duplicate_check="user")
    shared = browser()
    assert vote(poll, browser=shared, voter=sign(poll, "alice")).status_code == 201

    assert vote(poll, browser=shared, voter=sign(poll, "bob")).status_code == 201


def _wrong_sig(poll: dict) -> dict:
    voter = sign(poll, "alice")
    return {**voter, "sig": sign({**poll, "signing_secret": "not-the-secret"}, "alice")["sig"]}


BAD_VOTERS = [
    pytest.param(lambda p: None, "voter", id="missing-voter"),
    pytest.param(lambda p: _wrong_sig(p), "voter.sig", id="signed-with-another-secret"),
    pytest.param(lambda p: {**sign(p, "alice"), "id": "mallory"}, "voter.sig",
                 id="signature-of-another-user"),
    pytest.param(lambda p: {"id": "alice", "sig": sign({**p, "id": "otherpoll"}, "alice")["sig"]},
                 "voter.sig", id="signature-for-another-poll"),
    pytest.param(lambda p: {"id": "alice", "sig": "abc"}, "voter.sig", id="malformed-signature"),
    pytest.param(lambda p: {"id": "alice"}, "voter.sig", id="no-signature"),
]


@pytest.mark.parametrize(("voter", "field"), BAD_VOTERS)
def test_user_check_refuses_a_missing_or_badly_signed_voter(
    make_poll, browser, vote, recorded, voter, field
):
    poll = make_poll(duplicate_check="user")
    someone = browser()
    body = {} if voter(poll) is None else {"voter": voter(poll)}

    problem = assert_problem(vote(poll, browser=someone, **body), 422, "validation_error")

    assert field in problem["errors"]
    assert recorded(poll) == (0, 0)
    # Nothing was claimed either: the genuine account can still vote from here.
    assert vote(poll, browser=someone, voter=sign(poll, "alice")).status_code == 201


def test_user_signature_is_accepted_in_upper_case_hex(make_poll, vote):
    poll = make_poll(duplicate_check="user")
    voter = sign(poll, "alice")

    assert vote(poll, voter={**voter, "sig": voter["sig"].upper()}).status_code == 201


def test_concurrent_duplicates_yield_exactly_one_accepted_vote(make_poll, app, vote, recorded):
    poll = make_poll(duplicate_check="cookie_and_ip")
    signed = Signer(SECRET, salt=COOKIE_SALT).sign("the-same-browser").decode()
    attempts = 8
    start = threading.Barrier(attempts)
    statuses: list[int] = []

    def attempt():
        browser = app.test_client()
        browser.set_cookie(COOKIE, signed)
        start.wait()
        statuses.append(vote(poll, browser=browser).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201] + [409] * (attempts - 1)
    assert recorded(poll) == (1, 1)


# -- vote windows ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", CHECKING_POLICIES)
def test_windowed_poll_accepts_the_same_voter_again_from_t_plus_window(
    make_poll, browser, vote, clock, recorded, policy
):
    frozen_whole_second(clock)
    poll = make_poll(duplicate_check=policy, vote_window_seconds=WINDOW)
    fields = {"voter": sign(poll, "user-7")} if policy == "user" else {}
    voter = browser()
    assert vote(poll, browser=voter, **fields).status_code == 201

    clock.advance(seconds=WINDOW - 0.001)
    assert_problem(vote(poll, browser=voter, **fields), 409, "duplicate_vote")

    clock.advance(seconds=0.001)  # exactly t + N
    assert vote(poll, browser=voter, **fields).status_code == 201
    # ... which starts a new window.
    assert_problem(vote(poll, browser=voter, **fields), 409, "duplicate_vote")
    clock.advance(seconds=WINDOW + 3600)
    assert vote(poll, browser=voter, **fields).status_code == 201
    assert recorded(poll) == (3, 3)


@pytest.mark.parametrize("policy", CHECKING_POLICIES)
def test_poll_without_window_refuses_the_same_voter_forever(make_poll, browser, vote, clock,
                                                             policy):
    poll = make_poll(duplicate_check=policy, vote_window_seconds=None)
    fields = {"voter": sign(poll, "user-7")} if policy == "user" else {}
    voter = browser()
    assert vote(poll, browser=voter, **fields).status_code == 201

    clock.advance(days=3650)

    assert_problem(vote(poll, browser=voter, **fields), 409, "duplicate_vote")


# -- poll status -----------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.strftime(ISO_Z)


def test_vote_before_opens_at_is_refused_as_poll_closed(make_poll, vote, clock, recorded):
    moment = frozen_whole_second(clock)
    poll = make_poll(opens_at=_iso(moment + timedelta(hours=1)))

    problem = assert_problem(vote(poll), 409, "poll_closed")

    assert problem["detail"]
    assert recorded(poll) == (0, 0)
    clock.advance(hours=1)
    assert vote(poll).status_code == 201


def test_vote_after_closes_at_is_refused_as_poll_closed(make_poll, browser, vote, clock,
                                                        recorded):
    moment = frozen_whole_second(clock)
    poll = make_poll(closes_at=_iso(moment + timedelta(hours=1)))
    assert vote(poll, browser=browser(), ip="192.0.2.1").status_code == 201

    clock.advance(hours=1, seconds=1)

    assert_problem(vote(poll, browser=browser(), ip="192.0.2.2"), 409, "poll_closed")
    assert recorded(poll) == (1, 1)


def test_poll_closed_by_its_owner_refuses_votes_until_reopened(make_poll, client, auth, browser,
                                                               vote, recorded):
    poll = make_poll()
    url = f"/api/v1/polls/{poll['id']}"
    assert client.patch(url, json={"status": "closed"}, headers=auth).status_code == 200

    assert_problem(vote(poll, browser=browser()), 409, "poll_closed")
    assert recorded(poll) == (0, 0)

    assert client.patch(url, json={"status": "open"}, headers=auth).status_code == 200
    assert vote(poll, browser=browser()).status_code == 201


# -- client addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_ip", "second_ip", "expected"),
    [
        pytest.param("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", 409,
                     id="ipv6-same-64"),
        pytest.param("2001:db8:1:2::1", "2001:db8:1:3::1", 201, id="ipv6-another-64"),
        pytest.param("192.0.2.10", "::ffff:192.0.2.10", 409, id="ipv4-then-mapped"),
        pytest.param("::ffff:192.0.2.10", "192.0.2.10", 409, id="mapped-then-ipv4"),
        pytest.param("192.0.2.10", "192.0.2.11", 201, id="ipv4-neighbour"),
    ],
)
def test_address_check_groups_ipv6_by_64_and_unmaps_ipv4(make_poll, browser, vote, first_ip,
                                                         second_ip, expected):
    poll = make_poll(duplicate_check="ip")
    assert vote(poll, browser=browser(), ip=first_ip).status_code == 201

    assert vote(poll, browser=browser(), ip=second_ip).status_code == expected


@pytest.mark.parametrize(
    ("proxies", "first", "second", "expected"),
    [
        pytest.param(0, ("10.0.0.1", "198.51.100.1"), ("10.0.0.1", "198.51.100.2"), 409,
                     id="no-trusted-proxy-ignores-forwarded-for"),
        pytest.param(0, ("10.0.0.1", "198.51.100.1"), ("10.0.0.2", "198.51.100.1"), 201,
                     id="no-trusted-proxy-uses-the-peer"),
        pytest.param(1, ("10.0.0.1", "203.0.113.50, 198.51.100.1"),
                     ("10.0.0.1", "203.0.113.50, 198.51.100.2"), 201,
                     id="one-proxy-uses-the-last-entry"),
        pytest.param(1, ("10.0.0.1", "203.0.113.50, 198.51.100.1"),
                     ("10.0.0.2", "192.0.2.66, 198.51.100.1"), 409,
                     id="one-proxy-ignores-spoofed-earlier-entries"),
        pytest.param(1, ("10.0.0.1", "198.51.100.1:5000"), ("10.0.0.1", "198.51.100.2:5000"),
                     201, id="one-proxy-entries-with-ports-are-different-clients"),
        pytest.param(1, ("10.0.0.1", "[2001:db8:5:6::1]:443"), ("10.0.0.1", "2001:db8:5:6::2"),
                     409, id="one-proxy-bracketed-ipv6-is-grouped"),
    ],
)
def test_client_address_comes_from_trusted_proxies_only(make_poll, make_app, proxies, first,
                                                        second, expected):
    poll = make_poll(duplicate_check="ip")
    server = make_app(TRUSTED_PROXY_COUNT=proxies)

    def cast(peer, forwarded_for):
        return server.test_client().post(
            f"/api/v1/polls/{poll['id']}/votes",
            json={"choices": [_opt(poll)]},
            headers={"X-Forwarded-For": forwarded_for},
            environ_overrides={"REMOTE_ADDR": peer},
        )

    assert cast(*first).status_code == 201
    assert cast(*second).status_code == expected


# -- privacy ---------------------------------------------------------------------------

RAW_IPS = ("198.51.100.23", "2001:db8:abcd:12::7", "::ffff:192.0.2.45")
# What a leak of those addresses could look like once normalized.
IP_TRACES = ("198.51.100.23", "2001:db8:abcd:12", "192.0.2.45")
USER_IDS = ("user-alice-5521", "user-bob-8834", "user-carol-1290")


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return " ".join(f"{_text(k)}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return " ".join(_text(item) for item in value)
    return str(value)


def _database_rows(app) -> dict[str, list[str]]:
    with app.app_context():
        reflected = sa.MetaData()
        reflected.reflect(bind=db.engine)
        assert set(db.metadata.tables) <= set(reflected.tables)
        with db.engine.connect() as connection:
            return {
                name: [_text(tuple(row)) for row in connection.execute(table.select())]
                for name, table in reflected.tables.items()
            }


def _redis_entries(client) -> list[str]:
    readers = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
    }
    entries = []
    for key in client.scan_iter():
        kind = client.type(key)
        entries.append(f"{_text(key)} {_text(readers[kind](key))}")
    return entries


def test_no_raw_address_cookie_id_or_user_id_is_stored_or_logged(
    app, make_poll, browser, vote, caplog
):
    caplog.set_level(logging.DEBUG)
    # SQL statements and their parameters too: a raw value bound in a query would show.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    browsers = [browser() for _ in RAW_IPS]
    polls = {}
    for policy in ("none", "cookie", "ip", "cookie_and_ip", "user"):
        for window in (None, WINDOW):
            polls[(policy, window)] = make_poll(
                question=f"{policy} {window}", duplicate_check=policy,
                vote_window_seconds=window, allow_other=True, allow_comment=True,
            )
    for poll in polls.values():
        for voter, ip, user_id in zip(browsers, RAW_IPS, USER_IDS, strict=True):
            fields = {"voter": sign(poll, user_id)} if poll["duplicate_check"] == "user" else {}
            for _ in range(2):  # the second attempt exercises the duplicate paths
                response = vote(poll, browser=voter, ip=ip, context="/articles/x", **fields)
                assert response.status_code in (201, 409)
        assert vote(poll, [99], browser=browsers[0], ip=RAW_IPS[0]).status_code == 422

    secrets_ = [*IP_TRACES, *USER_IDS]
    for voter in browsers:
        secrets_ += [cookie_id(voter), cookie_value(voter)]
    rows = _database_rows(app)
    assert rows["ballots"] and rows["vote_claims"]
    redis_entries = _redis_entries(app.extensions["pollbox.redis"].client)
    assert any(":seen:" in entry for entry in redis_entries)
    assert caplog.records

    for secret in secrets_:
        for table, table_rows in rows.items():
            assert not [row for row in table_rows if secret in row], (secret, table)
        assert not [entry for entry in redis_entries if secret in entry], secret
        assert secret not in caplog.text
        assert not [r for r in caplog.records if secret in _text(r.args)], secret


@pytest.mark.parametrize("policy", ("cookie_and_ip", "user"))
def test_the_same_voter_has_unrelated_hashes_in_two_polls(make_poll, browser, vote, ballots_of,
                                                          policy):
    first, second = make_poll(duplicate_check=policy), make_poll(duplicate_check=policy)
    voter = browser()
    for poll in (first, second):
        fields = {"voter": sign(poll, "user-alice")} if policy == "user" else {}
        assert vote(poll, browser=voter, ip=HOME_IP, **fields).status_code == 201

    [in_first], [in_second] = ballots_of(first), ballots_of(second)

    columns = ("cookie_hash", "ip_hash") + (("user_hash",) if policy == "user" else ())
    for column in columns:
        assert getattr(in_first, column) and getattr(in_second, column)
        assert getattr(in_first, column) != getattr(in_second, column), column


# -- Redis loss, Redis outage and database failure -------------------------------------


def _redis(app):
    return app.extensions["pollbox.redis"].client


@pytest.mark.parametrize("policy", CHECKING_POLICIES)
def test_database_backstop_refuses_a_second_vote_after_redis_lost_its_keys(
    app, make_poll, browser, vote, recorded, policy
):
    poll = make_poll(duplicate_check=policy)
    fields = {"voter": sign(poll, "user-9")} if policy == "user" else {}
    voter = browser()
    assert vote(poll, browser=voter, **fields).status_code == 201
    _redis(app).flushdb()

    assert_problem(vote(poll, browser=voter, **fields), 409, "duplicate_vote")

    assert recorded(poll) == (1, 1)
    # Refused again on a retry, and other voters are not affected.
    assert_problem(vote(poll, browser=voter, **fields), 409, "duplicate_vote")
    other = {"voter": sign(poll, "user-10")} if policy == "user" else {}
    assert vote(poll, browser=browser(), ip=OTHER_IP, **other).status_code == 201
    assert recorded(poll) == (2, 2)


def test_address_backstop_refuses_a_new_browser_after_redis_lost_its_keys(
    app, make_poll, browser, vote, recorded
):
    poll = make_poll(duplicate_check="cookie_and_ip")
    assert vote(poll, browser=browser()).status_code == 201
    _redis(app).flushdb()

    assert_problem(vote(poll, browser=browser()), 409, "duplicate_vote")
    assert recorded(poll) == (1, 1)


def test_windowed_poll_keeps_the_window_when_redis_loses_its_keys(
    app, make_poll, browser, vote, clock, recorded
):
    """The database backs windows up as it backs "one vote ever": the ballot's claim
    rows hold until the window ends. A flushed Redis is reachable and empty; the vote
    is refused all the same, as a duplicate of the ballot that holds the window."""
    frozen_whole_second(clock)
    poll = make_poll(duplicate_check="cookie_and_ip", vote_window_seconds=WINDOW)
    voter = browser()
    assert vote(poll, browser=voter).status_code == 201
    _redis(app).flushdb()
    clock.advance(seconds=1)

    assert_problem(vote(poll, browser=voter), 409, "duplicate_vote")
    assert recorded(poll) == (1, 1)

    clock.advance(seconds=WINDOW)  # the window has passed: the claim rows are taken over
    assert vote(poll, browser=voter).status_code == 201
    assert recorded(poll) == (2, 2)
    assert_problem(vote(poll, browser=voter), 409, "duplicate_vote")


@pytest.mark.parametrize("window", (None, WINDOW))
def test_duplicates_are_refused_from_the_database_while_redis_is_down(
    make_poll, make_app, clock, window
):
    frozen_whole_second(clock)
    poll = make_poll(duplicate_check="cookie_and_ip", vote_window_seconds=window)
    server = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    voter = server.test_client()
    url = f"/api/v1/polls/{poll['id']}/votes"
    body = {"choices": [_opt(poll)]}

    def cast():
        return voter.post(url, json=body, environ_overrides={"REMOTE_ADDR": HOME_IP})

    assert cast().status_code == 201
    assert_problem(cast(), 409, "duplicate_vote")
    if window is not None:
        clock.advance(seconds=window)
        assert cast().status_code == 201


SHORT_BUSY_TIMEOUT_SECONDS = 0.2


@pytest.mark.parametrize("stack", ("sqlite-fakeredis",))
@pytest.mark.parametrize(
    ("config", "expected_ms"),
    [
        pytest.param({}, 15_000, id="default"),
        pytest.param({"SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 0.2}}}, 200,
                     id="configured"),
    ],
)
def test_sqlite_busy_timeout_comes_from_configuration(make_app, stack, config, expected_ms):
    server = make_app(**config)

    with server.app_context():
        busy_timeout = db.session.execute(sa.text("PRAGMA busy_timeout")).scalar()

    assert busy_timeout == expected_ms


@pytest.mark.parametrize("stack", ("sqlite-fakeredis", "sqlite-redis"))
def test_vote_whose_commit_fails_is_503_counts_nothing_and_releases_the_claim(
    make_poll, make_app, database_url, stack
):
    poll = make_poll(duplicate_check="cookie_and_ip")
    server = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": SHORT_BUSY_TIMEOUT_SECONDS}}
    )
    voter = server.test_client()
    url = f"/api/v1/polls/{poll['id']}"

    def cast():
        return voter.post(f"{url}/votes", json={"choices": [_opt(poll)]},
                          environ_overrides={"REMOTE_ADDR": HOME_IP})

    def total():
        return server.test_client().get(f"{url}/tallies").get_json()["total_votes"]

    assert total() == 0  # the server's connection exists before the lock is taken
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        response = cast()
        elapsed = time.monotonic() - started
        ballots = holder.execute(
            "SELECT count(*) FROM ballots WHERE poll_id = ?", (poll["id"],)
        ).fetchone()[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    problem = assert_problem(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0
    text = response.get_data(as_text=True).lower()
    for leak in ("insert", "select", "sqlite", "locked", "ballots", "traceback"):
        assert leak not in text, leak
    assert set(problem) <= {"type", "title", "status", "code", "detail"}
    # The configured busy timeout applies, not a longer built-in one.
    assert elapsed < 5
    assert ballots == 0
    assert total() == 0

    # The claim was released: the same browser and address may vote once the lock is gone.
    assert cast().status_code == 201
    assert total() == 1
    assert_problem(cast(), 409, "duplicate_vote")
